"""The ``.nnsq`` container: a versioned, checksummed file of independently coded tensors.

Layout (all integers little-endian; the full specification is ``docs/format.md``)::

    file     = preamble record* index footer
    preamble = "\\x89NNSQ\\r\\n\\x1a" u16 major u16 minor u32 flags
    record   = "TNSR" u32 header_len header payload u32 crc32(header + payload)
    index    = "INDX" entries metadata attachments u32 crc32(index body)
    footer   = u64 index_offset u64 index_length "NNSQEND\\0"

Records are written one after another as tensors finish coding, so a writer never holds
more than the tensors in flight; the index at the end lets a reader decode one tensor alone.
"""

from __future__ import annotations

import dataclasses
import os
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from nnsqueeze._core import MAX_PLANE_CHUNK_ELEMENTS
from nnsqueeze.coding.bytestream import CRC_BYTES, ByteReader, crc32, svarint, uvarint
from nnsqueeze.dtypes import dtype_from_code
from nnsqueeze.errors import BitstreamError, UnsupportedVersionError
from nnsqueeze.io._common import create_temp

MAGIC = b"\x89NNSQ\r\n\x1a"
FORMAT_VERSION = (2, 1)
# Majors this reader decodes (each up to its newest minor); 1.0 files differ only in record headers.
_MINORS = {1: 0, 2: 1}
_PREAMBLE = struct.Struct("<8sHHI")
_FOOTER = struct.Struct("<QQ8s")
_FOOTER_MAGIC = b"NNSQEND\0"
_RECORD_MAGIC = b"TNSR"
_MIN_RECORD = len(_RECORD_MAGIC) + 1 + 4  # magic, header length, CRC
_INDEX_MAGIC = b"INDX"
MAX_NDIM = 32
MAX_ELEMENTS = 1 << 40  # per tensor, and per dimension
MAX_NAME_BYTES = 65535


# A record's payload: bytes, or a view of a file's bytes.
Payload = bytes | memoryview


class Method:
    """How a record's payload codes its tensor: the frozen format codes (the methods themselves are
    :mod:`nnsqueeze.coding.methods`)."""

    UNIFORM = 1  # float tensor: value = (level + offset) * step
    INTEGER = 2  # integer/bool tensor: value = level + offset
    BYTES = 3  # any tensor: raw element bytes, coded losslessly
    DEPENDENT = 4  # float tensor: trellis-coded symbols, value = recon(k, state) * step
    PLANES = 5  # any tensor (2.0): byte planes of the raw elements, rANS where it pays
    TOKENS = 6  # float tensor (2.1): value = (level + offset) * step, levels as rANS-coded tokens

    LEVEL_METHODS = (UNIFORM, INTEGER, DEPENDENT, TOKENS)
    RAW_METHODS = (BYTES, PLANES)


@dataclass(frozen=True)
class LevelParams:
    """Parameters of the level coder, signalled per tensor."""

    num_gtx: int
    fast_shift: int
    slow_shift: int
    offset: int = 0
    step: float = 0.0


