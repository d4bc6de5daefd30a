"""DDP hooks with the gloo backend and 2 CPU processes: training works, replicas stay identical."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def _worker(rank: int, world: int, init_file: str, out_dir: str, method: str) -> None:
    from torch import nn
    from torch.nn.parallel import DistributedDataParallel

    from nnsqueeze.fl.compressors import SparseBinary, TopK
    from nnsqueeze.fl.ddp_hooks import CompressionHookState, compressed_allreduce_hook
    from nnsqueeze.zoo.digits import load_data

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    torch.manual_seed(0)
    data = load_data()
    x = data.x_train.reshape(len(data.x_train), -1)
    y = data.y_train
    net = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    model = DistributedDataParallel(net)
    compressor = TopK(0.05) if method == "topk" else SparseBinary(0.05)
    state = CompressionHookState(compressor)
    model.register_comm_hook(state, compressed_allreduce_hook)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    gen = torch.Generator().manual_seed(rank)
    loss_fn = nn.CrossEntropyLoss()
    losses = []
    for _ in range(150):
        idx = torch.randint(0, len(x), (32,), generator=gen)
        opt.zero_grad()
        loss = loss_fn(model(x[idx]), y[idx])
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    with torch.no_grad():
        acc = float((net(data.x_test.reshape(len(data.x_test), -1)).argmax(1) == data.y_test).float().mean())
    flat = torch.cat([p.detach().reshape(-1) for p in net.parameters()])
    gathered = [torch.zeros_like(flat) for _ in range(world)]
    dist.all_gather(gathered, flat)
    result = {
        "identical": all(torch.equal(gathered[0], g) for g in gathered),
        "first_loss": sum(losses[:10]) / 10,
        "last_loss": sum(losses[-10:]) / 10,
        "accuracy": acc,
        "bytes_sent": state.bytes_sent,
        "dense_bytes": state.dense_bytes,
    }
    Path(out_dir, f"rank{rank}.json").write_text(json.dumps(result))
    # Both ranks leave together: tearing gloo down while the peer still talks aborts the process.
    dist.barrier()
    dist.destroy_process_group()


@pytest.mark.slow  # ~15 s each on an idle 2-core box (two processes import torch), minutes under load
@pytest.mark.parametrize("method", ["topk", "sbc"])
def test_ddp_hook_two_gloo_processes(tmp_path: Path, method: str) -> None:
    if not dist.is_available() or not dist.is_gloo_available():
        pytest.skip("torch.distributed with gloo is not available")
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    mp.spawn(_worker, args=(2, str(tmp_path / "init"), str(tmp_path), method), nprocs=2, join=True)
    results = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    for r in results:
        assert r["identical"]
        assert r["last_loss"] < 0.6 * r["first_loss"]
        assert r["accuracy"] > 0.7
        assert r["dense_bytes"] > 8 * r["bytes_sent"]
