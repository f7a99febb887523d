"""HTTP resources: decode a request, call the RPC service, encode the answer.

They hold no state and no Redis connection: every decision about what is
valid or stored is the RPC server's, reached through `MessageService`
(http_server.message_service).
"""

from __future__ import annotations

import functools
from importlib import resources

import falcon

from http_server import codec
from http_server.errors import ApiError
from http_server.message_service import MessageService
from http_server.params import read_params
from http_server.rpc_pool import RpcUnavailable
from http_server.stopping import stopped, unless_stopping


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
            chat or "",
            fields["text"] or "",
            sender,
            req.get_header("Idempotency-Key"),
            caller(req),
            req.context.request_id,
        )
        resp.media = {"send_time": send_time}


class Pull:
    """GET /api/pull {"chat","cursor","limit","reverse","wait"} -> a page of
    messages; with `wait`, an empty page waits for the next (long-poll)."""

    def __init__(self, service: MessageService, max_body_bytes: int, max_wait_s: int = 30) -> None:
        self._service = service
        self._max_body_bytes = max_body_bytes
        self._max_wait_s = max_wait_s

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        fields = codec.decode("PullRequest", read_params(req, self._max_body_bytes))
        req.context.chat = fields["chat"]
        wait_s = fields["wait"] or 0
        # Checked here too (the RPC server checks WaitMs alike): whether and how long the pull
        # waits picks MessageService's pool and deadline before the call is made.
        if wait_s < 0:
            raise ApiError(400, "wait must not be negative")
        if wait_s and fields["reverse"]:
            raise ApiError(400, "wait works oldest first only: not with reverse")
        pull = functools.partial(
            self._service.pull,
            fields["chat"] or "",
            fields["cursor"] or 0,
            codec.clamp_int32(fields["limit"] or 0),
            fields["reverse"] or False,
            caller(req),
            req.context.request_id,
            min(wait_s, self._max_wait_s),
        )
        # A worker that stops ends a long-poll at once, with the empty page its wait would have ended with.
        page = unless_stopping(pull) if wait_s else pull()
        resp.media = codec.encode("PullResponse", None if stopped(page) else page)


class Chats:
    """GET /api/chats?user=u&cursor=&limit= -> the user's conversation list,
    most recently active first (user defaults to the authenticated caller)."""

    def __init__(self, service: MessageService, max_body_bytes: int) -> None:
        self._service = service
        self._max_body_bytes = max_body_bytes

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        fields = codec.decode("ListChatsRequest", read_params(req, self._max_body_bytes))
        user = fields["user"] or caller(req) or ""
        page = self._service.list_chats(
            user, fields["cursor"] or 0, codec.clamp_int32(fields["limit"] or 0), caller(req), req.context.request_id
        )
        resp.media = codec.encode("ListChatsResponse", page)


class AdminChat:
    """DELETE /api/admin/chats/{chat}: delete a chat (Authorization: Bearer <ADMIN_TOKEN>,
    checked by the RPC server)."""

    def __init__(self, service: MessageService) -> None:
        self._service = service

    def on_delete(self, req: falcon.Request, resp: falcon.Response, chat: str) -> None:
        req.context.chat = chat
        answer = self._service.delete_chat(chat, bearer_token(req), req.context.request_id)
        resp.media = codec.encode("AdminResponse", answer)


class AdminUser:
    """DELETE /api/admin/users/{user}: erase a user and every chat they are in.
    200 when done; 202 (`done` false) when ADMIN_ERASE_TIMEOUT_S ran out
    first: the same request again resumes the erasure."""

    def __init__(self, service: MessageService) -> None:
        self._service = service

    def on_delete(self, req: falcon.Request, resp: falcon.Response, user: str) -> None:
        erased = self._service.erase_user(user, bearer_token(req), req.context.request_id)
        resp.status = falcon.HTTP_200 if erased.Done else falcon.HTTP_202
        resp.media = codec.encode("EraseUserResponse", erased)


def caller(req: falcon.Request) -> str | None:
    """The authenticated user (set by the auth middleware; None with AUTH_MODE=none)."""
    return getattr(req.context, "caller", None)


def bearer_token(req: falcon.Request) -> str | None:
    scheme, _, token = (req.get_header("Authorization") or "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None
