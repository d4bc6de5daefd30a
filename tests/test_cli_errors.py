"""The command line on a closed pipe, on missing optional packages and on crafted headers: one line
on stderr and exit 2 (or a quiet exit for the pipe), never a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import nnsqueeze
from nnsqueeze.cli import main


def test_info_into_a_closed_pipe_exits_quietly(tmp_path: Path) -> None:
    tensors = {f"layer{i}.weight": np.full((2, 2), i, np.float32) for i in range(400)}
    path = tmp_path / "many.nnsq"
    nnsqueeze.compress(tensors, path, threads=1)
    proc = subprocess.run(
        f"{sys.executable} -m nnsqueeze info {path} | head -n 1",
        shell=True,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.stdout.startswith(str(path))
    assert "Traceback" not in proc.stderr
    assert "BrokenPipe" not in proc.stderr


def test_missing_optional_package_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` now fails as if not installed
    assert main(["demo"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert 'pip install "nnsqueeze[' in err[0]
    assert "'torch'" in err[0] or "'sklearn'" in err[0]


def test_implausible_shape_in_a_header_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from nnsqueeze.coding.container import RecordHeader

    from .conftest import rebuild

    header = RecordHeader("huge", "float32", (2**69, 3), 5, None, 4, 0, 1, ())
    path = tmp_path / "huge.nnsq"
    path.write_bytes(rebuild([(header, b"")]))
    restored = str(tmp_path / "out.npz")
    for argv in (
        ["info", str(path)],
        ["info", "--formats", str(path)],
        ["decompress", str(path), "-o", restored],
    ):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1
        assert "implausible shape" in err[0]
