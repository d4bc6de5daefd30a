"""NNR stream size at equal fidelity (issue 16): nnsqueeze's ``--format nnr`` against NNCodec 2.1.3's encoder.

The rate-fidelity protocol is ``rd_protocol.py``'s:

- every QP of the model's range at qp_density 4, the same steps for both encoders;
- 1-D tensors at NNCodec's default step (QP -75 at density 2) for both;
- bits per parameter of the whole stream;
- the zoo task's test metric;
- BD-rate over the points inside 95–99.5 % of the float model's score.

NNCodec codes URQ and DQ with its API defaults (param_opt, row skipping). nnsqueeze codes URQ and DQ
plainly, and with the data-free per-tensor step allocation (``step_allocation``). Its strength, 1.5, is
``RDO_DEFAULTS.step_allocation``. It was chosen for the ``.nnsq`` coder on the validation protocol of
``docs/rd.md`` and is not tuned again here. Each of our curves is compared with the better of NNCodec's
two curves on that model (the higher BD-rate of the two comparisons).

Writes ``--out-dir``/RD.md and rd.json with the git revision::

    python benchmarks/bench_nnr_rd.py [--models digits_cnn,mnist1d_cnn]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from nnsqueeze import RDO_DEFAULTS, nnr, zoo

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_codec import run_runner
from bench_memory import git_revision, machine_note
from bench_nnr import NNCODEC_PYTHON, TARGET_BYTES
from rd_protocol import QP_RANGES, WINDOW, Point, bd_rate

HERE = Path(__file__).resolve().parent
DENSITY = 4
NONWEIGHT_QP = -300  # = make_nnr_corpus.RD_NONWEIGHT_QP


def shaped(decoded: dict[str, np.ndarray], like: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Decoded tensors in the model's shapes (NNR has no 0-d tensors: scalars come back as (1,))."""
    return {k: v.reshape(like[k].shape) for k, v in decoded.items()}


def curves(name: str, tmp: Path) -> tuple[dict[str, list[Point]], float]:
    task = zoo.load(name, seed=0)
    tensors = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in task.state_dict().items()}
    params = sum(v.size for v in tensors.values())
    lo, hi = QP_RANGES[name]
    npz = tmp / f"{name}.npz"
    np.savez(npz, **tensors)
    folder = tmp / name
    cmd = [
        str(NNCODEC_PYTHON),
        str(HERE / "make_nnr_corpus.py"),
        "--out",
        str(folder),
        "--input",
        str(npz),
        f"--rd={lo}:{hi}",  # one token: LO is negative
    ]
    out: dict[str, list[Point]] = {}
    for entry in run_runner(cmd, folder / "manifest.json", f"NNCodec on {name}")["streams"]:
        s = entry["settings"]
        label = f"NNCodec {'DQ' if s['use_dq'] else 'URQ'}"
        decoded = shaped(nnr.decode((folder / entry["stream"]).read_bytes()), tensors)
        out.setdefault(label, []).append(Point(s["qp"], 8 * entry["bytes"] / params, task.evaluate(decoded)))
    for qp in range(lo, hi + 1):
        for dependent in (False, True):
            for strength in (0.0, RDO_DEFAULTS.step_allocation):
                stream = nnr.encode(
                    tensors,
                    qp=qp,
                    qp_density=DENSITY,
                    nonweight_qp=NONWEIGHT_QP,
                    dependent=dependent,
                    step_allocation=strength,
                )
                label = f"nnsqueeze {'DQ' if dependent else 'URQ'}" + (
                    f", allocation {strength:g}" if strength else ""
                )
                out.setdefault(label, []).append(
                    Point(qp, 8 * len(stream) / params, task.evaluate(shaped(nnr.decode(stream), tensors)))
                )
        print(f"{name} QP {qp} done", flush=True)
    return out, task.reference("test")


def report(
    name: str, model_curves: dict[str, list[Point]], reference: float
) -> tuple[list[str], dict[str, Any]]:
    anchors = [k for k in model_curves if k.startswith("NNCodec")]
    lines, result = [], {"reference": reference, "bd_rate": {}}
    for label, points in model_curves.items():
        if label.startswith("NNCodec"):
            continue
        versus = {a: bd_rate(model_curves[a], points, reference) for a in anchors}
        valid = {a: v for a, (v, _) in versus.items() if v is not None}
        worst = max(valid.items(), key=lambda kv: kv[1]) if valid else None
        result["bd_rate"][label] = {a: v for a, (v, _) in versus.items()}
        cells = " | ".join(f"{v:+.2f} %" if v is not None else f"n/a ({why})" for v, why in versus.values())
        verdict = "–"
        if worst is not None:
            ratio = 1 + worst[1] / 100
            verdict = f"{ratio:.4f}× vs {worst[0]}: {'yes' if ratio <= TARGET_BYTES else '**no (missed)**'}"
        lines.append(f"| {name} | {label} | {cells} | {verdict} |")
    return lines, result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--models", default="digits_cnn,mnist1d_cnn")
    ap.add_argument("--out-dir", type=Path, default=HERE / "nnr_results")
    args = ap.parse_args(argv)
    command = "python benchmarks/bench_nnr_rd.py " + " ".join(argv if argv is not None else sys.argv[1:])
    started = dt.datetime.now()
    note, revision = machine_note(), git_revision()
    import torch

    torch.set_num_threads(1)
    rows, results = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in [m.strip() for m in args.models.split(",") if m.strip()]:
            model_curves, reference = curves(name, Path(tmp))
            lines, result = report(name, model_curves, reference)
            rows += lines
            result["curves"] = {
                k: [[p.qp, round(p.bpp, 5), round(p.fidelity, 5)] for p in v] for k, v in model_curves.items()
            }
            results[name] = result
    elapsed = (dt.datetime.now() - started).total_seconds()
    text = "\n".join(
        [
            "# NNR stream size at equal fidelity (bench_nnr_rd.py)",
            "",
            f"Command: `{command}`; git revision `{revision}`; started "
            f"{started.isoformat(timespec='seconds')}, took {elapsed / 60:.1f} min. Machine: {note}.",
            "",
            f"BD-rate (negative: fewer bits at equal test fidelity) over {WINDOW[0]:.0%}–{WINDOW[1]:.1%} of "
            f"the float score, QPs of `rd_protocol.QP_RANGES` at qp_density {DENSITY}; target: ≤ "
            f"{TARGET_BYTES}× NNCodec's bytes (BD-rate ≤ −3 %) against its better mode.",
            "",
            "| model | nnsqueeze curve | BD-rate vs NNCodec URQ | vs NNCodec DQ "
            "| ÷ better NNCodec mode, target met |",
            "|---|---|---|---|---|",
            *rows,
            "",
        ]
    )
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "RD.md").write_text(text)
    (args.out_dir / "rd.json").write_text(
        json.dumps({"revision": revision, "command": command, "models": results}) + "\n"
    )
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
