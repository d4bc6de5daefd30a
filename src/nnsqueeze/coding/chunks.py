"""Entry points: large tensors are coded as independent chunks, so that one tensor encodes and
decodes on all threads (in the spirit of NNR's ``cabac_entry_point_list``).

Level records are split into chunks of whole rows, each coded exactly like a tensor of those rows
(fresh context models); plane records into chunks of elements.  The split depends only on the
shape, never on the thread count, so the bytes do not depend on how many threads wrote them.
"""

from __future__ import annotations

from collections.abc import Sequence

from nnsqueeze.coding.cabac import rows_cols

# About a million levels a chunk: the context models' warm-up costs < 0.01 % of such a chunk.
LEVEL_CHUNK_ELEMENTS = 1 << 20


def level_chunk_rows(shape: tuple[int, ...], chunk_elements: int = LEVEL_CHUNK_ELEMENTS) -> int:
    """Rows per chunk for a level record of ``shape``; 0 (one stream) below two chunks' worth."""
    rows, cols = rows_cols(shape)
    if rows < 2 or rows * cols < 2 * chunk_elements:
        return 0
    return max(1, chunk_elements // cols)


def row_ranges(rows: int, chunk_rows: int) -> list[tuple[int, int]]:
    """The ``[begin, end)`` rows of each chunk."""
    return [(r, min(rows, r + chunk_rows)) for r in range(0, rows, chunk_rows)]


def split_payload(payload: bytes | memoryview, entry_points: Sequence[int]) -> list[memoryview]:
    """The chunks of a payload, without copying (the header checked that the lengths add up)."""
    view = memoryview(payload)
    out, start = [], 0
    for length in entry_points:
        out.append(view[start : start + length])
        start += length
    return out
