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
    nnc: Any, tensors: dict[str, FloatArray], qp: int, use_dq: bool
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
            qp_density=QP_DENSITY,
            nonweight_qp=NONWEIGHT_QP,
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
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    input_path: Path = args.input.resolve()
    out_json: Path = args.out_json.resolve()
    out_npz: Path | None = args.out_npz.resolve() if args.out_npz is not None else None

    torch.set_num_threads(1)
    install_torchvision_placeholder()
    nnc = importlib.import_module("nncodec.nnc")  # only after the torchvision placeholder is in place

    tensors = load_npz(input_path)
    use_dq = bool(args.dq)
    encode_times: list[float] = []
    decode_times: list[float] = []
    bitstream = b""
    decoded: dict[str, Any] = {}
    old_cwd = Path.cwd()
    with tempfile.TemporaryDirectory(prefix="nncodec_runner_") as workdir:
        os.chdir(workdir)
        try:
            for _ in range(args.repeat):
                stream, decoded, enc_s, dec_s = run_once(nnc, tensors, args.qp, use_dq)
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
    result: dict[str, Any] = {
        "bytes": len(bitstream),
        "encode_s": statistics.median(encode_times),
        "decode_s": statistics.median(decode_times),
        "nncodec_version": importlib.metadata.version("nncodec"),
        "qp": args.qp,
        "dq": args.dq,
        "step": qp_to_step(args.qp),
        "n_params": int(sum(a.size for a in tensors.values())),
        "repeat": args.repeat,
    }
    out_json.write_text(json.dumps(result, indent=2) + "\n")
    if out_npz is not None:
        rec: dict[str, Any] = {
            name: np.asarray(decoded[name], dtype=np.float32).reshape(array.shape)
            for name, array in tensors.items()
        }
        np.savez(out_npz, **rec)
    print(
        f"nncodec {result['nncodec_version']} qp={args.qp} dq={args.dq}: {result['bytes']} B, "
        f"encode {result['encode_s']:.4f} s, decode {result['decode_s']:.4f} s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
