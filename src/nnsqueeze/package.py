"""Model packages: a whole model directory in one ``.nnsq`` file, and back.

A Hugging Face or sentence-transformers folder holds ``config.json``, tokenizer files and one or many
tensor files (``model-00001-of-00004.safetensors`` plus ``model.safetensors.index.json``).
:func:`compress_directory` codes every tensor file (by suffix: ``.safetensors``, ``.pt``/``.pth``/
``.bin``, ``.npz``, ``.onnx``) tensor by tensor, as :func:`nnsqueeze.compress` codes one checkpoint,
and stores every other file byte-exact (xz-compressed where that is smaller).  A ``.bin`` that is no
state dict (``training_args.bin``) is stored as a file, and the report says so.  The file list is
the JSON metadata entry ``nnsqueeze.package``; the tensors of file ``F`` are the records ``F::name``.

`decompress_to` writes the tree back.  The file list of a package is checked before anything is
written: absolute paths, ``..`` or empty components, backslashes, duplicate names and files inside
files are refused (a crafted package never writes outside the output directory), and each stored
file's size and SHA-256 are checked.  The tree is built in a temporary directory beside the output and
renamed into place; an existing output directory is replaced only with ``force``.

>>> import numpy as np, pathlib, tempfile, nnsqueeze
>>> from nnsqueeze.io import write_checkpoint, NamedTensor
>>> root = pathlib.Path(tempfile.mkdtemp())
>>> (root / "model").mkdir()
>>> _ = (root / "model" / "config.json").write_text('{"hidden": 8}')
>>> w = NamedTensor("fc.weight", np.linspace(-1, 1, 64, dtype=np.float32).reshape(8, 8), "float32")
>>> write_checkpoint(root / "model" / "model.safetensors", [w])
>>> report = nnsqueeze.compress(root / "model", root / "model.nnsq")
>>> manifest = nnsqueeze.decompress_to(root / "model.nnsq", root / "out")
>>> sorted(p.name for p in (root / "out").iterdir())
['config.json', 'model.safetensors']
>>> (root / "out" / "config.json").read_text()
'{"hidden": 8}'
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import lzma
import os
import re
import secrets
import shutil
import stat
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nnsqueeze.codec import (
    CompressionReport,
    CompressOptions,
    NnsqFile,
    TensorReport,
    allocated_steps,
    checked_metadata,
    code_tensors,
    finish,
)
from nnsqueeze.coding.container import ContainerWriter
from nnsqueeze.errors import BitstreamError, CheckpointError, PackageError
from nnsqueeze.io import SUPPORTED_SUFFIXES, NamedTensor, open_checkpoint, write_checkpoint

PACKAGE_KEY = "nnsqueeze.package"
PACKAGE_VERSION = 1
SEPARATOR = "::"  # record "F::name" is tensor `name` of file F
FILE_PREFIX = "file:"  # attachment "file:F" holds the bytes of file F
# Tensor files whose tensors load_state_dict prefers when two files hold the same name (a folder
# with both model.safetensors and pytorch_model.bin, as transformers would pick).
_PREFERENCE = (".safetensors", ".pt", ".pth", ".bin", ".npz", ".onnx")
_DRIVE = re.compile(r"^[A-Za-z]:")
MAX_PATH_BYTES = 4096


@dataclass(frozen=True)
class PackageEntry:
    """One file of a package.  ``kind`` is "tensors" (coded; ``tensors`` lists its tensor names in
    file order, ``format``, ``metadata`` and ``attachments`` what its checkpoint carried) or "file"
    (stored bytes: ``size``, ``sha256``, ``codec`` "raw" or "xz"; ``note`` says why a file with a
    tensor suffix was stored as bytes)."""

    path: str
    kind: str
    size: int
    sha256: str = ""
    codec: str = "raw"
    format: str = ""
    tensors: tuple[str, ...] = ()
    metadata: dict[str, str] = field(default_factory=dict)
    attachments: tuple[str, ...] = ()
    note: str = ""

    def record(self, tensor: str) -> str:
        return f"{self.path}{SEPARATOR}{tensor}"


@dataclass(frozen=True)
class Manifest:
    """The file list of a package: its files in order and its empty directories."""

    files: tuple[PackageEntry, ...]
    dirs: tuple[str, ...] = ()

    def to_json(self) -> str:
        files = []
        for e in self.files:
            d: dict[str, Any] = {"path": e.path, "kind": e.kind, "size": e.size}
            if e.kind == "file":
                d.update(sha256=e.sha256, codec=e.codec)
                if e.note:
                    d["note"] = e.note
            else:
                d.update(format=e.format, tensors=list(e.tensors), metadata=e.metadata)
                d["attachments"] = list(e.attachments)
            files.append(d)
        body = {"version": PACKAGE_VERSION, "files": files, "dirs": list(self.dirs)}
        return json.dumps(body, separators=(",", ":"), ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        """Parses and checks a file list (paths safe, names unique, fields of the right types)."""
        try:
            body = json.loads(text)
        except json.JSONDecodeError as exc:
            msg = f"package file list is not valid JSON: {exc}"
            raise PackageError(msg) from None
        if not isinstance(body, dict) or body.get("version") != PACKAGE_VERSION:
            version = body.get("version") if isinstance(body, dict) else None
            msg = f"package file list of version {version!r}; this nnsqueeze reads version {PACKAGE_VERSION}"
            raise PackageError(msg)
        raw_files, raw_dirs = body.get("files"), body.get("dirs", [])
        if not isinstance(raw_files, list) or not isinstance(raw_dirs, list):
            msg = "package file list: 'files' and 'dirs' must be lists"
            raise PackageError(msg)
        files = tuple(_entry(d) for d in raw_files)
        dirs = tuple(safe_path(d) for d in raw_dirs)
        _check_tree([e.path for e in files], dirs)
        return cls(files, dirs)


def _entry(d: object) -> PackageEntry:
    if not isinstance(d, dict):
        msg = f"package file list: entry {d!r:.60} is not an object"
        raise PackageError(msg)
    path = safe_path(d.get("path"))
    kind, size = d.get("kind"), d.get("size")
    if kind not in ("tensors", "file") or not isinstance(size, int) or isinstance(size, bool) or size < 0:
        msg = f"package entry {path!r}: kind {kind!r:.20} or size {size!r:.20} is invalid"
        raise PackageError(msg)
    if kind == "file":
        digest, codec = d.get("sha256"), d.get("codec")
        if not (isinstance(digest, str) and re.fullmatch(r"[0-9a-f]{64}", digest)) or codec not in (
            "raw",
            "xz",
        ):
            msg = f"package entry {path!r}: sha256 or codec is invalid"
            raise PackageError(msg)
        return PackageEntry(path, kind, size, sha256=digest, codec=codec, note=str(d.get("note", "")))
    tensors, meta, attachments, fmt = (
        d.get("tensors"),
        d.get("metadata"),
        d.get("attachments"),
        d.get("format"),
    )
    if (
        not isinstance(tensors, list)
        or not all(isinstance(t, str) for t in tensors)
        or len(set(tensors)) != len(tensors)
        or not isinstance(meta, dict)
        or not all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items())
        or not isinstance(attachments, list)
        or not all(isinstance(a, str) for a in attachments)
        or not isinstance(fmt, str)
    ):
        msg = f"package entry {path!r}: tensors, metadata, attachments or format are invalid"
        raise PackageError(msg)
    return PackageEntry(
        path, kind, size, format=fmt, tensors=tuple(tensors), metadata=meta, attachments=tuple(attachments)
    )


def safe_path(p: object) -> str:
    """A relative '/'-separated path that stays inside the directory it is joined to, or PackageError."""
    if not isinstance(p, str) or not p:
        msg = f"package path {p!r:.60} is not a non-empty string"
        raise PackageError(msg)
    if len(p.encode("utf-8", "surrogatepass")) > MAX_PATH_BYTES or "\0" in p or "\\" in p:
        msg = f"package path {p!r:.80} is too long or holds a NUL or backslash"
        raise PackageError(msg)
    if p.startswith("/") or _DRIVE.match(p):
        msg = f"package path {p!r:.80} is absolute"
        raise PackageError(msg)
    if any(part in ("", ".", "..") for part in p.split("/")):
        msg = f"package path {p!r:.80} has an empty, '.' or '..' component"
        raise PackageError(msg)
    return p


def _check_tree(files: list[str], dirs: tuple[str, ...]) -> None:
    """No name twice, and no file where another entry needs a directory."""
    seen: set[str] = set()
    for p in [*files, *dirs]:
        if p in seen:
            msg = f"package path {p!r} appears twice"
            raise PackageError(msg)
        seen.add(p)
    file_set = set(files)
    for p in [*files, *dirs]:
        parts = p.split("/")
        for i in range(1, len(parts)):
            parent = "/".join(parts[:i])
            if parent in file_set:
                msg = f"package path {p!r} lies inside the file {parent!r}"
                raise PackageError(msg)


# ------------------------------------------------------------------------------------ compress


def _scan(root: Path, follow_symlinks: bool) -> tuple[list[tuple[str, Path]], list[str]]:
    """The regular files under root (sorted, relative '/' paths) and its empty directories."""
    files: list[tuple[str, Path]] = []
    empty: list[str] = []

    def walk(folder: Path, rel: str) -> None:
        try:
            children = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as exc:
            msg = f"cannot read {folder}: {exc.strerror or exc}"
            raise PackageError(msg) from None
        if not children and rel:
            empty.append(rel)
        for child in children:
            name = f"{rel}/{child.name}" if rel else child.name
            path = Path(child.path)
            if child.is_symlink():
                if not follow_symlinks:
                    msg = (
                        f"{path} is a symbolic link; pass follow_symlinks=True (--follow-symlinks) to store "
                        "what it points to"
                    )
                    raise PackageError(msg)
                if not path.is_file():
                    msg = f"{path} is a symbolic link to something other than a regular file"
                    raise PackageError(msg)
                files.append((safe_path(name), path))
            elif child.is_dir(follow_symlinks=False):
                walk(path, name)
            elif stat.S_ISREG(child.stat(follow_symlinks=False).st_mode):
                files.append((safe_path(name), path))
            else:
                msg = f"{path} is neither a regular file nor a directory"
                raise PackageError(msg)

    walk(root, "")
    return files, empty


def _file_entry(rel: str, path: Path, note: str = "") -> tuple[PackageEntry, bytes]:
    data = path.read_bytes()
    packed = lzma.compress(data, preset=6) if data else b""
    codec = "xz" if len(packed) < len(data) else "raw"
    entry = PackageEntry(
        rel, "file", len(data), sha256=hashlib.sha256(data).hexdigest(), codec=codec, note=note
    )
    return entry, packed if codec == "xz" else data


def _renamed(tensors: Iterator[NamedTensor], path: str, names: list[str]) -> Iterator[NamedTensor]:
    """The tensors of file ``path`` under their record names; appends their own names to ``names``."""
    for t in tensors:
        names.append(t.name)
        yield NamedTensor(f"{path}{SEPARATOR}{t.name}", t.array, t.dtype)


def compress_directory(
    source: str | os.PathLike[str],
    dest: str | os.PathLike[str] | None = None,
    *,
    options: CompressOptions | None = None,
    metadata: Mapping[str, str] | None = None,
    progress: Callable[[TensorReport], None] | None = None,
    follow_symlinks: bool = False,
) -> CompressionReport:
    """Codes a model directory into one ``.nnsq`` package (see the module docs); ``nnsqueeze.compress``
    calls this for a directory.  Tensors stream one file and a few tensors at a time.  Symbolic links
    are refused unless ``follow_symlinks`` (then a link to a file is stored as that file's content)."""
    root = Path(source)
    if not root.is_dir():
        msg = f"{root} is not a directory"
        raise PackageError(msg)
    opts = options or CompressOptions()
    started = time.perf_counter()
    files, empty = _scan(root, follow_symlinks)
    meta = checked_metadata(metadata)
    writer = ContainerWriter(dest)
    entries: list[PackageEntry] = []
    attachments: dict[str, bytes] = {}
    reports: list[TensorReport] = []
    raw = 0
    steps = allocated_steps(_package_tensors(files), opts)  # one allocation over every tensor file
    try:
        for rel, path in files:
            entry = None
            note = ""
            if path.suffix.lower() in SUPPORTED_SUFFIXES:
                try:
                    checkpoint = open_checkpoint(path)
                except CheckpointError as exc:  # e.g. training_args.bin: a pickle, not a state dict
                    note = f"stored as bytes: {exc}"
                else:
                    names: list[str] = []
                    coded, size = code_tensors(
                        writer, _renamed(checkpoint.tensors, rel, names), opts, None, progress, steps
                    )
                    reports += coded
                    raw += size
                    for key, blob in checkpoint.attachments.items():
                        attachments[f"{rel}{SEPARATOR}{key}"] = blob
                    entry = PackageEntry(
                        rel,
                        "tensors",
                        path.stat().st_size,
                        format=checkpoint.format,
                        tensors=tuple(names),
                        metadata=dict(checkpoint.metadata),
                        attachments=tuple(checkpoint.attachments),
                    )
            if entry is None:
                entry, blob = _file_entry(rel, path, note)
                attachments[FILE_PREFIX + rel] = blob
                raw += entry.size
            entries.append(entry)
        meta[PACKAGE_KEY] = Manifest(tuple(entries), tuple(empty)).to_json()
        return finish(writer, meta, attachments, reports, raw, started, opts)
    except BaseException:
        writer.abort()
        raise


def _package_tensors(files: Iterable[tuple[str, Path]]) -> Iterator[NamedTensor]:
    """Every tensor of the package's tensor files under its package name, one at a time (for the
    step allocation's statistics; files that are no checkpoint are skipped, as coding stores them)."""
    for rel, path in files:
        if path.suffix.lower() in SUPPORTED_SUFFIXES:
            try:
                checkpoint = open_checkpoint(path)
            except CheckpointError:
                continue
            yield from _renamed(checkpoint.tensors, rel, [])


# ------------------------------------------------------------------------------------- extract


def read_manifest(f: NnsqFile) -> Manifest | None:
    """The checked file list of a package, None for a plain ``.nnsq`` file; every record and
    attachment it names must be in the file."""
    text = f.metadata.get(PACKAGE_KEY)
    if text is None:
        return None
    manifest = Manifest.from_json(text)
    names, attached = set(f.names), f.attachments
    for e in manifest.files:
        if e.kind == "file" and FILE_PREFIX + e.path not in attached:
            msg = f"package: the bytes of {e.path!r} are missing"
            raise PackageError(msg)
        missing = [t for t in e.tensors if e.record(t) not in names]
        missing += [a for a in e.attachments if e.record(a) not in attached]
        if missing:
            msg = f"package: {e.path!r} names {len(missing)} missing records, e.g. {missing[0]!r:.80}"
            raise PackageError(msg)
    return manifest


def _file_bytes(entry: PackageEntry, blob: bytes) -> bytes:
    if entry.codec == "xz":
        try:
            decoder = lzma.LZMADecompressor(format=lzma.FORMAT_XZ)
            data = decoder.decompress(blob, max_length=entry.size + 1)
        except lzma.LZMAError as exc:
            msg = f"package file {entry.path!r}: corrupt xz data ({exc})"
            raise BitstreamError(msg) from None
    else:
        data = blob
    if len(data) != entry.size or hashlib.sha256(data).hexdigest() != entry.sha256:
        msg = f"package file {entry.path!r}: content does not match its size and SHA-256 (corrupt file)"
        raise BitstreamError(msg)
    return data


def package_tensors(f: NnsqFile, manifest: Manifest, *, threads: int | None = None) -> Iterator[NamedTensor]:
    """The tensors of every tensor file under their own names; where two files hold the same name,
    the one from the preferred file (safetensors first) is kept."""
    rank = {s: i for i, s in enumerate(_PREFERENCE)}
    order = sorted(
        (e for e in manifest.files if e.kind == "tensors"),
        key=lambda e: rank.get(Path(e.path).suffix.lower(), len(rank)),
    )
    seen: set[str] = set()
    for e in order:
        wanted = [t for t in e.tensors if t not in seen]
        seen.update(wanted)
        for t, name in zip(f.tensors([e.record(n) for n in wanted], threads=threads), wanted, strict=True):
            yield NamedTensor(name, t.array, t.dtype)


def decompress_to(
    source: str | os.PathLike[str] | bytes,
    out_dir: str | os.PathLike[str],
    *,
    force: bool = False,
    threads: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> Manifest:
    """Writes the directory tree of a package to ``out_dir`` (see the module docs); ``progress`` is
    called with each file's path.  Returns the package's file list."""
    out = Path(out_dir)
    with NnsqFile(source) as f:
        manifest = read_manifest(f)
        if manifest is None:
            msg = "not a model package (made from a single checkpoint): use nnsqueeze.decompress"
            raise PackageError(msg)
        if out.exists() and not force and (not out.is_dir() or any(out.iterdir())):
            msg = f"{out} exists; pass force=True (--force) to replace it"
            raise PackageError(msg)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.{secrets.token_hex(6)}.tmp")
        tmp.mkdir()
        try:
            attached = f.attachments
            for d in manifest.dirs:
                (tmp / d).mkdir(parents=True, exist_ok=True)
            for e in manifest.files:
                target = tmp / e.path
                target.parent.mkdir(parents=True, exist_ok=True)
                if e.kind == "file":
                    with target.open("xb") as handle:  # "x": never through an existing name
                        handle.write(_file_bytes(e, attached[FILE_PREFIX + e.path]))
                else:
                    tensors = (
                        NamedTensor(name, t.array, t.dtype)
                        for t, name in zip(
                            f.tensors([e.record(n) for n in e.tensors], threads=threads),
                            e.tensors,
                            strict=True,
                        )
                    )
                    own = {a: attached[e.record(a)] for a in e.attachments}
                    write_checkpoint(target, tensors, attachments=own, metadata=e.metadata)
                if progress is not None:
                    progress(e.path)
            _replace_dir(tmp, out)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return manifest


def _replace_dir(tmp: Path, out: Path) -> None:
    """Renames tmp to out; an existing out is moved aside first and removed after."""
    if not out.exists():
        tmp.rename(out)
        return
    old = out.with_name(f".{out.name}.{secrets.token_hex(6)}.old")
    out.rename(old)
    try:
        tmp.rename(out)
    except BaseException:
        old.rename(out)
        raise
    if old.is_dir() and not old.is_symlink():
        shutil.rmtree(old)
    else:
        with contextlib.suppress(OSError):
            old.unlink()
