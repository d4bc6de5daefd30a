"""``nnsqueeze info --formats FILE.nnsq``: each weight matrix's storage, operations and energy in every
inference format of :mod:`nnsqueeze.sparse` (one matrix-vector product, 45 nm energy model).

Weights quantized uniformly are converted from their integer levels without a float matrix; other
float tensors of two or more dimensions are decoded first.  Tensors are viewed as matrices (first
dimension x the rest), as a convolution's weight is by im2col.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from nnsqueeze.codec import NnsqFile
from nnsqueeze.dtypes import FLOAT_DTYPES
from nnsqueeze.errors import TensorError
from nnsqueeze.sparse import FORMATS
from nnsqueeze.sparse._codes import ValueCodes, codes_from_dense, codes_from_levels
from nnsqueeze.sparse.levels import read_levels


@dataclass(frozen=True)
class FormatRow:
    """One weight matrix in one format: exact storage, operations and energy of a matrix-vector product."""

    tensor: str
    shape: tuple[int, int]
    values: int
    zeros: float
    format: str
    nbytes: int
    loads: int
    ops: int
    energy_pj: float


def _matrices(f: NnsqFile) -> Iterator[tuple[str, ValueCodes]]:
    for name in f.names:
        header = f.header(name)
        if len(header.shape) < 2 or header.dtype not in FLOAT_DTYPES:
            continue
        lv = read_levels(f, name)
        if lv is not None:
            yield name, codes_from_levels(lv.levels, lv.step, lv.offset)
        else:
            w = f.read(name)
            yield name, codes_from_dense(w.reshape(w.shape[0], -1).astype(np.float32))


def format_rows(source: str | os.PathLike[str] | NnsqFile) -> list[FormatRow]:
    """The table of ``nnsqueeze info --formats``: every weight matrix in every format that can hold it."""
    f = source if isinstance(source, NnsqFile) else NnsqFile(source)
    try:
        rows: list[FormatRow] = []
        for name, codes in _matrices(f):
            zero = np.searchsorted(codes.values, 0.0)
            zeros = codes.counts[zero] if zero < codes.num_values and codes.values[zero] == 0.0 else 0
            size = max(codes.shape[0] * codes.shape[1], 1)
            for fmt_name, cls in FORMATS.items():
                try:
                    fmt = cls.from_codes(codes)
                except TensorError:  # e.g. more than 256 values for a packed codebook
                    continue
                cost = fmt.product_cost()
                rows.append(
                    FormatRow(
                        name,
                        codes.shape,
                        codes.num_values,
                        float(zeros) / size,
                        fmt_name,
                        fmt.nbytes,
                        cost.counts.loads,
                        cost.counts.ops,
                        cost.energy.total_pj,
                    )
                )
        return rows
    finally:
        if not isinstance(source, NnsqFile):
            f.close()


def render(rows: list[FormatRow], title: str) -> str:
    """The rows as an aligned text table with per-format totals."""
    header = ("tensor", "shape", "values", "zeros", "format", "bytes", "x dense", "loads", "ops", "energy uJ")
    dense = {r.tensor: r.nbytes for r in rows if r.format == "dense"}
    table = [
        (
            r.tensor,
            f"{r.shape[0]}x{r.shape[1]}",
            str(r.values),
            f"{100 * r.zeros:.1f}%",
            r.format,
            f"{r.nbytes:,}",
            f"{r.nbytes / max(dense.get(r.tensor, r.nbytes), 1):.3f}",
            f"{r.loads:,}",
            f"{r.ops:,}",
            f"{r.energy_pj / 1e6:.3f}",
        )
        for r in rows
    ]
    widths = [max(len(row[i]) for row in [header, *table]) for i in range(len(header))]
    lines = [title]
    for i, row in enumerate([header, *table]):
        if i > 1 and row[0] == table[i - 2][0]:
            row = ("", "", "", "", *row[4:])
        lines.append(
            "  ".join(
                c.ljust(w) if j < 5 else c.rjust(w) for j, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )
    lines.append("totals (the formats that hold every matrix):")
    tensors = {r.tensor for r in rows}
    for fmt_name in FORMATS:
        mine = [r for r in rows if r.format == fmt_name]
        if len({r.tensor for r in mine}) != len(tensors) or not mine:
            continue
        total = sum(r.nbytes for r in mine)
        ops = sum(r.ops for r in mine)
        energy = sum(r.energy_pj for r in mine) / 1e6
        ref = sum(dense.values()) or 1
        lines.append(
            f"  {fmt_name:<7} {total:>14,} bytes ({total / ref:.3f} x dense)  {ops:>14,} ops  {energy:.3f} uJ"
        )
    return "\n".join(lines)


def print_formats(path: str | os.PathLike[str]) -> int:
    """Prints the table for ``path``; the body of ``nnsqueeze info --formats``."""
    rows = format_rows(path)
    print(render(rows, f"{path}: weight matrices in each inference format (one matrix-vector product)"))
    return 0
