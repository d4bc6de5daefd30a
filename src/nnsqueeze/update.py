"""Updates against a base model: ship a fine-tune as the coded difference from what the receiver has.

:func:`compress_update` codes each float tensor of the new model as its difference from the base
tensor of the same name, shape and dtype, at the update's own step (``qp``, by default
:data:`DEFAULT_UPDATE_QP`: differences are small, so the step is fine); a tensor whose difference
quantizes to all zeros is not stored at all (a bit in the file list).  Weight differences are
quantized with the trellis (dependent quantization; ``trellis=False`` rounds them), and each
difference is stored with a slightly larger step than it was quantized at (:func:`reconstruction_gain`):
quantization zeroes most of a fine-tune's small changes, and the larger step undoes the shrinkage that
leaves in the decoded update, at no cost in bytes.  ``lossless`` codes the XOR of
the float bit patterns instead (sign and exponent bytes are mostly zero), which restores the new
model bit-exactly.  Tensors the base lacks, or has in another shape or dtype, are coded standalone;
integer tensors equal to the base's are skipped.

The update records the SHA-256 of the base's tensors (:func:`state_hash`), as NNR's parameter
update tree does; :func:`apply_update` refuses any other base with :class:`BaseMismatchError`.  A base
is a checkpoint file, a model directory (its tensor files merged by name), or a ``.nnsq`` file (its
decoded values).  Chains: ``bases`` lists a full model and then updates, each applied on the last.

>>> import numpy as np, nnsqueeze
>>> rng = np.random.default_rng(0)
>>> base = {"w": rng.normal(0, 0.05, (64, 64)).astype(np.float32), "b": np.zeros(64, np.float32)}
>>> tuned = {"w": base["w"] + rng.normal(0, 2e-4, (64, 64)).astype(np.float32), "b": base["b"]}
>>> update = nnsqueeze.compress_update(tuned, [base])
>>> standalone = nnsqueeze.compress(tuned, qp=-28)
>>> update.file_bytes < standalone.file_bytes / 2
True
>>> new = nnsqueeze.apply_update(update.data, [base])
>>> bool((new["b"] == base["b"]).all()), new["w"].shape  # "b" did not change: it comes from the base
(True, (64, 64))
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nnsqueeze.codec import (
    CodedTensor,
    CompressionReport,
    CompressOptions,
    NnsqFile,
    Source,
    TensorReport,
    checked_metadata,
    decode_record,
    encode_tensor,
    finish,
    named_tensors,
)
from nnsqueeze.coding.container import ContainerWriter
from nnsqueeze.coding.parallel import ordered_map
from nnsqueeze.dtypes import FLOAT_DTYPES, from_float32, storage_dtype, to_float32
from nnsqueeze.errors import BaseMismatchError, BitstreamError, ConfigError
from nnsqueeze.io import SUPPORTED_SUFFIXES, Checkpoint, NamedTensor, open_checkpoint

UPDATE_KEY = "nnsqueeze.update"
UPDATE_VERSION = 2
DEFAULT_UPDATE_QP = -41  # chosen on validation sentences: see benchmarks/update_results.md
# How much more an error along the update's own direction costs than rounding noise of the same
# energy (reconstruction_gain); chosen on validation data, see benchmarks/update_results.md.
UPDATE_COHERENCE = 30.0
# Updates quantize their weight differences with the trellis by default: with the reconstruction
# gain it codes a MiniLM fine-tune's update about 0.85x as large as rounding at equal fidelity
# (benchmarks/update_results.md).
UPDATE_TRELLIS = True
# How each tensor of an update is stored.
DELTA, XOR, STANDALONE, UNCHANGED = "delta", "xor", "standalone", "unchanged"
_KINDS = (DELTA, XOR, STANDALONE, UNCHANGED)
BaseSource = Source | bytes


def state_hash(tensors: Iterable[NamedTensor]) -> str:
    """SHA-256 of a model's tensors, independent of their order: name, dtype, shape and the stored
    little-endian bytes of each (bfloat16 as its bits)."""
    entries = sorted(tensors, key=lambda t: t.name)
    h = hashlib.sha256()
    for t in entries:
        array = np.ascontiguousarray(t.array, dtype=storage_dtype(t.dtype).newbyteorder("<"))
        head = json.dumps([t.name, t.dtype, list(array.shape)], ensure_ascii=False).encode("utf-8")
        h.update(len(head).to_bytes(8, "little") + head)
        h.update(array.nbytes.to_bytes(8, "little"))
        h.update(array.reshape(-1).view(np.uint8).data)
    return h.hexdigest()


@dataclass(frozen=True)
class UpdateInfo:
    """What an update file records: the base's hash and tensor count, and each tensor's kind, in
    the new model's order.

    Written as version 2: the kinds other than delta, each with its position in the new model's
    order (``"others": [[position, name, kind], ...]``) and the tensor count; the delta tensors are
    the file's remaining records, in order, filling the other positions (a MiniLM description shrinks
    from 5 KB to about 100 bytes).  Version 1, every kind by name, still reads."""

    base_sha256: str
    base_tensors: int
    kinds: dict[str, str]

    def to_json(self) -> str:
        others = [[i, name, kind] for i, (name, kind) in enumerate(self.kinds.items()) if kind != DELTA]
        return json.dumps(
            {
                "version": UPDATE_VERSION,
                "base_sha256": self.base_sha256,
                "base_tensors": self.base_tensors,
                "tensors": len(self.kinds),
                "others": others,
            },
            separators=(",", ":"),
            ensure_ascii=False,
        )

    @classmethod
    def from_json(cls, text: str, records: Sequence[str]) -> UpdateInfo:
        """Reads a description; ``records`` are the names of the file's records, in order."""
        try:
            body = json.loads(text)
        except json.JSONDecodeError as exc:
            msg = f"update description is not valid JSON: {exc}"
            raise BitstreamError(msg) from None
        version = body.get("version") if isinstance(body, dict) else None
        if version not in (1, UPDATE_VERSION):
            msg = f"update description of an unknown version; this nnsqueeze reads 1 to {UPDATE_VERSION}"
            raise BitstreamError(msg)
        digest, count = body.get("base_sha256"), body.get("base_tensors")
        if not isinstance(digest, str) or len(digest) != 64 or not isinstance(count, int):
            msg = "update description: base_sha256 or base_tensors are invalid"
            raise BitstreamError(msg)
        kinds = body.get("kinds") if version == 1 else _kinds_from_others(body, records)
        if not isinstance(kinds, dict) or not all(
            isinstance(k, str) and v in _KINDS for k, v in kinds.items()
        ):
            msg = "update description: the tensor kinds are invalid"
            raise BitstreamError(msg)
        return cls(digest, count, kinds)


