"""One error type for the HTTP API: a status plus the `{"code","msg"}` body.

`code` repeats the status, which is also the Thrift `Code` the RPC server
answered with (see idl/idl_rpc.thrift), so an HTTP client and a Thrift
client see the same number for the same failure. Which Codes are passed on,
and as which status, is `idl.codes`' table, shared with the RPC server.
Every error Falcon raises itself (404, 405, 413 ...) is serialised in the
same shape.
"""

from __future__ import annotations

import logging
from typing import Any

import falcon

from idl import codes

log = logging.getLogger(__name__)


class ApiError(falcon.HTTPError):
    """An HTTP error with a `{"code","msg"}` body; 429 and 503 say when to retry."""

    def __init__(self, status: int, msg: str, retry_after_s: int = 1, close: bool = False) -> None:
        """`close`: the request's body was not read to its end (413 always):
        close the connection rather than read what follows as a request."""
        headers = {"Retry-After": str(retry_after_s)} if status in (429, 503) else {}
        if status == 401:
            headers["WWW-Authenticate"] = "Bearer"
        if status == 413 or close:
            # Answered before the body is read: close rather than drain what the client announced.
            headers["Connection"] = "close"
        super().__init__(falcon.code_to_http_status(status), description=msg, headers=headers or None)


def from_rpc_code(code: int, msg: str, retry_after_ms: int | None = None) -> ApiError:
    """The HTTP error for a non-zero Thrift Code, as `idl.codes` maps it
    (500 "internal error" for 500 itself and for a Code it does not know)."""
    failure = codes.failure(code)
    if failure.msg_passed_on:
        return ApiError(failure.http_status, msg, retry_after_s=max(1, -(-(retry_after_ms or 0) // 1000)))
    return ApiError(failure.http_status, "internal error")


def serialize_error(req: falcon.Request, resp: falcon.Response, error: falcon.HTTPError) -> None:
    resp.content_type = falcon.MEDIA_JSON
    resp.media = {"code": error.status_code, "msg": error.description or _reason(error)}


def _reason(error: falcon.HTTPError) -> str:
    return str(error.title).partition(" ")[2].lower() or "error"


def handle_unexpected(req: falcon.Request, resp: falcon.Response, ex: Exception, params: Any) -> None:
    """Last resort: a bug becomes a logged 500 with the usual body."""
    if isinstance(ex, falcon.HTTPError):
        raise ex
    log.exception("unhandled error on %s %s", req.method, req.path)
    raise ApiError(500, "internal error")
