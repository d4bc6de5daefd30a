"""Tests of the ``nnsqueeze`` command line (in-process through ``nnsqueeze.cli.main``)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import nnsqueeze
from nnsqueeze import CompressOptions
from nnsqueeze.cli import main
from nnsqueeze.coding.container import FORMAT_VERSION
from nnsqueeze.io import NamedTensor, write_checkpoint


def _tensors() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(17)
    return {
        "features.0.weight": rng.normal(0, 0.1, (8, 3, 3, 3)).astype(np.float32),
        "features.0.bias": rng.normal(0, 0.01, 8).astype(np.float32),
        "classifier.weight": rng.normal(0, 0.05, (10, 32)).astype(np.float16),
        "classifier.bias": np.zeros(10, np.float64),
        "num_batches_tracked": np.array(7, np.int64),
        "mask": rng.random((4, 4)) > 0.5,
    }


def _check_close(
    got: dict[str, np.ndarray], want: dict[str, np.ndarray], step: float, vector_step: float
) -> None:
    assert sorted(got) == sorted(want)
    for name, w in want.items():
        g = np.asarray(got[name])
        assert (g.shape, g.dtype) == (w.shape, w.dtype), name
        if w.dtype.kind == "f":
            s = step if w.ndim >= 2 else vector_step
            tol = s / 2 + np.abs(w.astype(np.float64)) * 2.0**-10
            assert np.all(np.abs(g.astype(np.float64) - w) <= tol), name
        else:
            np.testing.assert_array_equal(g, w)


@pytest.fixture
def npz(tmp_path: Path) -> Path:
    path = tmp_path / "model.npz"
    np.savez(path, **_tensors())  # type: ignore[arg-type]
    return path


@pytest.fixture
def safetensors_file(tmp_path: Path) -> Path:
    pytest.importorskip("safetensors")
    path = tmp_path / "model.safetensors"
    write_checkpoint(
        path, (NamedTensor(k, v, str(v.dtype)) for k, v in _tensors().items()), metadata={"a": "b"}
    )
    return path


def test_compress_npz_info_decompress(npz: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compress", str(npz), "--threads", "2"]) == 0
    out = capsys.readouterr().out
    nnsq = npz.with_suffix(".nnsq")
    assert nnsq.is_file()
    assert str(nnsq) in out
    assert "bits/param" in out

    assert main(["info", str(nnsq)]) == 0
    info = capsys.readouterr().out
    lines = info.splitlines()
    header = next(line for line in lines if line.startswith("tensor"))
    assert "bits/param" in header.split()
    for name in _tensors():
        row = next(line for line in lines if line.split()[:1] == [name])
        float(row.split()[-1])  # the bits/param column is a number
    assert f"format {FORMAT_VERSION[0]}.{FORMAT_VERSION[1]}" in info
    assert "6 tensors" in info

    restored = tmp_path / "restored.npz"
    assert main(["decompress", str(nnsq), "-o", str(restored)]) == 0
    with np.load(restored) as z:
        got = {k: z[k] for k in z.files}
    _check_close(got, _tensors(), CompressOptions().weight_step, CompressOptions().vector_step)


def test_compress_safetensors_with_step(
    safetensors_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from safetensors.numpy import load_file

    nnsq = tmp_path / "out" / "m.nnsq"
    nnsq.parent.mkdir()
    assert main(["compress", str(safetensors_file), "-o", str(nnsq), "--step", "0.01"]) == 0
    assert main(["info", str(nnsq)]) == 0
    info = capsys.readouterr().out
    assert "0.01" in info
    assert "metadata a = b" in info
    restored = tmp_path / "restored.safetensors"
    assert main(["decompress", str(nnsq), "-o", str(restored)]) == 0
    opts = CompressOptions(step=0.01)
    _check_close(dict(load_file(restored)), _tensors(), opts.weight_step, opts.vector_step)


def test_compress_qp_and_lossless(npz: Path, tmp_path: Path) -> None:
    coarse, lossless = tmp_path / "coarse.nnsq", tmp_path / "lossless.nnsq"
    assert main(["compress", str(npz), "-o", str(coarse), "--qp", "-16"]) == 0
    assert main(["compress", str(npz), "-o", str(lossless), "--lossless"]) == 0
    assert coarse.stat().st_size < lossless.stat().st_size
    opts = CompressOptions(qp=-16)
    _check_close(nnsqueeze.decompress(coarse), _tensors(), opts.weight_step, opts.vector_step)
    got = nnsqueeze.decompress(lossless)
    for name, want in _tensors().items():
        np.testing.assert_array_equal(got[name], want)


def test_decompress_to_pt(npz: Path, tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    nnsq = tmp_path / "m.nnsq"
    assert main(["compress", str(npz), "-o", str(nnsq)]) == 0
    pt = tmp_path / "m.pt"
    assert main(["decompress", str(nnsq), "-o", str(pt), "--threads", "1"]) == 0
    state = torch.load(pt, weights_only=True)
    _check_close(
        {k: v.numpy() for k, v in state.items()},
        _tensors(),
        CompressOptions().weight_step,
        CompressOptions().vector_step,
    )


def test_step_and_qp_are_exclusive(npz: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["compress", str(npz), "--step", "0.1", "--qp", "-20"])
    assert exc.value.code == 2
    assert "not allowed with" in capsys.readouterr().err
    assert not npz.with_suffix(".nnsq").exists()


@pytest.mark.parametrize("bad", ["0", "-1", "abc", "nan"])
def test_bad_step_is_a_usage_error(npz: Path, bad: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["compress", str(npz), f"--step={bad}"])
    assert exc.value.code == 2
    assert "--step" in capsys.readouterr().err


def _assert_clean_error(capsys: pytest.CaptureFixture[str], *needles: str) -> str:
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    assert "Traceback" not in captured.out
    assert captured.err.startswith("nnsqueeze "), captured.err
    for needle in needles:
        assert needle in captured.err
    return captured.err


def test_missing_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope.npz"
    assert main(["compress", str(missing)]) == 2
    _assert_clean_error(capsys, "nope.npz")
    assert main(["info", str(tmp_path / "nope.nnsq")]) == 2
    _assert_clean_error(capsys, "nope.nnsq")
    assert main(["decompress", str(tmp_path / "nope.nnsq"), "-o", str(tmp_path / "x.npz")]) == 2
    _assert_clean_error(capsys, "nope.nnsq")
    assert not (tmp_path / "x.npz").exists()


def test_corrupt_nnsq(npz: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    nnsq = tmp_path / "m.nnsq"
    assert main(["compress", str(npz), "-o", str(nnsq)]) == 0
    data = bytearray(nnsq.read_bytes())
    data[40] ^= 0xFF
    nnsq.write_bytes(bytes(data))
    capsys.readouterr()
    out = tmp_path / "out.npz"
    assert main(["decompress", str(nnsq), "-o", str(out)]) == 2
    _assert_clean_error(capsys, "corrupt")
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.nnsq", "model.npz"]

    nnsq.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    assert main(["info", str(nnsq)]) == 2
    _assert_clean_error(capsys, "not an .nnsq file")


def test_unknown_formats(npz: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    weird = tmp_path / "model.xyz"
    weird.write_bytes(b"123")
    assert main(["compress", str(weird)]) == 2
    _assert_clean_error(capsys, ".xyz")
    nnsq = tmp_path / "m.nnsq"
    assert main(["compress", str(npz), "-o", str(nnsq)]) == 0
    capsys.readouterr()
    assert main(["decompress", str(nnsq), "-o", str(tmp_path / "m.txt")]) == 2
    _assert_clean_error(capsys, ".txt")


def test_nan_weights_are_an_error_with_strict(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "nan.npz"
    np.savez(path, w=np.full((3, 3), np.nan, np.float32))
    assert main(["compress", str(path), "--strict"]) == 2
    _assert_clean_error(capsys, "w:", "NaN")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nan.npz"]  # nothing half-written


def test_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main([])
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        main(["decompress", "x.nnsq"])  # -o is required
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    assert "compress" in capsys.readouterr().out


def test_python_m_help() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "nnsqueeze", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    for command in ("compress", "decompress", "info"):
        assert command in result.stdout


def test_compress_with_rdo_trellis_and_target_size(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rng = np.random.default_rng(0)
    src = tmp_path / "m.npz"
    np.savez(src, w=rng.normal(0, 0.05, (256, 256)).astype(np.float32), b=np.zeros(256, np.float32))
    out = tmp_path / "m.nnsq"
    assert main(["compress", str(src), "-o", str(out), "--rdo", "--trellis", "--target-size", "30kB"]) == 0
    assert 0.98 * 30_000 <= out.stat().st_size <= 30_000
    assert main(["info", str(out)]) == 0
    assert "dependent" in capsys.readouterr().out
    assert main(["compress", str(src), "-o", str(out), "--target-bpp", "2.5"]) == 0
    assert out.stat().st_size * 8 / (256 * 256 + 256) <= 2.5
