"""Kitex's TTHeader transport: decoding a request's header, encoding a reply's.

TTHeader (cloudwego/gopkg protocol/ttheader, the reference) is the header
transport Kitex recommends. It is not Apache Thrift's THeader (magic 0x0FFF,
varint-coded headers), which no Kitex program sends and we refuse. One
message, all integers big-endian:

    u32 length            bytes after this field (header and payload)
    u16 magic 0x1000, u16 flags
    i32 seq id            the payload's seq id, echoed in the reply
    u16 header size       in 4-byte words, from here to the payload
    u8 protocol id        0: Thrift binary (the only one we accept)
    u8 transform count, then one u8 per transform
    info blocks until the header size is used up:
      0x00                padding (to the 4-byte boundary)
      0x01 u16 n, n * (u16 len, key, u16 len, value)     string key/values
      0x10 u16 n, n * (u16 key, u16 len, value)          int key/values
      0x11 u16 len, token                                ACL token
    payload               a strict binary message; TTHeaderFramed: the same,
                          after its own u32 length (Kitex >= 0.13's TTHeader)

The int keys we use (gopkg's metakey.go): 2 LogID, 3 FromService, 12
RPCTimeout (milliseconds; Kitex >= 0.9 sends it when the client sets one),
22 MsgType. Kitex's own server treats LogID as the call's log id; a client
that sets a request id through Kitex's metainfo sends it as a string key.

Pure encoding and decoding, nothing else: the transport layer checks the
payload's Thrift message, the server decides what the header means.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

MAGIC = 0x1000
APACHE_THEADER_MAGIC = 0x0FFF  # Apache Thrift's THeader: not this, refused
META_SIZE = 14  # length, magic, flags, seq id, header size
PROTOCOL_BINARY = 0

INFO_PADDING, INFO_KEY_VALUE, INFO_INT_KEY_VALUE, INFO_ACL_TOKEN = 0x00, 0x01, 0x10, 0x11

LOG_ID, FROM_SERVICE, RPC_TIMEOUT, MSG_TYPE = 2, 3, 12, 22
# String keys that carry a request id: Kitex's metainfo sends a value set with
# metainfo.WithPersistentValue(ctx, "REQUEST_ID", id) as the first one.
REQUEST_ID_KEYS = ("RPC_PERSIST_REQUEST_ID", "RPC_TRANSIT_REQUEST_ID")
REPLY_MSG_TYPE = "2"  # Thrift's REPLY, as Kitex's server writes it back

FLAG_STREAMING = 0x0002  # TTHeader streaming: another protocol, refused
MAX_HEADER_BYTES = 16384  # Kitex's headers are ~100 bytes; gopkg allows 256 KiB

_META = struct.Struct(">IHHiH")
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")


class BadHeader(ValueError):
    """Not a well-formed TTHeader message, or one we do not accept."""


@dataclass(frozen=True)
class Header:
    seq_id: int
    flags: int = 0
    int_info: dict[int, str] = field(default_factory=dict)
    str_info: dict[str, str] = field(default_factory=dict)

    @property
    def rpc_timeout_ms(self) -> int | None:
        """The caller's RPC timeout, if it sent a usable one."""
        value = self.int_info.get(RPC_TIMEOUT, "")
        return int(value) if value.isascii() and value.isdigit() and 0 < int(value) < 2**31 else None

    @property
    def request_id(self) -> str | None:
        """The log id Kitex carries (int key 2), else a metainfo request id."""
        for value in (self.int_info.get(LOG_ID), *(self.str_info.get(k) for k in REQUEST_ID_KEYS)):
            if value:
                return value
        return None

    @property
    def from_service(self) -> str | None:
        return self.int_info.get(FROM_SERVICE) or None


def is_ttheader(first: bytes) -> bool:
    """Whether a connection's first 8 bytes begin a TTHeader message (as Kitex tells it)."""
    return len(first) >= 6 and _U16.unpack_from(first, 4)[0] == MAGIC


def frame_length(data: bytes | bytearray | memoryview) -> int | None:
    """The whole message's size (with its length field), once 4 bytes are there."""
    return _U32.unpack_from(data)[0] + 4 if len(data) >= 4 else None


