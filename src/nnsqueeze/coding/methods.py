"""The coding methods of ``.nnsq`` records, one object per method.

Each method owns both directions: it builds a record (header and payload) from a tensor, decodes a
record back to the tensor, and, for the level methods, reads a record's integer levels.
:data:`METHODS` maps the format's method codes to them.  The container only parses record headers;
:mod:`nnsqueeze.codec` only decides which method codes which tensor.

>>> import numpy as np
>>> from nnsqueeze.coding.methods import INTEGER, METHODS
>>> header, payload = INTEGER.encode_integers("idx", "int64", np.arange(6).reshape(2, 3)) or ()
>>> METHODS[header.method].decode(header, payload).tolist()
[[0, 1, 2], [3, 4, 5]]
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import ClassVar

import numpy as np

from nnsqueeze.coding import cabac, planes, tokens
from nnsqueeze.coding.cabac import Adaptation, CoderSettings, rows_cols
from nnsqueeze.coding.chunks import row_ranges, split_payload
from nnsqueeze.coding.container import LevelParams, Method, Payload, RecordHeader
from nnsqueeze.coding.parallel import parallel_map
from nnsqueeze.dtypes import FLOAT_DTYPES, from_float32, storage_dtype
from nnsqueeze.errors import BitstreamError
from nnsqueeze.quant.uniform import quantize

# Codes one chunk (a rows x cols matrix and the importance of those rows, if any) with a coder
# setting; returns the payload and the objective to minimise over settings (bits, or RD cost).
RowEncoder = Callable[[np.ndarray, "np.ndarray | None", CoderSettings], tuple[bytes, float]]
# Decodes a level payload of `shape` into the flat array `out`.
_RowDecoder = Callable[[bytes | memoryview, tuple[int, ...], LevelParams, np.ndarray], None]


class CodingMethod:
    """A way of coding one tensor: ``code`` in the record header, ``name`` in reports."""

    code: ClassVar[int]
    name: ClassVar[str]

    def decode(self, header: RecordHeader, payload: Payload, *, threads: int = 1) -> np.ndarray:
        """The tensor of a verified record, in its storage dtype (bfloat16 as raw bits)."""
        raise NotImplementedError


class LevelMethod(CodingMethod):
    """Methods that code integer levels with the CABAC level coder, optionally in chunks of rows."""

    out_dtype: ClassVar[type[np.generic]] = np.float32

    def encode(
        self,
        name: str,
        dtype: str,
        matrix: np.ndarray,
        shape: tuple[int, ...],
        encode_rows: RowEncoder,
        candidates: Sequence[CoderSettings],
        *,
        step: float = 0.0,
        offset: int = 0,
        chunk_rows: int = 0,
        importance: np.ndarray | None = None,
        threads: int = 1,
    ) -> tuple[RecordHeader, bytes]:
        """Codes ``matrix`` (the tensor as rows x cols) into a record.  One stream tries every candidate
        setting and keeps the lowest objective; ``chunk_rows`` > 0 codes independent chunks of that many
        rows on ``threads`` threads, all with the first candidate."""
        if chunk_rows:
            settings = candidates[0]

            def code(rows: tuple[int, int]) -> bytes:
                part = None if importance is None else importance[rows[0] : rows[1]]
                return encode_rows(matrix[rows[0] : rows[1]], part, settings)[0]

            chunks = parallel_map(code, row_ranges(matrix.shape[0], chunk_rows), threads)
            payload, entry_points = b"".join(chunks), tuple(len(c) for c in chunks)
        else:
            tried = [(encode_rows(matrix, importance, s), s) for s in candidates]
            (payload, _), settings = min(tried, key=lambda t: t[0][1])
            entry_points = ()
        params = self._params(settings, offset, step)
        header = RecordHeader(
            name, dtype, shape, self.code, params, 0, len(payload), chunk_rows, entry_points
        )
        return header, payload

    def read_levels(self, header: RecordHeader, payload: Payload, *, threads: int = 1) -> np.ndarray:
        """The record's coded integers (symbols for the dependent method), int32 of the tensor's shape."""
        self._checked(header)

        def decode(data: bytes | memoryview, shape: tuple[int, ...], p: LevelParams, out: np.ndarray) -> None:
            cabac.decode_levels(data, shape, num_gtx=p.num_gtx, adaptation=_rate(p), out=out)

        return _decode_rows(header, payload, np.int32, decode, threads, self.max_elements)

    def decode(self, header: RecordHeader, payload: Payload, *, threads: int = 1) -> np.ndarray:
        self._checked(header)
        values = _decode_rows(header, payload, self.out_dtype, self._decode_into, threads, self.max_elements)
        return self._finish(header, values)

    def _params(self, settings: CoderSettings, offset: int, step: float) -> LevelParams:
        """The record header's level parameters."""
        rate = settings.adaptation
        return LevelParams(settings.num_gtx, rate.fast_shift, rate.slow_shift, offset, step)

    def max_elements(self, payload_bytes: int) -> int:
        """Most levels a payload (or chunk) of this size can carry: refused before allocating."""
        return cabac.max_elements_for_payload(payload_bytes)

    def _checked(self, header: RecordHeader) -> LevelParams:
        p = header.levels
        if p is None:
            msg = f"{self.name} record without level parameters"
            raise BitstreamError(msg)
        if not 0 <= p.num_gtx <= cabac.MAX_GTX:
            msg = f"num_gtx {p.num_gtx} out of range"
            raise BitstreamError(msg)
        _rate(p)  # raises ConfigError (a ValueError) for shifts out of range
        return p

    def _decode_into(
        self, data: bytes | memoryview, shape: tuple[int, ...], p: LevelParams, out: np.ndarray
    ) -> None:
        raise NotImplementedError

    def _finish(self, header: RecordHeader, values: np.ndarray) -> np.ndarray:
        return from_float32(values, header.dtype)


