"""Bit allocation to a target: search the quantization step for a size or a fidelity goal.

The file size falls smoothly with the step (about 1 bit per weight per doubling, i.e. per 4
QP), so a secant search on ``log(size)`` against the continuous QP hits a size target in a few
encodes.  A fidelity target (a user metric of the decoded tensors, e.g. accuracy or cosine
similarity) is assumed to fall with the step: the coarsest step that still meets it is found by
expanding, then bisecting, in steps of QP.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from nnsqueeze.errors import ConfigError


@dataclass(frozen=True)
class Trial:
    """One encode of the search."""

    qp: float
    file_bytes: int
    metric: float | None = None


def parse_size(text: str | int | float) -> int:
    """``5MB`` -> 5,000,000, ``1.5MiB`` -> 1,572,864, ``12000`` -> 12,000 bytes."""
    if isinstance(text, (int, float)):
        value = float(text)
    else:
        units = {"": 1, "B": 1, "KB": 1e3, "MB": 1e6, "GB": 1e9, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30}
        raw = text.strip().upper().replace(" ", "")
        number = raw.rstrip("KMGIB")
        unit = raw[len(number) :]
        try:
            value = float(number) * units[unit]
        except (ValueError, KeyError):
            msg = f"not a size: {text!r} (examples: 5MB, 1.5MiB, 120000)"
            raise ConfigError(msg) from None
    if not (math.isfinite(value) and value >= 1):
        msg = f"size must be at least 1 byte, got {text!r}"
        raise ConfigError(msg)
    return int(value)


def search_size(
    encode: Callable[[float], int],
    target_bytes: int,
    *,
    start_qp: float,
    num_elements: int,
    tolerance: float = 0.02,
    max_trials: int = 12,
    qp_range: tuple[float, float] = (-96.0, 32.0),
) -> tuple[float, list[Trial]]:
    """The finest QP whose file is at most ``target_bytes`` and within ``tolerance`` below it.

    ``encode(qp)`` returns the file size.  Returns the chosen QP and the trials; raises
    :class:`ConfigError` if even the coarsest QP of ``qp_range`` is too large.
    """
    trials: list[Trial] = []

    def measure(qp: float) -> float:
        qp = min(max(qp, qp_range[0]), qp_range[1])
        size = encode(qp)
        trials.append(Trial(qp, size))
        return math.log(size / target_bytes)

    # Initial slope: one bit per weight per 4 QP, in log(size) per QP.
    qp0 = start_qp
    g0 = measure(qp0)
    size0 = trials[-1].file_bytes
    slope = -num_elements / 32 / max(size0, 1)
    lo: tuple[float, float] | None = None  # feasible side (g <= 0): larger qp
    hi: tuple[float, float] | None = None  # infeasible side (g > 0): smaller qp
    if g0 <= 0:
        lo = (qp0, g0)
    else:
        hi = (qp0, g0)
    qp, g = qp0, g0
    while len(trials) < max_trials:
        if lo is not None and -math.log1p(-tolerance) >= -lo[1] >= 0:
            break
        if lo is not None and hi is not None:
            # regula falsi inside the bracket, kept away from its ends
            t = hi[1] / (hi[1] - lo[1])
            qp = hi[0] + min(max(t, 0.1), 0.9) * (lo[0] - hi[0])
        else:
            # Not bracketed yet: Newton step on the slope (the secant of the last two trials once
            # there are two), at most 16 QP, aiming slightly inside the target.
            if len(trials) >= 2 and trials[-1].qp != trials[-2].qp:
                a, b = trials[-2], trials[-1]
                secant = math.log(b.file_bytes / a.file_bytes) / (b.qp - a.qp)
                slope = secant if secant < 0 else slope
            qp = qp + min(max(-g / slope, -16.0), 16.0) + (0.25 if g > 0 else -0.25)
        g = measure(qp)
        qp = trials[-1].qp
        if trials[-2].qp == qp:
            break  # clamped at an end of qp_range: the target is out of reach
        if g <= 0 and (lo is None or qp < lo[0]):
            lo = (qp, g)
        elif g > 0 and (hi is None or qp > hi[0]):
            hi = (qp, g)
        if g > 0 and qp >= qp_range[1]:
            size = trials[-1].file_bytes
            msg = f"even the coarsest step (qp {qp_range[1]}) gives {size} bytes > {target_bytes}"
            raise ConfigError(msg)
    if lo is None:
        msg = f"no step met the size target of {target_bytes} bytes in {max_trials} trials"
        raise ConfigError(msg)
    return lo[0], trials


def search_metric(
    evaluate: Callable[[float], tuple[float, int]],
    min_metric: float,
    *,
    start_qp: float,
    resolution: float = 0.5,
    max_trials: int = 10,
    qp_range: tuple[float, float] = (-96.0, 32.0),
) -> tuple[float, list[Trial]]:
    """The coarsest QP (to ``resolution``) whose decoded model keeps its metric >= ``min_metric``;
    ``evaluate(qp)`` returns the metric and the file's bytes at ``qp``."""
    trials: list[Trial] = []

    def ok(qp: float) -> bool:
        value, file_bytes = evaluate(qp)
        trials.append(Trial(qp, file_bytes, value))
        return bool(np.isfinite(value) and value >= min_metric)

    good: float | None = None
    bad: float | None = None
    qp, stride = start_qp, 8.0
    if ok(qp):
        good = qp
        while bad is None and good < qp_range[1] and len(trials) < max_trials:
            qp = min(good + stride, qp_range[1])
            if ok(qp):
                good = qp
            else:
                bad = qp
    else:
        bad = qp
        while good is None and bad > qp_range[0] and len(trials) < max_trials:
            qp = max(bad - stride, qp_range[0])
            if ok(qp):
                good = qp
            else:
                bad = qp
    if good is None:
        msg = f"no step reached the metric {min_metric} (finest tried: qp {trials[-1].qp})"
        raise ConfigError(msg)
    while bad is not None and bad - good > resolution and len(trials) < max_trials:
        mid = (good + bad) / 2
        if ok(mid):
            good = mid
        else:
            bad = mid
    return good, trials
