"""Bit allocation: searching the step for a size, bits-per-parameter or fidelity target."""

from __future__ import annotations

import numpy as np
import pytest

import nnsqueeze
from nnsqueeze.errors import ConfigError
from nnsqueeze.target import parse_size


def _model() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "a.weight": rng.laplace(0, 0.03, (300, 200)).astype(np.float32),
        "b.weight": rng.normal(0, 0.05, (128, 64)).astype(np.float32),
        "b.bias": rng.normal(0, 0.1, 128).astype(np.float32),
    }


@pytest.mark.parametrize("target", [3_000, 9_000, 20_000, 40_000])
def test_size_target_is_hit_within_two_percent(target: int) -> None:
    report = nnsqueeze.compress(_model(), target_size=target)
    assert 0.98 * target <= report.file_bytes <= target
    assert len(report.search) <= 12
    # the file is the one the search chose: decoding works
    assert set(nnsqueeze.decompress(report.data or b"")) == set(_model())


def test_bits_per_param_target() -> None:
    report = nnsqueeze.compress(_model(), target_bits_per_param=3.0)
    assert 0.98 * 3.0 <= report.bits_per_element <= 3.0


def test_size_target_with_rdo_and_string_size() -> None:
    report = nnsqueeze.compress(_model(), target_size="20kB", lambda_=0.2)
    assert 0.98 * 20_000 <= report.file_bytes <= 20_000


def test_metric_target_finds_the_coarsest_acceptable_step() -> None:
    model = _model()

    def snr(decoded: dict[str, np.ndarray]) -> float:
        err = np.concatenate([(decoded[k] - model[k]).ravel() for k in model])
        ref = np.concatenate([model[k].ravel() for k in model])
        return float(10 * np.log10((ref**2).sum() / (err**2).sum()))

    report = nnsqueeze.compress(model, target_metric=snr, min_metric=25.0)
    assert len(report.search) <= 10
    chosen = snr(nnsqueeze.decompress(report.data or b""))
    assert chosen >= 25.0
    # half a QP coarser no longer meets the target
    coarser = nnsqueeze.compress(model, step=report.weight_step * 2 ** (0.5 / 4))
    assert snr(nnsqueeze.decompress(coarser.data or b"")) < 25.0 + 0.5


def test_parse_size() -> None:
    assert parse_size("5MB") == 5_000_000
    assert parse_size("1.5MiB") == 1_572_864
    assert parse_size("12000") == 12_000
    assert parse_size(42) == 42
    for bad in ["five", "5XB", "-3", "0"]:
        with pytest.raises(ConfigError):
            parse_size(bad)


def test_bad_targets() -> None:
    with pytest.raises(ConfigError, match="exactly one"):
        nnsqueeze.compress(_model(), target_size=1000, target_bits_per_param=2.0)
    with pytest.raises(ConfigError, match="min_metric"):
        nnsqueeze.compress(_model(), target_metric=lambda d: 1.0)
    with pytest.raises(ConfigError, match="positive"):
        nnsqueeze.compress(_model(), target_bits_per_param=-1.0)
    with pytest.raises(ConfigError, match=r"coarsest step .* gives .* bytes > 100"):
        nnsqueeze.compress(_model(), target_size=100)
