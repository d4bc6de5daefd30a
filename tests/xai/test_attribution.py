"""The attributor: conservation, LRP-0 = gradient × input, a model left as it was, clear errors."""

from __future__ import annotations

import re

import pytest
import torch
from torch import nn

from nnsqueeze.xai import (
    Attributor,
    Composite,
    Epsilon,
    EpsilonAlpha2Beta1Flat,
    EpsilonComposite,
    EpsilonGammaBox,
    EpsilonPlus,
    EpsilonPlusFlat,
    Flat,
    RuleError,
    UnsupportedLayerError,
    WSquare,
    get_composite,
    gradient,
    gradient_x_input,
)
from nnsqueeze.xai.composites import COMPOSITES
from nnsqueeze.xai.composites import Composite as CompositeType
from tests.xai.models import assert_same, cnn_1d, inputs, small_cnn, snapshot

CONSERVATIVE = {
    "epsilon_plus_flat": lambda zb: EpsilonPlusFlat(zero_bias=zb),
    "epsilon_plus": lambda zb: EpsilonPlus(zero_bias=zb),
    "epsilon_gamma_box": lambda zb: EpsilonGammaBox(low=0.0, high=1.0, zero_bias=zb),
    "epsilon_alpha2_beta1_flat": lambda zb: EpsilonAlpha2Beta1Flat(zero_bias=zb),
    "lrp0": lambda zb: EpsilonComposite(epsilon=0.0, stabilizer=0.0, zero_bias=zb),
}


def _conservation_error(model: nn.Module, composite: CompositeType, x: torch.Tensor) -> float:
    with Attributor(model, composite) as lrp:
        out, relevance = lrp(x, target=2)
    total = relevance.flatten(1).sum(1)
    return float(((total - out[:, 2]).abs() / out[:, 2].abs()).max())


@pytest.mark.parametrize("name", list(CONSERVATIVE))
def test_conservation_on_bias_free_network(name: str) -> None:
    error = _conservation_error(small_cnn(bias=False), CONSERVATIVE[name](False), inputs())
    assert error <= 1e-4


@pytest.mark.parametrize("name", list(CONSERVATIVE))
def test_conservation_with_biases_left_out_of_the_rules(name: str) -> None:
    error = _conservation_error(small_cnn(bias=True), CONSERVATIVE[name](True), inputs())
    assert error <= 1e-4


def test_conservation_1d() -> None:
    error = _conservation_error(cnn_1d(bias=False), EpsilonPlusFlat(), inputs(shape=(1, 16)))
    assert error <= 1e-4


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("make", [small_cnn, cnn_1d])
def test_lrp0_equals_gradient_times_input(make: object, bias: bool) -> None:
    assert callable(make)
    model = make(bias=bias)
    x = inputs(shape=(1, 8, 8) if make is small_cnn else (1, 16))
    with Attributor(model, EpsilonComposite(epsilon=0.0, stabilizer=0.0)) as lrp:
        out, relevance = lrp(x, target=[0, 1, 2, 3])
    expected = gradient_x_input(model, x, [0, 1, 2, 3])
    torch.testing.assert_close(out, expected.output)
    torch.testing.assert_close(relevance, expected.relevance, rtol=1e-10, atol=1e-12)


def test_model_is_left_exactly_as_it_was() -> None:
    model = small_cnn()
    model.train()
    model[2].register_forward_hook(lambda m, a, o: None)  # a user's hook stays, ours go
    before = snapshot(model)
    with Attributor(model, EpsilonGammaBox(low=0.0, high=1.0)) as lrp:
        assert not model.training
        lrp(inputs(), target=1)
    assert_same(before, snapshot(model))


def test_model_is_restored_after_an_error_inside_the_context() -> None:
    model = small_cnn()
    before = snapshot(model)
    with pytest.raises(RuleError), Attributor(model) as lrp:
        lrp(inputs(), target=99)
    assert_same(before, snapshot(model))


def test_model_is_restored_when_entering_fails() -> None:
    model = nn.Sequential(nn.Linear(4, 4), nn.Upsample(scale_factor=2))
    before = snapshot(model)
    with pytest.raises(UnsupportedLayerError), Attributor(model):
        pass
    assert_same(before, snapshot(model))


def test_model_behaves_normally_inside_the_context() -> None:
    model = small_cnn()
    x = inputs()
    expected = model(x)
    with Attributor(model) as lrp, torch.no_grad():
        torch.testing.assert_close(model(x), expected, rtol=0, atol=0)
        assert lrp.rules["0"].startswith("Flat")


