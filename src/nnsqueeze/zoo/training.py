"""The one training loop of the project (zoo models, fine-tuning in ``nnsqueeze.train``, distillation),
seeded mini-batches, the thread setting for small models, and classification accuracy."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

import torch
from torch import nn

Batches = Iterable[tuple[torch.Tensor, torch.Tensor]]
LossFn = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Runs the block with ``n`` intra-op torch threads, then restores the previous number.

    Small models run faster on one thread than on several (less synchronisation per tiny op)."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class ShuffledBatches:
    """Mini-batches of ``(x, y)`` in a fresh seeded order on every pass (re-iterable, sized).

    One generator serves all passes, so the sequence of orders depends only on ``seed``; ``len`` is
    the number of batches per pass and draws no order."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, seed: int = 0) -> None:
        if x.shape[0] != y.shape[0]:
            msg = f"inputs and labels differ in length: {x.shape[0]} vs {y.shape[0]}"
            raise ValueError(msg)
        if batch_size < 1:
            msg = f"batch_size must be >= 1, got {batch_size}"
            raise ValueError(msg)
        self.x, self.y, self.batch_size = x, y, batch_size
        self._generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return (self.x.shape[0] + self.batch_size - 1) // self.batch_size

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = torch.randperm(self.x.shape[0], generator=self._generator)
        for start in range(0, order.numel(), self.batch_size):
            idx = order[start : start + self.batch_size]
            yield self.x[idx], self.y[idx]


def _cross_entropy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return nn.functional.cross_entropy(model(x), y)


def _batches_per_pass(batches: Batches) -> int:
    try:
        return len(batches)  # type: ignore[arg-type]
    except TypeError:  # a plain iterable: count one pass
        return sum(1 for _ in batches)


def fit(
    model: nn.Module,
    batches: Batches,
    *,
    epochs: int,
    lr: float = 1e-3,
    loss_fn: LossFn | None = None,
    cosine: bool = True,
) -> nn.Module:
    """Trains ``model`` in place for ``epochs`` passes over ``batches`` (pairs ``(x, y)``; a
    :class:`ShuffledBatches`, a ``DataLoader`` or any re-iterable) with Adam; with ``cosine`` the
    learning rate decays to zero along a cosine.  ``loss_fn(model, x, y)`` defaults to cross-entropy.
    Parametrizations (masks, sharing, grid) stay in force at every step."""
    if epochs <= 0:
        return model
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=lr)
    loss_fn = loss_fn or _cross_entropy
    sched = None
    if cosine:
        steps = max(1, epochs * _batches_per_pass(batches))
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    model.train()
    for _ in range(epochs):
        for x, y in batches:
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model, x, y)
            loss.backward()  # type: ignore[no-untyped-call]
            opt.step()
            if sched is not None:
                sched.step()
    model.eval()
    return model


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Fraction of ``x`` that ``model`` classifies as ``y`` (the model is put in eval mode)."""
    model.eval()
    return float((model(x).argmax(dim=1) == y).float().mean())
