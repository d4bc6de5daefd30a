"""Encode/decode a dict of float32 tensors with the NNCodec reference codec (ISO/IEC 15938-17) and time it.

This is a standalone helper for the benchmarks: it does NOT import ``nnsqueeze`` and must be run with the
Python of a separate virtual environment that holds ``nncodec`` 2.1.3 (which needs numpy<2 and torch).

Creating the venv (CPU-only torch; never let pip pick a CUDA torch build; nncodec is sdist-only and
compiles a C++ extension, ~1-2 min, needs g++)::

    python3 -m venv /work/nncodec-venv
    printf 'numpy<2\\ntorch==2.13.0\\n' > /tmp/nncodec-cons.txt
    /work/nncodec-venv/bin/pip install torch==2.13.0 "numpy<2"
    /work/nncodec-venv/bin/pip install -c /tmp/nncodec-cons.txt pybind11 scikit-learn tqdm h5py \\
        "pandas<3" click "opencv-python-headless<4.11" ptflops torchmetrics safetensors
    /work/nncodec-venv/bin/pip install -c /tmp/nncodec-cons.txt --no-deps --no-build-isolation nncodec==2.1.3

torchvision is not installed (no CPU wheel is reachable); ``import nncodec.nnc`` imports it only for its
image-dataset use cases, so this script puts inert placeholder modules for ``torchvision``,
``torchvision.datasets``, ``torchvision.transforms`` and ``torchvision.models`` into ``sys.modules`` first.
No NNCodec code is modified.

Invocation::

    /work/nncodec-venv/bin/python benchmarks/nncodec_runner.py --input IN.npz --qp -28 --dq 1 \\
        --out-json OUT.json [--out-npz DECODED.npz] [--repeat N]

Settings: tensors with ndim > 1 are coded with ``--qp``, 1-D (and 0-D) tensors with ``nonweight_qp=-75``
(step 2^-19 * 1.25, i.e. near-lossless); otherwise the NNCodec API defaults as used by
``nncodec.nn.encode`` for dict inputs: ``qp_density=2``, ``lambda_scale=0`` (no RDO),
``param_opt=True``, ``row_skipping=True``, ``scan_order=0``, ``cabac_unary_length_minus1=10``,
``use_dq`` from ``--dq``. The step size of a QP is
``(4 + (qp & 3)) * 2 ** ((qp >> 2) - 2)`` (e.g. QP -28 -> 2^-7).

Output JSON: ``bytes`` (bitstream length incl. all NNR headers), ``encode_s`` / ``decode_s`` (wall clock,
median over ``--repeat`` encode+decode runs), ``nncodec_version``, ``qp``, ``dq``, plus ``step``,
``n_params`` and ``repeat``. The bitstream is kept in memory (no ``.nnc`` file is written) and the codec runs
with a temporary directory as working directory, so nothing is left in the caller's cwd.
Only a one-line summary is printed to stdout; NNCodec's own messages go to stderr.

Incremental mode (``--base``): code a fine-tuned model as an update of a base model the receiver holds::

    /work/nncodec-venv/bin/python benchmarks/nncodec_runner.py --input NEW.npz --base BASE.npz \\
        --qp -40 --dq 1 --tca 0 --out-json OUT.json [--out-npz NEW_RECONSTRUCTED.npz] [--repeat N]

``--base`` holds the base model's float arrays (same names and shapes as ``--input``, the NEW model). This
follows NNCodec's own update pipeline, i.e. ``nncodec/fl.py`` ``encode`` (``compress_differences=True`` by
default there) driven by ``framework/applications/utils/flwr/nnc_client.py`` ``NNClient.get_parameters``
(``param_dict = model_diff(param_dict, prev_mdl)``, then ``encode_fn(param_dict, ...,
approx_param_base=internal_states["approx_param_base"])``) and ``set_parameters`` /
``nnc_fedavg.py`` ``NNCFedAvg.evaluate`` (receiver: ``model_add(prev_mdl_or_base_mdl,
decode_fn(bitstream, ...))``). Per ``--repeat`` run:

1. Encoder: ``diff = NEW - BASE`` (float32, per tensor), then ``nncodec.nnc.compress(diff, ...,
   compress_differences=True, tca=bool(--tca), approx_param_base=enc_state, update_base_param=True)``
   with the same quantiser/coder settings as the full mode (``--qp`` for ndim > 1, ``nonweight_qp=-75``
   for 1-D). ``compress_differences=True`` sets ``mps_parent_signalling_enabled_flag`` and
   ``parent_node_id_present_flag`` (``nnc/compression.py`` ``compress``), so each NDU is signalled as a
   differential update (``put_node_depth`` 1 = first child of the base, which is the root node;
   ``nnc_core/coder/syntax_compiler.py`` ``compile_ndu``) and all-zero update tensors are sent as empty
   ("skipped") NDUs (``nnc_core/coder/__init__.py`` ``encode``), which the decoder leaves out of its
   output; those tensors get a zero update, as ``NNCFedAvg.aggregate_fit`` does.
2. Decoder (a receiver holding BASE): ``nncodec.nnc.decompress(bitstream, approx_param_base=dec_state,
   update_base_param=True)`` returns the decoded *difference* (NNCodec never adds the base itself), and the
   NEW model is reconstructed as ``BASE + decoded difference`` (what ``NNClient.set_parameters`` /
   ``NNCFedAvg.evaluate`` do with ``model_add``). With ``--dq 0`` each weight of NEW comes back within
   step/2; with ``--dq 1`` the trellis (distortion-only, ``lambda_scale=0``) can exceed that per weight
   (about 1.4 step seen on a 64x32 test, as in the full mode).

``approx_param_base`` is NOT the base model's weights: it is the coder's update-tree state,
``{"parameters": {}, "put_node_depth": {}, "device_id": 0, "parameter_id": {}}`` (the initial state of
``NNClient`` / ``NNCFedAvg``), into which ``update_base_param=True`` stores the *quantisation levels* of the
update just coded (``nnc_core/coder/__init__.py`` ``encode`` and ``__decode_nnr_ndu_unit``). It must be
passed (a non-empty dict) whenever ``compress_differences=True``: ``compile_ndu`` asserts
``put_node_depths is not None``. Encoder and decoder each keep their own copy, fresh for every run.

TCA (``--tca 1``, ``temporal_context_modeling_flag``) conditions the CABAC contexts of each level on the
co-located level of the *previous update* of that tensor (``baseline.encode`` -> ``encodeLayer2`` ->
``ContextModeler::updateBaseMdlCtx``), taken from ``approx_param_base["parameters"]``. ``compile_ndu`` sets
the per-NDU flag only if ``tca`` and the tensor is already in ``approx_param_base["parameters"]``, i.e. only
from the second update of a chain on (in the FL code the state is filled by decoding the previous
update with ``update_base_param=True``). For the single BASE -> NEW update coded here the state is
empty, so with ``--tca 1`` every NDU is coded with ``temporal_context_modeling_flag = 0``: TCA is
signalled as enabled but has no reference and the bitstream is identical to ``--tca 0``. Seeding the
state with anything else (e.g. the base model's own levels) is not what NNCodec does and would need the
receiver to reproduce the encoder's quantisation of BASE, so it is not done. The JSON reports ``tca_ndus``
(NDUs actually coded with temporal contexts, counted with ``compile_ndu``'s condition).

Note: ``nncodec.nn.encode(model, incremental=True, approx_param_base=...)`` (``nncodec/nn.py``) also codes
whatever dict it is given (the caller passes the difference), but hard-codes
``compress_differences=False``, so its bitstreams carry no parent signalling and TCA can never be signalled
on that path; ``nncodec/fl.py`` ``encode`` is the call sequence NNCodec uses for updates, hence this mode
calls ``nnc.compress`` / ``nnc.decompress`` as that path does.

Incremental-mode JSON: ``bytes`` (full bitstream length incl. all NNR headers), ``encode_s`` (difference +
``compress``), ``decode_s`` (``decompress`` + adding BASE), medians over ``--repeat``, ``qp``, ``dq``,
``tca``, ``tca_ndus``, ``skipped_ndus`` (tensors with an all-zero quantised update), ``mode``
(``"incremental"``), ``nncodec_version``, ``step``, ``n_params``, ``repeat``, ``max_abs_err`` (max
|reconstructed NEW - NEW| over all tensors) and ``compress_differences`` (true). ``--out-npz`` receives the
reconstructed NEW model.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.metadata
import json
import os
import statistics
import sys
import tempfile
import time
import types
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

NONWEIGHT_QP = -75
QP_DENSITY = 2
FloatArray = npt.NDArray[np.float32]


class _Inert:
    """Stand-in for any torchvision class/function: constructible, callable, subclassable, does nothing."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __call__(self, *args: Any, **kwargs: Any) -> _Inert:
        return self


