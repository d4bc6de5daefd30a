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
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from nnsqueeze.coding import cabac, planes
from nnsqueeze.coding.cabac import rows_cols
from nnsqueeze.coding.chunks import (
    LEVEL_CHUNK_ELEMENTS,
    level_chunk_rows,
    parallel_map,
    row_ranges,
    split_payload,
)
from nnsqueeze.coding.container import (
    ContainerReader,
    ContainerWriter,
    IndexEntry,
    LevelParams,
    Method,
    RecordHeader,
)
from nnsqueeze.dtypes import FLOAT_DTYPES, from_float32, storage_dtype, to_float32
from nnsqueeze.errors import BitstreamError, ConfigError
from nnsqueeze.io import Checkpoint, NamedTensor, open_checkpoint
from nnsqueeze.quant.rdo import normalized_importance, rdo_encode, trellis_encode, uniform_encode
from nnsqueeze.quant.uniform import MAX_ABS_LEVEL, check_step, qp_to_step, quantize, step_to_qp
from nnsqueeze.target import Trial

DEFAULT_QP = -28
_In = TypeVar("_In")
_Out = TypeVar("_Out")


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
    num_gtx
        Number of context-coded "abs > k" flags before the Exp-Golomb remainder (default: the
        encoder picks per tensor).
    threads
        Tensors coded in parallel (default: all cores).
    rdo_lambda
        Rate-distortion optimised quantization of weights when > 0: the squared-step distortion
        one bit is worth (about 0.05-0.3 is useful); 0 rounds to the nearest level.
    trellis
        Dependent (trellis-coded) quantization of weights: two interleaved quantizers chosen by a
        4-state machine, a Viterbi search with the rate term ``rdo_lambda``.
    effort
        How hard the encoder searches the coder settings of each tensor, like zstd's levels: 1 codes
        each tensor once with settings chosen from its size (default), 2 tries four settings on
        tensors below 2^16 elements, 3 up to twelve below 2^20.
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
    num_gtx: int | None = None
    threads: int | None = None
    rdo_lambda: float = 0.0
    trellis: bool = False
    effort: int = 1
    chunk_elements: int | None = None

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
        if self.threads is not None and self.threads < 1:
            msg = f"threads must be >= 1, got {self.threads}"
            raise ConfigError(msg)
        if not 1 <= self.effort <= cabac.MAX_EFFORT:
            msg = f"effort must be in 1..{cabac.MAX_EFFORT}, got {self.effort}"
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
class _Coded:
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


def _level_record(
    t: NamedTensor, method: int, step: float, offset: int, coded: tuple[bytes, int, cabac.Adaptation]
) -> _Coded:
    payload, num_gtx, rate = coded
    params = LevelParams(num_gtx, rate.fast_shift, rate.slow_shift, offset, step)
    header = RecordHeader(t.name, t.dtype, tuple(t.array.shape), method, params, 0, len(payload))
    shown_step = step if method == Method.UNIFORM else None
    report = TensorReport(t.name, header.shape, t.dtype, Method.NAMES[method], shown_step, len(payload))
    return _Coded(header, payload, report)


def _code_uniform(t: NamedTensor, levels: np.ndarray, step: float, opts: CompressOptions) -> _Coded:
    offset = _level_offset(levels) if levels.ndim < 2 else 0
    if offset:
        levels = levels - np.int32(offset)
    coded = cabac.encode_levels_best(levels, num_gtx=opts.num_gtx, effort=opts.effort)
    return _level_record(t, Method.UNIFORM, step, offset, coded)


