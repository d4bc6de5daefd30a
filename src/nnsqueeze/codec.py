"""Whole-model compression: checkpoint in, ``.nnsq`` out, and back.

>>> import numpy as np, nnsqueeze
>>> rng = np.random.default_rng(0)
>>> weights = {"fc.weight": rng.normal(0, 0.05, (64, 32)).astype(np.float32),
...            "fc.bias": np.zeros(64, np.float32)}
>>> report = nnsqueeze.compress(weights, qp=-28)
>>> restored = nnsqueeze.decompress(report.data)
>>> bool(np.abs(restored["fc.weight"] - weights["fc.weight"]).max() <= 2 ** -8)
True
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from nnsqueeze.coding import cabac, methods, planes, tokens
from nnsqueeze.coding.cabac import rows_cols
from nnsqueeze.coding.chunks import LEVEL_CHUNK_ELEMENTS, level_chunk_rows
from nnsqueeze.coding.container import (
    ContainerReader,
    ContainerWriter,
    IndexEntry,
    Method,
    Payload,
    RecordHeader,
)
from nnsqueeze.coding.parallel import ordered_map
from nnsqueeze.dtypes import FLOAT_DTYPES, storage_dtype, to_float32
from nnsqueeze.errors import BaseMismatchError, BitstreamError, CalibrationError, ConfigError
from nnsqueeze.io import Checkpoint, NamedTensor, open_checkpoint
from nnsqueeze.quant.allocation import allocate_steps, check_strength, weight_statistics
from nnsqueeze.quant.rdo import normalized_importance, rdo_encode, trellis_encode, uniform_encode
from nnsqueeze.quant.uniform import check_step, qp_to_step, quantize, step_to_qp, unquantizable
from nnsqueeze.target import Trial

if TYPE_CHECKING:
    from nnsqueeze.calibration import Calibration

DEFAULT_QP = -28
# Metadata key listing the tensors coded differently from the options, and why.
NOTES_KEY = "nnsqueeze.notes"


CODERS = ("auto", "tokens", "cabac")
# Weights from this size up code with tokens under coder="auto": below it the per-chunk frequency
# tables (a few hundred bytes) outweigh what the static model saves.
TOKENS_MIN_ELEMENTS = 1 << 16
# Under coder="auto" at effort 1 such a weight codes a block of about this many elements from the
# middle of its rows both ways first.  Tokens match CABAC on most weights (MiniLM: 0.99-1.004x on the
# block) and decode several times faster, but CABAC's adaptive contexts win on smooth, sparse ones
# (CREPE's convolutions: 1.02-1.7x): tokens are kept while at most TOKENS_TOLERANCE x as large,
# counting their levels without the block's frequency tables (a whole tensor spreads its tables
# over far more levels).  So counted, a block of 2^13 elements makes the choice that 2^15 made with
# the tables (the same on all 117 MiniLM choices at QP -20/-28/-38, 4 tokens more of 33 CREPE ones),
# and its CABAC trial, which coded about 30 % of the time of a MiniLM weight, costs a quarter.
COMPARE_BLOCK_ELEMENTS = 1 << 13
TOKENS_TOLERANCE = 1.01


class RdoSettings(NamedTuple):
    """The recommended data-free RD mode (``compress(..., rdo=True)``, ``nnsqueeze compress --rdo``)."""

    step_allocation: float
    rdo_lambda: float


# Chosen once on the validation parts of the zoo's digits and MNIST-1D models by
# benchmarks/tune_rd.py (benchmarks/rd_results/tuning.md), never per model.
RDO_DEFAULTS = RdoSettings(step_allocation=1.5, rdo_lambda=0.0)
# The calibrated mode's strength (compress(..., calibration=...), --calibrate), chosen the same way.
CALIBRATED_DEFAULTS = RdoSettings(step_allocation=1.0, rdo_lambda=0.0)
MIN_ALLOCATED_STEP = 2.0**-64  # allocated steps stay in the coder's range (a finer one would code losslessly)


@dataclass(frozen=True)
class CompressOptions:
    """How :func:`compress` codes each tensor.

    qp / step
        Quantization step of weights (tensors with 2 or more dimensions): ``step = 2 ** (qp / 4)``;
        ``step`` overrides ``qp``.
    qp_1d_offset
        1-D and scalar float tensors (biases, norms) use ``qp + qp_1d_offset`` (default -32: a step
        256 times finer), since they are few and sensitive.
    lossless
        Store every float tensor bit-exactly (integer and bool tensors always are).
    lossless_1d
        Store only the 1-D float tensors bit-exactly.
    strict
        Refuse (``TensorError``) float tensors that cannot be quantized at their step: NaN/Inf, or
        magnitudes beyond the coder's range (e.g. BatchNorm variances of 1e7 at a fine 1-D step).
        By default such tensors are stored losslessly instead, and the report says which and why.
    num_gtx
        Number of context-coded "abs > k" flags before the Exp-Golomb remainder (default: the
        encoder picks per tensor).
    threads
        Tensors coded in parallel (default: all cores).
    rdo_lambda
        Rate-distortion optimised quantization of weights when > 0: the squared-step distortion
        one bit is worth (about 0.05-0.3 is useful); 0 rounds to the nearest level.
    step_allocation
        Data-free bit allocation between weight tensors (:mod:`nnsqueeze.quant.allocation`): 0 gives
        every weight tensor the same step; above 0 each gets a step from its spread and size, finer
        for small weights, coarser for large tensors, at about the same file size.
        :data:`RDO_DEFAULTS` holds the recommended value.
    trellis
        Dependent (trellis-coded) quantization of weights: two interleaved quantizers chosen by a
        4-state machine, a Viterbi search with the rate term ``rdo_lambda``.
    effort
        How hard the encoder searches the coder settings of each tensor, like zstd's levels: 1 codes
        each tensor once with settings chosen from its size (default), 2 tries four settings on
        tensors below 2^16 elements, 3 up to twelve below 2^20.
    coder
        The entropy coder of uniformly quantized tensors: ``"tokens"`` (rANS-coded tokens, method 6:
        about 4x faster to decode), ``"cabac"`` (the adaptive binary coder: a few tenths of a percent
        smaller on large tensors, more on small ones), or ``"auto"`` (default: CABAC below 2^16
        elements; from there tokens, unless a block of the weight's rows codes more than 1 % smaller
        with CABAC; at effort >= 2 both on the whole tensor, keeping the smaller).
        RDOQ and trellis always code with CABAC, whose rates they optimise.
    chunk_elements
        Entry points: tensors of at least two chunks are coded as independent chunks of about this
        many elements (whole rows for quantized tensors), which encode and decode on all threads.
        Default: 2^20 for quantized tensors, 2^18 for lossless ones (also the largest lossless chunk).
    """

    qp: int = DEFAULT_QP
    step: float | None = None
    qp_1d_offset: int = -32
    lossless: bool = False
    lossless_1d: bool = False
    strict: bool = False
    num_gtx: int | None = None
    threads: int | None = None
    rdo_lambda: float = 0.0
    step_allocation: float = 0.0
    trellis: bool = False
    effort: int = 1
    chunk_elements: int | None = None
    coder: str = "auto"

    def __post_init__(self) -> None:
        qp_to_step(self.qp)
        qp_to_step(self.qp + self.qp_1d_offset)
        if self.step is not None:
            check_step(self.step)
        if self.num_gtx is not None and not 0 <= self.num_gtx <= cabac.MAX_GTX:
            msg = f"num_gtx must be in 0..{cabac.MAX_GTX}, got {self.num_gtx}"
            raise ConfigError(msg)
        if not (math.isfinite(self.rdo_lambda) and self.rdo_lambda >= 0):
            msg = f"rdo_lambda must be finite and >= 0, got {self.rdo_lambda}"
            raise ConfigError(msg)
        check_strength(self.step_allocation)
        if self.threads is not None and self.threads < 1:
            msg = f"threads must be >= 1, got {self.threads}"
            raise ConfigError(msg)
        if not 1 <= self.effort <= cabac.MAX_EFFORT:
            msg = f"effort must be in 1..{cabac.MAX_EFFORT}, got {self.effort}"
            raise ConfigError(msg)
        if self.coder not in CODERS:
            msg = f"coder must be one of {', '.join(CODERS)}, got {self.coder!r}"
            raise ConfigError(msg)
        if self.chunk_elements is not None and self.chunk_elements < 1:
            msg = f"chunk_elements must be >= 1, got {self.chunk_elements}"
            raise ConfigError(msg)

    @property
    def weight_step(self) -> float:
        return self.step if self.step is not None else qp_to_step(self.qp)

    @property
    def vector_step(self) -> float:
        return self.weight_step * float(2.0 ** (self.qp_1d_offset / 4))

    @property
    def level_chunk_elements(self) -> int:
        return self.chunk_elements or LEVEL_CHUNK_ELEMENTS

    @property
    def plane_chunk_elements(self) -> int:
        return min(self.chunk_elements or planes.DEFAULT_CHUNK_ELEMENTS, planes.MAX_CHUNK_ELEMENTS)

    @property
    def worker_count(self) -> int:
        return self.threads or os.cpu_count() or 1


@dataclass(frozen=True)
class TensorReport:
    """What happened to one tensor."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    method: str
    step: float | None
    coded_bytes: int
    note: str = ""  # why the method differs from the options' choice (e.g. stored losslessly)

    @property
    def num_elements(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def bits_per_element(self) -> float:
        return 8 * self.coded_bytes / max(self.num_elements, 1)


@dataclass(frozen=True)
class CompressionReport:
    """Result of :func:`compress`: sizes per tensor and in total, and timing."""

    path: Path | None
    data: bytes | None
    tensors: tuple[TensorReport, ...]
    file_bytes: int
    raw_bytes: int
    seconds: float
    weight_step: float = 0.0
    search: tuple[Trial, ...] = ()

    @property
    def num_elements(self) -> int:
        return sum(t.num_elements for t in self.tensors)

    @property
    def bits_per_element(self) -> float:
        return 8 * self.file_bytes / max(self.num_elements, 1)

    @property
    def ratio(self) -> float:
        return self.raw_bytes / max(self.file_bytes, 1)


@dataclass
class CodedTensor:
    """One tensor as :func:`encode_tensor` codes it: its record header, payload and report."""

    header: RecordHeader
    payload: bytes
    report: TensorReport = field(repr=False)
    raw_bytes: int = 0


def _level_offset(levels: np.ndarray) -> int:
    """A zero point for levels that sit far from 0 (e.g. LayerNorm gains near 1)."""
    if levels.size == 0:
        return 0
    median = int(np.median(levels))
    spread = int(np.abs(levels - np.int32(median)).max())
    return median if abs(median) > spread else 0


def _encode_float(
    t: NamedTensor, values: np.ndarray, opts: CompressOptions, importance: np.ndarray | None
) -> tuple[RecordHeader, bytes]:
    """Quantizes and codes a float tensor (``values``: its elements as float32): weights at the
    weight step (RDOQ or trellis if asked, chunks of rows when large), 1-D tensors at the finer
    vector step around a zero point."""
    shape = tuple(t.array.shape)
    vector = t.array.ndim < 2
    matrix = values.reshape(rows_cols(shape))
    step = opts.vector_step if vector else opts.weight_step
    chunk_rows = 0 if vector else level_chunk_rows(shape, opts.level_chunk_elements)
    count = opts.level_chunk_elements if chunk_rows else values.size
    candidates = cabac.candidate_settings(count, opts.num_gtx, 1 if chunk_rows else opts.effort)
    method = methods.DEPENDENT if opts.trellis and not vector else methods.UNIFORM
    lam, offset, imp = opts.rdo_lambda, 0, None
    optimised = not vector and (lam > 0 or opts.trellis)
    if not optimised and opts.coder != "cabac":
        tokens_wanted = opts.coder == "tokens" or (
            not vector
            and values.size >= TOKENS_MIN_ELEMENTS
            and (opts.effort > 1 or _tokens_pay(matrix, step, t.name))
        )
        if tokens_wanted:
            coded = _encode_tokens(t, matrix, step, vector, chunk_rows, opts)
            if opts.coder == "tokens" or opts.effort == 1:
                return coded
            cabac_opts = dataclasses.replace(opts, coder="cabac")
            other = _encode_float(t, values, cabac_opts, importance)
            return coded if coded[0].payload_length <= other[0].payload_length else other
    encode_rows: methods.RowEncoder
    if optimised:
        optimise = trellis_encode if opts.trellis else rdo_encode
        if importance is not None:
            imp = normalized_importance(importance, shape, t.name).reshape(matrix.shape)

        def encode_rows(
            rows: np.ndarray, part: np.ndarray | None, s: cabac.CoderSettings
        ) -> tuple[bytes, float]:
            r = optimise(
                rows,
                step,
                lambda_=lam,
                importance=part,
                num_gtx=s.num_gtx,
                adaptation=s.adaptation,
                name=t.name,
            )
            return r.payload, r.objective(lam)

    elif chunk_rows or values.size >= 1 << 20:
        # Large weights: quantize and code in one pass (no level array).

        def encode_rows(
            rows: np.ndarray, _: np.ndarray | None, s: cabac.CoderSettings
        ) -> tuple[bytes, float]:
            payload = uniform_encode(rows, step, num_gtx=s.num_gtx, adaptation=s.adaptation, name=t.name)
            return payload, len(payload)

    else:
        levels = quantize(values, step, name=t.name)
        offset = _level_offset(levels) if vector else 0
        matrix = (levels - np.int32(offset)).reshape(matrix.shape)

        def encode_rows(
            rows: np.ndarray, _: np.ndarray | None, s: cabac.CoderSettings
        ) -> tuple[bytes, float]:
            payload = cabac.encode_levels(rows, num_gtx=s.num_gtx, adaptation=s.adaptation)
            return payload, len(payload)

    return method.encode(
        t.name,
        t.dtype,
        matrix,
        shape,
        encode_rows,
        candidates,
        step=step,
        offset=offset,
        chunk_rows=chunk_rows,
        importance=imp,
        threads=opts.worker_count,
    )


def _tokens_pay(matrix: np.ndarray, step: float, name: str) -> bool:
    """Whether tokens code a block from the middle of ``matrix``'s rows, their frequency tables not
    counted, within :data:`TOKENS_TOLERANCE` of CABAC's size."""
    rows, cols = matrix.shape
    count = max(1, min(rows, COMPARE_BLOCK_ELEMENTS // max(cols, 1)))
    start = (rows - count) // 2
    block = np.ascontiguousarray(matrix[start : start + count])
    settings = cabac.candidate_settings(block.size, None, 1)[0]
    tokens_payload = methods.TOKENS.encode_rows(step, name)(block, None, settings)[0]
    cabac_bytes = len(
        uniform_encode(block, step, num_gtx=settings.num_gtx, adaptation=settings.adaptation, name=name)
    )
    return len(tokens_payload) - tokens.table_bytes(tokens_payload) <= TOKENS_TOLERANCE * cabac_bytes


def _encode_tokens(
    t: NamedTensor, matrix: np.ndarray, step: float, vector: bool, chunk_rows: int, opts: CompressOptions
) -> tuple[RecordHeader, bytes]:
    """Codes a float tensor (``matrix``: float32 rows x cols) with the token coder: weights quantized
    chunk by chunk, 1-D tensors around a zero point."""
    shape = tuple(t.array.shape)
    offset = 0
    encode_rows: methods.RowEncoder
    if vector:
        levels = quantize(matrix, step, name=t.name)
        offset = _level_offset(levels)
        matrix = levels - np.int32(offset)

        def encode_levels(
            rows: np.ndarray, _: np.ndarray | None, __: cabac.CoderSettings
        ) -> tuple[bytes, float]:
            payload = tokens.encode_tokens(rows)
            return payload, len(payload)

        encode_rows = encode_levels
    else:
        encode_rows = methods.TOKENS.encode_rows(step, t.name)
    return methods.TOKENS.encode(
        t.name,
        t.dtype,
        matrix,
        shape,
        encode_rows,
        [cabac.CoderSettings()],
        step=step,
        offset=offset,
        chunk_rows=chunk_rows,
        threads=opts.worker_count,
    )


def encode_tensor(t: NamedTensor, opts: CompressOptions, importance: np.ndarray | None = None) -> CodedTensor:
    """Chooses the coding method of one tensor and codes it (``importance`` weights RDOQ's distortion)."""
    shape = tuple(t.array.shape)
    workers = opts.worker_count
    coded: tuple[RecordHeader, bytes] | None = None
    note = ""
    if t.dtype in FLOAT_DTYPES:
        if not (opts.lossless or (t.array.ndim < 2 and opts.lossless_1d)):
            values = to_float32(t.array, t.dtype)
            level_step = opts.vector_step if t.array.ndim < 2 else opts.weight_step
            reason = None if opts.strict else unquantizable(values, level_step)
            if reason is None:
                coded = _encode_float(t, values, opts, importance)
            else:
                note = f"stored losslessly: {reason}"
    else:
        chunk_rows = level_chunk_rows(shape, opts.level_chunk_elements)
        coded = methods.INTEGER.encode_integers(
            t.name,
            t.dtype,
            t.array,
            num_gtx=opts.num_gtx,
            effort=opts.effort,
            chunk_rows=chunk_rows,
            threads=workers,
        )
    if coded is None:  # lossless floats, integers of a range too wide for the level coder
        coded = methods.PLANES.encode_raw(
            t.name, t.dtype, t.array, chunk=opts.plane_chunk_elements, threads=workers
        )
    header, payload = coded
    uniform = header.method in (Method.UNIFORM, Method.TOKENS)
    step = header.levels.step if uniform and header.levels else None
    name = methods.METHODS[header.method].name
    report = TensorReport(t.name, header.shape, t.dtype, name, step, len(payload), note)
    return CodedTensor(header, payload, report, t.array.nbytes)


Source = str | os.PathLike[str] | Mapping[str, Any] | Any


def _importance_arrays(fisher: Mapping[str, Any] | None) -> dict[str, np.ndarray]:
    """Importance arrays as NumPy float32 (torch tensors are detached and moved to the CPU)."""
    out = {}
    for name, value in (fisher or {}).items():
        if hasattr(value, "detach"):
            value = value.detach().cpu().float().numpy()
        out[name] = np.asarray(value, dtype=np.float32)
    return out


def compress(
    source: Source,
    dest: str | os.PathLike[str] | None = None,
    *,
    qp: int = DEFAULT_QP,
    step: float | None = None,
    lossless: bool = False,
    threads: int | None = None,
    lambda_: float = 0.0,
    trellis: bool = False,
    rdo: bool = False,
    calibration: Calibration | None = None,
    fisher: Mapping[str, Any] | None = None,
    target_size: int | str | None = None,
    target_bits_per_param: float | None = None,
    target_metric: Callable[[dict[str, np.ndarray]], float] | None = None,
    min_metric: float | None = None,
    options: CompressOptions | None = None,
    metadata: Mapping[str, str] | None = None,
    progress: Callable[[TensorReport], None] | None = None,
) -> CompressionReport:
    """Compresses a model's tensors into an ``.nnsq`` file (or bytes, if ``dest`` is None).

    ``source`` is a path (``.safetensors``, ``.pt``/``.pth``, ``.npz``, ``.onnx``), a mapping of
    names to arrays or torch tensors, a ``torch.nn.Module`` or an opened
    :class:`nnsqueeze.io.Checkpoint`.  Tensors are read, coded and
    written one at a time (a few in parallel), so memory stays near a few times the largest tensor.
    ``rdo=True`` is the recommended data-free RD mode: bits allocated between the weight tensors from
    their statistics, plus RDOQ, as :data:`RDO_DEFAULTS` says (settings that ``options`` or
    ``lambda_`` give explicitly win).
    ``calibration`` (:class:`nnsqueeze.Calibration`: the model run on sample inputs) measures how
    much each weight tensor's rounding moves the outputs and allocates the steps from that, at the
    strength ``options.step_allocation`` or :data:`CALIBRATED_DEFAULTS`.
    ``lambda_`` > 0 turns on rate-distortion optimised quantization; ``fisher`` maps tensor names to
    importance arrays of the same shape (e.g. :func:`nnsqueeze.fisher_diagonal`) that weight its
    distortion.  ``options`` overrides ``qp``, ``step``, ``lossless``, ``threads`` and ``lambda_``.
    ``progress`` is called after each tensor.

    Bit allocation: ``target_size`` (bytes, or a string like ``"5MB"``) or ``target_bits_per_param``
    searches the finest step whose file fits (within 2 % below the target); ``target_metric`` with
    ``min_metric`` searches the coarsest step whose decoded tensors keep
    ``target_metric(decoded) >= min_metric`` (e.g. test accuracy of the model loaded with them).
    The search re-encodes the source several times (``report.search`` lists the trials).
    """
    opts = options or CompressOptions(
        qp=qp, step=step, lossless=lossless, threads=threads, rdo_lambda=lambda_, trellis=trellis
    )
    if calibration is not None and opts.lossless:
        msg = "calibration allocates quantization steps; lossless coding has none"
        raise ConfigError(msg)
    if rdo:
        opts = dataclasses.replace(
            opts,
            step_allocation=opts.step_allocation or RDO_DEFAULTS.step_allocation,
            rdo_lambda=opts.rdo_lambda or RDO_DEFAULTS.rdo_lambda,
        )
    if target_size is not None or target_bits_per_param is not None or target_metric is not None:
        return _compress_to_target(
            source,
            dest,
            opts,
            fisher,
            metadata,
            target_size,
            target_bits_per_param,
            target_metric,
            min_metric,
            calibration,
        )
    if isinstance(source, (str, os.PathLike)) and Path(source).is_dir():
        from nnsqueeze.package import compress_directory

        if calibration is not None:
            msg = "calibration runs one model: compress the model file, not a directory"
            raise ConfigError(msg)

        return compress_directory(source, dest, options=opts, metadata=metadata, progress=progress)
    importance = _importance_arrays(fisher)
    started = time.perf_counter()
    checkpoint = source if isinstance(source, Checkpoint) else open_checkpoint(source)
    tensors: Iterable[NamedTensor] = checkpoint.tensors
    steps: dict[str, float] = {}
    if calibration is not None:  # lossless coding with a calibration was refused above
        strength = opts.step_allocation or CALIBRATED_DEFAULTS.step_allocation
        steps = in_coder_range(calibration.steps(opts.weight_step, strength))
    elif opts.step_allocation > 0 and not opts.lossless:  # a first pass for the tensors' statistics
        if isinstance(source, Checkpoint):
            tensors = list(tensors)  # an opened checkpoint reads once: keep its tensors
            steps = allocated_steps(tensors, opts)
        else:
            steps = allocated_steps(open_checkpoint(source).tensors, opts)
    meta = dict(checkpoint.metadata)
    meta.update(checked_metadata(metadata))
    meta.setdefault("nnsqueeze.source_format", checkpoint.format)
    writer = ContainerWriter(dest)
    try:
        reports, raw = code_tensors(writer, tensors, opts, importance, progress, steps)
        foreign = sorted(set(steps) - {r.name for r in reports})
        if foreign:  # a calibration made from another model
            msg = f"steps were allocated to tensors the model does not have: {', '.join(foreign[:5])}"
            raise CalibrationError(msg)
        return finish(writer, meta, checkpoint.attachments, reports, raw, started, opts)
    except BaseException:
        writer.abort()
        raise


def finish(
    writer: ContainerWriter,
    meta: dict[str, str],
    attachments: Mapping[str, bytes],
    reports: list[TensorReport],
    raw: int,
    started: float,
    opts: CompressOptions,
) -> CompressionReport:
    """Notes the tensors coded differently in the metadata, closes the file and reports on it (the
    caller aborts the writer if this raises)."""
    add_notes(meta, reports)
    size = writer.close(meta, attachments)
    return CompressionReport(
        writer.path,
        writer.getvalue() if writer.path is None else None,
        tuple(reports),
        size,
        raw,
        time.perf_counter() - started,
        opts.weight_step,
    )


def checked_metadata(metadata: Mapping[str, str] | None) -> dict[str, str]:
    """User metadata, checked at run time (callers may be untyped): str keys and values only."""
    user_items: list[tuple[object, object]] = list((metadata or {}).items())
    for key, value in user_items:
        if not isinstance(key, str) or not isinstance(value, str):
            msg = f"metadata must map str to str, got {key!r}: {value!r}"
            raise ConfigError(msg)
    return {str(k): str(v) for k, v in user_items}


def code_tensors(
    writer: ContainerWriter,
    tensors: Iterable[NamedTensor],
    opts: CompressOptions,
    importance: Mapping[str, np.ndarray] | None = None,
    progress: Callable[[TensorReport], None] | None = None,
    steps: Mapping[str, float] | None = None,
) -> tuple[list[TensorReport], int]:
    """Codes tensors (a few in parallel, in order) into ``writer``; returns their reports and raw bytes.

    ``steps`` gives weight tensors their own step (from :func:`allocated_steps`)."""
    reports: list[TensorReport] = []
    raw = 0
    imp = importance or {}
    own = steps or {}

    def encode(t: NamedTensor) -> CodedTensor:
        tensor_opts = dataclasses.replace(opts, step=own[t.name]) if t.name in own else opts
        return encode_tensor(t, tensor_opts, imp.get(t.name))

    for coded in ordered_map(
        encode,
        tensors,
        opts.worker_count,
        cost=lambda t: t.array.nbytes,
    ):
        writer.add(coded.header, coded.payload)
        reports.append(coded.report)
        raw += coded.raw_bytes
        if progress is not None:
            progress(coded.report)
    return reports, raw


def allocated_steps(tensors: Iterable[NamedTensor], opts: CompressOptions) -> dict[str, float]:
    """The weight tensors' steps under ``opts.step_allocation`` (empty when it is 0 or coding is
    lossless); reads each tensor once, one at a time."""
    if opts.step_allocation == 0.0 or opts.lossless:
        return {}
    weights = (t for t in tensors if t.dtype in FLOAT_DTYPES and t.array.ndim >= 2)
    stats = weight_statistics((t.name, to_float32(t.array, t.dtype)) for t in weights)
    return in_coder_range(allocate_steps(stats, opts.weight_step, opts.step_allocation))


def in_coder_range(steps: Mapping[str, float]) -> dict[str, float]:
    """Allocated steps clipped to the steps the coder takes."""
    return {name: min(max(step, MIN_ALLOCATED_STEP), cabac.MAX_STEP) for name, step in steps.items()}


def add_notes(meta: dict[str, str], reports: Iterable[TensorReport]) -> None:
    """Lists the tensors coded differently from the options, and why, in the metadata (``info`` shows it)."""
    notes = [f"{r.name}: {r.note}" for r in reports if r.note]
    if notes:
        meta[NOTES_KEY] = "; ".join(notes)


def _compress_to_target(
    source: Source,
    dest: str | os.PathLike[str] | None,
    opts: CompressOptions,
    fisher: Mapping[str, Any] | None,
    metadata: Mapping[str, str] | None,
    target_size: int | str | None,
    target_bits_per_param: float | None,
    target_metric: Callable[[dict[str, np.ndarray]], float] | None,
    min_metric: float | None,
    calibration: Calibration | None,
) -> CompressionReport:
    from nnsqueeze.target import parse_size, search_metric, search_size

    if isinstance(source, Checkpoint):
        msg = "a target search re-reads the source: pass a path, mapping or module, not an opened Checkpoint"
        raise ConfigError(msg)
    given = [target_size is not None, target_bits_per_param is not None, target_metric is not None]
    if sum(given) != 1:
        msg = "give exactly one of target_size, target_bits_per_param, target_metric"
        raise ConfigError(msg)
    if target_metric is not None and min_metric is None:
        msg = "target_metric needs min_metric (the lowest acceptable value)"
        raise ConfigError(msg)
    start_qp = step_to_qp(opts.weight_step)

    def encode(qp: float) -> CompressionReport:
        trial = dataclasses.replace(opts, qp=round(qp), step=2.0 ** (qp / 4))
        return compress(
            source, None, options=trial, fisher=fisher, metadata=metadata, calibration=calibration
        )

    if target_metric is not None:
        assert min_metric is not None

        def evaluate(qp: float) -> tuple[float, int]:
            report = encode(qp)
            assert report.data is not None
            return float(target_metric(decompress(report.data, threads=opts.threads))), report.file_bytes

        qp, trials = search_metric(evaluate, min_metric, start_qp=start_qp)
    else:
        first = encode(start_qp)
        if target_size is not None:
            target = parse_size(target_size)
        else:
            assert target_bits_per_param is not None
            if not (math.isfinite(target_bits_per_param) and target_bits_per_param > 0):
                msg = f"target_bits_per_param must be positive, got {target_bits_per_param}"
                raise ConfigError(msg)
            target = max(1, int(target_bits_per_param * first.num_elements / 8))
        sizes = {start_qp: first.file_bytes}

        def size_of(qp: float) -> int:
            if qp not in sizes:
                sizes[qp] = encode(qp).file_bytes
            return sizes[qp]

        qp, trials = search_size(size_of, target, start_qp=start_qp, num_elements=first.num_elements)
    final = dataclasses.replace(opts, qp=round(qp), step=2.0 ** (qp / 4))
    report = compress(source, dest, options=final, fisher=fisher, metadata=metadata, calibration=calibration)
    return dataclasses.replace(report, search=tuple(trials))


def decode_record(header: RecordHeader, payload: Payload, *, threads: int = 1) -> NamedTensor:
    """Decodes one verified record to a tensor in its original dtype (bfloat16 as raw bits); the
    chunks of a large tensor decode on up to ``threads`` threads."""
    shape = header.shape
    what = f"tensor {header.name!r}"
    try:
        array = methods.method_of(header).decode(header, payload, threads=threads)
    except ValueError as exc:  # BitstreamError, ConfigError from bad parameters, the core's ValueError
        msg = f"{what}: {exc}"
        raise BitstreamError(msg) from None
    except MemoryError:  # the payload can justify the count (heavily skewed levels), memory cannot
        size = header.num_elements * storage_dtype(header.dtype).itemsize
        msg = f"{what}: {header.num_elements} elements ({size / 1e9:.1f} GB) are more than can be allocated"
        raise BitstreamError(msg) from None
    return NamedTensor(header.name, array.reshape(shape), header.dtype)


class NnsqFile:
    """An open ``.nnsq`` file: list its tensors and decode any of them alone.

    >>> import numpy as np, nnsqueeze
    >>> data = nnsqueeze.compress({"a": np.ones((4, 4), np.float32), "b": np.arange(3)}).data
    >>> with nnsqueeze.NnsqFile(data) as f:
    ...     f.names, f.read("b").tolist()
    (('a', 'b'), [0, 1, 2])
    """

    def __init__(self, source: str | os.PathLike[str] | bytes | bytearray | memoryview) -> None:
        self._reader = ContainerReader(source)
        self._entries = {e.name: e for e in self._reader.index.entries}

    def __enter__(self) -> NnsqFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._reader.close()

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._entries)

    @property
    def version(self) -> tuple[int, int]:
        return self._reader.version

    @property
    def metadata(self) -> dict[str, str]:
        return dict(self._reader.index.metadata)

    @property
    def attachments(self) -> dict[str, bytes]:
        return dict(self._reader.index.attachments)

    def _entry(self, name: str) -> IndexEntry:
        try:
            return self._entries[name]
        except KeyError:
            msg = f"no tensor named {name!r} in {self._reader.label}"
            raise KeyError(msg) from None

    def header(self, name: str) -> RecordHeader:
        return self._reader.read_record(self._entry(name))[0]

    def read_record(self, name: str) -> tuple[RecordHeader, Payload]:
        """The verified header and payload of one tensor's record (for tools that read levels)."""
        return self._reader.read_record(self._entry(name))

    def record_size(self, name: str) -> int:
        return self._entry(name).length

    def read_tensor(self, name: str) -> NamedTensor:
        """Decodes one tensor in its stored dtype (bfloat16 as raw uint16 bits)."""
        return decode_record(*self._reader.read_record(self._entry(name)), threads=os.cpu_count() or 1)

    def read(self, name: str) -> np.ndarray:
        """Decodes one tensor as a NumPy array (bfloat16 widened to float32)."""
        t = self.read_tensor(name)
        return to_float32(t.array, t.dtype) if t.dtype == "bfloat16" else t.array

    def tensors(
        self, names: Iterable[str] | None = None, *, threads: int | None = None
    ) -> Iterator[NamedTensor]:
        """Decodes tensors in file order (or the given order), several in parallel."""
        workers = threads or os.cpu_count() or 1

        def read(name: str) -> NamedTensor:  # on the worker threads: reading and CRC checks too
            return decode_record(*self._reader.read_record(self._entry(name)), threads=workers)

        yield from ordered_map(
            read, self.names if names is None else names, workers, cost=lambda n: self._entry(n).length
        )


def named_tensors(f: NnsqFile, threads: int | None) -> Iterator[NamedTensor]:
    """The tensors of a file; for a model package, those of its tensor files under their own names.
    An update (differences from a base) raises :class:`BaseMismatchError`: alone it is no model."""
    from nnsqueeze.package import package_tensors, read_manifest
    from nnsqueeze.update import UPDATE_KEY

    if UPDATE_KEY in f.metadata:
        msg = "this file is an update against a base model: decode it with nnsqueeze.apply_update (--base)"
        raise BaseMismatchError(msg)
    manifest = read_manifest(f)
    if manifest is None:
        yield from f.tensors(threads=threads)
    else:
        yield from package_tensors(f, manifest, threads=threads)


def decompress(
    source: str | os.PathLike[str] | bytes | bytearray | memoryview, *, threads: int | None = None
) -> dict[str, np.ndarray]:
    """Decodes every tensor of an ``.nnsq`` file or byte string to NumPy arrays.

    Arrays keep their dtype, except bfloat16, which NumPy lacks: it comes back as float32
    (exactly); use :func:`load_state_dict` for torch tensors in the original dtypes.  For a model
    package the tensors of all its tensor files are merged by name (see
    :func:`nnsqueeze.package.package_tensors`); :func:`nnsqueeze.decompress_to` writes its files.
    """
    with NnsqFile(source) as f:
        return {
            t.name: (to_float32(t.array, t.dtype) if t.dtype == "bfloat16" else t.array)
            for t in named_tensors(f, threads)
        }


def load_state_dict(
    source: str | os.PathLike[str] | bytes | bytearray | memoryview, *, threads: int | None = None
) -> dict[str, Any]:
    """Decodes an ``.nnsq`` file (or model package) to a PyTorch state dict (dtypes as stored,
    bfloat16 included)."""
    from nnsqueeze.io import to_torch_state_dict

    with NnsqFile(source) as f:
        return to_torch_state_dict(named_tensors(f, threads))
