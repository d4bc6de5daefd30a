"""Tests of the codec pipeline: compress -> decompress round trips, options, errors, the level coder."""

from __future__ import annotations

import gc
import math
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import nnsqueeze
from nnsqueeze import CompressOptions, ConfigError, NnsqFile, TensorError
from nnsqueeze.coding import Adaptation, decode_levels, encode_levels
from nnsqueeze.coding.container import FORMAT_VERSION

MAX_LEVEL = 2**30 - 1
OPTS = CompressOptions()

# Relative rounding of a reconstructed value in each float dtype, on top of step / 2: the quantizer
# works on float32 (float64 inputs are rounded to float32 first), float16 / bfloat16 outputs are
# rounded from the float32 reconstruction.
_REL_ROUNDING = {"float32": 2.0**-24, "float64": 2.0**-24, "float16": 2.0**-11, "bfloat16": 2.0**-8}

shapes = st.one_of(
    st.just(()),
    st.tuples(st.integers(0, 40)),
    st.tuples(st.integers(0, 12), st.integers(0, 12)),
    st.tuples(st.integers(0, 6), st.integers(0, 4), st.sampled_from([1, 3]), st.sampled_from([1, 3])),
)


def _step_for(shape: tuple[int, ...], opts: CompressOptions = OPTS) -> float:
    return opts.weight_step if len(shape) >= 2 else opts.vector_step


def _assert_within_step(
    got: np.ndarray, want: np.ndarray, step: float, dtype: str, name: str = "tensor"
) -> None:
    assert got.shape == want.shape, name
    x = want.astype(np.float64)
    y = got.astype(np.float64)
    tol = step / 2 + (np.abs(x) + step) * _REL_ROUNDING[dtype] + 2.0**-24
    err = np.abs(y - x)
    assert np.all(err <= tol), f"{name}: max error {err.max()} > step/2 = {step / 2}"


def _random_floats(rng: np.random.Generator, shape: tuple[int, ...], kind: str, scale: float) -> np.ndarray:
    if kind == "normal":
        return rng.normal(0, scale, shape)
    if kind == "laplace":
        return rng.laplace(0, scale, shape)
    if kind == "uniform":
        return rng.uniform(-scale, scale, shape)
    if kind == "offset":  # far from zero, like LayerNorm gains
        return 1.0 + rng.normal(0, scale / 10, shape)
    # "ties": exact half-step multiples (the worst case of round-to-nearest)
    step = _step_for(shape)
    return rng.integers(-200, 200, shape) * (step / 2)


# ---------------------------------------------------------------------------------------------------
# Round trips


