"""The zoo's registry and tasks: names, errors, and metrics checked against values worked by hand."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("sklearn")

import torch
from torch import nn

from nnsqueeze import ConfigError, zoo
from nnsqueeze.zoo import ShuffledBatches, Split, accuracy, fit


def _tiny_split() -> Split:
    # 2-D points; the class is whichever coordinate is larger.  Validation and test are given by hand.
    x_val = torch.tensor([[1.0, 0.0], [0.0, 1.0], [2.0, 1.0], [1.0, 3.0]])
    y_val = torch.tensor([0, 1, 0, 1])
    x_test = torch.tensor([[1.0, 0.0], [0.0, 1.0], [3.0, 1.0]])
    y_test = torch.tensor([0, 1, 1])  # the third label is "wrong" for the rule below
    return Split(x_val, y_val, x_val, y_val, x_test, y_test)


def _rule() -> nn.Module:
    model = nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.eye(2))  # logits = x: predicts the larger coordinate
    return model


def test_classifier_task_scores_by_hand() -> None:
    task = zoo.ClassifierTask("rule", _rule(), _tiny_split())
    state = task.state_dict()
    assert task.evaluate(state, "validation") == 1.0  # all four by the rule
    assert task.evaluate(state, "test") == pytest.approx(2 / 3)  # the third test label disagrees
    swapped = {"weight": np.array([[0.0, 1.0], [1.0, 0.0]], np.float32)}  # predicts the smaller one
    assert task.evaluate(swapped, "validation") == 0.0
    assert task.evaluate(swapped, "test") == pytest.approx(1 / 3)
    assert task.reference("test") == pytest.approx(2 / 3)
    assert torch.equal(task.model.weight, torch.eye(2))  # scoring never touches the model itself
    with pytest.raises(ConfigError, match="unknown data part"):
        task.evaluate(state, "train")  # type: ignore[arg-type]


def test_accuracy_by_hand() -> None:
    assert accuracy(_rule(), torch.tensor([[2.0, 1.0], [0.0, 5.0]]), torch.tensor([1, 1])) == 0.5


def test_shuffled_batches_are_seeded_and_cover_every_sample() -> None:
    x, y = torch.arange(10.0)[:, None], torch.arange(10)
    a, b = ShuffledBatches(x, y, 4, seed=5), ShuffledBatches(x, y, 4, seed=5)
    assert len(a) == 3
    first = [yb.tolist() for _, yb in a]
    assert first == [yb.tolist() for _, yb in b]
    assert sorted(v for batch in first for v in batch) == list(range(10))
    assert [len(batch) for batch in first] == [4, 4, 2]
    assert first != [yb.tolist() for _, yb in a]  # a new order on the next pass
    with pytest.raises(ValueError, match="differ in length"):
        ShuffledBatches(x, y[:3], 4)


def test_fit_learns_a_separable_rule() -> None:
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 2, generator=g)
    y = (x[:, 1] > x[:, 0]).long()
    model = nn.Linear(2, 2)
    fit(model, ShuffledBatches(x, y, 32, seed=0), epochs=20, lr=0.05)
    assert accuracy(model, x, y) > 0.95


def test_registry_names_and_errors() -> None:
    assert {"digits_cnn", "mlp", "lenet5", "mnist1d_cnn", "minilm", "crepe_tiny"} <= set(zoo.MODELS)
    for entry in zoo.MODELS.values():
        assert entry.summary
        assert entry.metric
        assert (entry.build is None) == (entry.train is None)
    with pytest.raises(ConfigError, match="unknown zoo model"):
        zoo.get("resnet")
    with pytest.raises(ConfigError, match="pretrained"):
        zoo.build("minilm")
    with pytest.raises(ConfigError, match="unknown data set"):
        zoo.load_dataset("imagenet")
    assert sum(p.numel() for p in zoo.build("digits_cnn").parameters()) == 38_282


def test_load_trains_a_zoo_model_reproducibly() -> None:
    state = torch.random.get_rng_state()
    a = zoo.load("digits_cnn", seed=1, epochs=2)
    b = zoo.load("digits_cnn", seed=1, epochs=2)
    assert torch.equal(state, torch.random.get_rng_state())  # the global RNG is left alone
    sa, sb = a.state_dict(), b.state_dict()
    assert all(np.array_equal(sa[k], sb[k]) for k in sa)
    assert 0.5 < a.evaluate(sa, "validation") <= 1.0
