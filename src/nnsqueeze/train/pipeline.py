"""``squeeze``: prune → fine-tune → quantize → code, within an accuracy budget, to a ``.nnsq`` file.

>>> from nnsqueeze.train import squeeze                                    # doctest: +SKIP
>>> result = squeeze(model, train_loader, eval_fn, max_accuracy_drop=0.5, path="small.nnsq")  # doctest: +SKIP
>>> print(result)                                                          # doctest: +SKIP

``eval_fn(model)`` returns the metric to protect as a fraction (accuracy in [0, 1]) on data the
pipeline may select with (a validation split, not the test set); ``max_accuracy_drop`` is in
percentage points of that metric below the float model.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field

from torch import nn

from nnsqueeze.codec import CompressionReport, CompressOptions, compress, load_state_dict
from nnsqueeze.errors import ConfigError
from nnsqueeze.train.config import PruningConfig, QATConfig, SharingConfig, SqueezeConfig
from nnsqueeze.train.conversion import clone, convert
from nnsqueeze.train.pruning import prepare_pruning, sparsity_report, update_masks
from nnsqueeze.train.sharing import prepare_qat, prepare_sharing
from nnsqueeze.zoo.training import Batches, fit

EvalFn = Callable[[nn.Module], float]


@dataclass(frozen=True)
class Stage:
    """One pipeline stage: its metric (``eval_fn``), the ``.nnsq`` size of its weights and sparsity."""

    name: str
    metric: float
    file_bytes: int
    sparsity: float
    note: str
    model: nn.Module = field(repr=False, compare=False)


@dataclass(frozen=True)
class SqueezeResult:
    """What :func:`squeeze` did: the stages in order, the final (converted) model, its coding."""

    stages: tuple[Stage, ...]
    model: nn.Module = field(repr=False)
    float32_bytes: int
    step: float
    qp_1d_offset: int
    within_budget: bool
    report: CompressionReport = field(repr=False)

    @property
    def file_bytes(self) -> int:
        return self.stages[-1].file_bytes

    @property
    def ratio(self) -> float:
        """float32 weight bytes over the final file's bytes."""
        return self.float32_bytes / max(self.file_bytes, 1)

    def __str__(self) -> str:
        base = self.stages[0].metric
        lines = [
            f"{'stage':<10}{'metric':>9}{'drop pts':>10}{'.nnsq bytes':>13}{'ratio':>9}{'sparsity':>10}  note"
        ]
        for s in self.stages:
            lines.append(
                f"{s.name:<10}{s.metric:>9.4f}{100 * (base - s.metric):>10.2f}{s.file_bytes:>13}"
                f"{self.float32_bytes / max(s.file_bytes, 1):>9.1f}{s.sparsity:>10.3f}  {s.note}"
            )
        lines.append(
            f"float32 weights: {self.float32_bytes} bytes; final {self.file_bytes} bytes "
            f"(x{self.ratio:.1f}), {'within' if self.within_budget else 'OUTSIDE'} the accuracy budget"
        )
        return "\n".join(lines)


def _code(
    model: nn.Module, step: float | None, qp_1d_offset: int, path: str | os.PathLike[str] | None
) -> CompressionReport:
    if step is None:
        opts = CompressOptions(threads=1)
    else:
        opts = CompressOptions(step=step, qp_1d_offset=qp_1d_offset, threads=1)
    return compress(model, path, options=opts)


