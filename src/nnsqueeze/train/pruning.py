"""Magnitude pruning (Han et al. 2015; Zhu & Gupta 2017): masks kept through training, schedules, report.

torch.ao-shaped: :func:`prepare_pruning` copies the model (``inplace=False``) and attaches a mask to
each prunable weight as a parametrization, so the weight the forward pass sees is always
``original * mask`` whatever the optimizer does; :func:`update_masks` re-ranks by magnitude;
:func:`nnsqueeze.train.convert` bakes the zeros in and removes the parametrizations.

>>> import torch
>>> from nnsqueeze.train import PruningConfig, prune, convert, sparsity_report
>>> model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4))
>>> pruned = convert(prune(model, PruningConfig(sparsity=0.75)))
>>> sparsity_report(pruned).sparsity
0.75
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils import parametrize

from nnsqueeze.errors import ConfigError
from nnsqueeze.train.config import PruningConfig
from nnsqueeze.train.conversion import clone, parametrizations_of, tensor_of

PRUNABLE = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


class Mask(nn.Module):
    """A parametrization ``weight = original * mask``; ``mask`` is a buffer (saved in state dicts)."""

    def __init__(self, mask: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mask", mask.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * tensor_of(self, "mask")


def prunable_layers(model: nn.Module, exclude: tuple[str, ...] = ()) -> list[tuple[str, nn.Module]]:
    """The Linear and Conv layers of ``model`` in definition order, minus ``exclude``."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, PRUNABLE) and n not in exclude]


def _get_mask(module: nn.Module, pname: str) -> Mask | None:
    for p in parametrizations_of(module).get(pname, ()):
        if isinstance(p, Mask):
            return p
    return None


def _layers_for(model: nn.Module, config: PruningConfig) -> list[tuple[str, nn.Module]]:
    layers = prunable_layers(model, config.exclude)
    if config.structure == "channel" and layers:
        layers = layers[:-1]  # the classifier's channels are the classes
    if not layers:
        msg = "the model has no prunable layers (Linear / Conv1d / Conv2d / Conv3d) left after exclude"
        raise ConfigError(msg)
    return layers


def _scores(module: nn.Module, structure: str) -> torch.Tensor:
    """Importance of each prunable unit: |w| per weight, or a channel's RMS; pruned units get -inf."""
    w = tensor_of(module).detach()
    mask = _get_mask(module, "weight")
    if structure == "unstructured":
        s = w.abs().reshape(-1).clone()
        if mask is not None:
            s[tensor_of(mask, "mask").reshape(-1) == 0] = -math.inf
        return s
    rows = w.reshape(w.shape[0], -1)
    s = rows.pow(2).mean(dim=1).sqrt()
    if mask is not None:
        s[tensor_of(mask, "mask").reshape(w.shape[0], -1).sum(dim=1) == 0] = -math.inf
    return s


def _keep(scores: torch.Tensor, num_pruned: int) -> torch.Tensor:
    """Boolean keep-vector with exactly ``num_pruned`` False entries: the lowest scores (stable ties)."""
    keep = torch.ones(scores.numel(), dtype=torch.bool)
    if num_pruned > 0:
        order = torch.sort(scores, stable=True).indices
        keep[order[:num_pruned]] = False
    return keep


def _apply(module: nn.Module, keep: torch.Tensor, structure: str) -> None:
    w = tensor_of(module)
    if structure == "unstructured":
        wmask = keep.reshape(w.shape).to(w.dtype)
        bmask = None
    else:
        wmask = keep.to(w.dtype).reshape(-1, *([1] * (w.dim() - 1))).expand_as(w).contiguous()
        bmask = keep.to(w.dtype) if getattr(module, "bias", None) is not None else None
    for pname, m in (("weight", wmask), ("bias", bmask)):
        if m is None:
            continue
        existing = _get_mask(module, pname)
        if existing is None:
            parametrize.register_parametrization(module, pname, Mask(m))
        else:
            tensor_of(existing, "mask").copy_(m)


