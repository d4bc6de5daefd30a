"""Faithfulness by region perturbation (pixel flipping; Samek et al. 2017).

The input is cut into non-overlapping regions (``region`` elements per spatial axis), the regions are
ranked by their summed relevance, and removed one after the other — most relevant first (MoRF) or least
relevant first (LeRF) — while the target logit is tracked:

* ``AOPC_MoRF = mean_k [f(x_0) - f(x_k)]`` over ``k = 0..K`` (higher: the map found what matters),
* ``AOPC_LeRF`` likewise (lower is better), ``ABPC = mean_k [f_LeRF(x_k) - f_MoRF(x_k)]`` (higher).

"Removed" depends on the baseline, and the ranking of methods can flip between baselines (the research
note measured it), so :func:`compare` always runs several and a random ranking as the reference:

* ``zero``: the value 0 (on digits: no ink; gradient × input is exactly its first-order estimate),
* ``noise``: uniform noise in ``[low, high]``, fixed per image (the same for every method),
* ``blur``: the image blurred with a Gaussian (removes detail, keeps the mean),
* ``mean``: the image's per-channel mean.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nnsqueeze.errors import ConfigError

__all__ = [
    "BASELINES",
    "PerturbationCurves",
    "PerturbationScore",
    "compare",
    "fill_values",
    "format_table",
    "region_perturbation",
    "region_scores",
]

BASELINES = ("zero", "noise", "blur", "mean")


@dataclass(frozen=True)
class PerturbationCurves:
    """Target logits after removing ``steps[i]`` regions: ``morf`` and ``lerf`` are (N, len(steps))."""

    steps: np.ndarray
    morf: np.ndarray
    lerf: np.ndarray

    @property
    def aopc_morf(self) -> float:
        return float((self.morf[:, :1] - self.morf).mean())

    @property
    def aopc_lerf(self) -> float:
        return float((self.lerf[:, :1] - self.lerf).mean())

    @property
    def abpc(self) -> float:
        return float((self.lerf - self.morf).mean())


@dataclass(frozen=True)
class PerturbationScore:
    """One row of :func:`compare`: a method under a baseline."""

    method: str
    baseline: str
    aopc_morf: float
    aopc_lerf: float
    abpc: float
    curves: PerturbationCurves


def _region_shape(x: Tensor, region: int | Sequence[int]) -> tuple[int, ...]:
    spatial = tuple(x.shape[2:])
    if not spatial:
        msg = f"region perturbation needs inputs (N, C, *spatial), got shape {tuple(x.shape)}"
        raise ConfigError(msg)
    size = (region,) * len(spatial) if isinstance(region, int) else tuple(region)
    if len(size) != len(spatial) or any(s <= 0 or d % s for s, d in zip(size, spatial, strict=True)):
        msg = f"regions of {size} must tile the input's spatial shape {spatial}"
        raise ConfigError(msg)
    return size


def region_scores(relevance: Tensor, region: int | Sequence[int]) -> Tensor:
    """Relevance summed over channels and each region: (N, number of regions), row-major regions."""
    size = _region_shape(relevance, region)
    summed = relevance.sum(dim=1, keepdim=True)
    pool = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}[len(size)]
    pooled: Tensor = pool(summed, size, size) * math.prod(size)
    return pooled.flatten(1)


def _gaussian_blur(x: Tensor, sigma: float) -> Tensor:
    radius = max(1, math.ceil(3 * sigma))
    t = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    kernel = torch.exp(-0.5 * (t / sigma) ** 2)
    kernel = kernel / kernel.sum()
    out = x
    channels = x.shape[1]
    spatial = x.ndim - 2
    for axis in range(spatial):
        shape = [1] * spatial
        shape[axis] = kernel.numel()
        weight = kernel.reshape(1, 1, *shape).repeat(channels, 1, *([1] * spatial))
        pad = [0, 0] * spatial
        pad[2 * (spatial - 1 - axis)] = pad[2 * (spatial - 1 - axis) + 1] = radius
        padded = F.pad(out, pad, mode="replicate")
        conv = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[spatial]
        out = conv(padded, weight, groups=channels)
    return out


def fill_values(
    x: Tensor,
    baseline: str,
    *,
    seed: int = 0,
    low: float = 0.0,
    high: float = 1.0,
    sigma: float = 2.0,
) -> Tensor:
    """What removed elements are replaced with, for every element of ``x`` (see the module docstring).

    ``seed`` fixes the noise (the same noise for every method); ``low``/``high`` are its range,
    ``sigma`` is the blur's standard deviation in elements."""
    if baseline == "zero":
        return torch.zeros_like(x)
    if baseline == "noise":
        gen = torch.Generator().manual_seed(seed)
        noise = torch.rand(x.shape, generator=gen, dtype=torch.float64)
        return (low + (high - low) * noise).to(dtype=x.dtype, device=x.device)
    if baseline == "blur":
        return _gaussian_blur(x, sigma)
    if baseline == "mean":
        dims = tuple(range(2, x.ndim))
        return x.mean(dim=dims, keepdim=True).expand_as(x).clone()
    msg = f"unknown baseline {baseline!r}; known: {', '.join(BASELINES)}"
    raise ConfigError(msg)


