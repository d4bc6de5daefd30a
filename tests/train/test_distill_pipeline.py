"""Distillation loss and trainer; the squeeze pipeline end to end on digits (few epochs)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import nnsqueeze
from nnsqueeze import ConfigError
from nnsqueeze.train import DistillConfig, SqueezeConfig, distill, distillation_loss, fit, squeeze
from nnsqueeze.zoo import ShuffledBatches, Split, accuracy, load_dataset
from nnsqueeze.zoo.digits import lenet_300_100


def test_distillation_loss_matches_hinton_formula() -> None:
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(6, 10, generator=g), torch.randn(6, 10, generator=g)
    y = torch.randint(0, 10, (6,), generator=g)
    T, a = 3.0, 0.6
    p_t = torch.softmax(t / T, dim=1)
    kl = (p_t * (p_t.log() - torch.log_softmax(s / T, dim=1))).sum(dim=1).mean()
    expected = a * T * T * kl + (1 - a) * nn.functional.cross_entropy(s, y)
    assert float(distillation_loss(s, t, y, temperature=T, alpha=a)) == pytest.approx(
        float(expected), rel=1e-5
    )
    assert float(distillation_loss(t, t, None, alpha=1.0)) == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "match"), [({"temperature": 0.0}, "temperature"), ({"alpha": 1.5}, "alpha")]
)
def test_bad_distill_configs_raise(kwargs: dict[str, float], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        DistillConfig(**kwargs)
    with pytest.raises(ConfigError, match="targets"):
        distillation_loss(torch.zeros(1, 3), torch.zeros(1, 3), None, alpha=0.5)


def batches(split: Split) -> ShuffledBatches:
    return ShuffledBatches(split.x_train, split.y_train, 32, seed=0)


@pytest.fixture(scope="module")
def digits() -> Split:
    return load_dataset("digits")


@pytest.fixture(scope="module")
def teacher(digits: Split) -> nn.Module:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = lenet_300_100((64, 32))
    return fit(model, batches(digits), epochs=8, lr=3e-3)


def test_distilled_student_learns_from_the_teacher(digits: Split, teacher: nn.Module) -> None:
    torch.manual_seed(1)
    student = lenet_300_100((32, 16))
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    distill(student, teacher, batches(digits), DistillConfig(epochs=10, lr=3e-3))
    assert accuracy(student, digits.x_test, digits.y_test) > 0.85
    assert all(torch.equal(v, before[k]) for k, v in teacher.state_dict().items())  # the teacher is fixed


def test_squeeze_prunes_quantizes_and_codes_within_budget(
    digits: Split, teacher: nn.Module, tmp_path: Path
) -> None:
    path = tmp_path / "squeezed.nnsq"
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    config = SqueezeConfig(sparsities=(0.5, 0.8), prune_epochs=2, qat_epochs=2, steps=(2.0**-3, 2.0**-5))
    result = squeeze(
        teacher, batches(digits), lambda m: accuracy(m, digits.x_val, digits.y_val), 2.0, path, config=config
    )
    assert [s.name for s in result.stages] == ["float", "pruned", "quantized", "coded"]
    assert all(torch.equal(v, before[k]) for k, v in teacher.state_dict().items())  # not modified
    assert path.stat().st_size == result.file_bytes
    assert result.stages[-1].file_bytes < result.stages[0].file_bytes
    assert result.within_budget == (result.stages[-1].metric >= result.stages[0].metric - 0.02)
    decoded = nnsqueeze.decompress(path)
    for name, t in result.stages[2].model.state_dict().items():
        assert np.array_equal(decoded[name], t.numpy())  # coded exactly what was evaluated
    assert result.stages[-1].metric == result.stages[2].metric
    assert "coded" in str(result)
    with pytest.raises(ConfigError, match="max_accuracy_drop"):
        squeeze(teacher, batches(digits), lambda m: 1.0, -1.0)


def test_squeeze_command_writes_a_file_within_the_budget(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from nnsqueeze.cli import main

    out = tmp_path / "mlp.nnsq"
    args = ["squeeze", "mlp", "--epochs", "3", "--prune-epochs", "1", "--scope", "layer", "-o", str(out)]
    # a 100-point budget accepts every level, so the run is short and its outcome certain
    assert main([*args, "--max-accuracy-drop", "100"]) == 0
    printed = capsys.readouterr().out
    assert f"wrote {out}" in printed
    assert "layer 0.99" in printed  # the last pruning level, per layer
    state = nnsqueeze.decompress(out)
    assert np.count_nonzero(state["1.weight"]) <= round(0.01 * state["1.weight"].size)
