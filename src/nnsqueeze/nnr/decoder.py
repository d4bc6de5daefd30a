"""Decoding whole NNR bitstreams: units in order, one tensor per compressed data unit."""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from nnsqueeze import _core
from nnsqueeze.coding.parallel import ordered_map
from nnsqueeze.errors import NnrError, NnrUnsupportedError
from nnsqueeze.nnr import syntax
from nnsqueeze.nnr.syntax import DataUnitHeader, ParameterSet, PayloadType, UnitType

# A stream may decode to at most this many elements plus BYTES_ELEMENT_RATIO per stream byte, unless the
# caller raises the limit: a crafted unit of a few bytes can claim an all-zero tensor of any size.
BASE_ELEMENT_LIMIT = 1 << 24
BYTES_ELEMENT_RATIO = 1024
PARALLEL_MIN_ELEMENTS = 1 << 20
FLOAT32_MAX = float(np.finfo(np.float32).max)
FLOAT32_TINY = float(np.finfo(np.float32).smallest_subnormal)


@dataclass(frozen=True)
class TensorInfo:
    """One decoded tensor and how it was coded."""

    name: str
    shape: tuple[int, ...]
    payload_type: str  # "float", "int" or "raw float"
    qp: int | None
    qp_density: int | None
    step: float | None
    dependent: bool
    scan_order: int
    codebook_size: int
    row_skipping: bool
    skipped_rows: int
    tuned_contexts: int
    unit_bytes: int
    temporal_context: bool = False  # coded against the tensor's previous update


@dataclass
class UpdateChain:
    """The levels of each tensor's latest decoded update, which the next update of a chain with
    temporal context adaptation is decoded against (NNCodec's ``approx_param_base``)."""

    levels: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass(frozen=True)
class StreamInfo:
    """The units of an NNR bitstream and the tensors they carry."""

    profile: int
    units: list[tuple[str, int]]  # (type name, bytes) in stream order
    tensors: list[TensorInfo]


def looks_like_nnr(data: bytes) -> bool:
    """Whether ``data`` starts with an NNR start unit (NNR_STR, short size field, 4 bytes)."""
    return len(data) >= 4 and data[0] == 0 and data[1] == 4 and data[2] >> 2 == UnitType.STR


def step_of(qp: int, qp_density: int) -> float:
    """The quantization step of a QP: (2^d + (qp mod 2^d)) * 2^(floor(qp / 2^d) - d)."""
    k = 1 << qp_density
    return float((k + (qp & (k - 1))) * 2.0 ** ((qp >> qp_density) - qp_density))


