"""``python -m nnsqueeze.demo``: compress the demo models and print a table of the results."""

from __future__ import annotations

import argparse
from pathlib import Path

from nnsqueeze.codec import DEFAULT_QP
from nnsqueeze.demo import format_results, run_demo


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nnsqueeze.demo", description=__doc__)
    parser.add_argument(
        "--qp", type=int, default=DEFAULT_QP, help=f"quantization parameter (default {DEFAULT_QP})"
    )
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--minilm", dest="minilm", action="store_true", default=None, help="require MiniLM")
    group.add_argument("--no-minilm", dest="minilm", action="store_false", help="skip MiniLM")
    parser.add_argument("--out-dir", type=Path, default=None, help="write the .nnsq files here")
    parser.add_argument("--repeats", type=int, default=3, help="timing runs per step (median; default 3)")
    args = parser.parse_args(argv)
    results = run_demo(args.qp, minilm=args.minilm, out_dir=args.out_dir, repeats=args.repeats)
    print(format_results(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
