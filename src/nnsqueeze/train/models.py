"""Small reference models and data loaders for the benchmarks, tests and ``nnsqueeze squeeze``.

Digits (scikit-learn's bundled 8x8 digits, via :mod:`nnsqueeze.demo.digits`): a LeNet-300-100-style
MLP, a LeNet-5-style CNN, the demo CNN; MNIST-1D: the demo's 1-D CNN (:mod:`nnsqueeze.demo.mnist1d`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from nnsqueeze.errors import ConfigError


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


def digits_cnn() -> nn.Module:
    """The demo's digits CNN (38,282 parameters)."""
    from nnsqueeze.demo.digits import build_model

    return build_model()


def mnist1d_cnn() -> nn.Module:
    """The demo's MNIST-1D CNN (5,210 parameters)."""
    from nnsqueeze.demo.mnist1d import build_model

    return build_model()


ARCHITECTURES: dict[str, Callable[[], nn.Module]] = {
    "mlp": lenet_300_100,
    "lenet5": lenet5,
    "digits_cnn": digits_cnn,
    "mnist1d_cnn": mnist1d_cnn,
}
DATASET_OF = {"mlp": "digits", "lenet5": "digits", "digits_cnn": "digits", "mnist1d_cnn": "mnist1d"}


def build(arch: str) -> nn.Module:
    """A fresh model by name: one of :data:`ARCHITECTURES`."""
    if arch not in ARCHITECTURES:
        msg = f"unknown architecture {arch!r}; choose one of {', '.join(ARCHITECTURES)}"
        raise ConfigError(msg)
    return ARCHITECTURES[arch]()


class Split:
    """Train / validation / test tensors of one data set; validation is cut from the training part
    (seeded), so model selection never looks at the test set."""

    def __init__(self, dataset: str, *, val_fraction: float = 0.15, seed: int = 0) -> None:
        if dataset == "digits":
            from nnsqueeze.demo.digits import load_data

            d = load_data(seed)
            x_tr, y_tr, self.x_test, self.y_test = d.x_train, d.y_train, d.x_test, d.y_test
        elif dataset == "mnist1d":
            from nnsqueeze.demo.mnist1d import load_data as load_1d

            m = load_1d()
            x_tr, y_tr, self.x_test, self.y_test = m.x_train, m.y_train, m.x_test, m.y_test
        else:
            msg = f"unknown data set {dataset!r}; choose 'digits' or 'mnist1d'"
            raise ConfigError(msg)
        self.dataset = dataset
        order = torch.randperm(x_tr.shape[0], generator=torch.Generator().manual_seed(seed + 1))
        n_val = round(val_fraction * x_tr.shape[0])
        val, train = order[:n_val], order[n_val:]
        self.x_train, self.y_train = x_tr[train], y_tr[train]
        self.x_val, self.y_val = x_tr[val], y_tr[val]

    def loader(self, batch_size: int = 32, seed: int = 0) -> DataLoader[tuple[torch.Tensor, ...]]:
        """Shuffled mini-batches of the training part (seeded)."""
        return DataLoader(
            TensorDataset(self.x_train, self.y_train),
            batch_size=batch_size,
            shuffle=True,
            generator=torch.Generator().manual_seed(seed),
        )


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Fraction of ``x`` that ``model`` classifies as ``y``."""
    model.eval()
    return float((model(x).argmax(dim=1) == y).float().mean())
