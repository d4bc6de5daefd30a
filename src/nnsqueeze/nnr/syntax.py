"""The high-level syntax of MPEG NNR (ISO/IEC 15938-17): NNR units and their headers.

A bitstream is a sequence of NNR units.  Each starts with its size (a flag, then 15 or 31 bits; the size
counts the whole unit) and a header (a 6-bit type, two flags, an optional partial-data counter), followed
by the type's own header and payload:

- ``NNR_STR`` (0), start unit: ``general_profile_idc``;
- ``NNR_MPS`` (1), model parameter set: quantization method flags, ``qp_density`` and the model QP;
- ``NNR_LPS`` (2), layer parameter set: the same for the compressed data units that follow it;
- ``NNR_TPL`` (3), topology: its storage format, and for ``NNR_TPL_REFLIST`` the tensor names;
- ``NNR_NDU`` (5), compressed data unit: one tensor's name, shape, quantization and scan syntax, then its
  payload (an arithmetic-coded stream, or raw float32 values).

The field order follows NNCodec 2.1.3, the standard's open implementation.  Fields for tools outside what
nnsqueeze decodes raise :class:`~nnsqueeze.errors.NnrUnsupportedError` with the tool's name.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field

from nnsqueeze.errors import NnrError, NnrUnsupportedError
from nnsqueeze.nnr.bits import BitReader

# Dimensions and counts larger than this are refused before anything is allocated.
MAX_DIMENSION = 1 << 40
MAX_DIMENSIONS = 32


class UnitType(enum.IntEnum):
    STR = 0
    MPS = 1
    LPS = 2
    TPL = 3
    QNT = 4
    NDU = 5
    AGG = 6


class PayloadType(enum.IntEnum):
    INT = 0
    FLOAT = 1
    RAW_FLOAT = 2
    BLOCK = 3


class TopologyFormat(enum.IntEnum):
    UNRECOGNISED = 0
    NNEF = 1
    ONNX = 2
    PYTORCH = 3
    TENSORFLOW = 4
    PRUNING = 5
    REFERENCE_LIST = 6


# mps/lps_quantization_method_flags
QUANT_SCALAR_UNIFORM = 1
QUANT_CODEBOOK = 2
# compressed_parameter_types
PARAMETER_DECOMPOSED = 1


@dataclass(frozen=True)
class UnitHeader:
    """Where a unit lies in the stream and what it is."""

    type: int
    offset: int  # of its first byte in the stream
    size: int  # nnr_unit_size: the whole unit, size field included
    body: int  # offset of the first byte after the generic unit header
    independently_decodable: bool


@dataclass(frozen=True)
class ParameterSet:
    """What an MPS or LPS says about the quantization of the data units after it."""

    quantization_method_flags: int
    qp_density: int
    qp: int
    topology_indexed: bool = False
    parent_signalling: bool = False


@dataclass(frozen=True)
class Codebook:
    values: tuple[int, ...]
    zero_offset: int


@dataclass(frozen=True)
class DataUnitHeader:
    """The header of an NNR compressed data unit (one tensor)."""

    name: str
    payload_type: PayloadType
    dependent: bool
    shape: tuple[int, ...]
    unary_length: int  # cabac_unary_length_minus1 + 1
    scan_order: int
    codebook: Codebook | None
    parent_node_id_present: bool
    temporal_context: bool
    entry_point_offsets: list[int] = field(default_factory=list)
    entry_point_values: list[int] = field(default_factory=list)
    entry_point_states: list[int] = field(default_factory=list)
    payload_offset: int = 0  # of the first payload byte in the stream

    @property
    def elements(self) -> int:
        return math.prod(self.shape)


def read_unit_header(data: bytes, offset: int) -> UnitHeader:
    """nnr_unit_size() and nnr_unit_header()'s common part of the unit at ``offset``."""
    reader = BitReader(data, offset, what=f"NNR unit at byte {offset}")
    long_size = reader.u(1)
    size = reader.u(15 + 16 * long_size)
    unit_type = reader.u(6)
    independently_decodable = bool(reader.u(1))
    if reader.u(1):  # partial_data_counter_present_flag
        msg = f"NNR unit at byte {offset}: partial data units are not supported"
        raise NnrUnsupportedError(msg)
    body = reader.byte_position
    if size < body - offset:
        msg = f"NNR unit at byte {offset}: nnr_unit_size {size} is shorter than its own header"
        raise NnrError(msg)
    if offset + size > len(data):
        msg = (
            f"NNR unit at byte {offset}: nnr_unit_size {size} runs past the end of the stream "
            f"({len(data) - offset} bytes left; truncated)"
        )
        raise NnrError(msg)
    return UnitHeader(unit_type, offset, size, body, independently_decodable)


