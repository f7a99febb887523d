"""Finding where an unframed Thrift call ends, as its bytes arrive in pieces.

The walk after each recv must resume where the previous one stopped: walking
the buffer from its start every time costs the square of the call's size
when a client trickles a large call (a 64 KB call in 100-byte pieces: 21 MB
walked, a second of CPU). Whatever the pieces, the bytes examined stay within
twice the call's size, and the outcome is the one of the whole call."""

from __future__ import annotations

import io
import random
import socket
import struct
from typing import Any

import pytest
from thriftpy2.protocol.binary import TBinaryProtocol

from bench.trickled_call import PieceSocket, read_in_pieces, trickled_call
from rpc_server.wire.message_check import Limits, Malformed, MessageWalker, message_length
from rpc_server.wire.transport import MessageReader
from tests.servers import Stack
from tests.test_hostile_thrift import HOSTILE

SPLITS = [(8_000, 1), (8_000, 7), (65_000, 100), (65_000, 65_000)]


@pytest.mark.parametrize(("size", "piece"), SPLITS, ids=[f"{s}B-in-{p}B-pieces" for s, p in SPLITS])
def test_bytes_examined_stay_within_twice_the_call(rpc: Any, size: int, piece: int) -> None:
    call = trickled_call(rpc, size)
    message, examined = read_in_pieces(call, piece)
    assert message == call
    within = examined <= 2 * len(call)
    assert within, f"{examined} bytes examined for a {len(call)}-byte call in {piece}-byte pieces"


def test_calls_one_after_another_in_one_buffer_are_each_walked_once(rpc: Any) -> None:
    first, second = trickled_call(rpc, 4_000, seqid=1), trickled_call(rpc, 6_000, seqid=2)
    reader = MessageReader(PieceSocket(first + second, 33), Limits(), 60.0, 60.0)  # type: ignore[arg-type]
    assert reader.next_message() == first
    assert reader.next_message() == second
    assert reader.next_message() is None
    size = len(first) + len(second)
    assert reader.examined <= 2 * size, f"{reader.examined} bytes examined for {size} bytes of calls"


def _outcome(data: bytes, piece: int, limits: Limits) -> object:
    """What a walker fed `data` in `piece`-byte pieces says: a length, "incomplete", or the Malformed text."""
    return _outcome_and_examined(data, piece, limits)[0]


def _outcome_and_examined(data: bytes, piece: int, limits: Limits) -> tuple[object, int]:
    walker = MessageWalker(limits)
    try:
        for end in range(piece, len(data) + piece, piece):
            length = walker.feed(data[: min(end, len(data))])
            if length is not None:
                return length, walker.examined
    except Malformed as e:
        return f"malformed: {e}", walker.examined
    return "incomplete", walker.examined


def _samples(rpc: Any) -> dict[str, bytes]:
    call = trickled_call(rpc, 3_000)
    header = call[:12] + call[12:16]  # version, name length, "Pull", seqid
    field = header + b"\x0f\x00\x63"  # an unknown list field in the arguments
    list_of_one_i32 = b"\x08" + struct.pack(">i", 1) + b"\0" * 4
    return {
        **HOSTILE,
        "a call": call,
        "a call, then the next one's first bytes": call + call[:20],
        "truncated": call[:-1],
        "map<string, list<double>>": field[:-3]
        + b"\x0d\x00\x63\x0b\x0f"
        + struct.pack(">i", 2)
        + b"".join(struct.pack(">i", 1) + b"k" + b"\x04" + struct.pack(">i", 2) + b"\x00" * 16 for _ in range(2))
        + b"\x00",
        "set<i64> over the size limit": field[:-3] + b"\x0e\x00\x63\x0a" + struct.pack(">i", 9000),
        "list<list<i32>> nested": field + b"\x0f" + struct.pack(">i", 3) + list_of_one_i32 * 3 + b"\x00",
        "unknown element type": field + b"\x07" + struct.pack(">i", 1),
        "unknown element type, no length yet": field + b"\x07",
        "unknown map value type, no length yet": field[:-3] + b"\x0d\x00\x63\x0b\x01",
        "unknown field type": header + b"\x05\x00\x01",
        "not strict binary": b"\x00\x00\x00\x04Pull",
        "string larger than the message limit": field[:-3] + b"\x0b\x00\x01" + struct.pack(">i", 4_090),
        "nested 40 deep": header + b"\x0c\x00\x01" * 40,
    }


@pytest.mark.parametrize("piece", [1, 3, 7, 100])
def test_any_split_gives_the_outcome_of_the_whole(rpc: Any, piece: int) -> None:
    limits = Limits(max_bytes=4_096, max_string=4_096)
    for name, data in _samples(rpc).items():
        whole = _outcome(data, len(data) or 1, limits)
        assert _outcome(data, piece, limits) == whole, f"{name}: in {piece}-byte pieces"
        if isinstance(whole, int):
            assert message_length(data, limits) == whole