def _kinds_from_others(body: dict[str, Any], records: Sequence[str]) -> dict[str, str]:
    """The kinds of a version-2 description: its listed others, and the records as deltas between."""
    total, others = body.get("tensors"), body.get("others")
    if not isinstance(total, int) or not isinstance(others, list):
        msg = "update description: tensors or others are invalid"
        raise BitstreamError(msg)
    listed: dict[int, tuple[str, str]] = {}
    for entry in others:
        valid = (
            isinstance(entry, list)
            and len(entry) == 3
            and isinstance(entry[0], int)
            and 0 <= entry[0] < total
            and isinstance(entry[1], str)
            and entry[2] in _KINDS
            and entry[2] != DELTA
            and entry[0] not in listed
        )
        if not valid:
            msg = f"update description: bad entry in others: {str(entry)[:80]}"
            raise BitstreamError(msg)
        listed[entry[0]] = (entry[1], entry[2])
    stored = total - sum(kind == UNCHANGED for _, kind in listed.values())
    if stored != len(records):
        msg = f"update description names {stored} stored tensors, the file has {len(records)} records"
        raise BitstreamError(msg)
    kinds: dict[str, str] = {}
    names = iter(records)
    for i in range(total):
        name, kind = listed.get(i, ("", DELTA))
        if kind != UNCHANGED:
            record = next(names)
            if kind != DELTA and record != name:
                msg = f"update description lists {name!r} at position {i}, the record there is {record!r}"
                raise BitstreamError(msg)
            name = record
        if name in kinds:
            msg = f"update description names tensor {name!r} twice"
            raise BitstreamError(msg)
        kinds[name] = kind
    return kinds


def update_info(f: NnsqFile) -> UpdateInfo | None:
    """The update description of an open file, None if it is a full model."""
    text = f.metadata.get(UPDATE_KEY)
    return None if text is None else UpdateInfo.from_json(text, f.names)


# ---------------------------------------------------------------------------------------- bases


