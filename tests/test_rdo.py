"""Rate-distortion optimised quantization: objective, exactness at lambda = 0, decodability."""

from __future__ import annotations

import numpy as np
import pytest

import nnsqueeze
from nnsqueeze.coding import Adaptation, decode_levels, encode_levels
from nnsqueeze.coding.cabac import decode_dependent
from nnsqueeze.errors import ConfigError, TensorError
from nnsqueeze.quant import quantize
from nnsqueeze.quant.rdo import rdo_encode, trellis_encode, uniform_encode

STEP = 2.0**-7


def _weights(seed: int, shape: tuple[int, int] = (96, 80)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    scale = rng.uniform(0.5, 2.0, (shape[0], 1)) * rng.uniform(0.5, 2.0, (1, shape[1]))
    return (rng.laplace(0, 0.03, shape) * scale).astype(np.float32)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("lambda_", [0.05, 0.2, 0.6])
@pytest.mark.parametrize("weighted", [False, True])
def test_rd_objective_never_worse_than_rounding(seed: int, lambda_: float, weighted: bool) -> None:
    w = _weights(seed)
    importance = (
        np.random.default_rng(seed + 100).gamma(0.5, 2.0, w.shape).astype(np.float32) if weighted else None
    )
    rdo = rdo_encode(w, STEP, lambda_=lambda_, importance=importance)
    rounded = rdo_encode(w, STEP, lambda_=0.0, importance=importance)
    assert rdo.objective(lambda_) <= rounded.objective(lambda_)


@pytest.mark.parametrize("rates", [(5, 9), (7, 11)])
def test_lambda_zero_is_uniform_quantization(rates: tuple[int, int]) -> None:
    w = _weights(7)
    result = rdo_encode(w, STEP, lambda_=0.0, adaptation=Adaptation(*rates), num_gtx=10)
    levels = quantize(w, STEP)
    assert np.array_equal(result.levels, levels)
    assert result.payload == encode_levels(levels, num_gtx=10, adaptation=Adaptation(*rates))


def test_rdo_lowers_the_objective_on_structured_weights() -> None:
    w = _weights(2, (256, 256))
    rdo = rdo_encode(w, STEP, lambda_=0.5)
    rounded = rdo_encode(w, STEP, lambda_=0.0)
    assert rdo.objective(0.5) < 0.97 * rounded.objective(0.5)


def test_rdo_payload_decodes_to_the_chosen_levels() -> None:
    w = _weights(3)
    result = rdo_encode(w, STEP, lambda_=0.3, num_gtx=24, adaptation=Adaptation(7, 11))
    decoded = decode_levels(result.payload, w.shape, num_gtx=24, adaptation=Adaptation(7, 11))
    assert np.array_equal(decoded, result.levels)
    # RDOQ only ever rounds towards a neighbour level or to zero
    exact = w / STEP
    assert np.all((result.levels == 0) | (np.abs(result.levels - exact) < 1.0))


def test_compress_with_rdo_and_fisher_round_trips() -> None:
    w = {"layer.weight": _weights(5), "layer.bias": np.linspace(-1, 1, 96, dtype=np.float32)}
    fisher = {"layer.weight": np.ones_like(w["layer.weight"])}
    plain = nnsqueeze.compress(w, qp=-28)
    rdo = nnsqueeze.compress(w, qp=-28, lambda_=0.3, fisher=fisher)
    assert rdo.file_bytes < plain.file_bytes
    restored = nnsqueeze.decompress(rdo.data or b"")
    error = np.abs(restored["layer.weight"] - w["layer.weight"])
    # each weight goes to a neighbouring level or to zero
    assert np.all((error <= STEP) | (restored["layer.weight"] == 0))
    assert np.abs(restored["layer.bias"] - w["layer.bias"]).max() <= STEP / 256


def test_importance_concentrates_fidelity() -> None:
    w = _weights(11)
    importance = np.ones(w.shape, np.float32)
    importance[:10] = 50.0  # the first rows matter much more
    weighted = rdo_encode(w, STEP, lambda_=0.4, importance=importance)
    plain = rdo_encode(w, STEP, lambda_=0.4)
    err_w = ((weighted.levels * STEP - w)[:10] ** 2).sum()
    err_p = ((plain.levels * STEP - w)[:10] ** 2).sum()
    assert err_w < err_p


def test_bad_rdo_input_is_rejected() -> None:
    w = _weights(1)
    with pytest.raises(ConfigError, match="importance has shape"):
        rdo_encode(w, STEP, lambda_=0.1, importance=np.ones((3, 3), np.float32))
    with pytest.raises(ConfigError, match="non-negative"):
        rdo_encode(w, STEP, lambda_=0.1, importance=-np.ones(w.shape, np.float32))
    with pytest.raises(ConfigError, match="lambda_"):
        rdo_encode(w, STEP, lambda_=-1.0)
    bad = w.copy()
    bad[2, 3] = np.nan
    with pytest.raises(TensorError, match="element 163"):
        rdo_encode(bad, STEP, lambda_=0.1, name="x")
    with pytest.raises(ConfigError, match="rdo_lambda"):
        nnsqueeze.CompressOptions(rdo_lambda=float("nan"))


NEXT_STATE = ((0, 2), (2, 0), (1, 3), (3, 1))


def _reconstruct_dependent(symbols: np.ndarray, step: float) -> np.ndarray:
    """Slow reference of the dependent-quantization decoder's reconstruction."""
    out, state = [], 0
    for k in symbols.reshape(-1).tolist():
        recon = 2 * k if state < 2 or k == 0 else (2 * k - 1 if k > 0 else 2 * k + 1)
        out.append(np.float32(recon * step))
        state = NEXT_STATE[state][k & 1]
    return np.array(out, dtype=np.float32).reshape(symbols.shape)


@pytest.mark.parametrize("lambda_", [0.0, 0.3])
@pytest.mark.parametrize("rates", [(5, 9), (7, 11)])
def test_trellis_output_decodes_bit_exactly(lambda_: float, rates: tuple[int, int]) -> None:
    w = _weights(4)
    result = trellis_encode(w, STEP, lambda_=lambda_, num_gtx=10, adaptation=Adaptation(*rates))
    values = decode_dependent(result.payload, w.shape, STEP, num_gtx=10, adaptation=Adaptation(*rates))
    np.testing.assert_array_equal(values, _reconstruct_dependent(result.levels, STEP))
    # the trellis never does worse than one step per weight
    assert np.abs(values - w).max() <= 2 * STEP


def test_trellis_beats_uniform_at_equal_distortion() -> None:
    """Dependent quantization at step s is about as accurate as uniform at a larger step, for fewer bits."""
    w = _weights(8, (192, 192))
    dq = trellis_encode(w, STEP, lambda_=0.0)
    dq_mse = float(
        ((decode_dependent(dq.payload, w.shape, STEP, adaptation=Adaptation(7, 11)) - w) ** 2).mean()
    )
    # the uniform step with the same error (mse of uniform ~ step^2 / 12 at these rates)
    uniform_step = float(np.sqrt(12 * dq_mse))
    uniform = rdo_encode(w, uniform_step, lambda_=0.0)
    uniform_mse = float(((uniform.levels * uniform_step - w) ** 2).mean())
    assert uniform_mse == pytest.approx(dq_mse, rel=0.1)
    assert len(dq.payload) < len(uniform.payload)


def test_compress_with_trellis_round_trips() -> None:
    w = {"fc.weight": _weights(6), "fc.bias": np.linspace(-1, 1, 96, dtype=np.float32)}
    report = nnsqueeze.compress(w, qp=-28, trellis=True, lambda_=0.1)
    assert [t.method for t in report.tensors] == ["dependent", "uniform"]
    restored = nnsqueeze.decompress(report.data or b"")
    assert np.abs(restored["fc.weight"] - w["fc.weight"]).max() <= 2 * STEP


def test_fused_uniform_encode_matches_quantize_then_encode() -> None:
    w = _weights(9)
    rate = Adaptation(8, 12)
    fused = uniform_encode(w, STEP, num_gtx=24, adaptation=rate)
    assert fused == encode_levels(quantize(w, STEP), num_gtx=24, adaptation=rate)


def test_large_weights_take_the_fused_path_and_round_trip() -> None:
    w = np.random.default_rng(4).normal(0, 0.05, (1024, 1024)).astype(np.float32)
    restored = nnsqueeze.decompress(nnsqueeze.compress({"big.weight": w}, qp=-28).data or b"")
    np.testing.assert_array_equal(restored["big.weight"], quantize(w, STEP) * np.float32(STEP))
