"""Data-free step allocation between weight tensors, and the recommended RD mode built on it."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

import nnsqueeze
from nnsqueeze import CompressOptions, ConfigError
from nnsqueeze.quant.allocation import TensorStats, allocate_steps, weight_statistics


def _model() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(3)
    return {
        "embed.weight": rng.normal(0, 0.05, (400, 64)).astype(np.float32),
        "small.weight": rng.normal(0, 0.005, (16, 16)).astype(np.float32),
        "mid.weight": rng.laplace(0, 0.03, (64, 64)).astype(np.float32),
        "mid.bias": rng.normal(0, 0.1, 64).astype(np.float32),
    }


def test_steps_follow_the_rule_by_hand() -> None:
    stats = {"a": TensorStats(100, 0.1), "b": TensorStats(400, 0.05)}
    steps = allocate_steps(stats, 0.01, strength=1.0)
    # step_t = step * (std_t / std_mean) * sqrt(n_t / n_mean), means geometric and size-weighted:
    log_std_mean = (100 * math.log(0.1) + 400 * math.log(0.05)) / 500
    log_n_mean = (100 * math.log(100) + 400 * math.log(400)) / 500
    for name, s in stats.items():
        want = 0.01 * s.std / math.exp(log_std_mean) * math.sqrt(s.elements / math.exp(log_n_mean))
        assert steps[name] == pytest.approx(want)
    half = allocate_steps(stats, 0.01, strength=0.5)
    assert half["a"] == pytest.approx(0.01 * math.sqrt(steps["a"] / 0.01))  # strength is an exponent
    # the size-weighted mean log step is the plain step's, at every strength
    for strength in (0.25, 1.0, 2.0):
        got = allocate_steps(stats, 0.01, strength)
        assert sum(s.elements * math.log(got[k]) for k, s in stats.items()) / 500 == pytest.approx(
            math.log(0.01)
        )


@pytest.mark.parametrize("strength", [-0.1, 2.5, math.nan, math.inf])
def test_bad_strength_is_a_named_error(strength: float) -> None:
    with pytest.raises(ConfigError, match="strength"):
        allocate_steps({}, 0.01, strength)
    with pytest.raises(ConfigError, match="strength"):
        CompressOptions(step_allocation=strength)


def test_statistics_skip_vectors_constants_and_non_finite_tensors() -> None:
    got = weight_statistics(
        [
            ("w", np.array([[1.0, -1.0], [1.0, -1.0]], np.float32)),
            ("bias", np.array([1.0, 2.0], np.float32)),
            ("const", np.full((3, 3), 0.5, np.float32)),
            ("nan", np.array([[np.nan, 1.0]], np.float32)),
        ]
    )
    assert got == {"w": TensorStats(4, 1.0)}


def test_compress_codes_each_weight_at_its_allocated_step() -> None:
    model = _model()
    opts = CompressOptions(qp=-24, step_allocation=0.75, threads=1)
    report = nnsqueeze.compress(model, options=opts)
    stats = weight_statistics((k, v) for k, v in model.items())
    want = allocate_steps(stats, opts.weight_step, 0.75)
    steps = {t.name: t.step for t in report.tensors}
    for name, step in want.items():
        assert steps[name] == pytest.approx(step, rel=1e-12)
    assert steps["mid.bias"] == opts.vector_step  # 1-D tensors keep the fine vector step
    assert steps["small.weight"] < steps["mid.weight"] < steps["embed.weight"]
    decoded = nnsqueeze.decompress(report.data or b"")
    for name, step in want.items():
        assert np.abs(decoded[name] - model[name]).max() <= step / 2 * (1 + 1e-6)


def test_strength_zero_is_plain_rounding_byte_for_byte() -> None:
    a = nnsqueeze.compress(_model(), options=CompressOptions(step_allocation=0.0))
    b = nnsqueeze.compress(_model())
    assert a.data == b.data


def test_rdo_mode_is_deterministic_and_independent_of_threads(tmp_path: Path) -> None:
    runs = [nnsqueeze.compress(_model(), rdo=True, threads=t).data for t in (1, 2, 1)]
    assert runs[0] == runs[1] == runs[2]
    np.savez(tmp_path / "m.npz", **_model())
    from_file = nnsqueeze.compress(tmp_path / "m.npz", rdo=True, threads=1)
    in_memory = nnsqueeze.compress(_model(), rdo=True, threads=1)
    # the statistics pass reads the file a second time, to the same steps (only the metadata differs)
    assert [t.step for t in from_file.tensors] == [t.step for t in in_memory.tensors]
    assert [t.coded_bytes for t in from_file.tensors] == [t.coded_bytes for t in in_memory.tensors]


def test_rdo_mode_uses_the_recommended_settings() -> None:
    report = nnsqueeze.compress(_model(), rdo=True)
    plain = nnsqueeze.compress(_model())
    steps = {t.name: t.step for t in report.tensors}
    assert steps["small.weight"] != steps["embed.weight"]  # allocation is on
    defaults = nnsqueeze.RDO_DEFAULTS
    assert defaults.step_allocation > 0
    assert abs(report.file_bytes / plain.file_bytes - 1) < 0.5  # about the same size at the same QP


@pytest.mark.parametrize("target", [4_000, 12_000])
def test_allocation_spends_a_size_budget_within_two_percent(target: int) -> None:
    report = nnsqueeze.compress(_model(), target_size=target, rdo=True)
    assert 0.98 * target <= report.file_bytes <= target


def test_a_package_is_allocated_as_one_model(tmp_path: Path) -> None:
    model = _model()
    folder = tmp_path / "model"
    folder.mkdir()
    np.savez(folder / "part1.npz", **{k: model[k] for k in ("embed.weight", "mid.bias")})
    np.savez(folder / "part2.npz", **{k: model[k] for k in ("small.weight", "mid.weight")})
    opts = CompressOptions(qp=-24, step_allocation=1.0, threads=1)
    report = nnsqueeze.compress(folder, options=opts)
    stats = weight_statistics((k, v) for k, v in model.items())
    want = allocate_steps(stats, opts.weight_step, 1.0)
    steps = {t.name.split("::")[-1]: t.step for t in report.tensors}
    for name, step in want.items():
        assert steps[name] == pytest.approx(step, rel=1e-12)


@pytest.mark.parametrize(
    ("flags", "allocated"),
    [([], False), (["--rdo"], True), (["--rdo", "0"], True), (["--step-allocation", "0.5"], True)],
)
def test_cli_rdo_turns_on_allocation(tmp_path: Path, flags: list[str], allocated: bool) -> None:
    from nnsqueeze.cli.main import main

    np.savez(tmp_path / "m.npz", **_model())
    out = tmp_path / "m.nnsq"
    assert main(["compress", str(tmp_path / "m.npz"), "-o", str(out), "--qp", "-24", *flags]) == 0
    with nnsqueeze.NnsqFile(out) as f:
        steps = {name: f.header(name).levels for name in f.names}
    small, embed = steps["small.weight"], steps["embed.weight"]
    assert small is not None
    assert embed is not None
    assert (small.step != embed.step) is allocated


@pytest.mark.parametrize("value", ["-1", "nan", "x"])
def test_cli_rejects_a_bad_rdo_lambda(tmp_path: Path, value: str, capsys: pytest.CaptureFixture[str]) -> None:
    from nnsqueeze.cli.main import main

    np.savez(tmp_path / "m.npz", **_model())
    with pytest.raises(SystemExit) as exc:
        main(["compress", str(tmp_path / "m.npz"), "-o", str(tmp_path / "m.nnsq"), "--rdo", value])
    assert exc.value.code == 2
    assert "--rdo" in capsys.readouterr().err
