"""Typed wrappers over the C++ CABAC coders (arrays in, bytes out; the GIL is released).

>>> import numpy as np
>>> from nnsqueeze.coding import encode_levels, decode_levels
>>> levels = np.array([[0, 3, -1], [0, 0, 7]], dtype=np.int32)
>>> payload = encode_levels(levels)
>>> decode_levels(payload, levels.shape).tolist()
[[0, 3, -1], [0, 0, 7]]
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from nnsqueeze import _core
from nnsqueeze.dtypes import little_endian_bytes
from nnsqueeze.errors import BitstreamError, ConfigError

MAX_GTX: int = _core.MAX_GTX
MAX_ABS_LEVEL: int = _core.MAX_ABS_LEVEL
# Largest quantization step: every (level + offset) * step (|level + offset| < 2^31), doubled for
# dependent quantization, stays a finite float32 (< 2^128).  Decoders refuse larger steps.
MAX_STEP = 2.0**64
MAX_HINT_CLASSES: int = _core.MAX_HINT_CLASSES
DEFAULT_GTX = 24


@dataclass(frozen=True)
class Adaptation:
    """Adaptation speed of the context models: log2 time constants of the fast and slow estimate."""

    fast_shift: int = 5
    slow_shift: int = 9

    def __post_init__(self) -> None:
        if not 1 <= self.fast_shift <= self.slow_shift <= _core.MAX_SHIFT:
            msg = f"need 1 <= fast_shift <= slow_shift <= {_core.MAX_SHIFT}, got {self}"
            raise ConfigError(msg)


@dataclass(frozen=True)
class CoderSettings:
    """The level coder's settings, signalled per tensor: the number of context-coded ``abs > k`` flags
    before the Exp-Golomb remainder and the context models' adaptation."""

    num_gtx: int = DEFAULT_GTX
    adaptation: Adaptation = Adaptation()

    def __post_init__(self) -> None:
        if not 0 <= self.num_gtx <= MAX_GTX:
            msg = f"num_gtx must be in 0..{MAX_GTX}, got {self.num_gtx}"
            raise ConfigError(msg)


def adaptation_for_size(num_elements: int) -> Adaptation:
    """Adaptation rates that suit a tensor of this size: small tensors must learn fast,
    large ones gain from slow, low-noise estimates."""
    if num_elements < 1 << 12:
        return Adaptation(4, 7)
    if num_elements < 1 << 16:
        return Adaptation(5, 9)
    if num_elements < 1 << 20:
        return Adaptation(7, 11)
    return Adaptation(8, 12)


def rows_cols(shape: tuple[int, ...]) -> tuple[int, int]:
    """The 2-D view a tensor is coded in: rows = first dimension, columns = the rest."""
    if len(shape) == 0:
        return 1, 1
    rows = shape[0]
    cols = 1
    for d in shape[1:]:
        cols *= d
    return rows, cols


def _check_levels(levels: np.ndarray, num_gtx: int) -> None:
    if levels.dtype != np.int32:
        msg = f"levels must be int32, got {levels.dtype}"
        raise ConfigError(msg)
    if not 0 <= num_gtx <= MAX_GTX:
        msg = f"num_gtx must be in 0..{MAX_GTX}, got {num_gtx}"
        raise ConfigError(msg)


def encode_levels(
    levels: np.ndarray, *, num_gtx: int = DEFAULT_GTX, adaptation: Adaptation | None = None
) -> bytes:
    """Codes an int32 array of quantization levels, viewed as rows = shape[0] by the rest."""
    _check_levels(levels, num_gtx)
    rate = adaptation or adaptation_for_size(levels.size)
    rows, cols = rows_cols(levels.shape)
    flat = np.ascontiguousarray(levels).reshape(-1)
    return _core.encode_levels(flat, rows, cols, num_gtx, rate.fast_shift, rate.slow_shift)


