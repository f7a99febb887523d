"""Per-connection framing: detection, then reading one whole message at a time.

A Thrift client may speak strict binary over a buffered (unframed) stream,
the Kitex <= 0.12 default, or over framed transport (Kitex >= 0.13, many
Apache clients). Both are recognised from a connection's first 8 bytes, as a
Kitex server does:

    80 01 .. ..  .. .. .. ..     buffered: strict binary version word first
    LL LL LL LL  80 01 .. ..     framed: a 4-byte length, then the version
    LL LL LL LL  0f ff .. ..     TTHeader (Kitex's header transport)

TTHeader, compact protocol and non-strict binary are refused, as Kitex's
server refuses the last two.

Each message is then read whole before anything decodes it, under two
separate clocks: a long idle timeout for the first byte (pooled clients keep
idle connections for minutes), and a short deadline for the rest of the
message once it has begun (a client sending a byte a second cannot hold a
connection). message_check bounds its size and shape; an unframed message
is walked as it arrives, each walk resuming where the last one stopped, so
its bytes are examined once however the client splits it.
"""

from __future__ import annotations

import enum
import socket
import struct
import time
from typing import Any

from thriftpy2.transport import TCyBufferedTransport, TCyFramedTransport

from rpc_server.wire.message_check import Incomplete, Limits, Malformed, MessageWalker, message_length

SNIFF_BYTES = 8
RECV_BYTES = 65536
_STRICT_VERSION = b"\x80\x01"
_TTHEADER_MAGIC = b"\x0f\xff"
_COMPACT_ID = 0x82
_FRAME = struct.Struct(">i")


class Framing(enum.Enum):
    BUFFERED = "buffered"
    FRAMED = "framed"
    TTHEADER = "TTHeader"
    UNKNOWN = "unknown"


def detect(first: bytes) -> Framing:
    if first[:2] == _STRICT_VERSION:
        return Framing.BUFFERED
    if first[4:6] == _STRICT_VERSION:
        return Framing.FRAMED
    if first[4:6] == _TTHEADER_MAGIC:
        return Framing.TTHEADER
    return Framing.UNKNOWN


def describe_unknown(first: bytes) -> str:
    """A hint for the log line when a connection is refused."""
    if first[:1] == bytes([_COMPACT_ID]) or first[4:5] == bytes([_COMPACT_ID]):
        return "compact protocol is not supported; use strict binary"
    if first[:4] in (b"GET ", b"POST", b"PUT ", b"HEAD"):
        return "this is the Thrift port, not HTTP"
    return "not strict binary Thrift (non-strict binary is refused, as Kitex does)"


class MessageTimeout(Exception):
    """A message began but did not arrive whole within the deadline."""


class PeerClosed(Exception):
    """The peer closed the connection in the middle of a message."""


class MessageReader:
    """Reads whole messages (frame payloads, when framed) from a socket."""

    def __init__(self, sock: socket.socket, limits: Limits, idle_timeout_s: float, message_timeout_s: float) -> None:
        self._sock = sock
        self.framing = Framing.BUFFERED  # set from detect(first_bytes())
        self._limits = limits
        self._idle_timeout_s = idle_timeout_s
        self._message_timeout_s = message_timeout_s
        self._buffer = bytearray()
        self._walker = MessageWalker(limits)  # of the buffered message being read
        self.examined = 0  # bytes walked over by the finished messages' walks, for the tests
        self._deadline: float | None = None  # for the message being read
        self.idle = False  # waiting for the first byte of the next message

    def first_bytes(self) -> bytes:
        """Read the bytes that tell the framing (fewer only if the peer closed)."""
        if self._wait_for_data():
            while len(self._buffer) < SNIFF_BYTES and self._recv_before_deadline():
                pass
        return bytes(self._buffer[:SNIFF_BYTES])

    def next_message(self) -> bytes | None:
        """The next whole message, or None if the peer closed between messages."""
        if not self._buffer:
            if not self._wait_for_data():
                return None
        elif self._deadline is None:  # the next message was already buffered
            self._deadline = time.monotonic() + self._message_timeout_s
        while True:
            try:
                start, end = self._measure()
                break
            except Incomplete:
                if not self._recv_before_deadline():
                    raise PeerClosed("in the middle of a message") from None
        self._deadline = None
        self.examined += self._walker.examined
        self._walker = MessageWalker(self._limits)
        message = bytes(self._buffer[start:end])
        del self._buffer[:end]
        return message

    def _wait_for_data(self) -> bool:
        """Wait (idle timeout) for the first bytes of a message; its deadline starts then."""
        self._sock.settimeout(self._idle_timeout_s)
        self.idle = True
        try:
            arrived = self._recv()
        finally:
            self.idle = False
        if arrived:
            self._deadline = time.monotonic() + self._message_timeout_s
        return arrived

    def _recv_before_deadline(self) -> bool:
        assert self._deadline is not None
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            raise MessageTimeout(f"message not complete within {self._message_timeout_s}s")
        self._sock.settimeout(remaining)
        return self._recv()

    def _recv(self) -> bool:
        chunk = self._sock.recv(RECV_BYTES)
        self._buffer += chunk
        return bool(chunk)

    def _measure(self) -> tuple[int, int]:
        """(start, end) of the first message in the buffer."""
        if self.framing is Framing.BUFFERED:
            length = self._walker.feed(self._buffer)
            if length is None:
                raise Incomplete
            return 0, length
        if len(self._buffer) < 4:
            raise Incomplete
        size = _FRAME.unpack_from(self._buffer)[0]
        if not 0 < size <= self._limits.max_bytes:
            raise Malformed(f"frame length {size}")
        if len(self._buffer) < 4 + size:
            raise Incomplete
        try:
            length = message_length(memoryview(self._buffer)[4 : 4 + size], self._limits)
        except Incomplete:
            raise Malformed("frame shorter than its message") from None
        if length != size:
            raise Malformed("frame longer than its message")
        return 4, 4 + size


class _SocketWriter:
    """The byte sink below thriftpy2's Cython transports (which only
    thriftpy2's Cython protocol accepts), for replies."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def write(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read(self, size: int) -> bytes:
        raise OSError("replies only")

    def flush(self) -> None:
        pass

    def is_open(self) -> bool:
        return True

    def close(self) -> None:
        self.sock.close()


def reply_transport(sock: socket.socket, framing: Framing) -> Any:
    """Where replies are written: framed if the requests were."""
    writer = _SocketWriter(sock)
    return TCyFramedTransport(writer) if framing is Framing.FRAMED else TCyBufferedTransport(writer)