@dataclass(frozen=True)
class RecordHeader:
    """Everything a decoder needs to know about one tensor besides its payload."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    method: int
    levels: LevelParams | None  # for the level methods
    itemsize: int  # for BYTES and PLANES
    payload_length: int
    # Entry points (2.0): the payload is `len(entry_points)` independent chunks of these lengths, each
    # `chunk` rows (level methods) or `chunk` elements (PLANES) long, the last one shorter; chunk 0 is
    # one stream (level methods only).
    chunk: int = 0
    entry_points: tuple[int, ...] = ()

    @property
    def rows(self) -> int:
        """The rows of the coded matrix view: the first dimension (1 for scalars)."""
        return self.shape[0] if self.shape else 1

    @property
    def num_elements(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n


def chunk_count(header: RecordHeader) -> int:
    """Chunks a record's payload has (0 for a single-stream level record)."""
    if header.chunk == 0:
        return 0
    units = header.num_elements if header.method in Method.RAW_METHODS else header.rows
    if header.num_elements == 0:
        return 0
    return -(-units // header.chunk)


def encode_record_header(h: RecordHeader) -> bytes:
    """The record header in the current format (2.0)."""
    from nnsqueeze.dtypes import dtype_code

    name = h.name.encode("utf-8")
    if len(name) > MAX_NAME_BYTES:
        msg = f"tensor name longer than {MAX_NAME_BYTES} bytes: {h.name[:60]}..."
        raise ValueError(msg)
    parts = [uvarint(len(name)), name, struct.pack("<BB", dtype_code(h.dtype), len(h.shape))]
    parts += [uvarint(d) for d in h.shape]
    parts.append(struct.pack("<B", h.method))
    if h.method in Method.LEVEL_METHODS:
        assert h.levels is not None
        p = h.levels
        parts += [
            struct.pack("<d", p.step),
            svarint(p.offset),
            struct.pack("<BBB", p.num_gtx, p.fast_shift, p.slow_shift),
        ]
    else:
        parts.append(struct.pack("<B", h.itemsize))
    if h.method in (*Method.LEVEL_METHODS, Method.PLANES):
        parts += [uvarint(h.chunk), *(uvarint(n) for n in h.entry_points)]
    parts.append(uvarint(h.payload_length))
    return b"".join(parts)


def decode_record_header(data: bytes, what: str, version: tuple[int, int] = FORMAT_VERSION) -> RecordHeader:
    """Parses a record header of a file of format ``version``."""
    cur = ByteReader(data, what)
    name_bytes = cur.take(cur.uvarint())
    try:
        name = name_bytes.decode("utf-8")
    except UnicodeDecodeError:
        msg = f"{what}: tensor name is not UTF-8"
        raise BitstreamError(msg) from None
    what = f"tensor {name!r}"
    cur.what = what
    dtype_code, ndim = cur.fixed("<B"), cur.fixed("<B")
    try:
        dtype = dtype_from_code(dtype_code)
    except KeyError:
        msg = f"{what}: unknown dtype code {dtype_code}"
        raise BitstreamError(msg) from None
    if ndim > MAX_NDIM:
        msg = f"{what}: {ndim} dimensions (at most {MAX_NDIM})"
        raise BitstreamError(msg)
    shape = tuple(cur.uvarint() for _ in range(ndim))
    # No real tensor comes near: bounds every size computed from the shape (nonzero dimensions
    # multiplied, so that an empty tensor cannot hide a huge one).
    nonzero = 1
    for d in shape:
        nonzero *= max(d, 1)
    if nonzero > MAX_ELEMENTS or any(d > MAX_ELEMENTS for d in shape):
        msg = f"{what}: implausible shape {shape}"
        raise BitstreamError(msg)
    method = cur.fixed("<B")
    levels = None
    itemsize = 0
    if method == Method.TOKENS and version < (2, 1):
        msg = f"{what}: coding method {method} in a format {version[0]}.{version[1]} file (needs 2.1)"
        raise BitstreamError(msg)
    if method in Method.LEVEL_METHODS:
        step = cur.float64()
        offset = cur.svarint()
        num_gtx, fast, slow = cur.fixed("<B"), cur.fixed("<B"), cur.fixed("<B")
        levels = LevelParams(num_gtx=num_gtx, fast_shift=fast, slow_shift=slow, offset=offset, step=step)
    elif method == Method.BYTES or (method == Method.PLANES and version[0] >= 2):
        itemsize = cur.fixed("<B")
    else:
        msg = f"{what}: unknown coding method {method}"
        raise BitstreamError(msg)
    header = RecordHeader(name, dtype, shape, method, levels, itemsize, 0)
    if version[0] >= 2 and method != Method.BYTES:
        header = _read_entry_points(cur, header)
    payload_length = cur.uvarint()
    if cur.pos != len(data):
        msg = f"{what}: header has {len(data) - cur.pos} unexpected trailing bytes"
        raise BitstreamError(msg)
    if header.entry_points and sum(header.entry_points) != payload_length:
        covered = sum(header.entry_points)
        msg = f"{what}: entry points cover {covered} bytes of a {payload_length}-byte payload"
        raise BitstreamError(msg)
    return dataclasses.replace(header, payload_length=payload_length)


def _read_entry_points(cur: ByteReader, header: RecordHeader) -> RecordHeader:
    chunk = cur.uvarint()
    if header.method == Method.PLANES and not 1 <= chunk <= MAX_PLANE_CHUNK_ELEMENTS:
        msg = f"{cur.what}: plane chunk of {chunk} elements (1..{MAX_PLANE_CHUNK_ELEMENTS})"
        raise BitstreamError(msg)
    header = dataclasses.replace(header, chunk=chunk)
    # Each entry point takes at least one header byte, so a huge count fails on the header's end.
    count = chunk_count(header)
    if count > len(cur.data):
        msg = f"{cur.what}: {count} entry points cannot fit in the header"
        raise BitstreamError(msg)
    return dataclasses.replace(header, entry_points=tuple(cur.uvarint() for _ in range(count)))


@dataclass(frozen=True)
class IndexEntry:
    name: str
    offset: int
    length: int


class _PartsFile:
    """An in-memory file that keeps what is written and joins it once (a BytesIO copies every payload
    into a growing buffer, which costs as much as the lossless coder's own copy)."""

    def __init__(self) -> None:
        self._parts: list[Payload] = []

    def write(self, data: Payload) -> int:
        self._parts.append(data)
        return len(data)

    def getvalue(self) -> bytes:
        return b"".join(self._parts)

    def close(self) -> None:
        self._parts.clear()


class ContainerWriter:
    """Writes a ``.nnsq`` file record by record into a temp file, renamed into place by
    :meth:`close`; :meth:`abort` removes the temp file and leaves the destination untouched.
    With ``path=None`` the file is built in memory (:meth:`getvalue`).
    """

    def __init__(self, path: str | os.PathLike[str] | None) -> None:
        self.path = None if path is None else Path(path)
        self._tmp: Path | None = None
        self._file: IO[bytes] | _PartsFile
        if self.path is None:
            self._file = _PartsFile()
        else:
            self._tmp, self._file = create_temp(self.path)
        self._entries: list[IndexEntry] = []
        self._names: set[str] = set()
        self._preamble = _PREAMBLE.pack(MAGIC, *FORMAT_VERSION, 0)
        self._file.write(self._preamble)
        self.bytes_written = _PREAMBLE.size

    def add(self, header: RecordHeader, payload: Payload) -> int:
        """Appends one tensor record; returns its size in bytes."""
        if header.name in self._names:
            msg = f"duplicate tensor name {header.name!r}"
            raise ValueError(msg)
        head = encode_record_header(header)
        crc = crc32(head, payload)
        offset = self.bytes_written
        prefix = _RECORD_MAGIC + uvarint(len(head))
        self._file.write(prefix)
        self._file.write(head)
        self._file.write(payload)
        self._file.write(crc)
        length = len(prefix) + len(head) + len(payload) + CRC_BYTES
        self.bytes_written += length
        self._names.add(header.name)
        self._entries.append(IndexEntry(header.name, offset, length))
        return length

    def close(self, metadata: Mapping[str, str], attachments: Mapping[str, bytes]) -> int:
        """Writes index and footer, syncs and renames into place; returns the file size."""
        body = encode_index(self._entries, metadata, attachments)
        index = _INDEX_MAGIC + body + crc32(self._preamble, body)
        self._file.write(index)
        self._file.write(_FOOTER.pack(self.bytes_written, len(index), _FOOTER_MAGIC))
        self.bytes_written += len(index) + _FOOTER.size
        if self._tmp is not None and self.path is not None and not isinstance(self._file, _PartsFile):
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            self._tmp.replace(self.path)
        return self.bytes_written

    def getvalue(self) -> bytes:
        """The finished file of an in-memory writer."""
        if not isinstance(self._file, _PartsFile):
            msg = "getvalue() is only available for in-memory writers"
            raise TypeError(msg)
        return self._file.getvalue()

    def abort(self) -> None:
        self._file.close()
        if self._tmp is not None:
            self._tmp.unlink(missing_ok=True)


def _pack_str(s: str) -> bytes:
    raw = s.encode("utf-8")
    return uvarint(len(raw)) + raw


def encode_index(
    entries: list[IndexEntry], metadata: Mapping[str, str], attachments: Mapping[str, bytes]
) -> bytes:
    parts = [uvarint(len(entries))]
    for e in entries:
        parts += [_pack_str(e.name), uvarint(e.offset), uvarint(e.length)]
    parts.append(uvarint(len(metadata)))
    for key, value in metadata.items():
        parts += [_pack_str(key), _pack_str(value)]
    parts.append(uvarint(len(attachments)))
    for key, blob in attachments.items():
        parts += [_pack_str(key), uvarint(len(blob)), bytes(blob)]
    return b"".join(parts)


@dataclass(frozen=True)
class Index:
    entries: tuple[IndexEntry, ...]
    metadata: dict[str, str]
    attachments: dict[str, bytes]


def decode_index(body: bytes, records_end: int) -> Index:
    cur = ByteReader(body, "index")

    def text() -> str:
        raw = cur.take(cur.uvarint())
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            msg = "index: string is not UTF-8"
            raise BitstreamError(msg) from None

    entries = []
    names = set()
    for _ in range(cur.uvarint()):
        name = text()
        offset, length = cur.uvarint(), cur.uvarint()
        if offset < _PREAMBLE.size or length < _MIN_RECORD or offset + length > records_end:
            msg = f"index: record of tensor {name!r} lies outside the file"
            raise BitstreamError(msg)
        if name in names:
            msg = f"index: duplicate tensor {name!r}"
            raise BitstreamError(msg)
        names.add(name)
        entries.append(IndexEntry(name, offset, length))
    metadata = {}
    for _ in range(cur.uvarint()):
        key = text()
        metadata[key] = text()
    attachments = {}
    for _ in range(cur.uvarint()):
        key = text()
        attachments[key] = cur.take(cur.uvarint())
    if cur.pos != len(body):
        msg = "index: unexpected trailing bytes"
        raise BitstreamError(msg)
    return Index(tuple(entries), metadata, attachments)


class ContainerReader:
    """Random access to the records of a ``.nnsq`` file held in memory or on disk."""

    def __init__(self, source: str | os.PathLike[str] | bytes | bytearray | memoryview) -> None:
        if isinstance(source, (bytes, bytearray, memoryview)):
            self._data: bytes | None = bytes(source)
            self._file: IO[bytes] | None = None
            self.size = len(self._data)
            self.label = "<bytes>"
        else:
            path = Path(source)
            try:
                self._file = path.open("rb")
            except FileNotFoundError:
                msg = f"{path}: no such file"
                raise BitstreamError(msg) from None
            except OSError as exc:
                msg = f"{path}: cannot read: {exc.strerror or exc}"
                raise BitstreamError(msg) from None
            self._data = None
            self.size = self._file.seek(0, os.SEEK_END)
            self.label = str(path)
        try:
            self.version, self.index = self._read_structure()
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> ContainerReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _read(self, offset: int, length: int) -> memoryview:
        """The bytes at ``offset``: a view of the data in memory, or a positional read of the file
        (thread-safe, so records can be read and checked on the decoding threads)."""
        if offset < 0 or length < 0 or offset + length > self.size:
            msg = f"{self.label}: read beyond the end of the file (truncated?)"
            raise BitstreamError(msg)
        if self._data is not None:
            return memoryview(self._data)[offset : offset + length]
        if self._file is None:
            msg = f"{self.label}: file is closed"
            raise BitstreamError(msg)
        out = memoryview(os.pread(self._file.fileno(), length, offset))
        if len(out) != length:
            msg = f"{self.label}: file shrank while reading"
            raise BitstreamError(msg)
        return out

    def _read_structure(self) -> tuple[tuple[int, int], Index]:
        if self.size < _PREAMBLE.size + _FOOTER.size:
            msg = f"{self.label}: too short to be an .nnsq file ({self.size} bytes)"
            raise BitstreamError(msg)
        preamble = bytes(self._read(0, _PREAMBLE.size))
        magic, major, minor, flags = _PREAMBLE.unpack(preamble)
        if magic != MAGIC:
            msg = f"{self.label}: not an .nnsq file (bad magic)"
            raise BitstreamError(msg)
        if major not in _MINORS or minor > _MINORS[major]:
            msg = (
                f"{self.label}: format version {major}.{minor} is newer than this nnsqueeze reads "
                f"({FORMAT_VERSION[0]}.{FORMAT_VERSION[1]}); upgrade nnsqueeze"
            )
            raise UnsupportedVersionError(msg)
        if flags != 0:
            msg = f"{self.label}: unknown flags {flags:#x} in the preamble (corrupt file?)"
            raise BitstreamError(msg)
        index_offset, index_length, end = _FOOTER.unpack(self._read(self.size - _FOOTER.size, _FOOTER.size))
        if end != _FOOTER_MAGIC:
            msg = f"{self.label}: missing footer (file truncated or still being written)"
            raise BitstreamError(msg)
        if (
            index_offset < _PREAMBLE.size
            or index_offset + index_length != self.size - _FOOTER.size
            or index_length < 8
        ):
            msg = f"{self.label}: corrupt footer (index outside the file)"
            raise BitstreamError(msg)
        raw = bytes(self._read(index_offset, index_length))
        body = raw[4:-CRC_BYTES]
        # From 2.1 the index checksum covers the preamble too, so a flipped version is caught.
        covered = (preamble, body) if (major, minor) >= (2, 1) else (body,)
        if raw[:4] != _INDEX_MAGIC or crc32(*covered) != raw[-CRC_BYTES:]:
            msg = f"{self.label}: index checksum mismatch (file corrupt)"
            raise BitstreamError(msg)
        return (major, minor), decode_index(body, index_offset)

    def read_record(self, entry: IndexEntry) -> tuple[RecordHeader, Payload]:
        """Reads and verifies one record; raises BitstreamError naming the tensor.  The payload is a
        view of the file's bytes, not a copy."""
        what = f"{self.label}: tensor {entry.name!r}"
        raw = self._read(entry.offset, entry.length)
        # The record's magic and header length (a varint of at most 10 bytes), before its CRC.
        cursor = ByteReader(bytes(raw[:-CRC_BYTES][: len(_RECORD_MAGIC) + 10]), what)
        magic = cursor.take(len(_RECORD_MAGIC))
        head_len = cursor.uvarint()
        start = cursor.pos
        if magic != _RECORD_MAGIC or start + head_len + CRC_BYTES > len(raw):
            msg = f"{what}: corrupt record header"
            raise BitstreamError(msg)
        head = bytes(raw[start : start + head_len])
        payload = raw[start + head_len : -CRC_BYTES]
        if crc32(head, payload) != raw[-CRC_BYTES:]:
            msg = f"{what}: checksum mismatch (file corrupt)"
            raise BitstreamError(msg)
        header = decode_record_header(head, what, self.version)
        if header.name != entry.name or header.payload_length != len(payload):
            msg = f"{what}: record does not match the index"
            raise BitstreamError(msg)
        return header, payload
