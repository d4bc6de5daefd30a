"""Reading the fixed- and variable-length fields of NNR unit headers, MSB first.

Every read is bounded by the unit: reading past its end, an Exp-Golomb code longer than 32 prefix bits,
or a string without its terminating zero byte raises :class:`~nnsqueeze.errors.NnrError`.
"""

from __future__ import annotations

import numpy as np

from nnsqueeze.errors import NnrError

# Longest Exp-Golomb prefix accepted; no field of the syntax needs more than 64-bit values.
MAX_EXP_GOLOMB_PREFIX = 32


class BitReader:
    """Reads fields from ``data[start:end]`` as the syntax's descriptors u(n), i(n), ue(k), ie(k), st(v)."""

    def __init__(self, data: bytes, start: int = 0, end: int | None = None, what: str = "NNR unit") -> None:
        self._data = data
        self._end = len(data) if end is None else end
        self._bit = 8 * start
        self._what = what

    @property
    def byte_position(self) -> int:
        """Bytes touched so far, from the start of ``data`` (a partly read byte counts)."""
        return (self._bit + 7) // 8

    def _fail(self, message: str) -> NnrError:
        return NnrError(f"{self._what}: {message}")

    def u(self, bits: int) -> int:
        """Unsigned integer of ``bits`` bits."""
        if self._bit + bits > 8 * self._end:
            msg = "ends in the middle of a field (truncated)"
            raise self._fail(msg)
        value = 0
        for _ in range(bits):
            byte = self._data[self._bit >> 3]
            value = (value << 1) | ((byte >> (7 - (self._bit & 7))) & 1)
            self._bit += 1
        return value

    def i(self, bits: int) -> int:
        """Two's complement integer of ``bits`` bits."""
        value = self.u(bits)
        return value - (1 << bits) if value >= 1 << (bits - 1) else value

    def ue(self, k: int) -> int:
        """k-th order Exp-Golomb code: a unary prefix of zeros (each adding 2^k and raising k), a one,
        then k more bits."""
        value = 0
        for _ in range(MAX_EXP_GOLOMB_PREFIX):
            if self.u(1):
                return value + (self.u(k) if k > 0 else 0)
            value += 1 << k
            k += 1
        msg = f"Exp-Golomb code longer than {MAX_EXP_GOLOMB_PREFIX} prefix bits"
        raise self._fail(msg)

    def ie(self, k: int) -> int:
        """Signed k-th order Exp-Golomb code (odd codes positive, even codes zero or negative)."""
        x = self.ue(k)
        return (x + 1) >> 1 if x & 1 else -(x >> 1)

    def align(self) -> None:
        """byte_alignment(): one bit (the syntax writes a 1), then zeros to the byte end."""
        self.u(1)
        self._bit = 8 * self.byte_position

    def string(self) -> str:
        """st(v): UTF-8 bytes up to a zero byte, at a byte boundary."""
        if self._bit & 7:
            msg = "string field not byte aligned"
            raise self._fail(msg)
        start = self._bit >> 3
        end = self._data.find(b"\x00", start, self._end)
        if end < 0:
            msg = "string without its terminating zero byte"
            raise self._fail(msg)
        self._bit = 8 * (end + 1)
        try:
            return self._data[start:end].decode("utf-8")
        except UnicodeDecodeError as exc:
            msg = f"string is not UTF-8 ({exc.reason})"
            raise self._fail(msg) from None

    def float32(self) -> float:
        """flt(32): a little-endian IEEE float, byte by byte."""
        raw = bytes(self.u(8) for _ in range(4))
        return float(np.frombuffer(raw, dtype="<f4")[0])