class _PlaceholderModule(types.ModuleType):
    """Module whose every public attribute is :class:`_Inert`."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return _Inert


def install_torchvision_placeholder() -> None:
    """Insert inert ``torchvision`` modules into ``sys.modules`` unless a real torchvision is importable."""
    if "torchvision" in sys.modules:
        return
    names = ("torchvision", "torchvision.datasets", "torchvision.transforms", "torchvision.models")
    for name in names:
        module = _PlaceholderModule(name)
        module.__path__ = []
        sys.modules[name] = module
    root = sys.modules["torchvision"]
    for name in names[1:]:
        setattr(root, name.rsplit(".", 1)[1], sys.modules[name])


def qp_to_step(qp: int, qp_density: int = QP_DENSITY) -> float:
    """NNCodec's quantisation step for an integer QP (NNR ``qp_density`` mantissa bits)."""
    k = 1 << qp_density
    return float((k + (qp & (k - 1))) * 2.0 ** ((qp >> qp_density) - qp_density))


def load_npz(path: Path) -> dict[str, FloatArray]:
    """Load name -> float32 array (C-contiguous copy) from an ``.npz`` file."""
    tensors: dict[str, FloatArray] = {}
    with np.load(path, allow_pickle=False) as data:
        for name in data.files:
            array = data[name]
            if not np.issubdtype(array.dtype, np.floating):
                raise SystemExit(f"tensor {name!r} has dtype {array.dtype}; only floating-point is supported")
            tensors[name] = np.array(array, dtype=np.float32, order="C")  # keeps 0-d shapes
    if not tensors:
        raise SystemExit(f"{path}: no tensors")
    return tensors