def read_start_unit(data: bytes, unit: UnitHeader) -> int:
    """general_profile_idc of an NNR_STR unit."""
    reader = BitReader(data, unit.body, unit.offset + unit.size, what="NNR start unit")
    profile = reader.u(8)
    if profile not in (0, 1):
        msg = f"NNR start unit: general_profile_idc {profile} is not supported (0 and 1 are)"
        raise NnrUnsupportedError(msg)
    return profile


def _refuse_performance_maps(what: str, flags: dict[str, int]) -> None:
    present = [name for name, value in flags.items() if value]
    if present:
        msg = f"{what}: performance maps ({', '.join(present)}) are not supported"
        raise NnrUnsupportedError(msg)


def read_model_parameter_set(data: bytes, unit: UnitHeader, profile: int) -> ParameterSet:
    reader = BitReader(data, unit.body, unit.offset + unit.size, what="NNR model parameter set")
    reader.u(1)  # topology_carriage_flag
    maps = {
        "sparsification": reader.u(1),
        "pruning": reader.u(1),
        "unification": reader.u(1),
        "decomposition": reader.u(1),
    }
    method_flags = reader.u(3)
    topology_indexed = bool(reader.u(1))
    parent_signalling = False
    if profile == 1:
        base_model_id_present = reader.u(1)
        validation_performance = reader.u(1)
        metric_type_valid = reader.u(1)
        parent_signalling = bool(reader.u(1))
        reader.u(1)  # nnr_pre_flag or reserved
        reader.u(2)
        if base_model_id_present:
            reader.string()
        if validation_performance or metric_type_valid:
            reader.string()  # performance_metric_type
    else:
        reader.u(7)
        validation_performance = 0
    qp_density, qp = _read_quantization(reader, method_flags)
    _refuse_performance_maps("NNR model parameter set", maps)
    if profile == 1 and validation_performance:
        reader.float32()
    reader.align()
    return ParameterSet(method_flags, qp_density, qp, topology_indexed, parent_signalling)


def read_layer_parameter_set(data: bytes, unit: UnitHeader, model: ParameterSet) -> ParameterSet:
    reader = BitReader(data, unit.body, unit.offset + unit.size, what="NNR layer parameter set")
    reader.u(8)  # lps_self_contained_flag, reserved
    reader.u(1)
    maps = {"sparsification": reader.u(1), "pruning": reader.u(1), "unification": reader.u(1)}
    method_flags = reader.u(3)
    reader.u(1)
    qp_density, qp = _read_quantization(reader, method_flags)
    _refuse_performance_maps("NNR layer parameter set", maps)
    reader.align()
    return ParameterSet(method_flags, qp_density, qp, model.topology_indexed, model.parent_signalling)


def _read_quantization(reader: BitReader, method_flags: int) -> tuple[int, int]:
    if method_flags & (QUANT_SCALAR_UNIFORM | QUANT_CODEBOOK):
        return reader.u(3), reader.i(13)
    return 0, 0


def read_topology(data: bytes, unit: UnitHeader) -> list[str] | None:
    """The tensor names of an ``NNR_TPL_REFLIST`` topology unit; None for other formats, whose topology
    data nnsqueeze does not need (the data units carry the tensor names)."""
    reader = BitReader(data, unit.body, unit.offset + unit.size, what="NNR topology unit")
    storage = reader.u(8)
    reader.u(8)  # topology_compression_format
    if storage == TopologyFormat.PRUNING:
        msg = "NNR topology unit: pruning topology containers are not supported"
        raise NnrUnsupportedError(msg)
    if storage != TopologyFormat.REFERENCE_LIST:
        return None
    count = reader.ue(7) + 2
    reader.align()
    if count > unit.size:
        msg = f"NNR topology unit: {count} names cannot fit in {unit.size} bytes"
        raise NnrError(msg)
    return [reader.string() for _ in range(count)]


