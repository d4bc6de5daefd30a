"""Canonizers: a merged BatchNorm gives the relevance of the hand-folded model; explicit sums."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from nnsqueeze.xai import (
    Attributor,
    EpsilonGammaBox,
    EpsilonPlusFlat,
    ExplicitSum,
    LRPWarning,
    MergeBatchNorm,
    UnsupportedLayerError,
)
from nnsqueeze.xai.composites import Composite
from tests.xai.models import assert_same, inputs, kaiming, residual_net, snapshot


def _bn_model(seed: int = 0) -> nn.Sequential:
    model = nn.Sequential(
        nn.Conv2d(1, 6, 3, padding=1),
        nn.BatchNorm2d(6),
        nn.ReLU(),
        nn.Conv2d(6, 6, 3, padding=1, bias=False),
        nn.BatchNorm2d(6),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(6 * 4 * 4, 12),
        nn.BatchNorm1d(12),
        nn.ReLU(),
        nn.Linear(12, 10),
    )
    kaiming(model, seed)
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.2)
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
    return model.double().eval()


def _folded(model: nn.Sequential) -> nn.Sequential:
    """The same function with each BatchNorm folded into the layer before it, by hand."""
    layers: list[nn.Module] = []
    for m in model:
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            prev = layers[-1]
            assert isinstance(prev, (nn.Conv2d, nn.Linear))
            scale = m.weight.detach() / (m.running_var + m.eps).sqrt()
            bias = prev.bias.detach() if prev.bias is not None else torch.zeros_like(scale)
            new = type(prev)(*_shape_args(prev), bias=True).double()  # type: ignore[arg-type]
            shape = (-1,) + (1,) * (prev.weight.ndim - 1)
            with torch.no_grad():
                new.weight.copy_(prev.weight * scale.reshape(shape))
                new.bias.copy_((bias - m.running_mean) * scale + m.bias.detach())
            layers[-1] = new
        else:
            layers.append(m)
    return nn.Sequential(*layers).eval()


def _shape_args(m: nn.Module) -> tuple[object, ...]:
    if isinstance(m, nn.Linear):
        return (m.in_features, m.out_features)
    assert isinstance(m, nn.Conv2d)
    return (m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding)


@pytest.mark.parametrize(
    "composite",
    [EpsilonPlusFlat(), EpsilonGammaBox(low=0.0, high=1.0)],
    ids=["EpsilonPlusFlat", "EpsilonGammaBox"],
)
def test_merged_batch_norm_gives_the_relevance_of_the_folded_model(composite: Composite) -> None:
    model = _bn_model()
    folded = _folded(model)
    x = inputs()
    torch.testing.assert_close(folded(x), model(x))
    before = snapshot(model)
    with Attributor(model, composite) as lrp:
        out, relevance = lrp(x, target=5)
        assert lrp.rules["1"] == "merged into '0'"
    with Attributor(folded, composite) as lrp:
        out_f, relevance_f = lrp(x, target=5)
    torch.testing.assert_close(out, out_f)
    torch.testing.assert_close(relevance, relevance_f, rtol=1e-9, atol=1e-12)
    assert_same(before, snapshot(model))


def test_named_pairs_and_an_unmerged_batch_norm_warns() -> None:
    model = _bn_model()
    x = inputs()
    with Attributor(
        model, EpsilonPlusFlat(canonizers=[MergeBatchNorm([("0", "1"), ("3", "4"), ("8", "9")])])
    ) as lrp:
        named = lrp(x).relevance
    with Attributor(model) as lrp:
        found = lrp(x).relevance
    torch.testing.assert_close(named, found)
    with (
        pytest.warns(LRPWarning, match=r"BatchNorm layers \['1', '4', '9'\] are not merged"),
        Attributor(model, EpsilonPlusFlat(canonizers=[])) as lrp,
    ):
        unmerged = lrp(x).relevance
    assert not torch.allclose(unmerged, found)


def test_batch_norm_without_running_stats_cannot_merge() -> None:
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2, track_running_stats=False))
    with pytest.raises(UnsupportedLayerError, match="without running statistics"), Attributor(model):
        pass


def test_unknown_pair_name() -> None:
    with (
        pytest.raises(UnsupportedLayerError, match="no module named 'conv9'"),
        Attributor(_bn_model(), EpsilonPlusFlat(canonizers=[MergeBatchNorm([("conv9", "1")])])),
    ):
        pass


def test_explicit_sum_equals_plain_add_and_is_undone() -> None:
    plain = residual_net(bias=False)
    x = inputs()
    with Attributor(plain, EpsilonPlusFlat()) as lrp:
        implicit = lrp(x, target=3)
    before = snapshot(plain)
    with Attributor(plain, EpsilonPlusFlat(canonizers=[ExplicitSum()])) as lrp:
        explicit = lrp(x, target=3)
        assert lrp.rules["xai_sum0"].startswith("Norm")
        assert "forward" in vars(plain)
    assert_same(before, snapshot(plain))
    assert "forward" not in vars(plain)
    torch.testing.assert_close(explicit.output, implicit.output)
    # the Sum's stabiliser (1e-6) is the only difference from autograd's plain split
    torch.testing.assert_close(explicit.relevance, implicit.relevance, rtol=1e-4, atol=1e-7)
    total = explicit.relevance.flatten(1).sum(1)
    torch.testing.assert_close(total, explicit.output[:, 3], rtol=1e-4, atol=0)


def test_model_with_sum_module() -> None:
    model = residual_net(bias=False, explicit=True)
    reference = residual_net(bias=False, explicit=False)
    x = inputs()
    with Attributor(model) as lrp:
        a = lrp(x, target=1)
        assert lrp.rules["2.sum"].startswith("Norm")
    with Attributor(reference, EpsilonPlusFlat(canonizers=[ExplicitSum()])) as lrp:
        b = lrp(x, target=1)
    torch.testing.assert_close(a.relevance, b.relevance)


class _Branchy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:  # data-dependent: fx cannot trace it
            return self.fc(x) + x
        return x


def test_explicit_sum_on_an_untraceable_model() -> None:
    model = _Branchy()
    before = snapshot(model)
    with (
        pytest.raises(UnsupportedLayerError, match="could not trace _Branchy"),
        Attributor(model, EpsilonPlusFlat(canonizers=[ExplicitSum()])),
    ):
        pass
    assert_same(before, snapshot(model))
