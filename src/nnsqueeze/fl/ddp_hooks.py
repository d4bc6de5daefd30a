"""DDP communication hooks that send compressed gradients as real bytes (top-k or SBC, with error feedback).

Each rank adds its residual to the bucket's gradient, encodes it with a compressor of
:mod:`nnsqueeze.fl.compressors`, exchanges the messages with ``all_gather`` (lengths first, then the
bytes padded to the longest), decodes every rank's message and averages them.  Every rank decodes
the same bytes in the same order, so the replicas stay identical.  Sparsification is per DDP bucket
(a bucket mixes layers), not per tensor.

>>> model = torch.nn.parallel.DistributedDataParallel(net)  # doctest: +SKIP
>>> state = CompressionHookState(SparseBinary(0.01))  # doctest: +SKIP
>>> model.register_comm_hook(state, compressed_allreduce_hook)  # doctest: +SKIP
"""

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from nnsqueeze.errors import BitstreamError
from nnsqueeze.fl.compressors import Compressor


@dataclass
class CompressionHookState:
    """The compressor, one residual per bucket, and byte counters (this rank's uploads)."""

    compressor: Compressor
    error_feedback: bool = True
    process_group: Any = None
    residuals: dict[int, np.ndarray] = field(default_factory=dict)
    bytes_sent: int = 0
    dense_bytes: int = 0


def _exchange(message: bytes, group: Any) -> list[bytes]:
    world = dist.get_world_size(group)
    length = torch.tensor([len(message)], dtype=torch.int64)
    lengths = [torch.zeros(1, dtype=torch.int64) for _ in range(world)]
    dist.all_gather(lengths, length, group=group)
    longest = max(int(n) for n in lengths)
    padded = torch.zeros(longest, dtype=torch.uint8)
    padded[: len(message)] = torch.frombuffer(bytearray(message), dtype=torch.uint8)
    gathered = [torch.zeros(longest, dtype=torch.uint8) for _ in range(world)]
    dist.all_gather(gathered, padded, group=group)
    return [bytes(g[: int(n)].numpy().tobytes()) for g, n in zip(gathered, lengths, strict=True)]


def compressed_allreduce_hook(
    state: CompressionHookState,
    bucket: dist.GradBucket,  # type: ignore[name-defined]  # not in torch 2.13 stubs
) -> torch.futures.Future[torch.Tensor]:
    """Averages the bucket's gradients across ranks through compressed messages."""
    buffer = bucket.buffer()
    grad = buffer.detach().to(torch.float32).cpu().numpy().reshape(-1)
    key = bucket.index()
    if state.error_feedback and key in state.residuals:
        grad = grad + state.residuals[key]
    message, sent = state.compressor.roundtrip([grad])
    if state.error_feedback:
        state.residuals[key] = grad - sent[0]
    state.bytes_sent += len(message)
    state.dense_bytes += 4 * grad.size
    messages = _exchange(message, state.process_group)
    total = np.zeros(grad.size, dtype=np.float64)
    for rank, m in enumerate(messages):
        try:
            total += state.compressor.decode(m, [(grad.size,)])[0]
        except BitstreamError as exc:
            msg = f"rank {rank} sent a malformed gradient message for bucket {key}: {exc}"
            raise BitstreamError(msg) from exc
    mean = torch.from_numpy((total / len(messages)).astype(np.float32)).to(buffer.dtype)
    fut: torch.futures.Future[torch.Tensor] = torch.futures.Future()
    fut.set_result(mean.reshape(buffer.shape))
    return fut
