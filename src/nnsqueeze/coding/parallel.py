"""Threads over work items, for the coders (which release the GIL, so threads give real
parallelism): ``parallel_map`` for the chunks of one tensor, ``ordered_map`` for the tensors of a
file in order with bounded memory."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

_In = TypeVar("_In")
_Out = TypeVar("_Out")


def parallel_map(fn: Callable[[_In], _Out], items: Sequence[_In], threads: int) -> list[_Out]:
    """``[fn(x) for x in items]`` on up to ``threads`` threads (the coders release the GIL)."""
    if threads <= 1 or len(items) < 2:
        return [fn(x) for x in items]
    with ThreadPoolExecutor(max_workers=min(threads, len(items))) as pool:
        return list(pool.map(fn, items))


def ordered_map(
    fn: Callable[[_In], _Out], items: Iterable[_In], workers: int, cost: Callable[[_In], int]
) -> Iterator[_Out]:
    """``map`` over a thread pool that keeps order, bounded by memory rather than by count: items
    are submitted while the ``cost`` (bytes) in flight stays within ``workers`` times the largest
    item seen so far, so memory stays near ``workers`` of the largest tensors, as with a window of
    ``workers`` items, while small tensors flow past a large one instead of leaving threads idle
    behind it (a window of ``workers`` items ran one thread most of the time on transformers,
    whose biases sit between the weight matrices)."""
    if workers == 1:
        yield from map(fn, items)
        return
    max_items = 8 * workers
    with ThreadPoolExecutor(max_workers=workers) as pool:
        pending: deque[tuple[Future[_Out], int]] = deque()
        in_flight = largest = 0
        for item in items:
            size = max(cost(item), 1)
            largest = max(largest, size)
            while pending and (len(pending) >= max_items or in_flight + size > workers * largest):
                done, done_size = pending.popleft()
                in_flight -= done_size
                yield done.result()
            pending.append((pool.submit(fn, item), size))
            in_flight += size
        while pending:
            yield pending.popleft()[0].result()
