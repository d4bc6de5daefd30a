"""The simulator: FedAvg aggregation, determinism, robustness, partitions and the CLI."""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import numpy as np
import pytest

from nnsqueeze.errors import ConfigError
from nnsqueeze.fl.compressors import Identity
from nnsqueeze.fl.partition import dirichlet_partition, iid_partition
from nnsqueeze.fl.simulation import SimulationConfig, Task, fedavg, load_task, run_simulation


@pytest.fixture(scope="module")
def digits() -> Task:
    """The digits with 300 training samples, to keep the tests fast."""
    full = load_task("digits")
    return full._replace(x_train=full.x_train[:300], y_train=full.y_train[:300])


def test_identity_aggregation_equals_plain_fedavg() -> None:
    rng = np.random.default_rng(0)
    shapes = [(8, 3), (5,)]
    updates = [[rng.normal(size=s).astype(np.float32) for s in shapes] for _ in range(4)]
    counts = [10.0, 30.0, 5.0, 55.0]
    decoded = [Identity().roundtrip(u)[1] for u in updates]
    via_bytes = fedavg(decoded, counts)
    plain = fedavg(updates, counts)
    for a, b, i in zip(via_bytes, plain, range(2), strict=True):
        assert np.array_equal(a, b)
        expected = np.average(np.stack([u[i] for u in updates]).astype(np.float64), axis=0, weights=counts)
        np.testing.assert_array_equal(a, expected.astype(np.float32))
    with pytest.raises(ConfigError):
        fedavg([], [])


def test_simulation_is_deterministic_and_learns(digits: Task) -> None:
    config = SimulationConfig(
        clients=4, rounds=3, compressor="topk", sparsity=0.2, noniid=0.5, local_epochs=4
    )
    a = run_simulation(config, task=digits)
    b = run_simulation(config, task=digits)
    assert [r.accuracy for r in a.rounds] == [r.accuracy for r in b.rounds]
    assert [r.upload_bytes for r in a.rounds] == [r.upload_bytes for r in b.rounds]
    assert a.final_accuracy > a.initial_accuracy
    assert 0 < a.rounds[0].upload_bytes < a.dense_update_bytes * 4 / 3  # top-k 20 %: ~22 % of dense
    cum = np.cumsum([r.upload_bytes for r in a.rounds])
    assert cum.tolist() == [r.cumulative_upload for r in a.rounds]


def test_dense_run_counts_dense_bytes(digits: Task) -> None:
    res = run_simulation(SimulationConfig(clients=3, rounds=1, compressor="identity"), task=digits)
    assert res.rounds[0].upload_bytes == 3 * res.dense_update_bytes
    assert res.num_parameters * 4 < res.dense_update_bytes < res.num_parameters * 4 + 64


def test_participation_and_downstream(digits: Task) -> None:
    config = SimulationConfig(clients=6, rounds=2, participation=0.5, compressor="sbc", downstream="stc")
    res = run_simulation(config, task=digits)
    assert all(len(r.participants) == 3 for r in res.rounds)
    # round 2 downloads the STC-compressed broadcast of round 1
    assert res.rounds[1].download_bytes < res.dense_update_bytes


def test_nnsq_update_both_ways_trains_like_dense_in_a_fraction_of_the_bytes(digits: Task) -> None:
    dense_config = SimulationConfig(clients=4, rounds=3, compressor="identity", local_epochs=4)
    dense = run_simulation(dense_config, task=digits)
    coded_config = dataclasses.replace(dense_config, compressor="nnsq-update", downstream="nnsq-update")
    coded = run_simulation(coded_config, task=digits)
    assert not any(r.excluded for r in coded.rounds)
    assert coded.final_accuracy > coded.initial_accuracy + 0.3
    assert abs(coded.final_accuracy - dense.final_accuracy) <= 0.03
    assert coded.total_upload < dense.total_upload / 4
    assert coded.rounds[1].download_bytes < dense.rounds[1].download_bytes / 4  # round 1's broadcast


def test_whole_model_sbc_sends_one_selection_per_message(digits: Task) -> None:
    runs = [
        run_simulation(SimulationConfig(clients=3, rounds=2, compressor="sbc", whole_model=w), task=digits)
        for w in (False, True)
    ]
    assert runs[1].total_upload < runs[0].total_upload
    assert all(not r.excluded for r in runs[1].rounds)


def test_cabac_prev_trains_like_cabac_in_fewer_bytes(digits: Task) -> None:
    # the previous-update contexts change only the coding, never the decoded levels
    plain, hinted = (
        run_simulation(SimulationConfig(clients=4, rounds=3, compressor=c, participation=0.5), task=digits)
        for c in ("cabac", "cabac-prev")
    )
    assert [r.accuracy for r in hinted.rounds] == [r.accuracy for r in plain.rounds]
    assert hinted.total_upload < plain.total_upload


