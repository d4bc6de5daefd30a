"""Tests of the ``.nnsq`` container: corruption detection, versions, crafted headers and golden files."""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import json
import os
import struct
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

import nnsqueeze
from nnsqueeze import BitstreamError, NnsqFile, UnsupportedVersionError, dtypes
from nnsqueeze.coding import container, encode_bytes, encode_levels
from nnsqueeze.coding.container import (
    FORMAT_VERSION,
    ContainerReader,
    ContainerWriter,
    Method,
    RecordHeader,
    encode_index,
    encode_record_header,
)

from .conftest import (
    build_file,
    index_body,
    level_params,
    metadata_of,
    rebuild,
    records_of,
    sample_tensors,
    with_index_body,
)

FLAGS = range(12, 16)  # the preamble's u32 flags (must be 0)


def _outcome(data: bytes) -> str:
    """'ok', 'BitstreamError: ...' or the name of any other exception (a bug) of decoding ``data``."""
    try:
        nnsqueeze.decompress(data, threads=1)
    except BitstreamError as exc:
        return f"BitstreamError: {exc}"
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return "ok"


def _flip(data: bytes, pos: int, mask: int) -> bytes:
    out = bytearray(data)
    out[pos] ^= mask
    return bytes(out)


def _record_spans(data: bytes) -> list[tuple[str, int, int]]:
    return [(e.name, e.offset, e.offset + e.length) for e in ContainerReader(data).index.entries]


def test_sample_file_is_valid(sample_file: bytes) -> None:
    out = nnsqueeze.decompress(sample_file)
    assert list(out) == list(sample_tensors())
    assert rebuild(records_of(sample_file), metadata_of(sample_file)) == sample_file


def test_every_single_byte_flip_is_detected(sample_file: bytes) -> None:
    spans = _record_spans(sample_file)
    rng = np.random.default_rng(0)
    flips = [(pos, 0xFF) for pos in range(len(sample_file))]  # every byte
    sampled = zip(rng.integers(0, len(sample_file), 200), rng.integers(1, 256, 200), strict=True)
    flips += [(int(p), int(m)) for p, m in sampled]
    flips += [
        (pos, 1 << bit) for pos in (0, 8, 10, len(sample_file) - 24, len(sample_file) - 1) for bit in range(8)
    ]
    missed = []
    for pos, mask in flips:
        if pos in FLAGS:
            continue  # see test_flag_flip_is_detected
        result = _outcome(_flip(sample_file, pos, mask))
        if not result.startswith("BitstreamError"):
            missed.append((pos, mask, result))
            continue
        for name, start, end in spans:  # corruption inside a record names its tensor
            if start <= pos < end and name not in result:
                missed.append((pos, mask, f"message does not name {name!r}: {result}"))
    assert not missed, f"{len(missed)} undetected flips, e.g. {missed[:5]}"


@pytest.mark.parametrize("pos", FLAGS)
def test_flag_flip_is_detected(sample_file: bytes, pos: int) -> None:
    assert _outcome(_flip(sample_file, pos, 0x01)).startswith("BitstreamError")


