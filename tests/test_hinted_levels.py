"""The hinted level coder: byte-exact against the Python reference, round trips, and bad input."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from nnsqueeze import _core
from nnsqueeze.coding import Adaptation, encode_levels
from nnsqueeze.coding.cabac import MAX_HINT_CLASSES, decode_levels_hinted, encode_levels_hinted
from nnsqueeze.errors import BitstreamError, ConfigError

from . import reference_coder as ref


def sample(seed: int, shape: tuple[int, int], hint_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Sparse levels whose signs follow the hints (the correlation the contexts are for)."""
    rng = np.random.default_rng(seed)
    hints = rng.integers(0, hint_classes, shape).astype(np.uint8)
    sign = np.where(hints % 2 == 0, 1, -1)
    levels = sign * rng.integers(0, 3, shape) * (rng.random(shape) < 0.3)
    return levels.astype(np.int32), hints


@pytest.mark.parametrize(
    ("shape", "hint_classes", "num_gtx"),
    [((1, 1), 1, 0), ((7, 13), 3, 1), ((20, 40), 13, 24), ((3, 200), 32, 2), ((0, 5), 2, 4)],
)
def test_matches_reference(shape: tuple[int, int], hint_classes: int, num_gtx: int) -> None:
    levels, hints = sample(1, shape, hint_classes)
    if levels.size:
        levels.flat[0] = 70_000  # the Exp-Golomb remainder and the bypass bins
    rate = Adaptation(4, 7)
    payload = encode_levels_hinted(levels, hints, hint_classes, num_gtx=num_gtx, adaptation=rate)
    assert payload == ref.encode_levels_hinted(levels.tolist(), hints.tolist(), hint_classes, num_gtx, 4, 7)
    decoded = decode_levels_hinted(payload, shape, hints, hint_classes, num_gtx=num_gtx, adaptation=rate)
    assert np.array_equal(decoded, levels)


def test_informative_hints_save_bytes() -> None:
    levels, hints = sample(2, (64, 512), 13)
    assert len(encode_levels_hinted(levels, hints, 13)) < 0.9 * len(encode_levels(levels))


@settings(max_examples=80, deadline=None)
@given(
    hnp.arrays(np.int32, hnp.array_shapes(max_dims=3, max_side=12), elements=st.integers(-40, 40)),
    st.integers(1, MAX_HINT_CLASSES),
    st.integers(0, 2**32 - 1),
)
def test_roundtrip(levels: np.ndarray, hint_classes: int, seed: int) -> None:
    hints = np.random.default_rng(seed).integers(0, hint_classes, levels.shape).astype(np.uint8)
    payload = encode_levels_hinted(levels, hints, hint_classes, num_gtx=3)
    assert np.array_equal(decode_levels_hinted(payload, levels.shape, hints, hint_classes, num_gtx=3), levels)


def test_bad_hints_are_refused() -> None:
    levels, hints = sample(3, (4, 6), 5)
    with pytest.raises(ConfigError, match="below hint_classes"):
        encode_levels_hinted(levels, hints, 4)
    with pytest.raises(ConfigError, match="hint_classes"):
        encode_levels_hinted(levels, hints, MAX_HINT_CLASSES + 1)
    with pytest.raises(ConfigError, match="uint8"):
        encode_levels_hinted(levels, hints.astype(np.int32), 5)
    with pytest.raises(ConfigError, match="shape"):
        decode_levels_hinted(b"\0" * 8, (4, 6), hints.T.copy(), 5)


def test_core_checks_on_its_own() -> None:
    """The C++ entry points validate too: nothing reaches the coder unchecked."""
    flat = np.zeros(6, dtype=np.int32)
    hints = np.full(6, 9, dtype=np.uint8)
    with pytest.raises(ValueError, match="hint 9"):
        _core.encode_levels_hinted(flat, 2, 3, 2, 4, 7, hints, 5)
    with pytest.raises(ValueError, match="hint_classes"):
        _core.encode_levels_hinted(flat, 2, 3, 2, 4, 7, hints, 0)
    with pytest.raises(ValueError, match="rows \\* cols"):
        _core.encode_levels_hinted(flat, 2, 3, 2, 4, 7, hints[:5], 10)
    with pytest.raises(ValueError, match="rows \\* cols"):
        _core.encode_levels_hinted(flat, 2**33, 2**31 + 3, 2, 4, 7, hints, 10)
    with pytest.raises(ValueError, match="hint 9"):
        _core.decode_levels_hinted(np.zeros(8, np.uint8), 2, 3, 2, 4, 7, hints, 5, flat)


def test_corrupt_payloads_raise_or_decode() -> None:
    levels, hints = sample(4, (16, 30), 7)
    payload = encode_levels_hinted(levels, hints, 7)
    with pytest.raises(BitstreamError):
        decode_levels_hinted(payload[: len(payload) // 2], levels.shape, hints, 7)
    with pytest.raises(BitstreamError, match="trailing"):
        decode_levels_hinted(payload + b"\0" * 8, levels.shape, hints, 7)
    with pytest.raises(BitstreamError):
        decode_levels_hinted(b"", levels.shape, hints, 7)
    rng = np.random.default_rng(5)
    for _ in range(200):  # garbage must end in BitstreamError or in levels, never in a crash
        junk = rng.integers(0, 256, int(rng.integers(1, 64))).astype(np.uint8).tobytes()
        try:
            out = decode_levels_hinted(junk, levels.shape, hints, 7)
        except BitstreamError:
            continue
        assert out.shape == levels.shape
