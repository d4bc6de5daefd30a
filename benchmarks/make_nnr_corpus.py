"""Write NNR bitstreams made by NNCodec 2.1.3, with the hashes of its decode: the conformance corpus, or the
streams of ``bench_nnr.py``.

Run with the Python of NNCodec's own venv (see ``nncodec_runner.py`` for the recipe); it does not import
``nnsqueeze``::

    /work/nncodec-venv/bin/python benchmarks/make_nnr_corpus.py --out tests/golden/nnr
    /work/nncodec-venv/bin/python benchmarks/make_nnr_corpus.py --out DIR --input MODEL.npz --bench --repeat 3

With ``--decode DIR`` it writes nothing new: it decodes every ``*.nnc`` in DIR with NNCodec and writes
``DIR/nncodec_decoded.json`` (per stream, per tensor, shape, dtype and SHA-256), for checking streams that
nnsqueeze wrote.

With ``--input`` the model is the npz's float32 arrays and, with ``--bench``, the configurations are
:func:`bench_configs` (URQ and DQ at QP -20 ... -38, param_opt on and off); the manifest then also holds
NNCodec's decode time per stream (``nnc.decompress`` of the bitstream in memory, median of ``--repeat``)
and its encode time (one ``nnc.compress`` call).

For every configuration in :data:`CONFIGS` it codes one generated model (a dict of float32 arrays: a
convolution, a linear layer with all-zero rows, a bias, a wide and a tall matrix, a scalar-like vector) with
``nncodec.nnc.compress`` and decodes it with ``nncodec.nnc.decompress``. It writes ``NAME.nnc`` and one line
per stream to ``manifest.json``: the settings, and per tensor its shape, dtype and the SHA-256 of NNCodec's
decoded bytes (C order).  The tests decode each stream with ``nnsqueeze.nnr`` and compare hashes, so CI needs
neither NNCodec nor its venv.  The model is generated from a fixed seed, so a rerun writes the same files.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from nncodec_runner import install_torchvision_placeholder

# name -> compress() keyword arguments beyond the shared ones below.
CONFIGS: dict[str, dict[str, Any]] = {
    "urq_qp-20": {"qp": -20, "use_dq": False},
    "urq_qp-28": {"qp": -28, "use_dq": False},
    "urq_qp-38": {"qp": -38, "use_dq": False},
    "dq_qp-20": {"qp": -20, "use_dq": True},
    "dq_qp-28": {"qp": -28, "use_dq": True},
    "dq_qp-38": {"qp": -38, "use_dq": True},
    "urq_qp-28_noparamopt": {"qp": -28, "use_dq": False, "param_opt": False},
    "dq_qp-28_noparamopt": {"qp": -28, "use_dq": True, "param_opt": False},
    "urq_qp-28_norowskip": {"qp": -28, "use_dq": False, "row_skipping": False},
    "dq_qp-28_norowskip": {"qp": -28, "use_dq": True, "row_skipping": False},
    "urq_qp-28_density3": {"qp": -56, "use_dq": False, "qp_density": 3},
    "dq_qp-28_unary4": {"qp": -28, "use_dq": True, "cabac_unary_length_minus1": 4},
    "urq_qp-28_rdoq": {"qp": -28, "use_dq": False, "lambda_scale": 1.0},
    "dq_qp-24_scan1": {"qp": -24, "use_dq": True, "scan_order": 1},
    "urq_qp-24_scan2": {"qp": -24, "use_dq": False, "scan_order": 2},
    "dq_qp-32_scan4": {"qp": -32, "use_dq": True, "scan_order": 4},
    "urq_qp-28_codebook": {"qp": -28, "use_dq": False, "codebook_mode": 1},
    "urq_qp-28_codebookforce": {"qp": -28, "use_dq": False, "codebook_mode": 2},
    "urq_qp-12_sparse": {"qp": -12, "use_dq": False},
    "dq_qp-12_sparse": {"qp": -12, "use_dq": True},
}

SHARED = {
    "qp_density": 2,
    "nonweight_qp": -75,
    "param_opt": True,
    "row_skipping": True,
    "scan_order": 0,
    "lambda_scale": 0,
    "cabac_unary_length_minus1": 10,
}


def generated_model() -> dict[str, np.ndarray]:
    """A small model with the shapes and statistics that exercise the syntax (fixed seed)."""
    rng = np.random.default_rng(20261207)
    linear = rng.laplace(0, 0.05, size=(48, 64)).astype(np.float32)
    linear[[3, 17, 18, 40]] = 0.0  # rows for row skipping
    return {
        "conv.weight": rng.normal(0, 0.1, size=(16, 3, 3, 3)).astype(np.float32),
        "conv.bias": rng.normal(0, 0.02, size=16).astype(np.float32),
        "fc.weight": linear,
        "fc.bias": rng.normal(0, 0.01, size=48).astype(np.float32),
        "wide.weight": (rng.standard_t(3, size=(5, 700)) * 0.02).astype(np.float32),
        "tall.weight": rng.normal(0, 0.3, size=(300, 2)).astype(np.float32),
        "norm.weight": (1.0 + rng.normal(0, 0.1, size=7)).astype(np.float32),
        "counts": rng.integers(-40, 40, size=(6, 5)).astype(np.int32),  # an integer tensor (NNR_PT_INT)
    }


def bench_configs() -> dict[str, dict[str, Any]]:
    """The benchmark grid: URQ and DQ at QP -20, -24, -28, -32 and -38, with param_opt on and off."""
    grid = {}
    for qp in (-20, -24, -28, -32, -38):
        for dq in (False, True):
            for param_opt in (True, False):
                name = f"{'dq' if dq else 'urq'}_qp{qp}{'' if param_opt else '_noparamopt'}"
                grid[name] = {"qp": qp, "use_dq": dq, "param_opt": param_opt}
    return grid


RD_DENSITY = 4
RD_NONWEIGHT_QP = -300  # at qp_density 4: NNCodec's default 1-D step (QP -75 at density 2), 1.25 * 2^-19


def rd_configs(span: str) -> dict[str, dict[str, Any]]:
    """URQ and DQ at every QP of ``LO:HI`` at qp_density 4, 1-D tensors at NNCodec's default step."""
    lo, hi = (int(v) for v in span.split(":"))
    return {
        f"{'dq' if dq else 'urq'}_qp{qp}": {
            "qp": qp,
            "use_dq": dq,
            "qp_density": RD_DENSITY,
            "nonweight_qp": RD_NONWEIGHT_QP,
        }
        for qp in range(lo, hi + 1)
        for dq in (False, True)
    }


