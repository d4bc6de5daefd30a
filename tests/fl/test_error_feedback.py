"""Error feedback conserves the sum; DGC keeps its invariants."""

from __future__ import annotations

import numpy as np
import pytest

from nnsqueeze.errors import ConfigError
from nnsqueeze.fl.compressors import CabacQuantized, SparseBinary, SparseTernary, TopK
from nnsqueeze.fl.error_feedback import DeepGradientCompression, ErrorFeedback


@pytest.mark.parametrize(
    "compressor", [TopK(0.02), SparseBinary(0.02), SparseTernary(0.02), CabacQuantized()]
)
def test_error_feedback_conserves_sum(compressor: TopK) -> None:
    rng = np.random.default_rng(0)
    ef = ErrorFeedback(compressor)
    total = [np.zeros((30, 20), np.float64), np.zeros(7, np.float64)]
    sent_total = [np.zeros_like(t) for t in total]
    for _ in range(25):
        u = [rng.normal(size=(30, 20)).astype(np.float32), rng.normal(size=7).astype(np.float32)]
        residual_before = [r.copy() for r in ef.residual] or [np.zeros_like(t) for t in u]
        _, sent = ef.step(u)
        for i in range(2):
            # sent + residual = accumulated, exactly per step (up to float32 rounding)
            np.testing.assert_allclose(sent[i] + ef.residual[i], u[i] + residual_before[i], atol=1e-5)
            total[i] += u[i]
            sent_total[i] += sent[i]
    for i in range(2):
        np.testing.assert_allclose(sent_total[i] + ef.residual[i], total[i], atol=1e-3)


def test_disabled_error_feedback_has_no_residual() -> None:
    ef = ErrorFeedback(TopK(0.1), enabled=False)
    ef.step([np.arange(50, dtype=np.float32)])
    assert ef.residual == []


def test_dgc_warmup_masking_and_conservation() -> None:
    rng = np.random.default_rng(1)
    dgc = DeepGradientCompression(0.01, momentum=0.0, warmup_rounds=3)
    assert dgc.sparsity_now() == 0.25
    total = np.zeros(1000)
    sent_total = np.zeros(1000)
    for step in range(8):
        g = rng.normal(size=1000).astype(np.float32)
        _, sent = dgc.step([g])
        total += g
        sent_total += sent[0]
        expected_k = max(10, int(np.ceil(1000 * (0.25 ** (step + 1) if step < 3 else 0.01))))
        assert np.count_nonzero(sent[0]) == expected_k
        assert not np.any(dgc.residual[0][sent[0] != 0])
        assert not np.any(dgc.velocity[0][sent[0] != 0])
    # with momentum 0 DGC is top-k with error feedback: it conserves the sum
    np.testing.assert_allclose(sent_total + dgc.residual[0], total, atol=1e-3)


def test_dgc_clipping_and_config() -> None:
    dgc = DeepGradientCompression(1.0, momentum=0.0, clip_norm=1.0, warmup_rounds=0)
    _, sent = dgc.step([np.full(100, 10.0, np.float32)])
    assert np.linalg.norm(sent[0]) == pytest.approx(1.0, rel=1e-5)
    with pytest.raises(ConfigError):
        DeepGradientCompression(0.1, momentum=1.0)
