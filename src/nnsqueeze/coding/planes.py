"""Typed wrappers over the C++ plane coder: fast lossless coding of raw tensor elements.

Each element's bits (rotated left by one bit for floats, so that the sign sits at the bottom and
the exponent fills the top byte) are split into byte planes; every plane of every chunk of
``chunk`` elements is stored raw, as one constant byte, or with static order-0 rANS, whichever is
smallest.  Chunks are independent: they encode and decode on all threads.  Bit-exact for every
value (NaN payloads, -0.0, subnormals, infinities).

>>> import numpy as np
>>> from nnsqueeze.coding.planes import encode_planes, decode_planes
>>> x = np.array([1.5, -0.0, np.inf, 1e-45], dtype=np.float32)
>>> coded = encode_planes(x, rotate_sign=True)
>>> y = decode_planes(coded.payload, x.shape, x.dtype, coded.chunk, coded.entry_points, rotate_sign=True)
>>> bool((y.view(np.uint32) == x.view(np.uint32)).all())
True
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nnsqueeze import _core
from nnsqueeze.dtypes import little_endian_bytes
from nnsqueeze.errors import BitstreamError, ConfigError

MAX_CHUNK_ELEMENTS: int = _core.MAX_PLANE_CHUNK_ELEMENTS
DEFAULT_CHUNK_ELEMENTS = MAX_CHUNK_ELEMENTS


@dataclass(frozen=True)
class PlanesPayload:
    payload: bytes
    chunk: int  # elements per chunk
    entry_points: tuple[int, ...]  # bytes per chunk


def encode_planes(
    array: np.ndarray, *, rotate_sign: bool, chunk: int = DEFAULT_CHUNK_ELEMENTS, threads: int = 1
) -> PlanesPayload:
    """Codes the raw elements of ``array``; ``rotate_sign`` for float bit patterns."""
    if not 1 <= chunk <= MAX_CHUNK_ELEMENTS:
        msg = f"chunk must be in 1..{MAX_CHUNK_ELEMENTS}, got {chunk}"
        raise ConfigError(msg)
    data = little_endian_bytes(array)
    payload, lengths = _core.encode_planes(data, array.dtype.itemsize, rotate_sign, chunk, threads)
    return PlanesPayload(payload, chunk, tuple(lengths))


def max_elements(payload_bytes: int, itemsize: int) -> int:
    """Elements a payload can describe: a chunk costs at least two bytes per plane."""
    return payload_bytes // (2 * itemsize) * MAX_CHUNK_ELEMENTS


def decode_planes(
    payload: bytes | memoryview,
    shape: tuple[int, ...],
    dtype: np.dtype[np.generic],
    chunk: int,
    entry_points: tuple[int, ...],
    *,
    rotate_sign: bool,
    threads: int = 1,
) -> np.ndarray:
    """Decodes an array written by :func:`encode_planes` (the dtype's own byte order is little-endian)."""
    count = 1
    for d in shape:
        count *= d
    if count > max_elements(len(payload), dtype.itemsize):
        msg = f"{count} elements cannot come from a payload of {len(payload)} bytes (corrupt header?)"
        raise BitstreamError(msg)
    out = np.empty(count * dtype.itemsize, dtype=np.uint8)
    lengths = np.array(entry_points, dtype=np.uint64)
    try:
        _core.decode_planes(
            np.frombuffer(payload, dtype=np.uint8), lengths, dtype.itemsize, rotate_sign, chunk, threads, out
        )
    except _core.CoreBitstreamError as exc:
        raise BitstreamError(str(exc)) from None
    return out.view(dtype.newbyteorder("<")).astype(dtype, copy=False).reshape(shape)
