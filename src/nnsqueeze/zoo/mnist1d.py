"""A small 1-D CNN on MNIST-1D (PyPI ``mnist1d``): a model that is sensitive to quantization.

MNIST-1D (Greydanus 2020) is a procedurally generated 1-D analogue of MNIST: 40-sample signals made
from 10 digit templates by padding, shearing, scaling, translation and noise.  The data are
generated here, offline, with ``mnist1d.data.make_dataset`` (deterministic for a seed); the
package's ``get_dataset`` is never called, since it downloads a pickle and writes files into the
working directory.  On this data a CNN beats an MLP by a wide margin, so its accuracy reacts
to every quantization error that matters.

>>> from nnsqueeze.zoo import accuracy
>>> model, data = train_mnist1d_cnn(seed=0)  # doctest: +SKIP
>>> accuracy(model, data.x_test, data.y_test) >= 0.9  # doctest: +SKIP
True
"""

from __future__ import annotations

import random

import numpy as np
import torch
from torch import nn

from nnsqueeze.zoo.splits import DEFAULT_VALIDATION, Split, cut_validation
from nnsqueeze.zoo.training import ShuffledBatches, fit, torch_threads

DEFAULT_SAMPLES = 20_000  # 16,000 train / 4,000 test
DEFAULT_EPOCHS = 20
DATA_SEED = 42  # the package's default seed
BATCH_SIZE = 64
LEARNING_RATE = 5e-3
SEQ_LENGTH = 40
CHANNELS = 25


def load_data(
    num_samples: int = DEFAULT_SAMPLES, seed: int = DATA_SEED, validation: float = DEFAULT_VALIDATION
) -> Split:
    """Generates ``num_samples`` signals (N, 1, 40), float32 (zero mean, unit variance), with labels
    (N,) offline: 20 % test, and ``validation`` of the rest held out of training; ~0.4 s per 1,000.

    ``make_dataset`` reseeds Python's and NumPy's global generators: their states are restored
    afterwards, so calling this does not disturb the caller's random streams."""
    from mnist1d.data import get_dataset_args, make_dataset

    if num_samples < 20:
        msg = f"num_samples must be >= 20 (2 per class in each split), got {num_samples}"
        raise ValueError(msg)
    args = get_dataset_args()
    args.num_samples = int(num_samples)
    args.seed = int(seed)
    py_state, np_state = random.getstate(), np.random.get_state()
    try:
        d = make_dataset(args)
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)

    def signals(x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)[:, None, :])

    def labels(y: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.asarray(y, dtype=np.int64))

    return cut_validation(
        signals(d["x"]),
        labels(d["y"]),
        signals(d["x_test"]),
        labels(d["y_test"]),
        fraction=validation,
        seed=seed,
    )


def build_model(channels: int = CHANNELS) -> nn.Module:
    """The MNIST-1D paper's CNN: 3 x (Conv1d stride 2, ReLU), Linear(5·C→10); 5,210 parameters at C = 25."""
    length = SEQ_LENGTH
    for kernel in (5, 3, 3):
        length = (length + 2 - kernel) // 2 + 1  # 40 -> 19 -> 10 -> 5
    return nn.Sequential(
        nn.Conv1d(1, channels, 5, stride=2, padding=1),
        nn.ReLU(),
        nn.Conv1d(channels, channels, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Conv1d(channels, channels, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(channels * length, 10),
    )


def train(model: nn.Module, data: Split, epochs: int = DEFAULT_EPOCHS, seed: int = 0) -> nn.Module:
    """Trains ``model`` in place on the training part: Adam, shuffled mini-batches, the learning rate
    decayed by a cosine schedule to zero (deterministic for a given seed)."""
    batches = ShuffledBatches(data.x_train, data.y_train, BATCH_SIZE, seed)
    return fit(model, batches, epochs=epochs, lr=LEARNING_RATE, cosine=True)


def train_mnist1d_cnn(
    seed: int = 0,
    epochs: int = DEFAULT_EPOCHS,
    *,
    num_samples: int = DEFAULT_SAMPLES,
    threads: int = 1,
) -> tuple[nn.Module, Split]:
    """Generates the data and trains the CNN with seeded initialisation and batch order.

    About 30 s on one thread with the defaults (7 s of it generating the data; test accuracy
    0.96); the global torch RNG is
    left as it was."""
    data = load_data(num_samples)
    with torch_threads(threads), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_model()
        return train(model, data, epochs, seed), data
