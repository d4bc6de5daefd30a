"""Long mutation fuzzing of the ``.nnsq`` decoder: ``python benchmarks/fuzz_long.py [N] [--seed S]``.

Runs N (default 1,000,000) mutated files, made with a fixed seed from a few valid ones, through
``nnsqueeze.decompress``.  Every outcome other than success or ``BitstreamError`` is a bug: it is
counted by exception type (warnings too) and, with ``--save-dir``, the input is saved for replay.
Prints progress, then a summary with throughput, the slowest input and the peak RSS.

Mutations: raw byte flips / sets / insertions / deletions / truncations / repeats / splices of two
files (stopped mostly by the CRCs), and the same on one record's payload or header fields or on
the index, with the CRCs recomputed so the inputs reach the header checks and the C++ decoders.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import random
import resource
import struct
import sys
import time
import warnings
import zlib
from collections import Counter
from pathlib import Path

import numpy as np

import nnsqueeze
from nnsqueeze import BitstreamError
from nnsqueeze.coding.container import (
    ContainerReader,
    ContainerWriter,
    LevelParams,
    RecordHeader,
    encode_record_header,
)


def seed_files() -> list[bytes]:
    rng = np.random.default_rng(5)
    specs = [
        (
            {
                "conv.weight": rng.normal(0, 0.05, (4, 3, 3, 3)).astype(np.float32),
                "conv.bias": rng.normal(0, 0.01, 4).astype(np.float32),
                "fc.weight": rng.laplace(0, 0.02, (8, 16)).astype(np.float16),
                "norm.weight": (1 + rng.normal(0, 0.01, 16)).astype(np.float32),
                "scalar": np.array(0.5, np.float64),
            },
            {},
        ),
        (
            {"w": rng.normal(0, 1, (5, 6)).astype(np.float32), "h": rng.normal(0, 1, 7).astype(np.float16)},
            {"lossless": True},
        ),
        (
            {
                "i": rng.integers(-40, 40, (6, 6)),
                "u": rng.integers(0, 255, 9, dtype=np.uint8),
                "b": rng.random(5) > 0.5,
                "big": np.array([-(2**63), 2**63 - 1]),
            },
            {},
        ),
        ({"w": rng.laplace(0, 0.3, (3, 200)).astype(np.float32)}, {"qp": -36}),
    ]
    out = []
    for tensors, kwargs in specs:
        data = nnsqueeze.compress(tensors, threads=1, metadata={"fuzz": "seed"}, **kwargs).data
        assert data is not None
        out.append(data)
    return out


# ---------------------------------------------------------------------------------------------------
# Mutators


def mutate_bytes(rng: random.Random, data: bytes, others: list[bytes], max_ops: int = 4) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, max_ops)):
        pos = rng.randint(0, len(buf))
        kind = rng.randrange(7)
        if kind == 0 and pos < len(buf):
            buf[pos] ^= rng.randint(1, 255)
        elif kind == 1 and pos < len(buf):
            buf[pos] = rng.choice((0x00, 0x01, 0x7F, 0x80, 0xFF))
        elif kind == 2:
            buf[pos:pos] = rng.randbytes(rng.randint(1, 16))
        elif kind == 3:
            del buf[pos : pos + rng.randint(1, 32)]
        elif kind == 4:
            del buf[pos:]
        elif kind == 5:
            other = rng.choice(others)
            buf = buf[:pos] + other[rng.randint(0, len(other)) :]
        else:
            buf[pos:pos] = buf[pos : pos + rng.randint(1, 64)]
    return bytes(buf)


def build_file(records: list[tuple[RecordHeader, bytes]], metadata: dict[str, str]) -> bytes:
    """A file written by the container's own writer (checksums and index recomputed)."""
    writer = ContainerWriter(None)
    for header, payload in records:
        writer.add(header, payload)
    writer.close(metadata, {})
    return writer.getvalue()


def level_params(**fields: int) -> LevelParams:
    """``LevelParams`` from those of the given fields that the current format has."""
    names = {f.name for f in dataclasses.fields(LevelParams)}
    return LevelParams(**{k: v for k, v in fields.items() if k in names})  # type: ignore[arg-type]