def test_any_split_of_damaged_calls_gives_the_outcome_of_the_whole(rpc: Any) -> None:
    """Calls with bytes changed, cut or inserted at random (seeded): every
    outcome is reached the same way in pieces, within twice the bytes."""
    rng = random.Random(12)
    calls = list(_samples(rpc).values())
    limits = Limits(max_bytes=600, max_string=300, max_items=50, max_depth=4)
    for _ in range(1_500):
        data = bytearray(rng.choice(calls)[:700])
        for _ in range(rng.randint(1, 3)):
            at = rng.randrange(len(data) + 1)
            damage = rng.random()
            if damage < 0.5 and at < len(data):
                data[at] = rng.choice([0, 1, 8, 11, 12, 13, 15, 0x7F, 0xFF, rng.randrange(256)])
            elif damage < 0.7:
                del data[at:]
            else:
                data[at:at] = rng.randbytes(rng.randint(1, 5))
        whole = _outcome(bytes(data), len(data) or 1, limits)
        for piece in (1, 2, 7):
            walker_outcome, examined = _outcome_and_examined(bytes(data), piece, limits)
            assert walker_outcome == whole, f"{bytes(data)!r} in {piece}-byte pieces"
            assert examined <= 2 * len(data)


@pytest.mark.parametrize("piece", [1, 7, 10_000])
def test_a_call_of_exactly_the_size_limit_passes_and_one_byte_more_is_refused_at_once(rpc: Any, piece: int) -> None:
    call = trickled_call(rpc, 600)
    assert call[-1] == 0  # it ends with the STOP of its arguments: the byte beyond the limit
    assert _outcome(call, piece, Limits(max_bytes=len(call))) == len(call)
    over = f"malformed: message larger than {len(call) - 1} bytes"
    assert _outcome(call, piece, Limits(max_bytes=len(call) - 1)) == over
    # Refused as soon as the limit is reached, not when the deadline passes.
    assert _outcome(call[:-1], piece, Limits(max_bytes=len(call) - 1)) == over


def test_the_sample_outcomes_are_what_a_server_must_say(rpc: Any) -> None:
    """The samples above cover every kind of outcome, so the split test compares something."""
    limits = Limits(max_bytes=4_096, max_string=4_096)
    outcomes = {name: _outcome(data, len(data) or 1, limits) for name, data in _samples(rpc).items()}
    assert isinstance(outcomes["a call"], int)
    assert outcomes["a call, then the next one's first bytes"] == outcomes["a call"]
    assert isinstance(outcomes["map<string, list<double>>"], int)
    assert isinstance(outcomes["list<list<i32>> nested"], int)
    assert outcomes["truncated"] == "incomplete"
    assert outcomes["nested 40 deep"] == "malformed: nested too deep"
    assert outcomes["unknown element type"] == "malformed: unknown type code 7"
    assert outcomes["unknown element type, no length yet"] == "malformed: unknown type code 7"
    assert outcomes["unknown map value type, no length yet"] == "malformed: unknown type code 1"
    assert outcomes["set<i64> over the size limit"] == "malformed: container length 9000"
    assert outcomes["string larger than the message limit"] == "malformed: message larger than 4096 bytes"


def test_a_trickled_large_call_is_answered(stack: Stack, rpc: Any) -> None:
    """A 64 KB call sent in 100-byte pieces on a real socket, then a small call
    on the same connection: both answered, in order."""
    large, small = trickled_call(rpc, 65_000, seqid=7), trickled_call(rpc, 100, seqid=8)
    with socket.create_connection(("127.0.0.1", stack.rpc.port), timeout=30) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i in range(0, len(large), 100):
            sock.sendall(large[i : i + 100])
        sock.sendall(small)
        replies = _read_replies(sock, rpc, 2)
    assert [(seqid, result.success.Code) for seqid, result in replies] == [(7, 0), (8, 0)]


def _read_replies(sock: socket.socket, rpc: Any, count: int) -> list[tuple[int, Any]]:
    """(seqid, Pull_result) of `count` buffered replies."""
    data = b""
    replies: list[tuple[int, Any]] = []
    while len(replies) < count:
        chunk = sock.recv(65536)
        assert chunk, f"the server closed the connection after {len(replies)} replies"
        data += chunk
        while data:
            source = _Bytes(data)
            protocol = TBinaryProtocol(source)
            try:
                _, _, seqid = protocol.read_message_begin()
                result = rpc.IMService.Pull_result()
                result.read(protocol)
            except EOFError:
                break  # not whole yet
            replies.append((seqid, result))
            data = data[source.io.tell() :]  # what the reply left
    return replies


class _Bytes:
    """A read-only transport over bytes for thriftpy2's pure-Python protocol."""

    def __init__(self, data: bytes) -> None:
        self.io = io.BytesIO(data)

    def read(self, size: int) -> bytes:
        chunk = self.io.read(size)
        if len(chunk) < size:
            raise EOFError
        return chunk