class _QuantizedMethod(LevelMethod):
    """Level methods of float tensors: a step and an offset within the level range."""

    def _checked(self, header: RecordHeader) -> LevelParams:
        return self._checked_quantization(header, super()._checked(header))

    @staticmethod
    def _checked_quantization(header: RecordHeader, p: LevelParams) -> LevelParams:
        if abs(p.offset) > cabac.MAX_ABS_LEVEL:
            msg = f"level offset {p.offset} out of range"
            raise BitstreamError(msg)
        # Bounded so that every (level + offset) * step, and twice that for dependent quantization,
        # is a finite float32.
        if header.dtype not in FLOAT_DTYPES or not 0 < p.step <= cabac.MAX_STEP:
            msg = f"invalid quantization parameters (step {p.step!r}, dtype {header.dtype})"
            raise BitstreamError(msg)
        return p


class UniformMethod(_QuantizedMethod):
    """Float tensors on a uniform grid: value = (level + offset) * step."""

    code = Method.UNIFORM
    name = "uniform"

    def _decode_into(
        self, data: bytes | memoryview, shape: tuple[int, ...], p: LevelParams, out: np.ndarray
    ) -> None:
        cabac.decode_dequantized(
            data, shape, p.step, offset=p.offset, num_gtx=p.num_gtx, adaptation=_rate(p), out=out
        )


class TokensMethod(_QuantizedMethod):
    """Float tensors on a uniform grid like :class:`UniformMethod`, the levels coded as rANS tokens
    (:mod:`nnsqueeze.coding.tokens`): about 4x faster to decode.  The header's CABAC settings are
    unused and must be zero."""

    code = Method.TOKENS
    name = "uniform-tokens"

    def encode_rows(self, step: float, name: str) -> RowEncoder:
        """The row encoder of :meth:`encode`: quantizes float32 rows at ``step`` and codes the levels."""

        def encode_rows(rows: np.ndarray, _: np.ndarray | None, __: CoderSettings) -> tuple[bytes, float]:
            payload = tokens.encode_tokens(quantize(rows, step, name=name))
            return payload, len(payload)

        return encode_rows

    def _params(self, settings: CoderSettings, offset: int, step: float) -> LevelParams:
        return LevelParams(0, 0, 0, offset, step)

    def read_levels(self, header: RecordHeader, payload: Payload, *, threads: int = 1) -> np.ndarray:
        self._checked(header)

        def decode(data: bytes | memoryview, shape: tuple[int, ...], p: LevelParams, out: np.ndarray) -> None:
            tokens.decode_tokens(data, shape, out=out)

        return _decode_rows(header, payload, np.int32, decode, threads, self.max_elements)

    def max_elements(self, payload_bytes: int) -> int:
        return tokens.max_elements_for_payload(payload_bytes)

    def _checked(self, header: RecordHeader) -> LevelParams:
        p = header.levels
        if p is None or (p.num_gtx, p.fast_shift, p.slow_shift) != (0, 0, 0):
            msg = f"{self.name} record with CABAC settings (must be zero)"
            raise BitstreamError(msg)
        return self._checked_quantization(header, p)

    def _decode_into(
        self, data: bytes | memoryview, shape: tuple[int, ...], p: LevelParams, out: np.ndarray
    ) -> None:
        tokens.decode_dequantized(data, shape, p.step, offset=p.offset, out=out)


