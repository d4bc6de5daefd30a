"""ServerApp: CompressedFedAvg over the clients' update messages, compressed broadcasts; a JSON summary."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from flwr.app import ArrayRecord, Context, MetricRecord
from flwr.serverapp import Grid, ServerApp

from nnsq_flower_app.task import COMPRESSOR, SPARSITY, build_model, load_split
from nnsqueeze.fl.flower import CompressedFedAvg

app = ServerApp()


def _accuracy(server_round: int, arrays: ArrayRecord) -> MetricRecord:
    model = build_model()
    model.load_state_dict(arrays.to_torch_state_dict())
    x, y = load_split(-1, 1)
    with torch.no_grad():
        accuracy = float((model(x).argmax(1) == y).float().mean())
    return MetricRecord({"accuracy": accuracy})


@app.main()
def main(grid: Grid, context: Context) -> None:
    strategy = CompressedFedAvg(
        COMPRESSOR,
        downstream=COMPRESSOR,
        downstream_sparsity=SPARSITY,
        fraction_evaluate=0.0,
        min_available_nodes=2,
    )
    result = strategy.start(
        grid=grid,
        initial_arrays=ArrayRecord(build_model().state_dict()),
        num_rounds=int(context.run_config["num-server-rounds"]),
        evaluate_fn=_accuracy,
    )
    summary = {
        "train": {r: dict(m) for r, m in result.train_metrics_clientapp.items()},
        "accuracy": {r: m["accuracy"] for r, m in result.evaluate_metrics_serverapp.items()},
    }
    if path := str(context.run_config["result-path"]):
        Path(path).write_text(json.dumps(summary))
