"""The ``explain`` subcommand (registered here on a bare parser, as ``nnsqueeze.cli.main`` does)."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest
import torch

import nnsqueeze
from nnsqueeze.cli.explain import add_explain_parser
from nnsqueeze.errors import CheckpointError, ConfigError


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="nnsqueeze")
    add_explain_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.run(args))


def test_demo_trains_then_loads(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "demo"
    assert (
        run(
            ["explain", "--demo", "digits", "-o", str(out), "--epochs", "3", "--images", "16", "--steps", "9"]
        )
        == 0
    )
    first = capsys.readouterr().out
    assert "(trained)" in first
    assert "| random |" in first
    for name in ("digits_cnn.nnsq", "aopc.md"):
        assert (out / name).exists()
    assert run(["explain", "--demo", "digits", "-o", str(out), "--images", "16", "--steps", "5"]) == 0
    assert "(loaded)" in capsys.readouterr().out


def test_explain_a_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from nnsqueeze.zoo.digits import build_model

    torch.manual_seed(0)
    model = build_model()
    nnsqueeze.compress(model.state_dict(), tmp_path / "m.nnsq", lossless=True)
    x = np.random.default_rng(0).random((3, 1, 8, 8)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    out = tmp_path / "out"
    argv = ["explain", str(tmp_path / "m.nnsq"), "--input", str(tmp_path / "x.npy"), "-o", str(out)]
    assert run([*argv, "--target", "4"]) == 0
    text = capsys.readouterr().out
    assert "rules: 0: Flat" in text
    relevance = np.load(out / "relevance.npy")
    assert relevance.shape == x.shape
    assert len(list(out.glob("heatmap_*_class4.png"))) == 3
    assert run([*argv, "--composite", "epsilon_gamma_box", "--low", "0", "--high", "1"]) == 0


def test_errors(tmp_path: Path) -> None:
    from nnsqueeze.zoo.digits import build_model

    with pytest.raises(ConfigError, match="--demo digits"):
        run(["explain"])
    nnsqueeze.compress(build_model().state_dict(), tmp_path / "m.nnsq")
    np.save(tmp_path / "x.npy", np.zeros((1, 1, 8, 8), np.float32))
    base = ["explain", str(tmp_path / "m.nnsq"), "--input", str(tmp_path / "x.npy"), "-o", str(tmp_path)]
    with pytest.raises(ConfigError, match="--arch must be"):
        run([*base, "--arch", "nonsense"])
    with pytest.raises(CheckpointError, match="does not fit the architecture"):
        run([*base, "--arch", "torch.nn:Identity"])
    (tmp_path / "x.txt").write_text("1 2 3")
    with pytest.raises(CheckpointError, match=r"\.npy, \.npz or \.pt"):
        run(["explain", str(tmp_path / "m.nnsq"), "--input", str(tmp_path / "x.txt")])
