"""Signed colours, the PNG writer, token HTML, and the matplotlib plots (when matplotlib is there)."""

from __future__ import annotations

import struct
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

from nnsqueeze.errors import ConfigError, MissingDependencyError
from nnsqueeze.xai.heatmap import (
    heatmap_grid,
    save_heatmap,
    signal_grid,
    signed_colors,
    tokens_html,
    tokens_png,
    write_png,
)


def _read_png(path: Path) -> np.ndarray:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, shape = 8, b"", (0, 0, 0)
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert crc == zlib.crc32(kind + body)
        if kind == b"IHDR":
            w, h, depth, color = struct.unpack(">IIBB", body[:10])
            assert depth == 8
            shape = (h, w, 3 if color == 2 else 1)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    raw = np.frombuffer(zlib.decompress(idat), np.uint8).reshape(shape[0], -1)
    assert (raw[:, 0] == 0).all()
    return raw[:, 1:].reshape(shape)


def test_signed_colors() -> None:
    rgb = signed_colors(np.array([-2.0, 0.0, 2.0, 1.0]))
    assert rgb.dtype == np.uint8
    assert rgb[1].tolist() == [247, 247, 247]  # zero is white
    assert rgb[2].tolist() == [178, 24, 43]  # the largest positive is red
    assert rgb[0].tolist() == [33, 102, 172]  # the largest negative is blue
    assert rgb[3, 0] > rgb[3, 2]  # half-way positive: reddish
    assert signed_colors(np.zeros(3)).tolist() == [[247, 247, 247]] * 3
    with pytest.raises(ConfigError, match="NaN"):
        signed_colors(np.array([np.nan, 1.0]))


def test_write_png_round_trip(tmp_path: Path) -> None:
    image = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    back = _read_png(write_png(tmp_path / "a.png", image, scale=2))
    assert back.shape == (4, 6, 3)
    assert back[::2, ::2].tolist() == image.tolist()
    grey = _read_png(write_png(tmp_path / "g.png", np.array([[0, 255]], np.uint8)))
    assert grey[..., 0].tolist() == [[0, 255]]
    relevance = torch.tensor([[[1.0, -1.0], [0.0, 0.5]]])
    heat = _read_png(save_heatmap(tmp_path / "h.png", relevance, scale=1))
    assert heat.tolist() == signed_colors(relevance[0].numpy()).tolist()
    with pytest.raises(ConfigError):
        write_png(tmp_path / "bad.png", np.zeros((2, 2), np.float32))


def test_tokens_html() -> None:
    page = tokens_html(["<s>", "good", "bad"], [0.0, 1.0, -0.5], title="why positive")
    assert page.count("<span") == 3
    assert "&lt;s&gt;" in page
    assert 'title="+1"' in page
    assert "rgb(178,24,43)" in page
    with pytest.raises(ConfigError, match="2 tokens but 3"):
        tokens_html(["a", "b"], [1.0, 2.0, 3.0])


def test_plots(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    gen = torch.Generator().manual_seed(0)
    grid = heatmap_grid(
        tmp_path / "grid.png",
        torch.rand(2, 8, 8, generator=gen),
        torch.randn(2, 3, 8, 8, generator=gen),
        row_titles=["a", "b"],
        col_titles=["input", "why 3", "why 8", "3 not 8"],
        title="t",
    )
    signals = signal_grid(
        tmp_path / "signals.png", torch.rand(2, 20, generator=gen), torch.randn(2, 2, 20, generator=gen)
    )
    tokens = tokens_png(tmp_path / "tokens.png", ["a", "b", "c"], [1.0, -1.0, 0.2], title="t")
    for path in (grid, signals, tokens):
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_missing_matplotlib_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(MissingDependencyError, match=r'pip install "nnsqueeze\[xai\]"'):
        tokens_png(tmp_path / "t.png", ["a"], [1.0])