def _region_map(x: Tensor, size: tuple[int, ...]) -> Tensor:
    """The region index of every spatial element, shape ``x.shape[2:]``."""
    spatial = x.shape[2:]
    grid = [torch.arange(d, device=x.device) // s for d, s in zip(spatial, size, strict=True)]
    counts = [d // s for d, s in zip(spatial, size, strict=True)]
    index = torch.zeros(spatial, dtype=torch.long, device=x.device)
    for axis, g in enumerate(grid):
        shape = [1] * len(spatial)
        shape[axis] = -1
        index = index * counts[axis] + g.reshape(shape)
    return index


@torch.no_grad()
def _scores(model: nn.Module, x: Tensor, target: Tensor, batch_size: int) -> Tensor:
    out = [model(x[i : i + batch_size]) for i in range(0, x.shape[0], batch_size)]
    logits = torch.cat(out)
    return logits.gather(1, target.reshape(-1, 1)).squeeze(1)


@torch.no_grad()
def region_perturbation(
    model: nn.Module,
    x: Tensor,
    target: Tensor,
    relevance: Tensor,
    fill: Tensor,
    *,
    region: int | Sequence[int] = 1,
    num_steps: int | None = None,
    batch_size: int = 512,
) -> PerturbationCurves:
    """MoRF and LeRF curves of the target logit as regions are replaced by ``fill`` (``x``'s shape).

    ``num_steps`` limits the evaluated points (evenly spaced, both ends included); by default every
    region count ``0..K`` is evaluated.  Ties in relevance are broken by region order."""
    if relevance.shape != x.shape or fill.shape != x.shape:
        msg = (
            f"relevance {tuple(relevance.shape)} and fill {tuple(fill.shape)} must have x's shape "
            f"{tuple(x.shape)}"
        )
        raise ConfigError(msg)
    size = _region_shape(x, region)
    scores = region_scores(relevance.to(torch.float64), size)
    n_regions = scores.shape[1]
    if num_steps is None or num_steps >= n_regions + 1:
        steps = np.arange(n_regions + 1)
    else:
        steps = np.unique(np.round(np.linspace(0, n_regions, max(num_steps, 2))).astype(int))
    region_of = _region_map(x, size)
    target = target.reshape(-1).to(torch.long)
    curves = {}
    for name, descending in (("morf", True), ("lerf", False)):
        order = torch.argsort(scores, dim=1, descending=descending, stable=True)
        rank = torch.empty_like(order)
        rank.scatter_(1, order, torch.arange(n_regions).expand_as(order).contiguous())
        element_rank = rank[:, region_of].unsqueeze(1)  # (N, 1, *spatial)
        values = []
        chunk = max(1, batch_size // max(1, x.shape[0]))  # steps per forward batch
        for start in range(0, len(steps), chunk):
            ks = torch.as_tensor(steps[start : start + chunk], device=x.device)
            removed = element_rank.unsqueeze(0) < ks.reshape(-1, *([1] * element_rank.ndim))
            perturbed = torch.where(removed, fill.unsqueeze(0), x.unsqueeze(0)).flatten(0, 1)
            tracked = _scores(model, perturbed, target.repeat(len(ks)), batch_size)
            values.append(tracked.reshape(len(ks), -1))
        curves[name] = torch.cat(values).T.double().cpu().numpy()
    return PerturbationCurves(steps=steps, morf=curves["morf"], lerf=curves["lerf"])


def compare(
    model: nn.Module,
    x: Tensor,
    target: Tensor,
    relevances: Mapping[str, Tensor],
    *,
    baselines: Sequence[str] = ("zero", "noise", "blur"),
    region: int | Sequence[int] = 1,
    num_steps: int | None = None,
    seed: int = 0,
    low: float = 0.0,
    high: float = 1.0,
    sigma: float = 2.0,
    batch_size: int = 512,
    progress: Callable[[str], None] | None = None,
) -> list[PerturbationScore]:
    """Region perturbation for every method (include ``"random"`` as the reference) under every baseline."""
    rows = []
    for baseline in baselines:
        fill = fill_values(x, baseline, seed=seed, low=low, high=high, sigma=sigma)
        for method, relevance in relevances.items():
            if progress is not None:
                progress(f"{method} / {baseline}")
            curves = region_perturbation(
                model, x, target, relevance, fill, region=region, num_steps=num_steps, batch_size=batch_size
            )
            rows.append(
                PerturbationScore(method, baseline, curves.aopc_morf, curves.aopc_lerf, curves.abpc, curves)
            )
    return rows


def format_table(rows: Sequence[PerturbationScore]) -> str:
    """A markdown table: one row per method, ``AOPC_MoRF / ABPC`` per baseline (best per column in bold)."""
    methods = list(dict.fromkeys(r.method for r in rows))
    baselines = list(dict.fromkeys(r.baseline for r in rows))
    cell = {(r.method, r.baseline): r for r in rows}
    best = {b: max((r.aopc_morf for r in rows if r.baseline == b), default=0.0) for b in baselines}
    lines = [
        "| method | " + " | ".join(f"{b}: AOPC MoRF / ABPC" for b in baselines) + " |",
        "|---|" + "---|" * len(baselines),
    ]
    for m in methods:
        cells = []
        for b in baselines:
            r = cell.get((m, b))
            if r is None:
                cells.append("-")
                continue
            text = f"{r.aopc_morf:.3f} / {r.abpc:.3f}"
            cells.append(f"**{text}**" if r.aopc_morf == best[b] else text)
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
