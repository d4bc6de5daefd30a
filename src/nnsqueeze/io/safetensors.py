"""Streaming reader and writer of the safetensors format (implemented here; the package is not needed).

Layout: an 8-byte little-endian header length ``N``, ``N`` bytes of UTF-8 JSON mapping tensor names to
``{"dtype", "shape", "data_offsets": [begin, end]}`` (plus an optional ``"__metadata__"`` of strings),
then the tensor data, with offsets relative to the start of the data.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import struct
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nnsqueeze.dtypes import storage_dtype
from nnsqueeze.errors import CheckpointError
from nnsqueeze.io._common import Checkpoint, NamedTensor, atomic_write, checked_array, unique_names

# safetensors dtype tag <-> nnsqueeze dtype name
_FROM_TAG = {
    "F32": "float32",
    "F16": "float16",
    "BF16": "bfloat16",
    "F64": "float64",
    "I8": "int8",
    "I16": "int16",
    "I32": "int32",
    "I64": "int64",
    "U8": "uint8",
    "U16": "uint16",
    "U32": "uint32",
    "U64": "uint64",
    "BOOL": "bool",
}
_TO_TAG = {name: tag for tag, name in _FROM_TAG.items()}

MAX_HEADER_BYTES = 100_000_000  # the limit of the reference implementation
_COPY_CHUNK = 16 << 20


@dataclass(frozen=True)
class _Entry:
    name: str
    dtype: str
    shape: tuple[int, ...]
    begin: int
    end: int


def _bad(path: Path, what: str) -> CheckpointError:
    return CheckpointError(f"{path}: not a valid safetensors file: {what}")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            msg = f"duplicate key {key!r} in the JSON header"
            raise ValueError(msg)
        result[key] = value
    return result


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _parse_entry(path: Path, name: str, info: Any) -> _Entry:
    if not isinstance(info, dict):
        raise _bad(path, f"header entry {name!r} is not a JSON object")
    tag = info.get("dtype")
    if tag not in _FROM_TAG:
        raise _bad(path, f"tensor {name!r} has unsupported dtype {tag!r}; supported: {', '.join(_FROM_TAG)}")
    shape = info.get("shape")
    if not isinstance(shape, list) or not all(_is_int(d) and d >= 0 for d in shape):
        raise _bad(path, f"tensor {name!r} has an invalid shape {shape!r}")
    offsets = info.get("data_offsets")
    if (
        not isinstance(offsets, list)
        or len(offsets) != 2
        or not all(_is_int(o) for o in offsets)
        or not 0 <= offsets[0] <= offsets[1]
    ):
        raise _bad(path, f"tensor {name!r} has invalid data_offsets {offsets!r}")
    dtype = _FROM_TAG[tag]
    nbytes = math.prod(shape) * storage_dtype(dtype).itemsize
    begin, end = offsets
    if end - begin != nbytes:
        raise _bad(
            path,
            f"tensor {name!r}: shape {shape} of {tag} needs {nbytes} bytes "
            f"but data_offsets span {end - begin}",
        )
    return _Entry(name, dtype, tuple(shape), begin, end)


def _read_header(path: Path) -> tuple[int, list[_Entry], dict[str, str]]:
    """Parse and validate the header; returns (data start, entries in data order, metadata)."""
    try:
        with path.open("rb") as handle:
            file_size = os.fstat(handle.fileno()).st_size
            prefix = handle.read(8)
            if len(prefix) < 8:
                raise _bad(path, f"file is {file_size} bytes, shorter than the 8-byte header length")
            (header_len,) = struct.unpack("<Q", prefix)
            if header_len > file_size - 8:
                raise _bad(path, f"header length {header_len} exceeds the file size {file_size}")
            if header_len > MAX_HEADER_BYTES:
                raise _bad(path, f"header length {header_len} exceeds the limit of {MAX_HEADER_BYTES} bytes")
            raw = handle.read(header_len)
    except OSError as exc:
        msg = f"{path}: cannot read: {exc.strerror or exc}"
        raise CheckpointError(msg) from exc
    if len(raw) != header_len:  # pragma: no cover - file shrank while reading
        raise _bad(path, "truncated header")
    try:
        header = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except (UnicodeDecodeError, ValueError) as exc:
        raise _bad(path, f"header is not valid JSON ({exc})") from None
    if not isinstance(header, dict):
        raise _bad(path, "header is not a JSON object")
    metadata = header.pop("__metadata__", None)
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise _bad(path, "__metadata__ must be an object of strings")
    entries = [_parse_entry(path, name, info) for name, info in header.items()]
    entries.sort(key=lambda e: (e.begin, e.end))
    data_start = 8 + header_len
    data_size = file_size - data_start
    position = 0
    for entry in entries:
        if entry.begin != position:
            problem = "overlaps the previous tensor" if entry.begin < position else "leaves a gap before it"
            raise _bad(path, f"tensor {entry.name!r} at data_offsets [{entry.begin}, {entry.end}] {problem}")
        if entry.end > data_size:
            raise _bad(
                path,
                f"tensor {entry.name!r}: data_offsets end {entry.end} is past the data ({data_size} bytes); "
                "the file is truncated or corrupt",
            )
        position = entry.end
    if position != data_size:
        raise _bad(path, f"{data_size - position} bytes after the last tensor are not covered by the header")
    return data_start, entries, metadata


def _iter_tensors(path: Path, data_start: int, entries: list[_Entry]) -> Iterator[NamedTensor]:
    # Each tensor is read into its own buffer (not memory-mapped), so the process holds only the
    # tensors in flight and its resident memory stays honest on multi-GB files.
    with path.open("rb") as file:
        for entry in entries:
            size = entry.end - entry.begin
            raw = np.empty(size, dtype=np.uint8)
            file.seek(data_start + entry.begin)
            if file.readinto(raw.data) != size:
                raise _bad(path, f"tensor {entry.name!r} is truncated (file changed while reading?)")
            yield NamedTensor(
                entry.name, raw.view(storage_dtype(entry.dtype)).reshape(entry.shape), entry.dtype
            )


def read_safetensors(path: str | os.PathLike[str]) -> Checkpoint:
    """Open a ``.safetensors`` file; the header is validated now, tensors are read one at a time."""
    file = Path(path)
    data_start, entries, metadata = _read_header(file)
    return Checkpoint(
        format="safetensors",
        tensors=_iter_tensors(file, data_start, entries),
        num_tensors=len(entries),
        attachments={},
        metadata=dict(metadata),
    )


def write_safetensors(
    path: str | os.PathLike[str],
    tensors: Iterable[NamedTensor],
    *,
    metadata: Mapping[str, str] | None = None,
) -> None:
    """Write ``tensors`` (iterated once, one at a time) to a ``.safetensors`` file atomically.

    The tensor data is streamed to an anonymous temporary file first, since the header (which needs every
    shape) precedes the data; then header and data are written to a temporary file that replaces ``path``.
    """
    target = Path(path)
    meta = dict(metadata or {})
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items()):
        msg = "safetensors metadata must map strings to strings"
        raise CheckpointError(msg)
    header: dict[str, Any] = {"__metadata__": meta} if meta else {}
    with tempfile.TemporaryFile(dir=target.parent) as data:
        position = 0
        for tensor in unique_names(tensors):
            if tensor.name == "__metadata__":
                msg = "a tensor cannot be named '__metadata__' in a safetensors file"
                raise CheckpointError(msg)
            array = checked_array(tensor)
            data.write(array.reshape(-1).view(np.uint8).data)
            header[tensor.name] = {
                "dtype": _TO_TAG[tensor.dtype],
                "shape": list(array.shape),
                "data_offsets": [position, position + array.nbytes],
            }
            position += array.nbytes
        encoded = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        encoded += b" " * (-len(encoded) % 8)  # align the data to 8 bytes, like the reference writer
        data.seek(0)
        with atomic_write(target) as out:
            out.write(struct.pack("<Q", len(encoded)))
            out.write(encoded)
            shutil.copyfileobj(data, out, _COPY_CHUNK)
