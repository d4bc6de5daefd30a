"""Rate-fidelity benchmark of the recommended data-free RD mode (``--rdo``) on every zoo model.

One run per model, on the model's **test** part (the settings were chosen on validation data by
``tune_rd.py``; MiniLM and CREPE were not among its tuning models):

* ``uniform``: nnsqueeze, plain rounding at one step (``compress(..., step=s)``);
* ``rdo``: nnsqueeze's recommended RD mode (``compress(..., step=s, rdo=True)``: data-free step
  allocation between tensors plus RDOQ as ``nnsqueeze.RDO_DEFAULTS`` says);
* ``calibrated``: the calibrated mode (``compress(..., calibration=task.calibration("validation"))``:
  steps from the output distortion each tensor's rounding causes on the validation inputs, measured
  once at the middle QP of the grid, strength ``nnsqueeze.CALIBRATED_DEFAULTS``);
* NNCodec 2.1.3 URQ and DQ (``nncodec_runner.py`` in its own venv, its API defaults otherwise).

Every coder uses the same steps: NNCodec's step of each integer QP at ``qp_density`` 4, 1-D tensors
256 times finer (NNCodec's ``nonweight_qp`` = QP - 128).  Protocol (window, threshold, BD-rate):
``rd_protocol.py``.  NNCodec does not code integer tensors (CREPE's BatchNorm counters): they are
restored from the original for its decode and cost it nothing.

Writes ``RESULTS_RD.md``, ``rd_results.json`` (compact) and one PNG per model to ``--out``.

Usage::

    python benchmarks/bench_rd.py [--models digits_cnn,minilm,...] [--no-nncodec] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import rd_protocol as rd
from bench_codec import NNCODEC_PYTHON
from bench_memory import cpu_name, git_revision

import nnsqueeze
from nnsqueeze import zoo

HERE = Path(__file__).resolve().parent
RUNNER = HERE / "nncodec_runner.py"
OUT = HERE / "rd_results"
METHODS = ("uniform", "rdo", "calibrated", "nnc_urq", "nnc_dq")
LABELS = {
    "uniform": "nnsqueeze uniform",
    "rdo": "nnsqueeze --rdo",
    "calibrated": "nnsqueeze --calibrate",
    "nnc_urq": "NNCodec URQ",
    "nnc_dq": "NNCodec DQ",
}
STYLE = {
    "uniform": ("tab:blue", "o"),
    "rdo": ("tab:red", "^"),
    "calibrated": ("tab:orange", "v"),
    "nnc_urq": ("tab:gray", "s"),
    "nnc_dq": ("black", "D"),
}
BD_TARGET = -10.0  # % against the best NNCodec mode, data-free
BD_TARGET_CALIBRATED = -15.0
THRESHOLD_TARGET = 0.9  # x the best NNCodec mode's bits at the fidelity threshold


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def ours(task: zoo.Task, qps: Sequence[int], mode: str) -> list[rd.Point]:
    settings = {
        "uniform": nnsqueeze.RdoSettings(step_allocation=0.0, rdo_lambda=0.0),
        "rdo": nnsqueeze.RDO_DEFAULTS,
        "calibrated": nnsqueeze.CALIBRATED_DEFAULTS,
    }[mode]

    def options(step: float) -> nnsqueeze.CompressOptions:
        return nnsqueeze.CompressOptions(
            step=step,
            qp_1d_offset=rd.QP_1D_OFFSET // 4,
            step_allocation=settings.step_allocation,
            rdo_lambda=settings.rdo_lambda,
        )

    calibration = rd.calibration(task, task.name, "validation") if mode == "calibrated" else None
    return rd.sweep(task, options, qps, "test", calibration)


class NNCodecRun:
    """NNCodec codes the task's float tensors at every QP in one subprocess of its venv (started at
    once, running beside this process)."""

    def __init__(self, task: zoo.Task, qps: Sequence[int], dq: bool, work: Path) -> None:
        self.task, self.qps, self.dq = task, list(qps), dq
        state = task.state_dict()
        self.floats = {k: np.asarray(v) for k, v in state.items() if np.asarray(v).dtype.kind == "f"}
        self.others = {k: np.asarray(v) for k, v in state.items() if k not in self.floats}
        self.params = sum(int(np.asarray(v).size) for v in state.values())
        self.dir = work / f"nnc_{task.name}_{int(dq)}"
        self.dir.mkdir()
        np.savez(self.dir / "in.npz", **self.floats)
        cmd = [
            str(NNCODEC_PYTHON),
            str(RUNNER),
            "--input",
            str(self.dir / "in.npz"),
            "--qp",
            str(self.qps[0]),
            f"--more-qps={','.join(str(q) for q in self.qps[1:])}",
            "--dq",
            str(int(dq)),
            "--qp-density",
            str(rd.QP_DENSITY),
            "--nonweight-offset",
            str(rd.QP_1D_OFFSET),
            "--out-json",
            str(self.dir / "out.json"),
            "--out-npz",
            str(self.dir / "out.npz"),
        ]
        self.log_path = self.dir / "log.txt"
        with self.log_path.open("w") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)

    def points(self) -> list[rd.Point]:
        if self.proc.wait():
            sys.stderr.write(self.log_path.read_text()[-3000:])
            msg = f"NNCodec failed on {self.task.name}"
            raise RuntimeError(msg)
        points = []
        for qp in self.qps:
            res = json.loads((self.dir / f"out_qp{qp}.json").read_text())
            if abs(res["step"] - rd.nncodec_step(qp)) > 1e-12 * res["step"]:
                msg = f"NNCodec step {res['step']} != {rd.nncodec_step(qp)} at QP {qp}"
                raise RuntimeError(msg)
            with np.load(self.dir / f"out_qp{qp}.npz") as z:
                decoded = {k: z[k] for k in z.files} | self.others
            (self.dir / f"out_qp{qp}.npz").unlink()
            fid = self.task.evaluate(decoded, "test")
            points.append(rd.Point(qp, 8 * res["bytes"] / self.params, fid))
        return points


def analyse(curves: Mapping[str, list[rd.Point]], reference: float) -> dict[str, Any]:
    """BD-rates, threshold rates and the targets of issue 15 for one model."""
    result: dict[str, Any] = {"bd": {}, "bd_window": {}, "threshold_bpp": {}}
    for m, pts in curves.items():
        result["threshold_bpp"][m] = rd.threshold_rate(pts, reference)
    pairs = [("rdo", "uniform"), ("calibrated", "uniform"), ("calibrated", "rdo")]
    best = None
    if "nnc_urq" in curves and "nnc_dq" in curves:
        dq_vs_urq, _ = rd.bd_rate(curves["nnc_urq"], curves["nnc_dq"], reference)
        best = "nnc_dq" if dq_vs_urq is not None and dq_vs_urq < 0 else "nnc_urq"
        result["bd"]["nnc_dq vs nnc_urq"] = dq_vs_urq
        pairs += [("rdo", best), ("calibrated", best), ("uniform", best)]
    for test, anchor in pairs:
        value, window = rd.bd_rate(curves[anchor], curves[test], reference)
        result["bd"][f"{test} vs {anchor}"] = value
        result["bd_window"][f"{test} vs {anchor}"] = window
    result["best_nncodec"] = best
    result["non_monotone"] = {m: rd.non_monotone(curves[m], reference) for m in ("rdo", "calibrated")}
    return result


def plot(name: str, curves: Mapping[str, list[rd.Point]], reference: float, metric: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    lo = 0.9 * reference
    for m, pts in curves.items():
        shown = sorted((p.bpp, p.fidelity) for p in pts if p.fidelity >= lo)
        color, marker = STYLE[m]
        rates, fids = [r for r, _ in shown], [f for _, f in shown]
        ax.plot(rates, fids, marker=marker, ms=3, color=color, label=LABELS[m])
    for bound in rd.WINDOW:
        ax.axhline(bound * reference, color="0.8", lw=0.8, ls="--")
    ax.axhline(rd.THRESHOLD * reference, color="tab:green", lw=0.8, ls=":")
    ax.set_xlabel("bits per parameter (whole file)")
    ax.set_ylabel(f"{metric} (test)")
    ax.set_title(f"{name}: rate-fidelity (dashed: BD window, dotted: threshold)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def fmt(value: float | None, unit: str = "%") -> str:
    if value is None:
        return "n/a"
    return f"{value:+.1f} %" if unit == "%" else f"{value:.3f}"


def report(results: Sequence[Mapping[str, Any]], nncodec: bool, seconds: float) -> str:
    d, c = nnsqueeze.RDO_DEFAULTS, nnsqueeze.CALIBRATED_DEFAULTS
    lines = [
        "# Rate-fidelity: the recommended RD modes on every zoo model",
        "",
        f"Produced by `python benchmarks/bench_rd.py` at git revision `{git_revision()}` on {cpu_name()} "
        f"(Python {platform.python_version()}) in {seconds / 60:.0f} min.  Test parts.  `--rdo` = "
        f"data-free step allocation strength {d.step_allocation}, RDOQ lambda {d.rdo_lambda}; `--calibrate` "
        f"= calibrated strength {c.step_allocation}, calibrated on the validation part's inputs (measured "
        "once, at the middle QP of the grid); both chosen on validation data by `tune_rd.py` "
        "(`tuning.md`) on the digits and MNIST-1D "
        "models; MiniLM and CREPE were not tuned on.",
        "",
        f"Same steps for every coder: NNCodec's QPs at qp_density {rd.QP_DENSITY}, 1-D tensors 256x finer "
        f"(NNCodec nonweight_qp = QP {rd.QP_1D_OFFSET}).  BD-rate: least-squares cubic of log-rate over "
        f"each curve's points in the window {rd.WINDOW[0]:.1%}–{rd.WINDOW[1]:.1%} of the float model's "
        f"test score, >= {rd.MIN_POINTS} points per curve; threshold: {rd.THRESHOLD:.0%} of the float "
        "score, kept at every finer step.",
        "",
        "## Targets (issue 15)",
        "",
        "| model | float score | best NNCodec | BD `--rdo` vs best NNCodec (<= -10 %) "
        "| BD `--calibrate` vs best NNCodec (<= -15 %) | BD `--rdo` vs uniform (<= 0) "
        "| bits at threshold: `--rdo` / best NNCodec (<= 0.9) | monotone `--rdo` | monotone `--calibrate` |",
        "|---|---|---|---|---|---|---|---|---|",
    ]

    def mark(ok: bool | None, text: str) -> str:
        return text if ok else f"**{text}**"

    def monotone(misses: list[int]) -> str:
        return mark(not misses, "yes" if not misses else "no: QPs " + str(misses))

    for r in results:
        a = r["analysis"]
        best = a["best_nncodec"]
        bd_best = a["bd"].get(f"rdo vs {best}") if best else None
        bd_cal = a["bd"].get(f"calibrated vs {best}") if best else None
        bd_uni = a["bd"]["rdo vs uniform"]
        th = a["threshold_bpp"]
        ratio = th["rdo"] / th[best] if best and th.get("rdo") and th.get(best) else None
        lines.append(
            f"| {r['model']} | {r['reference']:.4f} | {LABELS[best] if best else 'not run'} "
            f"| {mark(bd_best is not None and bd_best <= BD_TARGET, fmt(bd_best))} "
            f"| {mark(bd_cal is not None and bd_cal <= BD_TARGET_CALIBRATED, fmt(bd_cal))} "
            f"| {mark(bd_uni is not None and bd_uni <= 0, fmt(bd_uni))} "
            f"| {mark(ratio is not None and ratio <= THRESHOLD_TARGET, fmt(ratio, 'x'))} "
            f"| {monotone(a['non_monotone']['rdo'])} | {monotone(a['non_monotone']['calibrated'])} |"
        )
    lines += [
        "",
        "Bold: a missed target.  n/a: a curve has fewer than the protocol's points in the window.",
        "",
        "## Per model",
        "",
    ]
    for r in results:
        a = r["analysis"]
        lines += [
            f"### {r['model']} ({r['metric']}, float {r['reference']:.4f})",
            "",
            "| method | bits/param at threshold | BD-rate |",
            "|---|---|---|",
        ]
        for m in r["curves"]:
            bds = [
                f"vs {k.split(' vs ')[1]}: {fmt(v)}" for k, v in a["bd"].items() if k.startswith(m + " vs")
            ]
            lines.append(f"| {LABELS[m]} | {fmt(a['threshold_bpp'][m], 'x')} | {'; '.join(bds) or '-'} |")
        lines += ["", f"![{r['model']}]({r['model']}.png)", ""]
    if not nncodec:
        lines += ["NNCodec was not run (`--no-nncodec`).", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default=",".join(rd.QP_RANGES))
    ap.add_argument("--no-nncodec", action="store_true")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    rd.check_bd_rate()
    nncodec = not args.no_nncodec
    if nncodec and not NNCODEC_PYTHON.exists():
        ap.error(f"{NNCODEC_PYTHON} not found (see benchmarks/nncodec_runner.py); or pass --no-nncodec")
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    results = []
    with tempfile.TemporaryDirectory(prefix="bench_rd_") as tmp:
        for name in args.models.split(","):
            entry = zoo.get(name)
            if not entry.available():
                log(f"{name}: not installed, skipped ({entry.summary})")
                continue
            log(f"{name}: loading...")
            task = zoo.load(name)
            reference = task.reference("test")
            qps = rd.qp_grid(name)
            runs = [NNCodecRun(task, qps, dq, Path(tmp)) for dq in (False, True)] if nncodec else []
            curves = {}
            for mode in ("uniform", "rdo", "calibrated"):
                curves[mode] = ours(task, qps, mode)
                log(f"{name}: {mode} done ({time.perf_counter() - started:.0f} s)")
            for run in runs:
                curves["nnc_dq" if run.dq else "nnc_urq"] = run.points()
            log(f"{name}: NNCodec done ({time.perf_counter() - started:.0f} s)")
            analysis = analyse(curves, reference)
            plot(name, curves, reference, task.metric, args.out / f"{name}.png")
            results.append(
                {
                    "model": name,
                    "metric": task.metric,
                    "reference": reference,
                    "analysis": analysis,
                    "curves": {m: rd.as_json(p) for m, p in curves.items()},
                }
            )
    text = report(results, nncodec, time.perf_counter() - started)
    (args.out / "RESULTS_RD.md").write_text(text + "\n")
    (args.out / "rd_results.json").write_text(json.dumps({"revision": git_revision(), "results": results}))
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
