"""Reading and writing NumPy ``.npz`` archives, one array at a time, never unpickling."""

from __future__ import annotations

import os
import zipfile
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from nnsqueeze.dtypes import to_float32
from nnsqueeze.errors import CheckpointError
from nnsqueeze.io._common import (
    Checkpoint,
    NamedTensor,
    atomic_write,
    checked_array,
    tensor_from_numpy,
    unique_names,
)

# What zipfile and NumPy raise on damaged or crafted archives (zipfile: NotImplementedError for
# unknown compression or flags, RuntimeError for encrypted members, zlib.error for bad deflate data).
_READ_ERRORS = (
    ValueError,
    OSError,
    EOFError,
    zipfile.BadZipFile,
    NotImplementedError,
    RuntimeError,
    zlib.error,
)


def _iter_arrays(path: Path, archive: np.lib.npyio.NpzFile) -> Iterator[NamedTensor]:
    with archive:
        for key in archive.files:
            try:
                value = archive[key]
            except _READ_ERRORS as exc:
                msg = f"{path}: cannot read array {key!r}: {exc}"
                raise CheckpointError(msg) from exc
            try:
                yield tensor_from_numpy(key, value)
            except CheckpointError as exc:
                msg = f"{path}: {exc}"
                raise CheckpointError(msg) from None


def read_npz(path: str | os.PathLike[str]) -> Checkpoint:
    """Open a ``.npz`` archive (``allow_pickle=False``); each array is decompressed when it is reached."""
    file = Path(path)
    try:
        # NumPy hands its open file to the archive before parsing the zip directory, and leaks the
        # file when that fails: check the directory here first, closing what we open.
        with file.open("rb") as handle:
            magic = handle.read(4)
        if magic in (b"PK\x03\x04", b"PK\x05\x06"):  # what makes np.load take it for a zip
            with zipfile.ZipFile(file) as directory:
                directory.namelist()
        archive = np.load(file, allow_pickle=False)
    except _READ_ERRORS as exc:
        msg = f"{file}: not a readable .npz archive: {exc}"
        raise CheckpointError(msg) from exc
    if not isinstance(archive, np.lib.npyio.NpzFile):
        msg = f"{file}: not a .npz archive (it holds a single .npy array)"
        raise CheckpointError(msg)
    return Checkpoint(
        format="npz",
        tensors=_iter_arrays(file, archive),
        num_tensors=len(archive.files),
        attachments={},
        metadata={},
    )


def write_npz(path: str | os.PathLike[str], tensors: Iterable[NamedTensor]) -> None:
    """Write ``tensors`` to an uncompressed ``.npz`` archive atomically, streaming one array at a time.

    NumPy has no bfloat16, so bfloat16 tensors are stored as (exactly widened) float32 arrays; reading the
    archive back gives float32 tensors.  The archive is the same as :func:`numpy.savez` writes.
    """
    with atomic_write(path) as out, zipfile.ZipFile(out, mode="w", compression=zipfile.ZIP_STORED) as archive:
        for tensor in unique_names(tensors):
            array = checked_array(tensor)
            if tensor.dtype == "bfloat16":
                array = to_float32(array, "bfloat16")
            with archive.open(f"{tensor.name}.npy", mode="w", force_zip64=True) as member:
                np.lib.format.write_array(member, array, allow_pickle=False)
