"""The interface definitions both servers share, and how to find them.

`idl_rpc.thrift` is the wire contract between http_server and rpc_server (and
any other Thrift client); `idl_http.proto` describes the HTTP API. They ship
as package data, so an installed package or a container image finds them
next to this file; `IDL_DIR` points elsewhere (for example at an edited copy)
without reinstalling. `idl.codes` is the table of the Thrift `Code`s and
their HTTP statuses. This package (with `plumbing`) is the only code the two
servers share; it imports thriftpy2 only when the IDL is loaded, so that
importing `idl.codes` costs nothing and imports no ssl before gevent's
patching.
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path
from types import ModuleType


def idl_path(name: str) -> Path:
    """Return the path of the IDL file `name`, honouring `IDL_DIR`."""
    directory = os.environ.get("IDL_DIR") or Path(__file__).resolve().parent
    path = Path(directory) / name
    if not path.is_file():
        raise FileNotFoundError(f"IDL file {name!r} not found in {directory} (set IDL_DIR)")
    return path


@cache
def load_rpc() -> ModuleType:
    """Load `idl_rpc.thrift` at run time into a module named `idl_rpc_thrift`.

    The `_thrift` suffix lets thriftpy2 register the module for pickling; the
    result is cached so every caller shares one set of classes.
    """
    import thriftpy2

    return thriftpy2.load(str(idl_path("idl_rpc.thrift")), module_name="idl_rpc_thrift")
