"""The zoo's MNIST-1D: offline data generation, the 1-D CNN, quick training, compression round trip."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("mnist1d")

import torch

import nnsqueeze
from nnsqueeze.zoo import accuracy, mnist1d


def test_data_is_offline_deterministic_and_leaves_rngs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    random.seed(1)
    np.random.seed(1)
    before = (random.random(), np.random.rand())
    random.seed(1)
    np.random.seed(1)
    a = mnist1d.load_data(500)
    after = (random.random(), np.random.rand())
    assert before == after  # make_dataset reseeds the globals; load_data restores them
    assert list(tmp_path.iterdir()) == []  # nothing written into the working directory
    b = mnist1d.load_data(500)
    assert all(bool((x == y).all()) for x, y in zip(a, b, strict=True))
    assert a.x_train.shape == (340, 1, 40)  # 80 % train, 15 % of it held out for validation
    assert a.x_val.shape == (60, 1, 40)
    assert a.x_test.shape == (100, 1, 40)
    assert a.x_train.dtype == torch.float32
    assert a.y_train.dtype == torch.int64
    assert set(a.y_train.tolist()) == set(range(10))
    with pytest.raises(ValueError, match="num_samples"):
        mnist1d.load_data(5)


def test_model_shape_and_parameter_count() -> None:
    model = mnist1d.build_model()
    assert sum(p.numel() for p in model.parameters()) == 5_210
    assert model(torch.zeros(3, 1, 40)).shape == (3, 10)


def test_quick_training_learns_and_compresses() -> None:
    state = torch.random.get_rng_state()
    model, data = mnist1d.train_mnist1d_cnn(seed=0, epochs=15, num_samples=2000)
    assert torch.equal(state, torch.random.get_rng_state())
    acc = accuracy(model, data.x_test, data.y_test)
    assert acc > 0.4  # chance is 0.1 (this run: ~0.58); the default 20 epochs on 20k reach ~0.96
    tensors = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    report = nnsqueeze.compress(tensors, qp=-32, threads=1)
    assert report.data is not None
    decoded = nnsqueeze.decompress(report.data)
    restored = mnist1d.build_model()
    restored.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in decoded.items()})
    assert accuracy(restored, data.x_test, data.y_test) >= acc - 0.02


def test_training_is_deterministic() -> None:
    a, _ = mnist1d.train_mnist1d_cnn(seed=3, epochs=1, num_samples=300)
    b, _ = mnist1d.train_mnist1d_cnn(seed=3, epochs=1, num_samples=300)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
