"""`MessageService`: the RPC server's IMService as the HTTP resources call it.

A Thrift client over the pooled connections (http_server.rpc_pool): it
builds each Thrift request, picks the pool and deadline of the call (a
waiting pull gets its own pool, and its wait on top of the deadline; the
pool sends what is left of it as the request's TimeoutMs), and
turns a non-zero `Code` or an unreachable RPC server into an ApiError, so a
resource never sees Thrift. It holds no state of its own and no Redis
connection.
"""

from __future__ import annotations

import time
from typing import Any

from http_server.admission import WaitingRoom, overloaded
from http_server.errors import ApiError, from_rpc_code
from http_server.rpc_pool import RpcClientPool, RpcUnavailable
from idl import codes

_LIMITED = frozenset({"Send", "Pull", "ListChats"})


class MessageService:
    """IMService over Thrift, with Codes and failures turned into ApiError."""

    def __init__(
        self,
        rpc: Any,
        pool: RpcClientPool,
        waits: RpcClientPool | None = None,
        timeout_s: float = 1.0,
        erase_timeout_s: float = 20.0,
        room: WaitingRoom | None = None,
    ):
        self._rpc = rpc  # the module thriftpy2 loaded from idl_rpc.thrift
        self._pool = pool
        # Waiting pulls (long-poll) hold a connection for seconds: their own
        # pool, so that they never starve ordinary calls.
        self._waits = waits or pool
        self._timeout_s = timeout_s
        self._erase_timeout_s = erase_timeout_s
        # Admission control (http_server.admission): the ordinary calls in flight from this
        # worker hold slots of its limit, taken through its waiting room.
        self._room = room

    def send(
        self, chat: str, text: str, sender: str, idempotency_key: str | None, caller: str | None, request_id: str
    ) -> int:
        message = self._rpc.Message(Chat=chat, Text=text, Sender=sender)
        request = self._rpc.SendRequest(
            message=message, IdempotencyKey=idempotency_key, Caller=caller, RequestId=request_id
        )
        return int(self._call("Send", request, writes=True).SendTime)

    def pull(
        self, chat: str, cursor: int, limit: int, reverse: bool, caller: str | None, request_id: str, wait_s: int = 0
    ) -> Any:
        request = self._rpc.PullRequest(
            Chat=chat,
            Cursor=cursor,
            Limit=limit,
            Reverse=reverse,
            Caller=caller,
            RequestId=request_id,
            WaitMs=wait_s * 1000 or None,
        )
        if wait_s:  # the wait, plus the usual deadline for the call itself
            return self._call("Pull", request, self._waits, wait_s + self._timeout_s)
        return self._call("Pull", request)

    def list_chats(self, user: str, cursor: int, limit: int, caller: str | None, request_id: str) -> Any:
        request = self._rpc.ListChatsRequest(User=user, Cursor=cursor, Limit=limit, Caller=caller, RequestId=request_id)
        return self._call("ListChats", request)

    def delete_chat(self, chat: str, admin_token: str | None, request_id: str) -> Any:
        request = self._rpc.DeleteChatRequest(Chat=chat, AdminToken=admin_token, RequestId=request_id)
        return self._call("DeleteChat", request)

    def erase_user(self, user: str, admin_token: str | None, request_id: str) -> Any:
        """Erasing a user scans the keyspace, longer than one RPC deadline:
        EraseUser calls, each working for half the RPC deadline and each
        resuming where the last stopped (on any RPC server), until it is
        done or the route's own deadline (ADMIN_ERASE_TIMEOUT_S) leaves no
        room for another call: then not done, and the next request goes on."""
        deadline = time.monotonic() + self._erase_timeout_s
        budget_ms = max(1, round(self._timeout_s * 500))
        chats = messages = 0
        while True:
            request = self._rpc.EraseUserRequest(
                User=user, AdminToken=admin_token, RequestId=request_id, BudgetMs=budget_ms
            )
            answer = self._call("EraseUser", request)
            chats += answer.ChatsDeleted or 0
            messages += answer.MessagesDeleted or 0
            done = answer.Done is not False  # absent: an older RPC server did it all in one call
            if done or time.monotonic() + self._timeout_s > deadline:
                return self._rpc.AdminResponse(
                    Code=0, Msg=answer.Msg, ChatsDeleted=chats, MessagesDeleted=messages, Done=done
                )

    def health(self, request_id: str) -> Any:
        """The RPC server's own readiness answer (it asks Redis); RpcUnavailable if it cannot answer."""
        return self._pool.call("Health", self._rpc.HealthRequest(RequestId=request_id))

    def _call(
        self, method: str, request: Any, pool: RpcClientPool | None = None, timeout_s: float = 0, writes: bool = False
    ) -> Any:
        """`writes`: a send, whose 503 says whether it was stored: "not
        stored" when the call never reached the RPC server, else "outcome
        unknown" (the RPC server's own 503s say it themselves)."""
        # A call of the ordinary pool holds a slot of the admission limit while it is in flight (not a
        # waiting pull, whose wait is no work, nor an admin call): its duration is the limit's latency
        # sample, a 503 from behind its drop signal. No slot (after a wait): refused, before anything was sent.
        room = self._room if pool is None and method in _LIMITED else None
        if room is not None and not room.acquire():
            raise overloaded(method == "Send")
        started, dropped = time.monotonic(), True
        try:
            response = (pool or self._pool).call(method, request, timeout_s=timeout_s or None)
            dropped = response.Code == codes.STORAGE_UNAVAILABLE
        except RpcUnavailable as e:
            kind = ("; outcome unknown" if e.sent else "; not stored") if writes else ""
            raise ApiError(503, f"{e}{kind}") from e
        finally:
            if room is not None:
                room.limit.release(time.monotonic() - started, dropped)
        if response.Code != 0:
            raise from_rpc_code(response.Code, response.Msg, getattr(response, "RetryAfterMs", None))
        return response
