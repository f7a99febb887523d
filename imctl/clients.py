"""Two ways to reach the service, one interface: `send` and `pull` return the
HTTP API's JSON shapes whichever transport carried them, so the output does
not depend on the transport."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any, NoReturn, Protocol

from thriftpy2.protocol import TCyBinaryProtocol
from thriftpy2.thrift import TClient
from thriftpy2.transport import TCyBufferedTransport, TSocket, TTransportException

import idl

# The longest an erase-user request may take (the HTTP server's ADMIN_ERASE_TIMEOUT_S, 20 s by default), with room.
ERASE_WAIT_S = 60


class ServiceError(Exception):
    """The service refused (code = the HTTP status / Thrift Code) or could not be reached (503)."""

    def __init__(self, code: int, msg: str) -> None:
        super().__init__(f"error {code}: {msg}")
        self.code = code


class Client(Protocol):
    def send(self, chat: str, sender: str, text: str, idempotency_key: str | None = None) -> dict[str, Any]: ...

    def pull(self, chat: str, cursor: int = 0, limit: int = 0, reverse: bool = False, wait: int = 0) -> dict[str, Any]:
        """A page; with `wait` (seconds), an empty one waits for the next message."""
        ...

    def health(self) -> dict[str, Any]: ...

    def follow(self, chat: str, cursor: int, wait: int) -> Iterator[dict[str, Any]]:
        """Every message from `cursor` on, as they come, for ever."""
        ...

    def list_chats(self, user: str, cursor: int = 0, limit: int = 0) -> dict[str, Any]: ...

    def delete_chat(self, chat: str, admin_token: str) -> dict[str, Any]: ...

    def erase_user(self, user: str, admin_token: str) -> dict[str, Any]: ...

    def close(self) -> None: ...


class HttpClient:
    def __init__(
        self,
        base_url: str,
        timeout_s: float,
        token: str | None = None,
        user: str | None = None,
        user_header: str = "X-User-Id",
    ) -> None:
        self._base_url = base_url.rstrip("/")
        self._timeout_s = timeout_s
        # The caller, for a server with AUTH_MODE=jwt (a bearer token) or
        # AUTH_MODE=header (the user, in the header a gateway would set).
        self._auth = {"Authorization": f"Bearer {token}"} if token else {}
        if user:
            self._auth[user_header] = user

    def send(self, chat: str, sender: str, text: str, idempotency_key: str | None = None) -> dict[str, Any]:
        body = json.dumps({"chat": chat, "sender": sender, "text": text}).encode()
        headers = {"Content-Type": "application/json", **self._auth}
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        return self._call(urllib.request.Request(self._base_url + "/api/send", body, headers, method="POST"))

    def pull(self, chat: str, cursor: int = 0, limit: int = 0, reverse: bool = False, wait: int = 0) -> dict[str, Any]:
        fields = {"chat": chat, "cursor": cursor, "limit": limit, "reverse": str(reverse), "wait": wait}
        query = urllib.parse.urlencode(fields)
        request = urllib.request.Request(f"{self._base_url}/api/pull?{query}", headers=self._auth)
        return self._call(request, wait)

    def follow(self, chat: str, cursor: int, wait: int) -> Iterator[dict[str, Any]]:
        """The chat's event stream (GET /api/subscribe), resumed with
        Last-Event-ID whenever it ends (the server stopped, say, or refused
        the subscription for now)."""
        last_id = cursor - 1 if cursor else None
        while True:
            headers = {**self._auth, "Accept": "text/event-stream"}
            if last_id is not None:
                headers["Last-Event-ID"] = str(last_id)
            url = f"{self._base_url}/api/subscribe?{urllib.parse.urlencode({'chat': chat})}"
            try:
                with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=60) as stream:
                    named = False  # an event with a type (`unavailable`: refused for now) is not a message
                    for line in stream:
                        if line.startswith(b"event: "):
                            named = True
                        elif line.startswith(b"data: ") and not named:
                            message: dict[str, Any] = json.loads(line[6:])
                            last_id = message["send_time"]
                            yield message
                        elif not line.strip():
                            named = False
            except urllib.error.HTTPError as e:
                if e.code != 503:  # 400, 401, 403: reconnecting will not help
                    self._raise(e)
            except (urllib.error.URLError, OSError):
                pass  # the stream broke: resume after the last event
            time.sleep(1)

    def list_chats(self, user: str, cursor: int = 0, limit: int = 0) -> dict[str, Any]:
        query = urllib.parse.urlencode({"user": user, "cursor": cursor, "limit": limit} if user else {"limit": limit})
        return self._call(urllib.request.Request(f"{self._base_url}/api/chats?{query}", headers=self._auth))

    def delete_chat(self, chat: str, admin_token: str) -> dict[str, Any]:
        return self._admin(f"/api/admin/chats/{urllib.parse.quote(chat)}", admin_token)

    def erase_user(self, user: str, admin_token: str) -> dict[str, Any]:
        """Repeated while the server answers 202 (`done` false: its own
        deadline ran out first); each request resumes the erasure."""
        total = {"chats_deleted": 0, "messages_deleted": 0}
        while True:
            answer = self._admin(f"/api/admin/users/{urllib.parse.quote(user)}", admin_token, ERASE_WAIT_S)
            total["chats_deleted"] += answer.get("chats_deleted", 0)
            total["messages_deleted"] += answer.get("messages_deleted", 0)
            if answer.get("done") is not False:
                return total

    def _admin(self, path: str, admin_token: str, wait_s: int = 0) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {admin_token}"}
        return self._call(urllib.request.Request(self._base_url + path, headers=headers, method="DELETE"), wait_s)

    def health(self) -> dict[str, Any]:
        """The HTTP server's readiness (it asks the RPC server, which asks Redis)."""
        return self._call(urllib.request.Request(f"{self._base_url}/healthz"))

    def close(self) -> None:
        pass

    def _call(self, request: urllib.request.Request, wait_s: int = 0) -> dict[str, Any]:
        try:
            with urllib.request.urlopen(request, timeout=self._timeout_s + wait_s) as response:
                body: dict[str, Any] = json.load(response)
                return body
        except urllib.error.HTTPError as e:
            self._raise(e)
        except (urllib.error.URLError, OSError) as e:
            raise ServiceError(503, f"cannot reach {self._base_url}: {e}") from None

    @staticmethod
    def _raise(e: urllib.error.HTTPError) -> NoReturn:
        try:
            error = json.load(e)
            code, msg = int(error["code"]), str(error["msg"])
        except (ValueError, KeyError, TypeError):
            code, msg = e.code, e.reason
        raise ServiceError(code, msg) from None


