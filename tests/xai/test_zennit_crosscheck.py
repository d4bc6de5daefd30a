"""Cross-check against zennit 0.5.x, when it is installed (it is not a dependency: LGPL, torchvision).

Run with zennit on the path, e.g. ``pip install --no-deps --target /tmp/zennit zennit==0.5.1`` and
``PYTHONPATH=/tmp/zennit python -m pytest tests/xai/test_zennit_crosscheck.py``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import nn

from nnsqueeze.xai import (
    Attributor,
    EpsilonAlpha2Beta1,
    EpsilonAlpha2Beta1Flat,
    EpsilonGammaBox,
    EpsilonPlus,
    EpsilonPlusFlat,
)
from nnsqueeze.xai.composites import Composite
from tests.xai.models import inputs, kaiming, small_cnn
from tests.xai.zennit_oracle import import_zennit

zennit = import_zennit()
pytestmark = pytest.mark.skipif(zennit is None, reason="zennit is not installed (optional cross-check)")

PAIRS: dict[str, tuple[Callable[[], Composite], Callable[[Any], Any]]] = {
    "EpsilonPlusFlat": (EpsilonPlusFlat, lambda z: z.composites.EpsilonPlusFlat),
    "EpsilonPlus": (EpsilonPlus, lambda z: z.composites.EpsilonPlus),
    "EpsilonAlpha2Beta1": (EpsilonAlpha2Beta1, lambda z: z.composites.EpsilonAlpha2Beta1),
    "EpsilonAlpha2Beta1Flat": (EpsilonAlpha2Beta1Flat, lambda z: z.composites.EpsilonAlpha2Beta1Flat),
    "EpsilonGammaBox": (
        lambda: EpsilonGammaBox(low=-0.5, high=1.5),
        lambda z: lambda **kw: z.composites.EpsilonGammaBox(low=-0.5, high=1.5, **kw),
    ),
}


def _zennit_relevance(model: nn.Module, composite: Any, x: torch.Tensor, target: int) -> torch.Tensor:
    from zennit.attribution import Gradient

    onehot = torch.zeros(1, 10, dtype=x.dtype)
    onehot[0, target] = 1
    with Gradient(model, composite) as attributor:
        _, relevance = attributor(x, lambda out: out * onehot)
    return relevance  # type: ignore[no-any-return]


def _rel_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("name", list(PAIRS))
def test_matches_zennit(name: str, bias: bool) -> None:
    ours, theirs = PAIRS[name]
    model = small_cnn(bias=bias)
    x = inputs() * 2 - 0.5  # signed inputs exercise every branch of the rules
    with Attributor(model, ours()) as lrp:
        _, relevance = lrp(x, target=4)
    expected = _zennit_relevance(model, theirs(zennit)(), x, 4)
    assert _rel_error(relevance, expected) <= 1e-10  # float64: the same arithmetic


def test_float32_within_1e5_relative() -> None:
    model = small_cnn().float()
    x = inputs().float()
    with Attributor(model, EpsilonPlusFlat()) as lrp:
        _, relevance = lrp(x, target=4)
    expected = _zennit_relevance(model, zennit.composites.EpsilonPlusFlat(), x, 4)
    assert _rel_error(relevance, expected) <= 1e-5


def test_batch_norm_merge_matches_zennit() -> None:
    """zennit's merged BatchNorm still divides by sqrt(1 + eps) (it keeps ``eps``); with ``eps = 0`` the
    two canonized models are the same function and must agree."""
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.BatchNorm2d(4, eps=0.0),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(4 * 8 * 8, 10),
    )
    kaiming(model)
    with torch.no_grad():
        model[1].running_mean.uniform_(-0.2, 0.2)
        model[1].running_var.uniform_(0.5, 1.5)
    model = model.double().eval()
    x = inputs()
    with Attributor(model, EpsilonPlusFlat()) as lrp:
        _, relevance = lrp(x, target=2)
    composite = zennit.composites.EpsilonPlusFlat(canonizers=[zennit.canonizers.SequentialMergeBatchNorm()])
    expected = _zennit_relevance(model, composite, x, 2)
    assert _rel_error(relevance, expected) <= 1e-10
