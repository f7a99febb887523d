"""Serving the calls of one connection concurrently, replies written together.

A client that multiplexes (http_server.rpc_mux) sends many calls on one
connection without waiting for each reply. Served one after another, a
Send waiting on Redis would hold up every call behind it; so each call
runs in a greenlet of its own (at most `max_in_flight` per connection:
beyond, the connection is not read until one finishes, and TCP pushes
back on the client), and its reply, tagged with the call's seqid, goes out
when it is ready, in whatever order the calls finish. The replies finished
in the same turn of the event loop go out in one write, by the first of
them (after a gevent.sleep(0) that lets the others add theirs).

A client that sends one call at a time (Apache, Kitex, thriftpy2's own
client) is served as before, each call in the connection's own greenlet,
one reply per call, in order: a connection turns concurrent only once a
call arrives in the same read as the one before it (a greenlet per call
would cost such a client a fifth more CPU per call, measured).

A call that raises (the handler answers every failure with a Code, so this
is a bug, or a malformed message thriftpy2 rejected) ends the connection,
as it did when calls were served one by one.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import struct
from typing import Any

import gevent
from gevent.pool import Pool
from thriftpy2.protocol import TCyBinaryProtocol
from thriftpy2.thrift import TProcessor
from thriftpy2.transport import TCyMemoryBuffer

from rpc_server.wire.transport import Framing, MessageReader

log = logging.getLogger(__name__)

_FRAME = struct.Struct(">i")


class ConnectionCalls:
    """The calls of one connection: read, run concurrently, answered."""

    def __init__(
        self,
        processor: TProcessor,
        sock: socket.socket,
        framing: Framing,
        message_timeout_s: float,
        max_in_flight: int,
    ) -> None:
        self._processor = processor
        self._sock = sock
        self._framed = framing is Framing.FRAMED
        self._message_timeout_s = message_timeout_s
        self._calls = Pool(max_in_flight)
        self._out = bytearray()
        self._flushing = False
        self._failed: BaseException | None = None
        self._concurrent = False  # until the client shows it sends calls without waiting

    def serve(self, reader: MessageReader, stopping: Any) -> None:
        """Read calls until the peer closes or `stopping()`; then let the
        calls in flight finish and be answered. Raises what ended the
        connection early (a failed write, a call that raised)."""
        try:
            while not stopping() and self._failed is None:
                message = reader.next_message()
                if message is None:
                    break
                if reader.buffered:  # a call came in behind this one: the client does not wait
                    self._concurrent = True
                if self._concurrent:
                    self._calls.spawn(self._call, message)  # waits while max_in_flight calls run
                else:
                    self._call(message)
        finally:
            self._calls.join()
            self._flush()
        if self._failed is not None:
            raise self._failed

    def _call(self, message: bytes) -> None:
        out = TCyMemoryBuffer()
        try:
            self._processor.process(TCyBinaryProtocol(TCyMemoryBuffer(message)), TCyBinaryProtocol(out))
        except Exception as e:
            self._fail(e)
            return
        reply = out.getvalue()
        if not reply:
            return  # a oneway call
        if self._framed:
            self._out += _FRAME.pack(len(reply))
        self._out += reply
        if not self._flushing:  # the first reply of this loop turn: it writes them all
            self._flushing = True
            try:
                if len(self._calls) > 1:  # others may finish in this turn: let them add theirs first
                    gevent.sleep(0)
            finally:
                self._flush()

    def _flush(self) -> None:
        """Write every reply ready, in one write; a client that does not read
        them within the message timeout loses its connection."""
        self._flushing = False
        if not self._out or self._failed is not None:
            return
        data, self._out = bytes(self._out), bytearray()
        try:
            with gevent.Timeout(self._message_timeout_s, TimeoutError("client does not read its replies")):
                self._sock.sendall(data)
        except (OSError, TimeoutError) as e:
            self._fail(e)

    def _fail(self, error: BaseException) -> None:
        if self._failed is None:
            self._failed = error
            # Wake the reading greenlet (through a duplicate: see thrift_server._end_reading): it stops.
            with (
                contextlib.suppress(OSError),
                socket.fromfd(self._sock.fileno(), self._sock.family, self._sock.type) as duplicate,
            ):
                duplicate.shutdown(socket.SHUT_RD)
