"""Slow, obviously-correct Python re-implementations of the C++ coders, for the tests.

They mirror the C++ logic statement by statement with plain integers, so the C++ output
must match them byte for byte.
"""

from __future__ import annotations

PROB_BITS = 15
PROB_ONE = 1 << PROB_BITS
PROB_MIN = PROB_ONE >> 10
PROB_MAX = PROB_ONE - PROB_MIN
STATE_ONE = (1 << 24) - 1
TOP = 1 << 24


class Model:
    def __init__(self) -> None:
        self.fast = 1 << 23
        self.slow = 1 << 23
        self.seen = 0

    def p0(self) -> int:
        return min(max(PROB_ONE - ((self.fast + self.slow) >> 10), PROB_MIN), PROB_MAX)

    def update(self, bit: int, fast_shift: int, slow_shift: int) -> None:
        fs, ss = fast_shift, slow_shift
        if self.seen < (1 << (slow_shift + 1)) - 2:
            w = (self.seen + 2).bit_length() - 1
            fs, ss = min(w, fs), min(w, ss)
            self.seen += 1
        target = STATE_ONE if bit else 0
        self.fast += (target - self.fast) >> fs  # Python's >> floors, like the C++ arithmetic shift
        self.slow += (target - self.slow) >> ss


class Encoder:
    def __init__(self, fast_shift: int, slow_shift: int) -> None:
        self.out = bytearray()
        self.low, self.range, self.cache, self.pending = 0, 0xFFFFFFFF, 0, 1
        self.rates = (fast_shift, slow_shift)

    def _shift_low(self) -> None:
        if (self.low & 0xFFFFFFFF) < 0xFF000000 or (self.low >> 32) != 0:
            carry = self.low >> 32
            byte = self.cache
            while True:
                self.out.append((byte + carry) & 0xFF)
                byte = 0xFF
                self.pending -= 1
                if self.pending == 0:
                    break
            self.cache = (self.low >> 24) & 0xFF
        self.pending += 1
        self.low = (self.low & 0x00FFFFFF) << 8

    def _normalize(self) -> None:
        while self.range < TOP:
            self.range = (self.range << 8) & 0xFFFFFFFF
            self._shift_low()

    def encode(self, bit: int, model: Model) -> None:
        bound = (self.range >> PROB_BITS) * model.p0()
        if bit:
            self.low += bound
            self.range -= bound
        else:
            self.range = bound
        model.update(bit, *self.rates)
        self._normalize()

    def bypass(self, value: int, nbits: int) -> None:
        for i in reversed(range(nbits)):
            self.range >>= 1
            if (value >> i) & 1:
                self.low += self.range
            self._normalize()

    def finish(self) -> bytes:
        for _ in range(5):
            self._shift_low()
        return bytes(self.out)


def _log2_quarter(x: int) -> int:
    if x <= 1:
        return 0
    msb = x.bit_length() - 1
    frac = (x >> (msb - 2)) & 3 if msb >= 2 else (x << (2 - msb)) & 3
    return 4 * msb + frac


SCALE_CLASSES, PREFIX_CONTEXTS, ROW_SHIFT, COL_SHIFT, FIXED_BITS, MAG_CAP = 40, 24, 8, 5, 8, 1 << 16


def _encode_magnitude(enc: Encoder, mag: int, gtx: list[Model], prefix: list[Model]) -> None:
    """|level| >= 1: the abs>k flags (one context each), then the Exp-Golomb remainder (context-coded
    unary prefix, bypass suffix)."""
    k = 1
    while k <= len(gtx):
        greater = int(mag > k)
        enc.encode(greater, gtx[k - 1])
        if not greater:
            return
        k += 1
    rem, pos = mag - len(gtx) - 1, 0
    while rem >= (1 << pos):
        enc.encode(1, prefix[min(pos, PREFIX_CONTEXTS - 1)])
        rem -= 1 << pos
        pos += 1
    enc.encode(0, prefix[min(pos, PREFIX_CONTEXTS - 1)])
    enc.bypass(rem, pos)