def _code_rdo(t: NamedTensor, step: float, opts: CompressOptions, importance: np.ndarray | None) -> _Coded:
    """RDOQ or trellis quantization with each candidate coder setting; keeps the lowest objective."""
    values = to_float32(t.array, t.dtype)
    encode = trellis_encode if opts.trellis else rdo_encode
    best: tuple[float, bytes, int, cabac.Adaptation] | None = None
    for gtx, rate in cabac.candidate_settings(values.size, opts.num_gtx, opts.effort):
        result = encode(
            values,
            step,
            lambda_=opts.rdo_lambda,
            importance=importance,
            num_gtx=gtx,
            adaptation=rate,
            name=t.name,
        )
        objective = result.objective(opts.rdo_lambda)
        if best is None or objective < best[0]:
            best = (objective, result.payload, gtx, rate)
    assert best is not None
    method = Method.DEPENDENT if opts.trellis else Method.UNIFORM
    return _level_record(t, method, step, 0, best[1:])


# Codes the rows of one chunk (a rows x cols matrix, with that chunk's importance) with given settings.
_ChunkEncoder = Callable[[np.ndarray, "np.ndarray | None", int, cabac.Adaptation], bytes]


def _code_chunked(
    t: NamedTensor,
    matrix: np.ndarray,
    method: int,
    step: float,
    offset: int,
    encode_chunk: _ChunkEncoder,
    opts: CompressOptions,
    importance: np.ndarray | None = None,
) -> _Coded:
    """Codes a large tensor as independent chunks of rows on all threads (one coder setting for all)."""
    chunk_rows = level_chunk_rows(tuple(t.array.shape), opts.level_chunk_elements)
    gtx, rate = cabac.one_pass_setting(opts.level_chunk_elements, opts.num_gtx)
    if importance is not None:
        importance = normalized_importance(importance, tuple(t.array.shape), t.name).reshape(matrix.shape)

    def code(rows: tuple[int, int]) -> bytes:
        part = None if importance is None else importance[rows[0] : rows[1]]
        return encode_chunk(matrix[rows[0] : rows[1]], part, gtx, rate)

    payloads = parallel_map(code, row_ranges(matrix.shape[0], chunk_rows), opts.worker_count)
    coded = _level_record(t, method, step, offset, (b"".join(payloads), gtx, rate))
    coded.header = dataclasses.replace(
        coded.header, chunk=chunk_rows, entry_points=tuple(len(p) for p in payloads)
    )
    return coded


def _code_weights_chunked(
    t: NamedTensor, opts: CompressOptions, importance: np.ndarray | None
) -> _Coded:
    step = opts.weight_step
    matrix = to_float32(t.array, t.dtype).reshape(rows_cols(tuple(t.array.shape)))
    lam = opts.rdo_lambda

    def encode_chunk(rows: np.ndarray, imp: np.ndarray | None, gtx: int, rate: cabac.Adaptation) -> bytes:
        if opts.trellis:
            return trellis_encode(
                rows, step, lambda_=lam, importance=imp, num_gtx=gtx, adaptation=rate, name=t.name
            ).payload
        if lam > 0:
            return rdo_encode(
                rows, step, lambda_=lam, importance=imp, num_gtx=gtx, adaptation=rate, name=t.name
            ).payload
        return uniform_encode(rows, step, num_gtx=gtx, adaptation=rate, name=t.name)

    method = Method.DEPENDENT if opts.trellis else Method.UNIFORM
    return _code_chunked(t, matrix, method, step, 0, encode_chunk, opts, importance)


def _code_planes(t: NamedTensor, opts: CompressOptions) -> _Coded:
    rotate = t.dtype in FLOAT_DTYPES
    coded = planes.encode_planes(
        t.array, rotate_sign=rotate, chunk=opts.plane_chunk_elements, threads=opts.worker_count
    )
    header = RecordHeader(
        t.name,
        t.dtype,
        tuple(t.array.shape),
        Method.PLANES,
        None,
        t.array.dtype.itemsize,
        len(coded.payload),
        coded.chunk,
        coded.entry_points if t.array.size else (),
    )
    report = TensorReport(t.name, header.shape, t.dtype, "lossless", None, len(coded.payload))
    return _Coded(header, coded.payload, report)


