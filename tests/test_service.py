"""IMService called in-process, on a real redis-server: each invalid input
and each failure class answers its Thrift Code and Msg, and stores nothing.

No RPC or HTTP server runs: the service is given its collaborators, as the
process (rpc_server.process.worker) gives them, and called with the request
objects thriftpy2 would hand it. Where a failure must be injected, a part
of the store is replaced by one that raises.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from rpc_server.chat_id import Chat, parse_chat
from rpc_server.errors import StorageUnavailable
from rpc_server.service import MAX_ERASE_BUDGET_MS, MAX_IDEMPOTENCY_KEY_LEN, IMService
from rpc_server.storage.conversations import Conversations
from rpc_server.storage.erasure import Erasure
from rpc_server.storage.keys import stream_key, user_chats_key
from rpc_server.storage.notifier import Notifier
from rpc_server.storage.redis_client import connect_redis
from rpc_server.storage.store import MessageStore, StoredMessage
from tests.servers import RedisServer, free_port

MAX_TEXT = 20
MAX_LIMIT = 5
ADMIN = "admin-secret"
I64_MAX = 2**63 - 1
BAD_MEMBER = "invalid chat member: a member name is 1-64 ASCII letters, digits, '_', '.' or '-'"


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("service-redis"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def client(redis_server: RedisServer) -> redis.Redis:
    return connect_redis(redis_server.url, 5.0, 4, 2.0)


def make_service(rpc: Any, store: MessageStore, **settings: Any) -> IMService:
    options: dict[str, Any] = {"max_text_chars": MAX_TEXT, "max_pull_limit": MAX_LIMIT, "admin_token": ADMIN}
    return IMService(rpc, store, Conversations(store), Erasure(store), **(options | settings))


@pytest.fixture(scope="module")
def store(client: redis.Redis) -> MessageStore:
    return MessageStore(client, idempotency_ttl_s=60)


@pytest.fixture(scope="module")
def service(rpc: Any, store: MessageStore) -> IMService:
    return make_service(rpc, store)


@pytest.fixture
def chat() -> Chat:
    tag = uuid.uuid4().hex[:8]
    return parse_chat(f"a-{tag}:b-{tag}")


def answer_of(response: Any) -> tuple[int, str]:
    return response.Code, response.Msg


def send_request(rpc: Any, chat: str, sender: str, text: str = "hi", **fields: Any) -> Any:
    return rpc.SendRequest(message=rpc.Message(Chat=chat, Sender=sender, Text=text), **fields)


def stored(client: redis.Redis, chat: Chat) -> int:
    return int(client.xlen(stream_key(chat)))


# --- Send -----------------------------------------------------------------


def test_a_valid_send_is_stored_and_listed(rpc: Any, service: IMService, client: redis.Redis, chat: Chat) -> None:
    answer = service.Send(send_request(rpc, chat.id.upper(), chat.second.upper(), "hello", Caller=chat.second))
    assert answer_of(answer) == (0, "success"), answer
    assert stored(client, chat) == 1
    assert client.zscore(user_chats_key(chat.first), chat.id) == answer.SendTime


@pytest.mark.parametrize(
    ("chat_id", "msg"),
    [
        ("", "chat is required"),
        ("nocolon", "invalid chat: expected the form '<member1>:<member2>'"),
        ("a:b:c", "invalid chat: expected the form '<member1>:<member2>'"),
        ("a b:c", BAD_MEMBER),
        ("{a}:b", BAD_MEMBER),
        (b"\xff:b", "chat must be valid UTF-8"),
    ],
)
def test_send_to_a_malformed_chat_is_a_400(rpc: Any, service: IMService, chat_id: Any, msg: str) -> None:
    assert answer_of(service.Send(send_request(rpc, chat_id, "a"))) == (400, msg)


def test_send_without_a_message_is_a_400(rpc: Any, service: IMService) -> None:
    assert answer_of(service.Send(rpc.SendRequest(message=None))) == (400, "message is required")


@pytest.mark.parametrize(
    ("sender", "msg"),
    [
        ("", "sender is required"),
        ("x y", "invalid sender: a member name is 1-64 ASCII letters, digits, '_', '.' or '-'"),
        ("stranger", "sender 'stranger' is not a member of chat '{chat}'"),
    ],
)
def test_a_sender_not_a_member_is_a_400_and_nothing_is_stored(
    rpc: Any, service: IMService, client: redis.Redis, chat: Chat, sender: str, msg: str
) -> None:
    answer = service.Send(send_request(rpc, chat.id, sender))
    assert answer_of(answer) == (400, msg.format(chat=chat.id))
    assert stored(client, chat) == 0


@pytest.mark.parametrize(
    ("text", "msg"),
    [
        ("", "text is required"),
        (None, "text is required"),
        ("x" * (MAX_TEXT + 1), f"text is longer than {MAX_TEXT} characters"),
        (b"\xff", "text must be valid UTF-8"),
    ],
    ids=["empty", "absent", "too-long", "bad-utf8"],
)
def test_bad_text_is_a_400_and_nothing_is_stored(
    rpc: Any, service: IMService, client: redis.Redis, chat: Chat, text: Any, msg: str
) -> None:
    assert answer_of(service.Send(send_request(rpc, chat.id, chat.first, text))) == (400, msg)
    assert stored(client, chat) == 0


def test_text_at_the_limit_in_code_points_is_stored(rpc: Any, service: IMService, chat: Chat) -> None:
    answer = service.Send(send_request(rpc, chat.id, chat.first, "é" * MAX_TEXT))
    assert answer_of(answer) == (0, "success")


@pytest.mark.parametrize("key", ["", "has space", "x" * (MAX_IDEMPOTENCY_KEY_LEN + 1), "ключ"])
def test_a_malformed_idempotency_key_is_a_400(
    rpc: Any, service: IMService, client: redis.Redis, chat: Chat, key: str
) -> None:
    answer = service.Send(send_request(rpc, chat.id, chat.first, IdempotencyKey=key))
    msg = f"invalid idempotency key: 1-{MAX_IDEMPOTENCY_KEY_LEN} printable ASCII characters, no spaces"
    assert answer_of(answer) == (400, msg)
    assert stored(client, chat) == 0


def test_a_caller_sending_as_someone_else_is_a_403(
    rpc: Any, service: IMService, client: redis.Redis, chat: Chat
) -> None:
    answer = service.Send(send_request(rpc, chat.id, chat.first, Caller=chat.second))
    assert answer_of(answer) == (403, f"{chat.second!r} may not send as {chat.first!r}")
    assert stored(client, chat) == 0


def test_a_malformed_caller_is_a_400(rpc: Any, service: IMService, chat: Chat) -> None:
    answer = service.Send(send_request(rpc, chat.id, chat.first, Caller="no way"))
    assert answer_of(answer) == (400, "invalid caller: a member name is 1-64 ASCII letters, digits, '_', '.' or '-'")


def test_an_idempotent_replay_is_answered_and_a_conflict_is_a_422(
    rpc: Any, service: IMService, client: redis.Redis, chat: Chat
) -> None:
    first = service.Send(send_request(rpc, chat.id, chat.first, "one", IdempotencyKey="k1"))
    replay = service.Send(send_request(rpc, chat.id, chat.first, "one", IdempotencyKey="k1"))
    assert (replay.Code, replay.SendTime) == (0, first.SendTime), replay
    conflict = service.Send(send_request(rpc, chat.id, chat.first, "two", IdempotencyKey="k1"))
    assert answer_of(conflict) == (422, "idempotency key already used for a different message in this chat")
    assert conflict.SendTime is None
    assert stored(client, chat) == 1


def test_a_chat_at_the_end_of_the_i64_range_is_a_409(
    rpc: Any, service: IMService, client: redis.Redis, chat: Chat
) -> None:
    client.xadd(stream_key(chat), {"s": chat.first, "t": "last"}, id=f"{I64_MAX}-0")
    answer = service.Send(send_request(rpc, chat.id, chat.first))
    msg = (
        f"chat {chat.id!r} can take no more messages: its last send_time ({I64_MAX}) is the largest possible; "
        "delete the chat or repair its data"
    )
    assert answer_of(answer) == (409, msg)
    assert stored(client, chat) == 1


def test_a_sender_over_the_rate_is_a_429_with_retry_after(rpc: Any, client: redis.Redis, chat: Chat) -> None:
    # One message per 1000 s, no burst: the second is refused whatever the machine's speed.
    limited = make_service(rpc, MessageStore(client, 60, rate_per_s=0.001, rate_burst=1))
    assert answer_of(limited.Send(send_request(rpc, chat.id, chat.first, "one"))) == (0, "success")
    answer = limited.Send(send_request(rpc, chat.id, chat.first, "two"))
    assert answer.Code == 429, answer
    assert 990_000 <= answer.RetryAfterMs <= 1_000_000, answer
    assert answer.Msg == f"too many messages from {chat.first!r}; retry in {answer.RetryAfterMs} ms"
    assert stored(client, chat) == 1


# --- Pull -----------------------------------------------------------------


def test_pull_pages_and_clamps_the_limit(rpc: Any, service: IMService, chat: Chat) -> None:
    times = [service.Send(send_request(rpc, chat.id, chat.first, f"m{i}")).SendTime for i in range(MAX_LIMIT + 1)]
    page = service.Pull(rpc.PullRequest(Chat=chat.id, Cursor=0, Limit=1000, Caller=chat.second))
    assert answer_of(page) == (0, "success")
    assert [m.SendTime for m in page.Messages] == times[:MAX_LIMIT]
    assert (page.HasMore, page.NextCursor, page.HistoryTruncated) == (True, times[-1], False)
    newest = service.Pull(rpc.PullRequest(Chat=chat.id, Cursor=0, Limit=1, Reverse=True))
    assert [(m.Chat, m.Text, m.Sender) for m in newest.Messages] == [(chat.id, f"m{MAX_LIMIT}", chat.first)]


@pytest.mark.parametrize(
    ("fields", "msg"),
    [
        ({"Chat": ""}, "chat is required"),
        ({"Chat": "a:b:c"}, "invalid chat: expected the form '<member1>:<member2>'"),
        ({"Cursor": -1}, "cursor must not be negative"),
        ({"Limit": -1}, "limit must not be negative"),
        ({"WaitMs": -1}, "wait must not be negative"),
        ({"WaitMs": 1000, "Reverse": True}, "wait works oldest first only: not with reverse"),
        ({"WaitMs": 1000}, "this server does not wait"),  # the service was given no notifier
        ({"Caller": "a b"}, "invalid caller: a member name is 1-64 ASCII letters, digits, '_', '.' or '-'"),
    ],
    ids=["no-chat", "bad-chat", "cursor", "limit", "wait", "wait-reverse", "no-notifier", "bad-caller"],
)
def test_an_invalid_pull_is_a_400(rpc: Any, service: IMService, chat: Chat, fields: dict[str, Any], msg: str) -> None:
    request = rpc.PullRequest(**({"Chat": chat.id, "Cursor": 0, "Limit": 1} | fields))
    assert answer_of(service.Pull(request)) == (400, msg)


def test_pull_without_a_request_is_a_400(service: IMService) -> None:
    assert answer_of(service.Pull(None)) == (400, "request is required")


def test_a_caller_pulling_a_chat_not_theirs_is_a_403(rpc: Any, service: IMService, chat: Chat) -> None:
    service.Send(send_request(rpc, chat.id, chat.first, "private"))
    answer = service.Pull(rpc.PullRequest(Chat=chat.id, Cursor=0, Limit=10, Caller="Eve"))
    assert answer_of(answer) == (403, f"'eve' is not a member of chat {chat.id!r}")
    assert answer.Messages is None


def test_a_wait_beyond_the_waiters_allowed_is_a_503(rpc: Any, store: MessageStore, chat: Chat) -> None:
    notifier = Notifier(store.client, max_waiters=0)
    try:
        waiting = make_service(rpc, store, notifier=notifier)
        answer = waiting.Pull(rpc.PullRequest(Chat=chat.id, Cursor=0, Limit=1, WaitMs=1000))
    finally:
        notifier.close()
    assert answer_of(answer) == (503, "too many waiting calls on this server (0); retry")


def test_a_wait_on_a_chat_with_messages_answers_at_once(rpc: Any, store: MessageStore, chat: Chat) -> None:
    notifier = Notifier(store.client, max_waiters=0)  # it would refuse to wait: the page is not empty
    try:
        waiting = make_service(rpc, store, notifier=notifier)
        waiting.Send(send_request(rpc, chat.id, chat.first, "there"))
        answer = waiting.Pull(rpc.PullRequest(Chat=chat.id, Cursor=0, Limit=1, WaitMs=30_000))
    finally:
        notifier.close()
    assert answer_of(answer) == (0, "success")
    assert [m.Text for m in answer.Messages] == ["there"]


# --- ListChats ------------------------------------------------------------


def test_list_chats_shows_the_users_chats(rpc: Any, service: IMService, chat: Chat) -> None:
    sent = service.Send(send_request(rpc, chat.id, chat.first, "latest"))
    answer = service.ListChats(rpc.ListChatsRequest(User=chat.second.upper(), Caller=chat.second))
    assert answer_of(answer) == (0, "success")
    assert [(c.Chat, c.LastSendTime, c.LastMessage.Text) for c in answer.Chats] == [(chat.id, sent.SendTime, "latest")]
    assert (answer.HasMore, answer.NextCursor) == (False, 0)


@pytest.mark.parametrize(
    ("fields", "code", "msg"),
    [
        ({"User": ""}, 400, "user is required"),
        ({"User": "a:b"}, 400, "invalid user: a member name is 1-64 ASCII letters, digits, '_', '.' or '-'"),
        ({"Cursor": -1}, 400, "cursor must not be negative"),
        ({"Limit": -1}, 400, "limit must not be negative"),
        ({"Caller": "bob"}, 403, "'bob' may not list the chats of 'alice'"),
    ],
    ids=["no-user", "bad-user", "cursor", "limit", "other-caller"],
)
def test_an_invalid_list_chats_is_refused(
    rpc: Any, service: IMService, fields: dict[str, Any], code: int, msg: str
) -> None:
    request = rpc.ListChatsRequest(**({"User": "Alice"} | fields))
    assert answer_of(service.ListChats(request)) == (code, msg)


def test_list_chats_without_a_request_is_a_400(service: IMService) -> None:
    assert answer_of(service.ListChats(None)) == (400, "request is required")


# --- DeleteChat and EraseUser (admin) ------------------------------------


def test_delete_chat_deletes_it_with_the_admin_token(
    rpc: Any, service: IMService, client: redis.Redis, chat: Chat
) -> None:
    for text in ("one", "two"):
        service.Send(send_request(rpc, chat.id, chat.first, text))
    answer = service.DeleteChat(rpc.DeleteChatRequest(Chat=chat.id, AdminToken=ADMIN))
    assert answer_of(answer) == (0, "success")
    assert (answer.ChatsDeleted, answer.MessagesDeleted, answer.Done) == (1, 2, None)
    assert stored(client, chat) == 0
    assert client.zscore(user_chats_key(chat.second), chat.id) is None


def test_erase_user_erases_every_chat_of_the_users(
    rpc: Any, service: IMService, client: redis.Redis, chat: Chat
) -> None:
    service.Send(send_request(rpc, chat.id, chat.first, "one"))
    answer = service.EraseUser(rpc.EraseUserRequest(User=chat.first, AdminToken=ADMIN))
    assert answer_of(answer) == (0, "success")
    assert (answer.ChatsDeleted, answer.MessagesDeleted, answer.Done) == (1, 1, True)
    assert stored(client, chat) == 0


def _admin_requests(rpc: Any, token: Any, chat: Chat) -> list[Any]:
    return [
        ("DeleteChat", rpc.DeleteChatRequest(Chat=chat.id, AdminToken=token)),
        ("EraseUser", rpc.EraseUserRequest(User=chat.first, AdminToken=token)),
    ]


@pytest.mark.parametrize(
    "token", [None, "", "wrong", ADMIN + "x", b"\xff"], ids=["absent", "empty", "wrong", "longer", "bytes"]
)
def test_admin_calls_without_the_right_token_are_a_401_and_erase_nothing(
    rpc: Any, service: IMService, client: redis.Redis, chat: Chat, token: Any
) -> None:
    service.Send(send_request(rpc, chat.id, chat.first))
    for method, request in _admin_requests(rpc, token, chat):
        answer = getattr(service, method)(request)
        assert answer_of(answer) == (401, "a valid admin token is required"), method
    assert stored(client, chat) == 1


def test_admin_calls_are_off_without_an_admin_token(
    rpc: Any, store: MessageStore, client: redis.Redis, chat: Chat
) -> None:
    service = make_service(rpc, store, admin_token="")
    service.Send(send_request(rpc, chat.id, chat.first))
    for method, request in _admin_requests(rpc, "", chat):
        answer = getattr(service, method)(request)
        assert answer_of(answer) == (401, "the admin API is off: the RPC server has no ADMIN_TOKEN"), method
    assert stored(client, chat) == 1


@pytest.mark.parametrize("method", ["DeleteChat", "EraseUser"])
def test_admin_calls_without_a_request_are_a_400(service: IMService, method: str) -> None:
    assert answer_of(getattr(service, method)(None)) == (400, "request is required")


def test_admin_calls_on_malformed_names_are_a_400(rpc: Any, service: IMService) -> None:
    delete = service.DeleteChat(rpc.DeleteChatRequest(Chat="a:b:c", AdminToken=ADMIN))
    assert answer_of(delete) == (400, "invalid chat: expected the form '<member1>:<member2>'")
    erase = service.EraseUser(rpc.EraseUserRequest(User="", AdminToken=ADMIN))
    assert answer_of(erase) == (400, "user is required")


@pytest.mark.parametrize("budget", [-1, MAX_ERASE_BUDGET_MS + 1])
def test_an_erase_budget_out_of_range_is_a_400(
    rpc: Any, service: IMService, client: redis.Redis, chat: Chat, budget: int
) -> None:
    service.Send(send_request(rpc, chat.id, chat.first))
    answer = service.EraseUser(rpc.EraseUserRequest(User=chat.first, AdminToken=ADMIN, BudgetMs=budget))
    assert answer_of(answer) == (400, f"BudgetMs must be 1..{MAX_ERASE_BUDGET_MS} (or absent), not {budget}")
    assert stored(client, chat) == 1


# --- Storage failures -----------------------------------------------------


@pytest.fixture(scope="module")
def down(rpc: Any) -> IMService:
    """A service whose Redis is not there (nothing listens on the port)."""
    nowhere = connect_redis(f"redis://127.0.0.1:{free_port()}/0", 2.0, 2, 1.0)
    return make_service(rpc, MessageStore(nowhere, 60, rate_per_s=0.0))


def test_with_redis_down_every_call_is_a_503(rpc: Any, down: IMService, chat: Chat) -> None:
    answers = {
        "Send": down.Send(send_request(rpc, chat.id, chat.first)),
        "Pull": down.Pull(rpc.PullRequest(Chat=chat.id, Cursor=0, Limit=1)),
        "ListChats": down.ListChats(rpc.ListChatsRequest(User=chat.first)),
        "DeleteChat": down.DeleteChat(rpc.DeleteChatRequest(Chat=chat.id, AdminToken=ADMIN)),
        "EraseUser": down.EraseUser(rpc.EraseUserRequest(User=chat.first, AdminToken=ADMIN)),
    }
    # A send says it stored nothing: connecting failed, so it was never sent.
    assert {method: answer_of(a) for method, a in answers.items()} == dict.fromkeys(
        answers, (503, "storage unavailable")
    ) | {"Send": (503, "storage unavailable; not stored")}
    health = down.Health(rpc.HealthRequest())
    assert (health.Code, health.Msg, health.Storage) == (
        503,
        "storage: storage unavailable",
        "unavailable: storage unavailable",
    )
    skipped = down.Health(rpc.HealthRequest(SkipStorage=True))
    assert (skipped.Code, skipped.Storage) == (0, "skipped")


def test_validation_comes_before_storage(rpc: Any, down: IMService, chat: Chat) -> None:
    """Bad input is a 400 even while Redis is down: it is never sent."""
    assert answer_of(down.Send(send_request(rpc, chat.id, "stranger"))) == (
        400,
        f"sender 'stranger' is not a member of chat {chat.id!r}",
    )
    assert answer_of(down.Pull(rpc.PullRequest(Chat=chat.id, Cursor=-1, Limit=1)))[0] == 400


class FailingStore(MessageStore):
    """A real store whose append and read raise `failure` instead."""

    def __init__(self, client: redis.Redis, failure: Exception) -> None:
        super().__init__(client, 60)
        self.failure = failure

    def append(self, chat: Chat, sender: str, text: str, key: str | None = None, deadline: Any = None) -> int:
        raise self.failure

    def read(self, chat: Chat, cursor: int, limit: int, reverse: bool, deadline: Any = None) -> Any:
        raise self.failure

    def last_messages(self, chats: list[Chat]) -> list[StoredMessage | None]:
        raise self.failure


@pytest.mark.parametrize(
    ("failure", "code", "msg"),
    [
        (StorageUnavailable("storage timed out; outcome unknown"), 503, None),
        (RuntimeError("a bug"), 500, "internal error"),
    ],
    ids=["unavailable", "bug"],
)
def test_failures_below_the_service_are_answered_not_raised(
    rpc: Any, client: redis.Redis, chat: Chat, failure: Exception, code: int, msg: str | None
) -> None:
    service = make_service(rpc, FailingStore(client, failure))
    expected = (code, msg or str(failure))
    assert answer_of(service.Send(send_request(rpc, chat.id, chat.first))) == expected
    assert answer_of(service.Pull(rpc.PullRequest(Chat=chat.id, Cursor=0, Limit=1))) == expected
