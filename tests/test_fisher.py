"""The vectorised empirical Fisher against a slow per-sample loop."""

from __future__ import annotations

import numpy as np
import pytest

import nnsqueeze
from nnsqueeze.errors import ConfigError

torch = pytest.importorskip("torch")


def _reference_fisher(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, np.ndarray]:
    totals = {name: torch.zeros_like(p) for name, p in model.named_parameters()}
    for i in range(len(x)):
        model.zero_grad()
        torch.nn.functional.cross_entropy(model(x[i : i + 1]), y[i : i + 1]).backward()
        for name, p in model.named_parameters():
            assert p.grad is not None
            totals[name] += p.grad**2
    return {name: (t / len(x)).numpy() for name, t in totals.items()}


def _tiny_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv1d(1, 3, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(3 * 6, 4)
    )


def test_fisher_matches_per_sample_reference() -> None:
    model = _tiny_model()
    gen = torch.Generator().manual_seed(1)
    x, y = torch.randn(10, 1, 8, generator=gen), torch.randint(0, 4, (10,), generator=gen)
    batches = [(x[:4], y[:4]), (x[4:], y[4:])]
    fast = nnsqueeze.fisher_diagonal(model, batches)
    slow = _reference_fisher(model, x, y)
    assert fast.keys() == slow.keys()
    for name in fast:
        np.testing.assert_allclose(fast[name], slow[name], rtol=1e-5, atol=1e-9)


def test_fisher_max_samples_and_unlabelled_loss() -> None:
    model = _tiny_model()
    x = torch.randn(12, 1, 8)
    fisher = nnsqueeze.fisher_diagonal(
        model, [x[:6], x[6:]], loss=lambda out, _: out.square().sum(), max_samples=5
    )
    ref = {name: torch.zeros_like(p) for name, p in model.named_parameters()}
    for i in range(5):
        model.zero_grad()
        model(x[i : i + 1]).square().sum().backward()
        for name, p in model.named_parameters():
            assert p.grad is not None
            ref[name] += p.grad**2
    for name in fisher:
        np.testing.assert_allclose(fisher[name], (ref[name] / 5).numpy(), rtol=1e-5, atol=1e-9)
    assert model.training  # the mode the model came in with


def test_fisher_rejects_empty_data() -> None:
    with pytest.raises(ConfigError, match="no samples"):
        nnsqueeze.fisher_diagonal(_tiny_model(), [])
    with pytest.raises(ConfigError, match="max_samples"):
        nnsqueeze.fisher_diagonal(_tiny_model(), [], max_samples=0)


def test_fisher_restores_every_submodule_mode() -> None:
    inner = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Dropout(0.5), torch.nn.Linear(4, 3)).eval()
    outer = torch.nn.Sequential(inner)  # a fresh module starts in training mode
    nnsqueeze.fisher_diagonal(outer, [(torch.randn(5, 4), torch.randint(0, 3, (5,)))])
    assert outer.training
    assert not any(m.training for m in inner.modules())
