"""Peak memory of ``python -m nnsqueeze compress`` / ``decompress`` on a multi-GB safetensors checkpoint.

Generates a float32 checkpoint (random normal * 0.02, written in chunks, so generation needs little
memory) in a temporary directory under ``/tmp``, then runs the CLI in subprocesses and measures each one's
peak memory:

* peak RSS: the kernel's high-water mark of the child's RSS (``VmHWM`` of ``/proc/PID/status``, polled
  every 20 ms; monotonic, so only growth in the last 20 ms could be missed); it includes pages of
  memory-mapped files the process has touched (page cache, reclaimable).  Not ``ru_maxrss`` of
  ``os.wait4``: subprocess starts children with vfork, and Linux carries the parent's RSS high-water mark
  across the exec into the child's ``ru_maxrss``;
* peak anonymous RSS: ``RssAnon`` of ``/proc/PID/status`` polled every 20 ms (heap, buffers: the memory
  the process really owns), and ``RssFile`` (mapped file pages) at the same moments.

Both are reported minus the same figures of an idle ``python -c "import nnsqueeze"``.  The target is
peak extra memory <= 3 x largest tensor + 200 MB.  The table is printed and written to ``RESULTS.md``
(section "Memory benchmark", replaced if present); raw JSON goes to ``--out``.

Usage::

    python benchmarks/bench_memory.py [--size-mb 2600] [--largest-mb 400] [--threads 2] [--qp -28]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

MB = 1e6
MIB = 1 << 20
ROW = 4096  # columns of every generated matrix
CHUNK_ELEMS = 4 * MIB  # float32 elements generated per chunk (16 MiB)
HERE = Path(__file__).resolve().parent
SECTION = "## Memory benchmark (bench_memory.py)"


@dataclass
class Peak:
    """Peak memory of one subprocess, in bytes; wall time in seconds."""

    max_rss: int
    max_anon: int
    max_file: int
    seconds: float
    returncode: int


def plan_tensors(size_mb: float, largest_mb: float) -> list[tuple[str, tuple[int, ...]]]:
    """Names and shapes: one largest matrix, 200 MiB-ish and 32 MiB-ish matrices, and a few 1-D vectors."""
    largest_rows = max(1, round(largest_mb * MB / (4 * ROW)))
    plan: list[tuple[str, tuple[int, ...]]] = [("embed.weight", (largest_rows, ROW))]
    total = largest_rows * ROW * 4
    budget = size_mb * MB
    mid_rows, small_rows = max(1, largest_rows // 2), max(1, largest_rows // 12)
    i = 0
    while total + mid_rows * ROW * 4 <= budget - 0.2 * budget:
        plan.append((f"layers.{i}.mlp.weight", (mid_rows, ROW)))
        total += mid_rows * ROW * 4
        i += 1
    j = 0
    while total + small_rows * ROW * 4 <= budget:
        plan.append((f"layers.{j}.attn.weight", (small_rows, ROW)))
        plan.append((f"layers.{j}.attn.bias", (ROW,)))
        total += (small_rows + 1) * ROW * 4
        j += 1
    return plan


def write_random_safetensors(path: Path, plan: list[tuple[str, tuple[int, ...]]], seed: int = 0) -> int:
    """Writes the safetensors format directly (8-byte LE header length, JSON header, raw data) in chunks."""
    header: dict[str, object] = {}
    offset = 0
    for name, shape in plan:
        nbytes = 4 * int(np.prod(shape))
        header[name] = {"dtype": "F32", "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    encoded = json.dumps(header, separators=(",", ":")).encode()
    encoded += b" " * (-len(encoded) % 8)
    rng = np.random.default_rng(seed)
    with path.open("wb") as f:
        f.write(len(encoded).to_bytes(8, "little"))
        f.write(encoded)
        for _, shape in plan:
            left = int(np.prod(shape))
            while left:
                n = min(left, CHUNK_ELEMS)
                chunk = rng.standard_normal(n, dtype=np.float32)
                chunk *= np.float32(0.02)
                f.write(chunk.data)
                left -= n
    return 8 + len(encoded) + offset


def _status_kb(pid: int, fields: tuple[str, ...]) -> dict[str, int]:
    out: dict[str, int] = {}
    try:
        with Path(f"/proc/{pid}/status").open() as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in fields:
                    out[key] = int(value.split()[0]) * 1024
    except (FileNotFoundError, ProcessLookupError, ValueError):
        pass
    return out


def measure(cmd: list[str], interval: float = 0.02) -> Peak:
    """Runs ``cmd``; returns the polled peaks of its VmHWM (kernel RSS high-water mark), RssAnon, RssFile."""
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peaks = {"VmHWM": 0, "RssAnon": 0, "RssFile": 0}
    done = threading.Event()

    def poll() -> None:
        while not done.is_set():
            for key, value in _status_kb(proc.pid, tuple(peaks)).items():
                peaks[key] = max(peaks[key], value)
            done.wait(interval)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    assert proc.stderr is not None
    stderr = proc.stderr.read()  # the CLI's progress bar; read so the pipe cannot fill up
    proc.wait()
    seconds = time.perf_counter() - started
    done.set()
    poller.join()
    if proc.returncode:
        sys.stderr.write(stderr.decode(errors="replace")[-2000:])
        msg = f"{' '.join(cmd)} exited with {proc.returncode}"
        raise RuntimeError(msg)
    return Peak(peaks["VmHWM"], peaks["RssAnon"], peaks["RssFile"], seconds, proc.returncode)


def median_peak(cmd: list[str], repeat: int) -> tuple[Peak, list[Peak]]:
    runs = [measure(cmd) for _ in range(repeat)]

    def med(values: list[float]) -> float:
        return float(np.median(values))

    return Peak(
        int(med([r.max_rss for r in runs])),
        int(med([r.max_anon for r in runs])),
        int(med([r.max_file for r in runs])),
        med([r.seconds for r in runs]),
        0,
    ), runs


def git_revision() -> str:
    """``git describe --always --dirty`` of this checkout (empty outside git)."""
    return subprocess.run(
        ["git", "-C", str(HERE.parent), "describe", "--always", "--dirty"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo, else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_note() -> str:
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"{cpu_name()}, {os.cpu_count()} logical CPUs (shared, noisy host), {platform.system()} "
        f"{platform.release()}, Python {platform.python_version()}, numpy {np.__version__}; "
        f"load average at start {load}"
    )


def replace_section(results: Path, section: str, body: str) -> None:
    """Replaces the ``section`` heading and its text up to the next ``## `` heading (or appends it)."""
    text = results.read_text() if results.exists() else "# nnsqueeze benchmark results\n"
    lines = text.splitlines()
    try:
        start = lines.index(section)
    except ValueError:
        new = text.rstrip("\n") + "\n\n" + body.rstrip("\n") + "\n"
    else:
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
        tail = ["", *lines[end:]] if end < len(lines) else []
        kept = [*lines[:start], *body.rstrip("\n").splitlines(), *tail]
        new = "\n".join(kept).rstrip("\n") + "\n"
    results.write_text(new)


