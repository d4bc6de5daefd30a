"""A small CNN on scikit-learn's bundled 8x8 digits: a model to compress in seconds, offline.

>>> model, data = train_digits_cnn(seed=0)  # doctest: +SKIP
>>> accuracy(model, data.x_test, data.y_test) >= 0.97  # doctest: +SKIP
True
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from nnsqueeze.demo.training import accuracy as accuracy  # re-exported: the demos and benchmarks use it
from nnsqueeze.demo.training import fit, torch_threads

DEFAULT_EPOCHS = 30
BATCH_SIZE = 32
LEARNING_RATE = 2e-3


class DigitsData(NamedTuple):
    """Train and test split of the digits: images (N, 1, 8, 8) scaled to [0, 1], labels (N,)."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor


def load_data(seed: int = 0) -> DigitsData:
    """The 1,797 digits, split 75/25 (stratified, seeded)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)[:, None, :, :]
    labels = digits.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(
        images, labels, test_size=0.25, random_state=seed, stratify=labels
    )
    return DigitsData(
        torch.from_numpy(x_tr), torch.from_numpy(y_tr), torch.from_numpy(x_te), torch.from_numpy(y_te)
    )


def build_model() -> nn.Module:
    """Conv(1→16)-ReLU-Conv(16→32)-ReLU-MaxPool-Linear(512→64)-ReLU-Linear(64→10): 38,282 parameters."""
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(32 * 4 * 4, 64),
        nn.ReLU(),
        nn.Linear(64, 10),
    )


def train(model: nn.Module, data: DigitsData, epochs: int = DEFAULT_EPOCHS, seed: int = 0) -> nn.Module:
    """Trains ``model`` in place: Adam, shuffled mini-batches (deterministic for a given seed)."""
    return fit(
        model,
        data.x_train,
        data.y_train,
        epochs=epochs,
        lr=LEARNING_RATE,
        batch_size=BATCH_SIZE,
        seed=seed,
        cosine_schedule=False,
    )


def train_digits_cnn(
    seed: int = 0, epochs: int = DEFAULT_EPOCHS, *, threads: int = 1
) -> tuple[nn.Module, DigitsData]:
    """Builds and trains the CNN with seeded initialisation, split and batch order (3 s on one thread)."""
    data = load_data(seed)
    with torch_threads(threads), torch.random.fork_rng(devices=[]):  # leaves the global RNG as it was
        torch.manual_seed(seed)
        model = build_model()
        return train(model, data, epochs, seed), data
