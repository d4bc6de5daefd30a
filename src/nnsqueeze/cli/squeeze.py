"""The ``squeeze`` subcommand: prune → fine-tune → quantize → code a model within an accuracy budget.

``nnsqueeze squeeze mlp --data digits --max-accuracy-drop 0.5`` trains the named architecture first;
``nnsqueeze squeeze weights.pt --arch lenet5 --data digits`` starts from saved weights (``.pt``,
``.pth``, ``.safetensors``, ``.npz`` or ``.nnsq``).  The budget is checked on a validation split cut
from the training data; the test accuracy of every stage is printed beside it.  torch is imported
only when the command runs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

ARCH_NAMES = ("mlp", "lenet5", "digits_cnn", "mnist1d_cnn")  # the zoo models trained here


def cmd_squeeze(args: argparse.Namespace) -> int:
    import torch

    from nnsqueeze import zoo
    from nnsqueeze.errors import ConfigError
    from nnsqueeze.train import SqueezeConfig, squeeze

    data = args.data
    if args.model in ARCH_NAMES:
        arch = args.model
    elif args.arch is not None:
        arch = args.arch
    else:
        msg = f"MODEL is a weights file: name its architecture with --arch ({', '.join(ARCH_NAMES)})"
        raise ConfigError(msg)
    entry = zoo.get(arch)
    if entry.dataset != data:
        msg = f"architecture {arch!r} is for --data {entry.dataset}, not {data}"
        raise ConfigError(msg)
    assert entry.build is not None  # every ARCH_NAMES model is trained here
    assert entry.train is not None
    out = Path(args.output) if args.output else Path(f"{Path(args.model).stem}.squeezed.nnsq")
    with zoo.torch_threads(args.threads), torch.random.fork_rng(devices=[]):
        torch.manual_seed(args.seed)
        split = zoo.load_dataset(data, seed=args.seed)
        model = entry.build()
        if args.model in ARCH_NAMES:
            epochs = f"{args.epochs} epochs" if args.epochs else "the zoo's default epochs"
            print(f"training {arch} on {data} for {epochs}...", file=sys.stderr)
            entry.train(model, split, args.epochs, args.seed)
        else:
            model.load_state_dict(_load_weights(Path(args.model)))
        batches = zoo.ShuffledBatches(split.x_train, split.y_train, 32, args.seed)
        config = SqueezeConfig(
            structure=args.structure,
            scope=args.scope,
            quantizer=args.quantizer,
            prune_epochs=args.prune_epochs,
        )
        result = squeeze(
            model,
            batches,
            lambda m: zoo.accuracy(m, split.x_val, split.y_val),
            args.max_accuracy_drop,
            out,
            config=config,
            log=lambda line: print(f"  {line}", file=sys.stderr),
        )
        print(result)
        tests = ", ".join(
            f"{s.name} {zoo.accuracy(s.model, split.x_test, split.y_test):.4f}" for s in result.stages
        )
        print(f"test accuracy: {tests}")
        print(f"wrote {out} ({result.file_bytes} bytes)")
    return 0 if result.within_budget else 1


def _load_weights(path: Path) -> dict[str, Any]:
    if path.suffix == ".nnsq":
        from nnsqueeze.codec import load_state_dict

        return load_state_dict(path)
    import torch

    from nnsqueeze.io import open_checkpoint

    checkpoint = open_checkpoint(path)
    return {t.name: torch.from_numpy(t.array.copy()) for t in checkpoint.tensors}


def add_squeeze_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Adds ``squeeze`` to the ``nnsqueeze`` subcommands (``subparsers`` from ``add_subparsers``)."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "squeeze",
        help="prune, fine-tune, quantize and code a model within an accuracy budget",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    p.add_argument("model", help=f"an architecture to train ({', '.join(ARCH_NAMES)}) or a weights file")
    p.add_argument("--data", choices=("digits", "mnist1d"), default="digits")
    p.add_argument("--arch", choices=ARCH_NAMES, help="architecture of a weights file")
    p.add_argument(
        "--max-accuracy-drop", type=float, default=0.5, help="percentage points below the float model"
    )
    p.add_argument("-o", "--output", help="output .nnsq (default: MODEL.squeezed.nnsq)")
    p.add_argument("--structure", choices=("unstructured", "channel"), default="unstructured")
    p.add_argument(
        "--scope",
        choices=("global", "layer"),
        default="global",
        help="one pruning threshold over all layers, or the same sparsity in every layer",
    )
    p.add_argument("--quantizer", choices=("grid", "kmeans"), default="grid")
    p.add_argument("--prune-epochs", type=int, default=8, help="fine-tuning epochs after each pruning level")
    p.add_argument(
        "--epochs",
        type=int,
        help="training epochs when MODEL names an architecture (default: the zoo's recipe)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.set_defaults(run=cmd_squeeze)
    return p
