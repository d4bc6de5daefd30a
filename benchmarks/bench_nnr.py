"""NNR interoperability benchmark (issue 16): NNCodec 2.1.3's streams decoded by nnsqueeze, checked and timed.

For each model (the zoo's ``digits_cnn`` and ``mnist1d_cnn``, seed 0, and ``minilm``) it writes the float32
state dict as npz, has NNCodec encode it over the grid of ``make_nnr_corpus.bench_configs`` (URQ and DQ at
QP -20, -24, -28, -32, -38, param_opt on and off; NNCodec's other settings are its API defaults for dicts,
as in ``make_nnr_corpus.SHARED``: 1-D tensors at QP -75, row skipping on, scan_order 0) and decode each
stream ``--repeat`` times (NNCodec's own venv; its in-process ``nnc.decompress`` time, median).  Then it
decodes every stream here with ``nnsqueeze.nnr.decode`` (medians of ``--repeat`` rounds, all warm, on one
thread, the speed-up's basis, and on all threads, which decode data units in parallel), and checks every
tensor's SHA-256 against NNCodec's decode.

Then the other direction: nnsqueeze's ``nnr.encode`` codes the same model with the same settings (QP,
quantizer, estimator choice on or off; 1-D tensors at QP -75) and NNCodec decodes each of those streams; its
tensors must equal ``nnr.decode``'s bit for bit.  Sizes are compared at the same QP and quantizer, with the
fidelity of both decodes on the model's test data (zoo task metric: accuracy, or mean embedding cosine for
MiniLM), so a reader sees whether the fidelity is equal too.

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
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from nnsqueeze import nnr, zoo

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_codec import run_runner, yes
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
    return out, run_runner(cmd, out / "manifest.json", f"NNCodec on {name}")["streams"]


def ours(data: bytes, repeat: int) -> tuple[dict[str, np.ndarray], float, float]:
    """The decode and its median times on one thread and on all threads (alternating rounds)."""
    tensors = nnr.decode(data, threads=1)  # warm-up
    one, every = [], []
    for _ in range(repeat):
        for threads, times in ((1, one), (os.cpu_count() or 1, every)):
            started = time.perf_counter()
            nnr.decode(data, threads=threads)
            times.append(time.perf_counter() - started)
    return tensors, statistics.median(one), statistics.median(every)


def bit_exact(tensors: dict[str, np.ndarray], expected: dict[str, Any]) -> bool:
    if sorted(tensors) != sorted(expected):
        return False
    for name, want in expected.items():
        values = np.ascontiguousarray(tensors[name], dtype=np.float32)
        if hashlib.sha256(values.tobytes()).hexdigest() != want["sha256"]:
            return False
    return True


def nncodec_decodes(folder: Path) -> dict[str, Any]:
    cmd = [
        str(NNCODEC_PYTHON),
        str(HERE / "make_nnr_corpus.py"),
        "--out",
        str(folder),
        "--decode",
        str(folder),
    ]
    return run_runner(cmd, folder / "nncodec_decoded.json", f"NNCodec decoding {folder}")


def run_model(name: str, repeat: int, tmp: Path) -> list[dict[str, Any]]:
    task = zoo.load(name, seed=0)
    tensors = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in task.state_dict().items()}
    raw = sum(v.nbytes for v in tensors.values())
    folder, streams = nncodec_streams(name, tensors, repeat, tmp)
    written = tmp / f"{name}_nnsqueeze"
    written.mkdir()
    rows = []
    for entry in streams:
        data = (folder / entry["stream"]).read_bytes()
        decoded, seconds, all_threads_s = ours(data, repeat)
        s = entry["settings"]
        started = time.perf_counter()
        own = nnr.encode(tensors, qp=s["qp"], dependent=s["use_dq"], choose_estimators=s["param_opt"])
        encode_s = time.perf_counter() - started
        (written / entry["stream"]).write_bytes(own)
        rows.append(
            {
                "model": name,
                "stream": entry["stream"],
                "qp": s["qp"],
                "dq": s["use_dq"],
                "param_opt": s["param_opt"],
                "bytes": len(data),
                "raw_bytes": raw,
                "nncodec_s": entry["decode_s"],
                "ours_s": seconds,
                "ours_all_threads_s": all_threads_s,
                "nncodec_encode_s": entry["encode_s"],
                "ours_encode_s": encode_s,
                "bit_exact": bit_exact(decoded, entry["tensors"]),
                "fidelity": task.evaluate(decoded),
                "ours_bytes": len(own),
                "ours_fidelity": task.evaluate(nnr.decode(own)),
            }
        )
        r = rows[-1]
        print(
            f"{name} {entry['stream']}: {len(data)} B, NNCodec {r['nncodec_s'] * 1e3:.1f} ms, ours "
            f"{seconds * 1e3:.2f} ms ({r['nncodec_s'] / seconds:.1f}x), bit-exact {r['bit_exact']}; ours "
            f"{len(own)} B ({len(own) / len(data):.4f}x), fidelity {r['ours_fidelity']:.4f} vs "
            f"{r['fidelity']:.4f}",
            flush=True,
        )
    theirs = nncodec_decodes(written)
    for r in rows:
        r["reverse_bit_exact"] = bit_exact(
            nnr.decode((written / r["stream"]).read_bytes()), theirs[r["stream"]]
        )
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| model | QP | quantizer | param_opt | NNCodec bytes | → nnsqueeze bit-exact | NNCodec dec MB/s "
        "| nnsqueeze dec MB/s (all threads) | dec speed-up | nnsqueeze `--format nnr` bytes | ÷ NNCodec "
        "| → NNCodec bit-exact | fidelity NNCodec / nnsqueeze | enc s NNCodec / nnsqueeze |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['qp']} | {'DQ' if r['dq'] else 'URQ'} | "
            f"{'on' if r['param_opt'] else 'off'} | {r['bytes']:,} | {yes(r['bit_exact'])} | "
            f"{r['raw_bytes'] / r['nncodec_s'] / MB:.1f} | "
            f"{r['raw_bytes'] / r['ours_s'] / MB:.1f} "
            f"({r['raw_bytes'] / r['ours_all_threads_s'] / MB:.1f}) | "
            f"{r['nncodec_s'] / r['ours_s']:.2f}× | "
            f"{r['ours_bytes']:,} | {r['ours_bytes'] / r['bytes']:.4f} | {yes(r['reverse_bit_exact'])} | "
            f"{r['fidelity']:.4f} / {r['ours_fidelity']:.4f} | "
            f"{r['nncodec_encode_s']:.2f} / {r['ours_encode_s']:.2f} |"
        )
    return "\n".join(lines)


def targets(rows: list[dict[str, Any]]) -> str:
    lines = ["| target | measured | met |", "|---|---|---|"]
    for key, what in (("bit_exact", "NNCodec → nnsqueeze"), ("reverse_bit_exact", "nnsqueeze → NNCodec")):
        exact = sum(r[key] for r in rows)
        lines.append(
            f"| {what} bit-exact on every stream | {exact} of {len(rows)} | {yes(exact == len(rows))} |"
        )
    for model in dict.fromkeys(r["model"] for r in rows):
        mine = [r for r in rows if r["model"] == model]
        speedups = [r["nncodec_s"] / r["ours_s"] for r in mine]
        worst = min(speedups)
        met = "yes" if worst >= TARGET_DECODE_X else "**no (missed)**"
        lines.append(
            f"| {model}: decode ≥ {TARGET_DECODE_X:g}× NNCodec on every stream | lowest {worst:.2f}×, "
            f"median {statistics.median(speedups):.2f}× | {met} |"
        )
        ratios = [r["ours_bytes"] / r["bytes"] for r in mine]
        not_worse = sum(r["ours_fidelity"] >= r["fidelity"] for r in mine)
        met = "yes" if max(ratios) <= TARGET_BYTES and not_worse == len(mine) else "**no (missed)**"
        lines.append(
            f"| {model}: `--format nnr` stream ≤ {TARGET_BYTES}× NNCodec's at the same QP and quantizer, "
            f"fidelity not lower | bytes ratio {min(ratios):.4f}–{max(ratios):.4f} (median "
            f"{statistics.median(ratios):.4f}); fidelity not lower on {not_worse} of {len(mine)} | {met} |"
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
            f"{args.repeat} warm rounds, on one thread (the speed-ups) and in parentheses on all "
            f"{os.cpu_count()} threads; NNCodec's are its in-process `nnc.decompress` times in "
            "its own venv. MB/s of the decoded float32 bytes.",
            "",
            "## Targets of issue 16",
            "",
            targets(rows),
            "",
            "## Both directions, per stream",
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