def fmt_mb(n: float) -> str:
    return f"{n / MB:,.0f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--size-mb", type=float, default=2600, help="checkpoint size in MB (default 2600)")
    ap.add_argument("--largest-mb", type=float, default=400, help="largest tensor in MB (default 400)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--qp", type=int, default=-28)
    ap.add_argument("--repeat", type=int, default=1, help="runs of each measurement (median)")
    ap.add_argument("--tmp", type=Path, default=Path("/tmp"), help="where the temporary directory goes")
    ap.add_argument("--out", type=Path, default=HERE / "out", help="raw JSON goes here")
    ap.add_argument("--results", type=Path, default=HERE / "RESULTS.md")
    ap.add_argument("--no-results", action="store_true", help="do not touch RESULTS.md")
    args = ap.parse_args(argv)

    command = "python benchmarks/bench_memory.py " + " ".join(argv if argv is not None else sys.argv[1:])
    note = machine_note()
    commit = git_revision()
    plan = plan_tensors(args.size_mb, args.largest_mb)
    largest = max(4 * int(np.prod(s)) for _, s in plan)
    raw = sum(4 * int(np.prod(s)) for _, s in plan)
    need = 2.4 * raw  # input + decompressed copy + .nnsq + slack
    free = shutil.disk_usage(args.tmp).free
    if free < need:
        print(f"not enough free disk under {args.tmp}: {free / 1e9:.1f} GB free, need {need / 1e9:.1f} GB")
        return 1
    print(
        f"{len(plan)} tensors, {raw / MB:,.0f} MB, largest {largest / MB:,.0f} MB; {free / 1e9:.0f} GB free"
    )
    py = sys.executable
    with tempfile.TemporaryDirectory(prefix="nnsq-membench-", dir=args.tmp) as tmp:
        src, packed = Path(tmp) / "big.safetensors", Path(tmp) / "big.nnsq"
        unpacked = Path(tmp) / "dec.safetensors"
        t0 = time.perf_counter()
        file_bytes = write_random_safetensors(src, plan)
        gen_s = time.perf_counter() - t0
        print(f"generated {src} ({file_bytes / MB:,.0f} MB) in {gen_s:.1f} s")
        idle, _ = median_peak([py, "-c", "import nnsqueeze"], 3)
        comp_cmd = [
            py,
            "-m",
            "nnsqueeze",
            "compress",
            str(src),
            "-o",
            str(packed),
            "--qp",
            str(args.qp),
            "--threads",
            str(args.threads),
        ]
        dec_cmd = [
            py,
            "-m",
            "nnsqueeze",
            "decompress",
            str(packed),
            "-o",
            str(unpacked),
            "--threads",
            str(args.threads),
        ]
        comp, comp_runs = median_peak(comp_cmd, args.repeat)
        packed_bytes = packed.stat().st_size
        dec, dec_runs = median_peak(dec_cmd, args.repeat)
        unpacked_bytes = unpacked.stat().st_size
    target = 3 * largest + 200 * MB
    rows = []
    for label, p in (("compress", comp), ("decompress", dec)):
        extra_rss, extra_anon = p.max_rss - idle.max_rss, p.max_anon - idle.max_anon
        rows.append(
            {
                "step": label,
                "peak_rss": p.max_rss,
                "peak_anon": p.max_anon,
                "peak_file": p.max_file,
                "extra_rss": extra_rss,
                "extra_anon": extra_anon,
                "seconds": p.seconds,
                "mb_per_s": raw / MB / p.seconds,
                "target": target,
                "extra_rss_ok": extra_rss <= target,
                "extra_anon_ok": extra_anon <= target,
            }
        )
    result = {
        "date": dt.datetime.now().isoformat(timespec="seconds"),
        "command": command,
        "machine": note,
        "commit": commit,
        "tensors": [{"name": n, "shape": list(s)} for n, s in plan],
        "raw_bytes": raw,
        "safetensors_bytes": file_bytes,
        "largest_tensor_bytes": largest,
        "nnsq_bytes": packed_bytes,
        "decompressed_bytes": unpacked_bytes,
        "qp": args.qp,
        "threads": args.threads,
        "generate_s": gen_s,
        "idle": asdict(idle),
        "rows": rows,
        "runs": {"compress": [asdict(r) for r in comp_runs], "decompress": [asdict(r) for r in dec_runs]},
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench_memory.json").write_text(json.dumps(result, indent=2) + "\n")

    table = [
        "| step | wall s | MB/s | peak RSS MB | extra RSS MB | peak RssAnon MB | extra RssAnon MB "
        "| peak RssFile MB | target MB | extra RSS ≤ target | extra RssAnon ≤ target |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        table.append(
            f"| {r['step']} | {r['seconds']:.1f} | {r['mb_per_s']:.0f} | {fmt_mb(r['peak_rss'])} "
            f"| {fmt_mb(r['extra_rss'])} | {fmt_mb(r['peak_anon'])} | {fmt_mb(r['extra_anon'])} "
            f"| {fmt_mb(r['peak_file'])} | {fmt_mb(target)} | {'yes' if r['extra_rss_ok'] else '**no**'} "
            f"| {'yes' if r['extra_anon_ok'] else '**no**'} |"
        )
    body = "\n".join(
        [
            SECTION,
            "",
            f"Command: `{command}` (date {result['date']}; nnsqueeze at `{commit}`).",
            f"Machine: {note}.",
            "",
            f"Checkpoint: {len(plan)} float32 tensors (random normal x 0.02), {raw / MB:,.0f} MB of data, "
            f"safetensors file {file_bytes / MB:,.0f} MB, largest tensor {largest / MB:,.0f} MB "
            f"(shape {plan[0][1]}); generated in {gen_s:.0f} s. `.nnsq` at QP {args.qp}: "
            f"{packed_bytes / MB:,.1f} MB ({8 * packed_bytes / (raw / 4):.3f} bits/param); decompressed "
            f"safetensors {unpacked_bytes / MB:,.0f} MB. Commands: `python -m nnsqueeze compress "
            f"big.safetensors -o big.nnsq --qp {args.qp} --threads {args.threads}` and `python -m nnsqueeze "
            f"decompress big.nnsq -o dec.safetensors --threads {args.threads}`, each in its own subprocess, "
            f"median of {args.repeat} run(s).",
            "",
            "Peak RSS = the kernel's RSS high-water mark of the child (`VmHWM` of `/proc/PID/status`, polled "
            "every 20 ms); it counts the pages of memory-mapped files the process has touched (page cache: "
            "shared, reclaimable). Peak RssAnon / RssFile = the largest `RssAnon` (heap and buffers the "
            'process owns) / `RssFile` (mapped file pages) seen by the same polling. "Extra" = '
            f'minus an idle `python -c "import nnsqueeze"` (peak RSS {fmt_mb(idle.max_rss)} MB, RssAnon '
            f"{fmt_mb(idle.max_anon)} MB). Target: extra <= 3 x largest tensor + 200 MB = "
            f"{fmt_mb(target)} MB.",
            "",
            *table,
        ]
    )
    print(body)
    if not args.no_results:
        replace_section(args.results, SECTION, body)
        print(f"\nwrote {args.results}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
