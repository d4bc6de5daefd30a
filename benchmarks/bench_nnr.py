"""NNR interoperability benchmark (issue 16): NNCodec 2.1.3's streams decoded by nnsqueeze, checked and timed.

For each model (the zoo's ``digits_cnn`` and ``mnist1d_cnn``, seed 0, and ``minilm``) it writes the float32
state dict as npz, has NNCodec encode it over the grid of ``make_nnr_corpus.bench_configs`` (URQ and DQ at
QP -20, -24, -28, -32, -38, param_opt on and off; NNCodec's other settings are its API defaults for dicts,
as in ``make_nnr_corpus.SHARED``: 1-D tensors at QP -75, row skipping on, scan_order 0) and decode each
stream ``--repeat`` times (NNCodec's own venv; its in-process ``nnc.decompress`` time, median).  Then it
decodes every stream here with ``nnsqueeze.nnr.decode`` (median of ``--repeat``, all warm, one thread: the
NNR decoder is single-threaded), and checks every tensor's SHA-256 against NNCodec's decode.

Both timings cover the whole stream, from the bitstream in memory to float32 arrays (unit parsing included).
MB/s are of the float32 bytes decoded.  Writes ``--out-dir``/RESULTS.md and results.json with the git
revision; run it on a clean, committed tree::

    python benchmarks/bench_nnr.py [--models digits_cnn,mnist1d_cnn,minilm] [--repeat 3]
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from nnsqueeze import nnr, zoo

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_memory import git_revision, machine_note

HERE = Path(__file__).resolve().parent
NNCODEC_PYTHON = Path("/work/nncodec-venv/bin/python")
TARGET_DECODE_X = 5.0
TARGET_BYTES = 0.97
MB = 1e6


def nncodec_streams(
    name: str, tensors: dict[str, np.ndarray], repeat: int, tmp: Path
) -> tuple[Path, list[Any]]:
    npz = tmp / f"{name}.npz"
    np.savez(npz, **tensors)
    out = tmp / name
    cmd = [
        str(NNCODEC_PYTHON),
        str(HERE / "make_nnr_corpus.py"),
        "--out",
        str(out),
        "--input",
        str(npz),
        "--bench",
        "--repeat",
        str(repeat),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode:
        sys.stderr.write(proc.stderr[-3000:])
        raise RuntimeError(f"NNCodec failed on {name}")
    return out, json.loads((out / "manifest.json").read_text())["streams"]


def ours(data: bytes, repeat: int) -> tuple[dict[str, np.ndarray], float]:
    tensors = nnr.decode(data)  # warm-up
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        nnr.decode(data)
        times.append(time.perf_counter() - started)
    return tensors, statistics.median(times)


def bit_exact(tensors: dict[str, np.ndarray], expected: dict[str, Any]) -> bool:
    if sorted(tensors) != sorted(expected):
        return False
    for name, want in expected.items():
        values = np.ascontiguousarray(tensors[name], dtype=np.float32)
        if hashlib.sha256(values.tobytes()).hexdigest() != want["sha256"]:
            return False
    return True


def run_model(name: str, repeat: int, tmp: Path) -> list[dict[str, Any]]:
    state = zoo.load(name, seed=0).state_dict()
    tensors = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in state.items()}
    raw = sum(v.nbytes for v in tensors.values())
    folder, streams = nncodec_streams(name, tensors, repeat, tmp)
    rows = []
    for entry in streams:
        data = (folder / entry["stream"]).read_bytes()
        decoded, seconds = ours(data, repeat)
        s = entry["settings"]
        rows.append(
            {
                "model": name,
                "qp": s["qp"],
                "dq": s["use_dq"],
                "param_opt": s["param_opt"],
                "bytes": len(data),
                "raw_bytes": raw,
                "nncodec_s": entry["decode_s"],
                "ours_s": seconds,
                "bit_exact": bit_exact(decoded, entry["tensors"]),
            }
        )
        r = rows[-1]
        print(
            f"{name} {entry['stream']}: {len(data)} B, NNCodec {r['nncodec_s'] * 1e3:.1f} ms, ours "
            f"{seconds * 1e3:.2f} ms ({r['nncodec_s'] / seconds:.1f}x), bit-exact {r['bit_exact']}",
            flush=True,
        )
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| model | QP | quantizer | param_opt | bytes | NNCodec → nnsqueeze bit-exact | NNCodec dec MB/s | "
        "nnsqueeze dec MB/s | speed-up |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['qp']} | {'DQ' if r['dq'] else 'URQ'} | "
            f"{'on' if r['param_opt'] else 'off'} | "
            f"{r['bytes']:,} | {'yes' if r['bit_exact'] else '**no**'} | "
            f"{r['raw_bytes'] / r['nncodec_s'] / MB:.1f} | {r['raw_bytes'] / r['ours_s'] / MB:.1f} | "
            f"{r['nncodec_s'] / r['ours_s']:.2f}× |"
        )
    return "\n".join(lines)


def targets(rows: list[dict[str, Any]]) -> str:
    lines = ["| target | measured | met |", "|---|---|---|"]
    exact = sum(r["bit_exact"] for r in rows)
    lines.append(
        f"| NNCodec → nnsqueeze bit-exact on every stream | {exact} of {len(rows)} | "
        f"{'yes' if exact == len(rows) else '**no**'} |"
    )
    for model in dict.fromkeys(r["model"] for r in rows):
        speedups = [r["nncodec_s"] / r["ours_s"] for r in rows if r["model"] == model]
        worst = min(speedups)
        met = "yes" if worst >= TARGET_DECODE_X else "**no (missed)**"
        lines.append(
            f"| {model}: decode ≥ {TARGET_DECODE_X:g}× NNCodec on every stream | lowest {worst:.2f}×, "
            f"median {statistics.median(speedups):.2f}× | {met} |"
        )
    lines.append("| nnsqueeze → NNCodec bit-exact (`--format nnr` encoder) | not built | **no (missed)** |")
    lines.append(
        f"| `--format nnr` stream ≤ {TARGET_BYTES}× NNCodec's at equal fidelity | not built | "
        "**no (missed)** |"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--models", default="digits_cnn,mnist1d_cnn,minilm")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out-dir", type=Path, default=HERE / "nnr_results")
    args = ap.parse_args(argv)
    if not NNCODEC_PYTHON.exists():
        ap.error(f"{NNCODEC_PYTHON} not found (see benchmarks/nncodec_runner.py for its venv)")
    command = "python benchmarks/bench_nnr.py " + " ".join(argv if argv is not None else sys.argv[1:])
    started = dt.datetime.now()
    note, revision = machine_note(), git_revision()
    import torch

    torch.set_num_threads(1)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in [m.strip() for m in args.models.split(",") if m.strip()]:
            rows += run_model(name, args.repeat, Path(tmp))
    elapsed = (dt.datetime.now() - started).total_seconds()
    text = "\n".join(
        [
            "# NNR interoperability (bench_nnr.py)",
            "",
            f"Command: `{command}`; git revision `{revision}`; started "
            f"{started.isoformat(timespec='seconds')}, took {elapsed / 60:.1f} min.",
            "",
            f"Machine: {note}. Decode times: whole stream in memory to float32 arrays, medians of "
            f"{args.repeat} warm runs, one thread; NNCodec's are its in-process `nnc.decompress` times in "
            "its own venv. MB/s of the decoded float32 bytes.",
            "",
            "## Targets of issue 16",
            "",
            targets(rows),
            "",
            "## NNCodec 2.1.3 streams decoded by nnsqueeze",
            "",
            table(rows),
            "",
        ]
    )
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "RESULTS.md").write_text(text)
    (args.out_dir / "results.json").write_text(
        json.dumps({"revision": revision, "command": command, "rows": rows}) + "\n"
    )
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
