"""A steady stream of sends from several concurrent clients, for fault tests.

Every message has a unique text, so that afterwards each acknowledged send
(HTTP 200, or Thrift Code 0) can be found in the chat exactly once, at the
send_time it was acknowledged with. Errors are counted by kind; a client
timeout (CLIENT_TIMEOUT_S, far above the 1 s RPC timeout) counts as a hang.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

import requests
from thriftpy2.protocol import TCyBinaryProtocolFactory
from thriftpy2.rpc import make_client
from thriftpy2.transport import TCyBufferedTransportFactory

import idl
from tests.conftest import Api
from tests.servers import wait_until

CLIENT_TIMEOUT_S = 4.0


class SendLoad:
    def __init__(self, base_url: str, chat: str, http_clients: int = 6, thrift_port: int | None = None) -> None:
        self.base_url, self.chat = base_url, chat
        self.acked: dict[str, int] = {}
        self.errors: Counter[str] = Counter()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._http, args=(i,)) for i in range(http_clients)]
        if thrift_port:
            self._threads += [threading.Thread(target=self._thrift, args=(i, thrift_port)) for i in range(2)]

    def __enter__(self) -> SendLoad:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()

    def wait_for_acks(self, count: int, timeout: float = 30) -> None:
        target = len(self.acked) + count
        wait_until(lambda: len(self.acked) >= target, timeout, f"{count} more acknowledged sends")

    def wait_for_errors(self, count: int, timeout: float = 30) -> None:
        target = sum(self.errors.values()) + count
        wait_until(lambda: sum(self.errors.values()) >= target, timeout, f"{count} more errors")

    def errors_stop_after(self, fault: Callable[[], object]) -> None:
        """Inject `fault` under load: the calls in flight may fail, then none may."""
        self.wait_for_acks(200)
        fault()
        self.wait_for_acks(200)  # the calls in flight at the fault have failed by now
        errors_after_the_fault = sum(self.errors.values())
        self.wait_for_acks(400)
        assert sum(self.errors.values()) == errors_after_the_fault, self.errors

    def _record(self, text: str, send_time: int | None, error: str | None) -> None:
        with self._lock:
            if send_time is not None:
                self.acked[text] = send_time
            else:
                self.errors[error or "?"] += 1

    def _http(self, client: int) -> None:
        a, b = self.chat.split(":")
        session, n = requests.Session(), 0
        while not self._stop.is_set():
            text = f"http-{client}-{n}"
            n += 1
            try:
                r = session.post(
                    self.base_url + "/api/send",
                    json={"chat": self.chat, "text": text, "sender": (a, b)[n % 2]},
                    timeout=CLIENT_TIMEOUT_S,
                )
            except requests.Timeout:
                self._record(text, None, "timeout")
                continue
            except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError):
                # (a worker killed in the middle of its answer: the body breaks off)
                self._record(text, None, "connection")
                session = requests.Session()
                continue
            if r.status_code == 200:
                self._record(text, int(r.json()["send_time"]), None)
            else:
                self._record(text, None, f"http {r.status_code}")

    def _thrift(self, client: int, port: int) -> None:
        rpc = idl.load_rpc()
        a = self.chat.split(":")[0]
        connection: Any = None
        n = 0
        while not self._stop.is_set():
            text = f"thrift-{client}-{n}"
            n += 1
            try:
                if connection is None:
                    connection = make_client(
                        rpc.IMService,
                        "127.0.0.1",
                        port,
                        timeout=int(CLIENT_TIMEOUT_S * 1000),
                        proto_factory=TCyBinaryProtocolFactory(),
                        trans_factory=TCyBufferedTransportFactory(),
                    )
                response = connection.Send(rpc.SendRequest(message=rpc.Message(Chat=self.chat, Text=text, Sender=a)))
            except Exception as e:
                self._record(text, None, "timeout" if isinstance(e, TimeoutError) else "thrift connection")
                if connection is not None:
                    connection.close()
                connection = None
                continue
            if response.Code == 0:
                self._record(text, response.SendTime, None)
            else:
                self._record(text, None, f"thrift {response.Code}")
        if connection is not None:
            connection.close()

    def verify(self, api: Api) -> dict[str, int]:
        """Every acknowledged send is stored exactly once, at its send_time."""
        stored: dict[str, list[int]] = {}
        for message in api.pull_all(self.chat):
            stored.setdefault(message["text"], []).append(message["send_time"])
        duplicated = {text: times for text, times in stored.items() if len(times) > 1}
        assert not duplicated, f"stored more than once: {list(duplicated.items())[:5]}"
        lost = [text for text, send_time in self.acked.items() if stored.get(text) != [send_time]]
        assert not lost, f"{len(lost)} acknowledged sends lost, e.g. {lost[:5]}"
        return {"acknowledged": len(self.acked), "stored": len(stored), **self.errors}