def _model_tensors(source: BaseSource) -> Iterator[NamedTensor]:
    """The tensors of a full model: an ``.nnsq`` file (decoded), a directory, a checkpoint or mapping."""
    if isinstance(source, (bytes, bytearray, memoryview)) or (
        isinstance(source, (str, os.PathLike)) and Path(source).suffix == ".nnsq"
    ):
        with NnsqFile(source) as f:
            if update_info(f) is not None:
                msg = f"{_label(source)} is an update; list the model it updates before it in the bases"
                raise BaseMismatchError(msg)
            yield from named_tensors(f, None)
        return
    if isinstance(source, (str, os.PathLike)) and Path(source).is_dir():
        seen: set[str] = set()
        for path in sorted(Path(source).rglob("*")):
            if path.is_file() and path.suffix.lower() in SUPPORTED_SUFFIXES:
                for t in open_checkpoint(path).tensors:
                    if t.name not in seen:
                        seen.add(t.name)
                        yield t
        return
    checkpoint = source if isinstance(source, Checkpoint) else open_checkpoint(source)
    yield from checkpoint.tensors


def _label(source: object) -> str:
    return str(source) if isinstance(source, (str, os.PathLike)) else f"<{type(source).__name__}>"


def resolve_base(bases: Sequence[BaseSource], *, threads: int | None = None) -> dict[str, NamedTensor]:
    """The model the last of ``bases`` describes: the first is a full model, each later one an update
    applied on top (its base hash checked)."""
    if not bases:
        msg = "an update needs its base (--base): a checkpoint, a model directory or a .nnsq file"
        raise ConfigError(msg)
    model = {t.name: t for t in _model_tensors(bases[0])}
    for upd in bases[1:]:
        if not isinstance(upd, (str, os.PathLike, bytes)):
            msg = f"bases after the first must be update files (.nnsq), got {type(upd).__name__}"
            raise ConfigError(msg)
        model = apply_update_tensors(upd, [], base_model=model, threads=threads)
    return model


# ------------------------------------------------------------------------------------- encoding


def _bits(t: NamedTensor) -> np.ndarray:
    """The stored bit patterns of a float tensor as unsigned integers of its width."""
    width = storage_dtype(t.dtype).itemsize
    unsigned = {2: np.uint16, 4: np.uint32, 8: np.uint64}[width]
    return np.ascontiguousarray(t.array).view(unsigned)


def _same_bits(a: NamedTensor, b: NamedTensor) -> bool:
    return (
        a.array.shape == b.array.shape
        and a.dtype == b.dtype
        and np.array_equal(
            np.ascontiguousarray(a.array).view(np.uint8), np.ascontiguousarray(b.array).view(np.uint8)
        )
    )


def _step_of(t: NamedTensor, opts: CompressOptions) -> float:
    return opts.vector_step if t.array.ndim < 2 else opts.weight_step


def reconstruction_gain(
    diff: np.ndarray, reconstruction: np.ndarray, coherence: float = UPDATE_COHERENCE
) -> float:
    """The factor g by which to scale the coded reconstruction of a difference (its stored step).

    Quantizing a fine-tune's difference ``x`` (mostly well below one step) zeroes most of it: the
    decoded reconstruction ``r`` is on average a shrunken copy of ``x``, and that shrinkage is an
    error along the update's own direction, which adds up through the network where quantization
    noise averages out.  The decoder multiplies the levels by the stored step, so storing ``g`` times
    the step costs nothing.  With ``X = Σ x²``, ``P = Σ x r`` and ``K = Σ r²`` the error ``x - g r``
    has the part ``(1 - g P / X) x`` along ``x`` and an orthogonal part of energy
    ``g² (K - P² / X)``; weighting the first ``coherence`` (κ) times the second and minimising gives
    ``g = κ P / ((κ - 1) P² / X + K)``: least squares for κ = 1, unbiased along ``x`` as κ grows
    (``math.inf``: ``X / P``), never beyond that.

    >>> x = np.random.default_rng(0).normal(0, 0.3, 10_000)
    >>> 1.0 < reconstruction_gain(x, np.rint(x)) < 1.6  # about 10 % of x rounds to +-1
    True
    >>> reconstruction_gain(np.full(10, 3.0), np.full(10, 3.0))  # exact: nothing to undo
    1.0
    """
    x = np.asarray(diff, dtype=np.float64).reshape(-1)
    r = np.asarray(reconstruction, dtype=np.float64).reshape(-1)
    if x.size == 0 or x.shape != r.shape or not (np.isfinite(x).all() and np.isfinite(r).all()):
        return 1.0
    along, power, energy = float(x @ r), float(x @ x), float(r @ r)
    if along <= 0.0 or power <= 0.0:
        return 1.0
    if math.isinf(coherence):
        return power / along
    gain = coherence * along / ((coherence - 1.0) * along * along / power + energy)
    return 1.0 if abs(gain - 1.0) < 1e-12 else gain


