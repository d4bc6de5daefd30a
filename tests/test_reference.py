"""The C++ coders and quantizer against the slow Python references (byte-exact)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nnsqueeze import _core
from nnsqueeze.coding import Adaptation, encode_bytes, encode_levels
from nnsqueeze.quant import quantize

from . import reference_coder as ref


def _levels(rng: np.random.Generator, rows: int, cols: int, scale: float) -> np.ndarray:
    levels = np.round(rng.laplace(0, scale, (rows, cols))).astype(np.int32)
    levels[rng.random((rows, cols)) < 0.1] *= 40  # some large values reach the Exp-Golomb remainder
    return levels


@pytest.mark.parametrize(
    ("rows", "cols", "scale", "num_gtx", "rates"),
    [
        (1, 1, 1.0, 24, (4, 7)),
        (7, 13, 0.3, 24, (4, 7)),
        (16, 9, 3.0, 10, (5, 9)),
        (5, 40, 20.0, 0, (4, 7)),
        (30, 30, 2.0, 32, (8, 12)),
        (3, 0, 1.0, 24, (4, 7)),
    ],
)
def test_level_coder_matches_reference(
    rows: int, cols: int, scale: float, num_gtx: int, rates: tuple[int, int]
) -> None:
    levels = _levels(np.random.default_rng(rows * 100 + cols), rows, cols, scale)
    fast = encode_levels(levels, num_gtx=num_gtx, adaptation=Adaptation(*rates))
    slow = ref.encode_levels(levels.tolist(), num_gtx, *rates)
    assert fast == slow


def test_level_coder_extreme_levels_match_reference() -> None:
    big = _core.MAX_ABS_LEVEL
    levels = np.array([[big, -big, 0, 1, -1, big // 3]], dtype=np.int32)
    assert encode_levels(levels, adaptation=Adaptation(4, 7)) == ref.encode_levels(levels.tolist(), 24, 4, 7)


@pytest.mark.parametrize("dtype", ["u1", "<i2", "<f4", "<f8"])
def test_byte_coder_matches_reference(dtype: str) -> None:
    rng = np.random.default_rng(3)
    values = (rng.normal(0, 100, 57)).astype(dtype)
    assert encode_bytes(values) == ref.encode_bytes(values.tobytes(), values.dtype.itemsize)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(-1e4, 1e4, allow_nan=False, width=32), max_size=50), st.floats(1e-4, 10.0))
def test_quantize_matches_reference(values: list[float], step: float) -> None:
    array = np.array(values, dtype=np.float32)
    assert quantize(array, step).tolist() == ref.quantize(array.tolist(), step)
