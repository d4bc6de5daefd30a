"""PyTorch checkpoints (``.pt``/``.pth``/``.bin``), modules and tensors; torch is imported lazily.

Files are loaded with ``torch.load(weights_only=True)`` only, which refuses anything but tensors and
plain containers and never runs code from the file.  Entries of a state dict that are not tensors
(``num_batches_tracked`` stored as an int, an ``epoch``, a config string) are kept as JSON in the
attachment ``torch.extras`` and put back when a ``.pt`` file is written.
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from nnsqueeze.dtypes import storage_dtype
from nnsqueeze.errors import CheckpointError
from nnsqueeze.io._common import (
    Checkpoint,
    NamedTensor,
    atomic_write,
    checked_array,
    flatten_mapping,
    require,
    tensor_from_numpy,
    unique_names,
)

# torch dtype name -> (nnsqueeze dtype, signed integer torch dtype to reinterpret through, or None)
_FROM_TORCH: dict[str, tuple[str, str | None]] = {
    "float32": ("float32", None),
    "float16": ("float16", None),
    "bfloat16": ("bfloat16", "int16"),
    "float64": ("float64", None),
    "int8": ("int8", None),
    "int16": ("int16", None),
    "int32": ("int32", None),
    "int64": ("int64", None),
    "uint8": ("uint8", None),
    "uint16": ("uint16", "int16"),
    "uint32": ("uint32", "int32"),
    "uint64": ("uint64", "int64"),
    "bool": ("bool", None),
}


EXTRAS_ATTACHMENT = "torch.extras"


def _plain(value: Any) -> bool:
    """Whether ``value`` is JSON data that reads back as itself (finite numbers, no tuples)."""
    if value is None or isinstance(value, bool | int | str):
        return True
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, list):
        return all(_plain(v) for v in value)
    return False


def _torch(purpose: str) -> Any:
    return require("torch", purpose)


def is_torch_tensor(value: Any) -> bool:
    """Whether ``value`` is a ``torch.Tensor`` (without importing torch)."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(value, torch.Tensor)


