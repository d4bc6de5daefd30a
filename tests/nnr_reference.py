"""A slow reference decoder of NNR payloads (ISO/IEC 15938-17 CABAC), for the tests.

Written from the decoding process as docs/nnr.md describes it, with plain Python integers and no attempt
at speed: the scan is an explicit list of positions, every bypass bin is decoded on its own, contexts are
looked up by name.  The C++ decoder must return the same levels, QP offset and byte count.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# fmt: off
LPS_TABLE = [
    [128, 112, 97, 84, 74, 65, 57, 50, 45, 39, 34, 30, 27, 23, 20, 18,
     15, 14, 12, 11, 10, 9, 7, 7, 5, 5, 4, 4, 3, 3, 2, 2],
    [142, 125, 108, 93, 82, 72, 63, 56, 50, 43, 38, 33, 30, 26, 22, 20,
     17, 16, 13, 12, 11, 10, 8, 8, 6, 6, 5, 5, 3, 3, 2, 2],
    [156, 137, 119, 103, 90, 79, 70, 61, 55, 48, 42, 37, 33, 28, 24, 22,
     19, 17, 15, 13, 12, 11, 9, 9, 6, 6, 5, 5, 4, 4, 2, 2],
    [171, 150, 130, 112, 99, 87, 76, 67, 60, 52, 46, 40, 36, 31, 27, 24,
     21, 19, 16, 15, 13, 12, 10, 10, 7, 7, 6, 6, 4, 4, 3, 3],
    [185, 162, 141, 121, 107, 94, 82, 73, 65, 56, 50, 43, 39, 34, 29, 26,
     22, 21, 17, 16, 14, 13, 11, 11, 8, 8, 6, 6, 4, 4, 3, 3],
    [199, 175, 152, 131, 115, 101, 89, 78, 70, 61, 54, 47, 42, 36, 31, 28,
     24, 22, 19, 17, 15, 14, 12, 12, 8, 8, 7, 7, 5, 5, 3, 3],
    [213, 187, 163, 140, 123, 108, 95, 84, 75, 65, 58, 50, 45, 39, 33, 30,
     26, 24, 20, 18, 16, 15, 13, 13, 9, 9, 7, 7, 5, 5, 3, 3],
    [228, 200, 174, 150, 132, 116, 102, 90, 80, 70, 62, 54, 48, 42, 36, 32,
     28, 26, 22, 20, 18, 16, 14, 14, 10, 10, 8, 8, 6, 6, 4, 4],
]
# fmt: on
CURVE = (
    [2512, 2288, 2064, 1840, 1616, 1392, 1168, 944, 720, 560, 464, 368, 272, 208, 144, 80] + [64] * 15 + [0]
)
# (fast shift - 4, slow shift, initial sum of the states, initial fast state)
PARAMETER_SETS = [
    (1, 4, 0, 0),
    (1, 4, -1310, -41),
    (1, 4, 3039, 95),
    (0, 5, 0, 0),
    (2, 6, 962, 30),
    (2, 6, 3039, 95),
    (2, 6, -673, -21),
    (3, 5, 0, 0),
    (3, 5, 962, 30),
]
NEXT_STATE = [[0, 2], [7, 5], [1, 3], [6, 4], [2, 0], [5, 7], [3, 1], [4, 6]]


def floor_shift(x: int, n: int) -> int:
    return x // (1 << n)  # an arithmetic right shift


class Context:
    def __init__(self, chosen: int = 0) -> None:
        self.chosen = chosen
        self.reset()

    def reset(self) -> None:
        _, _, self.total, self.fast = PARAMETER_SETS[self.chosen]

    def step(self, bin_: int) -> None:
        fast_shift = PARAMETER_SETS[self.chosen][0] + 4
        slow_shift = PARAMETER_SETS[self.chosen][1]
        slow = self.total - 16 * self.fast
        d = 1 if bin_ else -1
        self.fast += d * (CURVE[16 + floor_shift(d * self.fast, 3)] >> fast_shift)
        slow += d * (CURVE[16 + floor_shift(d * slow, 7)] >> slow_shift)
        self.total = slow + 16 * self.fast


@dataclass
class Engine:
    data: bytes
    pos: int = 0
    range: int = 510
    value: int = 0
    pending_bits: int = -8  # bits consumed from the value register since the last byte was read

    def __post_init__(self) -> None:
        self.value = self.byte() * 256 + self.byte()

    def byte(self) -> int:
        b = self.data[self.pos] if self.pos < len(self.data) else 0
        self.pos += 1
        return b

    def take_bits(self, n: int) -> None:
        self.range <<= n
        self.value <<= n
        self.pending_bits += n
        if self.pending_bits >= 0:
            self.value += self.byte() << self.pending_bits
            self.pending_bits -= 8

    def decode(self, ctx: Context) -> int:
        lps = LPS_TABLE[(self.range >> 5) & 7][abs(floor_shift(ctx.total, 7))]
        mps = 1 if ctx.total >= 0 else 0
        if self.value >= (self.range - lps) * 128:
            self.value -= (self.range - lps) * 128
            self.range = lps
            bin_ = 1 - mps
        else:
            self.range -= lps
            bin_ = mps
        n = 0
        while self.range << n < 256:
            n += 1
        self.take_bits(n)
        ctx.step(bin_)
        return bin_

    def bypass(self) -> int:
        self.value *= 2
        self.pending_bits += 1
        if self.pending_bits >= 0:
            self.value += self.byte()
            self.pending_bits = -8
        if self.value >= self.range * 128:
            self.value -= self.range * 128
            return 1
        return 0

    def bypass_int(self, n: int) -> int:
        v = 0
        for _ in range(n):
            v = 2 * v + self.bypass()
        return v

    def terminate(self) -> int:
        self.range -= 2
        if self.value >= self.range * 128:
            return 1
        if self.range < 256:
            self.range *= 2
            self.value *= 2
            self.pending_bits += 1
            if self.pending_bits == 0:
                self.value += self.byte()
                self.pending_bits = -8
        return 0


@dataclass
class Syntax:
    rows: int
    cols: int
    qp_bits: int
    dependent: bool
    scan_order: int
    profile: int = 1
    codebook_size: int = 0
    zero_offset: int = 0
    unary_length: int = 11
    parent_present: bool = False
    entry_points: list[tuple[int, int, int]] = field(default_factory=list)


def block_scan(rows: int, cols: int, side: int) -> list[list[tuple[int, int]]]:
    """Positions (y, x) in decoding order, grouped by block row."""
    groups = []
    for y0 in range(0, rows, side):
        group = []
        for x0 in range(0, cols, side):
            for y in range(y0, min(rows, y0 + side)):
                group.extend((y, x) for x in range(x0, min(cols, x0 + side)))
        groups.append(group)
    return groups


def decode(data: bytes, s: Syntax) -> tuple[list[int], int, int]:
    """(levels in row-major order, QP offset, payload bytes read)."""
    eng = Engine(data)
    qp_offset = 0
    if s.qp_bits:
        raw = eng.bypass_int(s.qp_bits)
        qp_offset = raw - (1 << s.qp_bits) if raw >= 1 << (s.qp_bits - 1) else raw
    n = s.unary_length
    sig = [Context() for _ in range(24)]
    sign = [Context() for _ in range(3)]
    greater = [Context() for _ in range(2 * n)]
    prefix = [Context() for _ in range(31)]
    choice = Context()
    row_skip = Context()
    skipped = [False] * s.rows
    if s.profile == 1 and s.cols > 1 and s.rows > 1 and s.codebook_size != 1:
        if s.parent_present:
            assert eng.bypass() == 0
        if eng.bypass():
            skipped = [eng.decode(row_skip) == 1 for _ in range(s.rows)]
    max_abs = max(s.zero_offset, s.codebook_size - 1 - s.zero_offset) if s.codebook_size else -1

    def chosen(signalled: bool) -> Context:
        if signalled and eng.decode(choice):
            return Context(1 + eng.bypass_int(3))
        return Context()

    sig[: 24 if s.dependent else 3] = [chosen(s.codebook_size != 1) for _ in range(24 if s.dependent else 3)]
    inferred_sign = s.codebook_size > 0 and s.zero_offset in (0, s.codebook_size - 1)
    sign = [chosen(not inferred_sign and s.codebook_size != 1) for _ in range(3)]
    greater = [chosen(max_abs == -1 or a < 2 * max_abs) for a in range(2 * n)]
    threshold = n - 1
    new_prefix = []
    for a in range(31):
        threshold += 1 << a
        new_prefix.append(chosen(max_abs == -1 or threshold < max_abs))
    prefix = new_prefix
    all_contexts = [*sig, *sign, *greater, *prefix, choice, row_skip]

    blocks = s.scan_order > 0 and s.rows > 1 and s.cols > 1
    groups = (
        block_scan(s.rows, s.cols, 4 << s.scan_order)
        if blocks
        else [[(y, x) for y in range(s.rows) for x in range(s.cols)]]
    )
    levels = [0] * (s.rows * s.cols)
    state = 0
    previous = 0
    if len(groups) > 1:
        eng.range = 256
    for g, group in enumerate(groups):
        if g > 0:
            for c in all_contexts:
                c.reset()
            previous = 0
            eng.range = 256
        for y, x in group:
            if skipped[y]:
                if x == 0 or (blocks and x % (4 << s.scan_order) == 0):
                    for _ in range(s.cols if s.dependent else 0):
                        state = NEXT_STATE[state][0]
                continue
            nb = 0 if previous == 0 else (1 if previous < 0 else 2)
            k = 0
            if not (s.profile == 1 and s.codebook_size == 1) and eng.decode(sig[3 * state + nb]):
                negative = (
                    (s.zero_offset != 0) if inferred_sign and s.profile == 1 else bool(eng.decode(sign[nb]))
                )
                limit = (
                    (s.zero_offset if negative else s.codebook_size - s.zero_offset - 1)
                    if (s.profile == 1 and s.codebook_size)
                    else -1
                )
                mag = 1
                if limit == -1 or limit > 1:
                    flag = 0
                    for j in range(n):
                        flag = eng.decode(greater[2 * j + (1 if negative else 0)])
                        mag += flag
                        if not flag or not (limit == -1 or limit > mag):
                            break
                    if flag and (limit == -1 or limit > mag):
                        bits = 0
                        for j in range(31):
                            flag = eng.decode(prefix[j])
                            if flag and (limit == -1 or limit > mag):
                                mag += 1 << bits
                                bits += 1
                            if not (flag and (limit == -1 or limit >= mag + (1 << bits))):
                                break
                        mag += eng.bypass_int(bits)
                k = -mag if negative else mag
            previous = k
            q = k
            if s.dependent:
                if k != 0:
                    q = 2 * k + ((state & 1) if k < 0 else -(state & 1))
                state = NEXT_STATE[state][k & 1]
            levels[y * s.cols + x] = q
    assert eng.terminate() == 1
    return levels, qp_offset, eng.pos
