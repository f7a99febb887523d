"""HTTP resources: decode a request, call the RPC service, encode the answer.

They hold no state and no Redis connection: every decision about what is
valid or stored is the RPC server's, reached through `MessageService`.
"""

from __future__ import annotations

from typing import Any

import falcon

from http_server.errors import ApiError, from_rpc_code
from http_server.params import read_params
from http_server.rpc_pool import RpcClientPool, RpcUnavailable

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1


class MessageService:
    """IMService over Thrift, with Codes and failures turned into ApiError."""

    def __init__(self, rpc: Any, pool: RpcClientPool) -> None:
        self._rpc = rpc  # the module thriftpy2 loaded from idl_rpc.thrift
        self._pool = pool

    def send(self, chat: str, text: str, sender: str, idempotency_key: str | None) -> int:
        message = self._rpc.Message(Chat=chat, Text=text, Sender=sender)
        request = self._rpc.SendRequest(message=message, IdempotencyKey=idempotency_key)
        return int(self._call("Send", request).SendTime)

    def pull(self, chat: str, cursor: int, limit: int, reverse: bool) -> Any:
        request = self._rpc.PullRequest(Chat=chat, Cursor=cursor, Limit=limit, Reverse=reverse)
        return self._call("Pull", request)

    def _call(self, method: str, request: Any) -> Any:
        try:
            response = self._pool.call(method, request)
        except RpcUnavailable as e:
            raise ApiError(503, str(e)) from e
        if response.Code != 0:
            raise from_rpc_code(response.Code, response.Msg)
        return response


class Ping:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {"message": "pong"}


class Send:
    """POST /api/send {"chat","text","sender"} -> {"send_time"}."""

    def __init__(self, service: MessageService, max_body_bytes: int) -> None:
        self._service = service
        self._max_body_bytes = max_body_bytes

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        params = read_params(req, self._max_body_bytes)
        sender = params.string("sender") or ""
        chat = params.string("chat")
        receiver = params.string("receiver")
        if chat is None and receiver is not None:
            chat = f"{sender}:{receiver}"  # the seed's table names sender/receiver
        send_time = self._service.send(
            chat or "", params.string("text") or "", sender, req.get_header("Idempotency-Key")
        )
        resp.media = {"send_time": send_time}


class Pull:
    """GET /api/pull {"chat","cursor","limit","reverse"} -> a page of messages."""

    def __init__(self, service: MessageService, max_body_bytes: int) -> None:
        self._service = service
        self._max_body_bytes = max_body_bytes

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        params = read_params(req, self._max_body_bytes)
        chat = params.string("chat") or ""
        limit = params.integer("limit") or 0
        page = self._service.pull(
            chat,
            params.integer("cursor") or 0,
            min(max(limit, INT32_MIN), INT32_MAX),  # Thrift's Limit is an i32
            params.boolean("reverse") or False,
        )
        resp.media = {
            "messages": [
                {"chat": m.Chat, "text": m.Text, "sender": m.Sender, "send_time": m.SendTime}
                for m in page.Messages or []
            ],
            "has_more": bool(page.HasMore),
            "next_cursor": page.NextCursor or 0,
        }
