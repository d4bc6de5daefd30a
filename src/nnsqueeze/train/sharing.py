"""Weight sharing (k-means codebook per layer, centroid fine-tuning) and quantization-aware training
toward the codec's step grid.

Both are parametrizations: :func:`prepare_sharing` replaces each weight by ``centroids[assignment]``
(the centroids are trainable parameters; their gradient is the sum of the gradients of the weights
that share them, as in Deep Compression); :func:`prepare_qat` rounds each tensor to the codec's grid in
the forward pass with a straight-through gradient.  :func:`nnsqueeze.train.convert` bakes them in.

>>> import torch
>>> from nnsqueeze.train import SharingConfig, prepare_sharing, convert
>>> torch.manual_seed(0) and None
>>> model = torch.nn.Linear(32, 16)
>>> shared = convert(prepare_sharing(model, SharingConfig(k=4)))
>>> shared.weight.unique().numel()
4
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parametrize

from nnsqueeze.train.config import QATConfig, SharingConfig
from nnsqueeze.train.conversion import clone, parametrizations_of, tensor_of
from nnsqueeze.train.pruning import prunable_layers


def snap(x: torch.Tensor, step: float) -> torch.Tensor:
    """``x`` rounded to the nearest multiple of ``step``, computed as the codec reconstructs it
    (``float32(level * step)`` in double precision), so coding the result at ``step`` is exact."""
    return (torch.round(x.detach().double() / step) * step).to(x.dtype)


def kmeans_1d(values: np.ndarray, k: int, iterations: int = 30) -> tuple[np.ndarray, np.ndarray]:
    """Lloyd's k-means on scalars with linear initialisation over [min, max] (the initialisation
    Deep Compression found best).  Returns ``(centroids (k',), assignment (n,))``; empty clusters are
    re-seeded at the worst-fit value, so ``k' = min(k, number of distinct values)`` clusters are used."""
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    distinct = np.unique(v)
    if distinct.size <= k:
        return distinct.astype(np.float32), np.searchsorted(distinct, v).astype(np.int64)
    c = np.linspace(v.min(), v.max(), k)
    assign = np.zeros(v.size, dtype=np.int64)
    for _ in range(iterations):
        edges = (c[1:] + c[:-1]) / 2
        assign = np.searchsorted(edges, v)
        counts = np.bincount(assign, minlength=k)
        sums = np.bincount(assign, weights=v, minlength=k)
        empty = counts == 0
        new = np.where(empty, c, sums / np.maximum(counts, 1))
        for j in np.flatnonzero(empty):  # re-seed at the value farthest from its centroid
            err = np.abs(v - new[assign])
            new[j] = v[int(np.argmax(err))]
        new = np.sort(new)
        if np.allclose(new, c):
            c = new
            break
        c = new
    edges = (c[1:] + c[:-1]) / 2
    assign = np.searchsorted(edges, v)
    return c.astype(np.float32), assign.astype(np.int64)


class SharedWeight(nn.Module):
    """A parametrization ``weight = [0, *centroids][index]``: index 0 is a fixed zero (pruned
    weights), index j >= 1 the trainable centroid j - 1.  With ``grid_step`` the centroids are
    snapped to the grid in the forward pass (straight-through gradient)."""

    def __init__(self, centroids: torch.Tensor, index: torch.Tensor, grid_step: float | None = None) -> None:
        super().__init__()
        self.centroids = nn.Parameter(centroids.detach().clone())
        self.register_buffer("index", index.detach().clone())
        self.grid_step = grid_step

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c: torch.Tensor = self.centroids
        if self.grid_step is not None:
            c = snap(c, self.grid_step) + (c - c.detach())
        table = torch.cat([c.new_zeros(1), c])
        return table[tensor_of(self, "index")]


def _share_layer(weight: torch.Tensor, config: SharingConfig) -> SharedWeight:
    w = weight.detach()
    nonzero = w != 0
    index = torch.zeros(w.shape, dtype=torch.long)
    values = w[nonzero].cpu().numpy()
    if values.size == 0:
        centroids = torch.zeros(1, dtype=w.dtype)
    else:
        c, assign = kmeans_1d(values, config.k, config.iterations)
        centroids = torch.from_numpy(c).to(w.dtype)
        index[nonzero] = torch.from_numpy(assign + 1)
    return SharedWeight(centroids, index, config.grid_step)


def prepare_sharing(model: nn.Module, config: SharingConfig, *, inplace: bool = False) -> nn.Module:
    """Clusters each Linear / Conv weight of ``model`` into ``config.k`` shared values (zeros kept
    apart) and makes the centroids trainable.  Run this on a converted (not masked) model; pruned
    weights stay zero because they map to the fixed zero entry."""
    if not inplace:
        model = clone(model)
    for _, module in prunable_layers(model):
        parametrize.register_parametrization(module, "weight", _share_layer(tensor_of(module), config))
    return model


class GridQuant(nn.Module):
    """A parametrization rounding to multiples of ``step`` (straight-through gradient)."""

    def __init__(self, step: float) -> None:
        super().__init__()
        self.step = step

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return snap(x, self.step) + (x - x.detach())


def prepare_qat(model: nn.Module, config: QATConfig, *, inplace: bool = False) -> nn.Module:
    """Quantization-aware training toward the codec's grid: every float parameter with >= 2 dims on
    multiples of ``config.step``, 1-D ones (biases) on ``config.vector_step`` (when ``quantize_1d``).

    Stacks on pruning masks (a masked zero stays zero: it rounds to level 0).  After training and
    :func:`nnsqueeze.train.convert`, ``nnsqueeze.compress(model, step=config.step, ...)`` with
    ``qp_1d_offset=config.qp_1d_offset`` stores the weights exactly."""
    if not inplace:
        model = clone(model)
    inner = {
        id(sub)
        for module in model.modules()
        if isinstance(module, parametrize.ParametrizationList)
        for sub in module.modules()
    }
    for module in [m for m in model.modules() if id(m) not in inner]:
        names = [n for n, p in module.named_parameters(recurse=False) if p.is_floating_point()]
        names += list(parametrizations_of(module))
        for pname in names:
            tensor = tensor_of(module, pname)
            if tensor.dim() >= 2:
                parametrize.register_parametrization(module, pname, GridQuant(config.step))
            elif config.quantize_1d:
                parametrize.register_parametrization(module, pname, GridQuant(config.vector_step))
    return model
