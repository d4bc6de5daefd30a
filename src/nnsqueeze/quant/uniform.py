"""Uniform scalar quantization on a QP grid: ``step = 2 ** (qp / 4)``.

Every 4 QP double the step (QP -28 gives 2^-7 = 0.0078125), the grid NNCodec uses for
multiples of 4.

>>> import numpy as np
>>> from nnsqueeze.quant import qp_to_step, quantize, dequantize
>>> step = qp_to_step(-8)
>>> quantize(np.array([0.3, -0.2, 0.01], dtype=np.float32), step).tolist()
[1, -1, 0]
>>> dequantize(np.array([1, -1, 0], dtype=np.int32), step).tolist()
[0.25, -0.25, 0.0]
"""

from __future__ import annotations

import math

import numpy as np

from nnsqueeze import _core
from nnsqueeze.coding.cabac import MAX_STEP
from nnsqueeze.errors import ConfigError, TensorError

MAX_ABS_LEVEL: int = _core.MAX_ABS_LEVEL


def qp_to_step(qp: int) -> float:
    """Step size of an integer quantization parameter."""
    if not isinstance(qp, int) or isinstance(qp, bool):
        msg = f"qp must be an integer, got {qp!r}"
        raise ConfigError(msg)
    if not -200 <= qp <= 100:
        msg = f"qp {qp} is outside the supported range -200..100"
        raise ConfigError(msg)
    return float(2.0 ** (qp / 4))


def step_to_qp(step: float) -> float:
    """The (possibly fractional) QP of a step size."""
    return 4 * math.log2(step)


def check_step(step: float) -> float:
    if not (isinstance(step, (int, float)) and math.isfinite(step) and 0 < step <= MAX_STEP):
        msg = f"step must be a positive finite number up to 2^64, got {step!r}"
        raise ConfigError(msg)
    return float(step)


def unquantizable(values: np.ndarray, step: float) -> str | None:
    """Why ``values`` cannot be quantized at ``step``, or None if they can: non-finite values, or
    magnitudes beyond the coder's ``MAX_ABS_LEVEL`` levels (conservative by half a level).

    >>> unquantizable(np.array([0.5, -2.0]), 0.01) is None
    True
    >>> unquantizable(np.array([1.0, np.nan, np.inf]), 0.01)
    '2 non-finite values (NaN/Inf)'
    """
    flat = np.asarray(values).reshape(-1)
    if flat.size == 0:
        return None
    lo, hi = float(flat.min()), float(flat.max())  # NaN propagates; no temporary array
    if not (math.isfinite(lo) and math.isfinite(hi)):
        bad = int(flat.size - np.count_nonzero(np.isfinite(flat)))
        return f"{bad} non-finite value{'s' if bad > 1 else ''} (NaN/Inf)"
    peak = max(hi, -lo)
    if peak / check_step(step) > MAX_ABS_LEVEL:
        return f"|values| up to {peak:g} exceed {MAX_ABS_LEVEL} steps of {step:g}"
    return None


def quantize(values: np.ndarray, step: float, *, name: str = "tensor") -> np.ndarray:
    """Rounds ``values / step`` to the nearest integer level (ties away from zero).

    Raises :class:`TensorError` naming ``name`` for NaN/Inf values or levels beyond the
    coder's range (the step is too small for these values).
    """
    step = check_step(step)
    flat = np.ascontiguousarray(values, dtype=np.float32).reshape(-1)
    levels = np.empty(flat.size, dtype=np.int32)
    bad = _core.quantize_uniform(flat, step, MAX_ABS_LEVEL, levels)
    if bad >= 0:
        value = float(flat[bad])
        if not math.isfinite(value):
            msg = (
                f"{name}: element {bad} is {value}; NaN/Inf cannot be quantized "
                "(fix the model, or store this tensor losslessly with lossless=True)"
            )
        else:
            msg = (
                f"{name}: element {bad} = {value:g} is beyond {MAX_ABS_LEVEL} steps of {step:g}; "
                "use a larger step (higher qp) or lossless=True"
            )
        raise TensorError(msg)
    return levels.reshape(np.shape(values))


def dequantize(levels: np.ndarray, step: float, *, offset: int = 0) -> np.ndarray:
    """Reconstructs ``(levels + offset) * step`` as float32."""
    flat = np.ascontiguousarray(levels, dtype=np.int32).reshape(-1)
    if offset:
        flat = flat + np.int32(offset)
    out = np.empty(flat.size, dtype=np.float32)
    _core.dequantize_uniform(flat, check_step(step), out)
    return out.reshape(np.shape(levels))
