"""Kitex's TTHeader codec (rpc_server.wire.ttheader), pure logic: real Kitex
requests decoded, replies encoded, and malformed headers refused."""

from __future__ import annotations

import struct

import pytest

from rpc_server.wire import ttheader
from rpc_server.wire.ttheader import BadHeader, Header

# Captured from the Kitex clients under tests/kitex/ (a Send from the seed
# template's IDL, with transport.TTHeader, ClientTTHeaderHandler and
# MetainfoClientHandler, request id "req-1" set with metainfo, RPC timeout 700 ms).
# v0.5.2: payload unframed, no RPC timeout in the header.
KITEX_0_5_2 = bytes.fromhex(
    "000000b81000000000000001001b000001000100165250435f504552534953545f524551554553545f49440005726571"
    "2d31100006001400000006000f64656d6f2e7270632e7365727665720009000453656e64001600013100010008756e66"
    "72616d65640003001064656d6f2e687474702e73657276657200800100010000000453656e64000000010c00010c0001"
    "0a000400000000000000000b00010000000561313a61320b00020000000268690b0003000000026131000000"
)
# v0.16.3: asking for TTHeader gives TTHeaderFramed; the RPC timeout travels (key 12).
KITEX_0_16_3 = bytes.fromhex(
    "000000d010000000000000010020000001000200165250435f504552534953545f524551554553545f49440005726571"
    "2d31000369736e0009494d536572766963651000070003001064656d6f2e687474702e73657276657200140000000600"
    "0f64656d6f2e7270632e7365727665720009000453656e640016000131000100066672616d6564000c00033730300000"
    "0042800100010000000453656e64000000010c00010c00010a000400000000000000000b00010000000561313a61320b"
    "00020000000268690b0003000000026131000000"
)
STRICT_SEND_CALL = b"\x80\x01\x00\x01\x00\x00\x00\x04Send\x00\x00\x00\x01"


def test_kitex_0_5_2_request_decodes() -> None:
    header, payload = ttheader.decode(KITEX_0_5_2)
    assert (header.seq_id, header.flags) == (1, 0)
    assert bytes(payload).startswith(STRICT_SEND_CALL)  # unframed payload
    assert header.int_info[ttheader.FROM_SERVICE] == "demo.http.server"
    assert header.int_info[9] == "Send"  # ToMethod
    assert header.int_info[1] == "unframed"  # TransportType
    assert (header.request_id, header.from_service, header.rpc_timeout_ms) == ("req-1", "demo.http.server", None)


def test_kitex_0_16_3_request_decodes_with_its_timeout_and_a_framed_payload() -> None:
    header, payload = ttheader.decode(KITEX_0_16_3)
    assert header.int_info[1] == "framed"
    assert struct.unpack(">I", payload[:4])[0] == len(payload) - 4
    assert bytes(payload[4:]).startswith(STRICT_SEND_CALL)
    assert header.str_info["isn"] == "IMService"
    assert (header.request_id, header.from_service, header.rpc_timeout_ms) == ("req-1", "demo.http.server", 700)


def test_a_kitex_request_is_recognised_from_its_first_8_bytes() -> None:
    assert ttheader.is_ttheader(KITEX_0_5_2[:8]) and ttheader.is_ttheader(KITEX_0_16_3[:8])
    assert not ttheader.is_ttheader(struct.pack(">I", 14) + b"\x0f\xff\x00\x00")  # Apache's THeader
    assert not ttheader.is_ttheader(STRICT_SEND_CALL[:8])


def test_encode_then_decode_gives_the_same_header_and_payload() -> None:
    header = Header(seq_id=-7, flags=1, int_info={ttheader.MSG_TYPE: "2", 0xFFFF: "é"}, str_info={"k": "v" * 300})
    encoded = ttheader.encode(header, STRICT_SEND_CALL)
    assert (len(encoded) - 14 - len(STRICT_SEND_CALL)) % 4 == 0  # the header is padded to 4-byte words
    assert ttheader.frame_length(encoded) == len(encoded)
    decoded, payload = ttheader.decode(encoded)
    assert (decoded, bytes(payload)) == (header, STRICT_SEND_CALL)


def test_the_reply_header_kitex_decodes_carries_the_seq_id_and_the_message_type() -> None:
    reply = ttheader.encode(Header(seq_id=1, int_info={ttheader.MSG_TYPE: ttheader.REPLY_MSG_TYPE}), b"")
    fixed = "00000016" + "1000" + "0000" + "00000001" + "0003"  # length, magic, flags, seq id, 3 header words
    info = "00" + "00" + "10" + "0001" + "0016" + "0001" + "32" + "0000"  # binary, no transform, MsgType "2", padding
    assert reply.hex() == fixed + info


def _message(info: bytes, payload: bytes = STRICT_SEND_CALL, flags: int = 0, words: int | None = None) -> bytes:
    info += bytes(-len(info) % 4)
    size = len(info) // 4 if words is None else words
    rest = struct.pack(">HHiH", ttheader.MAGIC, flags, 1, size) + info + payload
    return struct.pack(">I", len(rest)) + rest


@pytest.mark.parametrize(
    ("message", "why"),
    [
        (_message(b"\x00\x00\x20"), "unknown info id 0x20"),
        (_message(b"\x02\x00"), "protocol id 2"),  # compact: refused, as Kitex refuses it
        (_message(b"\x00\x01\x05"), "transforms"),
        (_message(b"\x00\x00\x10\x00\x01\x00\x0c\x00\xff"), "runs past the header"),  # a value longer than the header
        (_message(b"\x00\x00\x01\x00\x05"), "runs past the header"),  # 5 pairs announced, none there
        (_message(b"\x00\x00\x01\x00\x01\x00\x01\xff\x00\x00"), "not UTF-8"),
        (_message(b"\x00\x00", words=0), "header size 0"),
        (_message(b"\x00\x00", words=0xFFFF), "header size 262140"),
        (_message(b"\x00\x00", payload=b"", words=100), "header size 400"),
        (_message(b"\x00\x00", flags=ttheader.FLAG_STREAMING), "streaming"),
        (_message(b"\x00\x00")[:-1], "length field"),
        (_message(b"\x00\x00")[:10], "shorter than a TTHeader"),
        (struct.pack(">I", 14) + b"\x0f\xff" + bytes(12), "magic 0x0fff"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_malformed_headers_are_refused_with_a_reason(message: bytes, why: str) -> None:
    with pytest.raises(BadHeader, match=why):
        ttheader.decode(message)


def test_header_values_that_are_no_use_are_ignored() -> None:
    for timeout in ("", "-5", "abc", "\uff11\uff12", "99999999999"):
        assert Header(0, int_info={ttheader.RPC_TIMEOUT: timeout}).rpc_timeout_ms is None
    assert Header(0, int_info={ttheader.LOG_ID: ""}).request_id is None
    assert (
        Header(0, int_info={ttheader.LOG_ID: "log-9"}, str_info={"RPC_PERSIST_REQUEST_ID": "r"}).request_id == "log-9"
    )
