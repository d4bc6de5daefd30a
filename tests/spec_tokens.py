"""A decoder of the token payload (method 6) written from docs/format.md ("Token payload"), in plain
Python, to check that the C++ coder implements the document.  Slow and simple on purpose."""

from __future__ import annotations

CLASSES = 20
TOKENS = 120
MAX_FREQ = 4080


class SpecError(Exception):
    pass


def read_varint(data: bytes, pos: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        if pos >= len(data):
            raise SpecError("varint runs past the payload")
        b = data[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if b < 0x80:
            return value, pos
        if shift >= 64:
            raise SpecError("varint too long")


class _Bits:
    """A bit string read least significant bit of each byte first."""

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def bit(self) -> int:
        if self.pos >= 8 * len(self.data):
            raise SpecError("bit string ends early")
        b = (self.data[self.pos // 8] >> (self.pos % 8)) & 1
        self.pos += 1
        return b

    def value(self, n: int) -> int:  # n bits, least significant first
        return sum(self.bit() << i for i in range(n))

    def finished(self) -> None:
        if (self.pos + 7) // 8 != len(self.data):
            raise SpecError("bit string not consumed to its last byte")
        if self.pos % 8 and self.data[-1] >> (self.pos % 8):
            raise SpecError("nonzero padding")


def _golomb(bits: _Bits, k: int) -> int:
    zeros = 0
    while bits.bit() == 0:
        zeros += 1
        if zeros > 20:
            raise SpecError("Exp-Golomb code too long")
    v = 0
    for _ in range(zeros + k):
        v = (v << 1) | bits.bit()
    return (1 << (zeros + k)) + v - (1 << k)


def _L(x: int) -> int:  # the document's name
    msb = max(x, 1).bit_length() - 1
    return 4 * msb + (((4 * x) >> msb) & 3)


def _magnitude(token: int, raw: _Bits) -> int:
    if token < 16:
        return token
    n = (token - 16) // 4 + 4
    return ((4 | ((token - 16) & 3)) << (n - 2)) + raw.value(n - 2)


def decode(payload: bytes, rows: int, cols: int) -> list[int]:
    """The levels of a token payload of a rows x cols matrix, in row-major order."""
    m = rows * cols
    if m == 0:
        if payload:
            raise SpecError("payload of an empty matrix")
        return []
    if len(payload) < 3:
        raise SpecError("no bitmap")
    bitmap = int.from_bytes(payload[:3], "little")
    if bitmap >> CLASSES:
        raise SpecError("bitmap names classes past 19")
    table_len, pos = read_varint(payload, 3)
    tables = _Bits(payload[pos : pos + table_len])
    if pos + table_len > len(payload):
        raise SpecError("tables run past the payload")
    pos += table_len
    # Per class: token -> (frequency, first slot).
    classes: dict[int, list[tuple[int, int]]] = {}
    for k in range(CLASSES):
        if not bitmap >> k & 1:
            continue
        used = tables.value(7) + 1
        shift = tables.value(3)
        order = tables.value(4)
        if used > TOKENS:
            raise SpecError("too many tokens")
        freqs = [_golomb(tables, order) << shift for _ in range(used - 1)]
        last = 4096 - sum(freqs)
        if last < 1 << shift:
            raise SpecError("frequencies exceed 4096")
        freqs.append(last)
        if max(freqs) > MAX_FREQ:
            raise SpecError("a frequency above 4080")
        starts = [sum(freqs[:t]) for t in range(used)]
        classes[k] = list(zip(freqs, starts, strict=True))
    tables.finished()
    stream_len, pos = read_varint(payload, pos)
    stream = payload[pos : pos + stream_len]
    if pos + stream_len > len(payload) or stream_len < 16 or (stream_len - 16) % 2:
        raise SpecError("bad rANS stream")
    pos += stream_len
    sign_len, pos = read_varint(payload, pos)
    if pos + sign_len > len(payload):
        raise SpecError("signs run past the payload")
    signs = _Bits(payload[pos : pos + sign_len])
    raw = _Bits(payload[pos + sign_len :])
    states = [int.from_bytes(stream[4 * i : 4 * i + 4], "little") for i in range(4)]
    if any(not 1 << 15 <= x < 1 << 31 for x in states):
        raise SpecError("state out of range")
    word_pos = 16

    out: list[int] = []
    col_mag = [0] * cols
    total, count = 0, 0
    for r in range(rows):
        mean = total // count if count else 0
        terms = [-16 if r == 0 else _L(col_mag[c]) - _L(mean) - 16 for c in range(cols)]
        row_mag = mean
        tracked = [0] * cols
        for c in range(cols):
            cls = min(max((_L(row_mag) + terms[c]) >> 1, 0), CLASSES - 1)
            if cls not in classes:
                raise SpecError("element in a class without a table")
            x = states[c % 4]
            slot = x % 4096
            token = next(t for t, (f, s) in enumerate(classes[cls]) if s <= slot < s + f)
            f, s = classes[cls][token]
            x = f * (x >> 12) + slot - s
            if x < 1 << 15:
                if word_pos + 2 > len(stream):
                    raise SpecError("rANS stream ends early")
                x = (x << 16) | int.from_bytes(stream[word_pos : word_pos + 2], "little")
                word_pos += 2
            states[c % 4] = x
            a = _magnitude(token, raw)
            negative = signs.bit() if a else 0
            out.append(-a if negative else a)
            tracked[c] = min(a, 1 << 16) << 8
            if c >= 3:
                shift = (c - 2).bit_length() if c - 2 < 256 else 8
                row_mag += (tracked[c - 3] - row_mag) >> shift
        for c in range(cols):
            if r == 0:
                col_mag[c] = tracked[c]
            else:
                col_mag[c] += (tracked[c] - col_mag[c]) >> min(r.bit_length(), 5)
        total += sum(tracked)
        count += cols
    if word_pos != len(stream) or any(x != 1 << 15 for x in states):
        raise SpecError("rANS stream not finished")
    signs.finished()
    raw.finished()
    return out