def decode(message: bytes | bytearray | memoryview) -> tuple[Header, memoryview]:
    """(header, payload) of one whole TTHeader message; BadHeader if it is not one."""
    data = memoryview(message)
    if len(data) < META_SIZE:
        raise BadHeader(f"{len(data)} bytes: shorter than a TTHeader's fixed part")
    length, magic, flags, seq_id, words = _META.unpack_from(data)
    if magic != MAGIC:
        raise BadHeader(f"magic {magic:#06x}, not TTHeader's {MAGIC:#06x}")
    if length + 4 != len(data):
        raise BadHeader(f"length field {length}, but the message has {len(data) - 4} bytes after it")
    if flags & FLAG_STREAMING:
        raise BadHeader("TTHeader streaming is not supported")
    header_size = words * 4
    if not 2 <= header_size <= MAX_HEADER_BYTES:
        raise BadHeader(f"header size {header_size} bytes (2-{MAX_HEADER_BYTES})")
    end = META_SIZE + header_size
    if end > len(data):
        raise BadHeader(f"header size {header_size} bytes runs past the message")
    info = data[META_SIZE:end]
    if info[0] != PROTOCOL_BINARY:
        raise BadHeader(f"protocol id {info[0]}: only Thrift binary (0) is supported")
    transforms = info[1]
    if transforms:
        raise BadHeader(f"{transforms} transforms: none is supported")
    int_info, str_info = _read_info(info, 2)
    return Header(seq_id, flags, int_info, str_info), data[end:]


def _read_info(info: memoryview, at: int) -> tuple[dict[int, str], dict[str, str]]:
    int_info: dict[int, str] = {}
    str_info: dict[str, str] = {}
    reader = _Reader(info, at)
    while not reader.done():
        kind = reader.u8()
        if kind == INFO_PADDING:
            continue
        if kind == INFO_KEY_VALUE:
            for _ in range(reader.u16()):
                name = reader.string()
                str_info[name] = reader.string()
        elif kind == INFO_INT_KEY_VALUE:
            for _ in range(reader.u16()):
                key = reader.u16()
                int_info[key] = reader.string()
        elif kind == INFO_ACL_TOKEN:
            reader.string()  # not ours to check; never logged
        else:
            raise BadHeader(f"unknown info id {kind:#04x}")
    return int_info, str_info


class _Reader:
    def __init__(self, data: memoryview, at: int) -> None:
        self._data, self._at = data, at

    def done(self) -> bool:
        return self._at >= len(self._data)

    def _take(self, n: int) -> memoryview:
        if self._at + n > len(self._data):
            raise BadHeader("an info block runs past the header")
        piece = self._data[self._at : self._at + n]
        self._at += n
        return piece

    def u8(self) -> int:
        return self._take(1)[0]

    def u16(self) -> int:
        return int(_U16.unpack(self._take(2))[0])

    def string(self) -> str:
        raw = self._take(self.u16())
        try:
            return str(raw, "utf-8")
        except UnicodeDecodeError:
            raise BadHeader("a header string is not UTF-8") from None


def encode(header: Header, payload: bytes) -> bytes:
    """One TTHeader message: `header`'s fields, then `payload` as it is
    (a framed payload already carries its own length)."""
    info = bytearray([PROTOCOL_BINARY, 0])
    if header.str_info:
        info += bytes([INFO_KEY_VALUE]) + _U16.pack(len(header.str_info))
        for key, value in header.str_info.items():
            info += _string(key) + _string(value)
    if header.int_info:
        info += bytes([INFO_INT_KEY_VALUE]) + _U16.pack(len(header.int_info))
        for int_key, value in header.int_info.items():
            info += _U16.pack(int_key) + _string(value)
    info += bytes(-len(info) % 4)
    meta = _META.pack(META_SIZE - 4 + len(info) + len(payload), MAGIC, header.flags, header.seq_id, len(info) // 4)
    return meta + bytes(info) + payload


def _string(value: str) -> bytes:
    raw = value.encode()
    if len(raw) > 0xFFFF:
        raise ValueError(f"a header string of {len(raw)} bytes (at most 65535)")
    return _U16.pack(len(raw)) + raw
