"""The zoo's digits: the split (train / validation / test) and the models trained on it."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("sklearn")

import torch

from nnsqueeze.zoo import accuracy, digits


def test_digits_cnn_trains_fast_on_the_training_part() -> None:
    model, data = digits.train_digits_cnn(seed=0, epochs=8)
    assert sum(p.numel() for p in model.parameters()) == 38_282
    assert data.x_train.shape == (1145, 1, 8, 8)  # 1,347 minus the 15 % validation part
    assert data.x_val.shape == (202, 1, 8, 8)
    assert data.x_test.shape == (450, 1, 8, 8)
    assert accuracy(model, data.x_test, data.y_test) > 0.9


def test_split_is_deterministic_stratified_and_disjoint() -> None:
    a, b = digits.load_data(3), digits.load_data(3)
    assert all(bool((x == y).all()) for x, y in zip(a, b, strict=True))
    assert np.bincount(a.y_test.numpy(), minlength=10).min() >= 40
    whole = digits.load_data(3, validation=0.0)
    assert whole.x_val.shape[0] == 0
    rows = {tuple(r.flatten().tolist()) for r in whole.x_train}
    assert {tuple(r.flatten().tolist()) for r in a.x_val} <= rows  # validation is cut from training
    train_rows = {tuple(r.flatten().tolist()) for r in a.x_train}
    assert not train_rows & {tuple(r.flatten().tolist()) for r in a.x_val}


@pytest.mark.parametrize(("build", "params"), [(digits.lenet_300_100, 50_610), (digits.lenet5, 19_754)])
def test_other_digits_models(build: object, params: int) -> None:
    assert callable(build)
    model = build()
    assert sum(p.numel() for p in model.parameters()) == params
    assert model(torch.zeros(2, 1, 8, 8)).shape == (2, 10)
