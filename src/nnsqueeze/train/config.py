"""Configuration objects of the training-time compression tools, checked when they are built.

Hyperparameters live here only (scikit-learn style); the functions that use them take a config.
Bad values raise :class:`nnsqueeze.ConfigError` (a ``ValueError``) saying what is allowed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from nnsqueeze.errors import ConfigError

SCOPES = ("layer", "global")
STRUCTURES = ("unstructured", "channel")
SCHEDULES = ("one_shot", "gradual")
QUANTIZERS = ("grid", "kmeans")


def _check_fraction(name: str, value: float) -> None:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and 0.0 <= value < 1.0):
        msg = f"{name} must be in [0, 1) (the fraction of weights set to zero), got {value!r}"
        raise ConfigError(msg)


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        msg = f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}"
        raise ConfigError(msg)


def _check_positive(name: str, value: float) -> None:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        msg = f"{name} must be a positive number, got {value!r}"
        raise ConfigError(msg)


def _check_count(name: str, value: int, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        msg = f"{name} must be an integer >= {minimum}, got {value!r}"
        raise ConfigError(msg)


@dataclass(frozen=True)
class PruningConfig:
    """Magnitude pruning.

    sparsity
        Final fraction of prunable weights set to zero, in [0, 1).  With ``structure="channel"``
        it is the fraction of output channels (rows of a Linear, filters of a Conv) removed.
    scope
        ``"layer"``: every layer loses the same fraction; ``"global"``: one magnitude threshold over
        all prunable layers (channels ranked by their RMS, so wide and narrow layers compare).
    structure
        ``"unstructured"`` (single weights) or ``"channel"`` (whole output channels and their bias).
    schedule
        ``"one_shot"`` or ``"gradual"``: ``steps`` increases along Zhu & Gupta's cubic schedule
        from ``initial_sparsity``, with fine-tuning between them when a fine-tune function is given.
    exclude
        Names of modules (as in ``named_modules``) left dense.  With ``structure="channel"`` the
        last prunable layer (the classifier, whose channels are the classes) is always left out.
    """

    sparsity: float = 0.9
    scope: str = "layer"
    structure: str = "unstructured"
    schedule: str = "one_shot"
    steps: int = 5
    initial_sparsity: float = 0.0
    exclude: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _check_fraction("sparsity", self.sparsity)
        _check_fraction("initial_sparsity", self.initial_sparsity)
        _check_choice("scope", self.scope, SCOPES)
        _check_choice("structure", self.structure, STRUCTURES)
        _check_choice("schedule", self.schedule, SCHEDULES)
        _check_count("steps", self.steps, 1)
        if self.initial_sparsity > self.sparsity:
            msg = f"initial_sparsity ({self.initial_sparsity}) must not exceed sparsity ({self.sparsity})"
            raise ConfigError(msg)


@dataclass(frozen=True)
class SharingConfig:
    """k-means weight sharing (Deep Compression): ``k`` shared values per layer.

    Pruned (zero) weights stay zero and are not counted in ``k``.  ``grid_step`` (optional) snaps the
    centroids to multiples of the codec's step at conversion, so the codec stores them exactly
    (centroids that meet on the grid merge, leaving at most ``k`` values).
    """

    k: int = 16
    iterations: int = 30
    grid_step: float | None = None

    def __post_init__(self) -> None:
        _check_count("k", self.k, 1)
        _check_count("iterations", self.iterations, 1)
        if self.grid_step is not None:
            _check_positive("grid_step", self.grid_step)


@dataclass(frozen=True)
class TernaryConfig:
    """Trained ternary quantization (Zhu et al. 2017): weights in {-Wn, 0, +Wp}, Wn and Wp learned.

    ``threshold`` is the fraction of the layer's largest magnitude below which a latent weight maps
    to zero.  ``grid_step`` snaps the two scales to the codec's grid at conversion.
    """

    threshold: float = 0.05
    grid_step: float | None = None

    def __post_init__(self) -> None:
        if not (math.isfinite(self.threshold) and 0.0 <= self.threshold < 1.0):
            msg = f"threshold must be in [0, 1), got {self.threshold!r}"
            raise ConfigError(msg)
        if self.grid_step is not None:
            _check_positive("grid_step", self.grid_step)


@dataclass(frozen=True)
class QATConfig:
    """Quantization-aware training toward the codec's grid: weights (tensors with >= 2 dims) on
    multiples of ``step``, 1-D tensors (biases) on multiples of ``step * 2 ** (qp_1d_offset / 4)``,
    with a straight-through gradient.  ``qp_1d_offset`` matches :class:`nnsqueeze.CompressOptions`."""

    step: float = 2.0**-5
    qp_1d_offset: int = -8
    quantize_1d: bool = True

    def __post_init__(self) -> None:
        _check_positive("step", self.step)

    @property
    def vector_step(self) -> float:
        return self.step * float(2.0 ** (self.qp_1d_offset / 4))


@dataclass(frozen=True)
class DistillConfig:
    """Knowledge distillation (Hinton et al. 2015): ``alpha`` weighs the soft (teacher) term, scaled
    by ``temperature ** 2``; ``1 - alpha`` weighs cross-entropy with the labels."""

    temperature: float = 4.0
    alpha: float = 0.7
    epochs: int = 30
    lr: float = 2e-3

    def __post_init__(self) -> None:
        _check_positive("temperature", self.temperature)
        if not (math.isfinite(self.alpha) and 0.0 <= self.alpha <= 1.0):
            msg = f"alpha must be in [0, 1], got {self.alpha!r}"
            raise ConfigError(msg)
        _check_count("epochs", self.epochs, 0)
        _check_positive("lr", self.lr)


@dataclass(frozen=True)
class SqueezeConfig:
    """The :func:`nnsqueeze.train.squeeze` pipeline.

    sparsities
        Pruning levels tried in order (gradually, fine-tuning ``prune_epochs`` after each); the
        highest that keeps the accuracy budget is kept; pruning goes on past ``patience`` levels
        in a row that miss it (fine-tuning at the next level may recover), then stops.
    structure, scope
        As in :class:`PruningConfig` (``scope`` defaults to ``"global"`` here).
    quantizer
        ``"grid"``: quantization-aware fine-tuning onto the codec's step grid; ``"kmeans"``: k-means
        sharing (``k``) with centroid fine-tuning, centroids snapped to the grid.
    steps
        Codec steps tried for quantization, coarse to fine; the coarsest that keeps the budget wins.
    qp_1d_offset
        Biases are coded (and quantized) at ``step * 2 ** (qp_1d_offset / 4)``.
    """

    sparsities: tuple[float, ...] = (0.5, 0.7, 0.8, 0.9, 0.93, 0.95, 0.96, 0.97, 0.98, 0.985, 0.99)
    structure: str = "unstructured"
    # global: one magnitude threshold over all layers; per-layer pruning takes as large a share of the
    # small output layer as of the big hidden ones (digits MLP at 97 %: test 0.62 per layer, 0.91 global)
    scope: str = "global"
    prune_epochs: int = 8
    patience: int = 1
    quantizer: str = "grid"
    k: int = 8
    steps: tuple[float, ...] = tuple(2.0 ** (-e / 2) for e in range(0, 13))  # 1 down to 1/64
    qat_epochs: int = 8
    qp_1d_offset: int = -8
    lr: float = 1e-3

    def __post_init__(self) -> None:
        if not self.sparsities:
            msg = "sparsities must list at least one level"
            raise ConfigError(msg)
        for s in self.sparsities:
            _check_fraction("each of sparsities", s)
        if list(self.sparsities) != sorted(self.sparsities):
            msg = f"sparsities must increase, got {self.sparsities}"
            raise ConfigError(msg)
        _check_choice("structure", self.structure, STRUCTURES)
        _check_choice("scope", self.scope, SCOPES)
        _check_choice("quantizer", self.quantizer, QUANTIZERS)
        _check_count("k", self.k, 1)
        _check_count("prune_epochs", self.prune_epochs, 0)
        _check_count("patience", self.patience, 0)
        _check_count("qat_epochs", self.qat_epochs, 0)
        if not self.steps:
            msg = "steps must list at least one codec step"
            raise ConfigError(msg)
        for st in self.steps:
            _check_positive("each of steps", st)
        _check_positive("lr", self.lr)
