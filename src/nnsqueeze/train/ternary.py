"""Trained ternary quantization (Zhu, Han, Mao & Dally 2017): each layer's weights in {-Wn, 0, +Wp}.

The latent full-precision weights keep training; the forward pass sees
``Wp * [w > Δ] - Wn * [w < -Δ]`` with ``Δ = threshold * max |w|``.  The two scales are trainable
parameters (their gradients are the summed gradients of their positions); the latent weights get
the gradient scaled by ``Wp`` / 1 / ``Wn`` in the positive / zero / negative region.

>>> import torch
>>> from nnsqueeze.train import TernaryConfig, prepare_ternary, convert
>>> torch.manual_seed(0) and None
>>> layer = convert(prepare_ternary(torch.nn.Linear(16, 8), TernaryConfig(threshold=0.2)))
>>> layer.weight.unique().numel()
3
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrize

from nnsqueeze.train.config import TernaryConfig
from nnsqueeze.train.conversion import clone, tensor_of
from nnsqueeze.train.pruning import prunable_layers
from nnsqueeze.train.sharing import snap


class TernaryWeight(nn.Module):
    """A parametrization mapping latent weights to {-Wn, 0, +Wp} with learned ``wp`` and ``wn``."""

    def __init__(self, weight: torch.Tensor, config: TernaryConfig) -> None:
        super().__init__()
        self.threshold = config.threshold
        self.grid_step = config.grid_step
        w = weight.detach()
        delta = self.threshold * w.abs().max()
        pos, neg = w[w > delta], w[w < -delta]
        self.wp = nn.Parameter(pos.mean().reshape(()) if pos.numel() else w.abs().mean().reshape(()))
        self.wn = nn.Parameter(-neg.mean().reshape(()) if neg.numel() else w.abs().mean().reshape(()))

    def _scale(self, s: torch.Tensor) -> torch.Tensor:
        if self.grid_step is None:
            return s
        return snap(s, self.grid_step) + (s - s.detach())

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        delta = self.threshold * w.detach().abs().max()
        pos = (w.detach() > delta).to(w.dtype)
        neg = (w.detach() < -delta).to(w.dtype)
        wp, wn = self._scale(self.wp), self._scale(self.wn)
        ternary = wp * pos - wn * neg
        grad_scale = wp.detach() * pos + wn.detach() * neg + (1 - pos - neg)
        return ternary + grad_scale * (w - w.detach())


def prepare_ternary(model: nn.Module, config: TernaryConfig, *, inplace: bool = False) -> nn.Module:
    """Makes every Linear / Conv weight of ``model`` ternary with learned scales (stacks on pruning
    masks: masked weights stay zero).  Train, then :func:`nnsqueeze.train.convert`."""
    if not inplace:
        model = clone(model)
    for _, module in prunable_layers(model):
        parametrize.register_parametrization(module, "weight", TernaryWeight(tensor_of(module), config))
    return model
