"""Chooses the recommended data-free RD mode (``--rdo``) on validation data, once, for every model.

Grids: step-allocation strength x RDOQ lambda for the data-free ``--rdo``
(``nnsqueeze.quant.allocation``, ``CompressOptions``), and the strength of the calibrated mode
(``nnsqueeze.Calibration`` on the validation inputs, measured as ``rd_protocol.calibration`` says).
Tuning models: the zoo models trained here (digits CNN, MLP and LeNet-5 with three training seeds,
the MNIST-1D CNN with one), scored on their validation parts only, by output fidelity
``exp(-KL(float model's class probabilities || the coded model's))``, the seed's output-space
distortion: accuracy on 202 validation digits moves in steps of half a point, too coarse for five
points in the BD window.  MiniLM and CREPE are held out:
``bench_rd.py`` reports them with the chosen settings, on test data.  The protocol (QP grid, BD-rate
window, threshold) is ``rd_protocol.py``'s.

Choice, for each mode apart: among the settings whose BD-rate against plain rounding (strength 0,
lambda 0) is <= 0 on every tuning model (mean over seeds), the one with the lowest mean BD-rate over
the models.

Usage::

    python benchmarks/tune_rd.py [--out benchmarks/rd_results]
"""

from __future__ import annotations

import argparse
import copy
import itertools
import json
import statistics
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import rd_protocol as rd
from bench_memory import cpu_name, git_revision

import nnsqueeze
from nnsqueeze import zoo

STRENGTHS = (0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0)  # 1 is the equal-slope rule; 2 the most allowed
LAMBDAS = (0.0, 0.05, 0.15)
CALIBRATED_STRENGTHS = (0.25, 0.5, 0.75, 1.0, 1.25, 1.5)
TUNING = {"digits_cnn": (0, 1, 2), "mlp": (0, 1, 2), "lenet5": (0, 1, 2), "mnist1d_cnn": (0,)}
OUT = Path(__file__).parent / "rd_results"


class OutputFidelity(zoo.Task):
    """A classifier task scored by exp(-mean KL divergence) of its outputs from the float model's."""

    metric = "exp(-KL) to the float outputs"

    def __init__(self, task: zoo.ClassifierTask) -> None:
        import torch

        self.name, self.task = task.name, task
        self.scratch = copy.deepcopy(task.model)
        with torch.no_grad():
            self.log_p = {
                "validation": torch.log_softmax(task.model(task.data.x_val), 1),
                "test": torch.log_softmax(task.model(task.data.x_test), 1),
            }

    def state_dict(self) -> dict[str, np.ndarray]:
        return self.task.state_dict()

    def calibration(self, part: zoo.Part = "validation") -> nnsqueeze.Calibration:
        return self.task.calibration(part)

    def evaluate(self, state: Mapping[str, np.ndarray], part: zoo.Part = "test") -> float:
        import torch

        self.scratch.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in state.items()})
        x = self.task.data.x_val if part == "validation" else self.task.data.x_test
        with torch.no_grad():
            log_q = torch.log_softmax(self.scratch(x), 1)
        log_p = self.log_p[part]
        kl = (log_p.exp() * (log_p - log_q)).sum(1).mean()
        return float(torch.exp(-kl))


def options(strength: float, lam: float) -> Callable[[float], nnsqueeze.CompressOptions]:
    def make(step: float) -> nnsqueeze.CompressOptions:
        return nnsqueeze.CompressOptions(
            step=step, step_allocation=strength, rdo_lambda=lam, threads=1, qp_1d_offset=rd.QP_1D_OFFSET // 4
        )

    return make


Table = dict[str, dict[str, float | None]]


def choose(table: Table) -> tuple[str | None, bool]:
    """The setting with the lowest mean BD-rate among those never worse than plain rounding (or,
    if none is, among those with a BD-rate on every model); and whether it is never worse."""
    complete = {k: v for k, v in table.items() if all(x is not None for x in v.values())}
    never_worse = {k: v for k, v in complete.items() if all(x is not None and x <= 0 for x in v.values())}
    pool = never_worse or complete
    if not pool:
        return None, False
    best = min(pool, key=lambda k: statistics.fmean(x for x in pool[k].values() if x is not None))
    return best, bool(never_worse)


