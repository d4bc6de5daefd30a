"""Splitting a labelled data set among clients: IID, or non-IID by a Dirichlet prior over classes.

>>> import numpy as np
>>> labels = np.repeat(np.arange(10), 100)
>>> parts = dirichlet_partition(labels, num_clients=5, alpha=0.5, seed=0)
>>> sorted(np.concatenate(parts).tolist()) == list(range(1000))
True
"""

from __future__ import annotations

import numpy as np

from nnsqueeze.errors import ConfigError


def iid_partition(num_samples: int, num_clients: int, seed: int = 0) -> list[np.ndarray]:
    """A seeded shuffle cut into ``num_clients`` near-equal shards (sorted indices)."""
    _check(num_samples, num_clients)
    order = np.random.default_rng(seed).permutation(num_samples)
    return [np.sort(part) for part in np.array_split(order, num_clients)]


def dirichlet_partition(
    labels: np.ndarray, num_clients: int, alpha: float, seed: int = 0, min_size: int = 2
) -> list[np.ndarray]:
    """For each class, shares ``~ Dirichlet(alpha)`` of its samples go to the clients (smaller alpha:
    more skewed).  Redrawn (same seed stream) until every client holds ``min_size`` samples."""
    labels = np.asarray(labels).reshape(-1)
    _check(labels.size, num_clients)
    if not alpha > 0:
        msg = f"the Dirichlet concentration alpha must be positive, got {alpha}"
        raise ConfigError(msg)
    if labels.size < num_clients * min_size:
        msg = f"{labels.size} samples cannot give {num_clients} clients {min_size} each"
        raise ConfigError(msg)
    rng = np.random.default_rng(seed)
    for _ in range(1000):
        parts: list[list[int]] = [[] for _ in range(num_clients)]
        for cls in np.unique(labels):
            idx = rng.permutation(np.flatnonzero(labels == cls))
            shares = rng.dirichlet(np.full(num_clients, alpha))
            cuts = (np.cumsum(shares)[:-1] * idx.size).astype(int)
            for client, chunk in enumerate(np.split(idx, cuts)):
                parts[client].extend(chunk.tolist())
        if min(len(p) for p in parts) >= min_size:
            return [np.sort(np.array(p, dtype=np.int64)) for p in parts]
    msg = f"no Dirichlet({alpha}) draw gave every one of {num_clients} clients {min_size} samples"
    raise ConfigError(msg)


def _check(num_samples: int, num_clients: int) -> None:
    if num_clients < 1 or num_clients > num_samples:
        msg = f"need 1 <= clients <= samples, got {num_clients} clients for {num_samples} samples"
        raise ConfigError(msg)