def read_data_unit_header(
    data: bytes, unit: UnitHeader, profile: int, parameters: ParameterSet, names: list[str] | None
) -> DataUnitHeader:
    """nnr_compressed_data_unit_header() of an NDU, up to the byte where its payload starts."""
    reader = BitReader(data, unit.body, unit.offset + unit.size, what=f"NNR data unit at byte {unit.offset}")
    payload = reader.u(5)
    try:
        payload_type = PayloadType(payload)
    except ValueError:
        msg = f"NNR data unit at byte {unit.offset}: unknown payload type {payload}"
        raise NnrError(msg) from None
    where = f"NNR data unit at byte {unit.offset}"
    if reader.u(1):  # nnr_multiple_topology_elements_present_flag
        msg = f"{where}: units with several tensors (NNR_PT_BLOCK, split tensors) are not supported"
        raise NnrUnsupportedError(msg)
    format_present = reader.u(1)
    input_parameters_present = reader.u(1)
    if parameters.topology_indexed:
        index = reader.ue(7)
        if names is None or index >= len(names):
            msg = f"{where}: topology element index {index} without a matching NNR_TPL_REFLIST entry"
            raise NnrError(msg)
        name = names[index]
    else:
        name = reader.string()
    where = f"NNR data unit {name!r}"
    parent_present = temporal = False
    if profile == 1:
        node_id_present = reader.u(1)
        if node_id_present:
            reader.ue(1)  # device_id
            reader.ue(5)  # parameter_id
            reader.ue(4)  # put_node_depth
        if parameters.parent_signalling:
            parent_present = bool(reader.u(1))
            if parent_present:
                parent_type = reader.u(2)
                temporal = bool(reader.u(1))
                if parent_type == 0:
                    reader.ue(1)  # parent_device_id
                    if not node_id_present:
                        reader.ue(5)
                        reader.ue(4)
                elif parent_type in (1, 2):
                    reader.u(256 * parent_type)  # SHA-256 / SHA-512 of the parent payload
                else:
                    msg = f"{where}: unknown parent_node_id_type {parent_type}"
                    raise NnrError(msg)
    codebook = None
    if payload_type in (PayloadType.FLOAT, PayloadType.BLOCK) and reader.u(1):
        codebook = _read_codebook(reader, where)
    dependent = False
    if payload_type in (PayloadType.INT, PayloadType.FLOAT, PayloadType.BLOCK):
        dependent = bool(reader.u(1))
    if format_present:
        reader.u(7)  # nnr_decompressed_data_format: nnsqueeze returns float32 (int32 for integer payloads)
    if not input_parameters_present:
        msg = (
            f"{where}: tensor parameters sent out of band (input_parameters_present_flag "
            "= 0) are not supported"
        )
        raise NnrUnsupportedError(msg)
    dims_present = reader.u(1)
    unary_present = reader.u(1)
    parameter_types = reader.u(4)
    if parameter_types & PARAMETER_DECOMPOSED:
        msg = f"{where}: low-rank decomposed tensors are not supported"
        raise NnrUnsupportedError(msg)
    if not dims_present:
        msg = f"{where}: tensor dimensions sent out of band are not supported"
        raise NnrUnsupportedError(msg)
    count = reader.ue(1)
    if not 1 <= count <= MAX_DIMENSIONS:
        msg = f"{where}: {count} tensor dimensions (1..{MAX_DIMENSIONS} are accepted)"
        raise NnrError(msg)
    shape = tuple(reader.ue(7) for _ in range(count))
    if any(d > MAX_DIMENSION for d in shape):
        msg = f"{where}: tensor dimension above {MAX_DIMENSION} in {shape}"
        raise NnrError(msg)
    unary_length = 10
    if unary_present:
        unary_length = reader.u(8) + 1
    scan_order = 0
    offsets: list[int] = []
    values: list[int] = []
    states: list[int] = []
    if count > 1:
        if profile == 1 and reader.ue(1) != 0:
            msg = f"{where}: first_tensor_dimension_shift is not supported"
            raise NnrUnsupportedError(msg)
        scan_order = reader.u(4)
        if scan_order > 4:
            msg = f"{where}: scan_order {scan_order} is not defined (0..4)"
            raise NnrError(msg)
        if scan_order > 0:
            side = 4 << scan_order
            block_rows_minus1 = (shape[0] + side - 1) // side - 1
            if block_rows_minus1 > unit.size * 8:
                msg = f"{where}: {block_rows_minus1} entry points cannot fit in the unit"
                raise NnrError(msg)
            offset = 0
            for j in range(block_rows_minus1):
                values.append(reader.u(8))
                states.append(reader.u(3) if dependent else 0)
                offset = reader.ue(11) if j == 0 else offset + reader.ie(7)
                if offset < 0:
                    msg = f"{where}: negative entry point offset"
                    raise NnrError(msg)
                offsets.append(offset)
    reader.align()
    return DataUnitHeader(
        name,
        payload_type,
        dependent,
        shape,
        unary_length,
        scan_order,
        codebook,
        parent_present,
        temporal,
        offsets,
        values,
        states,
        reader.byte_position,
    )


def _read_codebook(reader: BitReader, where: str) -> Codebook:
    egk = reader.u(4)
    size = reader.ue(2)
    if size > 1 << 16:
        msg = f"{where}: codebook of {size} entries"
        raise NnrError(msg)
    zero_offset = (size >> 1) + reader.ie(2)
    if not 0 <= zero_offset < max(size, 1):
        msg = f"{where}: codebook zero offset {zero_offset} outside its {size} entries"
        raise NnrError(msg)
    values = [0] * size
    if size:
        values[zero_offset] = reader.ie(7)
        for j in range(zero_offset - 1, -1, -1):
            values[j] = values[j + 1] - reader.ue(egk) - 1
        for j in range(zero_offset + 1, size):
            values[j] = values[j - 1] + reader.ue(egk) + 1
    return Codebook(tuple(values), zero_offset)
