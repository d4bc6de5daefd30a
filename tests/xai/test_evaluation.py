"""Region perturbation (AOPC) against brute force, baselines, and LRP beating random on digits."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from nnsqueeze.errors import ConfigError
from nnsqueeze.xai import Attributor, gradient, random_relevance
from nnsqueeze.xai.evaluation import compare, fill_values, format_table, region_perturbation, region_scores


def test_region_scores_sum_channels_and_regions() -> None:
    r = torch.arange(2 * 2 * 4 * 4, dtype=torch.float64).reshape(2, 2, 4, 4)
    scores = region_scores(r, 2)
    assert scores.shape == (2, 4)
    expected = r.sum(1)[0, :2, 2:].sum()  # sample 0, region (row 0, col 1)
    assert float(scores[0, 1]) == float(expected)
    assert region_scores(torch.ones(1, 1, 12), 3).tolist() == [[3.0, 3.0, 3.0, 3.0]]


def _brute_force(
    model: nn.Module, x: torch.Tensor, t: torch.Tensor, r: torch.Tensor, fill: torch.Tensor
) -> np.ndarray:
    """MoRF curve by looping over regions (2x2 regions of a 4x4 input)."""
    out = []
    for i in range(x.shape[0]):
        scores = [float(r[i, :, a : a + 2, b : b + 2].sum()) for a in (0, 2) for b in (0, 2)]
        order = sorted(range(4), key=lambda j: -scores[j])
        xi = x[i : i + 1].clone()
        curve = [float(model(xi)[0, t[i]])]
        for j in order:
            a, b = 2 * (j // 2), 2 * (j % 2)
            xi[:, :, a : a + 2, b : b + 2] = fill[i : i + 1, :, a : a + 2, b : b + 2]
            curve.append(float(model(xi)[0, t[i]]))
        out.append(curve)
    return np.array(out)


def test_region_perturbation_matches_brute_force() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3)).double()
    x = torch.rand(5, 1, 4, 4, dtype=torch.float64)
    t = torch.tensor([0, 1, 2, 0, 1])
    r = torch.randn(5, 1, 4, 4, dtype=torch.float64)
    fill = fill_values(x, "noise", seed=3)
    curves = region_perturbation(model, x, t, r, fill, region=2)
    with torch.no_grad():
        expected = _brute_force(model, x, t, r, fill)
    np.testing.assert_allclose(curves.morf, expected, rtol=1e-12)
    assert curves.aopc_morf == pytest.approx(float((expected[:, :1] - expected).mean()))
    # the exact contribution w * (x - fill) is the best possible ranking for a linear model
    w = model[1].weight.detach()[t].reshape(5, 1, 4, 4)
    oracle = region_perturbation(model, x, t, w * (x - fill), fill, region=2)
    assert oracle.aopc_morf >= curves.aopc_morf
    assert oracle.abpc > 0
    few = region_perturbation(model, x, t, r, fill, region=2, num_steps=3)
    assert few.steps.tolist() == [0, 2, 4]
    np.testing.assert_allclose(few.morf, expected[:, [0, 2, 4]], rtol=1e-12)


def test_fill_values() -> None:
    x = torch.rand(2, 1, 6, 6)
    torch.testing.assert_close(fill_values(x, "noise", seed=1), fill_values(x, "noise", seed=1))
    assert not torch.equal(fill_values(x, "noise", seed=1), fill_values(x, "noise", seed=2))
    noise = fill_values(x, "noise", low=-1.0, high=2.0)
    assert float(noise.min()) >= -1
    assert float(noise.max()) <= 2
    flat = torch.full((1, 2, 5, 5), 0.25)
    torch.testing.assert_close(fill_values(flat, "blur"), flat)
    torch.testing.assert_close(fill_values(torch.ones(1, 1, 9), "blur", sigma=1.0), torch.ones(1, 1, 9))
    assert torch.equal(fill_values(x, "zero"), torch.zeros_like(x))
    torch.testing.assert_close(fill_values(x, "mean")[:, :, 0, 0], x.mean(dim=(2, 3)))
    with pytest.raises(ConfigError, match="unknown baseline"):
        fill_values(x, "ink")
    with pytest.raises(ConfigError, match="tile"):
        region_scores(x, 4)


def test_lrp_beats_random_under_noise_on_digits() -> None:
    from nnsqueeze.zoo.digits import train_digits_cnn

    model, data = train_digits_cnn(seed=0, epochs=8)
    x, y = data.x_test[:96], data.y_test[:96]
    with Attributor(model) as lrp:
        relevance = lrp(x, target=y).relevance
    methods = {
        "lrp": relevance,
        "gradient": gradient(model, x, y).relevance,
        "random": random_relevance(x, torch.Generator().manual_seed(0)),
    }
    rows = compare(model, x, y, methods, baselines=("noise", "zero"), region=1, num_steps=17)
    score = {(r.method, r.baseline): r.aopc_morf for r in rows}
    assert score["lrp", "noise"] > score["random", "noise"]
    assert score["lrp", "zero"] > score["random", "zero"]
    table = format_table(rows)
    assert "| lrp |" in table
    assert "**" in table
