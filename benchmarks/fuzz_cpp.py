"""Coverage-guided fuzzing of the C++ decoders with libFuzzer, AddressSanitizer and UBSan.

    apt-get install clang-14 libclang-rt-14-dev     # Debian's clang and its fuzzer runtime
    python benchmarks/fuzz_cpp.py --runs 10000000 --jobs 2  # findings go to tests/fuzz_regressions/cpp/

The harness (``cpp/fuzz/fuzz_decoders.cpp``) is compiled together with the library's C++ sources,
every one of them instrumented for coverage, so libFuzzer's search is guided by the decoders' own
branches.  The seed corpus holds valid streams of every decoder, made here with the installed
``nnsqueeze._core`` encoders.  The oracle is in the harness: BitstreamError or success, and a
successful decode re-encodes to the same values.  ``-rss_limit_mb`` bounds the memory.

``--replay`` only runs the harness over the regression files and the corpus (no fuzzing).
"""

from __future__ import annotations

import argparse
import shutil
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from nnsqueeze import _core

ROOT = Path(__file__).resolve().parent.parent
SOURCES = [
    "arith",
    "level_coder",
    "trellis",
    "byte_coder",
    "plane_coder",
    "token_coder",
    "parallel",
    "rdoq",
    "quantize",
    "checksum",
    "nnr_cabac",
]
REGRESSIONS = ROOT / "tests" / "fuzz_regressions" / "cpp"


def build(clang: str, out: Path) -> Path:
    binary = out / "fuzz_decoders"
    sources = [str(ROOT / "cpp" / "fuzz" / "fuzz_decoders.cpp")]
    sources += [str(ROOT / "cpp" / "src" / f"{name}.cpp") for name in SOURCES]
    flags = ["-std=c++17", "-O2", "-g", "-ffp-contract=off", "-fsanitize=fuzzer,address,undefined"]
    flags += ["-fno-sanitize-recover=undefined", f"-I{ROOT / 'cpp' / 'include'}"]
    subprocess.run([clang, *flags, *sources, "-o", str(binary), "-lpthread"], check=True)
    return binary


def _header(kind: int, b1: int, b2: int, a: int, b: int) -> bytes:
    return bytes([kind, b1, b2]) + struct.pack("<HH", a, b)