def test_every_truncation_is_detected(sample_file: bytes, tmp_path: Path) -> None:
    bad = [n for n in range(len(sample_file)) if not _outcome(sample_file[:n]).startswith("BitstreamError")]
    assert not bad, f"truncations to {bad[:10]} bytes were not detected"
    path = tmp_path / "t.nnsq"
    for n in (0, 1, 15, 16, 40, len(sample_file) // 2, len(sample_file) - 25, len(sample_file) - 1):
        path.write_bytes(sample_file[:n])
        with pytest.raises(BitstreamError):
            nnsqueeze.decompress(path)


def test_truncated_record_names_tensor(sample_file: bytes) -> None:
    # cut the file inside the third record but keep a valid-looking tail (footer + index): the index
    # now points past the records and the reader must say so, or the record CRC fails
    _name, start, end = _record_spans(sample_file)[2]
    cut = sample_file[: start + 10] + sample_file[end:]
    with pytest.raises(BitstreamError):
        nnsqueeze.decompress(cut)


@pytest.mark.parametrize(
    "extra", [b"\0", b"garbage", b"\0" * 24, b"NNSQEND\0", "footer", "whole file"], ids=repr
)
def test_appended_bytes_are_detected(sample_file: bytes, extra: bytes | str) -> None:
    if extra == "footer":
        extra = sample_file[-24:]
    elif extra == "whole file":
        extra = sample_file
    assert isinstance(extra, bytes)
    with pytest.raises(BitstreamError):
        nnsqueeze.decompress(sample_file + extra)


def test_prepended_bytes_are_detected(sample_file: bytes) -> None:
    with pytest.raises(BitstreamError, match="magic"):
        nnsqueeze.decompress(b"\0" + sample_file)


def test_bad_magic(sample_file: bytes) -> None:
    for pos in range(8):
        with pytest.raises(BitstreamError, match="magic"):
            nnsqueeze.decompress(_flip(sample_file, pos, 0x20))


def _with_version(data: bytes, major: int, minor: int) -> bytes:
    return data[:8] + struct.pack("<HH", major, minor) + data[12:]


@pytest.mark.parametrize(
    ("major", "minor"),
    [(FORMAT_VERSION[0] + 1, 0), (FORMAT_VERSION[0], FORMAT_VERSION[1] + 1), (65535, 65535), (0, 0)],
)
def test_unsupported_versions(sample_file: bytes, major: int, minor: int) -> None:
    with pytest.raises(UnsupportedVersionError, match=rf"{major}\.{minor}"):
        nnsqueeze.decompress(_with_version(sample_file, major, minor))
    assert issubclass(UnsupportedVersionError, BitstreamError)


def test_current_version_reads(sample_file: bytes) -> None:
    assert NnsqFile(sample_file).version == FORMAT_VERSION
    assert sample_file[8:12] == struct.pack("<HH", *FORMAT_VERSION)


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"\x89NNSQ",
        b"\x89PNG\r\n\x1a\n" + bytes(200),
        b"PK\x03\x04" + bytes(100),
        b"\x89NNSQ\r\n\x1a" + bytes(40),
        bytes(range(256)) * 4,
    ],
    ids=["empty", "short-magic", "png", "zip", "magic-then-zeros", "binary"],
)
def test_not_an_nnsq_file(content: bytes, tmp_path: Path) -> None:
    with pytest.raises(BitstreamError):
        nnsqueeze.decompress(content)
    path = tmp_path / "x.nnsq"
    path.write_bytes(content)
    with pytest.raises(BitstreamError):
        nnsqueeze.decompress(path)
    with pytest.raises(BitstreamError):
        NnsqFile(str(path))


def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(BitstreamError, match="no such file"):
        nnsqueeze.decompress(tmp_path / "missing.nnsq")


def test_directory_path(tmp_path: Path) -> None:
    with pytest.raises(BitstreamError):
        nnsqueeze.decompress(tmp_path)