def _prepare(
    t: NamedTensor, base: NamedTensor | None, opts: CompressOptions
) -> tuple[str, NamedTensor | None]:
    """The kind of one tensor and what to code for it (None for unchanged)."""
    comparable = base is not None and base.dtype == t.dtype and base.array.shape == t.array.shape
    if not comparable or base is None:
        return STANDALONE, t
    if t.dtype not in FLOAT_DTYPES:
        return (UNCHANGED, None) if _same_bits(t, base) else (STANDALONE, t)
    if opts.lossless:
        flips = _bits(t) ^ _bits(base)
        if not flips.any():
            return UNCHANGED, None
        return XOR, NamedTensor(t.name, flips, flips.dtype.name)
    with np.errstate(invalid="ignore", over="ignore"):
        diff = to_float32(t.array, t.dtype) - to_float32(base.array, base.dtype)
    if np.isfinite(diff).all() and float(np.abs(diff).max(initial=0.0)) < _step_of(t, opts) / 2:
        return UNCHANGED, None  # every level would be 0
    return DELTA, NamedTensor(t.name, diff, "float32")


def _encode_difference(diff: NamedTensor, opts: CompressOptions, coherence: float | None) -> CodedTensor:
    """Codes a difference with its reconstruction gain (none for ``coherence=None``)."""
    coded = encode_tensor(diff, opts)
    if coherence is None:
        return coded
    # The reconstruction as the decoder will see it, whatever chose the levels (rounding, RDOQ, the
    # trellis) or stored the tensor losslessly instead (exact: the gain is 1).
    g = reconstruction_gain(diff.array, decode_record(coded.header, coded.payload).array, coherence)
    if g == 1.0:
        return coded
    # Coding g * diff at g * step gives the same levels (the quantizers' decisions depend on
    # diff / step only) and the decoder the larger step; weight and 1-D steps scale together.
    scaled = NamedTensor(diff.name, (diff.array * np.float32(g)).astype(np.float32), "float32")
    return encode_tensor(scaled, dataclasses.replace(opts, step=opts.weight_step * g))


def compress_update(
    new: Source,
    bases: Sequence[BaseSource],
    dest: str | os.PathLike[str] | None = None,
    *,
    qp: int = DEFAULT_UPDATE_QP,
    lossless: bool = False,
    threads: int | None = None,
    options: CompressOptions | None = None,
    metadata: Mapping[str, str] | None = None,
    trellis: bool = UPDATE_TRELLIS,
    coherence: float | None = UPDATE_COHERENCE,
) -> CompressionReport:
    """Codes ``new`` (a checkpoint, directory, mapping or module) as an update of the model ``bases``
    describe (see the module docs) into ``dest`` (or bytes).  ``options`` overrides ``qp``,
    ``lossless``, ``threads`` and ``trellis`` (dependent quantization of the weight differences, on
    by default); ``report.raw_bytes`` counts the new model's tensors.  ``coherence`` is the κ of
    :func:`reconstruction_gain`; None stores each difference at the step it was quantized at."""
    opts = options or CompressOptions(qp=qp, lossless=lossless, threads=threads, trellis=trellis)
    if coherence is not None and not coherence >= 1.0:
        msg = f"coherence must be >= 1 (or None), got {coherence}"
        raise ConfigError(msg)
    started = time.perf_counter()
    base = resolve_base(bases, threads=opts.threads)
    digest = state_hash(base.values())
    meta = checked_metadata(metadata)
    kinds: dict[str, str] = {}
    reports: list[TensorReport] = []
    raw_sizes: list[int] = []

    def to_code() -> Iterator[tuple[str, NamedTensor]]:
        for t in _model_tensors(new):
            if t.name in kinds:
                msg = f"tensor {t.name!r} appears twice in the new model"
                raise ConfigError(msg)
            kind, coded_tensor = _prepare(t, base.get(t.name), opts)
            kinds[t.name] = kind
            raw_sizes.append(t.array.nbytes)
            if coded_tensor is not None:
                yield kind, coded_tensor

    def encode(item: tuple[str, NamedTensor]) -> CodedTensor:
        kind, tensor = item
        return _encode_difference(tensor, opts, coherence) if kind == DELTA else encode_tensor(tensor, opts)

    writer = ContainerWriter(dest)
    try:
        for coded in ordered_map(
            encode, to_code(), opts.worker_count, cost=lambda item: item[1].array.nbytes
        ):
            writer.add(coded.header, coded.payload)
            reports.append(coded.report)
        raw = sum(raw_sizes)
        meta[UPDATE_KEY] = UpdateInfo(digest, len(base), kinds).to_json()
        return finish(writer, meta, {}, reports, raw, started, opts)
    except BaseException:
        writer.abort()
        raise


