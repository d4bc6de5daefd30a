"""The ``explain`` subcommand: LRP heatmaps for a stored model, or the digits demo with its AOPC table.

``nnsqueeze explain --demo digits`` trains (or loads) the digits CNN and writes heatmaps and the AOPC
table; ``nnsqueeze explain MODEL.nnsq --input X.npy`` explains a stored model's decisions.  torch and
``nnsqueeze.xai`` are imported only when the command runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from nnsqueeze.errors import ConfigError

COMPOSITE_NAMES = (
    "epsilon_plus_flat",
    "epsilon_gamma_box",
    "epsilon_plus",
    "epsilon_alpha2_beta1",
    "epsilon_alpha2_beta1_flat",
    "epsilon",
)


def cmd_explain(args: argparse.Namespace) -> int:
    if args.demo is not None:
        if args.model is not None or args.input is not None:
            msg = "--demo takes no MODEL or --input"
            raise ConfigError(msg)
        from nnsqueeze.xai.demo import run_digits_demo

        report = run_digits_demo(
            Path(args.out_dir),
            composite=args.composite,
            images=args.images,
            steps=args.steps,
            epochs=args.epochs,
        )
        print(report.summary())
        return 0
    if args.model is None or args.input is None:
        msg = "give MODEL.nnsq and --input X.npy, or --demo digits"
        raise ConfigError(msg)
    from nnsqueeze.xai.composites import get_composite
    from nnsqueeze.xai.explain import explain_checkpoint

    kwargs: dict[str, Any] = {}
    if args.composite == "epsilon_gamma_box":
        kwargs = {"low": args.low, "high": args.high}
    result = explain_checkpoint(
        args.model,
        args.input,
        args.out_dir,
        arch=args.arch,
        composite=get_composite(args.composite, **kwargs),
        target=args.target,
    )
    print(result.summary())
    return 0


def add_explain_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Adds ``explain`` to the ``nnsqueeze`` subcommands (``subparsers`` from ``add_subparsers``)."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "explain",
        help="explain decisions with LRP: heatmaps (red for, blue against) and an AOPC table",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    p.add_argument("model", nargs="?", help="the model's weights (.nnsq, or any checkpoint compress reads)")
    p.add_argument("--input", help="inputs (.npy, .npz or .pt), shaped as a batch for the model")
    p.add_argument(
        "--demo", choices=("digits",), help="train or load the digits CNN, write heatmaps and AOPC"
    )
    p.add_argument(
        "--arch",
        default="digits",
        help="the architecture: 'digits' or 'package.module:function' (default digits)",
    )
    p.add_argument("--target", type=int, help="the class to explain (default: each input's predicted class)")
    p.add_argument("--composite", default="epsilon_plus_flat", choices=COMPOSITE_NAMES)
    p.add_argument("--low", type=float, default=0.0, help="lowest input value (epsilon_gamma_box)")
    p.add_argument("--high", type=float, default=1.0, help="highest input value (epsilon_gamma_box)")
    p.add_argument("-o", "--out-dir", default="explain_out", help="where to write (default explain_out)")
    p.add_argument("--images", type=int, default=200, help="demo: test digits for the AOPC table")
    p.add_argument("--steps", type=int, help="demo: points per perturbation curve (default: all 65)")
    p.add_argument("--epochs", type=int, help="demo: retrain for this many epochs (default: load or train)")
    p.set_defaults(run=cmd_explain)
    return p
