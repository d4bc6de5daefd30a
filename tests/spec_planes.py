"""A reader of lossless (method 5) ``.nnsq`` files written from docs/format.md alone: the preamble,
record framing, the 2.0 record header with its entry points, and the plane payload with its rANS
streams.  Slow plain Python on purpose; the tests hold the C++ decoder to it.

It reads only what a file of method-5 records needs and raises ``SpecViolation`` for anything the
document calls corrupt.
"""

from __future__ import annotations

import zlib

import numpy as np

MAGIC = b"\x89NNSQ\r\n\x1a"
FLOAT_DTYPES = {1: "float32", 2: "float16", 3: "bfloat16", 4: "float64"}
INT_DTYPES = {
    5: "int8",
    6: "int16",
    7: "int32",
    8: "int64",
    9: "uint8",
    10: "uint16",
    11: "uint32",
    12: "uint64",
    13: "bool",
}
ITEMSIZE = {
    "float32": 4,
    "float16": 2,
    "bfloat16": 2,
    "float64": 8,
    "int8": 1,
    "int16": 2,
    "int32": 4,
    "int64": 8,
    "uint8": 1,
    "uint16": 2,
    "uint32": 4,
    "uint64": 8,
    "bool": 1,
}
MAX_CHUNK = 1 << 18
PROB_ONE = 4096
STATE_LOW = 1 << 15


class SpecViolation(Exception):
    pass


class Cursor:
    def __init__(self, data: bytes) -> None:
        self.data, self.at = data, 0

    def take(self, n: int) -> bytes:
        if self.at + n > len(self.data):
            raise SpecViolation("ends early")
        out = self.data[self.at : self.at + n]
        self.at += n
        return out

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        return int.from_bytes(self.take(2), "little")

    def u32(self) -> int:
        return int.from_bytes(self.take(4), "little")

    def varint(self) -> int:
        value = 0
        for shift in range(0, 64, 7):
            byte = self.u8()
            value |= (byte & 0x7F) << shift
            if byte < 0x80:
                return value
        raise SpecViolation("varint longer than 64 bits")

    def left(self) -> int:
        return len(self.data) - self.at


def decode_rans(stream: bytes, m: int, freqs: dict[int, int]) -> list[int]:
    """The rANS stream of one plane: m symbols, with the slot ranges of the frequency table."""
    owner = []  # owner[slot] = (symbol, c_s)
    cum = 0
    for s in sorted(freqs):
        owner += [(s, cum)] * freqs[s]
        cum += freqs[s]
    cur = Cursor(stream)
    states = [cur.u32() for _ in range(4)]
    if any(not STATE_LOW <= x < 1 << 31 for x in states):
        raise SpecViolation("initial state out of range")
    if cur.left() % 2:
        raise SpecViolation("odd number of word bytes")
    out = []
    for j in range(m):
        x = states[j % 4]
        slot = x % PROB_ONE
        s, c_s = owner[slot]
        x = freqs[s] * (x >> 12) + slot - c_s
        if x < STATE_LOW:
            x = (x << 16) | cur.u16()
        states[j % 4] = x
        out.append(s)
    if cur.left() != 0 or any(x != STATE_LOW for x in states):
        raise SpecViolation("stream not used up or final state wrong")
    return out


