"""Optimal Golomb (Rice) coding of the positions of a sparse update.

The gaps between the nonzero positions of a Bernoulli(p) mask are geometric; the Rice code with
divisor ``2**b`` and ``b* = 1 + floor(log2(ln(phi - 1) / ln(1 - p)))`` (phi the golden ratio) is
optimal among Golomb codes with power-of-two divisors (Sattler et al., SBC / STC).  A gap ``d``
(zeros skipped) is written as ``d >> b`` ones, one zero and the ``b`` low bits of ``d``, most
significant first; the expected length per position is ``b + 1 / (1 - (1 - p)**(2**b))``.

>>> import numpy as np
>>> positions = np.array([3, 4, 90, 91, 500])
>>> data, b = encode_positions(positions, 1000)
>>> decode_positions(data, count=5, size=1000, rice=b).tolist()
[3, 4, 90, 91, 500]
"""

from __future__ import annotations

import math

import numpy as np

from nnsqueeze.errors import BitstreamError, ConfigError

GOLDEN_RATIO = (1 + math.sqrt(5)) / 2
MAX_RICE = 40


def optimal_rice_parameter(p: float) -> int:
    """``b*`` for a fraction ``p`` (0 < p <= 1) of nonzero positions."""
    if not 0 < p <= 1:
        msg = f"the fraction of nonzero positions must be in (0, 1], got {p}"
        raise ConfigError(msg)
    if p >= 1 - 1e-12:
        return 0
    ratio = math.log(GOLDEN_RATIO - 1) / math.log1p(-p)
    return min(MAX_RICE, max(0, 1 + math.floor(math.log2(ratio))))


def expected_bits_per_position(p: float, rice: int | None = None) -> float:
    """Expected code length per position, in bits, for the Rice parameter ``rice`` (default ``b*``)."""
    b = optimal_rice_parameter(p) if rice is None else rice
    return float(b + 1 / (1 - (1 - p) ** (2**b)))


def encode_positions(positions: np.ndarray, size: int) -> tuple[bytes, int]:
    """Rice-codes strictly increasing ``positions`` in ``[0, size)``; returns the bytes and ``b``.

    The bit string is padded with zeros to whole bytes."""
    pos = np.asarray(positions, dtype=np.int64).reshape(-1)
    if pos.size == 0:
        return b"", 0
    if pos[0] < 0 or pos[-1] >= size or (pos.size > 1 and np.any(np.diff(pos) <= 0)):
        msg = f"positions must be strictly increasing and in [0, {size})"
        raise ConfigError(msg)
    b = optimal_rice_parameter(pos.size / size)
    gaps = np.diff(pos, prepend=-1) - 1
    quotients = gaps >> b
    lengths = quotients + 1 + b
    starts = np.cumsum(lengths) - lengths
    bits = np.zeros(int(lengths.sum()), dtype=np.uint8)
    total_ones = int(quotients.sum())
    if total_ones:
        offsets = np.arange(total_ones) - np.repeat(np.cumsum(quotients) - quotients, quotients)
        bits[np.repeat(starts, quotients) + offsets] = 1
    remainder_start = starts + quotients + 1
    for j in range(b):
        bits[remainder_start + j] = (gaps >> (b - 1 - j)) & 1
    return np.packbits(bits).tobytes(), b


def decode_positions(data: bytes, *, count: int, size: int, rice: int) -> np.ndarray:
    """Inverse of :func:`encode_positions`; raises :class:`BitstreamError` on a corrupt code."""
    if count == 0:
        return np.zeros(0, dtype=np.int64)
    if not 0 <= rice <= MAX_RICE or count > size:
        msg = f"corrupt position code: rice parameter {rice}, {count} positions in {size}"
        raise BitstreamError(msg)
    bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8))
    zeros = np.flatnonzero(bits == 0)
    weights = (1 << np.arange(rice - 1, -1, -1, dtype=np.int64)) if rice else np.zeros(0, np.int64)
    out = np.empty(count, dtype=np.int64)
    cursor = 0
    position = -1
    n_bits = bits.size
    for i in range(count):
        z = int(np.searchsorted(zeros, cursor))
        if z >= zeros.size or int(zeros[z]) + rice >= n_bits:
            msg = f"truncated position code: {i} of {count} positions decoded"
            raise BitstreamError(msg)
        stop = int(zeros[z])
        quotient = stop - cursor
        remainder = int(bits[stop + 1 : stop + 1 + rice] @ weights) if rice else 0
        position += (quotient << rice) + remainder + 1
        if position >= size:
            msg = f"corrupt position code: position {position} beyond the tensor's {size} elements"
            raise BitstreamError(msg)
        out[i] = position
        cursor = stop + 1 + rice
    return out


def position_bits(positions: np.ndarray, size: int) -> int:
    """Exact length in bits (before byte padding) of the Rice code of ``positions``."""
    pos = np.asarray(positions, dtype=np.int64).reshape(-1)
    if pos.size == 0:
        return 0
    b = optimal_rice_parameter(pos.size / size)
    gaps = np.diff(pos, prepend=-1) - 1
    return int(((gaps >> b) + 1 + b).sum())
