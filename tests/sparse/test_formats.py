"""Formats against their definitions: the seed's example, round trips, storage, op counts, bad arrays."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nnsqueeze.errors import NnsqueezeError, TensorError
from nnsqueeze.sparse import CER, CSER, CSR, FORMATS, Dense, FormatError, PackedCodebook
from nnsqueeze.sparse.packed import pack, unpack
from tests.sparse import reference as ref

# The seed's 5 x 10 matrix (Samek's slides; Wiedemann et al. 2019).
SEED = np.array(
    [
        [0, 4, 0, 0, 0, 4, 0, 4, 0, 0],
        [0, 2, 4, 0, 0, 4, 2, 0, 2, 0],
        [2, 2, 0, 0, 0, 0, 0, 2, 0, 0],
        [0, 0, 4, 4, 0, 0, 0, 4, 0, 4],
        [4, 0, 0, 0, 2, 0, 0, 4, 2, 2],
    ],
    dtype=np.float32,
)


def random_matrix(
    rng: np.random.Generator, m: int, n: int, k: int, p0: float, omega0: float = 0.0
) -> np.ndarray:
    """k distinct values (one of them omega0 with probability p0, the rest uniform)."""
    others = rng.choice(np.arange(1, 4 * k + 8), size=max(k - 1, 1), replace=False).astype(np.float32) / 8
    w = rng.choice(others, size=(m, n)).astype(np.float32)
    w[rng.random((m, n)) < p0] = omega0
    return w


class TestSeedExample:
    def test_csr_matches_the_slide(self) -> None:
        f = CSR.from_dense(SEED)
        assert f.values.tolist() == [4, 4, 4, 2, 4, 4, 2, 2, 2, 2, 2, 4, 4, 4, 4, 4, 2, 4, 2, 2]
        assert f.col_idx.tolist() == [1, 5, 7, 1, 2, 5, 6, 8, 0, 1, 7, 2, 3, 7, 9, 0, 4, 7, 8, 9]
        assert f.row_ptr.tolist() == [0, 3, 8, 11, 15, 20]

    def test_shared_elements_match_the_slide(self) -> None:
        f = CSER.from_dense(SEED)
        assert f.values.tolist() == [4, 2]
        assert f.col_idx.tolist() == [1, 5, 7, 2, 5, 1, 6, 8, 0, 1, 7, 2, 3, 7, 9, 0, 7, 4, 8, 9]
        assert f.value_idx.tolist() == [0, 0, 1, 1, 0, 0, 1]
        assert f.group_ptr.tolist() == [0, 3, 5, 8, 11, 15, 17, 20]
        assert f.row_ptr.tolist() == [0, 1, 3, 4, 5, 7]
        assert f.omega0 == 0.0

    def test_cer_pads_the_row_without_a_four(self) -> None:
        f = CER.from_dense(SEED)
        assert f.omega.tolist() == [0, 4, 2]
        assert f.col_idx.tolist() == CSER.from_dense(SEED).col_idx.tolist()
        assert f.group_ptr.tolist() == [0, 3, 5, 8, 8, 11, 15, 17, 20]
        assert f.row_ptr.tolist() == [0, 1, 3, 5, 6, 8]

    def test_op_counts_of_the_talk(self) -> None:
        # loads / mults / adds / writes as in the research note (70 / 71 / 76 loads; 20 / 8 / 7 mults)
        assert tuple(vars(CSR.from_dense(SEED).op_counts()).values()) == (70, 15, 20, 5)
        assert tuple(vars(CER.from_dense(SEED).op_counts()).values()) == (71, 15, 8, 5)
        assert tuple(vars(CSER.from_dense(SEED).op_counts()).values()) == (76, 15, 7, 5)

    def test_entry_counts(self) -> None:
        # 46 CSR entries, 38 CER entries, 43 CSER entries with the talk's W = [4, 2]
        c = CSR.from_dense(SEED)
        assert c.values.size + c.col_idx.size + c.row_ptr.size == 46
        e = CER.from_dense(SEED)
        assert e.omega.size + e.col_idx.size + e.group_ptr.size + e.row_ptr.size == 38
        s = CSER.from_dense(SEED)
        assert sum(a.size for a in s.arrays().values()) == 43

    def test_talk_row_with_six_fours(self) -> None:
        # second row of the 5 x 12 example: 4 at six columns -> CSR 20 loads / 6 mults, CER 17 / 1
        w = np.zeros((1, 12), np.float32)
        w[0, [0, 1, 5, 8, 9, 11]] = 4
        assert tuple(vars(CSR.from_dense(w).op_counts()).values()) == (20, 5, 6, 1)
        assert tuple(vars(CER.from_dense(w).op_counts()).values()) == (17, 5, 1, 1)
        assert tuple(vars(Dense.from_dense(np.full((1, 12), 4, np.float32)).op_counts()).values()) == (
            24,
            11,
            12,
            1,
        )


# ----------------------------------------------------------------------------------- properties

shapes = st.tuples(st.integers(0, 37), st.integers(0, 70))


@st.composite
def matrices(draw: st.DrawFn) -> np.ndarray:
    m, n = draw(shapes)
    k = draw(st.integers(1, 40))
    p0 = draw(st.sampled_from([0.0, 0.3, 0.7, 0.95, 1.0]))
    omega0 = draw(st.sampled_from([0.0, 0.0, 0.5]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    w = random_matrix(rng, m, n, k, p0, omega0)
    if m and draw(st.booleans()):
        w[draw(st.integers(0, m - 1))] = 0  # an empty row
    return w


@settings(max_examples=60, deadline=None)
@given(w=matrices(), name=st.sampled_from(sorted(FORMATS)))
def test_round_trip_and_reference_arrays(w: np.ndarray, name: str) -> None:
    try:
        f = FORMATS[name].from_dense(w)
    except TensorError:
        assert name == "packed"
        assert np.unique(w).size > 256
        return
    assert f.shape == w.shape
    np.testing.assert_array_equal(f.to_dense(), w)
    if isinstance(f, CSR):
        values, cols, ptr = ref.csr(w)
        assert (f.values.tolist(), f.col_idx.tolist(), f.row_ptr.tolist()) == (values, cols, ptr)
        np.testing.assert_array_equal(ref.dense_from_csr(w.shape, f.row_ptr, f.col_idx, f.values), w)
        assert tuple(vars(f.op_counts()).values()) == _reorder(ref.csr_counts(f.row_ptr))
    elif isinstance(f, CER):
        omega, cols, gptr, rptr = ref.cer(w)
        assert f.omega.tolist() == omega
        assert (f.col_idx.tolist(), f.group_ptr.tolist(), f.row_ptr.tolist()) == (cols, gptr, rptr)
        np.testing.assert_array_equal(
            ref.dense_from_cer(w.shape, f.omega, f.row_ptr, f.group_ptr, f.col_idx), w
        )
        if f.omega[0] == 0:
            assert tuple(vars(f.op_counts()).values()) == _reorder(
                ref.grouped_counts(f.row_ptr, f.group_ptr, False)
            )
    elif isinstance(f, CSER):
        values, cols, vidx, gptr, rptr, omega0 = ref.cser(w)
        assert f.values.tolist() == values
        assert f.omega0 == omega0
        assert (f.col_idx.tolist(), f.value_idx.tolist(), f.group_ptr.tolist(), f.row_ptr.tolist()) == (
            cols,
            vidx,
            gptr,
            rptr,
        )
        if f.omega0 == 0:
            assert tuple(vars(f.op_counts()).values()) == _reorder(
                ref.grouped_counts(f.row_ptr, f.group_ptr, True)
            )
    elif isinstance(f, PackedCodebook):
        np.testing.assert_array_equal(ref.dense_from_packed(w.shape, f.bits, f.data, f.table), w)
        assert f.bits == next(b for b in (2, 3, 4, 8) if np.unique(w).size <= 1 << b) or w.size == 0


def _reorder(c: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    loads, adds, mults, writes = c
    return loads, adds, mults, writes


@settings(max_examples=40, deadline=None)
@given(
    shape=shapes,
    levels=st.integers(1, 300),
    p0=st.sampled_from([0.0, 0.5, 0.9]),
    step=st.sampled_from([2.0**-7, 0.013, 1.0]),
    offset=st.sampled_from([0, 3]),
    seed=st.integers(0, 2**32 - 1),
    name=st.sampled_from(sorted(FORMATS)),
)
def test_from_levels_is_the_codec_reconstruction(
    shape: tuple[int, int], levels: int, p0: float, step: float, offset: int, seed: int, name: str
) -> None:
    rng = np.random.default_rng(seed)
    lv = rng.integers(-levels, levels + 1, shape)
    lv[rng.random(shape) < p0] = 0
    expected = ((lv + offset).astype(np.float64) * step).astype(np.float32)
    try:
        f = FORMATS[name].from_levels(lv, step, offset)
    except TensorError:
        assert name == "packed"
        assert np.unique(lv).size > 256
        return
    np.testing.assert_array_equal(f.to_dense(), expected)
    np.testing.assert_array_equal(f.to_dense(), FORMATS[name].from_dense(expected).to_dense())


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
@pytest.mark.parametrize("shape", [(1, 1), (15, 7), (16, 8), (17, 9), (33, 70)])
def test_pack_layout(bits: int, shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(bits)
    codes = rng.integers(0, 1 << bits, shape).astype(np.uint8)
    data = pack(codes, bits)
    np.testing.assert_array_equal(unpack(data, shape, bits), codes)
    got = [[ref.packed_index(data, shape, bits, r, c) for c in range(shape[1])] for r in range(shape[0])]
    np.testing.assert_array_equal(np.array(got, np.uint8).reshape(shape), codes)


@pytest.mark.parametrize(
    ("index_dtype", "n"), [(None, 200), (None, 300), (None, 70000), (np.uint32, 10), (np.uint16, 10)]
)
def test_narrowest_index_dtypes(index_dtype: object, n: int) -> None:
    w = np.zeros((3, n), np.float32)
    w[:, [0, n - 1]] = [1, 2]
    for cls in (CSR, CER, CSER):
        f = cls.from_dense(w, index_dtype=index_dtype)
        want = (
            np.dtype(index_dtype)
            if index_dtype
            else np.dtype(np.uint8 if n <= 256 else np.uint16 if n <= 65536 else np.uint32)
        )
        assert f.col_idx.dtype == want
        assert f.row_ptr.dtype == (np.dtype(index_dtype) if index_dtype else np.dtype(np.uint8))
        np.testing.assert_array_equal(f.to_dense(), w)


def test_storage_bytes_are_exact() -> None:
    rng = np.random.default_rng(0)
    w = random_matrix(rng, 64, 300, 7, 0.7)
    c, e, s = CSR.from_dense(w), CER.from_dense(w), CSER.from_dense(w)
    nnz = int((w != 0).sum())
    assert c.nbytes == 4 * nnz + 2 * nnz + 2 * 65  # float32 values, uint16 columns and pointers
    assert e.nbytes == 4 * e.omega.size + 2 * nnz + 2 * (e.groups + 1) + 2 * 65
    assert s.nbytes == 4 * s.values.size + 2 * nnz + s.groups + 2 * (s.groups + 1) + 2 * 65
    p = PackedCodebook.from_dense(w)
    assert p.bits == 3
    assert p.nbytes == 4 * 38 * 48 + 4 * 7
    assert Dense.from_dense(w).nbytes == w.nbytes
    wide = CSR.from_dense(w, index_dtype=np.uint32).nbytes
    assert e.nbytes <= 0.6 * wide
    assert s.nbytes <= 0.6 * wide


def test_dense_quantized_matrix_uses_a_nonzero_omega0() -> None:
    rng = np.random.default_rng(1)
    w = random_matrix(rng, 20, 40, 5, 0.6, omega0=0.5)
    e, s = CER.from_dense(w), CSER.from_dense(w)
    assert e.omega[0] == 0.5
    assert s.omega0 == 0.5
    assert s.scalars() == {"omega0": 0.5}
    assert (w != 0.5).sum() == e.nnz == s.nnz
    np.testing.assert_array_equal(e.to_dense(), w)
    x = rng.standard_normal(40).astype(np.float32)
    np.testing.assert_allclose(e.matvec(x), ref.matmul(w, x), rtol=1e-5, atol=1e-4)


def test_from_dense_checks_its_input() -> None:
    with pytest.raises(TensorError, match="2-D"):
        CSR.from_dense(np.zeros(3, np.float32))
    with pytest.raises(TensorError, match="NaN or Inf"):
        CER.from_dense(np.array([[np.nan]], np.float32))
    with pytest.raises(TensorError, match="not exactly representable"):
        CSER.from_dense(np.array([[0.1]], np.float64))
    assert CSR.from_dense(np.array([[0.5]], np.float64)).values.tolist() == [0.5]
    with pytest.raises(TensorError, match="at most 256"):
        PackedCodebook.from_dense(np.arange(300, dtype=np.float32).reshape(3, 100))
    with pytest.raises(TensorError, match="do not fit 2-bit"):
        PackedCodebook.from_dense(np.arange(6, dtype=np.float32).reshape(2, 3), bits=2)


# ------------------------------------------------------------------------------- malformed arrays


def _csr_args() -> dict[str, object]:
    f = CSR.from_dense(SEED)
    return {
        "shape": f.shape,
        "row_ptr": f.row_ptr.copy(),
        "col_idx": f.col_idx.copy(),
        "values": f.values.copy(),
    }


def _cser_args() -> dict[str, object]:
    f = CSER.from_dense(SEED)
    return {
        "shape": f.shape,
        "values": f.values.copy(),
        "row_ptr": f.row_ptr.copy(),
        "group_ptr": f.group_ptr.copy(),
        "value_idx": f.value_idx.copy(),
        "col_idx": f.col_idx.copy(),
    }


def _cer_args() -> dict[str, object]:
    f = CER.from_dense(SEED)
    return {
        "shape": f.shape,
        "omega": f.omega.copy(),
        "row_ptr": f.row_ptr.copy(),
        "group_ptr": f.group_ptr.copy(),
        "col_idx": f.col_idx.copy(),
    }


def _set(a: dict[str, object], key: str, index: int, value: int) -> dict[str, object]:
    arr = np.array(a[key])
    arr[index] = value
    return {**a, key: arr}


BAD = [
    (CSR, lambda a: _set(a, "row_ptr", 2, 2), "decreases"),
    (CSR, lambda a: _set(a, "row_ptr", 5, 19), r"row_ptr\[-1\] = 19"),
    (CSR, lambda a: _set(a, "row_ptr", 0, 1), r"row_ptr\[0\] must be 0"),
    (CSR, lambda a: _set(a, "col_idx", 4, 10), "out of range for 10 columns"),
    (CSR, lambda a: _set(a, "col_idx", 1, 1), "ascending"),
    (CSR, lambda a: {**a, "col_idx": np.array(a["col_idx"]).astype(np.int64)}, "must have dtype"),
    (CSR, lambda a: {**a, "values": np.array(a["values"])[:-1]}, "values has 19 entries"),
    (CSR, lambda a: {**a, "values": np.array(a["values"]).astype(np.float64)}, "float32"),
    (CSR, lambda a: {**a, "row_ptr": np.array(a["row_ptr"])[:-1]}, "row_ptr has 5 entries"),
    (CSR, lambda a: {**a, "shape": (5, -1)}, "non-negative"),
    (CER, lambda a: _set(a, "group_ptr", 3, 9), "decreases"),
    (CER, lambda a: _set(a, "row_ptr", 5, 7), r"row_ptr\[-1\] = 7"),
    (CER, lambda a: {**a, "omega": np.array([0.0, 4.0], np.float32)}, "groups but omega holds only 1"),
    (CER, lambda a: {**a, "omega": np.zeros(0, np.float32)}, "empty"),
    (CER, lambda a: {**a, "group_ptr": np.array(a["group_ptr"]).astype(np.uint16)}, "dtype of row_ptr"),
    (CER, lambda a: _set(a, "col_idx", 5, 2), "two groups of one row"),
    (CSER, lambda a: _set(a, "value_idx", 3, 2), "out of range for 2 values"),
    (CSER, lambda a: {**a, "value_idx": np.array(a["value_idx"])[:-1]}, "value_idx has 6 entries"),
    (CSER, lambda a: {**a, "value_idx": np.array(a["value_idx"]).astype(np.uint32)}, "uint8, uint16"),
    (CSER, lambda a: _set(a, "group_ptr", 7, 21), r"group_ptr\[-1\] = 21"),
]


@pytest.mark.parametrize(("cls", "corrupt", "message"), BAD)
def test_malformed_arrays_are_rejected(cls: type, corrupt: object, message: str) -> None:
    base = {CSR: _csr_args, CER: _cer_args, CSER: _cser_args}[cls]()
    args = corrupt(base)  # type: ignore[operator]
    with pytest.raises(FormatError, match=message) as info:
        cls(**args)
    assert isinstance(info.value, (NnsqueezeError, ValueError))


def test_malformed_packed_arrays_are_rejected() -> None:
    p = PackedCodebook.from_dense(SEED)
    with pytest.raises(FormatError, match="needs 48"):
        PackedCodebook(p.shape, p.bits, p.data[:-1], p.table)
    with pytest.raises(FormatError, match="bits must be one of"):
        PackedCodebook(p.shape, 5, p.data, p.table)
    with pytest.raises(FormatError, match="1 to 4 values"):
        PackedCodebook(p.shape, p.bits, p.data, np.zeros(5, np.float32))
    with pytest.raises(FormatError, match="out of range for a table of 2"):
        PackedCodebook(p.shape, p.bits, p.data, p.table[:2])
    with pytest.raises(FormatError, match="NaN or Inf"):
        PackedCodebook(p.shape, p.bits, p.data, np.array([0, np.inf, 1], np.float32))


def test_arrays_are_read_only_views() -> None:
    f = CSR.from_dense(SEED)
    with pytest.raises(ValueError, match="read-only"):
        f.values[0] = 1


def test_read_levels_matches_the_decoder() -> None:
    import nnsqueeze
    from nnsqueeze.sparse import read_levels

    rng = np.random.default_rng(2)
    weights = {
        "conv": rng.normal(0, 0.1, (4, 3, 3, 3)).astype(np.float32),
        "fc": rng.laplace(0, 0.05, (20, 30)).astype(np.float32),
        "bias": rng.normal(0, 0.1, 20).astype(np.float32),
        "ints": np.arange(6).reshape(2, 3),
        "empty": np.zeros((0, 3), np.float32),
    }
    data = nnsqueeze.compress(weights, qp=-20).data
    decoded = nnsqueeze.decompress(data)
    with nnsqueeze.NnsqFile(data) as f:
        assert read_levels(f, "ints") is None  # integer coding: not level * step
        for name in ("conv", "fc", "bias", "empty"):
            lv = read_levels(f, name)
            assert lv is not None
            want = decoded[name].reshape(lv.levels.shape)
            for cls in FORMATS.values():
                np.testing.assert_array_equal(cls.from_levels(*lv).to_dense(), want)
        with pytest.raises(KeyError, match="no tensor"):
            read_levels(f, "missing")


def test_read_levels_of_a_chunked_tensor() -> None:
    """A tensor coded in chunks of rows (entry points) reads as one level matrix."""
    import nnsqueeze
    from nnsqueeze.sparse import read_levels

    w = np.random.default_rng(3).laplace(0, 0.05, (50, 12)).astype(np.float32)
    opts = nnsqueeze.CompressOptions(qp=-20, chunk_elements=100)
    data = nnsqueeze.compress({"fc": w}, options=opts).data
    assert data is not None
    with nnsqueeze.NnsqFile(data) as f:
        assert len(f.header("fc").entry_points) == 7  # 8 rows a chunk
        lv = read_levels(f, "fc")
        assert lv is not None
        np.testing.assert_array_equal(lv.levels, np.rint(w / lv.step).astype(np.int32))
        np.testing.assert_array_equal(CSR.from_levels(*lv).to_dense(), f.read("fc"))
