"""Diagonal empirical Fisher information: how much each weight matters to the loss.

``F_i = mean over samples of (d loss(sample) / d w_i) ** 2``, from per-sample gradients
(``torch.func``: ``vmap`` over ``grad``).  Used as importance by rate-distortion optimised
quantization (``nnsqueeze.compress(..., lambda_=..., fisher=F)``): errors on weights with large
``F_i`` cost more.

>>> import torch, nnsqueeze
>>> model = torch.nn.Linear(4, 3)
>>> data = [(torch.randn(8, 4), torch.randint(0, 3, (8,)))]
>>> fisher = nnsqueeze.fisher_diagonal(model, data)
>>> sorted(fisher), fisher["weight"].shape
(['bias', 'weight'], (3, 4))
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from nnsqueeze.errors import ConfigError, MissingDependencyError

Loss = Callable[[Any, Any], Any]


def _torch() -> Any:
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - torch is an optional extra
        msg = 'fisher_diagonal needs PyTorch: pip install "nnsqueeze[torch]"'
        raise MissingDependencyError(msg) from exc
    return torch


def _split(batch: Any) -> tuple[Any, Any]:
    if isinstance(batch, (tuple, list)):
        if len(batch) == 2:
            return batch[0], batch[1]
        if len(batch) == 1:
            return batch[0], None
    return batch, None


def fisher_diagonal(
    model: Any,
    data: Iterable[Any],
    loss: Loss | None = None,
    *,
    max_samples: int | None = None,
) -> dict[str, np.ndarray]:
    """Diagonal empirical Fisher of ``model``'s parameters over ``data``.

    ``data`` yields batches ``(inputs, targets)`` (or ``inputs`` alone); ``loss(outputs, targets)``
    returns the loss of one sample (default: cross-entropy over class logits).  Samples are
    processed one gradient each (vectorised), up to ``max_samples``.  Returns float32 arrays keyed
    by parameter name, as in ``model.state_dict()``.
    """
    torch = _torch()
    from torch.func import functional_call, grad, vmap

    if max_samples is not None and max_samples < 1:
        msg = f"max_samples must be >= 1, got {max_samples}"
        raise ConfigError(msg)
    loss_fn: Loss = loss or (lambda out, target: torch.nn.functional.cross_entropy(out, target))
    params = {name: p.detach() for name, p in model.named_parameters() if p.requires_grad}
    if not params:
        msg = "the model has no trainable parameters"
        raise ConfigError(msg)
    buffers = {name: b.detach() for name, b in model.named_buffers()}
    totals = {name: torch.zeros_like(p) for name, p in params.items()}

    def sample_loss(p: dict[str, Any], x: Any, y: Any) -> Any:
        out = functional_call(model, (p, buffers), (x.unsqueeze(0),))
        return loss_fn(out, None if y is None else y.unsqueeze(0))

    per_sample_grads = vmap(grad(sample_loss), in_dims=(None, 0, 0))
    per_sample_grads_unlabelled = vmap(grad(lambda p, x: sample_loss(p, x, None)), in_dims=(None, 0))
    seen = 0
    modes = [(m, m.training) for m in model.modules()]  # restored module by module afterwards
    model.eval()
    try:
        for batch in data:
            inputs, targets = _split(batch)
            if max_samples is not None:
                inputs = inputs[: max_samples - seen]
                targets = None if targets is None else targets[: max_samples - seen]
            if len(inputs) == 0:
                break
            if targets is None:
                grads = per_sample_grads_unlabelled(params, inputs)
            else:
                grads = per_sample_grads(params, inputs, targets)
            for name, g in grads.items():
                totals[name] += (g.detach() ** 2).sum(dim=0)
            seen += len(inputs)
            if max_samples is not None and seen >= max_samples:
                break
    finally:
        for module, training in modes:
            module.training = training
    if seen == 0:
        msg = "data yielded no samples"
        raise ConfigError(msg)
    return {name: (total / seen).float().cpu().numpy() for name, total in totals.items()}
