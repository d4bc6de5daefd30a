"""Crafted records with valid CRCs whose decoded values would be wrong: out of their dtype's range,
non-canonical bools, an offset a method has no use for, a step whose products overflow.  Each is
refused with BitstreamError; the valid extremes still round-trip exactly."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import nnsqueeze
from nnsqueeze import BitstreamError
from nnsqueeze.coding import cabac
from nnsqueeze.coding.container import LevelParams, Method, RecordHeader
from nnsqueeze.coding.planes import encode_planes

from .conftest import rebuild, records_of


def _level_record(name: str, dtype: str, levels: list[int], **params: float) -> tuple[RecordHeader, bytes]:
    q = np.array(levels, dtype=np.int32)
    payload = cabac.encode_levels(q, num_gtx=10, adaptation=cabac.Adaptation(5, 9))
    method = int(params.pop("method", Method.INTEGER))
    p = LevelParams(10, 5, 9, **params)  # type: ignore[arg-type]
    return RecordHeader(name, dtype, (q.size,), method, p, 0, len(payload)), payload


def _decode(record: tuple[RecordHeader, bytes]) -> dict[str, np.ndarray]:
    return nnsqueeze.decompress(rebuild([record]), threads=1)


@pytest.mark.parametrize(
    ("dtype", "levels", "offset"),
    [
        ("int8", [-1000, 1000], 0),  # decoded as -24/+24 before
        ("uint8", [-1, 5], 0),
        ("int16", [0, 2**20], 0),  # beyond the one span earlier encoders could wrap int16 sums by
        ("int32", [0, 1], 2**31 - 1),
        ("int64", [0, 1], 2**63 - 1),  # would wrap to int64 min
        ("uint64", [-1, 0], 0),
        ("bool", [0, 2], 0),
    ],
)
def test_integer_values_outside_their_dtype_are_refused(dtype: str, levels: list[int], offset: int) -> None:
    with pytest.raises(BitstreamError, match="outside the range"):
        _decode(_level_record("t", dtype, levels, offset=offset))


@pytest.mark.parametrize(
    ("dtype", "values"),
    [
        ("int8", [-128, 127, 0]),
        ("uint8", [0, 255]),
        ("int64", [-(2**63), -(2**63) + 5]),
        ("int64", [2**63 - 1, 2**63 - 9]),
        ("uint64", [2**64 - 1, 2**64 - 7]),
    ],
)
def test_integer_extremes_still_round_trip(dtype: str, values: list[int]) -> None:
    x = {"t": np.array(values, dtype=dtype)}
    data = nnsqueeze.compress(x, None, threads=1).data
    assert records_of(data)[0][0].method == Method.INTEGER
    assert np.array_equal(nnsqueeze.decompress(data, threads=1)["t"], x["t"])


def test_int8_records_of_earlier_encoders_still_decode() -> None:
    # Before, the encoder subtracted the minimum in int8 itself: for a tensor spanning -128..127,
    # 127 - (-128) wrapped to -1, and decoding relied on the format's modulo-256 sum.
    values = np.array([-128, -1, 0, 1, 127], dtype=np.int8)
    lo, hi = -128, 127
    half = (hi - lo) // 2
    with np.errstate(over="ignore"):
        wrapped = (values - np.int8(lo)).astype(np.int64)
    header, payload = _level_record("t", "int8", (wrapped - half).tolist(), offset=lo + half)
    assert np.array_equal(_decode((header, payload))["t"], values)


def test_raw_bool_bytes_other_than_0_and_1_are_refused() -> None:
    raw = np.array([0, 1, 2, 255], dtype=np.uint8)
    coded = encode_planes(raw, rotate_sign=False, chunk=4)
    header = RecordHeader(
        "b", "bool", (4,), Method.PLANES, None, 1, len(coded.payload), 4, coded.entry_points
    )
    with pytest.raises(BitstreamError, match="other than 0 and 1"):
        _decode((header, coded.payload))


def test_dependent_record_with_an_offset_is_refused() -> None:
    record = _level_record("w", "float32", [1, -2, 3], method=Method.DEPENDENT, offset=5, step=0.01)
    with pytest.raises(BitstreamError, match="offset"):
        _decode(record)


@pytest.mark.parametrize("step", [1e300, 2.0**64 * 1.5, float("inf"), 0.0, -1.0])
def test_steps_whose_products_could_overflow_are_refused(step: float) -> None:
    with pytest.raises(BitstreamError, match="step"):
        _decode(_level_record("w", "float32", [1, -2, 3], method=Method.UNIFORM, step=step))


def test_the_largest_step_decodes_to_finite_values() -> None:
    header, payload = _level_record(
        "w", "float32", [2**30 - 1, -(2**30 - 1)], method=Method.UNIFORM, step=2.0**64
    )
    out = _decode((header, payload))["w"]
    assert np.isfinite(out).all()
    header = dataclasses.replace(header, method=Method.DEPENDENT)
    assert np.isfinite(_decode((header, payload))["w"]).all()


def test_a_long_row_that_runs_past_its_payload_stops_inside_the_row() -> None:
    # One row claiming as many levels as 2 KB could at best carry: random bytes decode as levels
    # that use up the payload long before, which the decoder notices inside the row.
    payload = np.random.default_rng(3).integers(0, 256, 2000, dtype=np.uint8).tobytes()
    count = cabac.max_elements_for_payload(len(payload))
    p = LevelParams(10, 5, 9, 0, 0.01)
    header = RecordHeader("w", "float32", (1, count), Method.UNIFORM, p, 0, len(payload))
    with pytest.raises(BitstreamError, match=r"ends early|trailing|corrupt"):
        _decode((header, payload))
