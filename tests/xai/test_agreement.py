"""Heatmap agreement measures and the compression × explanation table."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nnsqueeze.errors import ConfigError
from nnsqueeze.xai import gradient_x_input
from nnsqueeze.xai.agreement import (
    compression_agreement,
    decode_at_qps,
    format_agreement,
    rank_correlation,
    topk_overlap,
)
from tests.xai.models import inputs, small_cnn


def test_rank_correlation() -> None:
    a = torch.tensor([[1.0, 2.0, 3.0, 4.0], [0.0, 0.0, 0.0, 0.0]])
    b = torch.tensor([[10.0, 20.0, 30.0, 400.0], [1.0, 2.0, 3.0, 4.0]])
    rho = rank_correlation(a, b)
    assert rho[0] == pytest.approx(1.0)
    assert np.isnan(rho[1])  # a constant map has no ordering
    assert rank_correlation(a[:1], -a[:1])[0] == pytest.approx(-1.0)
    # ties get their average rank: ranks (0.5, 0.5, 2, 3) vs (0, 1, 2, 3)
    tied = rank_correlation(torch.tensor([[1.0, 1.0, 2.0, 3.0]]), torch.tensor([[1.0, 2.0, 3.0, 4.0]]))
    rx = np.array([0.5, 0.5, 2, 3]) - 1.5
    ry = np.array([0, 1, 2, 3]) - 1.5
    assert tied[0] == pytest.approx((rx @ ry) / np.sqrt((rx @ rx) * (ry @ ry)))
    with pytest.raises(ConfigError, match="differ in shape"):
        rank_correlation(a, b[:, :3])


def test_topk_overlap() -> None:
    a = torch.tensor([[5.0, 4.0, 3.0, 2.0, 1.0, 0.0, -1.0, -2.0, -3.0, -4.0]])
    b = torch.tensor([[5.0, -4.0, 3.0, 2.0, 1.0, 0.0, -1.0, -2.0, -3.0, 4.0]])
    assert topk_overlap(a, a, 0.2).tolist() == [1.0]
    assert topk_overlap(a, b, 0.2).tolist() == [0.5]  # top-2: {0, 1} vs {0, 9}
    with pytest.raises(ConfigError, match="fraction"):
        topk_overlap(a, b, 0.0)


def test_compression_agreement() -> None:
    model = small_cnn().float()
    x = inputs(n=8).float()
    decoded = decode_at_qps(model.state_dict(), [-60, -8])
    assert [d.qp for d in decoded] == [None, -60, -8]
    assert decoded[1].bits_per_param > decoded[2].bits_per_param
    target = model(x).argmax(1)

    def explain(m: torch.nn.Module, xs: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return gradient_x_input(m, xs, t).relevance

    rows = compression_agreement(
        lambda: small_cnn().float(), decoded, x, target, {"gxi": explain}, labels=target
    )
    assert [r.qp for r in rows] == [None, -60, -8]
    assert rows[0].spearman == pytest.approx(1.0)
    assert rows[0].topk == 1.0
    assert rows[0].accuracy == 1.0
    assert rows[1].spearman > 0.999  # a step of 2^-15: nearly lossless
    assert rows[2].spearman < rows[1].spearman  # a step of 1/4 changes what the model looks at
    table = format_agreement(rows)
    assert "| original |" in table
    assert "| -8 |" in table
