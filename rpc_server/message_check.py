"""Find where a strict-binary Thrift message ends, checking it on the way.

thriftpy2's Cython protocol trusts what it reads: a string length of 2 GiB
makes it allocate 2 GiB, and a container of 10^9 elements of a type it
skips without reading anything (an unknown field's list<void>) spins 10^9
times with every other client waiting (1.6 s measured; nested, for ever).
It has no length limits to set (0.7.1). So the server reads each message
whole and walks it here first, before thriftpy2 decodes it from memory:

- every type code is a real Thrift type;
- a string is at most `max_string` bytes;
- a container's element count is at most `max_items`, and can fit in the
  bytes that remain of `max_bytes` (every element takes at least one byte,
  so the walk is bounded by the message's size);
- nesting is at most `max_depth` deep;
- the whole message is at most `max_bytes`.

The walk never builds values, so it costs far less than decoding.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

_I16 = struct.Struct(">h")
_I32 = struct.Struct(">i")
_STRICT_VERSION_MASK, _VERSION_1 = 0xFFFF0000, 0x80010000

STOP, BOOL, BYTE, DOUBLE, I16, I32, I64, STRING, STRUCT, MAP, SET, LIST = 0, 2, 3, 4, 6, 8, 10, 11, 12, 13, 14, 15
_FIXED = {BOOL: 1, BYTE: 1, DOUBLE: 8, I16: 2, I32: 4, I64: 8}
_MIN_SIZE = {**_FIXED, STRING: 4, STRUCT: 1, MAP: 6, SET: 5, LIST: 5}  # smallest encoding of each type


class Incomplete(Exception):
    """More bytes are needed to tell where the message ends."""


class Malformed(Exception):
    """Not a well-formed strict binary message, or over a limit."""


@dataclass(frozen=True)
class Limits:
    max_bytes: int = 65536
    max_string: int = 65536
    max_items: int = 65536
    max_depth: int = 32
    max_name: int = 256


def message_length(data: bytes | bytearray | memoryview, limits: Limits) -> int:
    """The length of the message at the start of `data`.

    Raises Incomplete if `data` ends first (and is still within the
    limits), or Malformed.
    """
    return _Walk(data, limits).message()


class MessageWalker:
    """Tells where one message ends as its bytes arrive: feed() it the
    bytes received so far (from the message's start) after each recv.

    `examined` counts the bytes its walks passed over, for the tests."""

    def __init__(self, limits: Limits) -> None:
        self._limits = limits
        self.examined = 0

    def feed(self, data: bytes | bytearray | memoryview) -> int | None:
        """The message's length, or None if more bytes are needed."""
        walk = _Walk(data, self._limits)
        try:
            length = walk.message()
        except Incomplete:
            self.examined += min(walk.pos, walk.end)
            return None
        self.examined += length
        return length


class _Walk:
    __slots__ = ("data", "end", "limits", "pos")

    def __init__(self, data: bytes | bytearray | memoryview, limits: Limits) -> None:
        self.data, self.limits, self.pos = data, limits, 0
        self.end = min(len(data), limits.max_bytes)

    def _take(self, n: int) -> int:
        start = self.pos
        self.pos += n
        if self.pos > self.end:
            if self.pos > self.limits.max_bytes:
                raise Malformed(f"message larger than {self.limits.max_bytes} bytes")
            raise Incomplete
        return start

    def _i32(self) -> int:
        value: int = _I32.unpack_from(self.data, self._take(4))[0]
        return value

    def _type(self) -> int:
        code = self.data[self._take(1)]
        if code not in _MIN_SIZE:
            raise Malformed(f"unknown type code {code}")
        return code

    def message(self) -> int:
        version = self._i32() & 0xFFFFFFFF
        if version & _STRICT_VERSION_MASK != _VERSION_1:
            raise Malformed("not a strict binary message")
        name = self._i32()
        if not 0 <= name <= self.limits.max_name:
            raise Malformed(f"method name length {name}")
        self._take(name + 4)  # the name, then the seqid
        self._struct(0)
        return self.pos

    def _struct(self, depth: int) -> None:
        if depth >= self.limits.max_depth:
            raise Malformed("nested too deep")
        data = self.data
        while True:
            field_type = data[self._take(1)]
            if field_type == STOP:
                return
            if field_type not in _MIN_SIZE:
                raise Malformed(f"unknown type code {field_type}")
            self._take(2)  # field id
            self._value(field_type, depth + 1)

    def _value(self, kind: int, depth: int) -> None:
        fixed = _FIXED.get(kind)
        if fixed is not None:
            self._take(fixed)
        elif kind == STRING:
            size = self._i32()
            if not 0 <= size <= self.limits.max_string:
                raise Malformed(f"string length {size}")
            self._take(size)
        elif kind == STRUCT:
            self._struct(depth)
        else:
            if depth >= self.limits.max_depth:
                raise Malformed("nested too deep")
            kinds = (self._type(), self._type()) if kind == MAP else (self._type(),)
            size = self._i32()
            smallest = sum(_MIN_SIZE[k] for k in kinds)
            if not 0 <= size <= self.limits.max_items or size * smallest > self.limits.max_bytes - self.pos:
                raise Malformed(f"container length {size}")
            if all(k in _FIXED for k in kinds):
                self._take(size * smallest)
            else:
                for _ in range(size):
                    for k in kinds:
                        self._value(k, depth + 1)
