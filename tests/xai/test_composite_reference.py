"""Whole composites against the matrix-form reference applied layer by layer (pooling included)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch
from torch import nn

from nnsqueeze.xai import Attributor, EpsilonGammaBox, EpsilonPlusFlat
from nnsqueeze.xai.composites import Composite
from tests.xai import reference as ref
from tests.xai.models import inputs, small_cnn

LayerRule = Callable[[int, ref.Dense, np.ndarray, np.ndarray], np.ndarray]


def _epsilon_plus_flat(index: int, d: ref.Dense, a: np.ndarray, r: np.ndarray) -> np.ndarray:
    if index == 0:
        return ref.flat(d, a, r, 1e-6)
    if d.weight.ndim > 2:
        return ref.zplus(d, a, r, 1e-6)
    return ref.epsilon(d, a, r, 1e-6)


def _epsilon_gamma_box(index: int, d: ref.Dense, a: np.ndarray, r: np.ndarray) -> np.ndarray:
    if index == 0:
        return ref.zbox(d, a, r, np.zeros_like(a), np.ones_like(a), 1e-6)
    if d.weight.ndim > 2:
        return ref.gamma(d, a, r, 0.25, 1e-6)
    return ref.epsilon(d, a, r, 1e-6)


def reference_relevance(model: nn.Sequential, x: torch.Tensor, target: int, rule: LayerRule) -> np.ndarray:
    """LRP by hand: forward activations from torch, relevance from the reference formulas, one sample."""
    acts = [x[None]]
    with torch.no_grad():
        for layer in model:
            acts.append(layer(acts[-1]))
    out = acts[-1][0].numpy()
    r = np.zeros_like(out)
    r[target] = out[target]
    for index in reversed(range(len(model))):
        layer, a_in = model[index], acts[index][0]
        a = a_in.reshape(-1).numpy()
        if isinstance(layer, (nn.Conv2d, nn.Linear)):
            r = rule(index, ref.dense(layer, tuple(a_in.shape)), a, r.reshape(-1))
        elif isinstance(layer, nn.MaxPool2d):
            r = ref.maxpool2d(a, tuple(a_in.shape), 2, r)  # type: ignore[arg-type]
        elif isinstance(layer, nn.AvgPool2d):
            r = ref.avgpool2d(a, tuple(a_in.shape), 2, r, 1e-6)  # type: ignore[arg-type]
        elif isinstance(layer, (nn.ReLU, nn.Flatten)):
            r = r.reshape(-1)  # relevance passes unchanged
        else:  # pragma: no cover
            raise AssertionError(layer)
    return r.reshape(x.shape)


@pytest.mark.parametrize(
    ("composite", "rule"),
    [(EpsilonPlusFlat(), _epsilon_plus_flat), (EpsilonGammaBox(low=0.0, high=1.0), _epsilon_gamma_box)],
    ids=["EpsilonPlusFlat", "EpsilonGammaBox"],
)
def test_composite_matches_layerwise_reference(composite: Composite, rule: LayerRule) -> None:
    model = small_cnn(bias=True)
    x = inputs(n=2)
    with Attributor(model, composite) as lrp:
        _, relevance = lrp(x, target=7)
    for i in range(x.shape[0]):
        expected = reference_relevance(model, x[i], 7, rule)
        np.testing.assert_allclose(relevance[i].numpy(), expected, rtol=1e-8, atol=1e-12)
