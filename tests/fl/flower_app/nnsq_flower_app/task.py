"""The model and the data both apps share: a 64-32-10 MLP and a seeded split of scikit-learn's digits."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.datasets import load_digits
from torch import nn

# Mods are built when the ClientApp is imported, so the compressor is fixed here for both apps.
COMPRESSOR = "stc"
SPARSITY = 0.02


def build_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))


def load_split(partition_id: int, num_partitions: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Every ``num_partitions``-th digit of a seeded shuffle; partition -1 is the last 300 (test set)."""
    x, y = load_digits(return_X_y=True)
    order = np.random.default_rng(0).permutation(len(y))
    test, train = order[-300:], order[:-300]
    idx = test if partition_id < 0 else train[partition_id::num_partitions]
    return torch.tensor(x[idx] / 16.0, dtype=torch.float32), torch.tensor(y[idx])
