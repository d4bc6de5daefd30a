"""The distinct values of a weight matrix and each entry's code: the common first step of every format.

Built from a dense float matrix (``np.unique``) or from integer quantization levels (a histogram of the
levels, no float matrix).  When the values are integer multiples of one step (as quantized weights
are), the integer levels are kept too: packed codebooks use them for affine decoding.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nnsqueeze.errors import TensorError
from nnsqueeze.quant.uniform import check_step

# A level histogram is used up to this range of levels, np.unique beyond.
_HISTOGRAM_RANGE = 1 << 22


@dataclass(frozen=True)
class ValueCodes:
    """``values[codes]`` is the matrix.  ``values`` are the distinct float32 values, ascending;
    ``counts[k]`` how often ``values[k]`` occurs.  ``levels[k] * step`` gives ``values[k]`` up to
    float32 rounding when the values lie on a grid (else ``levels`` is None)."""

    shape: tuple[int, int]
    values: np.ndarray
    codes: np.ndarray
    counts: np.ndarray
    levels: np.ndarray | None = None
    step: float = 0.0

    @property
    def num_values(self) -> int:
        return int(self.values.size)

    def rank_order(self) -> np.ndarray:
        """Code indices by decreasing frequency (ties: smaller value first): ``omega = values[order]``."""
        return np.argsort(-self.counts, kind="stable")


def narrow_uint(max_value: int) -> np.dtype[np.unsignedinteger]:
    """The narrowest of uint8/16/32 that holds ``max_value``."""
    for dt in (np.uint8, np.uint16, np.uint32):
        if max_value <= np.iinfo(dt).max:
            return np.dtype(dt)
    msg = f"{max_value} does not fit 32-bit indices; the sparse formats support at most 2^32 - 1"
    raise TensorError(msg)


def _small_codes(inverse: np.ndarray, num_values: int, shape: tuple[int, int]) -> np.ndarray:
    return inverse.astype(narrow_uint(max(num_values - 1, 0)), copy=False).reshape(shape)


def check_matrix(w: object, what: str = "weight matrix") -> np.ndarray:
    """A 2-D float32 matrix with finite values (float16/float64 accepted when exactly float32)."""
    a = np.asarray(w)
    if a.ndim != 2:
        msg = f"{what} must be 2-D, got shape {a.shape}"
        raise TensorError(msg)
    if a.dtype != np.float32:
        if a.dtype.kind != "f":
            msg = f"{what} must hold floats, got {a.dtype}"
            raise TensorError(msg)
        f32 = a.astype(np.float32)
        if not np.array_equal(f32.astype(a.dtype), a, equal_nan=True):
            msg = f"{what} is {a.dtype} and not exactly representable in float32; convert it first"
            raise TensorError(msg)
        a = f32
    if not np.isfinite(a).all():
        msg = f"{what} holds NaN or Inf"
        raise TensorError(msg)
    return a


def grid_levels(values: np.ndarray) -> tuple[np.ndarray, float] | None:
    """Integer levels and step with ``values == levels * step`` up to float32 rounding, or None."""
    if values.size < 2:
        return None
    v = values.astype(np.float64)
    step = float(np.diff(v).min())
    top = float(np.abs(v).max())
    if not step > 0 or top / step > (1 << 24):
        return None
    levels = np.round(v / step)
    if np.abs(levels * step - v).max() > 2.0**-22 * top:
        return None
    return levels.astype(np.int64), step


def codes_from_dense(w: object) -> ValueCodes:
    """The value coding of a dense float matrix."""
    a = check_matrix(w) + np.float32(0.0)  # -0.0 -> 0.0
    shape = (int(a.shape[0]), int(a.shape[1]))
    values, inverse, counts = np.unique(a.reshape(-1), return_inverse=True, return_counts=True)
    values = values.astype(np.float32)
    grid = grid_levels(values)
    codes = _small_codes(inverse, values.size, shape)
    if grid is None:
        return ValueCodes(shape, values, codes, counts.astype(np.int64))
    return ValueCodes(shape, values, codes, counts.astype(np.int64), grid[0], grid[1])


def dequantize_levels(levels: np.ndarray, step: float, offset: int = 0) -> np.ndarray:
    """float32 ``(level + offset) * step`` computed in double, exactly as the codec reconstructs."""
    return ((levels.astype(np.int64) + offset).astype(np.float64) * step).astype(np.float32)


def codes_from_levels(levels: object, step: float, offset: int = 0) -> ValueCodes:
    """The value coding of a matrix of quantization levels: value = float32((level + offset) * step)."""
    lv = np.asarray(levels)
    if lv.ndim != 2 or lv.dtype.kind not in "iu":
        msg = f"levels must be a 2-D integer array, got {lv.dtype} of shape {lv.shape}"
        raise TensorError(msg)
    step = check_step(step)
    shape = (int(lv.shape[0]), int(lv.shape[1]))
    flat = lv.reshape(-1).astype(np.int64, copy=False)
    if flat.size == 0:
        present = np.zeros(0, np.int64)
        codes = np.zeros(shape, np.uint8)
        counts = np.zeros(0, np.int64)
    else:
        lo, hi = int(flat.min()), int(flat.max())
        if hi - lo < _HISTOGRAM_RANGE:
            hist = np.bincount(flat - lo, minlength=hi - lo + 1)
            used = np.flatnonzero(hist)
            present = used + lo
            counts = hist[used].astype(np.int64)
            lut = np.zeros(hi - lo + 1, dtype=np.int64)
            lut[used] = np.arange(used.size)
            codes = _small_codes(lut[flat - lo], used.size, shape)
        else:
            present, inverse, counts = np.unique(flat, return_inverse=True, return_counts=True)
            codes = _small_codes(inverse, present.size, shape)
    values = dequantize_levels(present, step, offset)
    if values.size > 1 and np.any(np.diff(values) <= 0):  # float32 merged distinct levels
        merged, inverse = np.unique(values, return_inverse=True)
        new_counts = np.bincount(inverse, weights=counts, minlength=merged.size).astype(np.int64)
        codes = _small_codes(inverse[codes.reshape(-1)], merged.size, shape)
        return ValueCodes(shape, merged, codes, new_counts)
    return ValueCodes(shape, values, codes, counts, present + offset, step)
