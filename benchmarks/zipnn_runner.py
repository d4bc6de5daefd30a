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

Delta mode (``--base``)::

    /work/zipnn-venv/bin/python benchmarks/zipnn_runner.py --input NEW.bin --base BASE.bin \\
        --dtype float32 --threads 1 --out-json OUT.json

``--base`` is the base model's raw buffer (same length and dtype as ``--input``, which is the NEW model).
This is ZipNN 0.5.4's own delta path (``zipnn/zipnn.py``): the codec is built with
``ZipNN(input_format="byte", bytearray_dtype=..., threads=..., delta_compressed_type="byte")`` (header byte
9 = 1), then ``compress(new, delta_second_data=base)`` XORs the two buffers byte by byte
(``np.bitwise_xor``) and compresses the XOR with the normal byte-grouping path
(``compress_torch_numpy_byte``); ``decompress(blob, delta_second_data=base)`` decompresses and XORs with the
base again. (The constructor docstring still calls ``delta_compressed_type`` "NOT IMPLEMENTED YET" and
``compress_delta`` raises, but that method is never called; ``compress`` / ``decompress`` implement the
XOR delta as described.) The receiver is a second ``ZipNN`` instance with the same settings that only has
the blob and BASE. Warm-up, fresh input copies outside the timers and the byte-exact round-trip check are
as above; BASE is also checked to be unchanged afterwards. Output JSON as above plus ``mode``
(``"delta"``).
"""

from __future__ import annotations

import argparse
import json
import time
from importlib.metadata import version
from pathlib import Path

from zipnn import ZipNN


def main_delta(args: argparse.Namespace) -> int:
    """``--base`` mode: compress ``--input`` as a XOR delta against ``--base`` (see the module docstring)."""
    original = args.input.read_bytes()
    base = args.base.read_bytes()
    if len(base) != len(original):
        raise SystemExit(f"--base has {len(base)} bytes, --input {len(original)}; they must match")

    def make_codec() -> ZipNN:
        return ZipNN(
            input_format="byte",
            bytearray_dtype=args.dtype,
            threads=args.threads,
            delta_compressed_type="byte",
        )

    encoder = make_codec()
    decoder = make_codec()  # the receiver: same settings, has only the blob and the base
    decoder.decompress(
        encoder.compress(bytearray(original), delta_second_data=bytes(base)), delta_second_data=base
    )
    buffer = bytearray(original)
    base_copy = bytes(base)
    t0 = time.perf_counter()
    compressed = encoder.compress(buffer, delta_second_data=base_copy)
    encode_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    restored = decoder.decompress(compressed, delta_second_data=base)
    decode_s = time.perf_counter() - t0
    if bytes(restored) != original:
        raise SystemExit("ZipNN delta round trip differs from the input")
    if base_copy != base:
        raise SystemExit("ZipNN modified the delta base buffer")
    result = {
        "bytes": len(compressed),
        "encode_s": encode_s,
        "decode_s": decode_s,
        "zipnn_version": version("zipnn"),
        "threads": args.threads,
        "mode": "delta",
    }
    args.out_json.write_text(json.dumps(result) + "\n")
    print(f"zipnn delta {args.dtype} t={args.threads}: {len(original) / len(compressed):.4f}x", flush=True)
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--input", type=Path, required=True)
    ap.add_argument("--dtype", required=True)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out-json", type=Path, required=True)
    ap.add_argument("--base", type=Path, default=None, help="delta mode: raw base buffer, same length")
    args = ap.parse_args()
    if args.base is not None:
        return main_delta(args)
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
