"""Updates against a base model: exact reconstruction rules, skipped tensors, hashes, chains, the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import nnsqueeze
from nnsqueeze import BaseMismatchError, NnsqFile
from nnsqueeze.dtypes import from_float32, to_float32
from nnsqueeze.io import NamedTensor, open_checkpoint, write_checkpoint
from nnsqueeze.quant.uniform import qp_to_step
from nnsqueeze.update import (
    DEFAULT_UPDATE_QP,
    DELTA,
    STANDALONE,
    UNCHANGED,
    XOR,
    UpdateInfo,
    apply_update_tensors,
    reconstruction_gain,
    state_hash,
    update_info,
)


def base_and_tuned(seed: int = 0) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    base = {
        "enc.weight": rng.normal(0, 0.05, (48, 32)).astype(np.float32),
        "enc.bias": rng.normal(0, 0.01, 48).astype(np.float32),
        "frozen.weight": rng.normal(0, 0.05, (16, 16)).astype(np.float32),
        "ids": np.arange(10, dtype=np.int64),
    }
    tuned = dict(base)
    tuned["enc.weight"] = base["enc.weight"] + rng.normal(0, 3e-4, (48, 32)).astype(np.float32)
    tuned["enc.bias"] = base["enc.bias"] + rng.normal(0, 1e-4, 48).astype(np.float32)
    tuned["head.weight"] = rng.normal(0, 0.05, (4, 48)).astype(np.float32)  # new in the fine-tune
    return base, tuned


def kinds_of(update: Path | bytes) -> dict[str, str]:
    """The kind of each tensor an update file records."""
    with NnsqFile(update) as f:
        info = update_info(f)
    assert info is not None
    return info.kinds


def test_update_decodes_to_base_plus_the_coded_difference() -> None:
    base, tuned = base_and_tuned()
    # Rounded, without the reconstruction gain, every element is within half a step (the trellis and
    # the gain have their own test below).
    report = nnsqueeze.compress_update(tuned, [base], trellis=False, coherence=None)
    assert report.data is not None
    with NnsqFile(report.data) as f:
        info = update_info(f)
        assert info is not None
        assert info.kinds == {
            "enc.weight": DELTA,
            "enc.bias": DELTA,
            "frozen.weight": UNCHANGED,
            "ids": UNCHANGED,
            "head.weight": STANDALONE,
        }
        assert info.base_sha256 == state_hash(open_checkpoint(base).tensors)
        diff = f.read("enc.weight")  # the record holds the coded difference itself
    new = nnsqueeze.apply_update(report.data, [base])
    assert list(new) == list(tuned)  # the new model's tensors, in its order
    np.testing.assert_array_equal(new["enc.weight"], base["enc.weight"] + diff)
    step = qp_to_step(DEFAULT_UPDATE_QP)
    assert np.abs(new["enc.weight"] - tuned["enc.weight"]).max() <= step / 2 * (1 + 1e-5)
    np.testing.assert_array_equal(new["frozen.weight"], base["frozen.weight"])
    np.testing.assert_array_equal(new["ids"], base["ids"])
    assert np.abs(new["head.weight"] - tuned["head.weight"]).max() <= step / 2 * (1 + 1e-5)


@settings(max_examples=30, deadline=None)
@given(
    dtype=st.sampled_from(["float32", "float16", "bfloat16", "float64"]),
    seed=st.integers(0, 2**32 - 1),
    special=st.booleans(),
)
def test_lossless_updates_are_bit_exact(dtype: str, seed: int, special: bool) -> None:
    rng = np.random.default_rng(seed)
    values = rng.normal(0, 1, (7, 9)).astype(np.float32)
    bits = {"float32": np.uint32, "float16": np.uint16, "bfloat16": np.uint16, "float64": np.uint64}[dtype]
    base_array = from_float32(values, dtype)
    tuned_array = base_array.copy()
    flat = tuned_array.reshape(-1).view(bits)
    flat[rng.integers(0, flat.size, 10)] ^= rng.integers(1, 1 << 10, 10).astype(bits)  # mantissa flips
    if special:  # NaN payloads, -0.0, infinities, subnormals survive as bits
        flat[:4] = np.array(
            {"float32": [0x7FC00123, 0x80000000, 0x7F800000, 0x00000001],
             "float64": [0x7FF8000000000123, 1 << 63, 0x7FF0000000000000, 1]}.get(
                dtype, [0x7E01, 0x8000, 0x7C00 if dtype == "float16" else 0x7F80, 0x0001]
            ),
            dtype=bits,
        )  # fmt: skip
    base = [NamedTensor("w", base_array, dtype), NamedTensor("same", base_array, dtype)]
    tuned = [NamedTensor("w", tuned_array, dtype), NamedTensor("same", base_array, dtype)]
    from nnsqueeze.io._common import Checkpoint

    def ckpt(ts: list[NamedTensor]) -> Checkpoint:
        return Checkpoint("test", iter(ts), len(ts))

    report = nnsqueeze.compress_update(ckpt(tuned), [ckpt(base)], lossless=True)
    assert report.data is not None
    out = apply_update_tensors(report.data, [ckpt(base)])
    assert out["w"].dtype == dtype
    np.testing.assert_array_equal(out["w"].array.view(np.uint8), tuned_array.view(np.uint8))
    assert kinds_of(report.data) == {"w": XOR, "same": UNCHANGED}


def weighted_error(x: np.ndarray, reconstruction: np.ndarray, coherence: float) -> float:
    """The error the reconstruction gain minimises, from its definition: the part of x - r along x
    counts coherence times, the part orthogonal to x once."""
    e = x - reconstruction
    along = (e @ x) / (x @ x) * x
    return float(coherence * (along @ along) + (e - along) @ (e - along))


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    spread=st.floats(0.1, 3.0),
    coherence=st.sampled_from([1.0, 3.0, 30.0, 1000.0]),
)
def test_reconstruction_gain_minimises_the_weighted_error(seed: int, spread: float, coherence: float) -> None:
    x = np.random.default_rng(seed).laplace(0, spread, 2000)
    rounded = np.rint(x)  # step 1
    if not rounded.any():
        return
    g = reconstruction_gain(x, rounded, coherence)
    grid = np.linspace(0.2, 5.0, 4801)  # steps of 0.001
    errors = [weighted_error(x, h * rounded, coherence) for h in grid]
    best = grid[int(np.argmin(errors))]
    assert abs(g - best) <= 1.5e-3 or weighted_error(x, g * rounded, coherence) <= min(errors)
    if coherence == 1.0:  # least squares
        assert g == pytest.approx(float(x @ rounded) / float(rounded @ rounded))
    assert g <= float(x @ x) / float(x @ rounded) * (1 + 1e-12)  # never past unbiased along x
    assert reconstruction_gain(x, rounded, np.inf) == pytest.approx(float(x @ x) / float(x @ rounded))


@pytest.mark.parametrize("trellis", [False, True])
def test_the_gain_keeps_the_levels_and_undoes_the_shrinkage(trellis: bool) -> None:
    rng = np.random.default_rng(5)
    step = qp_to_step(DEFAULT_UPDATE_QP)
    base = {"w": rng.normal(0, 0.05, (256, 128)).astype(np.float32)}
    change = rng.normal(0, 0.3 * step, (256, 128)).astype(np.float32)  # mostly below half a step
    tuned = {"w": base["w"] + change}
    true = (tuned["w"] - base["w"]).astype(np.float64).ravel()
    plain = nnsqueeze.compress_update(tuned, [base], trellis=trellis, coherence=None)
    gained = nnsqueeze.compress_update(tuned, [base], trellis=trellis)
    assert plain.data is not None
    assert gained.data is not None
    assert abs(gained.file_bytes - plain.file_bytes) <= 2  # the same levels, another step
    with NnsqFile(plain.data) as f:
        d_plain = f.read("w").astype(np.float64).ravel()
    with NnsqFile(gained.data) as f:
        d_gained = f.read("w").astype(np.float64).ravel()
    if not trellis:  # rounded to nearest: the plain update is step * round(x / step)
        np.testing.assert_allclose(d_plain, step * np.rint(true / step), rtol=1e-6, atol=0)
    g = reconstruction_gain(true, d_plain)
    assert g > 1.05
    np.testing.assert_allclose(d_gained, g * d_plain, rtol=1e-6, atol=1e-12)
    # The plain update is a shrunken copy of the change; the gain brings its slope along it near 1.
    slope_plain, slope_gained = (d @ true / (true @ true) for d in (d_plain, d_gained))
    assert slope_plain < 0.9
    assert abs(slope_gained - 1) < abs(slope_plain - 1) / 2
    new = nnsqueeze.apply_update(gained.data, [base])
    np.testing.assert_allclose(new["w"], base["w"] + d_gained.reshape(256, 128).astype(np.float32), atol=1e-9)
    with pytest.raises(nnsqueeze.ConfigError, match="coherence"):
        nnsqueeze.compress_update(tuned, [base], coherence=0.5)


@pytest.mark.parametrize("trellis", [False, True])
def test_a_losslessly_stored_difference_gets_no_gain(trellis: bool) -> None:
    # lossless_1d stores the 1-D differences bit-exactly: a gain there would scale the exact values.
    rng = np.random.default_rng(1)
    base = {
        "w": rng.normal(0, 0.05, (32, 16)).astype(np.float32),
        "b": rng.normal(0, 0.01, 32).astype(np.float32),
    }
    tuned = {k: (v + rng.normal(0, 3e-4, v.shape)).astype(np.float32) for k, v in base.items()}
    opts = nnsqueeze.CompressOptions(qp=DEFAULT_UPDATE_QP, lossless_1d=True, trellis=trellis)
    report = nnsqueeze.compress_update(tuned, [base], options=opts)
    assert report.data is not None
    with NnsqFile(report.data) as f:
        np.testing.assert_array_equal(f.read("b"), tuned["b"] - base["b"])


GOLDEN_UPDATES = Path(__file__).resolve().parent / "golden" / "updates"


def test_version_1_update_files_still_apply() -> None:
    # Written by the version-1 description (every kind by name): base.nnsq, its update, the result.
    new = nnsqueeze.apply_update(GOLDEN_UPDATES / "update.v1.nnsq", [GOLDEN_UPDATES / "base.nnsq"])
    with np.load(GOLDEN_UPDATES / "update.v1.decoded.npz") as want:
        assert list(new) == list(want)
        for name in want:
            np.testing.assert_array_equal(new[name], want[name])
    assert kinds_of(GOLDEN_UPDATES / "update.v1.nnsq") == {
        "enc.weight": DELTA,
        "enc.bias": UNCHANGED,
        "frozen.weight": UNCHANGED,
        "ids": UNCHANGED,
        "head.weight": STANDALONE,
    }


def test_the_description_lists_only_what_is_not_a_delta() -> None:
    kinds = {f"layer.{i}.weight": DELTA for i in range(100)}
    kinds["layer.3.weight"] = UNCHANGED
    kinds["new.weight"] = STANDALONE
    info = UpdateInfo("0" * 64, 100, kinds)
    text = info.to_json()
    assert len(text) < 250  # version 1 named all 101 tensors: 2.6 KB
    records = [n for n, k in kinds.items() if k != UNCHANGED]
    again = UpdateInfo.from_json(text, records)
    assert list(again.kinds.items()) == list(kinds.items())


@pytest.mark.parametrize(
    ("others", "total", "records", "problem"),
    [
        ([[0, "a", "unchanged"]], 2, ["b", "c"], "names 1 stored tensors, the file has 2"),
        ([[5, "a", "unchanged"]], 2, ["b"], "bad entry"),
        ([[0, "a", "unchanged"], [0, "a", "xor"]], 2, ["b"], "bad entry"),
        ([[0, "a", "delta"]], 1, ["a"], "bad entry"),
        ([[0, "a", "standalone"]], 1, ["b"], "the record there is 'b'"),
        ([[0, "a", "unchanged"]], 2, ["a"], "twice"),
        ("nope", 1, ["a"], "tensors or others"),
    ],
)
def test_crafted_descriptions_are_refused(
    others: object, total: int, records: list[str], problem: str
) -> None:
    text = json.dumps(
        {"version": 2, "base_sha256": "0" * 64, "base_tensors": 1, "tensors": total, "others": others}
    )
    with pytest.raises(nnsqueeze.BitstreamError, match=problem):
        UpdateInfo.from_json(text, records)
    with pytest.raises(nnsqueeze.BitstreamError, match="unknown version"):
        UpdateInfo.from_json(text.replace('"version": 2', '"version": 3'), records)


def test_a_wrong_or_missing_base_is_refused() -> None:
    base, tuned = base_and_tuned()
    data = nnsqueeze.compress_update(tuned, [base]).data
    assert data is not None
    other = dict(base)
    other["enc.bias"] = base["enc.bias"] + np.float32(1e-3)
    with pytest.raises(BaseMismatchError, match="SHA-256"):
        nnsqueeze.apply_update(data, [other])
    with pytest.raises(nnsqueeze.ConfigError, match="needs its base"):
        nnsqueeze.apply_update(data, [])
    with pytest.raises(BaseMismatchError, match="is an update"):
        nnsqueeze.decompress(data)  # alone an update is no model
    with pytest.raises(BaseMismatchError, match="is an update"):
        nnsqueeze.load_state_dict(data)
    full = nnsqueeze.compress(tuned).data
    assert full is not None
    with pytest.raises(BaseMismatchError, match="full model"):
        nnsqueeze.apply_update(full, [base])


def test_chains_and_nnsq_bases(tmp_path: Path) -> None:
    base, tuned = base_and_tuned()
    base_file = tmp_path / "base.nnsq"
    nnsqueeze.compress(base, base_file)
    decoded_base = nnsqueeze.decompress(base_file)
    first = tmp_path / "u1.nnsq"
    nnsqueeze.compress_update(tuned, [base_file], first, trellis=False, coherence=None)  # base: .nnsq values
    step1 = nnsqueeze.apply_update(first, [base_file])
    half = qp_to_step(DEFAULT_UPDATE_QP) / 2 * (1 + 1e-5)
    for name in ("enc.weight", "frozen.weight"):  # the base's coding error is corrected too
        assert np.abs(step1[name] - tuned[name]).max() <= half
        assert np.abs(decoded_base[name] - tuned[name]).max() > half
    with pytest.raises(BaseMismatchError):
        nnsqueeze.apply_update(first, [base])  # the float original is another base
    again = {k: v.copy() for k, v in step1.items()}
    again["head.weight"] = again["head.weight"] + np.float32(0.01)
    second = tmp_path / "u2.nnsq"
    nnsqueeze.compress_update(again, [base_file, first], second, trellis=False, coherence=None)
    final = nnsqueeze.apply_update(second, [base_file, first])
    np.testing.assert_array_equal(final["enc.weight"], step1["enc.weight"])
    assert np.abs(final["head.weight"] - again["head.weight"]).max() <= half
    with pytest.raises(BaseMismatchError):
        nnsqueeze.apply_update(second, [base_file])  # a link of the chain missing
    with pytest.raises(BaseMismatchError, match="is an update"):
        nnsqueeze.apply_update(second, [first])  # the chain must start at a full model


def test_bfloat16_updates_round_to_the_dtype() -> None:
    rng = np.random.default_rng(3)
    base32 = rng.normal(0, 0.05, (32, 32)).astype(np.float32)
    base = [NamedTensor("w", from_float32(base32, "bfloat16"), "bfloat16")]
    tuned32 = to_float32(base[0].array, "bfloat16") + np.float32(0.004)
    tuned = [NamedTensor("w", from_float32(tuned32, "bfloat16"), "bfloat16")]
    from nnsqueeze.io._common import Checkpoint

    report = nnsqueeze.compress_update(Checkpoint("t", iter(tuned), 1), [Checkpoint("t", iter(base), 1)])
    assert report.data is not None
    out = apply_update_tensors(report.data, [Checkpoint("t", iter(base), 1)])
    assert out["w"].dtype == "bfloat16"
    got = to_float32(out["w"].array, "bfloat16")
    assert np.abs(got - to_float32(tuned[0].array, "bfloat16")).max() <= 2 * np.abs(tuned32).max() * 2**-8


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "nnsqueeze", *args]
    return subprocess.run(cmd, capture_output=True, text=True, check=False)


def test_cli_updates(tmp_path: Path) -> None:
    base, tuned = base_and_tuned()
    write_checkpoint(tmp_path / "base.safetensors", open_checkpoint(base).tensors)
    write_checkpoint(tmp_path / "tuned.safetensors", open_checkpoint(tuned).tensors)
    upd = tmp_path / "u.nnsq"
    r = cli(
        "compress",
        str(tmp_path / "tuned.safetensors"),
        "--base",
        str(tmp_path / "base.safetensors"),
        "-o",
        str(upd),
    )
    assert r.returncode == 0, r.stderr
    info = cli("info", str(upd))
    assert "update of the model with SHA-256" in info.stdout
    assert "2 delta, 1 standalone, 2 unchanged" in info.stdout
    out = tmp_path / "new.safetensors"
    r = cli("decompress", str(upd), "--base", str(tmp_path / "base.safetensors"), "-o", str(out))
    assert r.returncode == 0, r.stderr
    got = {t.name: t.array for t in open_checkpoint(out).tensors}
    np.testing.assert_array_equal(got["frozen.weight"], base["frozen.weight"])
    wrong = cli("decompress", str(upd), "--base", str(tmp_path / "tuned.safetensors"), "-o", str(out))
    assert wrong.returncode == 2
    assert "SHA-256" in wrong.stderr
    assert wrong.stderr.count("\n") == 1
    missing = cli("decompress", str(upd), "-o", str(tmp_path / "x.safetensors"))
    assert missing.returncode == 2
    assert "--base" in missing.stderr
