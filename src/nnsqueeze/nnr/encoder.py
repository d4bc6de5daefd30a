"""Writing NNR bitstreams that NNCodec 2.1.3 (and :func:`nnsqueeze.nnr.decode`) decode.

The stream is what NNCodec writes for a dict of tensors: a start unit (profile 1), a model parameter set
(uniform quantization, ``qp_density``, the model QP), an unrecognised-topology unit, then one compressed
data unit per tensor.

- Float tensors with two or more dimensions are coded at ``qp``. 1-D tensors and scalars are coded at
  ``nonweight_qp`` (NNCodec's default of -75 is near lossless).
- A tensor whose values would need levels beyond 2^29 at its QP gets the finest QP that avoids that, as
  NNCodec clips its QPs.
- Integer tensors are coded exactly (``NNR_PT_INT``).
- Levels come from plain rounding or from an 8-state dependent-quantization trellis (the default, like
  NNCodec's).
- Each tensor's estimator parameters are chosen by coding it with all nine sets. All-zero rows are
  skipped.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from nnsqueeze import _core
from nnsqueeze.errors import ConfigError, TensorError
from nnsqueeze.nnr.decoder import step_of
from nnsqueeze.nnr.syntax import PayloadType, TopologyFormat, UnitType
from nnsqueeze.quant.allocation import allocate_steps, check_strength, weight_statistics

DEFAULT_QP = -28
DEFAULT_QP_DENSITY = 2
DEFAULT_NONWEIGHT_QP = -75
UNARY_LENGTH = 11  # cabac_unary_length_minus1 = 10, as NNCodec writes
SHORT_UNIT_LIMIT = 1 << 15
LEVEL_LIMIT = (1 << 29) - 8  # |weight| / step; the trellis may step 2 levels beyond it


class BitWriter:
    """Fields MSB first: u(n), i(n), ue(k), st(v), byte alignment."""

    def __init__(self) -> None:
        self.bits: list[int] = []

    def u(self, n: int, value: int) -> None:
        if not 0 <= value < 1 << n:
            msg = f"value {value} does not fit u({n})"
            raise ConfigError(msg)
        self.bits.extend((value >> (n - 1 - i)) & 1 for i in range(n))

    def i(self, n: int, value: int) -> None:
        if not -(1 << (n - 1)) <= value < 1 << (n - 1):
            msg = f"value {value} does not fit i({n})"
            raise ConfigError(msg)
        self.u(n, value & ((1 << n) - 1))

    def ue(self, k: int, value: int) -> None:
        while value >= 1 << k:
            self.bits.append(0)
            value -= 1 << k
            k += 1
        self.bits.append(1)
        if k:
            self.u(k, value)

    def align(self) -> None:
        self.bits.append(1)
        while len(self.bits) % 8:
            self.bits.append(0)

    def string(self, text: str) -> None:
        if len(self.bits) % 8:
            msg = "string field not byte aligned"
            raise ConfigError(msg)
        raw = text.encode("utf-8")
        if b"\x00" in raw:
            msg = f"tensor name {text!r} contains a zero byte"
            raise TensorError(msg)
        for byte in [*raw, 0]:
            self.u(8, byte)

    def to_bytes(self) -> bytes:
        if len(self.bits) % 8:
            msg = "unit header not byte aligned"
            raise ConfigError(msg)
        packed = np.packbits(np.asarray(self.bits, dtype=np.uint8))
        return packed.tobytes()


def _unit(unit_type: UnitType, body: bytes) -> bytes:
    """nnr_unit_size + nnr_unit_header (independently decodable, no partial data counter) + body."""
    header = bytes([(unit_type << 2) | 0b10])
    size = 2 + len(header) + len(body)
    if size < SHORT_UNIT_LIMIT:
        return size.to_bytes(2, "big") + header + body
    size += 2
    if size >= 1 << 31:
        msg = f"an NNR unit of {size} bytes is too large for nnr_unit_size"
        raise TensorError(msg)
    return (size | (1 << 31)).to_bytes(4, "big") + header + body


def _model_parameter_set(qp_density: int, qp: int) -> bytes:
    w = BitWriter()
    w.u(1, 1)  # topology_carriage_flag: a topology unit follows
    w.u(4, 0)  # no sparsification, pruning, unification or decomposition performance maps
    w.u(3, 1)  # mps_quantization_method_flags: scalar uniform
    w.u(1, 0)  # mps_topology_indexed_reference_flag: data units carry names
    w.u(4, 0)  # base model id, validation performance, metric type, parent signalling: absent
    w.u(3, 0)  # reserved
    w.u(3, qp_density)
    w.i(13, qp)
    w.align()
    return w.to_bytes()


def _topology() -> bytes:
    return bytes([TopologyFormat.UNRECOGNISED, 0]) + b"\x00"  # storage, compression format, empty data


def _data_unit_header(name: str, payload_type: PayloadType, dependent: bool, shape: tuple[int, ...]) -> bytes:
    w = BitWriter()
    w.u(5, payload_type)
    w.u(1, 0)  # one tensor
    w.u(1, 0)  # no decompressed data format
    w.u(1, 1)  # input_parameters_present_flag
    w.string(name)
    w.u(1, 0)  # node_id_present_flag
    if payload_type == PayloadType.FLOAT:
        w.u(1, 0)  # codebook_present_flag
    w.u(1, int(dependent))
    w.u(1, 1)  # tensor_dimensions_flag
    w.u(1, 1)  # cabac_unary_length_flag
    w.u(4, 0)  # compressed_parameter_types
    w.ue(1, len(shape))
    for d in shape:
        w.ue(7, d)
    w.u(8, UNARY_LENGTH - 1)
    if len(shape) > 1:
        w.ue(1, 0)  # first_tensor_dimension_shift
        w.u(4, 0)  # scan_order: row by row
    w.align()
    return w.to_bytes()


def _nearest_qp(step: float, qp_density: int, lowest: int, highest: int) -> int:
    """The QP whose step is nearest ``step`` in log scale, within [lowest, highest]."""
    k = 1 << qp_density
    guess = round(k * math.log2(step))
    candidates = [q for q in range(guess - 2 * k, guess + 2 * k + 1) if lowest <= q <= highest] or [
        min(max(guess, lowest), highest)
    ]
    return min(candidates, key=lambda q: abs(math.log(step_of(q, qp_density) / step)))


def _levels(
    flat: np.ndarray, rows: int, cols: int, step: float, dependent: bool, lambda_: float
) -> np.ndarray:
    """Levels of finite float32 values (``flat``, rows x cols in row-major order) at ``step``."""
    if dependent:
        levels = np.empty(flat.size, dtype=np.int32)
        try:
            _core.nnr_dependent_quantize(flat, rows, cols, step, lambda_, levels)
        except ValueError as exc:
            raise TensorError(str(exc)) from None
        return levels
    scaled = np.rint(flat.astype(np.float64) / step)
    if np.abs(scaled).max(initial=0) > (1 << 29) - 1:
        msg = (
            f"weights up to {np.abs(flat).max():.3g} need levels beyond 2^29 at step {step:.3g}: raise the QP"
        )
        raise TensorError(msg)
    return scaled.astype(np.int32)


def encode(
    tensors: Mapping[str, np.ndarray],
    *,
    qp: int = DEFAULT_QP,
    qp_density: int = DEFAULT_QP_DENSITY,
    nonweight_qp: int = DEFAULT_NONWEIGHT_QP,
    dependent: bool = True,
    lambda_: float = 0.0,
    choose_estimators: bool = True,
    step_allocation: float = 0.0,
) -> bytes:
    """An NNR bitstream of ``tensors`` (name -> float or integer array).

    ``step_allocation`` > 0 gives each weight tensor its own QP (NNR signals one per tensor): the
    data-free allocation of :func:`nnsqueeze.quant.allocation.allocate_steps` at that strength,
    rounded to the nearest QP at ``qp_density``.

    >>> import numpy as np
    >>> from nnsqueeze import nnr
    >>> w = {"fc.weight": np.linspace(-1, 1, 600, dtype=np.float32).reshape(20, 30)}
    >>> stream = nnr.encode(w, qp=-20)
    >>> bool(np.abs(nnr.decode(stream)["fc.weight"] - w["fc.weight"]).max() <= 2 * nnr.step_of(-20, 2))
    True
    """
    if not 0 <= qp_density <= 7:
        msg = f"qp_density must be in 0..7, got {qp_density}"
        raise ConfigError(msg)
    offset_bits = 6 + qp_density
    half = 1 << (offset_bits - 1)
    for which, value in (("qp", qp), ("nonweight_qp", nonweight_qp)):
        if not -half <= value - qp < half or not -(1 << 12) <= value < 1 << 12:
            msg = (
                f"{which} {value} is outside what NNR signals relative to qp {qp} at qp_density {qp_density}"
            )
            raise ConfigError(msg)
    check_strength(step_allocation)
    floats = ((name, np.asarray(a)) for name, a in tensors.items())
    # weight_statistics keeps the tensors of two or more dimensions
    stats = weight_statistics((name, a.astype(np.float32)) for name, a in floats if a.dtype.kind == "f")
    allocated = allocate_steps(stats, step_of(qp, qp_density), step_allocation)
    qps = {
        name: _nearest_qp(step, qp_density, qp - half + 1, qp + half - 1) for name, step in allocated.items()
    }
    units = [
        _unit(UnitType.STR, bytes([1])),
        _unit(UnitType.MPS, _model_parameter_set(qp_density, qp)),
        _unit(UnitType.TPL, _topology()),
    ]
    for name, array in tensors.items():
        values = np.asarray(array)
        shape = tuple(int(d) for d in values.shape) or (1,)
        rows = shape[0]
        cols = math.prod(shape[1:])  # 1 for a 1-D tensor
        if values.dtype.kind in "iub":
            flat = values.reshape(-1).astype(np.int64)
            if flat.size and np.abs(flat).max() > (1 << 29) - 1:
                msg = f"tensor {name!r}: integers beyond +-(2^29 - 1) do not fit NNR levels"
                raise TensorError(msg)
            header = _data_unit_header(name, PayloadType.INT, False, shape)
            payload = _core.nnr_encode_tensor(
                flat.astype(np.int32), rows, cols, 0, 0, False, UNARY_LENGTH, choose_estimators
            )
        elif values.dtype.kind == "f":
            weights = np.ascontiguousarray(values, dtype=np.float32).reshape(-1)
            if not np.isfinite(weights).all():
                msg = f"tensor {name!r}: NNR coding needs finite weights"
                raise TensorError(msg)
            tensor_qp = qps.get(name, qp) if values.ndim > 1 else nonweight_qp
            # Like NNCodec, a tensor whose values would need levels beyond the coder's range gets a coarser
            # QP (a batch norm's running variance at the near-lossless 1-D step, say).
            peak = float(np.abs(weights).max(initial=0.0))
            while peak / step_of(tensor_qp, qp_density) > LEVEL_LIMIT and tensor_qp < qp + half - 1:
                tensor_qp += 1
            levels = _levels(weights, rows, cols, step_of(tensor_qp, qp_density), dependent, lambda_)
            header = _data_unit_header(name, PayloadType.FLOAT, dependent, shape)
            payload = _core.nnr_encode_tensor(
                levels, rows, cols, offset_bits, tensor_qp - qp, dependent, UNARY_LENGTH, choose_estimators
            )
        else:
            msg = f"tensor {name!r}: dtype {values.dtype} cannot be coded as NNR"
            raise TensorError(msg)
        units.append(_unit(UnitType.NDU, header + payload))
    return b"".join(units)
