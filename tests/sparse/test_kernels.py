"""The C++ kernels against the float64 oracle, on every instruction-set path the CPU runs (the
portable one always), and their bounds checks."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nnsqueeze import _core
from nnsqueeze.errors import ConfigError, TensorError
from nnsqueeze.sparse import CER, CSER, CSR, FORMATS, Dense, FormatError, PackedCodebook
from nnsqueeze.sparse import isa as sparse_isa
from tests.sparse import reference as ref
from tests.sparse.test_formats import SEED, random_matrix

ISAS = sparse_isa.available()  # every path this CPU runs; scalar always


@pytest.fixture(params=ISAS)
def isa(request: pytest.FixtureRequest) -> Iterator[str]:
    before = sparse_isa.active()
    sparse_isa.force(request.param)
    yield request.param
    sparse_isa.force(before)


@contextmanager
def forced(name: str) -> Iterator[None]:
    before = sparse_isa.active()
    sparse_isa.force(name)
    try:
        yield
    finally:
        sparse_isa.force(before)


def check_product(f: object, w: np.ndarray, batch: int, rng: np.random.Generator, threads: int = 1) -> None:
    assert hasattr(f, "matmul")
    x = rng.standard_normal((batch, w.shape[1])).astype(np.float32)
    bias = rng.standard_normal(w.shape[0]).astype(np.float32)
    got = f.matmul(x, bias, threads=threads)
    want = ref.matmul(w, x, bias)
    scale = np.abs(x).sum(axis=1, keepdims=True) * max(float(np.abs(w).max(initial=0)), 1) + 1
    assert got.shape == want.shape
    assert got.dtype == np.float32
    assert np.all(np.abs(got - want) <= 1e-5 * scale), np.abs(got - want).max()


@pytest.mark.parametrize("batch", [1, 2, 7, 16, 17, 33, 64, 65, 130])
@pytest.mark.parametrize("name", sorted(FORMATS))
def test_products_match_the_oracle(isa: str, name: str, batch: int) -> None:
    rng = np.random.default_rng(batch)
    for m, n, k, p0 in [
        (37, 300, 7, 0.5),
        (5, 10, 3, 0.6),
        (40, 17, 16, 0.0),
        (19, 1, 2, 0.5),
        (64, 129, 200, 0.9),
    ]:
        w = random_matrix(rng, m, n, k, p0)
        try:
            f = FORMATS[name].from_dense(w)
        except TensorError:
            continue
        check_product(f, w, batch, rng)


@pytest.mark.parametrize("batch", [1, 5, 70])
@pytest.mark.parametrize("name", sorted(n for n, c in FORMATS.items() if c.kernel_spec is not None))
def test_kernels_accumulate_into_out(isa: str, name: str, batch: int) -> None:
    """``accumulate=True`` adds the product (and bias) to what ``out`` holds."""
    rng = np.random.default_rng(batch)
    for m, n, k, p0, omega0 in [(37, 300, 7, 0.5, 0.0), (40, 17, 200, 0.0, 0.0), (21, 33, 5, 0.4, 0.25)]:
        w = random_matrix(rng, m, n, k, p0, omega0)
        try:
            f = FORMATS[name].from_dense(w)
        except TensorError:
            continue
        x = rng.standard_normal((batch, n)).astype(np.float32)
        bias = rng.standard_normal(m).astype(np.float32)
        start = rng.standard_normal((batch, m)).astype(np.float32)
        out = start.copy()
        f.kernel.matmul(x, out, bias, accumulate=True)
        want = start + ref.matmul(w, x, bias)
        np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-4 * (np.abs(x).sum(axis=1).max() + 1))


@settings(max_examples=40, deadline=None)
@given(
    m=st.integers(0, 40),
    n=st.integers(0, 80),
    k=st.integers(1, 40),
    p0=st.sampled_from([0.0, 0.5, 0.9, 1.0]),
    omega0=st.sampled_from([0.0, 0.25]),
    batch=st.sampled_from([1, 3, 16, 24, 25, 66]),
    index_dtype=st.sampled_from([None, np.uint32]),
    seed=st.integers(0, 2**32 - 1),
)
def test_random_products(
    m: int, n: int, k: int, p0: float, omega0: float, batch: int, index_dtype: object, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    w = random_matrix(rng, m, n, k, p0, omega0)
    for path in ISAS:
        with forced(path):
            for name, cls in FORMATS.items():
                options = {"index_dtype": index_dtype} if name in ("csr", "cer", "cser") else {}
                try:
                    f = cls.from_dense(w, **options)
                except TensorError:
                    continue
                check_product(f, w, batch, rng)


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
def test_packed_bit_widths(isa: str, bits: int) -> None:
    rng = np.random.default_rng(bits)
    for shape in [(1, 1), (15, 9), (16, 16), (17, 31), (50, 333)]:
        table = rng.standard_normal(1 << bits).astype(np.float32)  # not a grid: table lookups
        codes = rng.integers(0, 1 << bits, shape).astype(np.uint8)
        w = table[codes]
        f = PackedCodebook.from_dense(w, bits=bits)
        assert f.bits == bits
        assert f.plan is None
        for batch in (1, 5, 24, 40):
            check_product(f, w, batch, rng)


def test_affine_decoding_with_corrections(isa: str) -> None:
    rng = np.random.default_rng(3)
    levels = rng.integers(-100, 101, (70, 90))
    levels[3, 5], levels[60, 1], levels[10, 89] = 1013, -400, 200  # outside int8: corrected
    step = 0.0123
    f = PackedCodebook.from_levels(levels, step)
    assert f.bits == 8
    assert f.plan is not None
    assert f.plan.corr_values.size == 3
    assert f.plan.scale == pytest.approx(step)
    w = ((levels.astype(np.float64)) * step).astype(np.float32)
    np.testing.assert_array_equal(f.to_dense(), w)
    for batch in (1, 3, 30, 70):
        check_product(f, w, batch, rng)
    g = PackedCodebook.from_levels(levels, step, 5)  # a level offset: value = (level + 5) * step
    check_product(g, ((levels + 5).astype(np.float64) * step).astype(np.float32), 4, rng)


@pytest.mark.parametrize("case", ["grid", "gap", "outlier"])
def test_affine_decoding_of_4_bit_indices(isa: str, case: str) -> None:
    """9 to 16 levels: 4-bit indices decoded as offset + scale * index (a level missing from the grid
    leaves an index unused; a level beyond 16 steps of the lowest takes a free index, corrected)."""
    rng = np.random.default_rng(4)
    levels = rng.integers(-6, 7, (45, 77))  # 13 levels
    if case == "gap":
        levels[levels == 2] = 3
    if case == "outlier":
        levels[7, 3] = 40
    step = 0.0371
    f = PackedCodebook.from_levels(levels, step)
    assert f.bits == 4
    assert f.plan is not None
    assert f.plan.corr_values.size == (case == "outlier")
    assert f.plan.scale == pytest.approx(step)
    w = (levels.astype(np.float64) * step).astype(np.float32)
    np.testing.assert_array_equal(f.to_dense(), w)
    for batch in (1, 2, 17, 64):
        check_product(f, w, batch, rng)


def test_threads_give_the_same_result(isa: str) -> None:
    rng = np.random.default_rng(5)
    w = random_matrix(rng, 300, 700, 9, 0.6)
    x = rng.standard_normal((20, 700)).astype(np.float32)
    for name, cls in FORMATS.items():
        f = cls.from_dense(w)
        np.testing.assert_allclose(f.matmul(x, threads=3), f.matmul(x), rtol=1e-6, atol=1e-5, err_msg=name)


def test_inputs_are_checked() -> None:
    f = CSR.from_dense(SEED)
    with pytest.raises(TensorError, match="float32"):
        f.matmul(np.ones(10))
    with pytest.raises(TensorError, match=r"shape \(10,\)"):
        f.matmul(np.ones(9, np.float32))
    with pytest.raises(TensorError, match="bias"):
        f.matmul(np.ones(10, np.float32), np.ones(4, np.float32))
    with pytest.raises(TensorError, match="vector"):
        f.matvec(np.ones((2, 10), np.float32))
    assert f.matvec(np.ones(10, np.float32)).shape == (5,)
    strided = np.ones((3, 20), np.float32)[:, ::2]
    np.testing.assert_allclose(f.matmul(strided), np.ones((3, 10)) @ SEED.T)
    np.testing.assert_allclose(
        Dense.from_dense(SEED).matmul(np.ones((2, 10), np.float32)), np.ones((2, 10)) @ SEED.T
    )


# ------------------------------------------------------------------- kernels on malformed arrays
# The Python classes refuse malformed arrays; the kernels (which the torch operators call with
# arbitrary tensors) must refuse them too, and never read outside the arrays.


def _x(n: int, batch: int = 1) -> tuple[np.ndarray, np.ndarray]:
    return np.ones((batch, n), np.float32), np.empty((batch, 5), np.float32)


@pytest.mark.parametrize("batch", [1, 4])
def test_kernels_reject_bad_csr(isa: str, batch: int) -> None:
    f = CSR.from_dense(SEED)
    rp, ci, v = np.array(f.row_ptr), np.array(f.col_idx), np.array(f.values)
    x, out = _x(10, batch)
    cases = [
        (np.array([0, 3, 2, 11, 15, 20], np.uint8), ci, v, "less than the entry before"),
        (np.array([0, 3, 8, 11, 15, 21], np.uint8), ci, v, "past the end"),
        (rp, np.where(np.arange(20) == 7, 10, ci).astype(np.uint8), v, "out of range for 10 columns"),
        (rp, np.where(np.arange(20) == 19, 255, ci).astype(np.uint8), v, "out of range for 10 columns"),
    ]
    for row_ptr, col_idx, values, message in cases:
        with pytest.raises(_core.CoreFormatError, match=message):
            _core.csr_kernel(5, 10, row_ptr, col_idx, values).matmul(x, out)
    with pytest.raises(_core.CoreFormatError, match="values has 19"):
        _core.csr_kernel(5, 10, rp, ci, v[:-1])
    with pytest.raises(_core.CoreFormatError, match="uint8, uint16 or uint32"):
        _core.csr_kernel(5, 10, rp.astype(np.int32), ci, v)


@pytest.mark.parametrize("batch", [1, 4])
def test_kernels_reject_bad_cer_and_cser(isa: str, batch: int) -> None:
    e = CER.from_dense(SEED)
    rp, gp, ci, om = (np.array(a) for a in (e.row_ptr, e.group_ptr, e.col_idx, e.omega))
    x, out = _x(10, batch)
    bad_gp = gp.copy()
    bad_gp[3] = 30
    with pytest.raises(_core.CoreFormatError, match="group_ptr"):
        _core.cer_kernel(5, 10, rp, bad_gp, ci, om).matmul(x, out)
    with pytest.raises(_core.CoreFormatError, match="more groups"):
        _core.cer_kernel(5, 10, rp, gp, ci, om[:2]).matmul(x, out)
    with pytest.raises(_core.CoreFormatError, match="omega is empty"):
        _core.cer_kernel(5, 10, rp, gp, ci, om[:0]).matmul(x, out)
    with pytest.raises(_core.CoreFormatError, match=r"dtype of row_ptr"):
        _core.cer_kernel(5, 10, rp, gp.astype(np.uint16), ci, om)
    s = CSER.from_dense(SEED)
    args = [np.array(a) for a in (s.row_ptr, s.group_ptr, s.value_idx, s.col_idx, s.values)]
    bad_vi = args[2].copy()
    bad_vi[4] = 2
    with pytest.raises(_core.CoreFormatError, match="value_idx"):
        _core.cser_kernel(5, 10, args[0], args[1], bad_vi, args[3], args[4], 0.0).matmul(x, out)
    bad_ci = args[3].copy()
    bad_ci[-1] = 200
    with pytest.raises(_core.CoreFormatError, match="col_idx"):
        _core.cser_kernel(5, 10, args[0], args[1], args[2], bad_ci, args[4], 0.0).matmul(x, out)


def packed(data: np.ndarray, table: np.ndarray, bits: int) -> _core.Kernel:
    """The 5 x 10 packed kernel without affine decoding."""
    none_u32, none_f32 = np.zeros(0, np.uint32), np.zeros(0, np.float32)
    return _core.packed_kernel(5, 10, data, table, none_u32, none_u32, none_f32, bits, False, 1.0, 0.0)


def test_kernels_reject_bad_packed(isa: str) -> None:
    p = PackedCodebook.from_dense(SEED)
    x, out = _x(10)
    with pytest.raises(_core.CoreFormatError, match="needs 48"):
        packed(p.data[:-1], p.table, 2).matmul(x, out)
    with pytest.raises(_core.CoreFormatError, match="more entries"):
        packed(p.data, np.zeros(5, np.float32), 2).matmul(x, out)
    with pytest.raises(_core.CoreFormatError, match="2, 3, 4 or 8"):
        packed(p.data, p.table, 5).matmul(x, out)
    # indices beyond a short table read 0, never outside it
    packed(p.data, p.table[:1], 2).matmul(x, out)
    np.testing.assert_array_equal(out, np.zeros((1, 5)))
    levels = np.arange(40).reshape(1, 40) - 20
    levels[0, 0] = 300
    q = PackedCodebook.from_levels(levels, 1.0, bits=8)
    assert q.plan is not None
    assert q.plan.corr_values.size == 1
    x1, out1 = np.ones((1, 40), np.float32), np.empty((1, 1), np.float32)
    for rows, cols, message in [([1], [2], "corr_rows"), ([0], [40], "corr_cols")]:
        with pytest.raises(_core.CoreFormatError, match=message):
            _core.packed_kernel(
                1, 40, q.data, q.table, np.array(rows, np.uint32), np.array(cols, np.uint32),
                np.ones(1, np.float32), 8, True, 1.0, 0.0,
            ).matmul(x1, out1)  # fmt: skip


@settings(max_examples=150, deadline=None)
@given(
    data=st.data(),
    kind=st.sampled_from(["csr", "cer", "cser"]),
    dtype=st.sampled_from([np.uint8, np.uint16, np.uint32]),
    batch=st.sampled_from([1, 3]),
)
def test_fuzzed_arrays_never_crash(data: st.DataObject, kind: str, dtype: type, batch: int) -> None:
    """Random pointer and index arrays: the kernels compute or raise, whatever they hold."""
    m, n = data.draw(st.integers(1, 6)), data.draw(st.integers(1, 40))
    ints = st.integers(0, int(np.iinfo(dtype).max))
    arr = lambda size: np.array(data.draw(st.lists(ints, min_size=size, max_size=size)), dtype)  # noqa: E731
    nnz, groups = data.draw(st.integers(0, 40)), data.draw(st.integers(0, 12))
    x, out = np.ones((batch, n), np.float32), np.empty((batch, m), np.float32)
    for path in ISAS:
        with forced(path):
            try:
                if kind == "csr":
                    _core.csr_kernel(m, n, arr(m + 1), arr(nnz), np.ones(nnz, np.float32)).matmul(x, out)
                elif kind == "cer":
                    omega = np.ones(data.draw(st.integers(1, 5)), np.float32)
                    _core.cer_kernel(m, n, arr(m + 1), arr(groups + 1), arr(nnz), omega).matmul(x, out)
                else:
                    vi = np.array(
                        data.draw(st.lists(st.integers(0, 255), min_size=groups, max_size=groups)), np.uint8
                    )
                    _core.cser_kernel(
                        m, n, arr(m + 1), arr(groups + 1), vi, arr(nnz), np.ones(3, np.float32), 0.0
                    ).matmul(x, out)
            except ValueError:
                pass


def test_format_error_wraps_kernel_errors() -> None:
    f = CSR.from_dense(SEED)
    object.__setattr__(f, "col_idx", np.where(np.arange(20) == 3, 99, np.array(f.col_idx)).astype(np.uint8))
    with pytest.raises(FormatError, match="csr: col_idx"):
        f.matvec(np.ones(10, np.float32))


def test_the_environment_variable_forces_a_path() -> None:
    code = [sys.executable, "-c", "from nnsqueeze.sparse import isa; print(isa.active())"]
    for path in ISAS:
        env = {**os.environ, sparse_isa.ENVIRONMENT_VARIABLE: path}
        run = subprocess.run(code, env=env, capture_output=True, text=True, check=True)
        assert run.stdout.strip() == path
    env = {**os.environ, sparse_isa.ENVIRONMENT_VARIABLE: "neon9"}
    bad = subprocess.run(code, env=env, capture_output=True, text=True)
    assert bad.returncode != 0
    assert "NNSQUEEZE_SPARSE_ISA=neon9: unknown instruction-set path 'neon9'" in bad.stderr
    with pytest.raises(ConfigError, match="unknown instruction-set path"):
        sparse_isa.force("sse9")
