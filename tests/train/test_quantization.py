"""Weight sharing (exactly k values), ternary (exactly three), grid QAT, and exact codec round trips."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import nnsqueeze
from nnsqueeze import CompressOptions, ConfigError
from nnsqueeze.train import (
    PruningConfig,
    QATConfig,
    SharingConfig,
    TernaryConfig,
    convert,
    fit,
    kmeans_1d,
    prepare_qat,
    prepare_sharing,
    prepare_ternary,
    prune,
)

from .test_pruning import batches, small_cnn, small_mlp

LAYERS = ("0.weight", "2.weight", "4.weight")


@pytest.mark.parametrize("k", [1, 2, 5, 16])
def test_sharing_leaves_exactly_k_values_per_layer(k: int) -> None:
    model = prepare_sharing(small_mlp(), SharingConfig(k=k))
    fit(model, batches(), epochs=2, lr=1e-2)  # centroid fine-tuning
    shared = convert(model)
    for name in LAYERS:
        assert shared.state_dict()[name].unique().numel() == k


def test_sharing_fine_tunes_the_centroids_and_keeps_pruned_zeros() -> None:
    pruned = convert(prune(small_mlp(), PruningConfig(sparsity=0.7)))
    model = prepare_sharing(pruned, SharingConfig(k=4))
    before = model[0].parametrizations.weight[0].centroids.detach().clone()
    fit(model, batches(), epochs=2, lr=1e-2)
    after = model[0].parametrizations.weight[0].centroids.detach()
    assert not torch.equal(before, after)
    shared = convert(model)
    for name in LAYERS:
        w, w0 = shared.state_dict()[name], pruned.state_dict()[name]
        assert torch.equal(w == 0, w0 == 0)
        assert w[w != 0].unique().numel() == 4


def test_kmeans_1d_is_a_lloyd_fixed_point() -> None:
    values = np.random.default_rng(0).laplace(0, 1, 2000)
    c, assign = kmeans_1d(values, 8, iterations=200)
    assert c.size == 8
    assert np.all(np.diff(c) > 0)
    nearest = np.abs(values[:, None] - c[None, :]).argmin(axis=1)
    assert np.array_equal(nearest, assign)
    for j in range(8):
        assert c[j] == pytest.approx(values[assign == j].mean(), rel=1e-5)
    few, idx = kmeans_1d(np.array([1.0, 1.0, 2.0]), 5)
    assert few.tolist() == [1.0, 2.0]
    assert idx.tolist() == [0, 0, 1]


def test_ternary_layers_have_exactly_three_values() -> None:
    model = prepare_ternary(small_cnn(), TernaryConfig(threshold=0.1))
    x = torch.randn(8, 1, 6, 6)
    y = torch.randint(0, 5, (8,))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    wp0 = float(model[0].parametrizations.weight[0].wp.detach())
    for _ in range(5):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    assert float(model[0].parametrizations.weight[0].wp.detach()) != wp0  # the scales learn
    ternary = convert(model)
    for name in ("0.weight", "2.weight", "5.weight"):
        w = ternary.state_dict()[name]
        assert w.unique().numel() == 3
        assert (w.unique() == 0).any()


def test_grid_qat_puts_every_tensor_on_the_codec_grid() -> None:
    cfg = QATConfig(step=2.0**-4, qp_1d_offset=-8)
    model = prepare_qat(prune(small_mlp(), PruningConfig(sparsity=0.5)), cfg)
    fit(model, batches(), epochs=2, lr=1e-2)
    q = convert(model)
    for name, t in q.state_dict().items():
        step = cfg.step if t.dim() >= 2 else cfg.vector_step
        levels = t.double() / step
        assert torch.equal(levels, levels.round()), name


@pytest.mark.parametrize("technique", ["sharing", "ternary", "grid"])
def test_pruned_quantized_model_round_trips_exactly(technique: str) -> None:
    step = 2.0**-6
    pruned = prune(small_mlp(), PruningConfig(sparsity=0.8))
    if technique == "sharing":
        model = prepare_qat(
            prepare_sharing(convert(pruned), SharingConfig(k=6, grid_step=step)), QATConfig(step)
        )
    elif technique == "ternary":
        model = prepare_qat(prepare_ternary(pruned, TernaryConfig(grid_step=step)), QATConfig(step))
    else:
        model = prepare_qat(pruned, QATConfig(step))
    fit(model, batches(), epochs=1, lr=1e-2)
    final = convert(model)
    opts = CompressOptions(step=step, qp_1d_offset=QATConfig(step).qp_1d_offset)
    report = nnsqueeze.compress(final, None, options=opts)
    assert report.data is not None
    restored = nnsqueeze.decompress(report.data)
    for name, t in final.state_dict().items():
        assert np.array_equal(restored[name], t.numpy()), name
    assert report.file_bytes < sum(4 * t.numel() for t in final.state_dict().values()) / 8


@pytest.mark.parametrize(
    ("cls", "kwargs"),
    [
        (SharingConfig, {"k": 0}),
        (SharingConfig, {"k": -3}),
        (SharingConfig, {"k": 2.5}),
        (SharingConfig, {"grid_step": 0.0}),
        (TernaryConfig, {"threshold": 1.0}),
        (QATConfig, {"step": -1.0}),
    ],
)
def test_bad_quantization_configs_raise(cls: type, kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError, match="must"):
        cls(**kwargs)