@pytest.mark.parametrize("compressor", [pytest.param("identity", marks=pytest.mark.slow), "stc", "cabac"])
def test_faulty_clients_are_excluded_with_reasons(
    digits: Task, compressor: str, caplog: pytest.LogCaptureFixture
) -> None:
    config = SimulationConfig(clients=6, rounds=3, compressor=compressor, dropout=0.3, faults=0.5, seed=3)
    with caplog.at_level(logging.WARNING, logger="nnsqueeze.fl"):
        res = run_simulation(config, task=digits)
    assert len(res.rounds) == 3
    reasons = [reason for r in res.rounds for reason in r.excluded.values()]
    assert reasons, "the seed should produce faults"
    text = " ".join(reasons)
    assert "dropped out" in text
    assert "malformed update" in text
    assert ("non-finite" in text) or ("failed to encode" in text)
    assert "excluded" in caplog.text
    assert np.isfinite(res.final_accuracy)


REASON_OF_FAULT = {
    "nan": "non-finite values in",
    "corrupt": "malformed update",
    "stale": ", not to the current round 2 (stale)",
    "examples": "'num-examples' must be a positive finite number up to 9.0072e+15, got",
    "oversized": "update message of",
    "shape": "malformed update",
}


# An nnsq-update coder knows the model it codes against: a client of another model cannot encode.
REASON_OF_FAULT_NNSQ = REASON_OF_FAULT | {"shape": "client failed to encode: the model has shapes"}


@pytest.mark.parametrize("compressor", ["stc", "nnsq-update"])
@pytest.mark.parametrize("fault", sorted(REASON_OF_FAULT))
def test_every_faulty_reply_is_excluded_and_the_model_stays(
    digits: Task, fault: str, compressor: str
) -> None:
    config = SimulationConfig(clients=3, rounds=2, compressor=compressor, faults=1.0, fault_kinds=(fault,))
    res = run_simulation(config, task=digits)
    last = res.rounds[-1]
    assert sorted(last.excluded) == last.participants == [0, 1, 2]
    reasons = REASON_OF_FAULT_NNSQ if compressor == "nnsq-update" else REASON_OF_FAULT
    assert all(reasons[fault] in reason for reason in last.excluded.values()), last.excluded
    assert [r.accuracy for r in res.rounds] == [res.initial_accuracy] * 2  # nothing was averaged


def test_a_replayed_reply_counts_once(digits: Task) -> None:
    replayed = SimulationConfig(clients=3, rounds=2, compressor="stc", faults=1.0, fault_kinds=("replay",))
    res = run_simulation(replayed, task=digits)
    clean = run_simulation(dataclasses.replace(replayed, faults=0.0), task=digits)
    assert all(
        r.excluded == dict.fromkeys(r.participants, "a second reply in one round (replayed?)")
        for r in res.rounds
    )
    assert [r.accuracy for r in res.rounds] == [r.accuracy for r in clean.rounds]
    assert res.total_upload == 2 * clean.total_upload


def test_bad_config() -> None:
    with pytest.raises(ConfigError):
        SimulationConfig(dataset="cifar")
    with pytest.raises(ConfigError):
        SimulationConfig(participation=0.0)
    with pytest.raises(ConfigError, match="fault_kinds"):
        SimulationConfig(fault_kinds=("nan", "gremlins"))
    with pytest.raises(ConfigError):
        SimulationConfig(compressor="zip")
    with pytest.raises(ConfigError, match="dgc_momentum"):
        SimulationConfig(dgc_momentum=1.5)
    with pytest.raises(ConfigError, match="whole_model"):
        SimulationConfig(compressor="dgc", whole_model=True)


def test_partitions() -> None:
    labels = np.repeat(np.arange(10), 50)
    for parts in (iid_partition(500, 7, seed=1), dirichlet_partition(labels, 7, alpha=0.3, seed=1)):
        joined = np.concatenate(parts)
        assert sorted(joined.tolist()) == list(range(500))
    iid_sizes = [p.size for p in iid_partition(500, 7)]
    assert max(iid_sizes) - min(iid_sizes) <= 1
    skewed = dirichlet_partition(labels, 5, alpha=0.1, seed=0)
    majority = [np.bincount(labels[p], minlength=10).max() / p.size for p in skewed]
    assert np.mean(majority) > 0.4
    assert [p.tolist() for p in skewed] == [p.tolist() for p in dirichlet_partition(labels, 5, 0.1, seed=0)]
    with pytest.raises(ConfigError):
        dirichlet_partition(labels, 5, alpha=0.0)
    with pytest.raises(ConfigError):
        iid_partition(3, 5)


def test_cli_writes_json_and_png(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from nnsqueeze.cli.fl_sim import main

    code = main(
        ["fl-sim", "--clients", "3", "--rounds", "2", "--compressor", "stc", "--sparsity", "0.05",
         "--noniid", "0.5", "-o", str(tmp_path)]
    )  # fmt: skip
    assert code == 0
    data = json.loads((tmp_path / "fl_digits_stc.json").read_text())
    assert len(data["rounds"]) == 2
    assert data["config"]["noniid"] == 0.5
    assert (tmp_path / "fl_digits_stc.png").stat().st_size > 1000
    captured = capsys.readouterr()
    assert "round 2/2" in captured.err
    assert "less than dense" in captured.out
