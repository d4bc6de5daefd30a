"""Error accumulation (residuals) and Deep Gradient Compression around a compressor.

:class:`ErrorFeedback` keeps ``A += update; sent = decode(encode(A)); A -= sent``: what the compressor
leaves out is sent later, so ``sum(sent) + residual == sum(updates)`` at every step.

:class:`DeepGradientCompression` (Lin et al., ICLR 2018) adds, before the top-k step: local clipping of
the update's norm, momentum correction (``u = m u + g; v += u``; ``v`` is what gets sparsified), momentum
factor masking (``u`` and ``v`` are zeroed where entries were sent), and an exponential sparsity
warm-up over the first rounds.  In the federated simulator the "gradient" is a client's update of one
round (delay = local steps), so this is DGC applied per round.

>>> import numpy as np
>>> from nnsqueeze.fl.compressors import SparseTernary
>>> ef = ErrorFeedback(SparseTernary(0.1))
>>> update = [np.linspace(-1, 1, 40, dtype=np.float32)]
>>> message, sent = ef.step(update)
>>> bool(np.allclose(sent[0] + ef.residual[0], update[0]))
True
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from nnsqueeze.errors import ConfigError
from nnsqueeze.fl.compressors import Compressor, TopK


class ErrorFeedback:
    """A compressor with a residual per tensor (``enabled=False``: the residual is dropped)."""

    def __init__(self, compressor: Compressor, *, enabled: bool = True) -> None:
        self.compressor = compressor
        self.enabled = enabled
        self.residual: list[np.ndarray] = []

    def step(self, update: Sequence[np.ndarray]) -> tuple[bytes, list[np.ndarray]]:
        """Compresses ``update`` plus the residual; returns the message and what the receiver decodes."""
        accumulated = [np.asarray(u, dtype=np.float32) for u in update]
        if self.enabled and self.residual:
            accumulated = [a + r for a, r in zip(accumulated, self.residual, strict=True)]
        message, sent = self.compressor.roundtrip(accumulated)
        if self.enabled:
            self.residual = [a - s for a, s in zip(accumulated, sent, strict=True)]
        return message, sent


class DeepGradientCompression:
    """DGC on top of :class:`TopK` (its wire format); ``accumulate=False`` drops the residual ``v``."""

    def __init__(
        self,
        sparsity: float = 0.01,
        *,
        momentum: float = 0.9,
        clip_norm: float | None = None,
        warmup_rounds: int = 4,
        accumulate: bool = True,
    ) -> None:
        if not 0 <= momentum < 1:
            msg = f"momentum must be in [0, 1), got {momentum}"
            raise ConfigError(msg)
        if clip_norm is not None and not clip_norm > 0:
            msg = f"clip_norm must be positive, got {clip_norm}"
            raise ConfigError(msg)
        self.compressor = TopK(sparsity)
        self.momentum, self.clip_norm = momentum, clip_norm
        self.warmup_rounds, self.accumulate = warmup_rounds, accumulate
        self.velocity: list[np.ndarray] = []
        self.residual: list[np.ndarray] = []
        self.steps = 0

    def sparsity_now(self) -> float:
        """Exponential warm-up: 25 %, 6.25 %, ... down to the target sparsity."""
        target = self.compressor.sparsity
        if self.steps >= self.warmup_rounds:
            return target
        return max(target, 0.25 ** (self.steps + 1))

    def step(self, update: Sequence[np.ndarray]) -> tuple[bytes, list[np.ndarray]]:
        grads = [np.asarray(u, dtype=np.float32) for u in update]
        if self.clip_norm is not None:
            norm = float(np.sqrt(sum(float(np.sum(g.astype(np.float64) ** 2)) for g in grads)))
            if norm > self.clip_norm:
                grads = [g * np.float32(self.clip_norm / norm) for g in grads]
        if not self.velocity:
            self.velocity = [np.zeros_like(g) for g in grads]
            self.residual = [np.zeros_like(g) for g in grads]
        self.velocity = [self.momentum * u + g for u, g in zip(self.velocity, grads, strict=True)]
        accumulated = [v + u for v, u in zip(self.residual, self.velocity, strict=True)]
        compressor = dataclasses.replace(self.compressor, sparsity=self.sparsity_now())
        message, sent = compressor.roundtrip(accumulated)
        masks = [s != 0 for s in sent]
        self.residual = [
            np.where(m, 0, a) if self.accumulate else np.zeros_like(a)
            for a, m in zip(accumulated, masks, strict=True)
        ]
        self.velocity = [np.where(m, 0, u) for u, m in zip(self.velocity, masks, strict=True)]
        self.steps += 1
        return message, sent