class DependentMethod(_QuantizedMethod):
    """Float tensors with dependent (trellis-coded) quantization: value = recon(k, state) * step, the
    state machine restarting at each chunk."""

    code = Method.DEPENDENT
    name = "dependent"

    def _checked(self, header: RecordHeader) -> LevelParams:
        p = super()._checked(header)
        if p.offset != 0:
            msg = f"dependent-quantization record with level offset {p.offset} (must be 0)"
            raise BitstreamError(msg)
        return p

    def _decode_into(
        self, data: bytes | memoryview, shape: tuple[int, ...], p: LevelParams, out: np.ndarray
    ) -> None:
        cabac.decode_dependent(data, shape, p.step, num_gtx=p.num_gtx, adaptation=_rate(p), out=out)


class IntegerMethod(LevelMethod):
    """Integer and bool tensors whose range fits the level coder: value = level + offset, exactly."""

    code = Method.INTEGER
    name = "integer"
    out_dtype = np.int32

    @staticmethod
    def centred(values: np.ndarray) -> tuple[np.ndarray, int] | None:
        """Integer values as int32 levels around the midpoint of their range, and that midpoint; None
        if the range is too wide for the level coder.  Exact for every integer dtype, and every
        level + offset is the value itself (no wrap-around): the subtraction happens in 64 bits,
        unsigned for uint64, where values - min lands in [0, max - min] < 2^30."""
        if values.size == 0:
            return None
        if values.dtype == np.bool_:
            values = values.view(np.uint8)
        lo, hi = int(values.min()), int(values.max())
        if hi - lo > cabac.MAX_ABS_LEVEL:
            return None
        half = (hi - lo) // 2
        wide = np.uint64 if values.dtype == np.uint64 else np.int64
        shifted = (values.astype(wide) - np.array(lo, dtype=wide)).astype(np.int64)
        return (shifted - half).astype(np.int32), lo + half

    def encode_integers(
        self,
        name: str,
        dtype: str,
        values: np.ndarray,
        *,
        num_gtx: int | None = None,
        effort: int = 1,
        chunk_rows: int = 0,
        threads: int = 1,
    ) -> tuple[RecordHeader, bytes] | None:
        """Codes an integer tensor; None if its range is too wide for the level coder."""
        centred = self.centred(values)
        if centred is None:
            return None
        levels, offset = centred
        shape = tuple(values.shape)
        count = chunk_rows * rows_cols(shape)[1] if chunk_rows else levels.size
        candidates = cabac.candidate_settings(count, num_gtx, 1 if chunk_rows else effort)

        def encode_rows(rows: np.ndarray, _: np.ndarray | None, s: CoderSettings) -> tuple[bytes, float]:
            payload = cabac.encode_levels(rows, num_gtx=s.num_gtx, adaptation=s.adaptation)
            return payload, len(payload)

        matrix = levels.reshape(rows_cols(shape))
        return self.encode(
            name,
            dtype,
            matrix,
            shape,
            encode_rows,
            candidates,
            offset=offset,
            chunk_rows=chunk_rows,
            threads=threads,
        )

    def _checked(self, header: RecordHeader) -> LevelParams:
        p = super()._checked(header)
        if header.dtype in FLOAT_DTYPES:
            msg = "integer coding of a float tensor"
            raise BitstreamError(msg)
        return p

    def _decode_into(
        self, data: bytes | memoryview, shape: tuple[int, ...], p: LevelParams, out: np.ndarray
    ) -> None:
        cabac.decode_levels(data, shape, num_gtx=p.num_gtx, adaptation=_rate(p), out=out)

    def _finish(self, header: RecordHeader, values: np.ndarray) -> np.ndarray:
        assert header.levels is not None
        offset = header.levels.offset
        dtype = storage_dtype(header.dtype)
        work = np.dtype(np.uint8) if dtype == np.bool_ else dtype
        info = np.iinfo(work)  # type: ignore[type-var]
        low, high = (0, 1) if dtype == np.bool_ else (info.min, info.max)
        if not low <= offset <= high:
            msg = f"offset {offset} is outside the range of {dtype}"
            raise BitstreamError(msg)
        if values.size:  # no silent wrap-around
            # Encoders before 2.0's hardening wrote int8/int16 tensors spanning more than half their
            # range with level + offset up to one span outside it (the format computes modulo
            # 2^bits); those still decode, anything further, or outside for other dtypes, is corrupt.
            span = high - low + 1 if dtype in (np.int8, np.int16) else 0
            lo, hi = int(values.min()) + offset, int(values.max()) + offset
            if lo < low - span or hi > high + span:
                msg = f"decoded values {lo}..{hi} are outside the range of {dtype}"
                raise BitstreamError(msg)
        # Modular arithmetic in the stored dtype gives the exact value, even for 64 bits.
        restored = np.asarray(values.astype(work) + np.array(offset, dtype=work))
        return restored.astype(dtype) if dtype == np.bool_ else restored


