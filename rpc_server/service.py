"""The IMService handler: validate a Thrift request, call the store, answer.

All semantic validation lives here, once, because direct Thrift clients need
it as much as the HTTP tier does. Every outcome is a response with a `Code`
(see `idl/idl_rpc.thrift`); no exception escapes to the server loop, since
thriftpy2 drops the connection on an exception the IDL does not declare.
Each call is counted, timed and logged (observability), without its text.
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Callable
from typing import Any

from rpc_server import call_context
from rpc_server.chat_id import Chat, canonical_member, parse_chat
from rpc_server.deadline import DEFAULT_POLICY, Deadline, DeadlinePolicy
from rpc_server.errors import (
    DeadlineExceeded,
    InvalidArgument,
    PermissionDenied,
    RateLimited,
    ServiceError,
    StorageUnavailable,
    Unauthenticated,
)
from rpc_server.observability import IN_FLIGHT, record_call
from rpc_server.paging import Page, effective_limit
from rpc_server.storage.conversations import Conversations
from rpc_server.storage.erasure import Erased, Erasure
from rpc_server.storage.notifier import Notifier
from rpc_server.storage.store import MessageStore, StoredMessage

log = logging.getLogger(__name__)

# EraseUser's time budget per call. A caller that gives none may not know
# of Done either (an older HTTP tier): it gets the most, so that one call
# still erases everything (on up to ~50 million keys) whatever its own
# deadline, as before.
MAX_ERASE_BUDGET_MS = 60_000
DEFAULT_ERASE_BUDGET_MS = MAX_ERASE_BUDGET_MS

MAX_IDEMPOTENCY_KEY_LEN = 128


class IMService:
    """The handler thriftpy2 calls. It is given its collaborators (built by
    the process, rpc_server.process.worker) rather than building them, so that a
    test can create it on a real Redis, or with a part that fails on
    purpose, and call it directly."""

    def __init__(
        self,
        rpc: Any,
        store: MessageStore,
        conversations: Conversations,
        erasure: Erasure,
        *,
        max_text_chars: int,
        max_pull_limit: int,
        admin_token: str = "",
        notifier: Notifier | None = None,
        max_wait_ms: int = 30000,
        deadlines: DeadlinePolicy = DEFAULT_POLICY,
    ) -> None:
        """`rpc`: the module thriftpy2 loaded from idl_rpc.thrift. Without a
        `notifier` the service does not wait (a Pull with WaitMs is a 400).
        `deadlines`: how each call's deadline is set (rpc_server.deadline)."""
        self._rpc = rpc
        self._store = store
        self._conversations = conversations
        self._erasure = erasure
        self._max_text_chars = max_text_chars
        self._max_pull_limit = max_pull_limit
        self._admin_token = admin_token.encode()
        self._notifier = notifier
        self._max_wait_ms = max_wait_ms
        self._deadlines = deadlines

    def Send(self, req: Any) -> Any:
        message = getattr(req, "message", None)

        def send() -> Any:
            if message is None:
                raise InvalidArgument("message is required")
            chat = parse_chat(message.Chat)
            sender = canonical_member(message.Sender, "sender")
            if not chat.has_member(sender):
                raise InvalidArgument(f"sender {sender!r} is not a member of chat {chat.id!r}")
            _check_acts_as(_caller(req.Caller), sender, "send as")
            text = self._valid_text(message.Text)
            key = _valid_idempotency_key(req.IdempotencyKey)
            deadline = self._started(req, sending=True)
            self._store.check_rate(sender, deadline)
            send_time = self._store.append(chat, sender, text, key, deadline)
            self._conversations.touch(chat, send_time)  # a replay too: it repairs a lost update
            return self._rpc.SendResponse(Code=0, Msg="success", SendTime=send_time)

        return _answer("Send", req, getattr(message, "Chat", None), send, self._rpc.SendResponse)

    def Pull(self, req: Any) -> Any:
        def pull() -> Any:
            if req is None:
                raise InvalidArgument("request is required")
            chat = parse_chat(req.Chat)
            _check_member(_caller(req.Caller), chat)
            cursor, limit = self._paging(req.Cursor, req.Limit)
            wait_s = self._wait_s(req.WaitMs, bool(req.Reverse))
            deadline = self._started(req, waits_s=wait_s)
            page = self._store.read(chat, cursor, limit, bool(req.Reverse), deadline)
            if wait_s and not page.items:
                page = self._wait_for_messages(chat, cursor, limit, wait_s, deadline)
            messages = [self._message(req.Chat, m) for m in page.items]
            return self._rpc.PullResponse(
                Code=0,
                Msg="success",
                Messages=messages,
                HasMore=page.has_more,
                NextCursor=page.next_cursor,
                HistoryTruncated=page.truncated,
            )

        return _answer("Pull", req, getattr(req, "Chat", None), pull, self._rpc.PullResponse)

    def Health(self, req: Any) -> Any:
        """Ready when Redis answers a PING (unless SkipStorage: the RPC tier alone)."""

        def health() -> Any:
            if req is not None and req.SkipStorage:
                return self._rpc.HealthResponse(Code=0, Msg="ok", Storage="skipped")
            self._started(req)
            try:
                self._store.ping()
            except StorageUnavailable as e:
                return self._rpc.HealthResponse(Code=503, Msg=f"storage: {e.msg}", Storage=f"unavailable: {e.msg}")
            return self._rpc.HealthResponse(Code=0, Msg="ok", Storage="ok")

        return _answer("Health", req, None, health, self._rpc.HealthResponse)

    def ListChats(self, req: Any) -> Any:
        """The user's conversation list, most recently active first."""

        def list_chats() -> Any:
            if req is None:
                raise InvalidArgument("request is required")
            user = canonical_member(req.User, "user")
            _check_acts_as(_caller(req.Caller), user, "list the chats of")
            cursor, limit = self._paging(req.Cursor, req.Limit)
            self._started(req)
            page = self._conversations.list(user, cursor, limit)
            chats = [
                self._rpc.ChatSummary(
                    Chat=s.chat.id,
                    LastSendTime=s.last_send_time,
                    LastMessage=self._message(s.chat.id, s.last_message) if s.last_message else None,
                )
                for s in page.items
            ]
            return self._rpc.ListChatsResponse(
                Code=0, Msg="success", Chats=chats, HasMore=page.has_more, NextCursor=page.next_cursor
            )

        return _answer("ListChats", req, None, list_chats, self._rpc.ListChatsResponse)

    def DeleteChat(self, req: Any) -> Any:
        """Admin: delete one chat, its idempotency records and list entries."""

        def delete_chat() -> Any:
            self._check_admin(req)
            chat = parse_chat(req.Chat)
            self._started(req, sending=True)
            return self._admin_response(self._erasure.delete_chat(chat))

        return _answer("DeleteChat", req, getattr(req, "Chat", None), delete_chat, self._rpc.AdminResponse)

    def EraseUser(self, req: Any) -> Any:
        """Admin: delete every chat the user is in, and the user's own state,
        for at most about BudgetMs (Done false: call again to resume)."""

        def erase_user() -> Any:
            self._check_admin(req)
            user = canonical_member(req.User, "user")
            budget_ms = req.BudgetMs or DEFAULT_ERASE_BUDGET_MS
            if not 1 <= budget_ms <= MAX_ERASE_BUDGET_MS:
                raise InvalidArgument(f"BudgetMs must be 1..{MAX_ERASE_BUDGET_MS} (or absent), not {budget_ms}")
            self._started(req, sending=True)
            return self._admin_response(self._erasure.erase_user(user, budget_ms / 1000), done=True)

        return _answer("EraseUser", req, None, erase_user, self._rpc.AdminResponse)

    def _started(self, req: Any, sending: bool = False, waits_s: float = 0.0) -> Deadline:
        """The call's deadline (rpc_server.deadline), once its input is
        valid; DeadlineExceeded if it leaves no time to send anything to
        Redis: nothing is done (`sending`: a write, so "not stored").
        `waits_s`: a long-poll's wait, added to the default deadline."""
        deadline = self._deadlines.for_call(getattr(req, "TimeoutMs", None), waits_s)
        if not deadline.can_send():
            raise DeadlineExceeded("the call's deadline left no time to reach storage" + ("; not stored" * sending))
        return deadline

    def _check_admin(self, req: Any) -> None:
        if req is None:
            raise InvalidArgument("request is required")
        if not self._admin_token:
            raise Unauthenticated("the admin API is off: the RPC server has no ADMIN_TOKEN")
        token = req.AdminToken
        if not isinstance(token, str) or not hmac.compare_digest(token.encode(), self._admin_token):
            raise Unauthenticated("a valid admin token is required")

    def _admin_response(self, erased: Erased, done: bool = False) -> Any:
        """`done`: say whether the work is done (EraseUser's Done field)."""
        return self._rpc.AdminResponse(
            Code=0,
            Msg="success" if erased.done else "not done yet: call again to go on",
            ChatsDeleted=erased.chats,
            MessagesDeleted=erased.messages,
            Done=erased.done if done else None,
        )

    def _message(self, chat: str, m: StoredMessage) -> Any:
        return self._rpc.Message(Chat=chat, Text=m.text, Sender=m.sender, SendTime=m.send_time)

    def _paging(self, cursor: int | None, limit: int | None) -> tuple[int, int]:
        """A request's (cursor, limit), checked; the limit defaulted and clamped."""
        if (cursor or 0) < 0:
            raise InvalidArgument("cursor must not be negative")
        if (limit or 0) < 0:
            raise InvalidArgument("limit must not be negative")
        return cursor or 0, effective_limit(limit or 0, self._max_pull_limit)

    def _wait_s(self, wait_ms: int | None, reverse: bool) -> float:
        if not wait_ms:
            return 0.0
        if wait_ms < 0:
            raise InvalidArgument("wait must not be negative")
        if reverse:
            raise InvalidArgument("wait works oldest first only: not with reverse")
        if self._notifier is None:
            raise InvalidArgument("this server does not wait")
        return min(wait_ms, self._max_wait_ms) / 1000

    def _wait_for_messages(
        self, chat: Chat, cursor: int, limit: int, wait_s: float, deadline: Deadline
    ) -> Page[StoredMessage]:
        """Long-poll: read again on every notice until a message at or after
        `cursor` is there or the time is up (then the empty page). Watching
        starts before the first read, so nothing can arrive unseen. The
        wait ends in time for a last read within the call's deadline."""
        assert self._notifier is not None
        wait_ends = time.monotonic() + min(wait_s, deadline.until_send_by())
        with self._notifier.watch(chat) as notified:
            page = self._store.read(chat, cursor, limit, False, deadline)
            while not page.items and not self._notifier.closed:
                if not notified.wait(max(wait_ends - time.monotonic(), 0)):
                    break
                notified.clear()
                page = self._store.read(chat, cursor, limit, False, deadline)
        return page

    def _valid_text(self, text: object) -> str:
        if isinstance(text, bytes):
            raise InvalidArgument("text must be valid UTF-8")
        if not isinstance(text, str) or not text:
            raise InvalidArgument("text is required")
        if len(text) > self._max_text_chars:
            raise InvalidArgument(f"text is longer than {self._max_text_chars} characters")
        return text


