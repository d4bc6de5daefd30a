"""ClientApp: a few epochs of SGD on this node's partition; the compression Mod turns the reply into bytes."""

from __future__ import annotations

import torch
from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from nnsq_flower_app.task import COMPRESSOR, SPARSITY, build_model, load_split
from nnsqueeze.fl.flower import make_compression_mod

app = ClientApp(mods=[make_compression_mod(COMPRESSOR, sparsity=SPARSITY, error_feedback=True)])


@app.train()
def train(msg: Message, context: Context) -> Message:
    model = build_model()
    model.load_state_dict(msg.content["arrays"].to_torch_state_dict())
    x, y = load_split(int(context.node_config["partition-id"]), int(context.node_config["num-partitions"]))
    opt = torch.optim.SGD(model.parameters(), lr=float(context.run_config["lr"]))
    loss = torch.tensor(0.0)
    for _ in range(int(context.run_config["local-epochs"])):
        for i in range(0, len(y), 32):
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(x[i : i + 32]), y[i : i + 32])
            loss.backward()
            opt.step()
    metrics = MetricRecord({"train-loss": float(loss.detach()), "num-examples": len(y)})
    content = RecordDict({"arrays": ArrayRecord(model.state_dict()), "metrics": metrics})
    return Message(content=content, reply_to=msg)
