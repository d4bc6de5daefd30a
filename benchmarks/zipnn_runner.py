"""Compress and decompress one raw buffer with ZipNN 0.5.4 and time it (the lossless baseline of
``bench_speed.py``).

Standalone: it does NOT import ``nnsqueeze`` and runs with the Python of its own venv, because zipnn
pulls torch (only its CPU path is used)::

    python3 -m venv /work/zipnn-venv
    /work/zipnn-venv/bin/pip install torch==2.13.0 zipnn==0.5.4

Invocation::

    /work/zipnn-venv/bin/python benchmarks/zipnn_runner.py --input RAW.bin --dtype bfloat16 \\
        --threads 1 --out-json OUT.json

``--input`` holds the tensors' little-endian element bytes back to back; ``--dtype`` is ZipNN's
``bytearray_dtype`` (float32, bfloat16, float16).  ZipNN 0.5.4 rewrites its input in place, so every
compress call gets a fresh copy (made outside the timer).  One warm-up compress + decompress runs
first (all timings warm, like the other coders'), then one timed call of each; the round trip is
checked byte for byte.  Output JSON: ``bytes``, ``encode_s``, ``decode_s``, ``zipnn_version``,
``threads``.
"""

from __future__ import annotations

import argparse
import json
import time
from importlib.metadata import version
from pathlib import Path

from zipnn import ZipNN


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--input", type=Path, required=True)
    ap.add_argument("--dtype", required=True)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out-json", type=Path, required=True)
    args = ap.parse_args()
    original = args.input.read_bytes()
    codec = ZipNN(input_format="byte", bytearray_dtype=args.dtype, threads=args.threads)
    codec.decompress(codec.compress(bytearray(original)))  # warm-up
    buffer = bytearray(original)
    t0 = time.perf_counter()
    compressed = codec.compress(buffer)
    encode_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    restored = codec.decompress(compressed)
    decode_s = time.perf_counter() - t0
    if bytes(restored) != original:
        raise SystemExit("ZipNN round trip differs from the input")
    result = {
        "bytes": len(compressed),
        "encode_s": encode_s,
        "decode_s": decode_s,
        "zipnn_version": version("zipnn"),
        "threads": args.threads,
    }
    args.out_json.write_text(json.dumps(result) + "\n")
    print(f"zipnn {args.dtype} t={args.threads}: {len(original) / len(compressed):.4f}x", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
