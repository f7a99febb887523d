"""CPU an RPC server spends on one large unframed call sent in small pieces.

    python -m bench.trickled_call [--size 65000] [--piece 100]

A buffered (unframed) Thrift call carries no length: the server walks the
bytes received so far to find where the call ends, after every recv. Here
one call of about 64 KB (a Pull with an unknown field holding a list of
small structs, which the server must walk element by element) is sent in
100-byte pieces:

- in process: rpc_server.wire.transport.MessageReader fed one piece per recv,
  the walk's CPU time and the bytes it examined (exactly one walk per piece);
- a real rpc_server (with its own redis-server): the server process's CPU
  time (utime + stime from /proc) for the call, which must still be answered.
"""

from __future__ import annotations

import argparse
import socket
import struct
import tempfile
import time
from pathlib import Path
from typing import Any

from thriftpy2.protocol import TBinaryProtocol
from thriftpy2.thrift import TMessageType
from thriftpy2.transport import TMemoryBuffer

import idl
from rpc_server.wire.message_check import Limits
from rpc_server.wire.transport import MessageReader

_ELEMENT = 8  # a struct {1: i32}: field header 3, i32 4, stop 1


def trickled_call(rpc: Any, size: int = 65000, seqid: int = 1) -> bytes:
    """A Pull call of about `size` bytes: a real request, then an unknown
    field (id 99) holding a list of small structs, which a server skips."""
    buffer = TMemoryBuffer()
    protocol = TBinaryProtocol(buffer)
    protocol.write_message_begin("Pull", TMessageType.CALL, seqid)
    rpc.IMService.Pull_args(req=rpc.PullRequest(Chat="a:b", Cursor=0, Limit=1)).write(protocol)
    protocol.write_message_end()
    call = buffer.getvalue()
    assert call[-1:] == b"\x00"  # the arguments' STOP
    count = max(0, (size - len(call) - 8) // _ELEMENT)
    elements = b"".join(b"\x08\x00\x01" + struct.pack(">i", i) + b"\x00" for i in range(count))
    unknown = b"\x0f" + struct.pack(">h", 99) + b"\x0c" + struct.pack(">i", count) + elements
    return call[:-1] + unknown + call[-1:]


class PieceSocket:
    """Stands in for a socket: each recv returns the next piece."""

    def __init__(self, data: bytes, piece: int) -> None:
        self._pieces = [data[i : i + piece] for i in range(0, len(data), piece)]
        self.recvs = 0

    def settimeout(self, timeout: float | None) -> None:
        pass

    def recv(self, size: int) -> bytes:
        if self.recvs == len(self._pieces):
            return b""
        piece = self._pieces[self.recvs]
        self.recvs += 1
        return piece


def read_in_pieces(call: bytes, piece: int) -> tuple[bytes | None, int]:
    """(the message a MessageReader reads, the bytes its walks examined)."""
    reader = MessageReader(PieceSocket(call, piece), Limits(), 60.0, 60.0)  # type: ignore[arg-type]
    message = reader.next_message()
    return message, reader.examined


def _in_process(call: bytes, piece: int) -> None:
    started = time.process_time()
    message, examined = read_in_pieces(call, piece)
    cpu = time.process_time() - started
    assert message == call
    print(f"in process: {len(call)} bytes in {piece}-byte pieces: {cpu:.3f} s CPU, {examined} bytes examined")


def _cpu_s(pid: int) -> float:
    import os

    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _real_server(rpc: Any, call: bytes, piece: int, gap_s: float) -> None:
    from tests.servers import RedisServer, RpcServer

    with tempfile.TemporaryDirectory() as directory:
        redis_server = RedisServer(Path(directory) / "redis")
        redis_server.start()
        server = RpcServer(Path(directory), redis_server.url, RPC_MESSAGE_TIMEOUT_S="120")
        server.start()
        try:
            with socket.create_connection(("127.0.0.1", server.port)) as sock:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                before, started = _cpu_s(server.pid), time.monotonic()
                for i in range(0, len(call), piece):
                    sock.sendall(call[i : i + piece])
                    time.sleep(gap_s)  # a bench, not a test: lets each piece be its own recv
                sock.settimeout(120)
                reply = sock.recv(65536)
                elapsed, cpu = time.monotonic() - started, _cpu_s(server.pid) - before
            assert reply[:4] == b"\x80\x01\x00\x02", reply[:16]  # a REPLY
            print(
                f"real server: {len(call)} bytes in {piece}-byte pieces ({gap_s * 1000:.0f} ms apart): "
                f"{cpu:.2f} s CPU in the server, answered after {elapsed:.1f} s"
            )
        finally:
            server.stop()
            redis_server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=65000)
    parser.add_argument("--piece", type=int, default=100)
    parser.add_argument("--gap-ms", type=float, default=2.0, help="pause between pieces sent to the real server")
    args = parser.parse_args()
    rpc = idl.load_rpc()
    call = trickled_call(rpc, args.size)
    _in_process(call, len(call))
    _in_process(call, args.piece)
    _real_server(rpc, call, args.piece, args.gap_ms / 1000)


if __name__ == "__main__":
    main()