def update_masks(model: nn.Module, sparsity: float, config: PruningConfig) -> nn.Module:
    """Re-ranks the prunable weights of a prepared ``model`` by magnitude and masks exactly
    ``round(sparsity * n)`` units (per layer, or of all layers with ``scope="global"``).

    Units pruned before stay pruned (masks only grow).  Modifies ``model`` and returns it."""
    PruningConfig(sparsity=sparsity)  # validates the level
    layers = _layers_for(model, config)
    with torch.no_grad():
        if config.scope == "layer":
            for _, module in layers:
                scores = _scores(module, config.structure)
                _apply(module, _keep(scores, round(sparsity * scores.numel())), config.structure)
        else:
            all_scores = [_scores(m, config.structure) for _, m in layers]
            flat = torch.cat(all_scores)
            keep = _keep(flat, round(sparsity * flat.numel()))
            for (_, module), part in zip(
                layers, torch.split(keep, [s.numel() for s in all_scores]), strict=True
            ):
                _apply(module, part, config.structure)
    return model


def prepare_pruning(model: nn.Module, config: PruningConfig, *, inplace: bool = False) -> nn.Module:
    """Attaches masks at ``config.initial_sparsity`` (one-shot: at ``config.sparsity``)."""
    if not inplace:
        model = clone(model)
    start = config.sparsity if config.schedule == "one_shot" else config.initial_sparsity
    return update_masks(model, start, config)


def schedule_levels(config: PruningConfig) -> list[float]:
    """The sparsity after each pruning step: ``[sparsity]`` for one-shot; for gradual, Zhu & Gupta's
    ``s_t = s_f + (s_i - s_f) (1 - t / n) ** 3`` for t = 1..n (the last is exactly ``sparsity``)."""
    if config.schedule == "one_shot":
        return [config.sparsity]
    n = config.steps
    s_i, s_f = config.initial_sparsity, config.sparsity
    return [s_f + (s_i - s_f) * (1 - t / n) ** 3 for t in range(1, n + 1)]


def prune(
    model: nn.Module,
    config: PruningConfig,
    fine_tune: Callable[[nn.Module], object] | None = None,
    *,
    inplace: bool = False,
) -> nn.Module:
    """Prunes ``model`` by ``config``'s schedule, calling ``fine_tune(model)`` after each step (it
    trains in place; the masks hold).  Returns the prepared model (masks still attached, so more
    training keeps them); :func:`nnsqueeze.train.convert` bakes them in."""
    prepared = prepare_pruning(model, config, inplace=inplace)
    for level in schedule_levels(config):
        update_masks(prepared, level, config)
        if fine_tune is not None:
            fine_tune(prepared)
    return prepared


@dataclass(frozen=True)
class LayerSparsity:
    name: str
    shape: tuple[int, ...]
    zeros: int
    numel: int
    zero_channels: int
    channels: int

    @property
    def sparsity(self) -> float:
        return self.zeros / max(self.numel, 1)


@dataclass(frozen=True)
class SparsityReport:
    """Zero weights per prunable layer (of the effective weights, masks applied) and in total."""

    layers: tuple[LayerSparsity, ...]

    @property
    def zeros(self) -> int:
        return sum(layer.zeros for layer in self.layers)

    @property
    def numel(self) -> int:
        return sum(layer.numel for layer in self.layers)

    @property
    def sparsity(self) -> float:
        return self.zeros / max(self.numel, 1)

    def __str__(self) -> str:
        lines = [f"{'layer':<16}{'shape':>16}{'zeros':>9}{'of':>9}{'sparsity':>10}{'channels off':>14}"]
        for r in self.layers:
            shape = "x".join(map(str, r.shape))
            lines.append(
                f"{r.name:<16}{shape:>16}{r.zeros:>9}{r.numel:>9}{r.sparsity:>10.3f}"
                f"{f'{r.zero_channels}/{r.channels}':>14}"
            )
        lines.append(f"{'total':<16}{'':>16}{self.zeros:>9}{self.numel:>9}{self.sparsity:>10.3f}")
        return "\n".join(lines)


@torch.no_grad()
def sparsity_report(model: nn.Module) -> SparsityReport:
    """Counts the zero weights of every Linear / Conv layer of ``model``."""
    rows = []
    for name, module in prunable_layers(model):
        w = tensor_of(module).detach()
        zero_rows = int((w.reshape(w.shape[0], -1) == 0).all(dim=1).sum())
        rows.append(
            LayerSparsity(name, tuple(w.shape), int((w == 0).sum()), w.numel(), zero_rows, w.shape[0])
        )
    return SparsityReport(tuple(rows))
