"""The exceptions nnsqueeze raises.  Everything derives from :class:`NnsqueezeError`."""

from __future__ import annotations


class NnsqueezeError(Exception):
    """Base class of all nnsqueeze errors."""


class BitstreamError(NnsqueezeError, ValueError):
    """A ``.nnsq`` file or payload is corrupt, truncated or not an nnsqueeze file."""


class UnsupportedVersionError(BitstreamError):
    """The file was written by a newer nnsqueeze format version than this one reads."""


class ConfigError(NnsqueezeError, ValueError):
    """Invalid options (for example a step size that is not positive)."""


class TensorError(NnsqueezeError, ValueError):
    """A tensor cannot be coded as asked (NaN/Inf values, unsupported dtype, ...)."""


class CheckpointError(NnsqueezeError, ValueError):
    """A checkpoint file cannot be read or written (unknown format, unsafe content, ...)."""


class MissingDependencyError(NnsqueezeError, ImportError):
    """An optional dependency (torch, onnx, ...) is needed for this operation."""


class ReplyRejected(NnsqueezeError, ValueError):
    """A federated client's reply is excluded from aggregation (stale, replayed, absurd weight, ...)."""


class PackageError(NnsqueezeError, ValueError):
    """A model directory cannot be packed, or a package cannot be written out: a symbolic link in the
    source, an unsafe path (absolute, '..', duplicate) in a package's file list, an existing output."""


class BaseMismatchError(NnsqueezeError, ValueError):
    """An update is decoded against a base other than the one it was coded against (its SHA-256
    differs), without a base, or a full model is given where an update is expected."""


class CalibrationError(NnsqueezeError, ValueError):
    """Calibration inputs do not fit the model (a missing or unknown input, a wrong shape or dtype),
    the model cannot be run for calibration, or its outputs are not finite."""


class NnrError(BitstreamError):
    """An MPEG NNR (ISO/IEC 15938-17) bitstream is malformed, truncated or inconsistent."""


class NnrUnsupportedError(NnrError):
    """An NNR bitstream uses a tool that nnsqueeze does not decode (docs/nnr.md lists them)."""
