"""Federated learning with compressed updates: accuracy against upload bytes.

Runs the in-process simulator (``nnsqueeze.fl``) on scikit-learn's digits and MNIST-1D (generated
offline), 10 clients, IID and Dirichlet(0.5), for dense FedAvg, top-k, DGC, SBC, STC and CABAC-coded
2-bit updates, each with and without error accumulation; bytes are the lengths of the real messages.
Also measures CABAC against zlib on the same 2-bit levels of real client updates.

    python benchmarks/bench_fl.py                 # everything (~20-40 min on 2 loaded cores)
    python benchmarks/bench_fl.py --quick         # digits IID only, 10 rounds

Writes benchmarks/fl_results/{results.json, RESULTS.md, <dataset>_<partition>.png}.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import time
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from nnsqueeze.fl.compressors import CabacQuantized
from nnsqueeze.fl.simulation import (
    RoundRecord,
    SimulationConfig,
    SimulationResult,
    load_task,
    plot_results,
    run_simulation,
)

OUT = Path(__file__).parent / "fl_results"

# (label, compressor, sparsity, error feedback)
METHODS: list[tuple[str, str, float, bool]] = [
    ("dense FedAvg", "identity", 1.0, False),
    ("top-k p=0.01 +EF", "topk", 0.01, True),
    ("top-k p=0.01", "topk", 0.01, False),
    ("DGC p=0.01 +EF", "dgc", 0.01, True),
    ("DGC p=0.01", "dgc", 0.01, False),
    ("SBC p=0.01 +EF", "sbc", 0.01, True),
    ("SBC p=0.01", "sbc", 0.01, False),
    ("STC p=0.01 +EF", "stc", 0.01, True),
    ("STC p=0.01", "stc", 0.01, False),
    ("SBC p=0.001 +EF", "sbc", 0.001, True),
    ("STC p=0.001 +EF", "stc", 0.001, True),
    ("CABAC 2-bit +EF", "cabac", 1.0, True),
    ("CABAC 2-bit", "cabac", 1.0, False),
]


# client SGD per dataset: digits learns with plain SGD; MNIST-1D needs momentum (lr 0.2 plain SGD
# reached 0.49 after 15 dense rounds, lr 0.5 diverged, lr 0.05 + momentum 0.9 reached 0.63)
OPTIMIZER = {"digits": {"lr": 0.2, "momentum": 0.0}, "mnist1d": {"lr": 0.05, "momentum": 0.9}}
# MNIST-1D rounds are ~5x slower here: a subset of the methods, all with error feedback
MNIST1D_METHODS = {
    "dense FedAvg",
    "top-k p=0.01 +EF",
    "DGC p=0.01 +EF",
    "SBC p=0.01 +EF",
    "STC p=0.01 +EF",
    "STC p=0.001 +EF",
    "CABAC 2-bit +EF",
    "CABAC 2-bit",
}


def _run(job: tuple[str, str, float | None, str, str, float, bool, int]) -> dict[str, Any]:
    dataset, partition, alpha, label, compressor, sparsity, ef, rounds = job
    config = SimulationConfig(
        dataset=dataset,
        clients=10,
        rounds=rounds,
        compressor=compressor,
        sparsity=sparsity,
        error_feedback=ef,
        noniid=alpha,
        seed=0,
        **OPTIMIZER[dataset],
    )
    res = run_simulation(config)
    print(
        f"{dataset:8s} {partition:9s} {label:18s} acc {res.final_accuracy:.4f} up {res.total_upload:>10d} B "
        f"({res.seconds:.0f} s)",
        file=sys.stderr,
        flush=True,
    )
    return {"dataset": dataset, "partition": partition, "label": label, "result": res.to_dict()}


def cabac_vs_zlib(dataset: str) -> dict[str, Any]:
    """CABAC against zlib (level 9) on the same 2-bit levels of real client updates (1 local epoch
    from the initial model, and from a model pre-trained on all data for 3 epochs)."""
    import torch
    from torch import nn

    torch.manual_seed(0)
    task = load_task(dataset)
    model = task.build_model()
    c = CabacQuantized(bits=2)
    rows = []
    loss_fn = nn.CrossEntropyLoss()

    def sgd(idx: torch.Tensor, epochs: int) -> None:
        opt = torch.optim.SGD(model.parameters(), lr=0.2)
        for _ in range(epochs):
            for start in range(0, idx.numel(), 16):
                b = idx[start : start + 16]
                opt.zero_grad()
                loss_fn(model(task.x_train[b]), task.y_train[b]).backward()
                opt.step()

    n = task.y_train.numel()
    for stage in ("initial", "pretrained"):
        if stage == "pretrained":
            sgd(torch.randperm(n), 3)
        before = [p.detach().clone() for p in model.parameters()]
        sgd(torch.randperm(n)[: n // 10], 1)
        update = [(p.detach() - b).numpy() for p, b in zip(model.parameters(), before, strict=True)]
        with torch.no_grad():
            for p, b in zip(model.parameters(), before, strict=True):
                p.copy_(b)
        cabac = len(c.encode(update))
        levels = np.concatenate([c.levels(u)[0].reshape(-1) for u in update])
        symbols = (levels + 1).astype(np.uint8)  # {-1, 0, 1} -> {0, 1, 2}: 2 bits each
        packed = np.packbits(((symbols[:, None] >> np.array([1, 0])) & 1).astype(np.uint8)).tobytes()
        steps = 4 * len(update)  # the float32 step per tensor, added to both
        rows.append(
            {
                "dataset": dataset,
                "update": stage,
                "levels": int(levels.size),
                "nonzero_fraction": float(np.count_nonzero(levels) / levels.size),
                "cabac_bytes": cabac,
                "zlib_2bit_packed_bytes": len(zlib.compress(packed, 9)) + steps,
                "zlib_int8_bytes": len(zlib.compress(levels.astype(np.int8).tobytes(), 9)) + steps,
                "raw_2bit_bytes": len(packed) + steps,
            }
        )
    return {"rows": rows}


def write_markdown(runs: list[dict[str, Any]], zips: list[dict[str, Any]], seconds: float) -> str:
    lines = [
        "# Federated learning with compressed updates",
        "",
        "`python benchmarks/bench_fl.py` (in-process simulator, 10 clients, all participate, "
        "1 local epoch of "
        "SGD (batch 16; digits lr 0.2, MNIST-1D lr 0.05 momentum 0.9) per round, FedAvg; "
        "bytes = lengths of the real upload messages, all clients, "
        f"all rounds). Total time {seconds / 60:.1f} min on 2 shared CPU cores.",
        "",
    ]
    for dataset in sorted({r["dataset"] for r in runs}):
        for partition in ("IID", "Dir(0.5)"):
            sel = [r for r in runs if r["dataset"] == dataset and r["partition"] == partition]
            if not sel:
                continue
            dense = next(r for r in sel if r["label"] == "dense FedAvg")["result"]
            rounds = dense["config"]["rounds"]
            lines += [
                f"## {dataset}, {partition}, {rounds} rounds",
                "",
                f"![]({dataset}_{'iid' if partition == 'IID' else 'dirichlet'}.png)",
                "",
                "| method | final acc | best acc | Δ acc vs dense (points) | upload bytes "
                "| × fewer than dense |",
                "|---|---|---|---|---|---|",
            ]
            for r in sel:
                res = r["result"]
                best = max([x["accuracy"] for x in res["rounds"]] + [0.0])
                lines.append(
                    f"| {r['label']} | {res['final_accuracy']:.4f} | {best:.4f} | "
                    f"{100 * (res['final_accuracy'] - dense['final_accuracy']):+.2f} | "
                    f"{res['total_upload']:,} | "
                    f"{dense['total_upload'] / max(res['total_upload'], 1):,.0f} |"
                )
            lines.append("")
    lines += [
        "## CABAC vs zlib on the same 2-bit updates",
        "",
        "| dataset | update | levels | nonzero | CABAC B | zlib(2-bit packed) B | zlib(int8) B "
        "| ratio zlib/CABAC |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for z in zips:
        for row in z["rows"]:
            best_zip = min(row["zlib_2bit_packed_bytes"], row["zlib_int8_bytes"])
            lines.append(
                f"| {row['dataset']} | {row['update']} | {row['levels']} | {row['nonzero_fraction']:.3f} | "
                f"{row['cabac_bytes']} | {row['zlib_2bit_packed_bytes']} | {row['zlib_int8_bytes']} | "
                f"{best_zip / row['cabac_bytes']:.2f} |"
            )
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="digits IID, 10 rounds")
    ap.add_argument("--datasets", nargs="+", default=["digits", "mnist1d"])
    ap.add_argument("--rounds", type=int, default=50)
    ap.add_argument("--mnist1d-rounds", type=int, default=20)
    ap.add_argument("--processes", type=int, default=2)
    args = ap.parse_args()
    partitions: list[tuple[str, float | None]] = [("IID", None), ("Dir(0.5)", 0.5)]
    datasets = args.datasets
    rounds = args.rounds
    if args.quick:
        partitions, datasets, rounds = partitions[:1], ["digits"], 10
    jobs = [
        (d, p, a, label, comp, sp, ef, rounds if d == "digits" else args.mnist1d_rounds)
        for d in datasets
        for p, a in partitions
        for label, comp, sp, ef in METHODS
        if d == "digits" or label in MNIST1D_METHODS
    ]
    started = time.perf_counter()
    OUT.mkdir(exist_ok=True)
    runs: list[dict[str, Any]] = []
    with multiprocessing.get_context("spawn").Pool(args.processes) as pool:
        for run in pool.imap(_run, jobs, chunksize=1):  # saved as they finish (in job order)
            runs.append(run)
            (OUT / "partial.json").write_text(json.dumps({"runs": runs}) + "\n")
    zips = [cabac_vs_zlib(d) for d in datasets]
    seconds = time.perf_counter() - started
    OUT.mkdir(exist_ok=True)
    (OUT / "results.json").write_text(json.dumps({"runs": runs, "cabac_vs_zlib": zips}, indent=1) + "\n")
    for d in datasets:
        for p, _ in partitions:
            sel = [r for r in runs if r["dataset"] == d and r["partition"] == p]
            curves = []
            for r in sel:
                res = r["result"]
                cfg = SimulationConfig(**{k: v for k, v in res["config"].items()})
                recs = [RoundRecord(**x) for x in res["rounds"]]
                curves.append(
                    (
                        r["label"],
                        SimulationResult(
                            cfg,
                            res["initial_accuracy"],
                            res["dense_update_bytes"],
                            res["num_parameters"],
                            recs,
                        ),
                    )
                )
            name = f"{d}_{'iid' if p == 'IID' else 'dirichlet'}.png"
            plot_results(curves, OUT / name, title=f"{d}, {p}, 10 clients")
    (OUT / "RESULTS.md").write_text(write_markdown(runs, zips, seconds))
    print((OUT / "RESULTS.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