def encode_levels(levels: list[list[int]], num_gtx: int, fast_shift: int, slow_shift: int) -> bytes:
    """Reference of nnsqueeze::encode_levels for a rows x cols list of lists."""
    enc = Encoder(fast_shift, slow_shift)
    cols = len(levels[0]) if levels else 0
    sig = [Model() for _ in range(SCALE_CLASSES * 2)]
    sign = [Model() for _ in range(3)]
    gtx = [Model() for _ in range(SCALE_CLASSES * max(num_gtx, 1))]
    prefix = [Model() for _ in range(PREFIX_CONTEXTS)]
    col_mag = [0] * cols
    total = count = 0
    for r, row in enumerate(levels):
        prev = 0
        mean = 0 if count == 0 else total // count
        row_mag, log_mean = mean, _log2_quarter(mean)
        col_shift = min(r.bit_length(), COL_SHIFT)
        for c, q in enumerate(row):
            in_row = c
            lc = log_mean if r == 0 else _log2_quarter(col_mag[c])
            cls = _log2_quarter(row_mag) + lc - log_mean - 4 * (FIXED_BITS - 4)
            cls = min(max(cls, 0), SCALE_CLASSES - 1)
            mag = abs(q)
            enc.encode(int(q != 0), sig[2 * cls + int(prev != 0)])
            if q != 0:
                enc.encode(int(q < 0), sign[0 if prev == 0 else (1 if prev < 0 else 2)])
                _encode_magnitude(enc, mag, gtx[cls * num_gtx : (cls + 1) * num_gtx], prefix)
            a = min(mag, MAG_CAP) << FIXED_BITS
            rs = min((in_row + 1).bit_length(), ROW_SHIFT)  # in_row = levels already coded in this row
            row_mag += (a - row_mag) >> rs
            col_mag[c] = a if r == 0 else col_mag[c] + ((a - col_mag[c]) >> col_shift)
            total += a
            count += 1
            prev = q
    return enc.finish()


def encode_levels_hinted(
    levels: list[list[int]],
    hints: list[list[int]],
    hint_classes: int,
    num_gtx: int,
    fast_shift: int,
    slow_shift: int,
) -> bytes:
    """Reference of nnsqueeze::encode_levels_hinted: encode_levels with the significance context
    chosen by (hint, scale class // 4, previous level != 0) and the sign context by
    (hint, last nonzero sign of the row)."""
    enc = Encoder(fast_shift, slow_shift)
    cols = len(levels[0]) if levels else 0
    scales = SCALE_CLASSES // 4
    sig = [Model() for _ in range(hint_classes * scales * 2)]
    sign = [Model() for _ in range(hint_classes * 3)]
    gtx = [Model() for _ in range(SCALE_CLASSES * max(num_gtx, 1))]
    prefix = [Model() for _ in range(PREFIX_CONTEXTS)]
    col_mag = [0] * cols
    total = count = 0
    for r, row in enumerate(levels):
        prev = last_sign = 0
        mean = 0 if count == 0 else total // count
        row_mag, log_mean = mean, _log2_quarter(mean)
        col_shift = min(r.bit_length(), COL_SHIFT)
        for c, q in enumerate(row):
            h = hints[r][c]
            lc = log_mean if r == 0 else _log2_quarter(col_mag[c])
            cls = _log2_quarter(row_mag) + lc - log_mean - 4 * (FIXED_BITS - 4)
            cls = min(max(cls, 0), SCALE_CLASSES - 1)
            mag = abs(q)
            enc.encode(int(q != 0), sig[2 * (h * scales + cls // 4) + int(prev != 0)])
            if q != 0:
                enc.encode(int(q < 0), sign[3 * h + last_sign])
                _encode_magnitude(enc, mag, gtx[cls * num_gtx : (cls + 1) * num_gtx], prefix)
                last_sign = 1 if q < 0 else 2
            a = min(mag, MAG_CAP) << FIXED_BITS
            rs = min((c + 1).bit_length(), ROW_SHIFT)  # c = levels already coded in this row
            row_mag += (a - row_mag) >> rs
            col_mag[c] = a if r == 0 else col_mag[c] + ((a - col_mag[c]) >> col_shift)
            total += a
            count += 1
            prev = q
    return enc.finish()


def encode_bytes(data: bytes, itemsize: int) -> bytes:
    """Reference of nnsqueeze::encode_bytes."""
    enc = Encoder(5, 10)
    tree = [[Model() for _ in range(256)] for _ in range(itemsize)]
    for start in range(0, len(data), itemsize):
        element = data[start : start + itemsize]
        for plane in range(itemsize):
            byte = element[itemsize - 1 - plane]
            index = 1
            for bit in reversed(range(8)):
                b = (byte >> bit) & 1
                enc.encode(b, tree[plane][index])
                index = 2 * index + b
    return enc.finish()


def quantize(values: list[float], step: float) -> list[int]:
    """Round half away from zero of value / step, in double precision."""
    import math

    inv = 1.0 / step
    out = []
    for v in values:
        x = float(v) * inv
        out.append(-math.floor(-x + 0.5) if x < 0 else math.floor(x + 0.5))
    return out
