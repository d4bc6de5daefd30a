"""Signed heatmaps: red for what speaks for the target, blue for what speaks against, white for neither.

Colouring and PNG writing need only NumPy (:func:`signed_colors`, :func:`write_png`, :func:`save_heatmap`);
grids with titles (:func:`heatmap_grid`, :func:`signal_grid`) and token images (:func:`tokens_png`) need
matplotlib, imported when called (``pip install "nnsqueeze[xai]"``).  Token relevance also renders as
self-contained HTML (:func:`tokens_html`), without matplotlib.

Each map is scaled by its largest absolute value (or a given ``vmax``), so 0 is always white and the
colours of one map are comparable; a grid row shares one scale, so "why 3" and "why not 8" compare.
"""

from __future__ import annotations

import html
import struct
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from nnsqueeze.errors import ConfigError, MissingDependencyError

__all__ = [
    "DIVERGING",
    "heatmap_grid",
    "save_heatmap",
    "signal_grid",
    "signed_colors",
    "tokens_html",
    "tokens_png",
    "write_png",
]

# A diverging blue-white-red scale (ColorBrewer RdBu, reversed): position in [-1, 1] -> RGB.
DIVERGING = (
    (-1.0, (33, 102, 172)),
    (-0.5, (146, 197, 222)),
    (0.0, (247, 247, 247)),
    (0.5, (244, 165, 130)),
    (1.0, (178, 24, 43)),
)


def _as_numpy(values: Any) -> np.ndarray:
    if hasattr(values, "detach"):
        values = values.detach().cpu().numpy()
    return np.asarray(values, dtype=np.float64)


def _scale(values: np.ndarray, vmax: float | None) -> np.ndarray:
    top = float(np.max(np.abs(values))) if vmax is None else float(vmax)
    if not np.isfinite(top):
        msg = "relevance contains NaN or Inf"
        raise ConfigError(msg)
    return np.clip(values / top, -1, 1) if top > 0 else np.zeros_like(values)


def signed_colors(relevance: Any, vmax: float | None = None) -> np.ndarray:
    """RGB ``uint8`` colours (``relevance.shape + (3,)``) on the diverging scale; ``vmax`` defaults to
    the largest absolute relevance."""
    t = _scale(_as_numpy(relevance), vmax)
    anchors = np.array([a for a, _ in DIVERGING])
    colors = np.array([c for _, c in DIVERGING], dtype=np.float64)
    rgb = np.stack([np.interp(t, anchors, colors[:, i]) for i in range(3)], axis=-1)
    return np.round(rgb).astype(np.uint8)


def write_png(path: str | Path, image: np.ndarray, scale: int = 1) -> Path:
    """Writes an 8-bit grey (H, W) or RGB (H, W, 3) image as PNG, each pixel as a ``scale``² block."""
    img = np.asarray(image)
    if img.dtype != np.uint8 or img.ndim not in (2, 3) or (img.ndim == 3 and img.shape[2] != 3):
        msg = f"write_png needs uint8 (H, W) or (H, W, 3), got {img.dtype} {img.shape}"
        raise ConfigError(msg)
    if scale > 1:
        img = np.repeat(np.repeat(img, scale, axis=0), scale, axis=1)
    height, width = img.shape[:2]
    color_type = 2 if img.ndim == 3 else 0
    rows = img.reshape(height, -1)
    raw = np.concatenate([np.zeros((height, 1), np.uint8), rows], axis=1).tobytes()

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, color_type, 0, 0, 0)
    data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 9))
    data += chunk(b"IEND", b"")
    out = Path(path)
    out.write_bytes(data)
    return out


def save_heatmap(path: str | Path, relevance: Any, *, scale: int = 8, vmax: float | None = None) -> Path:
    """A 2-D relevance map (a leading channel axis of size 1 is dropped) as a signed-colour PNG."""
    values = _as_numpy(relevance)
    while values.ndim > 2 and values.shape[0] == 1:
        values = values[0]
    if values.ndim == 3:  # several channels: their sum is the pixel's relevance
        values = values.sum(axis=0)
    if values.ndim != 2:
        msg = f"save_heatmap needs a 2-D map, got shape {values.shape}"
        raise ConfigError(msg)
    return write_png(path, signed_colors(values, vmax), scale)


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
    except ImportError as exc:
        msg = 'this plot needs matplotlib: pip install "nnsqueeze[xai]"'
        raise MissingDependencyError(msg) from exc
    return plt


def _cmap() -> Any:
    from matplotlib.colors import LinearSegmentedColormap

    return LinearSegmentedColormap.from_list(
        "nnsqueeze_signed", [((a + 1) / 2, tuple(c / 255 for c in rgb)) for a, rgb in DIVERGING]
    )


def _color_limits(maps: np.ndarray, per_map_scale: bool) -> np.ndarray:
    """Symmetric colour limits (N, K) of maps (N, K, ...): each map's largest |R|, or its row's;
    1 where a map (or row) is all zeros."""
    n, k = maps.shape[:2]
    peak = np.abs(maps.reshape(n, k, -1)).max(axis=2) if maps.size else np.zeros((n, k))
    if not per_map_scale:
        peak = np.broadcast_to(peak.max(axis=1, keepdims=True) if k else peak, (n, k))
    return np.where(peak > 0, peak, 1.0)


def _save_grid(
    plt: Any,
    fig: Any,
    axes: Any,
    path: str | Path,
    col_titles: Sequence[str] | None,
    title: str | None,
    dpi: int,
) -> Path:
    """Column titles over the first row, the figure title, then the PNG."""
    if col_titles is not None:
        for j, text in enumerate(col_titles[: axes.shape[1]]):
            axes[0, j].set_title(text, fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=dpi)
    plt.close(fig)
    return out


