"""Shared types and helpers of :mod:`nnsqueeze.io`: tensors, checkpoints, atomic writes, lazy imports."""

from __future__ import annotations

import contextlib
import importlib
import os
import secrets
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import IO, Any

import numpy as np

from nnsqueeze.dtypes import DTYPE_NAMES, dtype_name_of, storage_dtype
from nnsqueeze.errors import CheckpointError, MissingDependencyError, TensorError


@dataclass(frozen=True)
class NamedTensor:
    """One tensor of a checkpoint.

    ``array`` is C-contiguous and little-endian; for ``dtype == "bfloat16"`` it holds the raw ``uint16``
    bit patterns.  ``dtype`` is a name from :data:`nnsqueeze.dtypes.DTYPE_NAMES`.
    """

    name: str
    array: np.ndarray
    dtype: str


@dataclass
class Checkpoint:
    """An opened checkpoint whose tensors are read lazily, one at a time, in file order.

    ``tensors`` can be iterated once.  ``attachments`` holds side data to store alongside the tensors (for
    ONNX models: ``{"onnx.model": <ModelProto bytes with the tensor data removed>}``); ``metadata`` holds
    string metadata such as the safetensors ``__metadata__``.
    """

    format: str
    tensors: Iterator[NamedTensor]
    num_tensors: int
    attachments: dict[str, bytes] = field(default_factory=dict)
    metadata: dict[str, str] = field(default_factory=dict)


_EXTRAS = {"torch": "torch", "onnx": "onnx", "onnxruntime": "calibrate"}


def require(module: str, purpose: str) -> ModuleType:
    """Import an optional dependency, or raise :class:`MissingDependencyError` naming the pip extra."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        extra = _EXTRAS.get(module, module)
        msg = f'{purpose} needs the optional dependency {module!r}: pip install "nnsqueeze[{extra}]"'
        raise MissingDependencyError(msg) from exc


def tensor_from_numpy(name: str, value: Any) -> NamedTensor:
    """Wrap a NumPy array (or array-like) as a :class:`NamedTensor`; raises :class:`CheckpointError`."""
    if isinstance(value, np.ndarray):
        array = value
    else:
        if value is None or isinstance(value, (str, bytes, Mapping)):
            msg = f"tensor {name!r}: expected an array, got {type(value).__name__}"
            raise CheckpointError(msg)
        try:
            array = np.asarray(value)
        except (ValueError, TypeError) as exc:
            msg = f"tensor {name!r}: cannot convert {type(value).__name__} to an array: {exc}"
            raise CheckpointError(msg) from exc
    array = np.asarray(array)  # drop ndarray subclasses such as np.memmap or np.matrix
    if array.dtype.name == "bfloat16":  # ml_dtypes.bfloat16
        dtype = "bfloat16"
        array = array.view(np.uint16)
    else:
        little = array.dtype.newbyteorder("<")
        if array.dtype.kind in "biuf" and array.dtype != little:
            array = array.astype(little)
        try:
            dtype = dtype_name_of(array)
        except TensorError as exc:
            if array.dtype == object:
                msg = f"tensor {name!r}: expected an array, got {type(value).__name__} of Python objects"
            else:
                msg = f"tensor {name!r}: {exc}"
            raise CheckpointError(msg) from None
    return NamedTensor(name, contiguous(array), dtype)


def contiguous(array: np.ndarray) -> np.ndarray:
    """``array`` itself when C-contiguous and aligned, else a C-contiguous copy (0-d arrays stay 0-d)."""
    if array.flags.c_contiguous and array.flags.aligned:
        return array
    return np.array(array, order="C", copy=True)


def checked_array(tensor: NamedTensor) -> np.ndarray:
    """The little-endian, C-contiguous storage array of ``tensor``, checked against its dtype name."""
    if tensor.dtype not in DTYPE_NAMES:
        msg = (
            f"tensor {tensor.name!r}: unsupported dtype {tensor.dtype!r}; supported: {', '.join(DTYPE_NAMES)}"
        )
        raise CheckpointError(msg)
    storage = storage_dtype(tensor.dtype)
    array = np.asarray(tensor.array)
    if tensor.dtype == "bfloat16" and array.dtype.name == "bfloat16":
        array = array.view(np.uint16)
    if array.dtype != storage:
        if array.dtype.newbyteorder("<") != storage:
            msg = (
                f"tensor {tensor.name!r}: array dtype {array.dtype} does not match dtype {tensor.dtype!r} "
                f"(expected {storage})"
            )
            raise CheckpointError(msg)
        array = array.astype(storage)
    return contiguous(array)


def unique_names(tensors: Iterable[NamedTensor]) -> Iterator[NamedTensor]:
    """Pass ``tensors`` through, raising :class:`CheckpointError` on a repeated or non-string name."""
    seen: set[str] = set()
    for tensor in tensors:
        name: object = tensor.name
        if not isinstance(name, str):
            msg = f"tensor names must be strings, got {name!r}"
            raise CheckpointError(msg)
        if tensor.name in seen:
            msg = f"duplicate tensor name {tensor.name!r}"
            raise CheckpointError(msg)
        seen.add(tensor.name)
        yield tensor


def flatten_mapping(mapping: Mapping[Any, Any], prefix: str = "") -> dict[str, Any]:
    """Flatten nested mappings into one level, joining keys with ``"."``."""
    flat: dict[str, Any] = {}
    for key, value in mapping.items():
        if not isinstance(key, str):
            msg = f"tensor names must be strings, got {key!r}"
            raise CheckpointError(msg)
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten_mapping(value, f"{name}."))
        elif name in flat:
            msg = f"duplicate tensor name {name!r} after flattening nested dicts"
            raise CheckpointError(msg)
        else:
            flat[name] = value
    return flat


def create_temp(path: Path) -> tuple[Path, IO[bytes]]:
    """Creates a new temp file beside `path` (mode 0o666 less the umask), for an atomic rename later."""
    for _ in range(100):
        temp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
        except FileExistsError:
            continue
        except OSError as exc:
            msg = f"cannot write {path}: {exc.strerror or exc}"
            raise CheckpointError(msg) from exc
        return temp, os.fdopen(fd, "wb")
    msg = f"cannot write {path}: could not create a temporary file in {path.parent}"  # pragma: no cover
    raise CheckpointError(msg)  # pragma: no cover


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str]) -> Iterator[IO[bytes]]:
    """Open a temporary file next to ``path``; on success it atomically replaces ``path``.

    On any exception the temporary file is removed and ``path`` is left untouched.
    """
    target = Path(path)
    temp, handle = create_temp(target)
    try:
        with handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        temp.replace(target)
    except BaseException:
        with contextlib.suppress(OSError):
            temp.unlink()
        raise
