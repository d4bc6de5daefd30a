"""Training-time compression: pruning, weight sharing, ternary weights, grid QAT, distillation, and the
``squeeze`` pipeline that ends in the codec.

torch.ao-shaped: a config object per technique, ``prepare_*`` (a copy unless ``inplace=True``) that
attaches parametrizations, ordinary training (:func:`fit` or your own loop), then :func:`convert`.
"""

from __future__ import annotations

from nnsqueeze.train.config import (
    DistillConfig,
    PruningConfig,
    QATConfig,
    SharingConfig,
    SqueezeConfig,
    TernaryConfig,
)
from nnsqueeze.train.conversion import convert
from nnsqueeze.train.distillation import DistillationLoss, distill, distillation_loss, num_parameters
from nnsqueeze.train.pipeline import SqueezeResult, Stage, squeeze
from nnsqueeze.train.pruning import (
    Mask,
    SparsityReport,
    prepare_pruning,
    prune,
    schedule_levels,
    sparsity_report,
    update_masks,
)
from nnsqueeze.train.sharing import GridQuant, SharedWeight, kmeans_1d, prepare_qat, prepare_sharing, snap
from nnsqueeze.train.ternary import TernaryWeight, prepare_ternary
from nnsqueeze.zoo.training import fit

__all__ = [
    "DistillConfig",
    "DistillationLoss",
    "GridQuant",
    "Mask",
    "PruningConfig",
    "QATConfig",
    "SharedWeight",
    "SharingConfig",
    "SparsityReport",
    "SqueezeConfig",
    "SqueezeResult",
    "Stage",
    "TernaryConfig",
    "TernaryWeight",
    "convert",
    "distill",
    "distillation_loss",
    "fit",
    "kmeans_1d",
    "num_parameters",
    "prepare_pruning",
    "prepare_qat",
    "prepare_sharing",
    "prepare_ternary",
    "prune",
    "schedule_levels",
    "snap",
    "sparsity_report",
    "squeeze",
    "update_masks",
]