def _caller(caller: object) -> str | None:
    """The authenticated user a call is made for (None: no access check)."""
    if caller is None or caller == "":
        return None
    return canonical_member(caller, "caller")


def _check_acts_as(caller: str | None, user: str, action: str) -> None:
    if caller is not None and caller != user:
        raise PermissionDenied(f"{caller!r} may not {action} {user!r}")


def _check_member(caller: str | None, chat: Chat) -> None:
    if caller is not None and not chat.has_member(caller):
        raise PermissionDenied(f"{caller!r} is not a member of chat {chat.id!r}")


def _valid_idempotency_key(key: object) -> str | None:
    if key is None:
        return None
    if (
        not isinstance(key, str)
        or not 1 <= len(key) <= MAX_IDEMPOTENCY_KEY_LEN
        or not all("!" <= c <= "~" for c in key)
    ):
        raise InvalidArgument(
            f"invalid idempotency key: 1-{MAX_IDEMPOTENCY_KEY_LEN} printable ASCII characters, no spaces"
        )
    return key


def _answer(method: str, req: Any, chat: object, handle: Callable[[], Any], response: Callable[..., Any]) -> Any:
    """Run a handler; turn any failure into a response with a Code; record the call."""
    started = time.monotonic()
    with IN_FLIGHT.track_inprogress():
        try:
            result = handle()
        except RateLimited as e:
            result = response(Code=e.code, Msg=e.msg, RetryAfterMs=e.retry_after_ms)
        except ServiceError as e:
            if e.code >= 500:
                log.warning("answering %d: %s (%s)", e.code, e.msg, e.__cause__ or e)
            result = response(Code=e.code, Msg=e.msg)
        except Exception:
            log.exception("internal error in %s", method)
            result = response(Code=500, Msg="internal error")
    context = call_context.current()
    request_id = getattr(req, "RequestId", None) or context.request_id  # the field, else the transport's (TTHeader)
    record_call(method, result.Code, started, chat, request_id, context.from_service, context.timeout_ms)
    return result
