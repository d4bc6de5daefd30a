"""Reading and writing checkpoints: safetensors, torch ``.pt``, NumPy ``.npz`` and ONNX models.

Loading never executes code from a file (torch files are loaded with ``weights_only=True``, NumPy files
with ``allow_pickle=False``) and streams tensors one at a time.  Writes are atomic: a temporary file in the
destination directory replaces the destination only once it is complete.  torch and onnx are optional
and imported only when needed.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nnsqueeze.errors import CheckpointError
from nnsqueeze.io._common import Checkpoint, NamedTensor, atomic_write, require
from nnsqueeze.io.numpy_npz import read_npz, write_npz
from nnsqueeze.io.onnx_model import ATTACHMENT as ONNX_ATTACHMENT
from nnsqueeze.io.onnx_model import onnx_bytes, read_onnx, write_onnx
from nnsqueeze.io.safetensors import read_safetensors, write_safetensors
from nnsqueeze.io.torch_pt import EXTRAS_ATTACHMENT as PT_EXTRAS_ATTACHMENT
from nnsqueeze.io.torch_pt import (
    checkpoint_from_mapping,
    checkpoint_from_module,
    is_torch_module,
    read_pt,
    to_torch_state_dict,
    write_pt,
)

if TYPE_CHECKING:
    import torch

__all__ = [
    "ONNX_ATTACHMENT",
    "PT_EXTRAS_ATTACHMENT",
    "SUPPORTED_SUFFIXES",
    "Checkpoint",
    "NamedTensor",
    "atomic_write",
    "onnx_bytes",
    "open_checkpoint",
    "require",
    "to_torch_state_dict",
    "write_checkpoint",
]

_READERS = {
    ".safetensors": read_safetensors,
    ".pt": read_pt,
    ".pth": read_pt,
    ".bin": read_pt,
    ".npz": read_npz,
    ".onnx": read_onnx,
}
SUPPORTED_SUFFIXES = tuple(_READERS)


def _suffix(path: Path, action: str) -> str:
    suffix = path.suffix.lower()
    if suffix not in _READERS:
        msg = (
            f"cannot {action} {path}: unknown checkpoint format {suffix or '(no suffix)'!r}; "
            f"supported: {', '.join(SUPPORTED_SUFFIXES)}"
        )
        raise CheckpointError(msg)
    return suffix


def open_checkpoint(source: str | os.PathLike[str] | Mapping[str, Any] | torch.nn.Module) -> Checkpoint:
    """Open a checkpoint file, a mapping of tensors, or a ``torch.nn.Module``; tensors are read lazily.

    Files are dispatched on their suffix: ``.safetensors``; ``.pt``/``.pth``/``.bin`` (torch, a state dict
    or a dict with a ``"state_dict"``/``"model"`` entry; nested dicts are flattened with ``"."``); ``.npz``;
    ``.onnx``.  Mapping values may be NumPy arrays, torch tensors (any device) or array-likes.  bfloat16
    tensors come as raw ``uint16`` bits tagged ``"bfloat16"``.  Raises :class:`CheckpointError` for missing,
    unreadable or unknown files.
    """
    if isinstance(source, Mapping):
        return checkpoint_from_mapping(source)
    if isinstance(source, (str, os.PathLike)):
        path = Path(os.fspath(source))
        suffix = _suffix(path, "read")
        if not path.exists():
            msg = f"cannot read {path}: no such file"
            raise CheckpointError(msg)
        if not path.is_file():
            msg = f"cannot read {path}: not a regular file"
            raise CheckpointError(msg)
        return _READERS[suffix](path)
    if is_torch_module(source):
        return checkpoint_from_module(source)
    msg = (
        f"cannot open a checkpoint from {type(source).__name__}; expected a path, a mapping of tensors "
        "or a torch.nn.Module"
    )
    raise CheckpointError(msg)


def write_checkpoint(
    path: str | os.PathLike[str],
    tensors: Iterable[NamedTensor],
    *,
    attachments: Mapping[str, bytes] | None = None,
    metadata: Mapping[str, str] | None = None,
) -> None:
    """Write ``tensors`` (iterated once) to ``path`` atomically, in the format its suffix names.

    ``.safetensors`` streams tensor by tensor and stores ``metadata`` as ``__metadata__``.
    ``.pt``/``.pth``/``.bin`` is a state dict saved with ``torch.save``.
    ``.npz`` stores bfloat16 as float32 (NumPy has no bfloat16).
    ``.onnx`` needs ``attachments["onnx.model"]`` (present when the tensors came from an ONNX model) and
    checks the rebuilt model.  ``.pt`` puts the non-tensor entries of ``attachments["torch.extras"]``
    back into the state dict.
    Attachments other formats cannot hold, and metadata outside safetensors, are ignored.
    """
    target = Path(os.fspath(path))
    suffix = _suffix(target, "write")
    if suffix == ".safetensors":
        write_safetensors(target, tensors, metadata=metadata)
    elif suffix == ".npz":
        write_npz(target, tensors)
    elif suffix == ".onnx":
        skeleton = (attachments or {}).get(ONNX_ATTACHMENT)
        if skeleton is None:
            msg = (
                f"cannot write {target}: the tensors do not come from an ONNX model (no {ONNX_ATTACHMENT!r} "
                "attachment; the .nnsq file was not made from an .onnx file); write .safetensors, .pt or "
                ".npz instead"
            )
            raise CheckpointError(msg)
        write_onnx(target, tensors, skeleton)
    else:
        write_pt(target, tensors, (attachments or {}).get(PT_EXTRAS_ATTACHMENT))
