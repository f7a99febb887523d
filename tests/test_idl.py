"""The IDL: identical on the wire to the seed template's, extended only by
optional fields; found as package data or through IDL_DIR."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import thriftpy2
from thriftpy2.protocol import TCyBinaryProtocolFactory
from thriftpy2.utils import deserialize, serialize

import idl
from tests.servers import ROOT

TEMPLATE = ROOT / "tests" / "fixtures" / "seed_idl_rpc.thrift"
CHECK = [sys.executable, str(ROOT / "scripts" / "thrift_check.py")]


@pytest.fixture(scope="module")
def template() -> Any:
    return thriftpy2.load(str(TEMPLATE), module_name="seed_template_thrift")


def test_our_idl_is_wire_compatible_with_the_template() -> None:
    result = subprocess.run(CHECK, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "wire-compatible" in result.stdout


@pytest.mark.parametrize(
    ("edit", "complaint"),
    [
        (("2: required i64 Cursor", "2: required i32 Cursor"), "PullRequest field 2"),
        (("PullResponse Pull(2: PullRequest req)", "PullResponse Pull(1: PullRequest req)"), "Pull_args"),
        (("3: optional i64 SendTime", "3: required i64 SendTime"), "is new, so it must be optional"),
        (("4: optional bool Reverse", "9: optional bool Reverse"), "PullRequest field 4 (Reverse) is missing"),
        (("5: optional string RequestId", "4: optional string RequestId"), "does not load"),
    ],
)
def test_the_check_catches_incompatible_edits(tmp_path: Path, edit: tuple[str, str], complaint: str) -> None:
    source = idl.idl_path("idl_rpc.thrift").read_text()
    assert edit[0] in source
    edited = tmp_path / "idl_rpc.thrift"
    edited.write_text(source.replace(edit[0], edit[1]))
    result = subprocess.run([*CHECK, "--ours", str(edited)], capture_output=True, text=True)
    assert result.returncode == 1
    assert complaint in result.stderr


def _roundtrip(value: Any, target: Any) -> Any:
    factory = TCyBinaryProtocolFactory()
    return deserialize(target(), serialize(value, factory), factory)


def test_template_messages_decode_with_our_idl(template: Any) -> None:
    ours = idl.load_rpc()
    message = template.Message(Chat="a:b", Text="héllo", Sender="a", SendTime=1795673536229479)
    request = _roundtrip(template.SendRequest(message=message), ours.SendRequest)
    assert (request.message.Chat, request.message.Text, request.message.SendTime) == ("a:b", "héllo", 1795673536229479)
    assert request.IdempotencyKey is None
    pull = _roundtrip(template.PullRequest(Chat="a:b", Cursor=5, Limit=2, Reverse=True), ours.PullRequest)
    assert (pull.Chat, pull.Cursor, pull.Limit, pull.Reverse) == ("a:b", 5, 2, True)
    response = _roundtrip(template.PullResponse(Code=0, Msg="ok", Messages=[message], HasMore=True), ours.PullResponse)
    assert response.Messages[0].Text == "héllo" and response.HasMore is True


def test_our_messages_decode_with_the_template_idl(template: Any) -> None:
    """Our additions are optional fields with new ids: old clients skip them."""
    ours = idl.load_rpc()
    message = ours.Message(Chat="a:b", Text="x", Sender="b", SendTime=7)
    request = _roundtrip(ours.SendRequest(message=message, IdempotencyKey="k-1"), template.SendRequest)
    assert (request.message.Chat, request.message.Sender) == ("a:b", "b")
    send = _roundtrip(ours.SendResponse(Code=0, Msg="success", SendTime=7), template.SendResponse)
    assert (send.Code, send.Msg) == (0, "success")
    pull = _roundtrip(
        ours.PullResponse(Code=0, Msg="success", Messages=[message], HasMore=False, NextCursor=0),
        template.PullResponse,
    )
    assert [(m.Text, m.SendTime) for m in pull.Messages] == [("x", 7)]


def test_idl_dir_overrides_the_packaged_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shutil.copy(idl.idl_path("idl_rpc.thrift"), tmp_path / "idl_rpc.thrift")
    monkeypatch.setenv("IDL_DIR", str(tmp_path))
    assert idl.idl_path("idl_rpc.thrift") == tmp_path / "idl_rpc.thrift"
    with pytest.raises(FileNotFoundError, match="IDL_DIR"):
        idl.idl_path("idl_http.proto")
