"""Packed codebooks: every entry a 2, 3, 4 or 8-bit index into a table of float32 values.

No sparsity is needed: a 4096 x 4096 matrix with at most 16 distinct values reads 8 MB of indices
instead of 64 MB of floats.  Indices are stored in panels of 16 rows so that one SIMD vector holds a
column of a panel (layout: ``nnsqueeze/sparse/kernels.hpp``).  With 8-bit indices on a uniform grid
(quantized weights), the kernel decodes ``offset + scale * int8(index)`` without a table lookup, and
with 4-bit indices ``offset + scale * index``; the few table entries off the grid become sparse
corrections.

>>> import numpy as np
>>> from nnsqueeze.sparse import PackedCodebook
>>> w = np.array([[0.5, -0.5, 0.0], [0.0, 1.0, 0.5]], dtype=np.float32)
>>> p = PackedCodebook.from_dense(w)
>>> p.bits, p.table.tolist(), bool((p.to_dense() == w).all())
(2, [-0.5, 0.0, 0.5, 1.0], True)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from nnsqueeze import _core
from nnsqueeze.errors import ConfigError, TensorError
from nnsqueeze.sparse._codes import ValueCodes
from nnsqueeze.sparse.cost import Access, ProductCost, activation_accesses
from nnsqueeze.sparse.formats import (
    Format,
    FormatError,
    KernelSpec,
    Scalar,
    check_shape,
    float_array,
    register,
    uint_array,
)

PANEL_ROWS = 16
UNIT_COLS = {2: 4, 3: 8, 4: 2, 8: 1}
UNIT_BYTES = {2: 16, 3: 48, 4: 16, 8: 16}
BITS = (2, 3, 4, 8)
AFFINE_BITS = (4, 8)  # index widths the kernels can decode as offset + scale * index
# Affine decoding is used while the off-grid entries are at most this fraction of the matrix.
MAX_CORRECTION_FRACTION = 1 / 32


def data_bytes(rows: int, cols: int, bits: int) -> int:
    """Bytes of packed indices for a rows x cols matrix."""
    _check_bits(bits)
    panels = -(-rows // PANEL_ROWS)
    units = -(-cols // UNIT_COLS[bits])
    return panels * units * UNIT_BYTES[bits]


def _check_bits(bits: object) -> int:
    if not isinstance(bits, int) or bits not in BITS:
        msg = f"bits must be one of {BITS}, got {bits!r}"
        raise FormatError(msg)
    return bits


def pack(codes: np.ndarray, bits: int) -> np.ndarray:
    """Packs a (rows, cols) array of indices below 2**bits into the panel layout."""
    m, n = codes.shape
    uc = UNIT_COLS[bits]
    panels, units = -(-m // PANEL_ROWS), -(-n // uc)
    c = np.zeros((panels * PANEL_ROWS, units * uc), dtype=np.uint8)
    c[:m, :n] = codes
    c = c.reshape(panels, PANEL_ROWS, units, uc).transpose(0, 2, 3, 1)  # (panel, unit, column, row)
    if bits == 8:
        out = c[:, :, 0, :]
    elif bits == 4:
        out = c[:, :, 0, :] | (c[:, :, 1, :] << 4)
    elif bits == 2:
        out = c[:, :, 0, :] | (c[:, :, 1, :] << 2) | (c[:, :, 2, :] << 4) | (c[:, :, 3, :] << 6)
    else:
        lo, hi = c & 3, (c >> 2) & 1
        b0 = lo[:, :, 0] | (lo[:, :, 1] << 2) | (lo[:, :, 2] << 4) | (lo[:, :, 3] << 6)
        b1 = lo[:, :, 4] | (lo[:, :, 5] << 2) | (lo[:, :, 6] << 4) | (lo[:, :, 7] << 6)
        b2 = np.zeros_like(b0)
        for k in range(8):
            b2 |= hi[:, :, k] << k
        out = np.stack([b0, b1, b2], axis=2)
    return np.ascontiguousarray(out, dtype=np.uint8).reshape(-1)


def unpack(data: np.ndarray, shape: tuple[int, int], bits: int) -> np.ndarray:
    """The (rows, cols) uint8 indices of packed data (inverse of :func:`pack`)."""
    m, n = shape
    uc = UNIT_COLS[bits]
    panels, units = -(-m // PANEL_ROWS), -(-n // uc)
    d = data.reshape(panels, units, UNIT_BYTES[bits] // PANEL_ROWS, PANEL_ROWS)
    if bits == 8:
        c = d
    elif bits == 4:
        c = np.stack([d[:, :, 0] & 15, d[:, :, 0] >> 4], axis=2)
    elif bits == 2:
        c = np.stack([(d[:, :, 0] >> (2 * s)) & 3 for s in range(4)], axis=2)
    else:
        lo = [(d[:, :, k // 4] >> (2 * (k % 4))) & 3 for k in range(8)]
        c = np.stack([lo[k] | (((d[:, :, 2] >> k) & 1) << 2) for k in range(8)], axis=2)
    full = c.transpose(0, 3, 1, 2).reshape(panels * PANEL_ROWS, units * uc)
    return np.ascontiguousarray(full[:m, :n])


def grid_position(index: np.ndarray, bits: int) -> np.ndarray:
    """Where affine decoding puts an index on the grid: int8(k) for 8-bit indices (so that levels
    -128..127 keep their sign), k itself for 4-bit ones."""
    k = np.asarray(index).astype(np.uint8)
    return (k.view(np.int8) if bits == 8 else k).astype(np.float64)


@dataclass(frozen=True)
class AffinePlan:
    """How the kernel decodes 4- or 8-bit indices: value(k) = offset + scale * grid_position(k), plus
    corrections ``W[corr_rows[i], corr_cols[i]] += corr_values[i]`` wherever the table is off that line."""

    scale: float
    offset: float
    corr_rows: np.ndarray
    corr_cols: np.ndarray
    corr_values: np.ndarray


def affine_plan(table: np.ndarray, codes: np.ndarray, bits: int = 8) -> AffinePlan | None:
    """Fits value(k) = offset + scale * grid_position(k) to the used table entries (robustly: most
    entries are on a uniform grid when the weights are quantized); None if too many entries are off
    the line."""
    used = np.flatnonzero(np.bincount(codes.reshape(-1), minlength=1 << bits)[: table.size])
    if used.size < 2:
        return None
    s = grid_position(used, bits)
    t = table[used].astype(np.float64)
    order = np.argsort(s)
    s, t = s[order], t[order]
    adjacent = np.diff(s) == 1
    if not adjacent.any():
        return None
    scale = float(np.median(np.diff(t)[adjacent]))
    offset = float(np.median(t - scale * s))
    top = float(np.abs(t).max())
    tol = 2.0**-21 * top + 1e-30
    dev = np.abs(t - (offset + scale * s))
    inliers = dev <= tol
    if inliers.sum() >= 2 and dev[inliers].max() > 0:  # not exact (the step is no power of two): refit
        scale, offset = (float(v) for v in np.polyfit(s[inliers], t[inliers], 1))
        inliers = np.abs(t - (offset + scale * s)) <= tol
    off = used[order][~inliers]
    mask = np.isin(codes, off)
    count = int(np.count_nonzero(mask))
    if count > MAX_CORRECTION_FRACTION * codes.size:
        return None
    rows, cols = np.nonzero(mask)
    k = codes[rows, cols]
    delta = table[k].astype(np.float64) - (offset + scale * grid_position(k, bits))
    return AffinePlan(scale, offset, rows.astype(np.uint32), cols.astype(np.uint32), delta.astype(np.float32))


_NO_CORRECTIONS = AffinePlan(
    1.0, 0.0, np.zeros(0, np.uint32), np.zeros(0, np.uint32), np.zeros(0, np.float32)
)  # what the kernel reads without affine decoding


@register
class PackedCodebook(Format):
    """``bits``-bit indices (2, 3, 4 or 8) into ``table`` (at most 2**bits float32 values), in panels of
    16 rows: see :func:`pack`.  ``plan`` is the affine decoding of 4- and 8-bit indices (None: table lookups),
    derived from the table and the indices; the kernel reads it as ``affine``, ``scale``, ``offset``
    and the correction arrays."""

    name = "packed"
    kernel_spec = KernelSpec(
        _core.packed_kernel,
        ("data", "table", "corr_rows", "corr_cols", "corr_values"),
        (("bits", "int"), ("affine", "bool"), ("scale", "float"), ("offset", "float")),
    )

    def __init__(self, shape: tuple[int, int], bits: int, data: np.ndarray, table: np.ndarray) -> None:
        self.shape = check_shape(shape)
        self.bits = _check_bits(bits)
        m, n = self.shape
        self.data = uint_array(data, "data", (np.dtype(np.uint8),))
        want = data_bytes(m, n, self.bits)
        if self.data.size != want:
            msg = f"data has {self.data.size} bytes; a {m} x {n} matrix with {bits}-bit indices needs {want}"
            raise FormatError(msg)
        self.table = float_array(table, "table")
        if not 1 <= self.table.size <= 1 << self.bits:
            most = 1 << self.bits
            msg = f"table must hold 1 to {most} values for {self.bits}-bit indices, got {self.table.size}"
            raise FormatError(msg)
        codes = self.codes()
        if codes.size and int(codes.max()) >= self.table.size:
            r, c = np.argwhere(codes >= self.table.size)[0]
            k = int(codes[r, c])
            msg = f"index {k} at ({r}, {c}) is out of range for a table of {self.table.size} values"
            raise FormatError(msg)
        affine = self.bits in AFFINE_BITS and codes.size
        self.plan = affine_plan(self.table, codes, self.bits) if affine else None

    def codes(self) -> np.ndarray:
        """The (rows, cols) indices."""
        return unpack(self.data, self.shape, self.bits)

    @classmethod
    def from_codes(cls, codes: ValueCodes, *, bits: int | None = None, **options: Any) -> PackedCodebook:
        if options:
            msg = f"unexpected options: {', '.join(options)}"
            raise ConfigError(msg)
        k = codes.num_values
        if k > 256:
            msg = f"{k} distinct values: a packed codebook holds at most 256 (quantize the weights first)"
            raise TensorError(msg)
        if bits is None:
            bits = next(b for b in BITS if k <= 1 << b)
        elif _check_bits(bits) and k > 1 << bits:
            msg = f"{k} distinct values do not fit {bits}-bit indices"
            raise TensorError(msg)
        m, n = codes.shape
        if k == 0:
            return cls(codes.shape, bits, pack(np.zeros((m, n), np.uint8), bits), np.zeros(1, np.float32))
        if bits in AFFINE_BITS and codes.levels is not None:
            index, table = _grid_codes(codes, bits)
            return cls(codes.shape, bits, pack(index[codes.codes], bits), table)
        return cls(codes.shape, bits, pack(codes.codes.astype(np.uint8), bits), codes.values)

    def arrays(self) -> dict[str, np.ndarray]:
        return {"data": self.data, "table": self.table}

    @property
    def num_values(self) -> int:
        return int(np.unique(self.table[np.unique(self.codes())]).size) if self.rows * self.cols else 0

    def to_dense(self) -> np.ndarray:
        w: np.ndarray = self.table[self.codes()]
        return w

    def product_cost(self, *, bias: bool = False) -> ProductCost:
        m, n = self.shape
        x, y = activation_accesses(m, n, m * n)
        acc = [
            Access("data", m * n, self.bits, self.data.nbytes),
            Access("table", m * n, 32, self.table.nbytes),
            x,
            y,
        ]
        adds = m * max(n - 1, 0)
        if bias:
            acc.append(Access("bias", m, 32, 4 * m))
            adds += m
        return ProductCost(tuple(acc), adds, m * n)

    @classmethod
    def from_kernel_inputs(
        cls, shape: tuple[int, int], arrays: Mapping[str, np.ndarray], scalars: Mapping[str, Scalar]
    ) -> PackedCodebook:
        return cls(shape, int(scalars["bits"]), arrays["data"], arrays["table"])  # the plan is derived

    @property
    def affine(self) -> bool:
        return self.plan is not None

    @property
    def scale(self) -> float:
        return (self.plan or _NO_CORRECTIONS).scale

    @property
    def offset(self) -> float:
        return (self.plan or _NO_CORRECTIONS).offset

    @property
    def corr_rows(self) -> np.ndarray:
        return (self.plan or _NO_CORRECTIONS).corr_rows

    @property
    def corr_cols(self) -> np.ndarray:
        return (self.plan or _NO_CORRECTIONS).corr_cols

    @property
    def corr_values(self) -> np.ndarray:
        return (self.plan or _NO_CORRECTIONS).corr_values


def _grid_codes(codes: ValueCodes, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices for values on a grid, so that grid_position(index) is the level: with 8 bits level l
    gets index l mod 256 when -128 <= l < 128, with 4 bits l - lowest level when that is below 16;
    other levels take unused indices.  Returns (index per code, table)."""
    assert codes.levels is not None
    levels = codes.levels
    base = 0 if bits == 8 else int(levels.min())
    position = grid_position(np.arange(1 << bits), bits).astype(np.int64) + base
    inside = (levels >= position.min()) & (levels <= position.max())
    index = np.zeros(levels.size, dtype=np.int64)
    index[inside] = (levels[inside] - base) & ((1 << bits) - 1)
    free = np.setdiff1d(np.arange(1 << bits), index[inside])
    # outliers take the free indices farthest from the grid's origin first
    free = free[np.argsort(-np.abs(position[free] - base), kind="stable")]
    index[~inside] = free[: int((~inside).sum())]
    size = int(index.max()) + 1
    grid = position[:size].astype(np.float64) * codes.step
    table = grid.astype(np.float32)
    table[index] = codes.values
    return index.astype(np.uint8), table
