"""A small supervised training loop shared by the fine-tuning steps (Adam, any re-iterable loader)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn

Batches = Iterable[tuple[torch.Tensor, torch.Tensor]]
LossFn = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


def _cross_entropy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return nn.functional.cross_entropy(model(x), y)


def fit(
    model: nn.Module,
    loader: Batches,
    *,
    epochs: int,
    lr: float = 1e-3,
    loss_fn: LossFn | None = None,
    cosine: bool = True,
) -> nn.Module:
    """Trains ``model`` in place for ``epochs`` passes over ``loader`` (batches ``(x, y)``) with Adam,
    the learning rate decayed to zero by a cosine schedule; ``loss_fn(model, x, y)`` defaults to
    cross-entropy.  Parametrizations (masks, sharing, grid) stay in force at every step."""
    if epochs <= 0:
        return model
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=lr)
    loss_fn = loss_fn or _cross_entropy
    sched = None
    if cosine:
        steps = epochs * max(1, sum(1 for _ in loader))
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    model.train()
    for _ in range(epochs):
        for x, y in loader:
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model, x, y)
            loss.backward()  # type: ignore[no-untyped-call]
            opt.step()
            if sched is not None:
                sched.step()
    model.eval()
    return model
