"""The one table of Thrift Codes (`idl.codes`) holds both servers to the same
numbers: every RPC error class has a Code in it, every Code in it is raised
by exactly one error class (so it means one thing), each maps to one HTTP
status, the IDL's comment documents the same Codes, and a Code the table
does not know is a 500 "internal error". A class or a Code added on one side
only fails here. Pure logic: no server."""

from __future__ import annotations

import importlib
import importlib.util
import json
import pkgutil
import re
from pathlib import Path

import pytest

import rpc_server
from http_server.errors import from_rpc_code
from idl import codes
from rpc_server import errors

IDL = Path(__file__).resolve().parent.parent / "idl" / "idl_rpc.thrift"


def _error_classes() -> list[type[errors.ServiceError]]:
    """Every error class of the RPC server (its modules imported, so that
    the answer does not depend on which other tests ran first here) that
    brings a code of its own; a subclass that keeps its parent's code (the
    notifier's TooManyWaiters is a StorageUnavailable) only words it anew."""
    for module in pkgutil.walk_packages(rpc_server.__path__, "rpc_server."):
        spec = importlib.util.find_spec(module.name)
        assert spec is not None and spec.origin is not None, module.name
        if "monkey.patch_all()" not in Path(spec.origin).read_text():  # not the entry points: they patch at import
            importlib.import_module(module.name)
    found: list[type[errors.ServiceError]] = []
    pending: list[type[errors.ServiceError]] = [errors.ServiceError]
    while pending:
        cls = pending.pop()
        if "code" in vars(cls):
            found.append(cls)
        pending.extend(cls.__subclasses__())
    return found


def _classes_of(code: int) -> list[str]:
    return sorted(cls.__name__ for cls in _error_classes() if cls.code == code)


def test_every_error_class_has_a_code_of_the_table() -> None:
    for cls in _error_classes():
        assert cls.code in codes.FAILURES, f"{cls.__name__}.code {cls.code} is not in idl.codes.FAILURES"


def test_every_code_of_the_table_is_raised_by_exactly_one_error_class() -> None:
    for code in codes.FAILURES:
        assert len(_classes_of(code)) == 1, f"Code {code}: error classes {_classes_of(code)}, want exactly one"


def test_each_row_is_keyed_by_its_code_and_keeps_the_documented_http_status() -> None:
    # idl_rpc.thrift: "The HTTP tier answers with the same number as its status."
    for code, failure in codes.FAILURES.items():
        assert failure.code == code, failure
        assert failure.http_status == code, f"Code {code} is answered as HTTP {failure.http_status}"
        assert 400 <= failure.http_status <= 599, failure


def test_the_idl_documents_exactly_the_codes_of_the_table() -> None:
    comment = IDL.read_text().split("namespace", 1)[0]
    documented = {int(n) for n in re.findall(r"^//\s{2,}(\d+)\s{2,}\S", comment, re.MULTILINE)}
    assert documented == {codes.SUCCESS, *codes.FAILURES}, f"idl_rpc.thrift documents {sorted(documented)}"


@pytest.mark.parametrize("code", sorted(codes.FAILURES))
def test_the_http_tier_answers_each_code_with_its_status(code: int) -> None:
    failure = codes.FAILURES[code]
    error = from_rpc_code(code, "what the RPC server said", retry_after_ms=2500)
    assert error.status_code == failure.http_status
    expected = "what the RPC server said" if failure.msg_passed_on else "internal error"
    assert error.description == expected, f"Code {code}: {error.description!r}"
    if failure.http_status in (429, 503):
        assert dict(error.headers or {}).get("Retry-After") == "3"


@pytest.mark.parametrize("code", [0, 1, 200, 404, 418, 504, 599, -1, 2**31 - 1])
def test_a_code_the_table_does_not_know_is_an_internal_error(code: int) -> None:
    error = from_rpc_code(code, "secret detail from a newer server")
    assert (error.status_code, error.description) == (codes.UNKNOWN.http_status, "internal error")
    assert codes.UNKNOWN.http_status == 500


def test_the_openapi_document_lists_every_passed_on_status_somewhere() -> None:
    """A new Code the HTTP API passes on is documented in openapi.json too."""
    document = json.loads((Path(__file__).resolve().parent.parent / "http_server" / "openapi.json").read_text())
    statuses = {int(s) for path in document["paths"].values() for op in path.values() for s in op.get("responses", {})}
    for failure in codes.FAILURES.values():
        if failure.msg_passed_on:  # (the document lists no 500: a bug, not an answer)
            assert failure.http_status in statuses, f"HTTP {failure.http_status} appears in no response of openapi.json"
