"""nnsqueeze: neural network coding (DeepCABAC) for efficient, distributed and interpretable deep learning.

>>> import numpy as np, nnsqueeze
>>> weights = {"w": np.linspace(-1, 1, 600, dtype=np.float32).reshape(20, 30)}
>>> report = nnsqueeze.compress(weights, qp=-20)
>>> report.file_bytes < weights["w"].nbytes
True
"""

from __future__ import annotations

try:
    from nnsqueeze import _core  # noqa: F401
except ImportError as exc:  # pragma: no cover - only without a build
    exc.add_note("nnsqueeze's C++ core is not built: install with `pip install .` (or `pip install -ve .`).")
    raise

from nnsqueeze.calibration import Calibration
from nnsqueeze.codec import (
    CALIBRATED_DEFAULTS,
    RDO_DEFAULTS,
    CompressionReport,
    CompressOptions,
    NnsqFile,
    RdoSettings,
    TensorReport,
    compress,
    decompress,
    load_state_dict,
)
from nnsqueeze.errors import (
    BaseMismatchError,
    BitstreamError,
    CalibrationError,
    CheckpointError,
    ConfigError,
    MissingDependencyError,
    NnsqueezeError,
    PackageError,
    ReplyRejected,
    TensorError,
    UnsupportedVersionError,
)
from nnsqueeze.package import compress_directory, decompress_to
from nnsqueeze.quant import qp_to_step
from nnsqueeze.quant.fisher import fisher_diagonal
from nnsqueeze.update import apply_update, compress_update

__version__ = "0.1.0"

__all__ = [
    "CALIBRATED_DEFAULTS",
    "RDO_DEFAULTS",
    "BaseMismatchError",
    "BitstreamError",
    "Calibration",
    "CalibrationError",
    "CheckpointError",
    "CompressOptions",
    "CompressionReport",
    "ConfigError",
    "MissingDependencyError",
    "NnsqFile",
    "NnsqueezeError",
    "PackageError",
    "RdoSettings",
    "ReplyRejected",
    "TensorError",
    "TensorReport",
    "UnsupportedVersionError",
    "apply_update",
    "compress",
    "compress_directory",
    "compress_update",
    "decompress",
    "decompress_to",
    "fisher_diagonal",
    "load_state_dict",
    "qp_to_step",
]


def __dir__() -> list[str]:
    return __all__
