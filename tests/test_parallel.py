"""ordered_map: order kept, memory bounded by cost, small items not stuck behind a large one."""

from __future__ import annotations

import threading

from nnsqueeze.coding.parallel import ordered_map, parallel_map


def test_parallel_map_keeps_order() -> None:
    assert parallel_map(lambda x: x * x, list(range(50)), 3) == [x * x for x in range(50)]


def test_ordered_map_keeps_order_and_bounds_the_cost_in_flight() -> None:
    sizes = [5, 1, 1, 9, 1, 1, 1, 3, 9, 9, 1, 2] * 3
    lock = threading.Lock()
    started: set[int] = set()

    def work(i: int) -> int:
        with lock:
            started.add(i)
        return i

    out, worst = [], 0.0
    for i in ordered_map(work, range(len(sizes)), 2, cost=lambda i: sizes[i]):
        with lock:  # outputs made but not yet taken by the consumer: what memory holds
            held = sum(sizes[j] for j in started if j >= i)
            worst = max(worst, held / max(sizes[: max(started) + 1]))
        out.append(i)
    assert out == list(range(len(sizes)))
    assert worst <= 2  # never more than workers x the largest item so far


def test_small_items_run_while_a_large_one_is_still_working() -> None:
    release = threading.Event()
    started_small = threading.Event()

    def work(i: int) -> int:
        if i == 0:
            assert started_small.wait(timeout=10), "no small item ran while the large one worked"
            release.set()
        elif i == 3:
            started_small.set()  # the fourth item starts although the first has not finished
        return i

    sizes = [100, 1, 1, 1, 1]
    assert list(ordered_map(work, range(5), 2, cost=lambda i: sizes[i])) == [0, 1, 2, 3, 4]
    assert release.is_set()
