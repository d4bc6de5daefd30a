"""Helpers shared by the demos."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Runs the block with ``n`` intra-op torch threads, then restores the previous number.

    Small models run faster on one thread than on several (less synchronisation per tiny op)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
