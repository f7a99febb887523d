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

The walk never builds values, so it costs far less than decoding. An
unframed message carries no length, so it is walked as its bytes arrive,
each walk resuming where the last one stopped (MessageWalker): however the
message is split, its bytes are examined once.
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
    length = MessageWalker(limits).feed(data)
    if length is None:
        raise Incomplete
    return length


# What the walk reads next, when it is not a value of a Thrift type (>= 0):
_NEXT = -1  # a field or element of the innermost open struct or container, or its end
_VERSION = -2  # the message's version word
_NAME_LENGTH = -3  # the method name's length
_FIELD_ID = -4  # a field's id, its type byte read
_SKIP = -5  # bytes with nothing to check: a name and seqid, a string, fixed-size elements
_CONTAINER = -6  # a container's header: its element types, then its length


class MessageWalker:
    """Tells where one message ends as its bytes arrive: feed() it the bytes
    received so far, from the message's start, after each recv.

    Each feed resumes where the previous one stopped (its place is a stack
    of the open structs and containers, not the Python stack), so a message
    trickled in pieces of any size is walked once: walking from the start
    after every recv cost the square of the message's size (a 64 KB call
    in 100-byte pieces: 21 MB walked, a second of CPU). A read never begins
    before all its bytes are there, so no byte is examined twice; `examined`
    counts the bytes walked over, for the tests.
    """

    __slots__ = (
        "_depth",
        "_kind",
        "_kinds",
        "_length",
        "_limits",
        "_pending",
        "_pos",
        "_skip",
        "_stack",
        "_wanted",
        "examined",
    )

    def __init__(self, limits: Limits) -> None:
        self._limits = limits
        self.examined = 0
        self._pos = 0
        self._pending = _VERSION
        self._skip = 0  # bytes left to pass over (_SKIP)
        self._kind = STOP  # the type of the field whose id is next (_FIELD_ID)
        self._kinds: tuple[int, ...] = ()  # the element types read of the container begun (_CONTAINER)
        self._wanted = 0  # how many it has: 2 for a map, else 1
        self._depth = 0  # its depth
        self._stack: list[_Open] = []  # open structs and containers, innermost last
        self._length: int | None = None

    def feed(self, data: bytes | bytearray | memoryview) -> int | None:
        """The message's length, or None if more bytes are needed (and the
        message is still within the limits); raises Malformed."""
        if self._length is None:
            start = self._pos
            try:
                self._length = self._walk(data)
            finally:
                self.examined += self._pos - start
        return self._length

    def _walk(self, data: bytes | bytearray | memoryview) -> int | None:
        limits = self._limits
        max_bytes = limits.max_bytes
        end = min(len(data), max_bytes)
        pos, pending, skip, stack = self._pos, self._pending, self._skip, self._stack
        try:
            while True:
                if pending == _NEXT:
                    frame = stack[-1]
                    kinds = frame.kinds
                    if not kinds:  # a struct: a field's header, or its end
                        if pos >= end:
                            self._check_size(pos + 1)
                            break
                        kind = data[pos]
                        pos += 1
                        if kind == STOP:
                            stack.pop()
                            if not stack:
                                return pos
                            continue
                        if kind not in _MIN_SIZE:
                            raise Malformed(f"unknown type code {kind}")
                        if pos + 2 > end:
                            self._kind, pending = kind, _FIELD_ID
                            continue
                        pos += 2  # the field's id
                        fixed = _FIXED.get(kind)
                        if fixed is not None and pos + fixed <= end:
                            pos += fixed  # the common case, at once
                            continue
                        pending = kind
                    else:  # a container: its next element, or its end
                        if not frame.left:
                            stack.pop()
                            continue
                        index = frame.index
                        pending = kinds[index]
                        if index + 1 == len(kinds):
                            frame.left -= 1
                            frame.index = 0
                        else:
                            frame.index = index + 1
                if pending >= 0:  # a value of this type begins
                    fixed = _FIXED.get(pending)
                    if fixed is not None:
                        if pos + fixed > end:
                            self._check_size(pos + fixed)
                            break
                        pos += fixed
                    elif pending == STRING:
                        if pos + 4 > end:
                            self._check_size(pos + 4)
                            break
                        size = _I32.unpack_from(data, pos)[0]
                        if not 0 <= size <= limits.max_string:
                            raise Malformed(f"string length {size}")
                        pos += 4
                        self._check_size(pos + size)
                        skip, pending = size, _SKIP
                        continue
                    else:
                        depth = stack[-1].depth + 1
                        if depth >= limits.max_depth:
                            raise Malformed("nested too deep")
                        if pending == STRUCT:
                            stack.append(_Open((), 0, depth))
                        else:  # its element types, then its length
                            self._kinds, self._wanted, self._depth = (), 2 if pending == MAP else 1, depth
                            pending = _CONTAINER
                            continue
                    pending = _NEXT
                elif pending == _CONTAINER:
                    kinds = self._kinds
                    while len(kinds) < self._wanted and pos < end:
                        kind = data[pos]
                        if kind not in _MIN_SIZE:
                            raise Malformed(f"unknown type code {kind}")
                        pos += 1
                        kinds += (kind,)
                    self._kinds = kinds
                    if len(kinds) < self._wanted:
                        self._check_size(pos + 1)
                        break
                    if pos + 4 > end:
                        self._check_size(pos + 4)
                        break
                    size = _I32.unpack_from(data, pos)[0]
                    pos += 4
                    smallest = sum(_MIN_SIZE[k] for k in kinds)
                    if not 0 <= size <= limits.max_items or size * smallest > max_bytes - pos:
                        raise Malformed(f"container length {size}")
                    if all(k in _FIXED for k in kinds):
                        skip, pending = size * smallest, _SKIP
                    else:
                        stack.append(_Open(kinds, size, self._depth))
                        pending = _NEXT
                elif pending == _SKIP:
                    if pos + skip > end:
                        skip -= end - pos
                        pos = end
                        break
                    pos += skip
                    pending = _NEXT
                elif pending == _FIELD_ID:
                    if pos + 2 > end:
                        self._check_size(pos + 2)
                        break
                    pos += 2
                    pending = self._kind
                elif pending == _VERSION:
                    if pos + 4 > end:
                        self._check_size(pos + 4)
                        break
                    if _I32.unpack_from(data, pos)[0] & _STRICT_VERSION_MASK != _VERSION_1:
                        raise Malformed("not a strict binary message")
                    pos += 4
                    pending = _NAME_LENGTH
                else:  # _NAME_LENGTH
                    if pos + 4 > end:
                        self._check_size(pos + 4)
                        break
                    name = _I32.unpack_from(data, pos)[0]
                    if not 0 <= name <= limits.max_name:
                        raise Malformed(f"method name length {name}")
                    pos += 4
                    if limits.max_depth <= 0:
                        raise Malformed("nested too deep")
                    stack.append(_Open((), 0, 0))  # the arguments, after the name and the seqid
                    self._check_size(pos + name + 4)
                    skip, pending = name + 4, _SKIP
            return None
        finally:
            self._pos, self._pending, self._skip = pos, pending, skip

    def _check_size(self, needed: int) -> None:
        """Raise Malformed if the message would be larger than the limit."""
        if needed > self._limits.max_bytes:
            raise Malformed(f"message larger than {self._limits.max_bytes} bytes")


class _Open:
    """A struct (no element types) or a container being walked."""

    __slots__ = ("depth", "index", "kinds", "left")

    def __init__(self, kinds: tuple[int, ...], left: int, depth: int) -> None:
        self.kinds = kinds  # a container's element types: (key, value) for a map
        self.left = left  # elements not yet begun
        self.index = 0  # in kinds: which of a map element's key and value is next
        self.depth = depth