def run_once(
    nnc: Any,
    tensors: dict[str, FloatArray],
    qp: int,
    use_dq: bool,
    qp_density: int = QP_DENSITY,
    nonweight_qp: int = NONWEIGHT_QP,
) -> tuple[bytes, dict[str, Any], float, float]:
    """One encode + decode; returns (bitstream, decoded dict, encode seconds, decode seconds)."""
    # NNCodec 2.1.3 crashes on 0-d arrays; code scalars as shape (1,) (restored by the caller)
    params = {
        name: array.reshape(-1).copy() if array.ndim == 0 else array.copy() for name, array in tensors.items()
    }
    with contextlib.redirect_stdout(sys.stderr):
        t0 = time.perf_counter()
        bitstream = nnc.compress(
            params,
            bitstream_path=None,
            qp=qp,
            qp_density=qp_density,
            nonweight_qp=nonweight_qp,
            use_dq=use_dq,
            lambda_scale=0,
            param_opt=True,
            row_skipping=True,
            scan_order=0,
            cabac_unary_length_minus1=10,
            return_bitstream=True,
            verbose=False,
        )
        t1 = time.perf_counter()
        decoded = nnc.decompress(bytearray(bitstream), verbose=False)
        t2 = time.perf_counter()
    return bytes(bitstream), decoded, t1 - t0, t2 - t1


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--input", type=Path, required=True, help="npz with name -> float32 array")
    parser.add_argument("--qp", type=int, required=True, help="QP for tensors with ndim > 1 (e.g. -28)")
    parser.add_argument("--dq", type=int, choices=(0, 1), required=True, help="1: dependent quantisation")
    parser.add_argument("--out-json", type=Path, required=True, help="where to write the result JSON")
    parser.add_argument("--out-npz", type=Path, default=None, help="optional: write decoded arrays here")
    parser.add_argument("--repeat", type=int, default=1, help="encode+decode runs; times are medians")
    parser.add_argument(
        "--qp-density", type=int, default=QP_DENSITY, help="NNR qp_density (2^d steps per octave)"
    )
    parser.add_argument(
        "--nonweight-offset",
        type=int,
        default=None,
        help=f"1-D tensors at QP + this offset (default: at QP {NONWEIGHT_QP} whatever the QP)",
    )
    parser.add_argument(
        "--more-qps",
        default="",
        help="batch mode: further weight QPs, comma-separated, coded in this one process; each writes "
        "OUT-JSON and OUT-NPZ with _qpN added to the file stem",
    )
    parser.add_argument(
        "--base", type=Path, default=None, help="incremental mode: npz of the base model (--input is NEW)"
    )
    parser.add_argument(
        "--tca", type=int, choices=(0, 1), default=None, help="incremental mode: temporal context adaptation"
    )
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be >= 1")
    if args.tca is not None and args.base is None:
        parser.error("--tca needs --base")
    if args.base is not None and args.tca is None:
        args.tca = 0
    return args