def test_record_corruption_names_the_tensor(sample_file: bytes) -> None:
    for name, start, end in _record_spans(sample_file):
        for pos in (start, start + 9, (start + end) // 2, end - 5, end - 1):
            with pytest.raises(BitstreamError, match=rf"'{name}'"):
                nnsqueeze.decompress(_flip(sample_file, pos, 0x10))


def test_corrupt_record_does_not_affect_other_tensors(sample_file: bytes) -> None:
    name, start, end = _record_spans(sample_file)[1]
    bad = _flip(sample_file, (start + end) // 2, 0x40)
    with NnsqFile(bad) as f:
        np.testing.assert_array_equal(f.read("steps"), sample_tensors()["steps"])
        with pytest.raises(BitstreamError, match=name):
            f.read(name)


# ---------------------------------------------------------------------------------------------------
# Crafted files: valid checksums, hostile headers


def _written(tmp_path: Path, header: RecordHeader, payload: bytes) -> bytes:
    """A one-record file made by the container's own writer (in memory)."""
    del tmp_path
    writer = ContainerWriter(None)
    writer.add(header, payload)
    writer.close({}, {})
    return writer.getvalue()


_TINY_LEVELS = encode_levels(np.arange(6, dtype=np.int32).reshape(2, 3))


def _uniform(shape: tuple[int, ...], payload: bytes = _TINY_LEVELS, **params: float) -> RecordHeader:
    fields: dict[str, float] = {"rows": shape[0] if shape else 1, "num_gtx": 24, "fast_shift": 4}
    fields.update({"slow_shift": 7, "offset": 0, "step": 0.5})
    fields.update(params)
    return RecordHeader("w", "float32", shape, Method.UNIFORM, level_params(**fields), 0, len(payload))


@pytest.mark.parametrize(
    "shape",
    [(2**20, 2**20), (2**40,), (2**40 + 1,), (2**21, 2**21, 2**21), (2**64 - 1,), (2**64 - 1, 2**64 - 1)],
    ids=str,
)
@pytest.mark.parametrize("method", ["uniform", "bytes"])
def test_huge_shape_with_tiny_payload(tmp_path: Path, shape: tuple[int, ...], method: str) -> None:
    if method == "uniform":
        header = _uniform(shape)
        payload = _TINY_LEVELS
    else:
        payload = encode_bytes(np.arange(6, dtype=np.float32))
        header = RecordHeader("w", "float32", shape, Method.BYTES, None, 4, len(payload))
    data = _written(tmp_path, header, payload)
    started = time.perf_counter()
    with pytest.raises(BitstreamError, match="'w'"):
        nnsqueeze.decompress(data)
    assert time.perf_counter() - started < 1.0


@pytest.mark.parametrize(
    "shape",
    [
        (0, 2**40),
        pytest.param((0, 2**62), id="(0, 2**62)"),
        pytest.param((0, 2**32, 2**32), id="(0, 2**32, 2**32)"),
    ],
    ids=str,
)
@pytest.mark.parametrize("method", ["uniform", "bytes"])
def test_empty_tensor_with_huge_dims(tmp_path: Path, shape: tuple[int, ...], method: str) -> None:
    """Zero elements but a huge dimension: decode to an empty array or raise BitstreamError, fast and
    without allocating per-column state."""
    if method == "uniform":
        payload = encode_levels(np.zeros(0, np.int32))
        header = _uniform(shape, payload)
    else:
        payload = encode_bytes(np.zeros(0, np.float32))
        header = RecordHeader("w", "float32", shape, Method.BYTES, None, 4, len(payload))
    result = _outcome(_written(tmp_path, header, payload))
    assert result == "ok" or result.startswith("BitstreamError"), result


_PEAK_RSS_OF_DECODE = """
import resource, sys
import nnsqueeze
data = open(sys.argv[1], "rb").read()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
out = nnsqueeze.decompress(data)
print(out["w"].shape, (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)
"""


def test_empty_tensor_with_wide_rows_does_not_allocate(tmp_path: Path) -> None:
    payload = encode_levels(np.zeros(0, np.int32))
    path = tmp_path / "wide.nnsq"
    path.write_bytes(_written(tmp_path, _uniform((0, 2**26), payload), payload))
    result = subprocess.run(
        [sys.executable, "-c", _PEAK_RSS_OF_DECODE, str(path)], capture_output=True, text=True, check=True
    )
    shape, grown_mb = result.stdout.strip().rsplit(" ", 1)
    assert shape == f"(0, {2**26})"
    assert int(grown_mb) < 64, f"decoding an empty tensor grew the peak RSS by {grown_mb} MB"


@pytest.mark.parametrize(
    ("params", "bug"),
    [
        ({"rows": 3}, None),
        ({"rows": 0}, None),
        ({"fast_shift": 0}, None),
        ({"fast_shift": 9, "slow_shift": 7}, None),
        ({"slow_shift": 200}, None),
        ({"step": float("nan")}, None),
        ({"step": float("inf")}, None),
        ({"step": -0.5}, None),
        ({"step": 0.0}, None),
        ({"num_gtx": 23}, None),
        ({"num_gtx": 33}, None),
        ({"num_gtx": 255}, None),
        ({"offset": 2**40}, None),
        ({"offset": -(2**63)}, None),
        ({"offset": 2**63 - 1}, None),
        ({"offset": 2**63}, None),
        ({"offset": -(2**63) - 1}, None),
        ({"offset": 2**69}, None),
    ],
    ids=str,
)
def test_hostile_level_params(tmp_path: Path, params: dict[str, float], bug: str | None) -> None:
    result = _outcome(_written(tmp_path, _uniform((2, 3), **params), _TINY_LEVELS))
    assert result == "ok" or result.startswith("BitstreamError"), result


@pytest.mark.parametrize("offset", [2**40, -(2**63), 2**63 - 1, 2**63, -(2**63) - 1, 2**69])
def test_hostile_integer_offsets(tmp_path: Path, offset: int) -> None:
    header = dataclasses.replace(_uniform((2, 3), offset=offset), dtype="int64", method=Method.INTEGER)
    header = dataclasses.replace(header, levels=dataclasses.replace(header.levels, step=0.0))  # type: ignore[arg-type]
    result = _outcome(_written(tmp_path, header, _TINY_LEVELS))
    assert result == "ok" or result.startswith("BitstreamError"), result


def test_hostile_byte_params(tmp_path: Path) -> None:
    payload = encode_bytes(np.arange(6, dtype=np.float32))
    for itemsize in (0, 1, 2, 3, 8, 255):
        header = RecordHeader("w", "float32", (6,), Method.BYTES, None, itemsize, len(payload))
        with pytest.raises(BitstreamError, match="item size"):
            nnsqueeze.decompress(_written(tmp_path, header, payload))
    for shape in [(5,), (7,), (2, 2), ()]:
        header = RecordHeader("w", "float32", shape, Method.BYTES, None, 4, len(payload))
        with pytest.raises(BitstreamError, match="'w'"):
            nnsqueeze.decompress(_written(tmp_path, header, payload))


def _malformed_header(case: str, monkeypatch: pytest.MonkeyPatch) -> bytes:
    """Record header bytes with one malformed field, made with the container's own encoder."""
    header = dataclasses.replace(_uniform((2, 3)), name="wx")
    if case.startswith("dtype="):
        code = int(case.removeprefix("dtype="))
        monkeypatch.setattr(dtypes, "dtype_code", lambda _name: code)
        monkeypatch.setattr(container, "dtype_code", lambda _name: code, raising=False)
        return encode_record_header(header)
    if case.startswith("method="):
        method = int(case.removeprefix("method="))
        return encode_record_header(dataclasses.replace(header, method=method, levels=None, itemsize=4))
    if case == "ndim=33":
        return encode_record_header(dataclasses.replace(header, shape=(1,) * 33))
    head = encode_record_header(header)
    if case == "name not UTF-8":
        return head.replace(b"wx", b"\xff\xfe", 1)
    if case == "trailing byte":
        return head + b"\0"
    if case == "truncated":
        return head[:-1]
    if case == "half":
        return head[: len(head) // 2]
    assert case == "empty"
    return b""


@pytest.mark.parametrize(
    ("case", "match"),
    [
        ("dtype=0", "dtype"),
        ("dtype=14", "dtype"),
        ("dtype=255", "dtype"),
        ("method=0", "method"),
        ("method=200", "method"),
        ("method=255", "method"),
        ("ndim=33", "dimensions"),
        ("name not UTF-8", "UTF-8"),
        ("trailing byte", "trailing|match"),
        ("truncated", "truncated|match"),
        ("half", "truncated|match|dimensions|method|dtype"),
        ("empty", "truncated|corrupt"),
    ],
)
def test_malformed_record_headers(case: str, match: str, monkeypatch: pytest.MonkeyPatch) -> None:
    head = _malformed_header(case, monkeypatch)
    monkeypatch.undo()
    data = build_file([(head, _TINY_LEVELS)], names=["wx"])
    with pytest.raises(BitstreamError, match=match):
        nnsqueeze.decompress(data)


def test_index_and_record_disagree(sample_file: bytes) -> None:
    records = records_of(sample_file)
    heads = [encode_record_header(h) for h, _ in records]
    payloads = [p for _, p in records]
    # the index names a record by another name
    names = [h.name for h, _ in records]
    names[0], names[1] = names[1], names[0]
    with pytest.raises(BitstreamError, match="does not match the index"):
        nnsqueeze.decompress(build_file(list(zip(heads, payloads, strict=True)), names=names))
    # duplicate names in the index
    index = ContainerReader(sample_file).index
    body = encode_index([*index.entries, index.entries[0]], index.metadata, index.attachments)
    assert with_index_body(sample_file, index_body(sample_file)) == sample_file
    with pytest.raises(BitstreamError, match="duplicate"):
        nnsqueeze.decompress(with_index_body(sample_file, body))


def test_writer_refuses_duplicates_and_abort_cleans_up(tmp_path: Path) -> None:
    header = _uniform((2, 3))
    dest = tmp_path / "w.nnsq"
    writer = ContainerWriter(dest)
    writer.add(header, _TINY_LEVELS)
    with pytest.raises(ValueError, match="duplicate"):
        writer.add(header, _TINY_LEVELS)
    writer.abort()
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------------------------
# Golden files: old versions stay decodable, the current encoder output is frozen

GOLDEN = Path(__file__).resolve().parent / "golden"


def _make_golden() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_golden", GOLDEN / "make_golden.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def golden() -> tuple[ModuleType, dict[str, dict[str, object]]]:
    module = _make_golden()
    if os.environ.get("REGEN_GOLDEN") == "1":
        assert module.main(["--force"]) == 0
    manifest = json.loads((GOLDEN / "golden.json").read_text(encoding="utf-8"))
    return module, manifest["files"]


def test_golden_manifest_covers_current_version(
    golden: tuple[ModuleType, dict[str, dict[str, object]]],
) -> None:
    module, files = golden
    current = f"{FORMAT_VERSION[0]}.{FORMAT_VERSION[1]}"
    have = {entry["case"] for entry in files.values() if entry["format_version"] == current}
    assert have == set(module.CASES), (
        f"no golden files of format {current} for {set(module.CASES) - have}: "
        "run `python tests/golden/make_golden.py` and commit the new files (keep the old ones)"
    )
    on_disk = {p.name for p in GOLDEN.glob("*.nnsq")}
    assert on_disk == set(files), "golden .nnsq files and golden.json disagree"


def test_golden_files_decode(golden: tuple[ModuleType, dict[str, dict[str, object]]]) -> None:
    module, files = golden
    for fname, entry in sorted(files.items()):
        data = (GOLDEN / fname).read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry["sha256"], f"{fname} itself was modified"
        assert module.describe(data) == {k: entry[k] for k in ("tensors", "metadata", "attachments")}, (
            f"{fname} (format {entry['format_version']}) no longer decodes to the recorded tensors: "
            "old files must stay decodable"
        )
        # the public API agrees with the raw records
        decoded = nnsqueeze.decompress(data)
        assert list(decoded) == list(entry["tensors"])  # type: ignore[call-overload]


def test_golden_files_reencode_byte_exact(golden: tuple[ModuleType, dict[str, dict[str, object]]]) -> None:
    module, files = golden
    current = f"{FORMAT_VERSION[0]}.{FORMAT_VERSION[1]}"
    for fname, entry in sorted(files.items()):
        if entry["format_version"] != current:
            continue
        expected = (GOLDEN / fname).read_bytes()
        actual = module.encode_case(entry["case"])
        if actual != expected:
            diff = next(
                (i for i, (a, b) in enumerate(zip(actual, expected, strict=False)) if a != b),
                min(len(actual), len(expected)),
            )
            pytest.fail(
                f"re-encoding golden case {entry['case']!r} no longer reproduces {fname} byte for byte "
                f"(first difference at byte {diff}; {len(actual)} vs {len(expected)} bytes). The format "
                f"{current} is frozen: if this change of the encoder output is intentional, bump "
                "FORMAT_VERSION in src/nnsqueeze/coding/container.py (and docs/format.md) and add new golden "
                "files with `python tests/golden/make_golden.py`; do not regenerate the old ones."
            )


@pytest.mark.parametrize("shape", [(2**40, 0), (2**39, 0, 5)])
def test_many_empty_rows_decode_at_once(tmp_path: Path, shape: tuple[int, ...]) -> None:
    """Found by the long fuzz run: a tensor of 2**40 empty rows made the decoder loop over the rows."""
    payload = encode_levels(np.zeros(0, np.int32))
    result = _outcome(_written(tmp_path, _uniform(shape, payload), payload))
    assert result == "ok" or result.startswith("BitstreamError"), result