def _index_and_footer(index_offset: int, body: bytes) -> bytes:
    index = b"INDX" + body + struct.pack("<I", zlib.crc32(body))
    return index + struct.pack("<QQ8s", index_offset, len(index), b"NNSQEND\0")


class Parsed:
    def __init__(self, data: bytes) -> None:
        reader = ContainerReader(data)
        self.records = [reader.read_record(e) for e in reader.index.entries]
        self.metadata = dict(reader.index.metadata)
        self.data = data
        self.index_offset, self.index_length = struct.unpack_from("<QQ", data, len(data) - 24)


def _mutate_header(rng: random.Random, h: RecordHeader) -> RecordHeader:
    p = h.levels or level_params(rows=h.shape[0] if h.shape else 1, num_gtx=24, fast_shift=4, slow_shift=7)
    kind = rng.randrange(11)
    # wild values included: anything but BitstreamError is a bug to report
    if kind == 0 and h.shape:
        shape = list(h.shape)
        shape[rng.randrange(len(shape))] = rng.choice((0, 1, 2, 3, 7, 64, 1000, 2**20, 2**40, 2**63))
        return dataclasses.replace(h, shape=tuple(shape))
    if kind == 1:
        n = rng.randint(0, 6)
        return dataclasses.replace(h, shape=(tuple(h.shape) + (1,) * n)[:n])
    if kind == 2 and hasattr(p, "rows"):
        return dataclasses.replace(h, levels=dataclasses.replace(p, rows=rng.choice((0, 1, 2, 5, 70, 2**40))))
    if kind == 3:
        return dataclasses.replace(
            h, levels=dataclasses.replace(p, num_gtx=rng.choice((0, 1, 5, 24, 32, 33, 255)))
        )
    if kind == 4:
        return dataclasses.replace(
            h, levels=dataclasses.replace(p, fast_shift=rng.randint(0, 16), slow_shift=rng.randint(0, 16))
        )
    if kind == 5:
        step = rng.choice((0.0, -1.0, 1e-30, 1e30, float("nan"), float("inf"), 0.5, 1e-45))
        return dataclasses.replace(h, levels=dataclasses.replace(p, step=step))
    if kind == 6:
        offset = rng.choice((rng.randint(-(2**31), 2**31 - 1), rng.randint(-(2**63), 2**63 - 1), 0, 1, -1))
        return dataclasses.replace(h, levels=dataclasses.replace(p, offset=offset))
    if kind == 7:
        dtype = rng.choice(("float32", "float16", "bfloat16", "float64", "int8", "int64", "uint64", "bool"))
        return dataclasses.replace(h, dtype=dtype)
    if kind == 8:
        method = rng.randint(1, 3)
        return dataclasses.replace(
            h, method=method, levels=None if method == 3 else p, itemsize=h.itemsize or 4
        )
    if kind == 9:  # entry points (2.0): another chunk size, and lengths that may not add up
        chunk = rng.choice((0, 1, 2, 3, 64, 2**18, 2**18 + 1, 2**40))
        count = rng.choice((0, 1, 2, 3, len(h.entry_points), len(h.entry_points) + 1))
        total = h.payload_length
        cuts = sorted(rng.randint(0, total) for _ in range(max(count - 1, 0)))
        lengths = [b - a for a, b in zip([0, *cuts], [*cuts, total], strict=True)] if count else []
        if lengths and rng.random() < 0.3:
            lengths[rng.randrange(len(lengths))] += rng.choice((-1, 1, 2**32))
        return dataclasses.replace(h, chunk=chunk, entry_points=tuple(max(v, 0) for v in lengths))
    return dataclasses.replace(h, itemsize=rng.choice((0, 1, 2, 3, 4, 8, 255)))


def mutate_record(rng: random.Random, parsed: Parsed) -> bytes:
    records = list(parsed.records)
    i = rng.randrange(len(records))
    header, payload = records[i]
    if rng.random() < 0.7:
        payload = mutate_bytes(rng, payload, [payload], max_ops=3)
    if rng.random() < 0.5:
        for _ in range(rng.randint(1, 2)):
            header = _mutate_header(rng, header)
    header = dataclasses.replace(header, payload_length=len(payload))
    records[i] = (header, payload)
    try:
        encode_record_header(header)
    except (struct.error, ValueError, OverflowError):
        return parsed.data  # a field the header cannot hold: nothing to test
    return build_file(records, parsed.metadata)


