"""The OpenAPI document: served as shipped, consistent with idl_http.proto
and the hand-written codec, and true of the live server (schemathesis)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import requests
from google.protobuf.descriptor import FieldDescriptor

from http_server import codec
from http_server.proto_gen import idl_http_pb2
from tests.servers import ROOT, Stack

SPEC_PATH = ROOT / "http_server" / "openapi.json"
SCHEMATHESIS_CHECKS = [
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
    "response_headers_conformance",
    "negative_data_rejection",
]
SCHEMATHESIS_SEED = 20231  # fixed: the same cases every run
MIN_CASES = 1000

PROTO_TYPES = {
    FieldDescriptor.TYPE_STRING: "string",
    FieldDescriptor.TYPE_INT64: "int64",
    FieldDescriptor.TYPE_INT32: "int32",
    FieldDescriptor.TYPE_BOOL: "bool",
}
JSON_SCHEMA_TYPES = {"string": "string", "int64": "integer", "int32": "integer", "bool": "boolean"}


def _spec() -> dict[str, Any]:
    spec: dict[str, Any] = json.loads(SPEC_PATH.read_text())
    return spec


def _resolve(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def test_served_document_is_the_shipped_file(stack: Stack) -> None:
    r = requests.get(stack.http.url + "/openapi.json", timeout=10)
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("application/json")
    assert r.json() == _spec()
    assert r.json()["openapi"].startswith("3.1")


def test_codec_matches_the_proto_descriptors() -> None:
    """idl_http.proto is the single source: the codec's tables are its fields."""
    proto_messages = idl_http_pb2.DESCRIPTOR.message_types_by_name
    assert set(proto_messages) == set(codec.MESSAGES)
    for name, descriptor in proto_messages.items():
        fields = {}
        for f in descriptor.fields:
            kind = f.message_type.name if f.message_type else PROTO_TYPES[f.type]
            fields[f.name] = f"repeated {kind}" if f.is_repeated else kind
        assert fields == codec.MESSAGES[name], name


def test_openapi_schemas_match_the_codec() -> None:
    spec = _spec()
    for message, fields in codec.MESSAGES.items():
        schema = spec["components"]["schemas"][message]
        properties = schema["properties"]
        assert set(properties) == set(fields), message
        for name, kind in fields.items():
            prop = _resolve(spec, properties[name])
            if kind.startswith("repeated "):
                assert prop["type"] == "array"
                assert properties[name]["items"]["$ref"].endswith("/" + kind.removeprefix("repeated "))
            elif kind in codec.MESSAGES:  # a nested message, or null when absent
                refs = [option.get("$ref", "") for option in properties[name]["oneOf"]]
                assert any(ref.endswith("/" + kind) for ref in refs), (message, name)
                assert {"type": "null"} in properties[name]["oneOf"], (message, name)
            else:
                assert prop["type"] == JSON_SCHEMA_TYPES[kind], (message, name)
    # Responses always carry every key: the codec fills in defaults.
    for message in ("Message", "SendResponse", "PullResponse", "ChatSummary", "ListChatsResponse", "AdminResponse"):
        assert set(spec["components"]["schemas"][message]["required"]) == set(codec.MESSAGES[message])


def test_both_pull_encodings_are_documented() -> None:
    pull = _spec()["paths"]["/api/pull"]["get"]
    assert {p["name"] for p in pull["parameters"] if p["in"] == "query"} == set(codec.MESSAGES["PullRequest"])
    assert pull["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/PullRequest")


def test_chats_query_fields_are_documented() -> None:
    chats = _spec()["paths"]["/api/chats"]["get"]
    assert {p["name"] for p in chats["parameters"] if p["in"] == "query"} == set(codec.MESSAGES["ListChatsRequest"])


@pytest.mark.slow
def test_schemathesis_finds_no_failures(stack: Stack, tmp_path: Path) -> None:
    """Fuzz the live server from its own document: >= 1000 generated cases."""
    env = {**os.environ, "SCHEMATHESIS_HOOKS": "tests.schemathesis_hooks", "PYTHONPATH": str(ROOT)}
    argv = [
        str(Path(sys.executable).with_name("schemathesis")),
        "run",
        f"{stack.http.url}/openapi.json",
        "--checks",
        ",".join(SCHEMATHESIS_CHECKS),
        "--seed",
        str(SCHEMATHESIS_SEED),
        "--max-examples",
        "100",
        "--generation-database",
        "none",
        "--request-timeout",
        "10",
        "--no-color",
        # An event stream never ends by itself: every generated request for it
        # would run into the request timeout. tests/test_sse.py covers it.
        "--exclude-path",
        "/api/subscribe",
    ]
    result = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    output = result.stdout + result.stderr
    summary = re.search(r"(\d+) generated, (\d+) passed", output)
    print(summary.group(0) if summary else output[-2000:])
    assert result.returncode == 0, output[-6000:]
    assert summary, output[-2000:]
    generated, passed = int(summary.group(1)), int(summary.group(2))
    assert generated >= MIN_CASES
    assert passed == generated