def encode_rans(symbols: list[int], freqs: dict[int, int]) -> bytes:
    """The encoder the document sketches: backwards from states 2^15, words in reverse order."""
    cum, start = 0, {}
    for s in sorted(freqs):
        start[s] = cum
        cum += freqs[s]
    states = [STATE_LOW] * 4
    words: list[int] = []
    for j in reversed(range(len(symbols))):
        s, x = symbols[j], states[j % 4]
        f = freqs[s]
        if x >= f << 19:
            words.append(x % (1 << 16))
            x >>= 16
        states[j % 4] = (x // f) * PROB_ONE + x % f + start[s]
    head = b"".join(x.to_bytes(4, "little") for x in states)
    return head + b"".join(w.to_bytes(2, "little") for w in reversed(words))


def rans_plane(freqs: dict[int, int], stream: bytes) -> bytes:
    """A mode-2 plane: bitmap, frequencies, stream length and stream."""
    bitmap = bytearray(32)
    table = bytearray()
    for s in sorted(freqs):
        bitmap[s >> 3] |= 1 << (s & 7)
        table += _varint(freqs[s] - 1)
    return b"\x02" + bytes(bitmap) + bytes(table) + _varint(len(stream)) + stream


def _varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def decode_plane(cur: Cursor, m: int) -> list[int]:
    mode = cur.u8()
    if mode == 0:
        return list(cur.take(m))
    if mode == 1:
        return [cur.u8()] * m
    if mode == 2:
        bitmap = cur.take(32)
        present = [s for s in range(256) if bitmap[s >> 3] >> (s & 7) & 1]
        freqs = {s: cur.varint() + 1 for s in present}
        if any(f > 4095 for f in freqs.values()) or sum(freqs.values()) != PROB_ONE:
            raise SpecViolation("frequencies")
        stream_len = cur.varint()
        return decode_rans(cur.take(stream_len), m, freqs)
    raise SpecViolation(f"plane mode {mode}")


def decode_chunk(chunk: bytes, m: int, b: int, is_float: bool) -> list[int]:
    cur = Cursor(chunk)
    planes = [decode_plane(cur, m) for _ in range(b)]
    if cur.left():
        raise SpecViolation("chunk has bytes left")
    bits = 8 * b
    values = []
    for j in range(m):
        v = 0
        for p in range(b):
            v |= planes[p][j] << (8 * (b - 1 - p))
        if is_float:
            v = (v >> 1) | ((v & 1) << (bits - 1))  # rotate right by one bit
        values.append(v)
    return values


def read_record(cur: Cursor) -> tuple[str, np.ndarray]:
    header_bytes = cur.take(cur.varint())
    header = Cursor(header_bytes)
    name = header.take(header.varint()).decode("utf-8")
    code = header.u8()
    dtype = FLOAT_DTYPES.get(code) or INT_DTYPES.get(code)
    if dtype is None:
        raise SpecViolation(f"dtype {code}")
    shape = tuple(header.varint() for _ in range(header.u8()))
    if header.u8() != 5:
        raise SpecViolation("only method 5 is read here")
    b = header.u8()
    if b != ITEMSIZE[dtype]:
        raise SpecViolation("itemsize differs from the dtype's")
    chunk = header.varint()
    numel = int(np.prod(shape, dtype=np.int64)) if shape else 1
    n = -(-numel // chunk) if numel else 0
    if not 1 <= chunk <= MAX_CHUNK:
        raise SpecViolation("chunk out of range")
    lengths = [header.varint() for _ in range(n)]
    payload_len = header.varint()
    if header.left() or sum(lengths) != payload_len:
        raise SpecViolation("header")
    payload = cur.take(payload_len)
    crc = cur.u32()
    if crc != zlib.crc32(header_bytes + payload):
        raise SpecViolation("crc")
    values: list[int] = []
    at = 0
    for i, length in enumerate(lengths):
        m = min(numel, (i + 1) * chunk) - i * chunk
        values += decode_chunk(payload[at : at + length], m, b, dtype in FLOAT_DTYPES.values())
        at += length
    unsigned = np.array(values, dtype=f"<u{b}").reshape(shape)
    if dtype == "bfloat16":
        return name, unsigned
    return name, unsigned.view(np.dtype(dtype).newbyteorder("<"))


def read_file(data: bytes) -> dict[str, np.ndarray]:
    """Every tensor of a file whose records are all method 5 (bfloat16 as uint16 bits)."""
    cur = Cursor(data)
    if cur.take(8) != MAGIC or cur.u16() != 2:
        raise SpecViolation("not a 2.x file")
    cur.u16()
    cur.u32()
    tensors = {}
    while True:
        tag = cur.take(4)
        if tag == b"INDX":
            return tensors
        if tag != b"TNSR":
            raise SpecViolation("record magic")
        name, array = read_record(cur)
        tensors[name] = array
