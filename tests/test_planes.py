"""The lossless plane coder (method 5): the C++ decoder against the reader written from
docs/format.md (``spec_planes``), bit-exact round trips of every float class, chunking and thread
independence, and malformed payloads."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import nnsqueeze
from nnsqueeze import BitstreamError, CompressOptions
from nnsqueeze.coding.planes import decode_planes, encode_planes

from . import spec_planes

FLOAT_DTYPES = ("float16", "float32", "float64")
INT_DTYPES = ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64")


def _bits(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a).view(np.uint8)


def awkward_floats(dtype: str, size: int, seed: int) -> np.ndarray:
    """Trained-weight-like values mixed with every special bit pattern of the dtype."""
    rng = np.random.default_rng(seed)
    info = np.finfo(dtype)
    values = (rng.laplace(0, 0.05, size)).astype(dtype)
    uint = np.dtype(f"u{values.itemsize}")
    bits = values.view(uint)
    exponent_bits = info.bits - info.nmant - 1
    quiet_nan = ((1 << exponent_bits) - 1) << info.nmant | 1 << (info.nmant - 1)
    specials = [
        0,  # +0.0
        1 << (info.bits - 1),  # -0.0
        1,  # smallest subnormal
        (1 << info.nmant) - 1,  # largest subnormal
        quiet_nan | 0x5,  # NaN with a payload
        quiet_nan | 1 << (info.bits - 1) | 0x3,  # negative NaN with a payload
        ((1 << exponent_bits) - 1) << info.nmant | 1,  # signalling NaN
        ((1 << exponent_bits) - 1) << info.nmant,  # +inf
    ]
    for k, s in enumerate(specials):
        bits[(k * 7919) % size] = s
    return values


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("chunk", [37, 1 << 18])
def test_library_and_spec_reader_agree_on_floats(dtype: str, chunk: int) -> None:
    x = {"w": awkward_floats(dtype, 1500, seed=1).reshape(30, 50), "v": awkward_floats(dtype, 9, seed=2)}
    data = nnsqueeze.compress(x, options=CompressOptions(lossless=True, chunk_elements=chunk, threads=1)).data
    spec = spec_planes.read_file(data)
    lib = nnsqueeze.decompress(data, threads=1)
    for name, original in x.items():
        assert _bits(spec[name]).tobytes() == _bits(original).tobytes()
        assert _bits(lib[name]).tobytes() == _bits(original).tobytes()


def test_library_and_spec_reader_agree_on_bfloat16() -> None:
    torch = pytest.importorskip("torch")
    gen = torch.Generator().manual_seed(0)
    w = (torch.randn(40, 30, generator=gen) * 0.05).to(torch.bfloat16)
    w.view(torch.int16)[0, :4] = torch.tensor(
        [0x7FC1, -32768, 0x0001, 0x7F80], dtype=torch.int16
    )  # NaN, -0, sub, inf
    data = nnsqueeze.compress(
        {"w": w}, options=CompressOptions(lossless=True, chunk_elements=100, threads=1)
    ).data
    spec = spec_planes.read_file(data)["w"]
    back = nnsqueeze.load_state_dict(data, threads=1)["w"]
    assert back.dtype == torch.bfloat16
    assert np.array_equal(spec, w.view(torch.int16).numpy().view(np.uint16))
    assert torch.equal(back.view(torch.int16), w.view(torch.int16))


def test_wide_integers_use_planes_and_agree_with_the_spec_reader() -> None:
    rng = np.random.default_rng(4)
    x = {"i": rng.integers(-(2**62), 2**62, size=(20, 25), dtype=np.int64)}
    data = nnsqueeze.compress(x, None, threads=1).data
    with nnsqueeze.NnsqFile(data) as f:
        assert f.read_record("i")[0].method == 5
    assert np.array_equal(spec_planes.read_file(data)["i"], x["i"])


@settings(max_examples=60, deadline=None)
@given(
    array=st.one_of(
        *(
            hnp.arrays(d, hnp.array_shapes(min_dims=0, max_dims=3, max_side=20))
            for d in FLOAT_DTYPES + INT_DTYPES
        )
    ),
    chunk=st.integers(1, 300),
    threads=st.integers(1, 3),
)
def test_plane_round_trip_is_bit_exact(array: np.ndarray, chunk: int, threads: int) -> None:
    rotate = array.dtype.kind == "f"
    coded = encode_planes(array, rotate_sign=rotate, chunk=chunk, threads=threads)
    back = decode_planes(
        coded.payload,
        array.shape,
        array.dtype,
        coded.chunk,
        coded.entry_points,
        rotate_sign=rotate,
        threads=threads,
    )
    assert back.shape == array.shape
    assert _bits(back).tobytes() == _bits(array).tobytes()


def test_thread_count_never_changes_the_bytes() -> None:
    rng = np.random.default_rng(7)
    x = {
        "w": rng.laplace(0, 0.05, (120, 80)).astype(np.float32),
        "e": rng.normal(0, 1, (64, 33)).astype(np.float16),
        "b": rng.normal(0, 0.1, 500).astype(np.float32),
    }
    settings = (
        {"lossless": True},
        {"qp": -28},
        {"qp": -20, "trellis": True, "rdo_lambda": 0.1},
        {"qp": -28, "effort": 3},
    )
    for setting in settings:
        files = {
            nnsqueeze.compress(x, options=CompressOptions(chunk_elements=64, threads=t, **setting)).data
            for t in (1, 2, 3)
        }
        assert len(files) == 1, setting


def test_chunked_and_single_stream_lossy_files_decode_to_the_same_values() -> None:
    rng = np.random.default_rng(8)
    x = {"w": rng.laplace(0, 0.05, (200, 64)).astype(np.float32)}
    single = nnsqueeze.compress(x, None, qp=-28, threads=1).data
    chunked = nnsqueeze.compress(x, options=CompressOptions(qp=-28, chunk_elements=640, threads=1)).data
    with nnsqueeze.NnsqFile(chunked) as f:
        header = f.read_record("w")[0]
    assert header.chunk == 10
    assert len(header.entry_points) == 20
    assert single != chunked
    for threads in (1, 2):
        assert np.array_equal(
            nnsqueeze.decompress(single, threads=threads)["w"],
            nnsqueeze.decompress(chunked, threads=threads)["w"],
        )


# --- malformed payloads: hand-built violations of the spec, each refused with BitstreamError ---


def _one_chunk(plane_bytes: bytes, count: int, dtype: str = "uint8") -> np.ndarray:
    return decode_planes(
        plane_bytes, (count,), np.dtype(dtype), count, (len(plane_bytes),), rotate_sign=False
    )


_rans_plane = spec_planes.rans_plane


def test_a_hand_built_stream_that_ends_in_the_wrong_state_is_refused() -> None:
    # From states 2^15 with two symbols of 2048 slots, slot 0 gives symbol 10 and x = 2048 * 8 = 2^14,
    # so a word is read: the states end at 2^30, not 2^15, and the stream is corrupt.
    states = (1 << 15).to_bytes(4, "little") * 4
    plane = _rans_plane({10: 2048, 200: 2048}, states + b"\x00\x00" * 4)
    with pytest.raises(spec_planes.SpecViolation):
        spec_planes.decode_chunk(plane, 4, 1, is_float=False)
    with pytest.raises(BitstreamError):
        _one_chunk(plane, 4)


@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_library_decodes_streams_built_by_the_spec_encoder(data: st.DataObject) -> None:
    alphabet = sorted(data.draw(st.lists(st.integers(0, 255), min_size=2, max_size=12, unique=True)))
    cuts = sorted(
        data.draw(
            st.lists(
                st.integers(1, 4095), min_size=len(alphabet) - 1, max_size=len(alphabet) - 1, unique=True
            )
        )
    )
    freqs = {s: b - a for s, a, b in zip(alphabet, [0, *cuts], [*cuts, 4096], strict=True)}
    symbols = data.draw(st.lists(st.sampled_from(alphabet), min_size=1, max_size=400))
    plane = _rans_plane(freqs, spec_planes.encode_rans(symbols, freqs))
    assert spec_planes.decode_chunk(plane, len(symbols), 1, is_float=False) == symbols
    assert _one_chunk(plane, len(symbols)).tolist() == symbols


@pytest.mark.parametrize(
    ("payload", "count", "why"),
    [
        (b"\x03" + b"\x00" * 8, 8, "unknown mode"),
        (b"\x00" + b"\x00" * 7, 8, "raw plane too short"),
        (b"\x00" + b"\x00" * 9, 8, "trailing bytes"),
        (b"\x01", 8, "constant without its byte"),
        (_rans_plane({1: 2048, 2: 2047}, b"\x00" * 16), 4, "frequencies sum to 4095"),
        (_rans_plane({1: 4096}, b"\x00" * 16), 4, "one frequency of 4096"),
        (_rans_plane({1: 2048, 2: 2048}, (1 << 31).to_bytes(4, "little") * 4), 4, "state out of range"),
        (_rans_plane({1: 2048, 2: 2048}, b"\x00\x80\x00\x00" * 4 + b"\x00"), 4, "odd stream length"),
        (_rans_plane({1: 2048, 2: 2048}, b"\x00\x80\x00\x00" * 4), 4, "stream ends early"),
    ],
)
def test_malformed_plane_payloads_are_refused(payload: bytes, count: int, why: str) -> None:
    with pytest.raises(BitstreamError):
        _one_chunk(payload, count)
    with pytest.raises(spec_planes.SpecViolation):
        spec_planes.decode_chunk(payload, count, 1, is_float=False)


def test_entry_points_must_cover_the_payload() -> None:
    coded = encode_planes(np.arange(100, dtype=np.float32), rotate_sign=True, chunk=30)
    assert len(coded.entry_points) == 4
    bad = (
        coded.entry_points[:-1],  # too few chunks
        (*coded.entry_points, 0),  # too many
        (coded.entry_points[0] + 1, *coded.entry_points[1:]),  # lengths past the payload
        (coded.entry_points[0] - 1, *coded.entry_points[1:]),  # lengths short of the payload
    )
    for points in bad:
        with pytest.raises(BitstreamError):
            decode_planes(coded.payload, (100,), np.dtype(np.float32), 30, points, rotate_sign=True)


def test_element_count_is_bounded_by_the_payload_before_allocating() -> None:
    with pytest.raises(BitstreamError, match="cannot come from"):
        decode_planes(b"\x01\x00" * 4, (1 << 40,), np.dtype(np.float32), 1 << 18, (8,), rotate_sign=True)
