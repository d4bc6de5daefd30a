"""Data-free step allocation between tensors: how many bits each weight tensor gets.

A model coded with one step spends its bits as if every weight mattered equally.  It does not: an
error of one step in a layer of small weights is a large *relative* error of that layer's output,
and with normalisation and residual paths it is relative errors that add up through the network.

The model behind the rule: quantization noise of variance ``step_t² / 12`` in tensor ``t`` perturbs
that layer's output by a relative variance of about ``step_t² / (12 σ_t²)`` (σ_t: the weights'
standard deviation), whatever the tensor's size ``n_t``, while the tensor costs about
``n_t · log2(σ_t / step_t)`` bits.  Minimising the total bits for a given sum of relative output
distortions (equal slope) gives ``step_t ∝ σ_t · sqrt(n_t)``: small weights get finer steps, big
tensors coarser ones.  ``strength`` blends one step for all (0) with that rule (1):

    step_t = step · (σ_t / σ̄)^strength · (n_t / n̄)^(strength / 2)

with σ̄ and n̄ the size-weighted geometric means over the model's weight tensors, so the mean log
step, and with it roughly the file size at a given QP, stays that of the plain step.  Only weight
tensors (float, two or more dimensions) are allocated; 1-D tensors keep their own finer step.
The strength is chosen once on validation data (``docs/rd.md``), never per model.

With sample inputs the sensitivity is measured instead of guessed (:mod:`nnsqueeze.calibration`):
``c_t``, the relative output distortion of tensor ``t`` per squared step, gives at equal slope
``step_t ∝ sqrt(n_t / c_t)`` (:func:`allocate_by_sensitivity`).

>>> import numpy as np
>>> stats = {"big": TensorStats(4096, 0.02), "small": TensorStats(64, 0.02)}
>>> steps = allocate_steps(stats, 0.01, strength=1.0)
>>> round(steps["big"] / steps["small"], 3)  # sqrt(4096 / 64)
8.0
>>> allocate_steps(stats, 0.01, strength=0.0) == {"big": 0.01, "small": 0.01}
True
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import NamedTuple

import numpy as np

from nnsqueeze.errors import ConfigError


class TensorStats(NamedTuple):
    """What allocation needs of one weight tensor: its element count and standard deviation."""

    elements: int
    std: float


def weight_statistics(tensors: Iterable[tuple[str, np.ndarray]]) -> dict[str, TensorStats]:
    """Element counts and standard deviations of the weight tensors (2 or more dimensions) among
    ``(name, float32 values)`` pairs; constant or non-finite tensors are left out (they keep the
    plain step)."""
    stats: dict[str, TensorStats] = {}
    for name, values in tensors:
        if values.ndim < 2 or values.size == 0:
            continue
        std = float(np.std(values, dtype=np.float64))
        if math.isfinite(std) and std > 0.0:
            stats[name] = TensorStats(int(values.size), std)
    return stats


def check_strength(strength: float) -> float:
    """``strength`` if it is an allocation strength (finite, 0 to 2), else :class:`ConfigError`."""
    if not (math.isfinite(strength) and 0.0 <= strength <= 2.0):
        msg = f"step allocation strength must be in [0, 2], got {strength}"
        raise ConfigError(msg)
    return strength


def allocate_steps(stats: Mapping[str, TensorStats], step: float, strength: float) -> dict[str, float]:
    """The step of each tensor in ``stats`` for a model whose plain step is ``step`` (see the module
    docstring); ``strength`` 0 gives every tensor ``step``."""
    check_strength(strength)
    if not stats or strength == 0.0:
        return dict.fromkeys(stats, step)
    total = sum(s.elements for s in stats.values())
    mean_log_std = sum(s.elements * math.log(s.std) for s in stats.values()) / total
    mean_log_n = sum(s.elements * math.log(s.elements) for s in stats.values()) / total
    return {
        name: step
        * math.exp(strength * (math.log(s.std) - mean_log_std + 0.5 * (math.log(s.elements) - mean_log_n)))
        for name, s in stats.items()
    }


# A measured sensitivity moves a step by at most this factor either way: the quadratic model of
# the distortion holds near the step it was measured at, and a tensor whose rounding did not move
# the outputs at all must not be zeroed by an unbounded step.
MAX_CALIBRATED_RATIO = 64.0


def allocate_by_sensitivity(
    elements: Mapping[str, int], sensitivity: Mapping[str, float], step: float, strength: float
) -> dict[str, float]:
    """The step of each tensor for a model whose plain step is ``step``, from measured
    sensitivities ``c_t`` (output distortion per squared step; :mod:`nnsqueeze.calibration`):
    ``step_t = step · (w_t / w̄)^strength`` with ``w_t = sqrt(n_t / c_t)`` and ``w̄`` their
    size-weighted geometric mean, each ratio within :data:`MAX_CALIBRATED_RATIO`.

    >>> steps = allocate_by_sensitivity({"a": 100, "b": 100}, {"a": 4.0, "b": 1.0}, 0.01, 1.0)
    >>> round(steps["b"] / steps["a"], 6)  # four times as sensitive: half the step
    2.0
    """
    check_strength(strength)
    if set(elements) != set(sensitivity):
        msg = "sensitivities and element counts name different tensors"
        raise ConfigError(msg)
    positive = [c for c in sensitivity.values() if math.isfinite(c) and c > 0]
    if not positive or strength == 0.0:
        return dict.fromkeys(elements, step)
    floor = max(positive) / MAX_CALIBRATED_RATIO**4  # below this a tensor is as good as insensitive
    log_w = {
        name: 0.5 * (math.log(n) - math.log(max(sensitivity[name], floor))) for name, n in elements.items()
    }
    total = sum(elements.values())
    mean = sum(elements[name] * w for name, w in log_w.items()) / total
    bound = math.log(MAX_CALIBRATED_RATIO)
    return {
        name: step * math.exp(min(max(strength * (w - mean), -bound), bound)) for name, w in log_w.items()
    }