def encode_tensor(t: NamedTensor, opts: CompressOptions, importance: np.ndarray | None = None) -> _Coded:
    """Chooses the coding of one tensor and codes it (``importance`` weights RDOQ's distortion)."""
    shape = tuple(t.array.shape)
    if t.dtype in FLOAT_DTYPES:
        vector = t.array.ndim < 2
        if opts.lossless or (vector and opts.lossless_1d):
            coded = _code_planes(t, opts)
        elif not vector and level_chunk_rows(shape, opts.level_chunk_elements):
            coded = _code_weights_chunked(t, opts, importance)
        elif not vector and (opts.rdo_lambda > 0 or opts.trellis):
            coded = _code_rdo(t, opts.weight_step, opts, importance)
        elif not vector and t.array.size >= 1 << 20:
            # Large weights: one candidate setting, so quantize and code in one pass (no level array).
            gtx, rate = cabac.one_pass_setting(t.array.size, opts.num_gtx)
            values = to_float32(t.array, t.dtype)
            payload = uniform_encode(values, opts.weight_step, num_gtx=gtx, adaptation=rate, name=t.name)
            coded = _level_record(t, Method.UNIFORM, opts.weight_step, 0, (payload, gtx, rate))
        else:
            step = opts.vector_step if vector else opts.weight_step
            levels = quantize(to_float32(t.array, t.dtype), step, name=t.name)
            coded = _code_uniform(t, levels, step, opts)
    else:
        centred = _centred_integers(t.array)
        if centred is None:
            coded = _code_planes(t, opts)
        else:
            levels, offset = centred
            if level_chunk_rows(shape, opts.level_chunk_elements):
                coded = _code_chunked(
                    t,
                    levels.reshape(rows_cols(shape)),
                    Method.INTEGER,
                    0.0,
                    offset,
                    lambda rows, _, gtx, rate: cabac.encode_levels(rows, num_gtx=gtx, adaptation=rate),
                    opts,
                )
            else:
                best = cabac.encode_levels_best(levels, num_gtx=opts.num_gtx, effort=opts.effort)
                coded = _level_record(t, Method.INTEGER, 0.0, offset, best)
    coded.raw_bytes = t.array.nbytes
    return coded


def _centred_integers(values: np.ndarray) -> tuple[np.ndarray, int] | None:
    """Integer values as int32 levels around the midpoint of their range, and that midpoint; None
    if the range is too wide for the level coder.  Exact for every integer dtype: the
    subtraction happens in the values' own dtype, where it cannot overflow because it lands in
    [0, max - min]."""
    if values.size == 0:
        return None
    if values.dtype == np.bool_:
        values = values.view(np.uint8)
    lo, hi = int(values.min()), int(values.max())
    if hi - lo > MAX_ABS_LEVEL:
        return None
    half = (hi - lo) // 2
    shifted = (values - np.array(lo, dtype=values.dtype)).astype(np.int64)
    return (shifted - half).astype(np.int32), lo + half


def restore_integers(levels: np.ndarray, offset: int, dtype: np.dtype[np.generic]) -> np.ndarray:
    """Inverse of :func:`_centred_integers`: modular arithmetic in ``dtype`` gives the exact value."""
    work = np.dtype(np.uint8) if dtype == np.bool_ else dtype
    info = np.iinfo(work)  # type: ignore[type-var]
    if not info.min <= offset <= info.max:
        msg = f"offset {offset} is outside the range of {dtype}"
        raise BitstreamError(msg)
    values = np.asarray(np.asarray(levels).astype(work) + np.array(offset, dtype=work))
    return values.astype(dtype) if dtype == np.bool_ else values