# ------------------------------------------------------------------------------------- decoding


def _apply(kind: str, coded: NamedTensor, base: NamedTensor | None, name: str) -> NamedTensor:
    if kind == STANDALONE:
        return coded
    if base is None:
        msg = f"tensor {name!r}: the update codes a difference, but the base has no such tensor"
        raise BaseMismatchError(msg)
    if coded.array.shape != base.array.shape:
        msg = f"tensor {name!r}: difference of shape {coded.array.shape}, base tensor {base.array.shape}"
        raise BitstreamError(msg)
    if kind == XOR:
        bits = _bits(base)
        if coded.array.dtype != bits.dtype:
            msg = f"tensor {name!r}: XOR record of dtype {coded.array.dtype} for a {base.dtype} base"
            raise BitstreamError(msg)
        return NamedTensor(name, (bits ^ coded.array).view(storage_dtype(base.dtype)), base.dtype)
    if coded.dtype != "float32":
        msg = f"tensor {name!r}: difference record of dtype {coded.dtype}, expected float32"
        raise BitstreamError(msg)
    values = to_float32(base.array, base.dtype) + coded.array
    return NamedTensor(name, from_float32(values, base.dtype), base.dtype)


def apply_update(
    update: str | os.PathLike[str] | bytes,
    bases: Sequence[BaseSource],
    *,
    base_model: Mapping[str, NamedTensor] | None = None,
    threads: int | None = None,
) -> dict[str, Any]:
    """The new model an update describes, as NumPy arrays by name (bfloat16 as float32, as
    :func:`nnsqueeze.decompress`); see :func:`apply_update_tensors`."""
    out = apply_update_tensors(update, bases, base_model=base_model, threads=threads)
    return {n: (to_float32(t.array, t.dtype) if t.dtype == "bfloat16" else t.array) for n, t in out.items()}


def apply_update_tensors(
    update: str | os.PathLike[str] | bytes,
    bases: Sequence[BaseSource],
    *,
    base_model: Mapping[str, NamedTensor] | None = None,
    threads: int | None = None,
) -> dict[str, NamedTensor]:
    """The new model's tensors in their stored dtypes: ``bases`` (or an already resolved
    ``base_model``) plus the coded differences.  A base whose hash differs from the one the update
    records raises :class:`BaseMismatchError` before anything is decoded."""
    base = dict(base_model) if base_model is not None else resolve_base(bases, threads=threads)
    out: dict[str, NamedTensor] = {}
    for name, (kind, coded) in update_records(update, base, threads=threads).items():
        if coded is None:
            if name not in base:
                msg = f"tensor {name!r} is unchanged from a base that lacks it"
                raise BaseMismatchError(msg)
            out[name] = base[name]
        else:
            out[name] = _apply(kind, coded, base.get(name), name)
    return out


def update_records(
    update: str | os.PathLike[str] | bytes,
    base: Mapping[str, NamedTensor],
    *,
    threads: int | None = None,
) -> dict[str, tuple[str, NamedTensor | None]]:
    """Each tensor's kind and decoded record (None for unchanged), in the new model's order, of an
    update of ``base``: what :func:`apply_update_tensors` adds to the base.  A base whose hash
    differs from the one the update records raises :class:`BaseMismatchError` before anything is
    decoded."""
    with NnsqFile(update) as f:
        info = update_info(f)
        if info is None:
            msg = f"{_label(update)} is a full model, not an update: decode it with nnsqueeze.decompress"
            raise BaseMismatchError(msg)
        digest = state_hash(base.values())
        if digest != info.base_sha256:
            msg = (
                f"{_label(update)} updates the model with SHA-256 {info.base_sha256[:16]}... "
                f"({info.base_tensors} tensors); the base given has {digest[:16]}... ({len(base)} tensors)"
            )
            raise BaseMismatchError(msg)
        stored = [n for n, k in info.kinds.items() if k != UNCHANGED]
        missing = [n for n in stored if n not in f.names]
        if missing:
            msg = f"{_label(update)}: {len(missing)} tensors lack their records, e.g. {missing[0]!r}"
            raise BitstreamError(msg)
        decoded = dict(zip(stored, f.tensors(stored, threads=threads), strict=True))
    return {name: (kind, decoded.get(name)) for name, kind in info.kinds.items()}
