"""Slow, obviously correct NumPy/Python references for nnsqueeze.sparse: the formats built straight from
their definitions (Wiedemann et al., TNNLS 2019), dense reconstruction, products and op counts by
loops over rows.  Used only by the tests."""

from __future__ import annotations

import numpy as np


def omega_order(w: np.ndarray) -> list[float]:
    """Distinct values by decreasing frequency, ties by increasing value."""
    values, counts = np.unique(w, return_counts=True)
    pairs = sorted(zip(values.tolist(), counts.tolist(), strict=True), key=lambda vc: (-vc[1], vc[0]))
    return [v for v, _ in pairs]


def csr(w: np.ndarray) -> tuple[list[float], list[int], list[int]]:
    values, cols, ptr = [], [], [0]
    for row in w:
        for j, v in enumerate(row):
            if v != 0:
                values.append(float(v))
                cols.append(j)
        ptr.append(len(cols))
    return values, cols, ptr


def cer(w: np.ndarray) -> tuple[list[float], list[int], list[int], list[int]]:
    """(omega, col_idx, group_ptr, row_ptr): group t of a row holds omega[t + 1], padded with empty groups.
    An empty matrix has omega = [0]."""
    omega = omega_order(w) or [0.0]
    cols: list[int] = []
    group_ptr = [0]
    row_ptr = [0]
    for row in w:
        present = [omega.index(v) for v in row if v != omega[0]]
        top = max(present, default=0)
        for t in range(1, top + 1):
            cols.extend(j for j, v in enumerate(row) if v == omega[t])
            group_ptr.append(len(cols))
        row_ptr.append(len(group_ptr) - 1)
    return omega, cols, group_ptr, row_ptr


def cser(w: np.ndarray) -> tuple[list[float], list[int], list[int], list[int], list[int], float]:
    """(values, col_idx, value_idx, group_ptr, row_ptr, omega0): non-empty groups, each naming its value."""
    omega = omega_order(w)
    cols: list[int] = []
    value_idx: list[int] = []
    group_ptr = [0]
    row_ptr = [0]
    for row in w:
        for t in range(1, len(omega)):
            js = [j for j, v in enumerate(row) if v == omega[t]]
            if js:
                cols.extend(js)
                value_idx.append(t - 1)
                group_ptr.append(len(cols))
        row_ptr.append(len(group_ptr) - 1)
    return omega[1:], cols, value_idx, group_ptr, row_ptr, omega[0] if omega else 0.0


def dense_from_csr(shape: tuple[int, int], row_ptr, col_idx, values) -> np.ndarray:
    w = np.zeros(shape, np.float32)
    for r in range(shape[0]):
        for k in range(int(row_ptr[r]), int(row_ptr[r + 1])):
            w[r, int(col_idx[k])] = values[k]
    return w


def dense_from_cer(shape: tuple[int, int], omega, row_ptr, group_ptr, col_idx) -> np.ndarray:
    w = np.full(shape, omega[0], np.float32)
    for r in range(shape[0]):
        for t, g in enumerate(range(int(row_ptr[r]), int(row_ptr[r + 1]))):
            for k in range(int(group_ptr[g]), int(group_ptr[g + 1])):
                w[r, int(col_idx[k])] = omega[t + 1]
    return w


def dense_from_cser(shape, values, row_ptr, group_ptr, value_idx, col_idx, omega0) -> np.ndarray:
    w = np.full(shape, omega0, np.float32)
    for r in range(shape[0]):
        for g in range(int(row_ptr[r]), int(row_ptr[r + 1])):
            for k in range(int(group_ptr[g]), int(group_ptr[g + 1])):
                w[r, int(col_idx[k])] = values[int(value_idx[g])]
    return w


def packed_index(data: np.ndarray, shape: tuple[int, int], bits: int, r: int, c: int) -> int:
    """Index of entry (r, c) read bit by bit from the documented panel layout."""
    unit_cols = {2: 4, 3: 8, 4: 2, 8: 1}[bits]
    unit_bytes = {2: 16, 3: 48, 4: 16, 8: 16}[bits]
    units = -(-shape[1] // unit_cols)
    p, i = divmod(r, 16)
    u, j = divmod(c, unit_cols)
    base = (p * units + u) * unit_bytes
    if bits == 8:
        return int(data[base + i])
    if bits == 4:
        return (int(data[base + i]) >> (4 * j)) & 15
    if bits == 2:
        return (int(data[base + i]) >> (2 * j)) & 3
    lo = (int(data[base + (0 if j < 4 else 16) + i]) >> (2 * (j % 4))) & 3
    hi = (int(data[base + 32 + i]) >> j) & 1
    return lo | (hi << 2)


def dense_from_packed(shape, bits, data, table) -> np.ndarray:
    w = np.zeros(shape, np.float32)
    for r in range(shape[0]):
        for c in range(shape[1]):
            w[r, c] = table[packed_index(data, shape, bits, r, c)]
    return w


def matmul(w: np.ndarray, x: np.ndarray, bias: np.ndarray | None = None) -> np.ndarray:
    """x @ w.T + bias in float64."""
    y = np.asarray(x, np.float64) @ np.asarray(w, np.float64).T
    return y + (0 if bias is None else np.asarray(bias, np.float64))


def csr_counts(row_ptr) -> tuple[int, int, int, int]:
    """(loads, adds, mults, writes) of one CSR matrix-vector product, the talk's convention."""
    loads = adds = mults = writes = 0
    for r in range(len(row_ptr) - 1):
        nnz = int(row_ptr[r + 1]) - int(row_ptr[r])
        loads += 2 + 3 * nnz  # rowPtr twice; colI, value, x per entry
        mults += nnz
        adds += max(nnz - 1, 0)
        writes += 1
    return loads, adds, mults, writes


def grouped_counts(row_ptr, group_ptr, explicit_index: bool) -> tuple[int, int, int, int]:
    """Same for CER (explicit_index False) and CSER (True, one extra index load per group)."""
    loads = adds = mults = writes = 0
    for r in range(len(row_ptr) - 1):
        g0, g1 = int(row_ptr[r]), int(row_ptr[r + 1])
        nnz = int(group_ptr[g1]) - int(group_ptr[g0])
        groups = g1 - g0
        loads += 2 + (groups + 1) + groups + 2 * nnz + (groups if explicit_index else 0)
        mults += groups
        adds += max(nnz - 1, 0)
        writes += 1
    return loads, adds, mults, writes