class ThriftClient:
    """Straight to the RPC server: strict binary over buffered transport."""

    def __init__(self, address: str, timeout_s: float, caller: str | None = None) -> None:
        host, _, port = address.rpartition(":")
        self._rpc = idl.load_rpc()
        self._caller = caller  # the Thrift field Caller: the service then checks what this user may do
        self._address = address
        self._timeout_s = timeout_s
        self._socket = TSocket(
            host or "127.0.0.1", int(port), socket_timeout=timeout_s * 1000, connect_timeout=timeout_s * 1000
        )
        try:
            self._socket.open()
        except TTransportException as e:
            raise ServiceError(503, f"cannot reach {address}: {e}") from None
        self._client = TClient(self._rpc.IMService, TCyBinaryProtocol(TCyBufferedTransport(self._socket)))

    def send(self, chat: str, sender: str, text: str, idempotency_key: str | None = None) -> dict[str, Any]:
        message = self._rpc.Message(Chat=chat, Sender=sender, Text=text)
        request = self._rpc.SendRequest(message=message, IdempotencyKey=idempotency_key, Caller=self._caller)
        response = self._call("Send", request)
        return {"send_time": response.SendTime}

    def pull(self, chat: str, cursor: int = 0, limit: int = 0, reverse: bool = False, wait: int = 0) -> dict[str, Any]:
        request = self._rpc.PullRequest(
            Chat=chat, Cursor=cursor, Limit=limit, Reverse=reverse, WaitMs=wait * 1000, Caller=self._caller
        )
        self._socket.set_timeout((self._timeout_s + wait) * 1000)
        page = self._call("Pull", request)
        return {
            "messages": [_message(m) for m in page.Messages or []],
            "has_more": bool(page.HasMore),
            "next_cursor": page.NextCursor or 0,
            "history_truncated": bool(page.HistoryTruncated),
        }

    def follow(self, chat: str, cursor: int, wait: int) -> Iterator[dict[str, Any]]:
        """Long-polls (`wait` seconds each) from the send_time after the last message."""
        while True:
            page = self.pull(chat, cursor, 100, wait=wait)
            for message in page["messages"]:
                cursor = message["send_time"] + 1
                yield message

    def list_chats(self, user: str, cursor: int = 0, limit: int = 0) -> dict[str, Any]:
        request = self._rpc.ListChatsRequest(
            User=user or self._caller or "", Cursor=cursor, Limit=limit, Caller=self._caller
        )
        page = self._call("ListChats", request)
        chats = [
            {
                "chat": c.Chat,
                "last_send_time": c.LastSendTime,
                "last_message": _message(c.LastMessage) if c.LastMessage else None,
            }
            for c in page.Chats or []
        ]
        return {"chats": chats, "has_more": bool(page.HasMore), "next_cursor": page.NextCursor or 0}

    def delete_chat(self, chat: str, admin_token: str) -> dict[str, Any]:
        return _erased(self._call("DeleteChat", self._rpc.DeleteChatRequest(Chat=chat, AdminToken=admin_token)))

    def erase_user(self, user: str, admin_token: str) -> dict[str, Any]:
        """EraseUser calls, each working for half the call timeout and
        resuming where the last stopped, until Done."""
        total = {"chats_deleted": 0, "messages_deleted": 0}
        budget_ms = max(1, round(self._timeout_s * 500))
        while True:
            request = self._rpc.EraseUserRequest(User=user, AdminToken=admin_token, BudgetMs=budget_ms)
            answer = self._call("EraseUser", request)
            for name, count in _erased(answer).items():
                total[name] += count
            if answer.Done is not False:
                return total

    def health(self) -> dict[str, Any]:
        """The RPC server's readiness (it asks Redis)."""
        answer = self._call("Health", self._rpc.HealthRequest())
        return {"status": "ok", "storage": answer.Storage}

    def close(self) -> None:
        self._socket.close()

    def _call(self, method: str, request: Any) -> Any:
        try:
            response = getattr(self._client, method)(request)
        except (TTransportException, OSError) as e:
            raise ServiceError(503, f"call to {self._address} failed: {e}") from None
        if response.Code != 0:
            raise ServiceError(response.Code, response.Msg)
        return response


def _message(m: Any) -> dict[str, Any]:
    return {"chat": m.Chat, "text": m.Text, "sender": m.Sender, "send_time": m.SendTime}


def _erased(answer: Any) -> dict[str, Any]:
    return {"chats_deleted": answer.ChatsDeleted or 0, "messages_deleted": answer.MessagesDeleted or 0}