def load_npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as data:
        # NNCodec 2.1.3 cannot code 0-d arrays (as nncodec_runner.py notes): scalars become shape (1,).
        return {k: np.array(data[k], dtype=np.float32).reshape(data[k].shape or (1,)) for k in data.files}


def update_chains(nnc: Any, out: Path) -> list[dict[str, Any]]:
    """Chains of incremental updates with temporal context adaptation, as NNCodec's federated path
    codes them (``compress_differences``, ``tca``, ``approx_param_base`` updated after each): three
    updates of a small model per quantizer; the second and third are coded against the previous one."""
    from nncodec_runner import new_update_state

    rng = np.random.default_rng(1207)
    entries = []
    for chain, use_dq in (("tca_urq", False), ("tca_dq", True)):
        enc_state, dec_state = new_update_state(), new_update_state()
        for step in range(3):
            update = {
                "fc.weight": rng.laplace(0, 0.01, (16, 24)).astype(np.float32),
                "conv.weight": rng.laplace(0, 0.005, (8, 2, 3, 3)).astype(np.float32),
                "fc.bias": rng.normal(0, 0.001, 16).astype(np.float32),
            }
            update["fc.weight"][[2, 9]] = 0.0
            settings = {**SHARED, "qp": -32, "use_dq": use_dq, "tca": True, "compress_differences": True}
            with (
                tempfile.TemporaryDirectory() as tmp,
                contextlib.chdir(tmp),
                contextlib.redirect_stdout(sys.stderr),
            ):
                stream = nnc.compress(
                    update,
                    bitstream_path=None,
                    return_bitstream=True,
                    verbose=False,
                    approx_param_base=enc_state,
                    update_base_param=True,
                    **settings,
                )
                decoded = nnc.decompress(
                    bytearray(stream), approx_param_base=dec_state, update_base_param=True, verbose=False
                )
            name = f"{chain}_{step}.nnc"
            (out / name).write_bytes(bytes(stream))
            entries.append(
                {
                    "stream": name,
                    "bytes": len(stream),
                    "settings": settings,
                    "chain": chain,
                    "tensors": hashes(decoded),
                }
            )
            print(f"{name}: {len(stream)} bytes (update {step} of chain {chain})")
    return entries