def new_update_state() -> dict[str, Any]:
    """Empty ``approx_param_base`` update-tree state, as ``NNClient`` / ``NNCFedAvg`` initialise it."""
    return {"parameters": {}, "put_node_depth": {}, "device_id": 0, "parameter_id": {}}


def run_once_incremental(
    nnc: Any, new: dict[str, FloatArray], base: dict[str, FloatArray], qp: int, use_dq: bool, tca: bool
) -> tuple[bytes, dict[str, FloatArray], float, float, int, int]:
    """Code NEW as an update of BASE and reconstruct it as a receiver holding BASE would.

    Returns (bitstream, reconstructed NEW, encode seconds, decode seconds, NDUs coded with TCA,
    tensors whose update was all zero and sent as a skipped NDU).
    """
    enc_state = new_update_state()
    dec_state = new_update_state()
    # the per-NDU TCA condition of nnc_core/coder/syntax_compiler.py compile_ndu
    tca_ndus = sum(1 for name in new if tca and name in enc_state["parameters"])
    with contextlib.redirect_stdout(sys.stderr):
        t0 = time.perf_counter()
        # NNCodec 2.1.3 crashes on 0-d arrays; code scalars as shape (1,) (restored below)
        diff = {
            name: (array - base[name]).astype(np.float32).reshape(array.shape or (1,))
            for name, array in new.items()
        }
        bitstream = nnc.compress(
            diff,
            bitstream_path=None,
            qp=qp,
            qp_density=QP_DENSITY,
            nonweight_qp=NONWEIGHT_QP,
            use_dq=use_dq,
            lambda_scale=0,
            param_opt=True,
            row_skipping=True,
            scan_order=0,
            cabac_unary_length_minus1=10,
            tca=tca,
            compress_differences=True,
            approx_param_base=enc_state,
            update_base_param=True,
            return_bitstream=True,
            verbose=False,
        )
        t1 = time.perf_counter()
        decoded = nnc.decompress(
            bytearray(bitstream), approx_param_base=dec_state, update_base_param=True, verbose=False
        )
        # all-zero update tensors travel as skipped NDUs and are absent from the decoded dict: zero update
        # (as NNCFedAvg.aggregate_fit does with tensors.setdefault(k, np.zeros_like(...)))
        rec = {
            name: array + np.asarray(decoded[name], dtype=np.float32).reshape(array.shape)
            if name in decoded
            else array.copy()
            for name, array in base.items()
        }
        t2 = time.perf_counter()
    unexpected = sorted(set(decoded) - set(new))
    if unexpected:
        raise RuntimeError(f"decoded update has unknown tensors: {unexpected[:5]}")
    skipped = len(set(new) - set(decoded))
    return bytes(bitstream), rec, t1 - t0, t2 - t1, tca_ndus, skipped


def main_incremental(args: argparse.Namespace) -> int:
    """``--base`` mode: code ``--input`` (NEW) as an update of ``--base``; see the module docstring."""
    input_path: Path = args.input.resolve()
    base_path: Path = args.base.resolve()
    out_json: Path = args.out_json.resolve()
    out_npz: Path | None = args.out_npz.resolve() if args.out_npz is not None else None

    torch.set_num_threads(1)
    install_torchvision_placeholder()
    nnc = importlib.import_module("nncodec.nnc")  # only after the torchvision placeholder is in place

    new = load_npz(input_path)
    base = load_npz(base_path)
    if set(new) != set(base):
        diff_names = sorted(set(new) ^ set(base))
        raise SystemExit(f"--input and --base differ in tensor names: {diff_names[:5]}")
    for name, array in new.items():
        if base[name].shape != array.shape:
            raise SystemExit(f"tensor {name!r}: shape {array.shape} in --input, {base[name].shape} in --base")
    base = {name: base[name] for name in new}  # same order as NEW
    use_dq = bool(args.dq)
    tca = bool(args.tca)
    encode_times: list[float] = []
    decode_times: list[float] = []
    bitstream = b""
    rec: dict[str, FloatArray] = {}
    tca_ndus = 0
    skipped_ndus = 0
    old_cwd = Path.cwd()
    with tempfile.TemporaryDirectory(prefix="nncodec_runner_") as workdir:
        os.chdir(workdir)
        try:
            for _ in range(args.repeat):
                stream, rec, enc_s, dec_s, tca_ndus, skipped_ndus = run_once_incremental(
                    nnc, new, base, args.qp, use_dq, tca
                )
                if bitstream and stream != bitstream:
                    raise RuntimeError("NNCodec produced different bitstreams for identical input")
                bitstream = stream
                encode_times.append(enc_s)
                decode_times.append(dec_s)
        finally:
            os.chdir(old_cwd)

    max_abs_err = max(float(np.max(np.abs(rec[name] - array), initial=0.0)) for name, array in new.items())
    result: dict[str, Any] = {
        "bytes": len(bitstream),
        "encode_s": statistics.median(encode_times),
        "decode_s": statistics.median(decode_times),
        "nncodec_version": importlib.metadata.version("nncodec"),
        "mode": "incremental",
        "qp": args.qp,
        "dq": args.dq,
        "tca": args.tca,
        "tca_ndus": tca_ndus,
        "skipped_ndus": skipped_ndus,
        "compress_differences": True,
        "step": qp_to_step(args.qp, args.qp_density),
        "max_abs_err": max_abs_err,
        "n_params": int(sum(a.size for a in new.values())),
        "repeat": args.repeat,
    }
    out_json.write_text(json.dumps(result, indent=2) + "\n")
    if out_npz is not None:
        np.savez(out_npz, **rec)
    print(
        f"nncodec {result['nncodec_version']} incremental qp={args.qp} dq={args.dq} tca={args.tca} "
        f"(tca_ndus={tca_ndus}): {result['bytes']} B, encode {result['encode_s']:.4f} s, "
        f"decode {result['decode_s']:.4f} s, max_abs_err {max_abs_err:.3g}"
    )
    return 0


