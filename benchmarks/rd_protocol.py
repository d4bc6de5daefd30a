"""The rate-fidelity protocol shared by ``tune_rd.py`` (choosing settings on validation data) and
``bench_rd.py`` (reporting them on test data), fixed before any curve was looked at:

* rate: bits per parameter of the whole ``.nnsq`` file; fidelity: the zoo task's metric;
* QP grid: NNCodec's step of every integer QP at ``qp_density`` 4 (sixteen steps per octave: the
  fidelity of small models falls from 99.5 % to 95 % within a few coarser grids' steps),
  ``(16 + (qp & 15)) * 2 ** ((qp >> 4) - 4)``, for every coder, over each model's range in
  :data:`QP_RANGES`; 1-D tensors at the weight step / 256 for every coder (our ``qp_1d_offset``);
* BD-rate window: fidelity from 95 % to 99.5 % of the float model's own score on the same part;
  Bjontegaard's least-squares cubic of log-rate over each curve's points inside the window, at
  least :data:`MIN_POINTS` of them;
* threshold: the fewest bits whose point, and every finer point, keeps 99 % of the float score;
* calibrated mode: calibrated on the validation part's inputs, the sensitivities measured once per
  model at the middle QP of its grid and reused at every QP (as a target search reuses them; MiniLM
  takes about a minute a measurement), scored like every other curve.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

import nnsqueeze
from nnsqueeze import nnr, zoo

WINDOW = (0.95, 0.995)  # of the float model's score
THRESHOLD = 0.99  # of the float model's score
MIN_POINTS = 5
QP_DENSITY = 4
QP_1D_OFFSET = -128  # 1-D tensors 8 octaves finer, as nnsqueeze's default qp_1d_offset of -32 at density 2
QP_RANGES = {  # at QP_DENSITY; wide enough for the whole window and the threshold on every method
    "digits_cnn": (-120, -32),
    "mlp": (-120, -32),
    "lenet5": (-120, -32),
    "mnist1d_cnn": (-128, -40),
    "minilm": (-132, -84),
    "crepe_tiny": (-48, 16),
}


def nncodec_step(qp: int) -> float:
    """NNCodec's step of an integer QP at :data:`QP_DENSITY`."""
    return nnr.step_of(qp, QP_DENSITY)


@dataclass(frozen=True)
class Point:
    """One coded model: its QP, bits per parameter and score."""

    qp: int
    bpp: float
    fidelity: float


def sweep(
    task: zoo.Task,
    options: Callable[[float], nnsqueeze.CompressOptions],
    qps: Sequence[int],
    part: zoo.Part,
    calibration: nnsqueeze.Calibration | None = None,
) -> list[Point]:
    """Codes the task's weights at each QP's step with ``options(step)`` (and ``calibration``, if
    given) and scores the decoded model on ``part``."""
    state = task.state_dict()
    params = sum(int(np.asarray(v).size) for v in state.values())
    points = []
    for qp in qps:
        report = nnsqueeze.compress(state, options=options(nncodec_step(qp)), calibration=calibration)
        assert report.data is not None
        decoded = nnsqueeze.decompress(report.data)
        points.append(Point(qp, 8 * report.file_bytes / params, task.evaluate(decoded, part)))
    return points


def pareto_front(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """The operational curve: points by rate, each kept only if it beats every cheaper one."""
    out: list[tuple[float, float]] = []
    for rate, fid in sorted(points):
        if not out or fid > out[-1][1]:
            if out and rate == out[-1][0]:
                out[-1] = (rate, fid)
            else:
                out.append((rate, fid))
    return out


def bd_rate(anchor: Sequence[Point], test: Sequence[Point], reference: float) -> tuple[float | None, str]:
    """BD-rate (%) of ``test`` against ``anchor`` in the protocol's window of ``reference``;
    negative = fewer bits at equal fidelity.  (None, why) when a curve has too few points there.

    Bjontegaard's fit: per curve, log(rate) as a least-squares cubic in the fidelity over all its
    points inside the window (coded models are noisy in fidelity: a least-squares fit averages the
    noise where interpolating the Pareto front would follow it), integrated over the fidelity range
    both curves cover."""
    lo_win, hi_win = WINDOW[0] * reference, WINDOW[1] * reference
    fits, spans = [], []
    for name, pts in (("anchor", anchor), ("test", test)):
        inside = [p for p in pts if lo_win <= p.fidelity <= hi_win and p.bpp > 0]
        if len(inside) < MIN_POINTS:
            return None, f"{name}: {len(inside)} points in the window (< {MIN_POINTS})"
        fid = np.array([p.fidelity for p in inside])
        fits.append(np.polyint(np.polyfit(fid, np.log([p.bpp for p in inside]), 3)))
        spans.append((float(fid.min()), float(fid.max())))
    lo, hi = max(sp[0] for sp in spans), min(sp[1] for sp in spans)
    if not hi > lo:
        return None, "the curves share no fidelity range"

    def integral(prim: np.ndarray) -> float:
        return float(np.polyval(prim, hi) - np.polyval(prim, lo))

    mean_diff = (integral(fits[1]) - integral(fits[0])) / (hi - lo)
    return 100.0 * (math.exp(mean_diff) - 1.0), f"[{lo:.4g}, {hi:.4g}]"


def threshold_rate(points: Sequence[Point], reference: float) -> float | None:
    """The fewest bits/param whose point and every finer-step point keep ``THRESHOLD`` of the score
    (None if the finest point misses it)."""
    need = THRESHOLD * reference
    best = None
    for p in sorted(points, key=lambda p: -p.bpp):
        if p.fidelity < need:
            break
        best = p.bpp
    return best


def non_monotone(points: Sequence[Point], reference: float) -> list[int]:
    """QPs whose point misses the threshold although a coarser QP met it (noise to be shown)."""
    need = THRESHOLD * reference
    by_qp = sorted(points, key=lambda p: p.qp)  # finest first
    return [
        p.qp
        for i, p in enumerate(by_qp)
        if p.fidelity < need and any(q.fidelity >= need for q in by_qp[i + 1 :])
    ]


def check_bd_rate() -> None:
    """Self-test: two curves whose rates differ by exactly 10 % at every fidelity give -10 %."""
    fid = np.linspace(0.95, 0.995, 8)
    anchor = [Point(0, float(np.exp(3 * f - f**3)), float(f)) for f in fid]  # a cubic: fitted exactly
    test = [Point(0, 0.9 * float(np.exp(3 * f - f**3)), float(f)) for f in fid[::-1] + 0.001]
    bd, _ = bd_rate(anchor, test, 1.0)
    assert bd is not None
    assert abs(bd + 10.0) < 1e-9, bd
    assert bd_rate(anchor[:3], test, 1.0)[0] is None


def as_json(points: Sequence[Point]) -> list[list[Any]]:
    """Compact rows ``[qp, bits/param, fidelity]``."""
    return [[p.qp, round(p.bpp, 4), round(p.fidelity, 5)] for p in points]


def calibration(task: zoo.Task, model: str, part: zoo.Part = "validation") -> nnsqueeze.Calibration:
    """The task calibrated on ``part``'s inputs, measured at the middle QP of the model's grid."""
    cal = task.calibration(part)
    grid = qp_grid(model)
    cal.sensitivities(nncodec_step(grid[len(grid) // 2]))
    return cal


def qp_grid(model: str) -> list[int]:
    lo, hi = QP_RANGES[model]
    return list(range(lo, hi + 1))


def summary(values: Mapping[str, float | None]) -> str:
    return ", ".join(f"{k} {'n/a' if v is None else f'{v:+.1f} %'}" for k, v in values.items())
