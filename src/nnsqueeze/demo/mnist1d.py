"""A small 1-D CNN on MNIST-1D (PyPI ``mnist1d``): a model that is sensitive to quantization.

MNIST-1D (Greydanus 2020) is a procedurally generated 1-D analogue of MNIST: 40-sample signals made
from 10 digit templates by padding, shearing, scaling, translation and noise.  The data are
generated here, offline, with ``mnist1d.data.make_dataset`` (deterministic for a seed); the
package's ``get_dataset`` is never called, since it downloads a pickle and writes files into the
working directory.  On this data a CNN beats an MLP by a wide margin, so its accuracy reacts
to every quantization error that matters.

>>> model, data = train_mnist1d_cnn(seed=0)  # doctest: +SKIP
>>> accuracy(model, data.x_test, data.y_test) >= 0.9  # doctest: +SKIP
True
"""

from __future__ import annotations

import random
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from nnsqueeze.demo.training import accuracy as accuracy  # re-exported: the demos and benchmarks use it
from nnsqueeze.demo.training import fit, torch_threads

DEFAULT_SAMPLES = 20_000  # 16,000 train / 4,000 test
DEFAULT_EPOCHS = 20
DATA_SEED = 42  # the package's default seed
BATCH_SIZE = 64
LEARNING_RATE = 5e-3
SEQ_LENGTH = 40
CHANNELS = 25


class Mnist1dData(NamedTuple):
    """Train and test split: signals (N, 1, 40) as float32 (zero mean, unit variance), labels (N,)."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor


def load_data(num_samples: int = DEFAULT_SAMPLES, seed: int = DATA_SEED) -> Mnist1dData:
    """Generates ``num_samples`` signals (80 % train, 20 % test) offline; ~0.4 s per 1,000.

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

    return Mnist1dData(signals(d["x"]), labels(d["y"]), signals(d["x_test"]), labels(d["y_test"]))


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


def train(model: nn.Module, data: Mnist1dData, epochs: int = DEFAULT_EPOCHS, seed: int = 0) -> nn.Module:
    """Trains ``model`` in place: Adam, shuffled mini-batches, the learning rate decayed by a
    cosine schedule to zero (deterministic for a given seed)."""
    return fit(
        model,
        data.x_train,
        data.y_train,
        epochs=epochs,
        lr=LEARNING_RATE,
        batch_size=BATCH_SIZE,
        seed=seed,
        cosine_schedule=True,
    )


def train_mnist1d_cnn(
    seed: int = 0,
    epochs: int = DEFAULT_EPOCHS,
    *,
    num_samples: int = DEFAULT_SAMPLES,
    threads: int = 1,
) -> tuple[nn.Module, Mnist1dData]:
    """Generates the data and trains the CNN with seeded initialisation and batch order.

    About 30 s on one thread with the defaults (7 s of it generating the data; test accuracy
    0.96); the global torch RNG is
    left as it was."""
    data = load_data(num_samples)
    with torch_threads(threads), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_model()
        return train(model, data, epochs, seed), data