@settings(deadline=None, max_examples=100, suppress_health_check=[HealthCheck.too_slow])
@given(
    shape=shapes,
    dtype=st.sampled_from(["float32", "float16", "float64"]),
    kind=st.sampled_from(["normal", "laplace", "uniform", "offset", "ties"]),
    scale=st.sampled_from([0.0, 1e-4, 0.02, 1.0, 30.0]),
    seed=st.integers(0, 2**32 - 1),
)
def test_float_roundtrip_within_half_step(
    shape: tuple[int, ...], dtype: str, kind: str, scale: float, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    tensors = {
        "t": _random_floats(rng, shape, kind, scale).astype(dtype),
        "other.weight": rng.normal(0, 0.1, (3, 5)).astype(np.float32),
    }
    report = nnsqueeze.compress(tensors, threads=1)
    assert report.data is not None
    assert report.file_bytes == len(report.data)
    assert report.raw_bytes == sum(a.nbytes for a in tensors.values())
    out = nnsqueeze.decompress(report.data)
    assert list(out) == list(tensors)
    for name, want in tensors.items():
        got = out[name]
        assert (got.dtype, got.shape) == (want.dtype, want.shape), name
        _assert_within_step(got, want, _step_for(want.shape), str(want.dtype), name)
    by_name = {t.name: t for t in report.tensors}
    assert by_name["t"].method == "uniform"
    assert by_name["t"].step == _step_for(shape)
    assert by_name["t"].shape == shape


def test_float_special_shapes_exact_dtype() -> None:
    tensors = {
        "empty2d": np.zeros((0, 7), np.float32),
        "empty4d": np.zeros((3, 0, 3, 3), np.float16),
        "empty1d": np.zeros(0, np.float64),
        "scalar": np.array(-2.75, np.float32),
        "conv": np.linspace(-1, 1, 2 * 3 * 5 * 5, dtype=np.float32).reshape(2, 3, 5, 5),
    }
    out = nnsqueeze.decompress(nnsqueeze.compress(tensors).data)
    for name, want in tensors.items():
        assert (out[name].shape, out[name].dtype) == (want.shape, want.dtype), name
        _assert_within_step(out[name], want, _step_for(want.shape), str(want.dtype), name)
    assert out["scalar"].ndim == 0


def test_step_overrides_qp() -> None:
    w = np.random.default_rng(3).normal(0, 1, (16, 16)).astype(np.float32)
    report = nnsqueeze.compress({"w": w}, qp=-40, step=0.25)
    assert report.tensors[0].step == 0.25
    got = nnsqueeze.decompress(report.data)["w"]
    assert np.all(np.abs(got - w) <= 0.125)
    levels = got / 0.25
    np.testing.assert_array_equal(levels, np.round(levels))
    assert CompressOptions(qp=-40, step=0.25).weight_step == 0.25
    assert CompressOptions(qp=-8).weight_step == 0.25
    assert nnsqueeze.qp_to_step(-28) == 2.0**-7


def test_qp_controls_step_and_size() -> None:
    w = np.random.default_rng(4).normal(0, 0.05, (64, 64)).astype(np.float32)
    sizes = []
    for qp in (-36, -28, -20):
        report = nnsqueeze.compress({"w": w}, qp=qp)
        step = 2.0 ** (qp / 4)
        assert report.tensors[0].step == step
        _assert_within_step(nnsqueeze.decompress(report.data)["w"], w, step, "float32")
        sizes.append(report.file_bytes)
    assert sizes[0] > sizes[1] > sizes[2]


def test_bfloat16_through_torch_keeps_dtype() -> None:
    torch = pytest.importorskip("torch")
    gen = torch.Generator().manual_seed(0)
    state = {
        "w": (torch.randn(8, 4, 3, 3, generator=gen) * 0.1).to(torch.bfloat16),
        "b": (torch.randn(8, generator=gen) * 0.1).to(torch.bfloat16),
        "e": torch.zeros(0, 5, dtype=torch.bfloat16),
        "f": torch.randn(5, 5, generator=gen),
        "i": torch.arange(-5, 5, dtype=torch.int64),
    }
    data = nnsqueeze.compress(state).data
    loaded = nnsqueeze.load_state_dict(data)
    assert list(loaded) == list(state)
    for name, want in state.items():
        got = loaded[name]
        assert isinstance(got, torch.Tensor)
        assert (got.dtype, tuple(got.shape)) == (want.dtype, tuple(want.shape)), name
        if want.dtype == torch.int64:
            assert torch.equal(got, want)
            continue
        dtype = "bfloat16" if want.dtype == torch.bfloat16 else "float32"
        _assert_within_step(
            got.float().numpy(), want.float().numpy(), _step_for(tuple(want.shape)), dtype, name
        )
    # decompress widens bfloat16 to float32 exactly
    plain = nnsqueeze.decompress(data)
    assert plain["w"].dtype == np.float32
    np.testing.assert_array_equal(plain["w"], loaded["w"].float().numpy())


def test_bfloat16_scalar_keeps_shape() -> None:
    torch = pytest.importorskip("torch")
    data = nnsqueeze.compress({"s": torch.tensor(1.5, dtype=torch.bfloat16)}).data
    assert nnsqueeze.decompress(data)["s"].shape == ()
    loaded = nnsqueeze.load_state_dict(data)["s"]
    assert loaded.shape == ()
    assert loaded.dtype == torch.bfloat16
    assert float(loaded) == 1.5


def test_bfloat16_lossless_bit_exact() -> None:
    torch = pytest.importorskip("torch")
    bits = torch.tensor([0x7FC1, 0xFF80, 0x7F80, 0x8000, 0x0001, 0x3F80, 0xFFFF], dtype=torch.int32)
    state = {"x": bits.to(torch.int16).view(torch.bfloat16).reshape(7, 1)}
    loaded = nnsqueeze.load_state_dict(nnsqueeze.compress(state, lossless=True).data)
    assert loaded["x"].dtype == torch.bfloat16
    assert torch.equal(loaded["x"].view(torch.int16), state["x"].view(torch.int16))


INT_DTYPES = ["int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"]


def _random_ints(rng: np.random.Generator, dtype: str, shape: tuple[int, ...], mode: str) -> np.ndarray:
    info = np.iinfo(dtype)
    if mode == "full":
        return rng.integers(info.min, info.max, shape, dtype=dtype, endpoint=True)
    if mode == "extremes":
        return rng.choice(np.array([info.min, info.max, 0, 1, info.max - 1], dtype=dtype), shape)
    # "narrow": a small spread around some base (the level coder path with an offset)
    hi = int(info.max)
    base = int(rng.integers(int(info.min), hi, endpoint=True, dtype=np.int64 if info.min < 0 else np.uint64))
    if rng.random() < 0.3:  # near the ends and the middle of the range
        base = int(rng.choice([int(info.min), hi, (int(info.min) + hi) // 2 + 1]))
    spread = int(rng.choice([1, 3, 100, 70_000]))
    lo_v = max(int(info.min), base - spread)
    hi_v = min(hi, base + spread)
    return rng.integers(lo_v, hi_v, shape, dtype=dtype, endpoint=True)


@settings(deadline=None, max_examples=100)
@given(
    dtype=st.sampled_from([*INT_DTYPES, "bool"]),
    shape=shapes,
    mode=st.sampled_from(["full", "extremes", "narrow"]),
    seed=st.integers(0, 2**32 - 1),
)
def test_int_and_bool_bit_exact(dtype: str, shape: tuple[int, ...], mode: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    array = rng.random(shape) < 0.3 if dtype == "bool" else _random_ints(rng, dtype, shape, mode)
    report = nnsqueeze.compress({"x": array}, threads=1)
    got = nnsqueeze.decompress(report.data)["x"]
    assert got.dtype == array.dtype
    assert got.shape == array.shape
    np.testing.assert_array_equal(got, array)
    if array.size and dtype != "bool" and int(array.max()) - int(array.min()) > MAX_LEVEL:
        assert report.tensors[0].method == "lossless"


def test_scalar_int_decodes_to_ndarray() -> None:
    tensors = {"s": np.array(7, np.int64), "b": np.array(True), "u": np.array(3, np.uint8)}
    out = nnsqueeze.decompress(nnsqueeze.compress(tensors).data)
    for name, want in tensors.items():
        assert isinstance(out[name], np.ndarray), f"{name}: {type(out[name])}"
        assert out[name].shape == ()
        assert out[name].dtype == want.dtype


def test_int64_extremes_use_lossless_byte_path() -> None:
    x = np.array([np.iinfo(np.int64).min, -1, 0, 1, np.iinfo(np.int64).max], dtype=np.int64)
    u = np.array([0, 2**64 - 1, 2**63], dtype=np.uint64)
    report = nnsqueeze.compress({"x": x, "u": u, "small": np.arange(-3, 4, dtype=np.int64)})
    assert [t.method for t in report.tensors] == ["lossless", "lossless", "integer"]
    out = nnsqueeze.decompress(report.data)
    np.testing.assert_array_equal(out["x"], x)
    np.testing.assert_array_equal(out["u"], u)
    assert out["u"].dtype == np.uint64


def test_int64_narrow_near_max() -> None:
    x = np.array([2**63 - 1, 2**63 - 2], dtype=np.int64)
    np.testing.assert_array_equal(nnsqueeze.decompress(nnsqueeze.compress({"x": x}).data)["x"], x)


def test_uint64_straddling_2_63() -> None:
    u = np.array([2**63 - 1, 2**63], dtype=np.uint64)
    np.testing.assert_array_equal(nnsqueeze.decompress(nnsqueeze.compress({"u": u}).data)["u"], u)


def test_float16_reconstruction_stays_finite() -> None:
    w = np.array([[65504.0, -65504.0, 1.0]], np.float16)
    got = nnsqueeze.decompress(nnsqueeze.compress({"w": w}, step=1000.0).data)["w"]
    assert np.all(np.isfinite(got))
    assert np.all(np.abs(got.astype(np.float64) - w) <= 500.0)


def _special_floats(dtype: str, rng: np.random.Generator, n: int) -> np.ndarray:
    itemsize = np.dtype(dtype).itemsize
    bits = rng.integers(0, 2 ** (8 * itemsize), n, dtype=f"u{itemsize}", endpoint=False)
    values = bits.view(dtype).copy()
    specials = [np.nan, np.inf, -np.inf, -0.0, 0.0, np.finfo(dtype).tiny, np.finfo(dtype).max]
    values[: len(specials)] = np.array(specials, dtype=dtype)
    # NaNs with non-default payloads and signs: all ones (-NaN) and a quiet NaN with low bits set
    uint = values.view(f"u{itemsize}")
    uint[len(specials)] = np.iinfo(f"u{itemsize}").max
    exponent_and_quiet = uint[0] | 1  # np.nan's bits with the lowest payload bit set
    uint[len(specials) + 1] = exponent_and_quiet
    return values


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
@pytest.mark.parametrize("shape", [(97,), (6, 11), (2, 3, 3, 3), ()])
def test_lossless_floats_bit_exact(dtype: str, shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(7)
    n = max(math.prod(shape), 1)
    values = _special_floats(dtype, rng, max(n, 12))[:n].reshape(shape)
    report = nnsqueeze.compress({"x": values}, lossless=True)
    assert report.tensors[0].method == "lossless"
    got = nnsqueeze.decompress(report.data)["x"]
    assert got.dtype == values.dtype
    assert got.shape == values.shape
    ubits = f"u{values.dtype.itemsize}"
    np.testing.assert_array_equal(got.view(ubits), values.view(ubits))


def test_lossless_1d_option() -> None:
    rng = np.random.default_rng(5)
    tensors = {"w": rng.normal(0, 1, (8, 8)).astype(np.float32), "b": rng.normal(0, 1, 8).astype(np.float32)}
    report = nnsqueeze.compress(tensors, options=CompressOptions(lossless_1d=True))
    assert [t.method for t in report.tensors] == ["uniform", "lossless"]
    out = nnsqueeze.decompress(report.data)
    np.testing.assert_array_equal(out["b"].view(np.uint32), tensors["b"].view(np.uint32))


# ---------------------------------------------------------------------------------------------------
# Errors and options


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("shape", [(3, 4), (12,), ()])
def test_nan_inf_in_lossy_tensor_names_it(bad: float, shape: tuple[int, ...], tmp_path: Path) -> None:
    x = np.zeros(shape, np.float32)
    x.reshape(-1)[-1] = bad
    tensors = {"ok": np.ones((2, 2), np.float32), "encoder.layer.3.weight": x}
    for dest in (None, tmp_path / "m.nnsq"):
        with pytest.raises(TensorError, match=r"encoder\.layer\.3\.weight"):
            nnsqueeze.compress(tensors, dest, options=CompressOptions(strict=True, threads=1))
    assert list(tmp_path.iterdir()) == []
    # by default it is stored losslessly, and the report says so
    report = nnsqueeze.compress(tensors, threads=1)
    assert report.data is not None
    assert [t.name for t in report.tensors if t.note] == ["encoder.layer.3.weight"]
    got = nnsqueeze.decompress(report.data)["encoder.layer.3.weight"]
    np.testing.assert_array_equal(got.view(np.uint32), x.view(np.uint32))
    # lossless mode stores it
    got = nnsqueeze.decompress(nnsqueeze.compress({"x": x}, lossless=True).data)["x"]
    np.testing.assert_array_equal(got.view(np.uint32), x.view(np.uint32))


def test_value_beyond_level_range_raises_tensor_error(tmp_path: Path) -> None:
    strict = CompressOptions(strict=True)
    with pytest.raises(TensorError, match="huge"):
        nnsqueeze.compress({"huge": np.array([[3e38, 0.0]], np.float32)}, tmp_path / "m.nnsq", options=strict)


def test_in_memory_failure_leaves_no_temp_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    with pytest.raises(TensorError):
        nnsqueeze.compress({"w": np.full((2, 2), np.nan, np.float32)}, options=CompressOptions(strict=True))
    gc.collect()  # a leaked TemporaryDirectory would warn (an error here) in its finalizer
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "kwargs",
    [
        {"qp": 1000},
        {"qp": -1000},
        {"qp": 1.5},
        {"qp": True},
        {"step": 0.0},
        {"step": -1.0},
        {"step": float("nan")},
        {"step": float("inf")},
        {"threads": 0},
        {"threads": -2},
    ],
)
def test_invalid_options_raise_config_error(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        CompressOptions(**kwargs)  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        nnsqueeze.compress({"w": np.ones((2, 2), np.float32)}, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("num_gtx", [-1, 33])
def test_invalid_num_gtx(num_gtx: int) -> None:
    with pytest.raises(ConfigError):
        CompressOptions(num_gtx=num_gtx)


@pytest.mark.parametrize("num_gtx", [0, 1, 8, 32])
def test_num_gtx_option_round_trips(num_gtx: int) -> None:
    w = np.random.default_rng(num_gtx).laplace(0, 0.1, (20, 30)).astype(np.float32)
    data = nnsqueeze.compress({"w": w}, options=CompressOptions(num_gtx=num_gtx)).data
    _assert_within_step(nnsqueeze.decompress(data)["w"], w, OPTS.weight_step, "float32")


def _many_tensors() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(11)
    tensors: dict[str, np.ndarray] = {}
    for i in range(12):
        tensors[f"layer{i}.weight"] = rng.normal(0, 0.05, (32, 16 + i)).astype(np.float32)
        tensors[f"layer{i}.bias"] = rng.normal(0, 0.01, 32).astype(np.float16)
        tensors[f"layer{i}.count"] = rng.integers(0, 9, 5)
    return tensors


def test_threads_give_identical_files() -> None:
    tensors = _many_tensors()
    one = nnsqueeze.compress(tensors, threads=1).data
    two = nnsqueeze.compress(tensors, threads=2).data
    four = nnsqueeze.compress(tensors, threads=4).data
    assert one == two == four
    a = nnsqueeze.decompress(one, threads=1)
    b = nnsqueeze.decompress(one, threads=2)
    assert list(a) == list(b) == list(tensors)
    for name in a:
        np.testing.assert_array_equal(a[name], b[name])


# ---------------------------------------------------------------------------------------------------
# Files, NnsqFile and metadata


def test_compress_to_path_is_atomic(tmp_path: Path) -> None:
    dest = tmp_path / "model.nnsq"
    tensors = _many_tensors()
    report = nnsqueeze.compress(tensors, dest, threads=2)
    assert report.path == dest
    assert report.data is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.nnsq"]
    assert report.file_bytes == dest.stat().st_size
    assert dest.read_bytes() == nnsqueeze.compress(tensors, threads=1).data
    out = nnsqueeze.decompress(dest)
    assert list(out) == list(tensors)

    # a failure part-way leaves an existing destination untouched and no temp file behind
    before = dest.read_bytes()
    bad = dict(tensors)
    bad["z.weight"] = np.full((4, 4), np.nan, np.float32)
    with pytest.raises(TensorError, match=r"z\.weight"):
        nnsqueeze.compress(bad, dest, options=CompressOptions(strict=True, threads=2))
    assert dest.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.nnsq"]

    # ... and does not create a missing one
    fresh = tmp_path / "fresh.nnsq"
    with pytest.raises(TensorError):
        nnsqueeze.compress(bad, fresh, options=CompressOptions(strict=True, threads=1))
    assert not fresh.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.nnsq"]


def test_compress_accepts_str_path_and_progress(tmp_path: Path) -> None:
    seen: list[str] = []
    dest = str(tmp_path / "m.nnsq")
    report = nnsqueeze.compress(_many_tensors(), dest, progress=lambda t: seen.append(t.name))
    assert seen == [t.name for t in report.tensors] == list(_many_tensors())
    assert Path(dest).is_file()


def test_nnsqfile_random_access(tmp_path: Path) -> None:
    tensors = _many_tensors()
    meta = {"author": "tests", "unicode ключ": "значение ✓", "empty": ""}
    dest = tmp_path / "m.nnsq"
    nnsqueeze.compress(tensors, dest, metadata=meta)
    full = nnsqueeze.decompress(dest)
    for source in (dest, str(dest), dest.read_bytes(), bytearray(dest.read_bytes())):
        with NnsqFile(source) as f:
            assert f.names == tuple(tensors)
            assert f.version == FORMAT_VERSION
            for key, value in meta.items():
                assert f.metadata[key] == value
            assert f.metadata["nnsqueeze.source_format"] == "mapping"
            one = f.read("layer7.weight")
            np.testing.assert_array_equal(one, full["layer7.weight"])
            t = f.read_tensor("layer3.bias")
            assert t.dtype == "float16"
            assert t.array.shape == (32,)
            h = f.header("layer3.count")
            assert h.shape == (5,)
            assert h.dtype == "int64"
            assert f.record_size("layer0.weight") > 0
            with pytest.raises(KeyError, match="nope"):
                f.read("nope")
            names = [t.name for t in f.tensors(["layer2.bias", "layer1.weight"])]
            assert names == ["layer2.bias", "layer1.weight"]


def test_metadata_from_source_and_user_merge(tmp_path: Path) -> None:
    data = nnsqueeze.compress(
        {"w": np.ones((2, 2), np.float32)}, metadata={"nnsqueeze.source_format": "x"}
    ).data
    assert NnsqFile(data).metadata == {"nnsqueeze.source_format": "x"}
    with pytest.raises(ConfigError, match="str"):
        nnsqueeze.compress(
            {"w": np.ones((2, 2), np.float32)},
            tmp_path / "m.nnsq",
            metadata={"k": 1},  # type: ignore[dict-item]
        )


def test_empty_model_round_trips() -> None:
    data = nnsqueeze.compress({}).data
    assert nnsqueeze.decompress(data) == {}


# ---------------------------------------------------------------------------------------------------
# The level coder


def _levels(rng: np.random.Generator, shape: tuple[int, ...], kind: str) -> np.ndarray:
    if kind == "zeros":
        out = np.zeros(shape, np.int64)
    elif kind == "small":
        out = rng.integers(-3, 4, shape)
    elif kind == "laplace":
        out = np.round(rng.laplace(0, rng.choice([0.3, 2.0, 50.0]), shape)).astype(np.int64)
    elif kind == "huge":
        out = rng.integers(-MAX_LEVEL, MAX_LEVEL, shape, endpoint=True)
    elif kind == "sparse_huge":
        out = np.where(
            rng.random(shape) < 0.05, rng.choice([-MAX_LEVEL, MAX_LEVEL, 2**20, -(2**16)], shape), 0
        )
    else:  # "extremes"
        out = rng.choice(np.array([-MAX_LEVEL, MAX_LEVEL, 0, 1, -1, 32, 33, -33]), shape)
    return np.clip(out, -MAX_LEVEL, MAX_LEVEL).astype(np.int32)


level_shapes = st.one_of(
    st.just(()),
    st.tuples(st.integers(0, 300)),
    st.tuples(st.integers(0, 40), st.integers(0, 40)),
    st.tuples(st.integers(0, 5), st.integers(0, 7), st.integers(0, 9)),
)


@st.composite
def adaptations(draw: st.DrawFn) -> Adaptation:
    fast = draw(st.integers(1, 14))
    return Adaptation(fast, draw(st.integers(fast, 14)))


@settings(deadline=None, max_examples=200)
@given(
    shape=level_shapes,
    kind=st.sampled_from(["zeros", "small", "laplace", "huge", "sparse_huge", "extremes"]),
    num_gtx=st.integers(0, 32),
    rate=st.one_of(st.none(), adaptations()),
    seed=st.integers(0, 2**32 - 1),
)
def test_level_coder_round_trip(
    shape: tuple[int, ...], kind: str, num_gtx: int, rate: Adaptation | None, seed: int
) -> None:
    levels = _levels(np.random.default_rng(seed), shape, kind)
    payload = encode_levels(levels, num_gtx=num_gtx, adaptation=rate)
    assert isinstance(payload, bytes)
    got = decode_levels(payload, shape, num_gtx=num_gtx, adaptation=rate)
    assert got.dtype == np.int32
    assert got.shape == shape
    np.testing.assert_array_equal(got, levels)


def test_level_coder_accepts_non_contiguous_input() -> None:
    levels = np.arange(-50, 50, dtype=np.int32).reshape(10, 10)[:, ::2]
    np.testing.assert_array_equal(decode_levels(encode_levels(levels), levels.shape), levels)


@pytest.mark.parametrize("bad", [MAX_LEVEL + 1, -MAX_LEVEL - 1, 2**31 - 1, -(2**31)])
def test_level_beyond_range_raises(bad: int) -> None:
    levels = np.array([[0, 1], [bad, 2]], dtype=np.int32)
    with pytest.raises(ValueError, match="range"):
        encode_levels(levels)


def test_level_coder_rejects_bad_parameters() -> None:
    with pytest.raises(ConfigError):
        encode_levels(np.zeros(3, np.int64))
    with pytest.raises(ConfigError):
        encode_levels(np.zeros(3, np.int32), num_gtx=33)
    with pytest.raises(ConfigError):
        Adaptation(0, 5)
    with pytest.raises(ConfigError):
        Adaptation(6, 5)
    with pytest.raises(ConfigError):
        Adaptation(5, 15)


@pytest.mark.parametrize("scale", [0.3, 1.0, 4.0, 20.0])
def test_level_coder_near_entropy(scale: float) -> None:
    rng = np.random.default_rng(2024)
    levels = np.round(rng.laplace(0, scale, (512, 512))).astype(np.int32)
    _, counts = np.unique(levels, return_counts=True)
    p = counts / levels.size
    entropy_bits = float(-(counts * np.log2(p)).sum())
    coded_bits = 8 * len(encode_levels(levels))
    assert coded_bits <= 1.03 * entropy_bits, f"{coded_bits / entropy_bits:.4f} x order-0 entropy"


def test_codec_compresses_real_looking_weights() -> None:
    w = np.random.default_rng(8).normal(0, 0.02, (256, 256)).astype(np.float32)
    report = nnsqueeze.compress({"w": w})
    levels = np.round(w.astype(np.float64) / OPTS.weight_step)
    _, counts = np.unique(levels, return_counts=True)
    entropy_bits = float(-(counts * np.log2(counts / levels.size)).sum())
    assert 8 * report.tensors[0].coded_bytes <= 1.03 * entropy_bits
    assert report.ratio > 32 / (1.03 * entropy_bits / w.size) * 0.9