@pytest.mark.parametrize(
    ("model", "layer"),
    [
        (nn.Sequential(nn.Conv2d(1, 2, 3), nn.Upsample(scale_factor=2)), "'1' (Upsample)"),
        (nn.Sequential(nn.ConvTranspose2d(1, 2, 3)), "'0' (ConvTranspose2d)"),
        (nn.Sequential(nn.Linear(3, 3), nn.Sequential(nn.LSTM(3, 3))), "'1.0' (LSTM)"),
        (nn.Sequential(nn.Linear(3, 3), nn.Softmax(dim=1)), "'1' (Softmax)"),
    ],
)
def test_unsupported_layers_raise_naming_the_layer(model: nn.Module, layer: str) -> None:
    with pytest.raises(UnsupportedLayerError, match=re.escape(layer)) as info, Attributor(model):
        pass
    assert isinstance(info.value, ValueError)


def test_weight_rule_on_a_layer_without_weights_raises() -> None:
    model = nn.Sequential(nn.Linear(3, 3), nn.Tanh())
    with (
        pytest.raises(UnsupportedLayerError, match="'1' \\(Tanh\\) cannot take rule WSquare"),
        Attributor(model, EpsilonComposite(name_map={"1": WSquare()})),
    ):
        pass


def test_linear_layer_without_a_rule_in_a_bare_composite() -> None:
    with (
        pytest.raises(UnsupportedLayerError, match="'0' \\(Linear\\) has no rule in this composite"),
        Attributor(nn.Sequential(nn.Linear(3, 3)), Composite()),
    ):
        pass


def test_input_rule_away_from_the_input_raises() -> None:
    model = small_cnn()
    with (
        Attributor(model, EpsilonPlusFlat(name_map={"2": Flat()})) as lrp,
        pytest.raises(RuleError, match="layer '2' does not receive the model's input"),
    ):
        lrp(inputs())


def test_name_map_beats_type_maps() -> None:
    model = small_cnn()
    composite = EpsilonPlusFlat(name_map=[(("0", "*9"), Epsilon(0.5))])
    with Attributor(model, composite) as lrp:
        lrp(inputs())
        assert lrp.rules["0"].startswith("Epsilon(epsilon=0.5")
        assert lrp.rules["9"].startswith("Epsilon(epsilon=0.5")
        assert lrp.rules["2"].startswith("ZPlus")
        assert lrp.rules["11"].startswith("Epsilon(epsilon=1e-06")


def test_targets() -> None:
    model = small_cnn()
    x = inputs()
    with Attributor(model) as lrp:
        pred = lrp(x)
        by_class = lrp(x, target=pred.output.argmax(1))
        torch.testing.assert_close(pred.relevance, by_class.relevance)
        one = lrp(x, target=3).relevance
        listed = lrp(x, target=[3, 3, 3, 3]).relevance
        torch.testing.assert_close(one, listed)
        # "why 3 rather than 8": the seed is linear, so the relevance is the difference
        seed = torch.zeros(4, 10, dtype=torch.float64)
        seed[:, 3], seed[:, 8] = 1, -1
        contrast = lrp(x, target=seed).relevance
        torch.testing.assert_close(contrast, one - lrp(x, target=8).relevance)
        with pytest.raises(RuleError, match="do not fit"):
            lrp(x, target=10)
        with pytest.raises(RuleError, match="output's shape"):
            lrp(x, target=torch.ones(4, 3, dtype=torch.float64))


def test_reused_and_inplace_relu() -> None:
    torch.manual_seed(0)
    relu = nn.ReLU(inplace=True)
    shared = nn.Sequential(nn.Conv2d(1, 3, 3), relu, nn.Conv2d(3, 3, 3), relu, nn.Flatten(), nn.Linear(48, 4))
    separate = nn.Sequential(shared[0], nn.ReLU(), shared[2], nn.ReLU(), nn.Flatten(), shared[5])
    x = torch.rand(2, 1, 8, 8)
    with Attributor(shared) as lrp:
        a = lrp(x, target=1).relevance
    with Attributor(separate) as lrp:
        b = lrp(x, target=1).relevance
    torch.testing.assert_close(a, b)


def test_registry() -> None:
    assert {"epsilon_plus_flat", "epsilon_gamma_box", "epsilon_alpha2_beta1"} <= set(COMPOSITES)
    assert isinstance(get_composite("epsilon_gamma_box", low=-1.0, high=1.0), EpsilonGammaBox)
    with pytest.raises(ValueError, match="unknown composite"):
        get_composite("nope")


def test_attributor_needs_the_context() -> None:
    lrp = Attributor(small_cnn())
    with pytest.raises(RuntimeError, match="context manager"):
        lrp(inputs())


def test_gradient_matches_autograd() -> None:
    model = small_cnn()
    x = inputs().requires_grad_(True)
    model(x)[:, 4].sum().backward()
    assert x.grad is not None
    torch.testing.assert_close(gradient(model, x, 4).relevance, x.grad)