def _checked_hints(hints: np.ndarray, shape: tuple[int, ...], hint_classes: int) -> np.ndarray:
    """The hints as a flat uint8 array, refused unless they fit ``shape`` and ``0..hint_classes-1``."""
    if not 1 <= hint_classes <= MAX_HINT_CLASSES:
        msg = f"hint_classes must be in 1..{MAX_HINT_CLASSES}, got {hint_classes}"
        raise ConfigError(msg)
    if hints.dtype != np.uint8 or hints.shape != shape:
        msg = f"hints must be a uint8 array of the levels' shape {shape}, got {hints.dtype} {hints.shape}"
        raise ConfigError(msg)
    if hints.size and int(hints.max()) >= hint_classes:
        msg = f"hints must be below hint_classes = {hint_classes}, got {int(hints.max())}"
        raise ConfigError(msg)
    return np.ascontiguousarray(hints).reshape(-1)


def encode_levels_hinted(
    levels: np.ndarray,
    hints: np.ndarray,
    hint_classes: int,
    *,
    num_gtx: int = DEFAULT_GTX,
    adaptation: Adaptation | None = None,
) -> bytes:
    """Codes levels like :func:`encode_levels`, with the significance and sign contexts also chosen
    by ``hints`` (uint8, the levels' shape, values in ``0..hint_classes-1``): a class per element
    that the decoder knows as well, such as the previous global update in federated learning.
    Not part of the ``.nnsq`` format.

    >>> levels = np.array([[0, 1, -1], [0, 0, 1]], dtype=np.int32)
    >>> hints = np.array([[0, 2, 1], [0, 1, 2]], dtype=np.uint8)
    >>> payload = encode_levels_hinted(levels, hints, 3)
    >>> decode_levels_hinted(payload, levels.shape, hints, 3).tolist()
    [[0, 1, -1], [0, 0, 1]]
    """
    _check_levels(levels, num_gtx)
    flat_hints = _checked_hints(hints, levels.shape, hint_classes)
    rate = adaptation or adaptation_for_size(levels.size)
    rows, cols = rows_cols(levels.shape)
    flat = np.ascontiguousarray(levels).reshape(-1)
    return _core.encode_levels_hinted(
        flat, rows, cols, num_gtx, rate.fast_shift, rate.slow_shift, flat_hints, hint_classes
    )


def decode_levels_hinted(
    payload: bytes,
    shape: tuple[int, ...],
    hints: np.ndarray,
    hint_classes: int,
    *,
    num_gtx: int = DEFAULT_GTX,
    adaptation: Adaptation | None = None,
) -> np.ndarray:
    """Decodes levels written by :func:`encode_levels_hinted` with the same hints and parameters."""
    flat_hints = _checked_hints(hints, shape, hint_classes)
    return _decode(
        _core.decode_levels_hinted, payload, shape, np.int32, num_gtx, adaptation, flat_hints, hint_classes
    )


MAX_EFFORT = 3


def one_pass_setting(count: int, num_gtx: int | None) -> CoderSettings:
    """The coder setting for a tensor of ``count`` levels without trying any (effort 1).

    Chosen on the MNIST-1D CNN (validation data; within 0.04 % of the best of the effort-2 search
    there): below 2^16 levels, 10 ``abs > k`` flags (the shared Exp-Golomb prefix contexts learn
    faster than 24 per-class flag contexts on few levels) and fast adaptation; above, 24 flags and
    slow, low-noise estimates."""
    if count < 1 << 16:
        return CoderSettings(10 if num_gtx is None else num_gtx, Adaptation(5, 9))
    gtx = DEFAULT_GTX if num_gtx is None else num_gtx
    return CoderSettings(gtx, Adaptation(7, 11) if count < 1 << 20 else Adaptation(8, 12))


def candidate_settings(count: int, num_gtx: int | None, effort: int = 1) -> list[CoderSettings]:
    """Coder settings to try for a tensor of ``count`` levels, like zstd's levels: effort 1 codes once
    with :func:`one_pass_setting`; effort 2 tries 10 and 24 flags times two adaptation rates below
    2^16 levels (about 0.1-0.7 % smaller there); effort 3 tries 3 x 4 settings below 2^20 levels."""
    if not 1 <= effort <= MAX_EFFORT:
        msg = f"effort must be in 1..{MAX_EFFORT}, got {effort}"
        raise ConfigError(msg)
    limit = {1: 0, 2: 1 << 16, 3: 1 << 20}[effort]
    if count >= limit:
        return [one_pass_setting(count, num_gtx)]
    if effort == 2:
        gtx_options, rates = [10, DEFAULT_GTX], [Adaptation(5, 9), Adaptation(7, 11)]
    else:
        gtx_options = [4, 10, DEFAULT_GTX]
        rates = [Adaptation(4, 7), Adaptation(5, 9), Adaptation(7, 11), Adaptation(8, 12)]
    if num_gtx is not None:
        gtx_options = [num_gtx]
    return [CoderSettings(g, r) for g in gtx_options for r in rates]


