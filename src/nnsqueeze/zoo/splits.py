"""Train / validation / test splits of the zoo's data sets.

Validation is cut from the training part (seeded) and held out of training, so every setting chosen
on it (a step, a lambda, a pruning level) is chosen without looking at the test set."""

from __future__ import annotations

from typing import NamedTuple

import torch

DEFAULT_VALIDATION = 0.15


class Split(NamedTuple):
    """Inputs and labels of the three parts of one data set."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor


def cut_validation(
    x: torch.Tensor,
    y: torch.Tensor,
    x_test: torch.Tensor,
    y_test: torch.Tensor,
    *,
    fraction: float,
    seed: int,
) -> Split:
    """Moves a seeded random ``fraction`` of the training part to validation; with ``fraction`` 0 the
    training part is kept whole and in order."""
    if not 0.0 <= fraction < 1.0:
        msg = f"validation fraction must be in [0, 1), got {fraction}"
        raise ValueError(msg)
    n_val = round(fraction * x.shape[0])
    if n_val == 0:
        return Split(x, y, x[:0], y[:0], x_test, y_test)
    order = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(seed + 1))
    val, train = order[:n_val], order[n_val:]
    return Split(x[train], y[train], x[val], y[val], x_test, y_test)
