"""Rate-distortion optimised quantization (RDOQ), fused with coding in the C++ core.

Each weight takes the level among {0, floor, ceil} of ``w / step`` that minimises
``importance * (w / step - q) ** 2 + lambda_ * bits(q)``, with ``bits`` estimated from the live
context models at that point of the scan: the rate the coder will actually spend.  Importance
(e.g. a diagonal Fisher information) is normalised to mean 1 per tensor, so ``lambda_`` means
the same for every tensor: the squared-step distortion one bit is worth.

>>> import numpy as np
>>> from nnsqueeze.quant.rdo import rdo_encode
>>> w = np.random.default_rng(0).normal(0, 0.05, (64, 64)).astype(np.float32)
>>> plain = rdo_encode(w, 2 ** -7, lambda_=0.0)
>>> rdo = rdo_encode(w, 2 ** -7, lambda_=0.3)
>>> len(rdo.payload) < len(plain.payload)
True
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from nnsqueeze import _core
from nnsqueeze.coding.cabac import Adaptation, rows_cols
from nnsqueeze.errors import ConfigError, TensorError
from nnsqueeze.quant.uniform import check_step, unquantizable


@dataclass(frozen=True)
class RdoResult:
    levels: np.ndarray | None  # int32, the shape of the input (None when not asked for)
    payload: bytes
    distortion: float  # sum of importance * (w / step - q) ** 2

    def objective(self, lambda_: float) -> float:
        """Distortion plus ``lambda_`` times the bits actually coded."""
        return self.distortion + lambda_ * 8 * len(self.payload)


def normalized_importance(importance: np.ndarray, shape: tuple[int, ...], name: str) -> np.ndarray:
    """Importance as float32, mean 1, validated against the tensor's shape."""
    imp = np.asarray(importance, dtype=np.float32)
    if imp.shape != shape:
        msg = f"{name}: importance has shape {imp.shape}, the tensor has {shape}"
        raise ConfigError(msg)
    if imp.size and (not np.isfinite(imp).all() or (imp < 0).any()):
        msg = f"{name}: importance must be finite and non-negative"
        raise ConfigError(msg)
    mean = float(imp.mean()) if imp.size else 0.0
    return np.ascontiguousarray(imp / mean if mean > 0 else np.ones_like(imp))


def _checked_weights(values: np.ndarray, step: float, lambda_: float, name: str) -> np.ndarray:
    """The weights as contiguous float32, refused if non-finite or beyond the level range."""
    if not (np.isfinite(lambda_) and lambda_ >= 0):
        msg = f"lambda_ must be finite and >= 0, got {lambda_}"
        raise ConfigError(msg)
    w = np.ascontiguousarray(values, dtype=np.float32)
    flat = w.reshape(-1)
    reason = unquantizable(flat, step)
    if reason is not None:
        finite = np.isfinite(flat)
        if not finite.all():
            bad = int(np.argmin(finite))
            msg = f"{name}: element {bad} is {flat[bad]}; NaN/Inf cannot be quantized"
        else:
            msg = f"{name}: {reason}; use a larger step"
        raise TensorError(msg)
    return w


def trellis_encode(
    values: np.ndarray,
    step: float,
    *,
    lambda_: float,
    importance: np.ndarray | None = None,
    num_gtx: int = 24,
    adaptation: Adaptation | None = None,
    name: str = "tensor",
) -> RdoResult:
    """Dependent (trellis-coded) quantization with the rate term ``lambda_`` (see ``trellis.hpp``).

    ``levels`` of the result are the coded symbols k; the reconstruction of each depends on the
    quantizer state, so decode with ``nnsqueeze.coding.decode_dependent``.
    """
    return _run(_core.encode_trellis, values, step, lambda_, importance, num_gtx, adaptation, name)


def rdo_encode(
    values: np.ndarray,
    step: float,
    *,
    lambda_: float,
    importance: np.ndarray | None = None,
    num_gtx: int = 24,
    adaptation: Adaptation | None = None,
    name: str = "tensor",
) -> RdoResult:
    """Quantizes ``values`` with RDOQ and codes the levels; decodable by ``decode_levels``."""
    rounded = _run(_core.encode_rdoq, values, step, 0.0, importance, num_gtx, adaptation, name)
    if lambda_ == 0:
        return rounded
    # The greedy choices see only the current contexts, and the contexts adapt to the choices,
    # so on some tensors plain rounding ends up cheaper: keep whichever has the lower objective.
    optimised = _run(_core.encode_rdoq, values, step, lambda_, importance, num_gtx, adaptation, name)
    return min((optimised, rounded), key=lambda r: r.objective(lambda_))


def _run(
    core_encode: Callable[..., tuple[bytes, float]],
    values: np.ndarray,
    step: float,
    lambda_: float,
    importance: np.ndarray | None,
    num_gtx: int,
    adaptation: Adaptation | None,
    name: str,
    keep_levels: bool = True,
) -> RdoResult:
    """Checks the inputs and runs one of the core's fused quantize-and-code loops."""
    step = check_step(step)
    w = _checked_weights(values, step, lambda_, name)
    imp = None if importance is None else normalized_importance(importance, w.shape, name).reshape(-1)
    rate = adaptation or Adaptation(7, 11)
    rows, cols = rows_cols(w.shape)
    levels = np.empty(w.size, dtype=np.int32) if keep_levels else None
    payload, distortion = core_encode(
        w.reshape(-1),
        imp,
        rows,
        cols,
        step,
        float(lambda_),
        num_gtx,
        rate.fast_shift,
        rate.slow_shift,
        levels,
    )
    return RdoResult(None if levels is None else levels.reshape(w.shape), payload, distortion)


def uniform_encode(
    values: np.ndarray, step: float, *, num_gtx: int, adaptation: Adaptation, name: str = "tensor"
) -> bytes:
    """Rounds to the nearest level and codes in one pass, without a level array in memory
    (the same payload as ``encode_levels(quantize(values, step))``)."""
    return _run(
        _core.encode_rdoq, values, step, 0.0, None, num_gtx, adaptation, name, keep_levels=False
    ).payload
