"""``nnsqueeze fl-sim``: simulate federated training with compressed updates; write JSON and a plot."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from nnsqueeze.cli.argtypes import fraction
from nnsqueeze.fl.simulation import COMPRESSOR_NAMES, DATASETS, SimulationConfig, plot_results, run_simulation
from nnsqueeze.update import DEFAULT_UPDATE_QP


def cmd_fl_sim(args: argparse.Namespace) -> int:
    config = SimulationConfig(
        dataset=args.dataset,
        clients=args.clients,
        rounds=args.rounds,
        compressor=args.compressor,
        sparsity=args.sparsity,
        bits=args.bits,
        whole_model=args.whole_model,
        error_feedback=not args.no_error_feedback,
        noniid=args.noniid,
        participation=args.participation,
        local_epochs=args.local_epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        momentum=args.momentum,
        dgc_momentum=args.dgc_momentum,
        downstream=args.downstream,
        qp=args.qp,
        dropout=args.dropout,
        faults=args.faults,
        seed=args.seed,
    )
    result = run_simulation(config, progress=not args.quiet)
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"fl_{config.dataset}_{config.compressor}"
    result.save_json(out / f"{stem}.json")
    if not args.no_plot:
        label = f"{config.compressor} (p={config.sparsity})" if config.compressor != "identity" else "dense"
        plot_results(
            [(label, result)], out / f"{stem}.png", title=f"{config.dataset}, {config.clients} clients"
        )
    dense_total = result.dense_update_bytes * sum(len(r.participants) for r in result.rounds)
    ratio = dense_total / max(result.total_upload, 1)
    download = result.rounds[-1].cumulative_download if result.rounds else 0
    excluded = sum(len(r.excluded) for r in result.rounds)
    print(
        f"{config.dataset} {config.compressor}: accuracy {result.initial_accuracy:.3f} -> "
        f"{result.final_accuracy:.3f} after {config.rounds} rounds; upload {result.total_upload} B "
        f"({ratio:.0f}x less than dense), download {download} B; {excluded} updates excluded; "
        f"{result.seconds:.1f} s; results in {out}/{stem}.*"
    )
    return 0


def add_fl_sim_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Adds ``fl-sim`` to the ``nnsqueeze`` subcommands (``subparsers`` from ``add_subparsers``)."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "fl-sim",
        help="simulate federated learning with compressed updates (accuracy vs upload bytes)",
        description=__doc__,
    )
    p.add_argument("--dataset", choices=DATASETS, default="digits")
    p.add_argument("--clients", type=int, default=10)
    p.add_argument("--rounds", type=int, default=50)
    p.add_argument("--compressor", choices=COMPRESSOR_NAMES, default="stc")
    p.add_argument("--sparsity", type=fraction, default=0.01, help="fraction of entries kept (default 0.01)")
    p.add_argument("--bits", type=int, default=2, help="cabac: bits per quantized level (default 2)")
    p.add_argument("--no-error-feedback", action="store_true", help="drop the client residuals")
    p.add_argument("--noniid", type=float, metavar="ALPHA", help="Dirichlet(ALPHA) label skew (default IID)")
    p.add_argument("--participation", type=fraction, default=1.0, help="clients per round (fraction)")
    p.add_argument("--local-epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument(
        "--whole-model",
        action="store_true",
        help="topk/sbc/stc select over all tensors at once (one count and mean per message)",
    )
    p.add_argument("--lr", type=float, default=0.2)
    p.add_argument("--momentum", type=float, default=0.0, help="the clients' SGD momentum")
    p.add_argument(
        "--dgc-momentum",
        type=float,
        default=0.9,
        help="DGC's momentum correction across rounds (use 0 with --momentum)",
    )
    p.add_argument(
        "--downstream",
        choices=COMPRESSOR_NAMES,
        help="compress the server's broadcast too (nnsq-update: each round an .nnsq update file)",
    )
    p.add_argument(
        "--qp",
        type=int,
        default=DEFAULT_UPDATE_QP,
        help=f"nnsq-update: the step of the coded change (default {DEFAULT_UPDATE_QP})",
    )
    p.add_argument("--dropout", type=float, default=0.0, help="probability that a client does not answer")
    p.add_argument(
        "--faults",
        type=float,
        default=0.0,
        help="probability that a client's reply is faulty (NaN, corrupt, stale, replayed, absurd weight, "
        "oversized, wrong shapes); the server must exclude it (default 0)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("-o", "--out-dir", default="fl_out", help="where to write JSON and PNG (default fl_out)")
    p.add_argument("--no-plot", action="store_true")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress line on stderr")
    p.set_defaults(run=cmd_fl_sim)
    return p


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry point (``python -m nnsqueeze.cli.fl_sim``) until ``main.py`` registers it."""
    parser = argparse.ArgumentParser(prog="nnsqueeze")
    add_fl_sim_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.run(args))


if __name__ == "__main__":
    sys.exit(main())
