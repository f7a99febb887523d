"""Per-connection transport detection, as a Kitex server does it.

A Thrift client may speak strict binary over a buffered (unframed) stream,
the Kitex <= 0.12 default, or over framed transport (Kitex >= 0.13, many
Apache clients). Both are recognised from a connection's first 8 bytes:

    80 01 .. ..  .. .. .. ..     buffered: strict binary version word first
    LL LL LL LL  80 01 .. ..     framed: a 4-byte length, then the version
    LL LL LL LL  0f ff .. ..     TTHeader (Kitex's header transport)

TTHeader, compact protocol and non-strict binary are refused, as Kitex's
server refuses the last two: we log why and close the connection.
"""

from __future__ import annotations

import enum
import socket
from typing import Any

from thriftpy2.transport import TCyBufferedTransport, TCyFramedTransport, TTransportException

SNIFF_BYTES = 8
_STRICT_VERSION = b"\x80\x01"
_TTHEADER_MAGIC = b"\x0f\xff"
_COMPACT_ID = 0x82


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


def read_prefix(sock: socket.socket, size: int = SNIFF_BYTES) -> bytes:
    """Read up to `size` bytes; fewer only if the peer closed first."""
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            break
        data += chunk
    return data


class SocketTransport:
    """The raw byte stream below thriftpy2's Cython transports.

    thriftpy2's Cython protocol only accepts its Cython transports, which in
    turn read from any object with read/write/flush; this one hands back the
    bytes consumed by detection before reading the socket again.
    """

    def __init__(self, sock: socket.socket, prefix: bytes) -> None:
        self.sock = sock
        self._prefix = prefix

    def read(self, size: int) -> bytes:
        if self._prefix:
            data, self._prefix = self._prefix[:size], self._prefix[size:]
            return data
        data = self.sock.recv(size)
        if not data:
            raise TTransportException(TTransportException.END_OF_FILE, "peer closed the connection")
        return data

    def write(self, data: bytes) -> None:
        self.sock.sendall(data)

    def flush(self) -> None:
        pass

    def is_open(self) -> bool:
        return True

    def close(self) -> None:
        self.sock.close()


def open_transport(sock: socket.socket, prefix: bytes, framing: Framing) -> Any:
    raw = SocketTransport(sock, prefix)
    if framing is Framing.FRAMED:
        return TCyFramedTransport(raw)
    return TCyBufferedTransport(raw)