def seeds() -> list[bytes]:
    """Valid inputs for every decoder, in the harness's layout."""
    rng = np.random.default_rng(0)
    out = []
    for rows, cols, scale in ((1, 1, 1.0), (4, 33, 0.7), (16, 64, 3.0), (3, 900, 40.0)):
        levels = np.round(rng.laplace(0, scale, rows * cols)).astype(np.int32)
        for gtx, shifts in ((10, 4 | (4 << 3)), (0, 0), (32, 7 | (1 << 3))):
            fast = 1 + (shifts & 7)
            slow = fast + ((shifts >> 3) % (14 - fast + 1))
            payload = _core.encode_levels(levels, rows, cols, gtx, fast, slow)
            out.append(_header(0, gtx, shifts, rows, cols) + payload)
            out.append(_header(1, gtx, shifts, rows, cols) + payload)
            hints = np.array([(i * 7 + i // 3) % (1 + shifts % 32) for i in range(rows * cols)], np.uint8)
            hinted = _core.encode_levels_hinted(levels, rows, cols, gtx, fast, slow, hints, 1 + shifts % 32)
            out.append(_header(3, gtx, shifts, rows, cols) + hinted)
            w = (levels * 0.5 + rng.normal(0, 0.1, levels.size)).astype(np.float32)
            dependent, _ = _core.encode_trellis(w, None, rows, cols, 0.5, 0.01, gtx, fast, slow, None)
            out.append(_header(2, gtx, shifts, rows, cols) + dependent)
        coded = _core.encode_tokens(levels, rows, cols)
        out.append(_header(6, 0, 0, rows, cols) + coded)
        out.append(_header(7, 33, 250, rows, cols) + coded)
        for dependent, unary in ((False, 11), (True, 11), (True, 3)):
            w = (levels * 0.5).astype(np.float32)
            nnr_levels = levels.copy()
            if dependent:
                _core.nnr_dependent_quantize(w, rows, cols, 1.0, 0.0, nnr_levels)
            nnr = _core.nnr_encode_tensor(nnr_levels, rows, cols, 8, -2, dependent, unary, True)
            out.append(_header(8, int(dependent) | ((unary - 1) << 2), 8, rows, cols) + nnr)
    for itemsize_code, count in ((0, 100), (1, 257), (2, 1000), (3, 64)):
        data = rng.normal(0, 0.05, count).astype(np.float64).tobytes()[: count * (1 << itemsize_code)]
        raw = np.frombuffer(data, np.uint8)
        out.append(_header(4, itemsize_code, 0, count, 0) + _core.encode_bytes(raw, 1 << itemsize_code))
        for log_chunk in (4, 8, 18):
            rotate = itemsize_code >= 1
            payload, lengths = _core.encode_planes(raw, 1 << itemsize_code, rotate, 1 << log_chunk, 1)
            layout = bytes([5, itemsize_code | (4 if rotate else 0), log_chunk])
            header = layout + struct.pack("<HBB", count, 0, 0)
            out.append(header + b"".join(struct.pack("<H", n) for n in lengths) + payload)
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=1_000_000, help="executions (default 1e6)")
    p.add_argument("--jobs", type=int, default=1, help="parallel fuzzing processes (runs split among them)")
    p.add_argument("--clang", default=shutil.which("clang++-14") or "clang++")
    p.add_argument("--work", type=Path, default=Path("/tmp/nnsqueeze-fuzz-cpp"))
    p.add_argument("--replay", action="store_true", help="only run the regression files and the corpus")
    args = p.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    binary = build(args.clang, args.work)
    corpus = args.work / "corpus"
    corpus.mkdir(exist_ok=True)
    for i, seed in enumerate(seeds()):
        (corpus / f"seed-{i:03d}").write_bytes(seed)
    REGRESSIONS.mkdir(parents=True, exist_ok=True)
    regressions = sorted(str(f) for f in REGRESSIONS.iterdir() if f.is_file())
    # every regression file and seed first: none may be a finding any more
    # libFuzzer takes either files (run once each) or corpus folders, not both in one call
    replays = [[str(binary), "-runs=0", str(corpus)]]
    if regressions:
        replays.append([str(binary), *regressions])
    for replay in replays:
        check = subprocess.run(replay, capture_output=True, text=True)
        if check.returncode != 0:
            print(check.stderr[-4000:], file=sys.stderr)
            return 1
    print(f"replayed {len(regressions)} regression files and {len(list(corpus.iterdir()))} corpus files")
    if args.replay:
        return 0
    started = time.perf_counter()
    per_job = args.runs // args.jobs
    procs = [
        subprocess.Popen(
            [
                str(binary),
                f"-runs={per_job}",
                "-rss_limit_mb=1024",
                "-timeout=10",
                "-max_len=8192",
                f"-artifact_prefix={REGRESSIONS}/",
                f"-seed={job + 1}",
                str(corpus),
            ],
            stdout=subprocess.DEVNULL,
            stderr=(args.work / f"job-{job}.log").open("w"),
        )
        for job in range(args.jobs)
    ]
    codes = [proc.wait() for proc in procs]
    seconds = time.perf_counter() - started
    for job in range(args.jobs):
        tail = (args.work / f"job-{job}.log").read_text().strip().splitlines()[-3:]
        print(f"job {job}: " + " | ".join(tail))
    print(f"{per_job * args.jobs} executions in {seconds:.0f} s, exit codes {codes}")
    return max(codes)


if __name__ == "__main__":
    raise SystemExit(main())
