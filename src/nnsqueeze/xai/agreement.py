"""Compression × explanation: how much a decoded ``.nnsq`` model still looks where the original looks.

For a model and its versions decoded at several QPs, :func:`compression_agreement` explains the same
inputs (for the same target classes) with each, and compares every heatmap with the original's:

* Spearman rank correlation of the relevance values (1: same ordering of all input elements),
* top-k overlap: the share of the original's ``fraction`` most relevant elements that are also among
  the decoded model's most relevant ones,
* agreement of the predictions, and accuracy when labels are given.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

import nnsqueeze
from nnsqueeze.errors import ConfigError

__all__ = [
    "AgreementRow",
    "DecodedModel",
    "compression_agreement",
    "decode_at_qps",
    "format_agreement",
    "rank_correlation",
    "topk_overlap",
]


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 0..n-1 of ``values``, ties sharing their average rank."""
    order = np.argsort(values, kind="mergesort")
    ordered = values[order]
    starts = np.r_[0, np.flatnonzero(np.diff(ordered)) + 1]
    ends = np.r_[starts[1:], len(values)]
    ranks = np.empty(len(values))
    ranks[order] = np.repeat((starts + ends - 1) / 2.0, ends - starts)
    return ranks


def rank_correlation(a: Tensor, b: Tensor) -> np.ndarray:
    """Spearman's rank correlation between the maps of ``a`` and ``b`` per sample (dim 0), ties averaged.

    A constant map has no ordering: its correlation is reported as NaN."""
    if a.shape != b.shape:
        msg = f"heatmaps differ in shape: {tuple(a.shape)} vs {tuple(b.shape)}"
        raise ConfigError(msg)
    x = a.detach().flatten(1).double().cpu().numpy()
    y = b.detach().flatten(1).double().cpu().numpy()
    out = np.empty(x.shape[0])
    for i in range(x.shape[0]):
        rx, ry = _average_ranks(x[i]), _average_ranks(y[i])
        rx, ry = rx - rx.mean(), ry - ry.mean()
        denom = np.sqrt((rx * rx).sum() * (ry * ry).sum())
        out[i] = (rx * ry).sum() / denom if denom > 0 else np.nan
    return out


def topk_overlap(a: Tensor, b: Tensor, fraction: float = 0.1) -> np.ndarray:
    """Per sample, the share of ``a``'s top ``fraction`` elements (most positive) also in ``b``'s top."""
    if a.shape != b.shape:
        msg = f"heatmaps differ in shape: {tuple(a.shape)} vs {tuple(b.shape)}"
        raise ConfigError(msg)
    if not 0 < fraction <= 1:
        msg = f"fraction must be in (0, 1], got {fraction}"
        raise ConfigError(msg)
    fa, fb = a.detach().flatten(1), b.detach().flatten(1)
    k = max(1, round(fraction * fa.shape[1]))
    top_a = torch.topk(fa, k, dim=1).indices
    top_b = torch.topk(fb, k, dim=1).indices
    hits = (top_a.unsqueeze(2) == top_b.unsqueeze(1)).any(dim=2).sum(dim=1)
    return (hits.double() / k).cpu().numpy()


@dataclass(frozen=True)
class DecodedModel:
    """A state dict after an ``.nnsq`` round trip at ``qp`` (``qp=None``: the original)."""

    qp: int | None
    bits_per_param: float
    file_bytes: int
    state_dict: dict[str, Tensor]


def decode_at_qps(
    state_dict: Mapping[str, Tensor], qps: Sequence[int], *, threads: int | None = None
) -> list[DecodedModel]:
    """The original (``qp=None``, 32 bits per parameter) and its decoded version at each QP."""
    original = {k: v.detach().cpu() for k, v in state_dict.items()}
    out = [DecodedModel(None, 32.0, sum(v.numel() * v.element_size() for v in original.values()), original)]
    for qp in qps:
        report = nnsqueeze.compress(original, qp=qp, threads=threads)
        assert report.data is not None
        decoded = nnsqueeze.decompress(report.data, threads=threads)
        # np.array copies: decoded arrays may be read-only, which torch.from_numpy warns about
        tensors = {k: torch.from_numpy(np.array(v)) for k, v in decoded.items()}
        out.append(DecodedModel(qp, report.bits_per_element, report.file_bytes, tensors))
    return out


@dataclass(frozen=True)
class AgreementRow:
    """Explanations of one decoded model against the original's (means over the inputs)."""

    method: str
    qp: int | None
    bits_per_param: float
    file_bytes: int
    accuracy: float | None
    prediction_agreement: float
    spearman: float
    topk: float


Explain = Callable[[nn.Module, Tensor, Tensor], Tensor]


def compression_agreement(
    build_model: Callable[[], nn.Module],
    decoded: Sequence[DecodedModel],
    x: Tensor,
    target: Tensor,
    methods: Mapping[str, Explain],
    *,
    labels: Tensor | None = None,
    fraction: float = 0.1,
) -> list[AgreementRow]:
    """Explains ``x`` for ``target`` with every decoded model and every method, against the first entry
    of ``decoded`` (the original).  ``build_model()`` must return a fresh model to load a state into."""
    if not decoded:
        msg = "need at least the original model"
        raise ConfigError(msg)
    rows: list[AgreementRow] = []
    reference: dict[str, Tensor] = {}
    reference_pred: Tensor | None = None
    for entry in decoded:
        model = build_model()
        model.load_state_dict(entry.state_dict, strict=True)
        model.eval()
        with torch.no_grad():
            pred = model(x).argmax(dim=1)
        if reference_pred is None:
            reference_pred = pred
        accuracy = None if labels is None else float((pred == labels).double().mean())
        for name, explain in methods.items():
            relevance = explain(model, x, target).detach()
            if name not in reference:
                reference[name] = relevance
            rows.append(
                AgreementRow(
                    method=name,
                    qp=entry.qp,
                    bits_per_param=entry.bits_per_param,
                    file_bytes=entry.file_bytes,
                    accuracy=accuracy,
                    prediction_agreement=float((pred == reference_pred).double().mean()),
                    spearman=float(np.nanmean(rank_correlation(relevance, reference[name]))),
                    topk=float(topk_overlap(reference[name], relevance, fraction).mean()),
                )
            )
    return rows


def format_agreement(rows: Sequence[AgreementRow], fraction: float = 0.1) -> str:
    """A markdown table, one row per (QP, method)."""
    lines = [
        "| QP | bits/param | bytes | accuracy | same prediction | method | Spearman ρ | "
        f"top-{fraction:.0%} overlap |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        qp = "original" if r.qp is None else str(r.qp)
        acc = "-" if r.accuracy is None else f"{r.accuracy:.4f}"
        lines.append(
            f"| {qp} | {r.bits_per_param:.2f} | {r.file_bytes} | {acc} | {r.prediction_agreement:.4f} | "
            f"{r.method} | {r.spearman:.4f} | {r.topk:.4f} |"
        )
    return "\n".join(lines)
