"""HTTP resources: decode a request, call the RPC service, encode the answer.

They hold no state and no Redis connection: every decision about what is
valid or stored is the RPC server's, reached through `MessageService`.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

import falcon

from http_server import codec
from http_server.errors import ApiError, from_rpc_code
from http_server.params import read_params
from http_server.rpc_pool import RpcClientPool, RpcUnavailable


class MessageService:
    """IMService over Thrift, with Codes and failures turned into ApiError."""

    def __init__(self, rpc: Any, pool: RpcClientPool) -> None:
        self._rpc = rpc  # the module thriftpy2 loaded from idl_rpc.thrift
        self._pool = pool

    def send(self, chat: str, text: str, sender: str, idempotency_key: str | None, request_id: str) -> int:
        message = self._rpc.Message(Chat=chat, Text=text, Sender=sender)
        request = self._rpc.SendRequest(message=message, IdempotencyKey=idempotency_key, RequestId=request_id)
        return int(self._call("Send", request).SendTime)

    def pull(self, chat: str, cursor: int, limit: int, reverse: bool, request_id: str) -> Any:
        request = self._rpc.PullRequest(Chat=chat, Cursor=cursor, Limit=limit, Reverse=reverse, RequestId=request_id)
        return self._call("Pull", request)

    def health(self, request_id: str) -> Any:
        """The RPC server's own readiness answer (it asks Redis); RpcUnavailable if it cannot answer."""
        return self._pool.call("Health", self._rpc.HealthRequest(RequestId=request_id))

    def _call(self, method: str, request: Any) -> Any:
        try:
            response = self._pool.call(method, request)
        except RpcUnavailable as e:
            raise ApiError(503, str(e)) from e
        if response.Code != 0:
            raise from_rpc_code(response.Code, response.Msg, getattr(response, "RetryAfterMs", None))
        return response


class Ping:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {"message": "pong"}


class Health:
    """GET /healthz: readiness. 200 when the RPC server answers and, through
    it, Redis; else 503 naming the failing part. (/ping is liveness.)"""

    def __init__(self, service: MessageService) -> None:
        self._service = service

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        try:
            answer = self._service.health(req.context.request_id)
        except RpcUnavailable as e:
            resp.status = falcon.HTTP_503
            resp.set_header("Retry-After", "1")
            resp.media = {"code": 503, "msg": f"rpc: {e}", "rpc": "unavailable", "storage": "unknown"}
            return
        if answer.Code != 0:
            resp.status = falcon.HTTP_503
            resp.set_header("Retry-After", "1")
            resp.media = {"code": 503, "msg": answer.Msg, "rpc": "ok", "storage": answer.Storage or "unknown"}
            return
        resp.media = {"status": "ok", "rpc": "ok", "storage": answer.Storage or "ok"}


class OpenApiSpec:
    """GET /openapi.json: the API's OpenAPI 3.1 document, as shipped."""

    def __init__(self) -> None:
        self._document = resources.files(__package__).joinpath("openapi.json").read_bytes()

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.content_type = falcon.MEDIA_JSON
        resp.data = self._document


class Send:
    """POST /api/send {"chat","text","sender"} -> {"send_time"}."""

    def __init__(self, service: MessageService, max_body_bytes: int) -> None:
        self._service = service
        self._max_body_bytes = max_body_bytes

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        fields = codec.decode("SendRequest", read_params(req, self._max_body_bytes))
        sender, chat, receiver = fields["sender"] or "", fields["chat"], fields["receiver"]
        if receiver is not None:  # the seed's table names sender and receiver
            if chat is not None:
                raise ApiError(400, "give either chat or receiver, not both")
            chat = f"{sender}:{receiver}"
        req.context.chat = chat
        send_time = self._service.send(
            chat or "", fields["text"] or "", sender, req.get_header("Idempotency-Key"), req.context.request_id
        )
        resp.media = {"send_time": send_time}


class Pull:
    """GET /api/pull {"chat","cursor","limit","reverse"} -> a page of messages."""

    def __init__(self, service: MessageService, max_body_bytes: int) -> None:
        self._service = service
        self._max_body_bytes = max_body_bytes

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        fields = codec.decode("PullRequest", read_params(req, self._max_body_bytes))
        req.context.chat = fields["chat"]
        page = self._service.pull(
            fields["chat"] or "",
            fields["cursor"] or 0,
            codec.clamp_int32(fields["limit"] or 0),
            fields["reverse"] or False,
            req.context.request_id,
        )
        resp.media = codec.encode("PullResponse", page)
