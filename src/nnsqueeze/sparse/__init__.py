"""Inference formats for quantized weight matrices and the C++ kernels that multiply in them.

Quantized networks have low-entropy weight matrices with few shared values.  This package stores a
matrix as :class:`Dense` float32, a :class:`PackedCodebook` (2/3/4/8-bit indices into a value table),
:class:`CSR`, or the shared-value formats :class:`CER` and :class:`CSER` of Wiedemann et al. (TNNLS
2019), each with exact storage, operation counts and a 45 nm energy estimate (:mod:`.cost`), and
computes ``x @ W.T + bias`` in it with C++ kernels (GIL released, optionally multithreaded; AVX-512,
AVX2 + FMA and portable paths chosen at run time, see :mod:`.isa`).
:func:`convert` swaps a torch model's Linear and Conv layers for modules that run in these formats
(``import torch`` happens only then).

>>> import numpy as np
>>> from nnsqueeze.sparse import CER, CSR
>>> rng = np.random.default_rng(0)
>>> w = (rng.integers(-2, 3, (64, 128)) * (rng.random((64, 128)) < 0.3)).astype(np.float32)
>>> cer = CER.from_dense(w)
>>> x = rng.standard_normal(128).astype(np.float32)
>>> bool(np.allclose(cer.matvec(x), w @ x, atol=1e-4)), (cer.to_dense() == w).all()
(True, np.True_)
>>> cer.nbytes < CSR.from_dense(w, index_dtype=np.uint32).nbytes / 2
True
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from nnsqueeze.sparse import isa
from nnsqueeze.sparse.cost import (
    ENERGY_45NM,
    Energy,
    LayerShape,
    ModelCost,
    OpCounts,
    dense_model_cost,
    format_model_cost,
    vgg16_layers,
)
from nnsqueeze.sparse.formats import CER, CSER, CSR, FORMATS, Dense, Format, FormatError, KernelSpec
from nnsqueeze.sparse.levels import read_levels
from nnsqueeze.sparse.packed import PackedCodebook

if TYPE_CHECKING:
    from nnsqueeze.sparse.nn import (
        FormatLinear,
        LayerChoice,
        SparseConv,
        SparseLinear,
        convert,
        layer_formats,
        model_cost,
        weight_nbytes,
    )

isa.force_from_environment()

_TORCH_NAMES = (
    "FormatLinear",
    "LayerChoice",
    "SparseConv",
    "SparseLinear",
    "convert",
    "layer_formats",
    "model_cost",
    "weight_nbytes",
)

__all__ = [
    "CER",
    "CSER",
    "CSR",
    "ENERGY_45NM",
    "FORMATS",
    "Dense",
    "Energy",
    "Format",
    "FormatError",
    "FormatLinear",
    "KernelSpec",
    "LayerChoice",
    "LayerShape",
    "ModelCost",
    "OpCounts",
    "PackedCodebook",
    "SparseConv",
    "SparseLinear",
    "convert",
    "dense_model_cost",
    "format_model_cost",
    "isa",
    "layer_formats",
    "model_cost",
    "read_levels",
    "vgg16_layers",
    "weight_nbytes",
]


def __getattr__(name: str) -> Any:
    if name in _TORCH_NAMES:  # torch is optional: import the module API only when asked for
        from nnsqueeze.sparse import nn

        return getattr(nn, name)
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)


def __dir__() -> list[str]:
    return __all__
