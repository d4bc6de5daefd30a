"""Training-time compression benchmark: .nnsq bytes and test accuracy per technique and the full pipeline.

Models: a LeNet-300-100-style MLP and a LeNet-5-style CNN on scikit-learn's digits, and the MNIST-1D
CNN.  Selection (pruning level, codec step) uses a validation split cut from the training data; the
table reports test accuracy.  Writes benchmarks/train_results/results.{json,md}.

    python benchmarks/bench_train.py            # all three models (about 10-15 min on one core)
    python benchmarks/bench_train.py --models mlp
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch
from torch import nn

import nnsqueeze
from nnsqueeze import CompressOptions, zoo
from nnsqueeze.train import (
    DistillConfig,
    PruningConfig,
    QATConfig,
    SharingConfig,
    SqueezeConfig,
    TernaryConfig,
    convert,
    distill,
    fit,
    num_parameters,
    prepare_qat,
    prepare_sharing,
    prepare_ternary,
    prune,
    sparsity_report,
    squeeze,
)
from nnsqueeze.zoo.digits import lenet5_student, lenet_300_100

OUT = Path(__file__).parent / "train_results"
FINE_STEP = 2.0**-7  # the codec's default step (qp -28)
PUBLISHED = {
    "mlp": "Deep Compression LeNet-300-100: x40 (2.5 %), -0.0 pts",
    "lenet5": "Deep Compression LeNet-5: x39 (2.6 %); DeepCABAC LeNet5: 0.72 % (x139), -0.06 pts",
    "mnist1d_cnn": "(no published figure)",
}
TRAIN = {
    "digits": {"epochs": 40, "lr": 2e-3, "batch": 32},
    "mnist1d": {"epochs": 20, "lr": 5e-3, "batch": 64},
}


# students are small: they get this many times the teacher's epochs (both the distilled one and the
# labels-only one); T = 2, alpha = 0.5 beat T = 4, alpha = 0.7 on LeNet-5's student (0.978 vs 0.962, 2x)
STUDENT_EPOCHS = 3


def student_for(arch: str) -> nn.Module:
    if arch == "mlp":
        return lenet_300_100((100, 40))
    if arch == "lenet5":
        return lenet5_student()
    from nnsqueeze.zoo.mnist1d import build_model

    return build_model(channels=10)


def coded(model: nn.Module, step: float | None = None, qp_1d_offset: int = -32) -> int:
    opts = (
        CompressOptions(threads=1) if step is None else CompressOptions(step=step, qp_1d_offset=qp_1d_offset)
    )
    report = nnsqueeze.compress(model, None, options=opts)
    assert report.data is not None
    decoded = nnsqueeze.load_state_dict(report.data)
    for name, t in model.state_dict().items():  # the coded numbers are the evaluated numbers
        if step is not None:
            assert torch.equal(decoded[name], t), name
    return report.file_bytes


def run_model(arch: str, fast: bool) -> dict[str, object]:
    data = zoo.get(arch).dataset
    hp = TRAIN[data]
    torch.manual_seed(0)
    split = zoo.load_dataset(data, seed=0)
    loader = zoo.ShuffledBatches(split.x_train, split.y_train, int(hp["batch"]), seed=0)
    epochs = int(hp["epochs"]) // (4 if fast else 1)
    ft = max(1, epochs // 4)

    def test(m: nn.Module) -> float:
        return zoo.accuracy(m, split.x_test, split.y_test)

    rows: list[dict[str, object]] = []
    t0 = time.perf_counter()
    model = zoo.build(arch)
    fit(model, loader, epochs=epochs, lr=float(hp["lr"]))
    params = num_parameters(model)
    f32 = 4 * params
    base = test(model)

    def add(name: str, m: nn.Module, nbytes: int, note: str = "") -> None:
        acc = test(m)
        rows.append(
            {
                "technique": name,
                "bytes": nbytes,
                "ratio": f32 / nbytes,
                "percent_of_float32": 100 * nbytes / f32,
                "test_accuracy": acc,
                "drop_points": 100 * (base - acc),
                "sparsity": sparsity_report(m).sparsity,
                "note": note,
            }
        )
        print(
            f"  {arch:12s} {name:28s} {nbytes:8d} B  x{f32 / nbytes:7.1f}  acc {acc:.4f}  {note}", flush=True
        )

    add("float32 (raw weights)", model, f32, f"{params} params")
    add("float, codec qp -28", model, coded(model), "codec alone")

    def tuned(prepared: nn.Module, lr: float = 1e-3) -> nn.Module:
        return convert(fit(prepared, loader, epochs=ft, lr=lr))

    pcfg = PruningConfig(sparsity=0.9, schedule="gradual", steps=3)
    pruned = convert(prune(model, pcfg, lambda m: fit(m, loader, epochs=ft, lr=1e-3)))
    add("pruning 90 % (gradual)", pruned, coded(pruned), "coded at qp -28")
    shared = tuned(
        prepare_qat(prepare_sharing(model, SharingConfig(k=16, grid_step=FINE_STEP)), QATConfig(FINE_STEP))
    )
    add("k-means sharing k=16", shared, coded(shared, FINE_STEP), "centroids fine-tuned, on the qp -28 grid")
    ternary = tuned(
        prepare_qat(
            prepare_ternary(model, TernaryConfig(threshold=0.05, grid_step=FINE_STEP)), QATConfig(FINE_STEP)
        )
    )
    add("ternary (learned scales)", ternary, coded(ternary, FINE_STEP), "scales on the qp -28 grid")
    qat_step = 2.0**-4
    qat = tuned(prepare_qat(model, QATConfig(qat_step)))
    add("grid QAT step 1/16", qat, coded(qat, qat_step, -8), "quantization-aware fine-tuning")

    torch.manual_seed(1)
    student = student_for(arch)
    distill(
        student,
        model,
        loader,
        DistillConfig(temperature=2.0, alpha=0.5, epochs=STUDENT_EPOCHS * epochs, lr=float(hp["lr"])),
    )
    add(
        "distilled student",
        student,
        coded(student),
        f"{num_parameters(student)} params = {num_parameters(student) / params:.3f} of teacher; "
        f"T 2, alpha 0.5, {STUDENT_EPOCHS}x epochs; coded qp -28",
    )
    torch.manual_seed(1)
    alone = student_for(arch)
    fit(alone, loader, epochs=STUDENT_EPOCHS * epochs, lr=float(hp["lr"]))
    add("same student, labels only", alone, coded(alone), f"no teacher, {STUDENT_EPOCHS}x epochs")

    config = SqueezeConfig(prune_epochs=ft, qat_epochs=ft, structure="unstructured", scope="global")
    result = squeeze(model, loader, lambda m: zoo.accuracy(m, split.x_val, split.y_val), 0.5, config=config)
    for stage in result.stages[1:]:
        add(f"pipeline: {stage.name}", stage.model, stage.file_bytes, stage.note)
    return {
        "model": arch,
        "data": data,
        "params": params,
        "float32_bytes": f32,
        "float_test_accuracy": base,
        "rows": rows,
        "pipeline_step": result.step,
        "published": PUBLISHED[arch],
        "seconds": time.perf_counter() - t0,
    }


def markdown(results: list[dict[str, object]]) -> str:
    lines = [
        "# Training-time compression (`benchmarks/bench_train.py`)",
        "",
        "Test accuracy; `.nnsq` bytes of all parameters (weights and biases); ratio = float32 bytes / file",
        "bytes.  Pipeline choices (pruning level, codec step) are made on a validation split, never the test",
        "set.  Targets: pipeline >= 100x at <= 0.5 points drop; distilled student <= 1/4 params",
        "within 1 point.",
        "",
    ]
    for r in results:
        lines += [
            f"## {r['model']} on {r['data']} ({r['params']} params, float32 {r['float32_bytes']} B, "
            f"test acc {float(r['float_test_accuracy']):.4f}, {float(r['seconds']):.0f} s)",
            "",
            f"Published: {r['published']}",
            "",
            "| technique | .nnsq bytes | ratio | % of float32 | test acc | drop (pts) | sparsity | note |",
            "|---|---:|---:|---:|---:|---:|---:|---|",
        ]
        rows = r["rows"]
        assert isinstance(rows, list)
        for row in rows:
            lines.append(
                f"| {row['technique']} | {row['bytes']} | {row['ratio']:.1f} "
                f"| {row['percent_of_float32']:.2f} | {row['test_accuracy']:.4f} "
                f"| {row['drop_points']:+.2f} | {row['sparsity']:.3f} | {row['note']} |"
            )
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", nargs="+", default=["mlp", "lenet5", "mnist1d_cnn"])
    ap.add_argument("--fast", action="store_true", help="a quarter of the epochs (smoke run)")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    torch.set_num_threads(1)
    results = [run_model(arch, args.fast) for arch in args.models]
    args.out.mkdir(parents=True, exist_ok=True)
    meta = {"torch": torch.__version__, "python": platform.python_version(), "fast": args.fast}
    (args.out / "results.json").write_text(json.dumps({"meta": meta, "results": results}, indent=1) + "\n")
    (args.out / "results.md").write_text(markdown(results) + "\n")
    print(markdown(results))


if __name__ == "__main__":
    main()