def _decode(
    core_decode: Callable[..., None],
    payload: bytes | memoryview,
    shape: tuple[int, ...],
    dtype: type[np.generic],
    num_gtx: int,
    adaptation: Adaptation | None,
    *extra: float | np.ndarray,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Runs one of the core's level decoders into ``out`` (flat, contiguous, of ``dtype``) or a fresh
    array of ``shape``; ``extra`` are the decoder's own arguments (reconstruction, hints)."""
    count = _checked_count(payload, shape)
    rate = adaptation or adaptation_for_size(count)
    rows, cols = rows_cols(shape)
    if out is None:
        out = np.empty(count, dtype=dtype)
    elif out.dtype != dtype or out.shape != (count,):
        msg = f"out must be a flat {np.dtype(dtype)} array of {count} elements, got {out.dtype} {out.shape}"
        raise ConfigError(msg)
    data = np.frombuffer(payload, dtype=np.uint8)
    try:
        core_decode(data, rows, cols, num_gtx, rate.fast_shift, rate.slow_shift, *extra, out)
    except _core.CoreBitstreamError as exc:
        raise BitstreamError(str(exc)) from None
    return out.reshape(shape)


def decode_levels(
    payload: bytes | memoryview,
    shape: tuple[int, ...],
    *,
    num_gtx: int = DEFAULT_GTX,
    adaptation: Adaptation | None = None,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Decodes levels written by :func:`encode_levels` with the same shape and parameters (into the
    flat int32 array ``out`` if given)."""
    return _decode(_core.decode_levels, payload, shape, np.int32, num_gtx, adaptation, out=out)


def decode_dequantized(
    payload: bytes | memoryview,
    shape: tuple[int, ...],
    step: float,
    *,
    offset: int = 0,
    num_gtx: int = DEFAULT_GTX,
    adaptation: Adaptation | None = None,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """:func:`decode_levels` fused with reconstruction: float32 ``(level + offset) * step``,
    without an intermediate level array."""
    return _decode(
        _core.decode_dequantize, payload, shape, np.float32, num_gtx, adaptation, offset, step, out=out
    )


def decode_dependent(
    payload: bytes | memoryview,
    shape: tuple[int, ...],
    step: float,
    *,
    num_gtx: int = DEFAULT_GTX,
    adaptation: Adaptation | None = None,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Decodes symbols of dependent (trellis-coded) quantization and reconstructs float32 values."""
    return _decode(_core.decode_dependent, payload, shape, np.float32, num_gtx, adaptation, step, out=out)


def max_elements_for_payload(payload_bytes: int) -> int:
    """Most levels a payload of this size can carry (each costs at least one clamped context-coded bin)."""
    return int(_core.max_elements_for_payload(payload_bytes))


def _checked_count(payload: bytes | memoryview, shape: tuple[int, ...]) -> int:
    """Element count of ``shape``, refused if the payload cannot carry that many elements."""
    count = 1
    for d in shape:
        count *= d
    if count > max_elements_for_payload(len(payload)):
        msg = f"{count} elements cannot come from a payload of {len(payload)} bytes (corrupt header?)"
        raise BitstreamError(msg)
    return count


def encode_bytes(array: np.ndarray) -> bytes:
    """Losslessly codes the raw bytes of an array (element by element, most significant byte first)."""
    return _core.encode_bytes(little_endian_bytes(array), array.dtype.itemsize)


def decode_bytes(
    payload: bytes | memoryview, shape: tuple[int, ...], dtype: np.dtype[np.generic]
) -> np.ndarray:
    """Decodes an array written by :func:`encode_bytes`."""
    count = _checked_count(payload, shape)
    out = np.empty(count * dtype.itemsize, dtype=np.uint8)
    try:
        _core.decode_bytes(np.frombuffer(payload, dtype=np.uint8), dtype.itemsize, out)
    except _core.CoreBitstreamError as exc:
        raise BitstreamError(str(exc)) from None
    return out.view(dtype).reshape(shape)