def mutate_index(rng: random.Random, parsed: Parsed) -> bytes:
    data = parsed.data
    body = data[parsed.index_offset + 4 : parsed.index_offset + parsed.index_length - 4]
    return data[: parsed.index_offset] + _index_and_footer(
        parsed.index_offset, mutate_bytes(rng, body, [body])
    )


# ---------------------------------------------------------------------------------------------------


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("n", nargs="?", type=int, default=1_000_000, help="number of inputs (default 1,000,000)")
    ap.add_argument("--seed", type=int, default=20240601)
    ap.add_argument("--save-dir", type=Path, help="save inputs that raise anything but BitstreamError here")
    ap.add_argument("--progress-every", type=float, default=30.0, help="seconds between progress lines")
    args = ap.parse_args(argv)

    seeds = seed_files()
    parsed = [Parsed(d) for d in seeds]
    rng = random.Random(args.seed)
    outcomes: Counter[str] = Counter()
    kinds: Counter[str] = Counter()
    examples: dict[str, str] = {}
    slowest = (0.0, "")
    started = last = time.perf_counter()
    rss_start = peak_rss_mb()
    if args.save_dir:
        args.save_dir.mkdir(parents=True, exist_ok=True)

    for i in range(args.n):
        which = rng.randrange(len(seeds))
        r = rng.random()
        if r < 0.4:
            kind, data = "raw", mutate_bytes(rng, seeds[which], seeds)
        elif r < 0.9:
            kind, data = "record", mutate_record(rng, parsed[which])
        else:
            kind, data = "index", mutate_index(rng, parsed[which])
        kinds[kind] += 1
        t0 = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                nnsqueeze.decompress(data, threads=1)
                outcome = "ok"
            except BitstreamError as exc:
                outcome = "BitstreamError"
                del exc
            except Exception as exc:  # a bug: keep going, count it
                outcome = f"BUG {type(exc).__name__}"
                examples.setdefault(outcome, f"#{i} ({kind}): {str(exc)[:200]}")
                if args.save_dir:
                    digest = hashlib.sha256(data).hexdigest()[:16]
                    (args.save_dir / f"{type(exc).__name__}-{digest}.nnsq").write_bytes(data)
        dt = time.perf_counter() - t0
        if dt > slowest[0]:
            slowest = (dt, f"#{i} ({kind}, {len(data)} bytes, {outcome})")
        outcomes[outcome] += 1
        for w in caught:
            key = f"warning {w.category.__name__}: {str(w.message)[:60]}"
            outcomes[key] += 1
            examples.setdefault(key, f"#{i} ({kind})")
        now = time.perf_counter()
        if now - last >= args.progress_every:
            last = now
            print(
                f"  {i + 1:,} inputs, {(i + 1) / (now - started):,.0f}/s, peak RSS {peak_rss_mb():.0f} MB",
                flush=True,
            )

    elapsed = time.perf_counter() - started
    bugs = sum(c for k, c in outcomes.items() if k.startswith("BUG"))
    print(
        f"nnsqueeze {nnsqueeze.__version__} fuzz: {args.n:,} inputs (seed {args.seed}) in {elapsed:.1f} s "
        f"= {args.n / max(elapsed, 1e-9):,.0f} inputs/s"
    )
    print(f"  mutations: {dict(kinds)}")
    for key, count in outcomes.most_common():
        print(f"  {key:<60} {count:>10,}  {examples.get(key, '')}")
    print(f"  slowest input: {slowest[0] * 1000:.1f} ms {slowest[1]}")
    print(f"  peak RSS: {peak_rss_mb():.0f} MB (at start {rss_start:.0f} MB)")
    if args.n:
        print(f"  estimated time for 1,000,000 inputs: {1e6 * elapsed / args.n / 60:.1f} min")
    print(
        "RESULT: "
        + ("no bugs" if not bugs else f"{bugs:,} inputs raised something other than BitstreamError")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