def hashes(decoded: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Shape, dtype and SHA-256 of each decoded tensor: floats as float32 (NNCodec returns codebook
    tensors as float64), integers as they are."""
    out = {}
    for name, array in decoded.items():
        array = np.asarray(array)
        values = np.ascontiguousarray(array, dtype=np.float32 if array.dtype.kind == "f" else array.dtype)
        out[name] = {
            "shape": list(values.shape),
            "dtype": str(values.dtype),
            "sha256": hashlib.sha256(values.tobytes()).hexdigest(),
        }
    return out


def decode_folder(nnc: Any, folder: Path) -> None:
    result = {}
    for path in sorted(folder.glob("*.nnc")):
        with (
            tempfile.TemporaryDirectory() as tmp,
            contextlib.chdir(tmp),
            contextlib.redirect_stdout(sys.stderr),
        ):
            result[path.name] = hashes(nnc.decompress(bytearray(path.read_bytes()), verbose=False))
    (folder / "nncodec_decoded.json").write_text(json.dumps(result) + "\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "--out", type=Path, required=True, help="corpus folder (written: *.nnc, manifest.json)"
    )
    parser.add_argument(
        "--input", type=Path, help="npz of float32 tensors to code (default: the generated model)"
    )
    parser.add_argument("--bench", action="store_true", help="code the benchmark grid instead of CONFIGS")
    parser.add_argument(
        "--repeat", type=int, default=0, help="time NNCodec's decode, median of this many runs"
    )
    parser.add_argument("--decode", type=Path, help="decode the *.nnc files of this folder instead")
    parser.add_argument(
        "--rd", metavar="LO:HI", help="code every QP from LO to HI at qp_density 4, URQ and DQ (RD curves)"
    )
    args = parser.parse_args(argv)
    install_torchvision_placeholder()
    import importlib.metadata

    from nncodec import nnc

    if args.decode is not None:
        decode_folder(nnc, args.decode)
        return
    args.out.mkdir(parents=True, exist_ok=True)
    model = generated_model() if args.input is None else load_npz(args.input)
    entries = []
    configs = rd_configs(args.rd) if args.rd else bench_configs() if args.bench else CONFIGS
    for name, overrides in configs.items():
        settings = {**SHARED, **overrides}
        with (
            tempfile.TemporaryDirectory() as tmp,
            contextlib.chdir(tmp),
            contextlib.redirect_stdout(sys.stderr),
        ):
            encode_started = time.perf_counter()
            stream = nnc.compress(
                {k: v.copy() for k, v in model.items()},
                bitstream_path=None,
                return_bitstream=True,
                verbose=False,
                **settings,
            )
            encode_s = time.perf_counter() - encode_started
            decoded = nnc.decompress(bytearray(stream), verbose=False)
            times = []
            for _ in range(args.repeat):
                started = time.perf_counter()
                nnc.decompress(bytearray(stream), verbose=False)
                times.append(time.perf_counter() - started)
        (args.out / f"{name}.nnc").write_bytes(bytes(stream))
        tensors = hashes(decoded)
        entry = {"stream": f"{name}.nnc", "bytes": len(stream), "settings": settings, "tensors": tensors}
        if times:  # timed runs only: the corpus files stay free of timings
            entry["decode_s"] = statistics.median(times)
            entry["encode_s"] = encode_s
        entries.append(entry)
        print(f"{name}: {len(stream)} bytes, {len(tensors)} tensors")
    if args.input is None and not args.bench:
        entries += update_chains(nnc, args.out)
    # One line per stream keeps the file small and its diffs readable.
    version = json.dumps(importlib.metadata.version("nncodec"))
    lines = ",\n".join(json.dumps(entry) for entry in entries)
    (args.out / "manifest.json").write_text(f'{{"nncodec_version": {version}, "streams": [\n{lines}\n]}}\n')


if __name__ == "__main__":
    main()
