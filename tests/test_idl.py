"""The IDL: identical on the wire to the seed template's, extended only by
optional fields; found as package data or through IDL_DIR."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from thriftpy2.thrift import TType

import idl
from tests.fixtures import seed_template

TYPES = {
    TType.STRING: seed_template.STRING,
    TType.I32: seed_template.I32,
    TType.I64: seed_template.I64,
    TType.BOOL: seed_template.BOOL,
    TType.STRUCT: seed_template.STRUCT,
    TType.LIST: seed_template.LIST,
}


def _field(spec: tuple[Any, ...]) -> tuple[str, str, bool]:
    return spec[1], TYPES[spec[0]], bool(spec[-1])


def test_every_seed_field_keeps_its_id_name_type_and_requiredness() -> None:
    rpc = idl.load_rpc()
    for (struct, field_id), expected in seed_template.FIELDS.items():
        assert _field(getattr(rpc, struct).thrift_spec[field_id]) == expected, (struct, field_id)


def test_extensions_are_optional_fields_with_new_ids() -> None:
    rpc = idl.load_rpc()
    for struct in ("Message", "SendRequest", "SendResponse", "PullRequest", "PullResponse"):
        for field_id, spec in getattr(rpc, struct).thrift_spec.items():
            if (struct, field_id) not in seed_template.FIELDS:
                assert spec[-1] is False, f"{struct}.{spec[1]} must be optional"


def test_methods_and_argument_ids() -> None:
    service = idl.load_rpc().IMService
    assert set(service.thrift_services) >= set(seed_template.METHODS)
    for method, (field_id, name) in seed_template.METHODS.items():
        assert getattr(service, f"{method}_args").thrift_spec[field_id][1] == name
        assert getattr(service, f"{method}_result").thrift_spec[0][1] == "success"


def test_idl_dir_overrides_the_packaged_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shutil.copy(idl.idl_path("idl_rpc.thrift"), tmp_path / "idl_rpc.thrift")
    monkeypatch.setenv("IDL_DIR", str(tmp_path))
    assert idl.idl_path("idl_rpc.thrift") == tmp_path / "idl_rpc.thrift"
    with pytest.raises(FileNotFoundError, match="IDL_DIR"):
        idl.idl_path("idl_http.proto")
