"""scikit-learn's bundled 8x8 digits and the zoo's models for them: the demo CNN, a LeNet-300-100-style
MLP and a LeNet-5-style CNN, each trained in seconds, offline.

>>> from nnsqueeze.zoo import accuracy
>>> model, data = train_digits_cnn(seed=0)  # doctest: +SKIP
>>> accuracy(model, data.x_test, data.y_test) >= 0.96  # doctest: +SKIP
True
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from nnsqueeze.zoo.splits import DEFAULT_VALIDATION, Split, cut_validation
from nnsqueeze.zoo.training import ShuffledBatches, fit, torch_threads

DEFAULT_EPOCHS = 30
BATCH_SIZE = 32
LEARNING_RATE = 2e-3


def load_data(seed: int = 0, validation: float = DEFAULT_VALIDATION) -> Split:
    """The 1,797 digits as images (N, 1, 8, 8) scaled to [0, 1] and labels (N,): 25 % test (stratified,
    seeded), and ``validation`` of the rest held out of training."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)[:, None, :, :]
    labels = digits.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(
        images, labels, test_size=0.25, random_state=seed, stratify=labels
    )
    return cut_validation(
        torch.from_numpy(x_tr),
        torch.from_numpy(y_tr),
        torch.from_numpy(x_te),
        torch.from_numpy(y_te),
        fraction=validation,
        seed=seed,
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


def lenet_300_100(hidden: tuple[int, int] = (300, 100)) -> nn.Module:
    """LeNet-300-100 on 8x8 digits: 64 → 300 → 100 → 10 (50,610 parameters)."""
    a, b = hidden
    return nn.Sequential(
        nn.Flatten(), nn.Linear(64, a), nn.ReLU(), nn.Linear(a, b), nn.ReLU(), nn.Linear(b, 10)
    )


def lenet5(filters: tuple[int, int] = (6, 16), hidden: tuple[int, ...] = (120, 84)) -> nn.Module:
    """LeNet-5 for 8x8 digits: two 3x3 convolutions (``filters``), each then max-pooled, then fully
    connected layers 4·filters[1] → ``hidden`` → 10 (19,754 parameters by default)."""
    a, b = filters
    layers: list[nn.Module] = [
        nn.Conv2d(1, a, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(a, b, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
    ]
    width = 4 * b  # 8x8 pooled twice: 2x2 pixels per filter
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU()]
        width = h
    return nn.Sequential(*layers, nn.Linear(width, 10))


def lenet5_student() -> nn.Module:
    """LeNet-5's shape with a quarter of its parameters (4,858): 8 and 16 filters, one hidden layer
    of 48, the distillation student of the benchmarks."""
    return lenet5((8, 16), (48,))


def train(
    model: nn.Module, data: Split, epochs: int = DEFAULT_EPOCHS, seed: int = 0, *, cosine: bool = False
) -> nn.Module:
    """Trains ``model`` in place on the training part: Adam, shuffled mini-batches (deterministic for a
    given seed)."""
    batches = ShuffledBatches(data.x_train, data.y_train, BATCH_SIZE, seed)
    return fit(model, batches, epochs=epochs, lr=LEARNING_RATE, cosine=cosine)


def train_digits_cnn(
    seed: int = 0, epochs: int = DEFAULT_EPOCHS, *, threads: int = 1
) -> tuple[nn.Module, Split]:
    """Builds and trains the CNN with seeded initialisation, split and batch order (3 s on one thread)."""
    data = load_data(seed)
    with torch_threads(threads), torch.random.fork_rng(devices=[]):  # leaves the global RNG as it was
        torch.manual_seed(seed)
        model = build_model()
        return train(model, data, epochs, seed), data
