"""Communication-efficient federated and distributed training.

Compressors that produce real bytes (:mod:`.compressors`), optimal Golomb position coding
(:mod:`.golomb`), error feedback and DGC (:mod:`.error_feedback`), client partitions
(:mod:`.partition`) and an in-process FedAvg simulator (:mod:`.simulation`).  The torch.distributed
hooks live in :mod:`.ddp_hooks` (import it explicitly); the Flower Mod and Strategy in :mod:`.flower`
(``make_compression_mod``, ``CompressedFedAvg``; they need the ``flower`` extra).
"""

from typing import Any

from nnsqueeze.fl.compressors import (
    CabacQuantized,
    Compressor,
    Identity,
    NnsqUpdate,
    SparseBinary,
    SparseTernary,
    TopK,
    make_compressor,
)
from nnsqueeze.fl.error_feedback import DeepGradientCompression, ErrorFeedback
from nnsqueeze.fl.golomb import decode_positions, encode_positions, expected_bits_per_position
from nnsqueeze.fl.partition import dirichlet_partition, iid_partition
from nnsqueeze.fl.simulation import SimulationConfig, SimulationResult, plot_results, run_simulation

__all__ = [
    "CabacQuantized",
    "Compressor",
    "DeepGradientCompression",
    "ErrorFeedback",
    "Identity",
    "NnsqUpdate",
    "SimulationConfig",
    "SimulationResult",
    "SparseBinary",
    "SparseTernary",
    "TopK",
    "decode_positions",
    "dirichlet_partition",
    "encode_positions",
    "expected_bits_per_position",
    "iid_partition",
    "make_compressor",
    "plot_results",
    "run_simulation",
]


def __getattr__(name: str) -> Any:
    # The Flower pieces need the optional flwr: import them only when asked for.
    if name in ("CompressedFedAvg", "make_compression_mod"):
        from nnsqueeze.fl import flower

        return getattr(flower, name)
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)
