"""Every rule on Linear, Conv1d and Conv2d against the slow matrix-form reference (``reference.py``)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch
from torch import nn

from nnsqueeze.xai import (
    AlphaBeta,
    Attributor,
    Composite,
    Epsilon,
    Flat,
    Gamma,
    Rule,
    RuleError,
    WSquare,
    ZBox,
    ZPlus,
)
from tests.xai import reference as ref

LOW, HIGH = -1.5, 2.0


def _layers() -> dict[str, tuple[nn.Module, tuple[int, ...]]]:
    torch.manual_seed(0)
    return {
        "linear": (nn.Linear(7, 5), (7,)),
        "conv1d": (nn.Conv1d(2, 3, 3, stride=2, padding=1), (2, 9)),
        "conv2d": (nn.Conv2d(2, 3, 3, padding=2, dilation=2), (2, 5, 5)),
    }


RefFn = Callable[[ref.Dense, np.ndarray, np.ndarray], np.ndarray]
CASES: dict[str, tuple[Rule, RefFn]] = {
    "lrp0": (Epsilon(0.0), lambda d, a, r: ref.epsilon(d, a, r, 0.0)),
    "epsilon": (Epsilon(0.1), lambda d, a, r: ref.epsilon(d, a, r, 0.1)),
    "epsilon-zero-bias": (Epsilon(0.1, zero_bias=True), lambda d, a, r: ref.epsilon(d, a, r, 0.1, True)),
    "zplus": (ZPlus(), lambda d, a, r: ref.zplus(d, a, r, 1e-6)),
    "zplus-zero-bias": (ZPlus(zero_bias=True), lambda d, a, r: ref.zplus(d, a, r, 1e-6, True)),
    "alpha2beta1": (AlphaBeta(2, 1), lambda d, a, r: ref.alpha_beta(d, a, r, 2, 1, 1e-6)),
    "alpha1beta0": (AlphaBeta(1, 0), lambda d, a, r: ref.alpha_beta(d, a, r, 1, 0, 1e-6)),
    "alpha2beta1-zero-bias": (
        AlphaBeta(2, 1, zero_bias=True),
        lambda d, a, r: ref.alpha_beta(d, a, r, 2, 1, 1e-6, True),
    ),
    "gamma": (Gamma(0.25), lambda d, a, r: ref.gamma(d, a, r, 0.25, 1e-6)),
    "gamma-zero-bias": (Gamma(0.5, zero_bias=True), lambda d, a, r: ref.gamma(d, a, r, 0.5, 1e-6, True)),
    "wsquare": (WSquare(), lambda d, a, r: ref.wsquare(d, a, r, 1e-6)),
    "flat": (Flat(), lambda d, a, r: ref.flat(d, a, r, 1e-6)),
    "zbox": (
        ZBox(LOW, HIGH),
        lambda d, a, r: ref.zbox(d, a, r, np.full_like(a, LOW), np.full_like(a, HIGH), 1e-6),
    ),
}


def attribute(layer: nn.Module, rule: Rule, x: torch.Tensor, r_out: torch.Tensor) -> torch.Tensor:
    """The input relevance our attributor gives ``layer`` with ``rule`` for upper relevance ``r_out``."""
    composite = Composite([(type(layer), rule)], canonizers=[])
    with torch.no_grad():
        z = layer(x)
    with Attributor(layer, composite) as lrp:
        _, relevance = lrp(x, target=r_out / z)
    return relevance


@pytest.mark.parametrize("signed", [False, True], ids=["x>=0", "signed-x"])
@pytest.mark.parametrize("layer_name", ["linear", "conv1d", "conv2d"])
@pytest.mark.parametrize("case", list(CASES))
def test_rule_matches_matrix_reference(case: str, layer_name: str, signed: bool) -> None:
    rule, reference = CASES[case]
    layer, in_shape = _layers()[layer_name]
    layer = layer.double()
    gen = torch.Generator().manual_seed(1)
    x = torch.rand((3, *in_shape), generator=gen, dtype=torch.float64)
    if signed:
        x = 2 * x - 1
    with torch.no_grad():
        z = layer(x)
    r_out = torch.randn(z.shape, generator=gen, dtype=torch.float64)
    ours = attribute(layer, rule, x, r_out)
    d = ref.dense(layer, in_shape)
    for i in range(x.shape[0]):
        expected = reference(d, x[i].reshape(-1).numpy(), r_out[i].reshape(-1).numpy())
        np.testing.assert_allclose(ours[i].reshape(-1).numpy(), expected, rtol=1e-9, atol=1e-12)


def test_zbox_with_per_channel_bounds() -> None:
    layer = nn.Conv2d(2, 3, 3, padding=1).double()
    low = torch.tensor([-1.0, -2.0], dtype=torch.float64).reshape(2, 1, 1)
    high = torch.tensor([1.0, 3.0], dtype=torch.float64).reshape(2, 1, 1)
    gen = torch.Generator().manual_seed(2)
    x = torch.rand((2, 2, 4, 4), generator=gen, dtype=torch.float64) * 2 - 1
    with torch.no_grad():
        z = layer(x)
    r_out = torch.randn(z.shape, generator=gen, dtype=torch.float64)
    ours = attribute(layer, ZBox(low, high), x, r_out)
    d = ref.dense(layer, (2, 4, 4))
    lo = torch.broadcast_to(low, (2, 4, 4)).reshape(-1).numpy()
    hi = torch.broadcast_to(high, (2, 4, 4)).reshape(-1).numpy()
    for i in range(2):
        expected = ref.zbox(d, x[i].reshape(-1).numpy(), r_out[i].reshape(-1).numpy(), lo, hi, 1e-6)
        np.testing.assert_allclose(ours[i].reshape(-1).numpy(), expected, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize(
    "make",
    [
        lambda: AlphaBeta(2, 2),
        lambda: AlphaBeta(-1, -2),
        lambda: Gamma(-0.1),
        lambda: Epsilon(-1e-3),
        lambda: ZPlus(stabilizer=-1),
    ],
)
def test_invalid_rule_parameters_raise(make: Callable[[], Rule]) -> None:
    with pytest.raises(RuleError):
        make()


def test_rule_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="alpha - beta = 1"):
        AlphaBeta(3, 1)