def squeeze(
    model: nn.Module,
    train_loader: Batches,
    eval_fn: EvalFn,
    max_accuracy_drop: float = 0.5,
    path: str | os.PathLike[str] | None = None,
    *,
    config: SqueezeConfig | None = None,
    log: Callable[[str], None] | None = None,
) -> SqueezeResult:
    """Makes ``model`` (not modified) as small as the budget allows and writes it to ``path``.

    1. *float*: ``eval_fn`` of the model; its size coded at the codec's default step.
    2. *pruned*: magnitude pruning through ``config.sparsities`` in turn, fine-tuning
       ``prune_epochs`` on ``train_loader`` after each (masks enforced); the last level within
       ``max_accuracy_drop`` points is kept.
    3. *quantized*: for each codec step in ``config.steps`` (coarse first), quantization-aware
       fine-tuning onto the grid (or k-means sharing with centroids on the grid); the first within
       the budget is kept (the finest if none is).
    4. *coded*: the weights written at that step (exactly: they lie on the grid), decoded again and
       evaluated; ``result.stages`` reports the metric and size after each stage.
    """
    config = config or SqueezeConfig()
    if not max_accuracy_drop >= 0:
        msg = f"max_accuracy_drop must be >= 0 percentage points, got {max_accuracy_drop}"
        raise ConfigError(msg)
    say = log or (lambda _msg: None)
    floor = eval_fn(model) - max_accuracy_drop / 100.0
    base_model = clone(model).eval()
    float32_bytes = sum(4 * p.numel() for p in base_model.parameters())
    stages = [
        Stage(
            "float",
            eval_fn(base_model),
            _code(base_model, None, 0, None).file_bytes,
            0.0,
            "default qp",
            base_model,
        )
    ]
    say(f"float: metric {stages[0].metric:.4f}, floor {floor:.4f}")

    # 2. prune gradually, fine-tuning after each level
    pcfg = PruningConfig(sparsity=0.0, scope=config.scope, structure=config.structure)
    pruned = prepare_pruning(base_model, pcfg)
    best, best_level = clone(pruned), 0.0
    misses = 0
    for level in config.sparsities:
        update_masks(pruned, level, pcfg)
        fit(pruned, train_loader, epochs=config.prune_epochs, lr=config.lr)
        metric = eval_fn(pruned)
        say(f"prune {level:.3f}: metric {metric:.4f}")
        if metric >= floor:
            best, best_level, misses = clone(pruned), level, 0
            continue
        misses += 1
        if misses > config.patience:
            break
    pruned = best
    baked = convert(pruned)
    stages.append(
        Stage(
            "pruned",
            eval_fn(baked),
            _code(baked, None, 0, None).file_bytes,
            sparsity_report(baked).sparsity,
            f"{config.structure} {config.scope} {best_level:g}",
            baked,
        )
    )

    # 3. quantize onto the codec grid, coarsest step within the budget
    chosen: tuple[nn.Module, float, float] | None = None
    for step in config.steps:
        if config.quantizer == "grid":
            q = prepare_qat(pruned, QATConfig(step=step, qp_1d_offset=config.qp_1d_offset))
        else:
            q = prepare_qat(
                prepare_sharing(baked, SharingConfig(k=config.k, grid_step=step)),
                QATConfig(step=step, qp_1d_offset=config.qp_1d_offset, quantize_1d=True),
            )
        fit(q, train_loader, epochs=config.qat_epochs, lr=config.lr)
        q = convert(q)
        metric = eval_fn(q)
        say(f"quantize step {step:.4g}: metric {metric:.4f}")
        chosen = (q, step, metric)
        if metric >= floor:
            break
    assert chosen is not None
    quantized, step, metric = chosen
    stages.append(
        Stage(
            "quantized",
            metric,
            _code(quantized, step, config.qp_1d_offset, None).file_bytes,
            sparsity_report(quantized).sparsity,
            f"{config.quantizer} step {step:.4g}",
            quantized,
        )
    )

    # 4. code, decode, evaluate the decoded model
    report = _code(quantized, step, config.qp_1d_offset, path)
    source = report.path if report.path is not None else report.data
    assert source is not None
    decoded = clone(quantized)
    decoded.load_state_dict(load_state_dict(source))
    final_metric = eval_fn(decoded)
    stages.append(
        Stage(
            "coded",
            final_metric,
            report.file_bytes,
            sparsity_report(decoded).sparsity,
            f"{'written to ' + str(path) if path is not None else 'in memory'}",
            decoded,
        )
    )
    return SqueezeResult(
        tuple(stages),
        decoded,
        float32_bytes,
        step,
        config.qp_1d_offset,
        final_metric >= floor,
        report,
    )