def table_lines(title: str, table: Table, chosen: str) -> list[str]:
    lines = [f"| {title} | " + " | ".join(TUNING) + " | mean |", "|---|" + "---|" * (len(TUNING) + 1)]
    for key, per in table.items():
        cells = [("n/a" if per[m] is None else f"{per[m]:+.1f}") for m in TUNING]
        got = [v for v in per.values() if v is not None]
        mean = f"{statistics.fmean(got):+.1f}" if len(got) == len(per) else "n/a"
        mark = " **chosen**" if key == chosen else ""
        lines.append(f"| {key}{mark} | " + " | ".join(cells) + f" | {mean} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    rd.check_bd_rate()
    assert rd.nncodec_step(-112) == 2.0**-7
    settings = list(itertools.product(STRENGTHS, LAMBDAS))
    bd: dict[str, dict[str, list[float | None]]] = {}
    bd_cal: dict[str, dict[str, list[float | None]]] = {}
    started = time.perf_counter()
    for model, seeds in TUNING.items():
        for seed in seeds:
            trained = zoo.load(model, seed)
            assert isinstance(trained, zoo.ClassifierTask)
            task = OutputFidelity(trained)
            reference = task.reference("validation")  # 1.0
            qps = rd.qp_grid(model)
            runs = {s: rd.sweep(task, options(*s), qps, "validation") for s in settings}
            anchor = runs[(0.0, 0.0)]
            for s, pts in runs.items():
                value, _ = rd.bd_rate(anchor, pts, reference)
                bd.setdefault(f"{s[0]}/{s[1]}", {}).setdefault(model, []).append(value)
            calibration = rd.calibration(task, model, "validation")
            for strength in CALIBRATED_STRENGTHS:
                pts = rd.sweep(task, options(strength, 0.0), qps, "validation", calibration)
                value, _ = rd.bd_rate(anchor, pts, reference)
                bd_cal.setdefault(str(strength), {}).setdefault(model, []).append(value)
            print(f"{model} seed {seed}: {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)

    def model_mean(values: list[float | None]) -> float | None:
        got = [v for v in values if v is not None]
        return statistics.fmean(got) if len(got) == len(values) else None

    table = {k: {m: model_mean(v) for m, v in per.items()} for k, per in bd.items()}
    table_cal = {k: {m: model_mean(v) for m, v in per.items()} for k, per in bd_cal.items()}
    chosen, never_worse = choose(table)
    chosen_cal, never_worse_cal = choose(table_cal)
    if chosen is None or chosen_cal is None:
        print(f"no setting has a BD-rate on every tuning model: {table} {table_cal}", file=sys.stderr)
        return 1
    strength, lam = (float(x) for x in chosen.split("/"))
    strength_cal = float(chosen_cal)

    def verdict(ok: bool) -> str:
        return "never worse than plain rounding on a tuning model" if ok else "none was never worse"

    lines = [
        "# Choosing the RD modes' settings on validation data",
        "",
        f"Produced by `python benchmarks/tune_rd.py` at git revision `{git_revision()}` on {cpu_name()} "
        f"in {time.perf_counter() - started:.0f} s.  Validation parts only; seeds "
        + ", ".join(f"{m} {list(s)}" for m, s in TUNING.items())
        + "; MiniLM and CREPE held out.",
        "",
        "BD-rate (%) against plain rounding (strength 0, lambda 0), mean over seeds; window "
        f"{rd.WINDOW[0]:.1%}–{rd.WINDOW[1]:.1%} of the float score, QPs {rd.QP_RANGES}.",
        "",
        "## Data-free (`--rdo`): strength x RDOQ lambda",
        "",
        *table_lines("strength / lambda", table, chosen),
        "",
        f"Chosen: step allocation strength {strength}, RDOQ lambda {lam} ({verdict(never_worse)}).",
        "",
        "## Calibrated (`--calibrate`, validation inputs): strength, lambda 0",
        "",
        *table_lines("strength", table_cal, chosen_cal),
        "",
        f"Chosen: calibrated strength {strength_cal} ({verdict(never_worse_cal)}).",
    ]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "tuning.md").write_text("\n".join(lines) + "\n")
    (args.out / "tuning.json").write_text(
        json.dumps(
            {
                "revision": git_revision(),
                "chosen": [strength, lam],
                "chosen_calibrated": strength_cal,
                "bd_rate": table,
                "bd_rate_calibrated": table_cal,
            }
        )
    )
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