def read(
    data: bytes,
    *,
    max_elements: int | None = None,
    progress: Callable[[str], None] | None = None,
    threads: int | None = None,
    chain: UpdateChain | None = None,
) -> tuple[dict[str, np.ndarray], StreamInfo]:
    """Decodes every tensor of an NNR bitstream; returns them with a description of the stream.

    Every unit header is read first; then the data units' payloads, independent arithmetic-coded
    streams, are decoded on ``threads`` threads (default: all cores for streams of at least
    :data:`PARALLEL_MIN_ELEMENTS` elements, else one), in stream order.

    ``chain`` carries the levels of earlier updates of the same tensors: an incremental update coded
    with temporal context adaptation decodes against the previous update of each tensor, so decode the
    updates of a chain in order with one :class:`UpdateChain`.  Like NNCodec, an update decodes to the
    coded differences: add them to the model they update.

    Raises :class:`~nnsqueeze.errors.NnrError` for malformed streams and
    :class:`~nnsqueeze.errors.NnrUnsupportedError` for tools nnsqueeze does not decode."""
    data = bytes(data)
    limit = BASE_ELEMENT_LIMIT + BYTES_ELEMENT_RATIO * len(data) if max_elements is None else max_elements
    if not looks_like_nnr(data):
        msg = "not an NNR bitstream (it does not start with an NNR start unit)"
        raise NnrError(msg)
    jobs: list[tuple[syntax.UnitHeader, DataUnitHeader, ParameterSet]] = []
    seen: set[str] = set()
    units: list[tuple[str, int]] = []
    profile: int | None = None
    model: ParameterSet | None = None
    layer: ParameterSet | None = None
    names: list[str] | None = None
    elements = 0
    offset = 0
    while offset < len(data):
        unit = syntax.read_unit_header(data, offset)
        try:
            kind = UnitType(unit.type).name
        except ValueError:
            msg = f"NNR unit at byte {offset}: unknown unit type {unit.type}"
            raise NnrError(msg) from None
        units.append((kind, unit.size))
        if unit.type == UnitType.STR:
            if profile is not None:
                msg = f"NNR unit at byte {offset}: a second start unit"
                raise NnrError(msg)
            profile = syntax.read_start_unit(data, unit)
            offset += unit.size
            continue
        if profile is None:
            msg = "NNR bitstream does not start with a start unit (NNR_STR)"
            raise NnrError(msg)
        if unit.type == UnitType.MPS:
            if model is not None:
                msg = f"NNR unit at byte {offset}: a second model parameter set"
                raise NnrError(msg)
            model = syntax.read_model_parameter_set(data, unit, profile)
        elif unit.type == UnitType.LPS:
            if model is None:
                msg = f"NNR unit at byte {offset}: layer parameter set before the model parameter set"
                raise NnrError(msg)
            layer = syntax.read_layer_parameter_set(data, unit, model)
        elif unit.type == UnitType.TPL:
            names = syntax.read_topology(data, unit)
        elif unit.type == UnitType.NDU:
            if model is None:
                msg = f"NNR unit at byte {offset}: data unit before the model parameter set"
                raise NnrError(msg)
            parameters = layer if layer is not None else model
            header = syntax.read_data_unit_header(data, unit, profile, parameters, names)
            if header.name in seen:
                msg = f"NNR data unit {header.name!r} appears twice"
                raise NnrError(msg)
            seen.add(header.name)
            elements += header.elements
            if elements > limit:
                msg = (
                    f"NNR data unit {header.name!r}: the stream decodes to more than {limit:,} elements "
                    f"({elements:,} so far); pass max_elements to allow more"
                )
                raise NnrError(msg)
            jobs.append((unit, header, parameters))
        else:
            msg = f"NNR unit at byte {offset}: {kind} units are not supported"
            raise NnrUnsupportedError(msg)
        offset += unit.size
    if profile is None:
        msg = "empty NNR bitstream"
        raise NnrError(msg)
    stream_profile = profile

    def decode_unit(
        job: tuple[syntax.UnitHeader, DataUnitHeader, ParameterSet],
    ) -> tuple[np.ndarray, TensorInfo, np.ndarray | None]:
        unit, header, parameters = job
        previous = chain.levels.get(header.name) if chain is not None else None
        if previous is not None and previous.size != header.elements:
            msg = f"NNR data unit {header.name!r}: its previous update in the chain has another shape"
            raise NnrError(msg)
        return _decode_tensor(data, unit, header, stream_profile, parameters, previous)

    def cost(job: tuple[syntax.UnitHeader, DataUnitHeader, ParameterSet]) -> int:
        return 4 * job[1].elements

    tensors: dict[str, np.ndarray] = {}
    infos: list[TensorInfo] = []
    # By default small streams stay on one thread: starting a pool costs more than it saves there.
    default_workers = (os.cpu_count() or 1) if elements >= PARALLEL_MIN_ELEMENTS else 1
    coded_levels: dict[str, np.ndarray] = {}
    for tensor, info, levels in ordered_map(decode_unit, jobs, threads or default_workers, cost):
        tensors[info.name] = tensor
        infos.append(info)
        if levels is not None:
            coded_levels[info.name] = levels
        if progress is not None:
            progress(info.name)
    if chain is not None:
        chain.levels.update(coded_levels)
    return tensors, StreamInfo(profile, units, infos)


def decode(
    data: bytes, *, max_elements: int | None = None, threads: int | None = None
) -> dict[str, np.ndarray]:
    """The tensors of an NNR bitstream, by name, as NNCodec 2.1.3 decodes them (float32; int32 for
    integer payloads).

    >>> import numpy as np
    >>> from nnsqueeze import nnr
    >>> stream = nnr.encode({"w": np.eye(3, dtype=np.float32), "n": np.arange(4, dtype=np.int32)})
    >>> sorted(nnr.decode(stream).items())[0]
    ('n', array([0, 1, 2, 3], dtype=int32))
    """
    return read(data, max_elements=max_elements, threads=threads)[0]


