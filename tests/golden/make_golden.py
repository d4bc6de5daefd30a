"""Writes the golden ``.nnsq`` files of the current format version and records them in ``golden.json``.

Run by hand (``python tests/golden/make_golden.py``) when the format version is bumped, or by the tests
with ``REGEN_GOLDEN=1``.  Files of older format versions are never touched: they must stay decodable
forever.  A file of the current version is only rewritten with ``--force`` (an intentional change of
the encoder output *without* a format change, which old readers can still decode).

The inputs are built from integer hashing and exact float arithmetic only (no RNG streams, no libm),
so they are identical on every platform and NumPy version.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

import nnsqueeze
from nnsqueeze.coding.container import FORMAT_VERSION
from nnsqueeze.io import Checkpoint, NamedTensor

HERE = Path(__file__).resolve().parent
MANIFEST = HERE / "golden.json"
VERSION = f"{FORMAT_VERSION[0]}.{FORMAT_VERSION[1]}"


# ---------------------------------------------------------------------------------------------------
# Deterministic inputs


def _hash(n: int, salt: int) -> np.ndarray:
    """splitmix64 of 0..n-1 (+ salt): n well-mixed uint64 values."""
    x = np.arange(n, dtype=np.uint64) + np.uint64(salt * 0x632BE59BD9B4E019 % 2**64)
    x = x * np.uint64(0x9E3779B97F4A7C15)
    x ^= x >> np.uint64(30)
    x = x * np.uint64(0xBF58476D1CE4E5B9)
    x ^= x >> np.uint64(27)
    x = x * np.uint64(0x94D049BB133111EB)
    x ^= x >> np.uint64(31)
    return x


def _uniform(n: int, salt: int) -> np.ndarray:
    """n floats in [0, 1) (exact: 53-bit integers times 2**-53)."""
    return (_hash(n, salt) >> np.uint64(11)).astype(np.float64) * 2.0**-53


def _peaked(shape: tuple[int, ...], salt: int, scale: float) -> np.ndarray:
    """A weight-like distribution peaked at 0: (u1 - 1/2) * u2 * u3 * scale, exact float64 arithmetic."""
    n = int(np.prod(shape, dtype=np.int64))
    u1, u2, u3 = _uniform(n, salt), _uniform(n, salt + 1), _uniform(n, salt + 2)
    return ((u1 - 0.5) * u2 * u3 * (4 * scale)).reshape(shape)


def _ints(shape: tuple[int, ...], salt: int, lo: int, hi: int, dtype: str) -> np.ndarray:
    n = int(np.prod(shape, dtype=np.int64))
    span = hi - lo + 1
    values = [lo + int(v) % span for v in _hash(n, salt)]
    return np.array(values, dtype=object).astype(dtype).reshape(shape)


def _bf16(values: np.ndarray) -> np.ndarray:
    """float32 values as bfloat16 bits, rounded to nearest even."""
    bits = np.ascontiguousarray(values, dtype=np.float32).view(np.uint32).astype(np.uint64)
    return ((bits + 0x7FFF + ((bits >> np.uint64(16)) & np.uint64(1))) >> np.uint64(16)).astype(np.uint16)


def _float_bits(dtype: str, shape: tuple[int, ...], salt: int) -> np.ndarray:
    """Arbitrary bit patterns (NaN payloads, Inf, -0.0, subnormals) of a float dtype."""
    itemsize = np.dtype(dtype).itemsize
    n = int(np.prod(shape, dtype=np.int64))
    bits = (_hash(n, salt) >> np.uint64(64 - 8 * itemsize)).astype(f"u{itemsize}")
    return bits.view(dtype).reshape(shape)


def _lossy() -> list[NamedTensor]:
    f32 = np.float32
    gains = (1.0 + _peaked((24,), 7, 0.01)).astype(f32)
    return [
        NamedTensor("conv1.weight", _peaked((8, 3, 3, 3), 1, 0.2).astype(f32), "float32"),
        NamedTensor("conv1.bias", _peaked((8,), 2, 0.02).astype(f32), "float32"),
        NamedTensor("fc.weight", _peaked((24, 40), 3, 0.05).astype(f32), "float32"),
        NamedTensor("fc.weight_f16", _peaked((12, 10), 4, 0.05).astype(np.float16), "float16"),
        NamedTensor("fc.weight_f64", _peaked((5, 6), 5, 0.5), "float64"),
        NamedTensor("emb.weight_bf16", _bf16(_peaked((6, 16), 6, 0.1)), "bfloat16"),
        NamedTensor("norm.weight", gains, "float32"),
        NamedTensor("norm.bias_bf16", _bf16(_peaked((24,), 8, 0.01)), "bfloat16"),
        NamedTensor("temperature", np.array(0.0703125, f32), "float32"),
        NamedTensor("empty.weight", np.zeros((0, 4), f32), "float32"),
    ]


def _ints_and_bools() -> list[NamedTensor]:
    tensors = [
        NamedTensor(f"{dtype}.narrow", _ints((4, 5), 20 + i, -3 if dtype[0] == "i" else 0, 9, dtype), dtype)
        for i, dtype in enumerate(["int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"])
    ]
    i64 = np.iinfo(np.int64)
    tensors += [
        NamedTensor("int64.wide", _ints((7,), 40, int(i64.min), int(i64.max), "int64"), "int64"),
        NamedTensor("uint64.wide", _ints((3, 3), 41, 0, 2**64 - 1, "uint64"), "uint64"),
        NamedTensor("int64.offset", _ints((30,), 42, 10**12, 10**12 + 500, "int64"), "int64"),
        NamedTensor("int32.full", _ints((16,), 43, -(2**31), 2**31 - 1, "int32"), "int32"),
        NamedTensor("uint8.full", _ints((8, 8), 44, 0, 255, "uint8"), "uint8"),
        NamedTensor("mask", (_hash(60, 45) % np.uint64(3) == 0).reshape(6, 10), "bool"),
        NamedTensor("step_count", np.array(123456, np.int64), "int64"),
        NamedTensor("empty.idx", np.zeros((2, 0), np.int32), "int32"),
    ]
    return tensors


def _lossless() -> list[NamedTensor]:
    specials = np.array([np.nan, np.inf, -np.inf, -0.0, 0.0, 1e-45, -3.4e38], np.float32)
    return [
        NamedTensor("w.f32", _float_bits("float32", (6, 7), 60), "float32"),
        NamedTensor("w.f16", _float_bits("float16", (33,), 61), "float16"),
        NamedTensor("w.f64", _float_bits("float64", (2, 2, 3), 62), "float64"),
        NamedTensor("w.bf16", (_hash(20, 63) >> np.uint64(48)).astype(np.uint16).reshape(4, 5), "bfloat16"),
        NamedTensor("specials", specials, "float32"),
        NamedTensor("smooth", _peaked((16, 16), 64, 0.1).astype(np.float32), "float32"),
    ]


def _options_mix() -> list[NamedTensor]:
    return [
        NamedTensor("a.weight", _peaked((32, 24), 80, 1.0).astype(np.float32), "float32"),
        NamedTensor("a.bias", _peaked((32,), 81, 0.1).astype(np.float32), "float32"),
        NamedTensor("b.weight", _peaked((4, 2, 5, 5), 82, 3.0).astype(np.float16), "float16"),
    ]


def _chunked() -> list[NamedTensor]:
    """Tensors of several chunks at ``chunk_elements=64`` (entry points, format 2.0)."""
    return [
        NamedTensor("big.weight", _peaked((40, 7), 90, 0.3).astype(np.float32), "float32"),
        NamedTensor("big.weight_f16", _peaked((9, 30), 91, 0.3).astype(np.float16), "float16"),
        NamedTensor("counts", _ints((50, 4), 92, -40, 300, "int32"), "int32"),
        NamedTensor("norm.weight", _peaked((300,), 93, 0.1).astype(np.float32), "float32"),
        NamedTensor("wide", _ints((130,), 94, -(2**62), 2**62, "int64"), "int64"),
    ]


def _tokens() -> list[NamedTensor]:
    """Tensors for the token coder (format 2.1): a weight with large levels (raw magnitude bits), a
    1-D tensor around a zero point, an empty tensor, and chunks of rows at ``chunk_elements=64``."""
    f32 = np.float32
    return [
        NamedTensor("tok.weight", _peaked((24, 40), 100, 0.5).astype(f32), "float32"),
        NamedTensor("tok.wide", _peaked((6, 11), 101, 500.0).astype(f32), "float32"),
        NamedTensor("tok.gain", (1.0 + _peaked((24,), 102, 0.01)).astype(f32), "float32"),
        NamedTensor("tok.weight_bf16", _bf16(_peaked((5, 16), 103, 0.1)), "bfloat16"),
        NamedTensor("tok.empty", np.zeros((0, 4), f32), "float32"),
        NamedTensor("tok.zeros", np.zeros((3, 5), f32), "float32"),
    ]


# name -> (tensors, options, metadata, attachments)
CASES: dict[str, tuple[Callable[[], list[NamedTensor]], dict[str, Any], dict[str, str], dict[str, bytes]]] = {
    "lossy": (_lossy, {}, {"golden": "lossy", "note": "ünïcödé ✓"}, {}),
    "ints": (_ints_and_bools, {}, {"golden": "ints"}, {}),
    "lossless": (_lossless, {"lossless": True}, {"golden": "lossless"}, {"blob": bytes(range(256)) * 3}),
    "options": (_options_mix, {"qp": -20, "qp_1d_offset": -16, "num_gtx": 4}, {}, {}),
    "chunks": (_chunked, {"chunk_elements": 64, "lossless_1d": True}, {"golden": "chunks"}, {}),
    "trellis": (_chunked, {"chunk_elements": 64, "trellis": True, "rdo_lambda": 0.1}, {}, {}),
    "tokens": (_tokens, {"coder": "tokens", "chunk_elements": 64}, {"golden": "tokens"}, {}),
}


def encode_case(name: str) -> bytes:
    """The ``.nnsq`` bytes of a golden case, encoded by the installed nnsqueeze."""
    make, options, metadata, attachments = CASES[name]
    tensors = make()
    checkpoint = Checkpoint("golden", iter(tensors), len(tensors), dict(attachments), {})
    opts = nnsqueeze.CompressOptions(threads=1, **options)
    report = nnsqueeze.compress(checkpoint, options=opts, metadata=metadata)
    assert report.data is not None
    return report.data


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def describe(data: bytes) -> dict[str, Any]:
    """What a decoder must reproduce: each tensor's dtype, shape and SHA-256 of its stored bytes
    (bfloat16 as raw bits), the metadata and the attachments' hashes."""
    with nnsqueeze.NnsqFile(data) as f:
        tensors = {}
        for name in f.names:
            t = f.read_tensor(name)
            digest = sha256(np.ascontiguousarray(t.array).tobytes())
            tensors[name] = {"dtype": t.dtype, "shape": list(t.array.shape), "sha256": digest}
        return {
            "tensors": tensors,
            "metadata": f.metadata,
            "attachments": {k: sha256(v) for k, v in f.attachments.items()},
        }


def file_name(case: str, version: str = VERSION) -> str:
    return f"{case}.v{version}.nnsq"


def load_manifest() -> dict[str, Any]:
    if MANIFEST.exists():
        return json.loads(MANIFEST.read_text(encoding="utf-8"))  # type: ignore[no-any-return]
    return {"files": {}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--force", action="store_true", help="rewrite golden files of the current version")
    args = parser.parse_args(argv)
    manifest = load_manifest()
    for case in CASES:
        fname = file_name(case)
        path = HERE / fname
        data = encode_case(case)
        if path.exists() and path.read_bytes() != data and not args.force:
            print(
                f"{fname} exists with different bytes; bump the format version or pass --force",
                file=sys.stderr,
            )
            return 1
        path.write_bytes(data)
        manifest["files"][fname] = {
            "case": case,
            "format_version": VERSION,
            "sha256": sha256(data),
            **describe(data),
        }
        print(f"wrote {fname} ({len(data)} bytes)")
    manifest["files"] = dict(sorted(manifest["files"].items()))
    # not sort_keys: the order of "tensors" is the file order
    MANIFEST.write_text(json.dumps(manifest, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