def heatmap_grid(
    path: str | Path,
    images: Any,
    relevances: Any,
    *,
    row_titles: Sequence[str] | None = None,
    col_titles: Sequence[str] | None = None,
    title: str | None = None,
    per_map_scale: bool = False,
    dpi: int = 100,
) -> Path:
    """A grid: per row an input image (N, H, W) and its maps (N, K, H, W), one signed scale per row
    (``per_map_scale``: per map, for maps of different methods whose units differ)."""
    plt = _pyplot()
    imgs = _as_numpy(images)
    maps = _as_numpy(relevances)
    if imgs.ndim != 3 or maps.ndim != 4 or maps.shape[0] != imgs.shape[0]:
        msg = f"need images (N, H, W) and relevances (N, K, H, W), got {imgs.shape} and {maps.shape}"
        raise ConfigError(msg)
    n, k = maps.shape[:2]
    size = (1.6 * (k + 1), 1.6 * n + (0.5 if title else 0))
    fig, axes = plt.subplots(n, k + 1, figsize=size, squeeze=False)
    cmap = _cmap()
    limits = _color_limits(maps, per_map_scale)
    for i in range(n):
        axes[i, 0].imshow(imgs[i], cmap="gray_r")
        for j in range(k):
            vmax = float(limits[i, j])
            axes[i, j + 1].imshow(maps[i, j], cmap=cmap, vmin=-vmax, vmax=vmax)
        if row_titles is not None:
            axes[i, 0].set_ylabel(row_titles[i], fontsize=8)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    return _save_grid(plt, fig, axes, path, col_titles, title, dpi)


def signal_grid(
    path: str | Path,
    signals: Any,
    relevances: Any,
    *,
    row_titles: Sequence[str] | None = None,
    col_titles: Sequence[str] | None = None,
    title: str | None = None,
    per_map_scale: bool = False,
    dpi: int = 100,
) -> Path:
    """The 1-D version of :func:`heatmap_grid`: signals (N, L), maps (N, K, L) drawn as coloured points."""
    plt = _pyplot()
    sig = _as_numpy(signals)
    maps = _as_numpy(relevances)
    if sig.ndim != 2 or maps.ndim != 3 or maps.shape[0] != sig.shape[0]:
        msg = f"need signals (N, L) and relevances (N, K, L), got {sig.shape} and {maps.shape}"
        raise ConfigError(msg)
    n, k, length = maps.shape
    fig, axes = plt.subplots(n, k, figsize=(2.4 * k, 1.4 * n + (0.5 if title else 0)), squeeze=False)
    cmap = _cmap()
    t = np.arange(length)
    limits = _color_limits(maps, per_map_scale)
    for i in range(n):
        for j in range(k):
            vmax = float(limits[i, j])
            ax = axes[i, j]
            ax.plot(t, sig[i], color="0.6", linewidth=0.8)
            ax.scatter(t, sig[i], c=maps[i, j], cmap=cmap, vmin=-vmax, vmax=vmax, s=12, edgecolors="none")
            ax.set_xticks([])
            ax.set_yticks([])
        if row_titles is not None:
            axes[i, 0].set_ylabel(row_titles[i], fontsize=8)
    return _save_grid(plt, fig, axes, path, col_titles, title, dpi)


def tokens_html(tokens: Sequence[str], relevance: Any, *, title: str | None = None) -> str:
    """A self-contained HTML snippet: each token on a red (for) or blue (against) background whose
    strength is its relevance relative to the largest; the value shows on hover."""
    values = _as_numpy(relevance).reshape(-1)
    if len(tokens) != values.shape[0]:
        msg = f"{len(tokens)} tokens but {values.shape[0]} relevance values"
        raise ConfigError(msg)
    colors = signed_colors(values)
    spans = []
    for token, value, (r, g, b) in zip(tokens, values, colors, strict=True):
        spans.append(
            f'<span style="background: rgb({r},{g},{b}); padding: 1px 3px; margin: 1px; border-radius: 3px" '
            f'title="{value:+.4g}">{html.escape(token)}</span>'
        )
    head = f"<h4>{html.escape(title)}</h4>\n" if title else ""
    return f'<div style="font-family: sans-serif; line-height: 1.9">\n{head}{" ".join(spans)}\n</div>\n'


def tokens_png(
    path: str | Path, tokens: Sequence[str], relevance: Any, *, title: str | None = None, width: int = 12
) -> Path:
    """Token relevance as a PNG: tokens laid out in lines on signed-colour boxes (needs matplotlib)."""
    plt = _pyplot()
    values = _as_numpy(relevance).reshape(-1)
    if len(tokens) != values.shape[0]:
        msg = f"{len(tokens)} tokens but {values.shape[0]} relevance values"
        raise ConfigError(msg)
    colors = signed_colors(values) / 255.0
    per_line = max(1, width)
    lines = (len(tokens) + per_line - 1) // per_line
    fig = plt.figure(figsize=(1.0 * per_line, 0.45 * lines + (0.4 if title else 0.1)))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_axis_off()
    ax.set_xlim(0, per_line)
    ax.set_ylim(-(lines + (1 if title else 0)), 0)
    if title:
        ax.text(0.05, -0.5, title, fontsize=10, va="center")
    strength = np.abs(_scale(values, None))
    for i, (token, color) in enumerate(zip(tokens, colors, strict=True)):
        row, col = divmod(i, per_line)
        y = -(row + (1.5 if title else 0.5))
        ax.text(
            col + 0.5,
            y,
            token,
            ha="center",
            va="center",
            fontsize=9,
            color="white" if strength[i] > 0.6 else "black",
            bbox={"boxstyle": "round,pad=0.25", "facecolor": tuple(color), "edgecolor": "none"},
        )
    out = Path(path)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