def _ordered_map(fn: Callable[[_In], _Out], items: Iterable[_In], workers: int) -> Iterator[_Out]:
    """``map`` over a thread pool that keeps order, with at most ``workers`` items in flight (plus
    the one the consumer holds), so memory stays near ``workers + 1`` tensors.

    The coders release the GIL, so threads give real parallelism."""
    if workers == 1:
        yield from map(fn, items)
        return
    with ThreadPoolExecutor(max_workers=workers) as pool:
        pending: deque[Future[_Out]] = deque()
        for item in items:
            if len(pending) == workers:
                yield pending.popleft().result()
            pending.append(pool.submit(fn, item))
        while pending:
            yield pending.popleft().result()


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
        )
    importance = _importance_arrays(fisher)
    started = time.perf_counter()
    checkpoint = source if isinstance(source, Checkpoint) else open_checkpoint(source)
    meta = dict(checkpoint.metadata)
    # Checked at run time: callers may be untyped.
    user_items: list[tuple[object, object]] = list((metadata or {}).items())
    for key, value in user_items:
        if not isinstance(key, str) or not isinstance(value, str):
            msg = f"metadata must map str to str, got {key!r}: {value!r}"
            raise ConfigError(msg)
        meta[key] = value
    meta.setdefault("nnsqueeze.source_format", checkpoint.format)
    writer = ContainerWriter(dest)
    reports: list[TensorReport] = []
    raw = 0
    try:
        for coded in _ordered_map(
            lambda t: encode_tensor(t, opts, importance.get(t.name)), checkpoint.tensors, opts.worker_count
        ):
            writer.add(coded.header, coded.payload)
            reports.append(coded.report)
            raw += coded.raw_bytes
            if progress is not None:
                progress(coded.report)
        size = writer.close(meta, checkpoint.attachments)
    except BaseException:
        writer.abort()
        raise
    return CompressionReport(
        writer.path,
        writer.getvalue() if dest is None else None,
        tuple(reports),
        size,
        raw,
        time.perf_counter() - started,
        opts.weight_step,
    )


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
        return compress(source, None, options=trial, fisher=fisher, metadata=metadata)

    if target_metric is not None:
        assert min_metric is not None

        def evaluate(qp: float) -> float:
            report = encode(qp)
            assert report.data is not None
            return float(target_metric(decompress(report.data, threads=opts.threads)))

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
    report = compress(source, dest, options=final, fisher=fisher, metadata=metadata)
    return dataclasses.replace(report, search=tuple(trials))


def decode_record(header: RecordHeader, payload: bytes, *, threads: int = 1) -> NamedTensor:
    """Decodes one verified record to a tensor in its original dtype (bfloat16 as raw bits); the
    chunks of a large tensor decode on up to ``threads`` threads."""
    shape = header.shape
    what = f"tensor {header.name!r}"
    nonzero = 1
    for d in shape:
        nonzero *= max(d, 1)
    if nonzero > (1 << 40) or any(d >= (1 << 48) for d in shape):
        msg = f"{what}: implausible shape {shape}"
        raise BitstreamError(msg)
    try:
        if header.method in Method.RAW_METHODS:
            if header.itemsize != storage_dtype(header.dtype).itemsize:
                msg = f"item size {header.itemsize} does not match dtype {header.dtype}"
                raise BitstreamError(msg)
            dtype = storage_dtype(header.dtype)
            if header.method == Method.BYTES:
                array = cabac.decode_bytes(payload, shape, dtype)
            else:
                rotate = header.dtype in FLOAT_DTYPES
                chunk, entry_points = header.chunk, header.entry_points
                array = planes.decode_planes(
                    payload, shape, dtype, chunk, entry_points, rotate_sign=rotate, threads=threads
                )
            return NamedTensor(header.name, array, header.dtype)
        p = header.levels
        assert p is not None
        if not 0 <= p.num_gtx <= cabac.MAX_GTX:
            msg = f"num_gtx {p.num_gtx} out of range"
            raise BitstreamError(msg)
        if header.method != Method.INTEGER and abs(p.offset) > cabac.MAX_ABS_LEVEL:
            msg = f"level offset {p.offset} out of range"
            raise BitstreamError(msg)
        rate = cabac.Adaptation(p.fast_shift, p.slow_shift)
        if header.method in (Method.UNIFORM, Method.DEPENDENT):
            if header.dtype not in FLOAT_DTYPES or not (p.step > 0 and np.isfinite(p.step)):
                msg = "invalid quantization parameters"
                raise BitstreamError(msg)
            if header.method == Method.UNIFORM:

                def decode(data: bytes | memoryview, part: tuple[int, ...], out: np.ndarray) -> None:
                    cabac.decode_dequantized(
                        data, part, p.step, offset=p.offset, num_gtx=p.num_gtx, adaptation=rate, out=out
                    )

            else:

                def decode(data: bytes | memoryview, part: tuple[int, ...], out: np.ndarray) -> None:
                    cabac.decode_dependent(data, part, p.step, num_gtx=p.num_gtx, adaptation=rate, out=out)

            values = _decode_levels_chunked(header, payload, np.float32, decode, threads)
            return NamedTensor(header.name, from_float32(values, header.dtype), header.dtype)
        if header.dtype in FLOAT_DTYPES:
            msg = "integer coding of a float tensor"
            raise BitstreamError(msg)

        def decode_ints(data: bytes | memoryview, part: tuple[int, ...], out: np.ndarray) -> None:
            cabac.decode_levels(data, part, num_gtx=p.num_gtx, adaptation=rate, out=out)

        levels = _decode_levels_chunked(header, payload, np.int32, decode_ints, threads)
        values = restore_integers(levels, p.offset, storage_dtype(header.dtype))
    except ValueError as exc:  # BitstreamError, ConfigError from bad parameters, the core's ValueError
        msg = f"{what}: {exc}"
        raise BitstreamError(msg) from None
    return NamedTensor(header.name, values.reshape(shape), header.dtype)