def code_at(nnc: Any, tensors: dict[str, FloatArray], qp: int, args: argparse.Namespace) -> dict[str, Any]:
    """Codes ``tensors`` at weight QP ``qp`` ``args.repeat`` times; returns the result JSON object and
    writes the decoded arrays to ``args.out_npz`` (with the QP in the name in batch mode)."""
    use_dq = bool(args.dq)
    nonweight = NONWEIGHT_QP if args.nonweight_offset is None else qp + args.nonweight_offset
    encode_times: list[float] = []
    decode_times: list[float] = []
    bitstream = b""
    decoded: dict[str, Any] = {}
    old_cwd = Path.cwd()
    with tempfile.TemporaryDirectory(prefix="nncodec_runner_") as workdir:
        os.chdir(workdir)
        try:
            for _ in range(args.repeat):
                stream, decoded, enc_s, dec_s = run_once(nnc, tensors, qp, use_dq, args.qp_density, nonweight)
                if bitstream and stream != bitstream:
                    raise RuntimeError("NNCodec produced different bitstreams for identical input")
                bitstream = stream
                encode_times.append(enc_s)
                decode_times.append(dec_s)
        finally:
            os.chdir(old_cwd)
    missing = sorted(set(tensors) - set(decoded))
    if missing:
        raise RuntimeError(f"decoded model lacks tensors: {missing[:5]}")
    out_npz = _batch_path(args.out_npz, qp, args) if args.out_npz is not None else None
    if out_npz is not None:
        rec: dict[str, Any] = {
            name: np.asarray(decoded[name], dtype=np.float32).reshape(array.shape)
            for name, array in tensors.items()
        }
        np.savez(out_npz, **rec)
    return {
        "bytes": len(bitstream),
        "encode_s": statistics.median(encode_times),
        "decode_s": statistics.median(decode_times),
        "nncodec_version": importlib.metadata.version("nncodec"),
        "qp": qp,
        "qp_density": args.qp_density,
        "nonweight_qp": nonweight,
        "dq": args.dq,
        "step": qp_to_step(qp, args.qp_density),
        "n_params": int(sum(a.size for a in tensors.values())),
        "repeat": args.repeat,
    }


def _batch_path(path: Path, qp: int, args: argparse.Namespace) -> Path:
    path = path.resolve()
    return path.with_name(f"{path.stem}_qp{qp}{path.suffix}") if args.more_qps else path


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.base is not None:
        return main_incremental(args)
    torch.set_num_threads(1)
    install_torchvision_placeholder()
    nnc = importlib.import_module("nncodec.nnc")  # only after the torchvision placeholder is in place
    tensors = load_npz(args.input.resolve())
    qps = [args.qp] + [int(q) for q in args.more_qps.split(",") if q.strip()]
    for qp in qps:
        result = code_at(nnc, tensors, qp, args)
        _batch_path(args.out_json, qp, args).write_text(json.dumps(result, indent=2) + "\n")
        print(
            f"nncodec {result['nncodec_version']} qp={qp} dq={args.dq}: {result['bytes']} B, "
            f"encode {result['encode_s']:.4f} s, decode {result['decode_s']:.4f} s",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