def is_torch_module(value: Any) -> bool:
    """Whether ``value`` is a ``torch.nn.Module`` (without importing torch)."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(value, torch.nn.Module)


def tensor_from_torch(name: str, tensor: Any) -> NamedTensor:
    """Convert a ``torch.Tensor`` on any device to a :class:`NamedTensor` (bfloat16 as raw bits)."""
    torch = _torch("converting torch tensors")
    if tensor.layout != torch.strided:
        msg = f"tensor {name!r}: {tensor.layout} tensors are not supported; convert with .to_dense()"
        raise CheckpointError(msg)
    if tensor.device.type == "meta":
        msg = f"tensor {name!r} is on the meta device and holds no data"
        raise CheckpointError(msg)
    dtype_name = str(tensor.dtype).removeprefix("torch.")
    if dtype_name not in _FROM_TORCH:
        supported = ", ".join(f"torch.{n}" for n in _FROM_TORCH)
        msg = f"tensor {name!r}: unsupported dtype {tensor.dtype}; supported: {supported}"
        raise CheckpointError(msg)
    dtype, via = _FROM_TORCH[dtype_name]
    data = tensor.detach().to("cpu").contiguous()
    if via is not None:
        data = data.view(getattr(torch, via))
    array = data.numpy()
    if via is not None:
        array = array.view(storage_dtype(dtype))
    return NamedTensor(name, array, dtype)


def tensor_from_value(name: str, value: Any) -> NamedTensor:
    """A :class:`NamedTensor` from a torch tensor, NumPy array or array-like."""
    if is_torch_tensor(value):
        return tensor_from_torch(name, value)
    return tensor_from_numpy(name, value)


def _iter_values(items: list[tuple[str, Any]], where: str, tensors_only: bool) -> Iterator[NamedTensor]:
    for name, value in items:
        try:
            if tensors_only and not is_torch_tensor(value):
                msg = f"entry {name!r} is a {type(value).__name__}, not a tensor"
                raise CheckpointError(msg)
            yield tensor_from_value(name, value)
        except CheckpointError as exc:
            if not where:
                raise
            msg = f"{where}: {exc}"
            raise CheckpointError(msg) from None


def checkpoint_from_mapping(
    mapping: Mapping[str, Any], *, format: str = "mapping", where: str = "", tensors_only: bool = False
) -> Checkpoint:
    """A checkpoint over a (possibly nested) mapping of tensors; values are converted lazily.

    Values may be torch tensors, NumPy arrays or array-likes (only torch tensors if ``tensors_only``).
    """
    items = list(flatten_mapping(mapping).items())
    return Checkpoint(format=format, tensors=_iter_values(items, where, tensors_only), num_tensors=len(items))


def checkpoint_from_module(module: Any) -> Checkpoint:
    """A checkpoint over the ``state_dict()`` of a ``torch.nn.Module``."""
    return checkpoint_from_mapping(module.state_dict(), format="module")


def _load(torch: Any, path: Path) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError as exc:
        if "mmap" not in str(exc):
            raise
    # legacy (non-zip) files cannot be memory-mapped
    return torch.load(path, map_location="cpu", weights_only=True)


def read_pt(path: str | os.PathLike[str]) -> Checkpoint:
    """Open a torch checkpoint safely (``weights_only=True``, memory-mapped where possible).

    Accepts a state dict, or a dict whose ``"state_dict"`` or ``"model"`` entry is one; nested dicts are
    flattened with ``"."``.
    """
    file = Path(path)
    torch = _torch(f"reading {file.name}")
    try:
        loaded = _load(torch, file)
    except Exception as exc:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if "weights only load failed" in str(exc).lower() or "weights_only" in str(exc):
            msg = (
                f"{file}: refused to load: the file contains objects other than tensors and plain "
                f"containers, and nnsqueeze never runs code from a checkpoint ({detail}). "
                "Save a state_dict instead."
            )
        else:
            msg = f"{file}: not a readable torch checkpoint: {detail}"
        raise CheckpointError(msg) from exc
    if not isinstance(loaded, Mapping):
        msg = f"{file}: expected a dict of tensors (a state_dict), found {type(loaded).__name__}"
        raise CheckpointError(msg)
    for key in ("state_dict", "model"):
        if isinstance(loaded.get(key), Mapping):
            loaded = loaded[key]
            break
    items = flatten_mapping(loaded)
    extras = {name: value for name, value in items.items() if not is_torch_tensor(value)}
    for name, value in extras.items():
        if not _plain(value):
            msg = (
                f"{file}: entry {name!r} is a {type(value).__name__}, neither a tensor nor plain data "
                "(None, bool, int, str, finite float or a list of those)"
            )
            raise CheckpointError(msg)
    tensors = {name: value for name, value in items.items() if name not in extras}
    checkpoint = checkpoint_from_mapping(tensors, format="pt", where=str(file), tensors_only=True)
    if extras:
        checkpoint.attachments[EXTRAS_ATTACHMENT] = json.dumps(extras).encode("utf-8")
    return checkpoint


def _to_torch(torch: Any, tensor: NamedTensor) -> Any:
    array = checked_array(tensor)
    _, via = _FROM_TORCH[tensor.dtype]
    if not array.flags.writeable:
        array = array.copy()
    if not array.dtype.isnative:  # pragma: no cover - big-endian hosts only
        array = array.astype(array.dtype.newbyteorder("="))
    if via is None:
        return torch.from_numpy(array)
    signed = np.dtype(f"int{array.dtype.itemsize * 8}")
    return torch.from_numpy(array.view(signed)).view(getattr(torch, tensor.dtype))


def to_torch_state_dict(tensors: Iterable[NamedTensor]) -> dict[str, Any]:
    """A dict of CPU ``torch.Tensor`` s; bfloat16 is restored exactly from its bits.

    Writeable arrays are shared with the tensors, read-only ones (e.g. memory-mapped) are copied.
    """
    torch = _torch("building a torch state dict")
    return {t.name: _to_torch(torch, t) for t in unique_names(tensors)}


def write_pt(
    path: str | os.PathLike[str], tensors: Iterable[NamedTensor], extras: bytes | None = None
) -> None:
    """Write ``tensors`` as a torch state dict with ``torch.save``, atomically, with the non-tensor
    entries of ``extras`` (the ``torch.extras`` attachment) back in place."""
    torch = _torch(f"writing {Path(path).name}")
    state: dict[str, Any] = to_torch_state_dict(tensors)
    if extras is not None:
        try:
            restored = json.loads(extras)
        except ValueError as exc:
            msg = f"cannot write {path}: the stored {EXTRAS_ATTACHMENT} attachment is not JSON: {exc}"
            raise CheckpointError(msg) from None
        if not isinstance(restored, dict) or not all(_plain(v) for v in restored.values()):
            msg = f"cannot write {path}: the stored {EXTRAS_ATTACHMENT} attachment is not plain data"
            raise CheckpointError(msg)
        clash = sorted(set(restored) & set(state))
        if clash:
            msg = f"cannot write {path}: {EXTRAS_ATTACHMENT} names {clash[:3]} are also tensors"
            raise CheckpointError(msg)
        state.update(restored)
    with atomic_write(path) as out:
        torch.save(state, out)