def _decode_tensor(
    data: bytes,
    unit: syntax.UnitHeader,
    header: DataUnitHeader,
    profile: int,
    parameters: ParameterSet,
    previous: np.ndarray | None,
) -> tuple[np.ndarray, TensorInfo, np.ndarray | None]:
    """The tensor, its description and its levels (None for raw floats)."""
    where = f"NNR data unit {header.name!r}"
    end = unit.offset + unit.size
    shape = header.shape
    if header.payload_type == PayloadType.RAW_FLOAT:
        count = header.elements
        if header.payload_offset + 4 * count != end:
            msg = f"{where}: raw float payload of {end - header.payload_offset} bytes for {count} values"
            raise NnrError(msg)
        raw = np.frombuffer(data, dtype="<f4", count=count, offset=header.payload_offset).astype(np.float32)
        info = TensorInfo(
            header.name, shape, "raw float", None, None, None, False, 0, 0, False, 0, 0, unit.size
        )
        return raw.reshape(shape), info, None
    if header.temporal_context and previous is None:
        msg = (
            f"{where}: coded with temporal context adaptation against the previous update of this tensor; "
            "decode the chain's earlier updates first (one nnr.UpdateChain; in the CLI, --base for each)"
        )
        raise NnrError(msg)
    if header.codebook is not None and header.dependent:
        msg = f"{where}: codebooks with dependent quantization are not supported"
        raise NnrUnsupportedError(msg)
    rows = shape[0]
    cols = math.prod(shape[1:])  # 1 for a 1-D tensor
    is_float = header.payload_type == PayloadType.FLOAT
    dependent = header.dependent and is_float
    blocks = _core.nnr_block_rows(rows, cols, header.scan_order) > 0
    levels = np.empty(rows * cols, dtype=np.int32)
    payload = np.frombuffer(
        data, dtype=np.uint8, count=end - header.payload_offset, offset=header.payload_offset
    )
    codebook = header.codebook
    try:
        qp_offset, _, row_skipping, skipped_rows, tuned = _core.nnr_decode_tensor(
            payload,
            rows,
            cols,
            6 + parameters.qp_density if is_float else 0,
            dependent,
            header.scan_order if blocks else 0,
            profile,
            header.parent_node_id_present,
            len(codebook.values) if codebook and profile == 1 else 0,
            codebook.zero_offset if codebook and profile == 1 else 0,
            header.unary_length,
            header.entry_point_offsets if blocks else [],
            header.entry_point_values if blocks else [],
            header.entry_point_states if blocks else [],
            levels,
            previous if header.temporal_context else None,
        )
    except _core.CoreBitstreamError as exc:
        msg = f"{where}: {exc}"
        raise NnrError(msg) from None
    except ValueError as exc:
        msg = f"{where}: {exc}"
        raise NnrUnsupportedError(msg) from None
    qp = step = None
    values: np.ndarray
    if is_float:
        qp = parameters.qp + qp_offset
        step = step_of(qp, parameters.qp_density)
        if not FLOAT32_TINY <= step <= FLOAT32_MAX:
            msg = f"{where}: QP {qp} gives a step of {step:.3g}, outside float32"
            raise NnrError(msg)
        if codebook is not None:
            index = levels.astype(np.int64) + codebook.zero_offset
            if index.size and (index.min() < 0 or index.max() >= len(codebook.values)):
                msg = f"{where}: level outside its codebook"
                raise NnrError(msg)
            book = np.asarray(codebook.values, dtype=np.float64) * step
            with np.errstate(over="ignore"):  # checked below
                values = book[index].astype(np.float32)
        else:
            with np.errstate(over="ignore"):
                values = levels.astype(np.float32) * np.float32(step)
        if not np.isfinite(values).all():
            msg = f"{where}: levels times the step {step:.3g} overflow float32"
            raise NnrError(msg)
    else:
        values = levels  # integer payloads stay int32
    info = TensorInfo(
        header.name,
        shape,
        "float" if is_float else "int",
        qp,
        parameters.qp_density if is_float else None,
        step,
        dependent,
        header.scan_order if blocks else 0,
        len(codebook.values) if codebook else 0,
        bool(row_skipping),
        int(skipped_rows),
        int(tuned),
        unit.size,
        header.temporal_context,
    )
    return values.reshape(shape), info, levels
