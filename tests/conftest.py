"""Shared fixtures: small valid ``.nnsq`` files to corrupt, fuzz and inspect."""

from __future__ import annotations

import contextlib
import dataclasses
import struct
import zlib
from collections.abc import Iterator

import numpy as np
import pytest

import nnsqueeze
from nnsqueeze import BitstreamError
from nnsqueeze.coding import container
from nnsqueeze.coding.container import (
    ContainerReader,
    ContainerWriter,
    LevelParams,
    Method,
    RecordHeader,
    decode_record_header,
)


def sample_tensors() -> dict[str, np.ndarray]:
    """A few tensors that exercise every coding method (uniform, integer, lossless bytes)."""
    rng = np.random.default_rng(1234)
    return {
        "conv.weight": rng.normal(0, 0.05, (4, 3, 3, 3)).astype(np.float32),
        "conv.bias": rng.normal(0, 0.01, 4).astype(np.float32),
        "fc.weight": rng.laplace(0, 0.02, (8, 16)).astype(np.float16),
        "steps": np.array([3, -7, 12, 0, 5], dtype=np.int32),
        "mask": rng.random((3, 5)) > 0.5,
        "big": np.array([np.iinfo(np.int64).min, 0, np.iinfo(np.int64).max], dtype=np.int64),
    }


@pytest.fixture(scope="session")
def sample_file() -> bytes:
    """A valid ``.nnsq`` byte string with metadata (about 1 KB)."""
    report = nnsqueeze.compress(sample_tensors(), threads=1, metadata={"purpose": "tests"})
    assert report.data is not None
    return report.data


@pytest.fixture(scope="session")
def lossless_file() -> bytes:
    """A valid ``.nnsq`` byte string whose float tensors are stored bit-exactly."""
    rng = np.random.default_rng(99)
    tensors = {
        "w": rng.normal(0, 1, (6, 7)).astype(np.float32),
        "v": rng.normal(0, 1, 9).astype(np.float64),
        "h": rng.normal(0, 1, (2, 2, 2)).astype(np.float16),
    }
    report = nnsqueeze.compress(tensors, lossless=True, threads=1)
    assert report.data is not None
    return report.data


def level_params(**fields: float) -> LevelParams:
    """``LevelParams`` from the given fields that the current format has (e.g. ``rows`` is optional)."""
    names = {f.name for f in dataclasses.fields(LevelParams)}
    return LevelParams(**{k: v for k, v in fields.items() if k in names})  # type: ignore[arg-type]


@contextlib.contextmanager
def _raw_record_header(head: bytes) -> Iterator[None]:
    """Makes the container's writer emit ``head`` verbatim as the next record header."""
    original = container.encode_record_header
    container.encode_record_header = lambda _header: head  # type: ignore[assignment]
    try:
        yield
    finally:
        container.encode_record_header = original


def build_file(
    records: list[tuple[bytes, bytes]],
    *,
    names: list[str] | None = None,
    metadata: dict[str, str] | None = None,
    attachments: dict[str, bytes] | None = None,
) -> bytes:
    """An ``.nnsq`` file of raw ``(record header bytes, payload)`` pairs, written by the container's writer.

    Unlike :func:`rebuild` this accepts any header bytes (unknown codes, bad lengths), with valid CRCs
    so that a reader gets past them to the field checks and the decoders.  ``names`` (for the index)
    default to the names in the headers.
    """
    writer = ContainerWriter(None)
    for i, (head, payload) in enumerate(records):
        name = names[i] if names else _name_of(head, i)
        header = RecordHeader(name, "uint8", (len(payload),), Method.BYTES, None, 1, len(payload))
        with _raw_record_header(head):
            writer.add(header, payload)
    writer.close(metadata or {}, attachments or {})
    return writer.getvalue()


def _name_of(head: bytes, i: int) -> str:
    try:
        return decode_record_header(head, "record").name
    except BitstreamError:
        return f"record{i}"


def records_of(data: bytes) -> list[tuple[RecordHeader, bytes]]:
    """The verified ``(header, payload)`` of every record of a valid file, in file order."""
    reader = ContainerReader(data)
    return [reader.read_record(e) for e in reader.index.entries]


def metadata_of(data: bytes) -> dict[str, str]:
    return dict(ContainerReader(data).index.metadata)


def rebuild(records: list[tuple[RecordHeader, bytes]], metadata: dict[str, str] | None = None) -> bytes:
    """A file of ``RecordHeader`` objects (any field values the header encoding can hold) and payloads."""
    writer = ContainerWriter(None)
    for header, payload in records:
        writer.add(header, payload)
    writer.close(metadata or {}, {})
    return writer.getvalue()


_FOOTER = struct.Struct("<QQ8s")  # u64 index_offset, u64 index_length, "NNSQEND\0"


def index_body(data: bytes) -> bytes:
    """The index body (between "INDX" and its CRC) of a file."""
    index_offset, index_length, _ = _FOOTER.unpack_from(data, len(data) - _FOOTER.size)
    return data[index_offset + 4 : index_offset + index_length - 4]


def with_index_body(data: bytes, body: bytes) -> bytes:
    """``data`` with its index body replaced by ``body`` (CRC, offsets and footer recomputed)."""
    index_offset, _, magic = _FOOTER.unpack_from(data, len(data) - _FOOTER.size)
    major, minor = struct.unpack_from("<HH", data, 8)
    covered = data[:16] + body if (major, minor) >= (2, 1) else body  # 2.1: the preamble too
    index = b"INDX" + body + struct.pack("<I", zlib.crc32(covered))
    return data[:index_offset] + index + _FOOTER.pack(index_offset, len(index), magic)


def pytest_report_header() -> str:
    """Which instruction-set paths this machine runs (the kernel tests cover every available one)."""
    from nnsqueeze import _core
    from nnsqueeze.sparse import isa

    paths = isa.available()
    absent = [name for name in isa.PATHS if name not in paths]
    missing = f" (this CPU lacks {', '.join(absent)}: those kernels are not tested here)" if absent else ""
    crc = "PCLMULQDQ folding" if _core.CRC32_ACCELERATED else "byte table"
    return f"nnsqueeze sparse kernels tested: {', '.join(paths)}{missing}; CRC32: {crc} and byte table"