def _decode_levels_chunked(
    header: RecordHeader,
    payload: bytes,
    dtype: type[np.generic],
    decode: Callable[[bytes | memoryview, tuple[int, ...], np.ndarray], None],
    threads: int,
) -> np.ndarray:
    """Runs ``decode(data, shape, out)`` on the whole payload, or on each chunk of rows into its slice
    of the output (each chunk is coded like a tensor of its rows)."""
    rows, cols = rows_cols(header.shape)
    ranges = row_ranges(rows, header.chunk) if header.entry_points else [(0, rows)]
    chunks = split_payload(payload, header.entry_points) if header.entry_points else [memoryview(payload)]
    # Refused before allocating: every chunk must be able to carry its rows.
    for (begin, end), data in zip(ranges, chunks, strict=True):
        if (end - begin) * cols > cabac.max_elements_for_payload(len(data)):
            msg = f"{(end - begin) * cols} elements cannot come from {len(data)} bytes (corrupt header?)"
            raise BitstreamError(msg)
    out = np.empty(rows * cols, dtype=dtype)

    def run(job: tuple[tuple[int, int], memoryview]) -> None:
        (begin, end), data = job
        decode(data, (end - begin, cols), out[begin * cols : end * cols])

    parallel_map(run, list(zip(ranges, chunks, strict=True)), threads)
    return out.reshape(header.shape)


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
        records = (self._reader.read_record(self._entry(n)) for n in (names or self.names))
        workers = threads or os.cpu_count() or 1
        yield from _ordered_map(lambda r: decode_record(*r, threads=workers), records, workers)


def decompress(
    source: str | os.PathLike[str] | bytes | bytearray | memoryview, *, threads: int | None = None
) -> dict[str, np.ndarray]:
    """Decodes every tensor of an ``.nnsq`` file or byte string to NumPy arrays.

    Arrays keep their dtype, except bfloat16, which NumPy lacks: it comes back as float32
    (exactly); use :func:`load_state_dict` for torch tensors in the original dtypes.
    """
    with NnsqFile(source) as f:
        return {
            t.name: (to_float32(t.array, t.dtype) if t.dtype == "bfloat16" else t.array)
            for t in f.tensors(threads=threads)
        }


def load_state_dict(
    source: str | os.PathLike[str] | bytes | bytearray | memoryview, *, threads: int | None = None
) -> dict[str, Any]:
    """Decodes an ``.nnsq`` file to a PyTorch state dict (dtypes as stored, bfloat16 included)."""
    from nnsqueeze.io import to_torch_state_dict

    with NnsqFile(source) as f:
        return to_torch_state_dict(f.tensors(threads=threads))
