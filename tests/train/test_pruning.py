"""Magnitude pruning: exact sparsity, masks held through training, schedules, report, bad configs."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from nnsqueeze import ConfigError
from nnsqueeze.train import (
    PruningConfig,
    SqueezeConfig,
    convert,
    fit,
    prepare_pruning,
    prune,
    schedule_levels,
    sparsity_report,
    update_masks,
)


def small_mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(20, 40), nn.ReLU(), nn.Linear(40, 30), nn.ReLU(), nn.Linear(30, 5))


def small_cnn(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 12, 3),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(12 * 4 * 4, 5),
    )


def batches(n: int = 4, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(16, 20, generator=g), torch.randint(0, 5, (16,), generator=g)) for _ in range(n)]


@pytest.mark.parametrize("sparsity", [0.0, 0.3, 0.5, 0.9, 0.99])
def test_per_layer_sparsity_is_exact(sparsity: float) -> None:
    model = convert(prune(small_mlp(), PruningConfig(sparsity=sparsity)))
    for layer in sparsity_report(model).layers:
        assert layer.zeros == round(sparsity * layer.numel)


@pytest.mark.parametrize("sparsity", [0.25, 0.8, 0.95])
def test_global_sparsity_is_exact_and_uneven(sparsity: float) -> None:
    model = convert(prune(small_mlp(), PruningConfig(sparsity=sparsity, scope="global")))
    report = sparsity_report(model)
    assert report.zeros == round(sparsity * report.numel)


def test_global_ranks_by_magnitude() -> None:
    model = small_mlp()
    with torch.no_grad():
        w = model[0].weight
        w.copy_(w.sign() * (1 + w.abs()))  # this layer's weights are all larger: it loses none
    pruned = convert(prune(model, PruningConfig(sparsity=0.3, scope="global")))
    assert int((pruned[0].weight == 0).sum()) == 0


@pytest.mark.parametrize("scope", ["layer", "global"])
def test_channel_pruning_removes_whole_channels(scope: str) -> None:
    model = convert(prune(small_cnn(), PruningConfig(sparsity=0.5, structure="channel", scope=scope)))
    convs = [model[0], model[2]]
    removed = 0
    for conv in convs:
        rows = conv.weight.reshape(conv.weight.shape[0], -1)
        dead = (rows == 0).all(dim=1)
        assert torch.equal((rows == 0).any(dim=1), dead)  # channel-wise: no partially zero rows
        assert torch.all(conv.bias[dead] == 0)
        removed += int(dead.sum())
    assert removed == round(0.5 * 8) + round(0.5 * 12) if scope == "layer" else removed == round(0.5 * 20)
    assert int((model[5].weight == 0).sum()) == 0  # the classifier is left whole


def test_masks_stay_enforced_through_training() -> None:
    model = prune(small_mlp(), PruningConfig(sparsity=0.8))
    zero_before = [(layer.weight == 0) for layer in (model[0], model[2], model[4])]
    fit(model, batches(), epochs=3, lr=1e-2)
    # also with a hand-written loop, momentum and weight decay
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3)
    for x, y in batches(seed=1):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    for layer, before in zip((model[0], model[2], model[4]), zero_before, strict=True):
        assert torch.all(layer.weight[before] == 0)
        assert int((layer.weight == 0).sum()) == int(before.sum())
    baked = convert(model)
    assert sparsity_report(baked).sparsity == pytest.approx(sparsity_report(model).sparsity)
    assert set(baked.state_dict()) == set(small_mlp().state_dict())


def test_prepare_is_not_inplace_and_convert_is_independent() -> None:
    model = small_mlp()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    prepared = prepare_pruning(model, PruningConfig(sparsity=0.5))
    baked = convert(prepared)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])
    # the prepared model still works after its converted copy was made (classes not shared)
    assert prepared[0].weight.shape == (40, 20)
    update_masks(prepared, 0.7, PruningConfig(sparsity=0.7))
    assert sparsity_report(prepared).sparsity > sparsity_report(baked).sparsity


def test_gradual_schedule_grows_masks_and_fine_tunes() -> None:
    config = PruningConfig(sparsity=0.9, schedule="gradual", steps=4)
    levels = schedule_levels(config)
    assert levels[-1] == pytest.approx(0.9)
    assert levels == sorted(levels)
    seen: list[float] = []
    previous: list[torch.Tensor] = []

    def fine_tune(m: nn.Module) -> None:
        seen.append(sparsity_report(m).sparsity)
        zeros = [m[0].weight == 0, m[2].weight == 0]
        for old, new in zip(previous, zeros, strict=False):
            assert torch.all(new[old])  # pruned weights stay pruned
        previous[:] = zeros
        fit(m, batches(), epochs=1, lr=1e-2)

    model = convert(prune(small_mlp(), config, fine_tune))
    assert len(seen) == 4
    assert seen == sorted(seen)
    assert sparsity_report(model).layers[0].zeros == round(0.9 * 800)


def test_report_text() -> None:
    text = str(sparsity_report(convert(prune(small_mlp(), PruningConfig(sparsity=0.5)))))
    assert "total" in text
    assert "0.500" in text


@pytest.mark.parametrize(
    "kwargs",
    [
        {"sparsity": 1.0},
        {"sparsity": -0.1},
        {"sparsity": 1.5},
        {"sparsity": float("nan")},
        {"scope": "everything"},
        {"structure": "block"},
        {"schedule": "sometimes"},
        {"steps": 0},
        {"sparsity": 0.5, "initial_sparsity": 0.6},
    ],
)
def test_bad_pruning_configs_raise(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError, match="must"):
        PruningConfig(**kwargs)  # type: ignore[arg-type]


def test_bad_levels_and_models_raise() -> None:
    model = prepare_pruning(small_mlp(), PruningConfig(sparsity=0.1))
    with pytest.raises(ConfigError, match=r"\[0, 1\)"):
        update_masks(model, 1.0, PruningConfig())
    with pytest.raises(ConfigError, match="no prunable layers"):
        prune(nn.Sequential(nn.ReLU()), PruningConfig())
    with pytest.raises(ConfigError, match="increase"):
        SqueezeConfig(sparsities=(0.9, 0.5))
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        SqueezeConfig(sparsities=(0.5, 1.0))