class _RawMethod(CodingMethod):
    """Methods that store a tensor's raw element bytes losslessly."""

    def _dtype(self, header: RecordHeader) -> np.dtype[np.generic]:
        dtype = storage_dtype(header.dtype)
        if header.itemsize != dtype.itemsize:
            msg = f"item size {header.itemsize} does not match dtype {header.dtype}"
            raise BitstreamError(msg)
        return dtype


class BytesMethod(_RawMethod):
    """The 1.0 lossless coder (a context-coded binary tree per byte position); read only."""

    code = Method.BYTES
    name = "lossless-bytes"

    def decode(self, header: RecordHeader, payload: Payload, *, threads: int = 1) -> np.ndarray:
        return _canonical(header, cabac.decode_bytes(payload, header.shape, self._dtype(header)))


class PlanesMethod(_RawMethod):
    """Lossless byte planes of the raw elements (floats rotated so the exponent fills the top byte)."""

    code = Method.PLANES
    name = "lossless"

    def encode_raw(
        self, name: str, dtype: str, array: np.ndarray, *, chunk: int, threads: int = 1
    ) -> tuple[RecordHeader, bytes]:
        coded = planes.encode_planes(array, rotate_sign=dtype in FLOAT_DTYPES, chunk=chunk, threads=threads)
        header = RecordHeader(
            name,
            dtype,
            tuple(array.shape),
            self.code,
            None,
            array.dtype.itemsize,
            len(coded.payload),
            coded.chunk,
            coded.entry_points,
        )
        return header, coded.payload

    def decode(self, header: RecordHeader, payload: Payload, *, threads: int = 1) -> np.ndarray:
        rotate = header.dtype in FLOAT_DTYPES
        return _canonical(
            header,
            planes.decode_planes(
                payload,
                header.shape,
                self._dtype(header),
                header.chunk,
                header.entry_points,
                rotate_sign=rotate,
                threads=threads,
            ),
        )


def _canonical(header: RecordHeader, values: np.ndarray) -> np.ndarray:
    """Raw bool bytes must be 0 or 1: any other byte would be a bool NumPy cannot represent."""
    if values.dtype == np.bool_ and values.size and int(values.view(np.uint8).max()) > 1:
        msg = f"bool tensor {header.name!r} holds bytes other than 0 and 1"
        raise BitstreamError(msg)
    return values


UNIFORM = UniformMethod()
INTEGER = IntegerMethod()
BYTES = BytesMethod()
DEPENDENT = DependentMethod()
PLANES = PlanesMethod()
TOKENS = TokensMethod()
METHODS: dict[int, CodingMethod] = {m.code: m for m in (UNIFORM, INTEGER, BYTES, DEPENDENT, PLANES, TOKENS)}


def method_of(header: RecordHeader) -> CodingMethod:
    """The method of a record (the header parser already refused unknown codes)."""
    try:
        return METHODS[header.method]
    except KeyError:
        msg = f"unknown coding method {header.method}"
        raise BitstreamError(msg) from None


def _rate(p: LevelParams) -> Adaptation:
    return Adaptation(p.fast_shift, p.slow_shift)


def _decode_rows(
    header: RecordHeader,
    payload: Payload,
    dtype: type[np.generic],
    decode: _RowDecoder,
    threads: int,
    max_elements: Callable[[int], int],
) -> np.ndarray:
    """Runs ``decode`` on the whole level payload, or on each chunk of rows into its slice of the
    output (each chunk is coded like a tensor of its rows), on up to ``threads`` threads."""
    assert header.levels is not None
    p = header.levels
    rows, cols = rows_cols(header.shape)
    ranges = row_ranges(rows, header.chunk) if header.entry_points else [(0, rows)]
    chunks = split_payload(payload, header.entry_points) if header.entry_points else [memoryview(payload)]
    # Refused before allocating: every chunk must be able to carry its rows.
    for (begin, end), data in zip(ranges, chunks, strict=True):
        if (end - begin) * cols > max_elements(len(data)):
            msg = f"{(end - begin) * cols} elements cannot come from {len(data)} bytes (corrupt header?)"
            raise BitstreamError(msg)
    out = np.empty(rows * cols, dtype=dtype)

    def run(job: tuple[tuple[int, int], memoryview]) -> None:
        (begin, end), data = job
        decode(data, (end - begin, cols), p, out[begin * cols : end * cols])

    parallel_map(run, list(zip(ranges, chunks, strict=True)), threads)
    return out.reshape(header.shape)
