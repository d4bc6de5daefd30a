"""Compressors of model updates: each turns a list of float32 tensors into real bytes and back.

A message carries only what the receiver cannot know: the tensors' shapes are agreed (both sides hold
the model), so the wire format is

``b"FU"``, version (1 byte), method id (1 byte), per tensor a varint payload length, the payloads,
and a CRC-32 of everything before it (4 bytes, little-endian).

Per-tensor payloads (``k`` nonzeros out of ``N``, positions Rice-coded with the optimal parameter
for ``k / N``, which both sides compute, see :mod:`.golomb`):

* ``identity``: ``N`` float32 values (little-endian);
* ``topk``: varint ``k``, positions, ``k`` float32 values (gradient dropping; also the wire format
  of DGC);
* ``sbc``: varint ``k``, signed float32 mean, positions (sparse binary compression);
* ``stc``: varint ``k``, float32 mean of ``|x|``, positions, ``k`` sign bits (sparse ternary
  compression);
* ``cabac``: float32 step, then the levels ``round(x / step)`` coded by the CABAC level coder;
* ``cabac-prev``: as ``cabac``, the levels coded with contexts conditioned on the previous global
  update (both sides must hold the same one, see :class:`CabacPreviousUpdate`).

``nnsq-update`` messages are not framed this way: each is an ``.nnsq`` update file of the model both
sides hold (:class:`NnsqUpdate`), which ``nnsqueeze decompress --base`` applies as well.

Sizes are therefore measured on the bytes that travel (``len(message)``), never estimated.

>>> import numpy as np
>>> c = SparseTernary(sparsity=0.1)
>>> update = [np.linspace(-1, 1, 50, dtype=np.float32).reshape(5, 10)]
>>> message = c.encode(update)
>>> decoded = c.decode(message, [(5, 10)])
>>> int(np.count_nonzero(decoded[0])), len(message) < 50 * 4
(5, True)
"""

from __future__ import annotations

import dataclasses
import math
import struct
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from nnsqueeze.coding import decode_levels, encode_levels
from nnsqueeze.coding.bytestream import CRC_BYTES, ByteReader, crc32, uvarint
from nnsqueeze.coding.cabac import decode_levels_hinted, encode_levels_hinted
from nnsqueeze.errors import BitstreamError, ConfigError, TensorError
from nnsqueeze.fl.golomb import decode_positions, encode_positions, optimal_rice_parameter
from nnsqueeze.io import NamedTensor
from nnsqueeze.quant import quantize
from nnsqueeze.update import DEFAULT_UPDATE_QP, DELTA, UNCHANGED, compress_update, update_records

MAGIC = b"FU"
WHOLE_MODEL = 0x80  # method-byte flag of whole-model sparsification
VERSION = 2  # 2: the Rice parameter is no longer sent (it follows from k and the size)
Shape = tuple[int, ...]


def _size(shape: Shape) -> int:
    return math.prod(shape)


def _top_k(flat: np.ndarray, k: int) -> np.ndarray:
    """Sorted indices of the ``k`` largest entries of ``flat`` (ties broken by position)."""
    if k >= flat.size:
        return np.arange(flat.size, dtype=np.int64)
    idx = np.argpartition(-flat, k - 1, kind="introselect")[:k]
    return np.sort(idx).astype(np.int64)


def count_for(sparsity: float, size: int) -> int:
    """``k = ceil(p * N)`` kept entries per tensor (at least one)."""
    return min(size, max(1, math.ceil(sparsity * size)))


class Compressor(ABC):
    """Codes one tensor at a time; :meth:`encode` / :meth:`decode` frame a whole update."""

    name: ClassVar[str]
    method_id: ClassVar[int]

    @abstractmethod
    def encode_tensor(self, values: np.ndarray) -> bytes:
        """Codes a float32 tensor (any shape) into a payload."""

    @abstractmethod
    def decode_tensor(self, payload: bytes, shape: Shape) -> np.ndarray:
        """Decodes a payload into a float32 tensor of ``shape``."""

    def encode(self, tensors: Sequence[np.ndarray]) -> bytes:
        """Frames the payloads of ``tensors`` into one checksummed message."""
        return self._frame([self.encode_tensor(np.asarray(t, dtype=np.float32)) for t in tensors])

    @property
    def wire_id(self) -> int:
        """The method byte of this compressor's messages."""
        return self.method_id

    def _frame(self, payloads: Sequence[bytes]) -> bytes:
        out = bytearray(MAGIC)
        out += bytes((VERSION, self.wire_id))
        for p in payloads:
            out += uvarint(len(p))
        for p in payloads:
            out += p
        out += crc32(out)
        return bytes(out)

    def decode(self, message: bytes, shapes: Sequence[Shape]) -> list[np.ndarray]:
        """Decodes a message of :meth:`encode`; raises :class:`BitstreamError` if it is corrupt."""
        chunks = self._unframe(message, len(shapes))
        return [self.decode_tensor(c, tuple(s)) for c, s in zip(chunks, shapes, strict=True)]

    def _unframe(self, message: bytes, count: int) -> list[bytes]:
        """The per-tensor payloads of a message, after checking its checksum, version and method."""
        if len(message) < 8 or message[:2] != MAGIC:
            msg = f"not an nnsqueeze update message ({len(message)} bytes)"
            raise BitstreamError(msg)
        body = message[:-CRC_BYTES]
        if crc32(body) != message[-CRC_BYTES:]:
            msg = "update message checksum mismatch (corrupt or truncated in transit)"
            raise BitstreamError(msg)
        if body[2] != VERSION or body[3] != self.wire_id:
            msg = f"update message is version {body[2]} method {body[3]}, expected {VERSION}/{self.wire_id}"
            raise BitstreamError(msg)
        reader = ByteReader(body[4:], "update message")
        lengths = [reader.uvarint() for _ in range(count)]
        chunks = [reader.take(n) for n in lengths]
        if reader.pos != len(reader.data):
            msg = f"update message has {len(reader.data) - reader.pos} trailing bytes"
            raise BitstreamError(msg)
        return chunks

    def roundtrip(self, tensors: Sequence[np.ndarray]) -> tuple[bytes, list[np.ndarray]]:
        """The message and what the receiver decodes from it."""
        message = self.encode(tensors)
        return message, self.decode(message, [np.shape(t) for t in tensors])

    def for_model(self, model: Mapping[str, np.ndarray]) -> Compressor:
        """This compressor for messages that change ``model`` (the global model both sides hold, by
        name, in order); only coders that code against the model (:class:`NnsqUpdate`) use it."""
        return self


@dataclass(frozen=True)
class Identity(Compressor):
    """Dense float32: the FedAvg baseline (``4 N`` bytes per tensor)."""

    name: ClassVar[str] = "identity"
    method_id: ClassVar[int] = 0

    def encode_tensor(self, values: np.ndarray) -> bytes:
        return np.ascontiguousarray(values, dtype="<f4").tobytes()

    def decode_tensor(self, payload: bytes, shape: Shape) -> np.ndarray:
        if len(payload) != 4 * _size(shape):
            msg = f"identity payload has {len(payload)} bytes, expected {4 * _size(shape)}"
            raise BitstreamError(msg)
        return np.frombuffer(payload, dtype="<f4").astype(np.float32).reshape(shape)


def _check_sparsity(sparsity: float) -> None:
    if not 0 < sparsity <= 1:
        msg = f"sparsity (fraction of entries kept) must be in (0, 1], got {sparsity}"
        raise ConfigError(msg)


def _sparse_header(k: int, positions: np.ndarray, size: int) -> tuple[bytearray, bytes]:
    code, _ = encode_positions(positions, size)  # its Rice parameter follows from k and size
    head = bytearray()
    head += uvarint(k)
    return head, code


def _read_count(reader: ByteReader, shape: Shape) -> int:
    k = reader.uvarint()
    if k > _size(shape):
        msg = f"payload claims {k} nonzeros in a tensor of {_size(shape)} elements"
        raise BitstreamError(msg)
    return k


def _positions(reader: ByteReader, k: int, shape: Shape, tail: int) -> np.ndarray:
    """Decodes the positions that fill the payload except its last ``tail`` bytes."""
    code = reader.take(len(reader.data) - reader.pos - tail)
    size = _size(shape)
    rice = optimal_rice_parameter(k / size) if k else 0
    return decode_positions(code, count=k, size=size, rice=rice)


@dataclass(frozen=True)
class _Sparsifier(Compressor):
    """Top-k, SBC and STC: ``sparsity`` is the kept fraction ``p``.  With ``whole_model`` the
    selection runs once over the concatenation of all tensors (one count, one mean, one position code
    per message, method byte ``0x80 | method_id``) instead of per tensor: small models save the
    per-tensor overhead (about 7 bytes each), and layers compete for the budget."""

    sparsity: float = 0.01
    whole_model: bool = False

    def __post_init__(self) -> None:
        _check_sparsity(self.sparsity)

    @property
    def wire_id(self) -> int:
        return self.method_id | (WHOLE_MODEL if self.whole_model else 0)

    def encode(self, tensors: Sequence[np.ndarray]) -> bytes:
        if not self.whole_model:
            return super().encode(tensors)
        parts = [np.asarray(t, dtype=np.float32).reshape(-1) for t in tensors]
        return self._frame([self.encode_tensor(np.concatenate(parts) if parts else np.zeros(0, np.float32))])

    def decode(self, message: bytes, shapes: Sequence[Shape]) -> list[np.ndarray]:
        if not self.whole_model:
            return super().decode(message, shapes)
        sizes = [_size(tuple(s)) for s in shapes]
        (chunk,) = self._unframe(message, 1)
        flat = self.decode_tensor(chunk, (sum(sizes),))
        ends = np.cumsum(sizes)
        return [flat[e - n : e].reshape(tuple(s)) for n, e, s in zip(sizes, ends, shapes, strict=True)]


@dataclass(frozen=True)
class TopK(_Sparsifier):
    """Gradient dropping: the ``k = ceil(p N)`` largest ``|x|`` per tensor, values as float32."""

    name: ClassVar[str] = "topk"
    method_id: ClassVar[int] = 1

    def encode_tensor(self, values: np.ndarray) -> bytes:
        flat = values.reshape(-1)
        k = count_for(self.sparsity, flat.size)
        pos = _top_k(np.abs(flat), k)
        head, code = _sparse_header(k, pos, flat.size)
        return bytes(head) + code + bytes(flat[pos].astype("<f4").tobytes())

    def decode_tensor(self, payload: bytes, shape: Shape) -> np.ndarray:
        reader = ByteReader(payload, f"{self.name} payload")
        k = _read_count(reader, shape)
        pos = _positions(reader, k, shape, 4 * k)
        out = np.zeros(_size(shape), dtype=np.float32)
        out[pos] = np.frombuffer(reader.rest(), dtype="<f4")
        return out.reshape(shape)


@dataclass(frozen=True)
class SparseBinary(_Sparsifier):
    """SBC: top ``p`` of the positive and of the negative entries; the side with the larger mean
    magnitude is kept, every kept entry set to that signed mean (positions + one float)."""

    name: ClassVar[str] = "sbc"
    method_id: ClassVar[int] = 2

    def encode_tensor(self, values: np.ndarray) -> bytes:
        flat = values.reshape(-1).astype(np.float32)
        k = count_for(self.sparsity, flat.size)
        pos_idx = _top_k(flat, k)
        neg_idx = _top_k(-flat, k)
        pos_idx = pos_idx[flat[pos_idx] > 0]
        neg_idx = neg_idx[flat[neg_idx] < 0]
        mean_pos = float(flat[pos_idx].mean()) if pos_idx.size else 0.0
        mean_neg = float(-flat[neg_idx].mean()) if neg_idx.size else 0.0
        idx, mean = (pos_idx, mean_pos) if mean_pos >= mean_neg else (neg_idx, -mean_neg)
        head, code = _sparse_header(idx.size, idx, flat.size)
        return bytes(head) + struct.pack("<f", mean) + code

    def decode_tensor(self, payload: bytes, shape: Shape) -> np.ndarray:
        reader = ByteReader(payload, f"{self.name} payload")
        k = _read_count(reader, shape)
        (mean,) = struct.unpack("<f", reader.take(4))
        pos = _positions(reader, k, shape, 0)
        out = np.zeros(_size(shape), dtype=np.float32)
        out[pos] = mean
        return out.reshape(shape)


@dataclass(frozen=True)
class SparseTernary(_Sparsifier):
    """STC: top ``p`` by ``|x|``, every kept entry set to ``mu * sign(x)`` with ``mu`` their mean ``|x|``."""

    name: ClassVar[str] = "stc"
    method_id: ClassVar[int] = 3

    def encode_tensor(self, values: np.ndarray) -> bytes:
        flat = values.reshape(-1).astype(np.float32)
        k = count_for(self.sparsity, flat.size)
        idx = _top_k(np.abs(flat), k)
        mu = float(np.abs(flat[idx]).mean())
        head, code = _sparse_header(k, idx, flat.size)
        signs = np.packbits(flat[idx] < 0).tobytes()
        return bytes(head) + struct.pack("<f", mu) + code + signs

    def decode_tensor(self, payload: bytes, shape: Shape) -> np.ndarray:
        reader = ByteReader(payload, f"{self.name} payload")
        k = _read_count(reader, shape)
        (mu,) = struct.unpack("<f", reader.take(4))
        n_sign = (k + 7) // 8
        pos = _positions(reader, k, shape, n_sign)
        negative = np.unpackbits(np.frombuffer(reader.rest(), dtype=np.uint8))[:k].astype(bool)
        out = np.zeros(_size(shape), dtype=np.float32)
        out[pos] = np.where(negative, -mu, mu)
        return out.reshape(shape)


@dataclass(frozen=True)
class CabacQuantized(Compressor):
    """Uniformly quantized updates (differences to the previous model) coded by the CABAC level coder.

    ``bits`` fixes the level range to ``|level| <= 2**(bits-1) - 1`` (bits = 2: levels in {-1, 0, 1});
    the step is ``quantile(|x|, clip_quantile) / (max_level + 0.5)`` per tensor unless ``step`` is given.
    """

    bits: int = 2
    step: float | None = None
    clip_quantile: float = 0.99
    name: ClassVar[str] = "cabac"
    method_id: ClassVar[int] = 4

    def __post_init__(self) -> None:
        if not 2 <= self.bits <= 16:
            msg = f"bits must be in 2..16, got {self.bits}"
            raise ConfigError(msg)
        if self.step is not None and not self.step > 0:
            msg = f"step must be positive, got {self.step}"
            raise ConfigError(msg)

    @property
    def max_level(self) -> int:
        return int(2 ** (self.bits - 1) - 1)

    def levels(self, values: np.ndarray) -> tuple[np.ndarray, float]:
        """The integer levels and the step they are on (what is entropy coded)."""
        flat = np.asarray(values, dtype=np.float32)
        if not np.all(np.isfinite(flat)):
            msg = "update contains NaN/Inf; it cannot be quantized"
            raise TensorError(msg)
        step = self.step
        if step is None:
            scale = float(np.quantile(np.abs(flat), self.clip_quantile)) if flat.size else 0.0
            step = scale / (self.max_level + 0.5) if scale > 0 else 1.0
        step = float(np.float32(step))
        clipped = np.clip(flat, -(self.max_level + 0.49) * step, (self.max_level + 0.49) * step)
        return quantize(clipped, step), step

    def encode_tensor(self, values: np.ndarray) -> bytes:
        levels, step = self.levels(values)
        return struct.pack("<f", step) + encode_levels(levels)

    def decode_tensor(self, payload: bytes, shape: Shape) -> np.ndarray:
        reader, step = self._read_step(payload)
        return self._reconstruct(decode_levels(reader.rest(), shape), step)

    def _read_step(self, payload: bytes) -> tuple[ByteReader, float]:
        reader = ByteReader(payload, f"{self.name} payload")
        (step,) = struct.unpack("<f", reader.take(4))
        if not (math.isfinite(step) and step > 0):
            msg = f"{self.name} payload has an invalid step {step}"
            raise BitstreamError(msg)
        return reader, step

    def _reconstruct(self, levels: np.ndarray, step: float) -> np.ndarray:
        if np.any(np.abs(levels) > self.max_level):
            msg = f"{self.name} payload decodes to levels beyond +-{self.max_level}"
            raise BitstreamError(msg)
        return levels.astype(np.float32) * np.float32(step)


# Edges of |reference / step| between hint classes: the 13 classes are sign x 7 magnitude bins
# (measured on digits updates, 6 edges gave 1.62x over zlib, 2 edges 1.54x, 8 edges no more).
HINT_EDGES = np.array([0.02, 0.05, 0.1, 0.2, 0.4, 0.8])
HINT_CLASSES = 2 * HINT_EDGES.size + 1


def previous_update_hints(reference: np.ndarray, step: float) -> np.ndarray:
    """Hint classes (uint8, ``0..HINT_CLASSES-1``) of a tensor coded on ``step``: the sign and a
    magnitude bin of the previous global update there, in units of the step."""
    x = np.asarray(reference, dtype=np.float64) / step
    bins = np.digitize(np.abs(x), HINT_EDGES)
    return (np.sign(x).astype(np.int64) * bins + HINT_EDGES.size).astype(np.uint8)


@dataclass(frozen=True)
class CabacPreviousUpdate(CabacQuantized):
    """:class:`CabacQuantized` whose level contexts are conditioned on the previous global update
    (the sign and size of ``reference / step`` at each position, :func:`previous_update_hints`):
    consecutive updates point in similar directions, and the coder learns how far to trust that.

    The state each side keeps is ``reference``, the global update applied in the last round (what the
    server broadcast, so every client that downloads the model and the server hold the same one, whoever
    participated).  Both sides move on with :meth:`with_reference` after every round; before the first
    the reference is empty and counts as zeros.  The payload is that of ``cabac`` (so the sizes compare);
    a receiver with a different reference decodes garbage or raises :class:`BitstreamError`.

    >>> c = CabacPreviousUpdate(bits=2)
    >>> first = [np.linspace(-1, 1, 60, dtype=np.float32).reshape(6, 10)]
    >>> c = c.with_reference(c.roundtrip(first)[1])  # both sides, after the round
    >>> second = [0.9 * first[0]]
    >>> message, decoded = c.roundtrip(second)  # the same levels as ``cabac``, in fewer bytes
    >>> bool(np.array_equal(decoded[0], CabacQuantized(bits=2).roundtrip(second)[1][0]))
    True
    """

    reference: tuple[np.ndarray, ...] = field(default=(), compare=False, repr=False)
    name: ClassVar[str] = "cabac-prev"
    method_id: ClassVar[int] = 5

    def with_reference(self, update: Sequence[np.ndarray]) -> CabacPreviousUpdate:
        """This compressor with ``update`` (the last applied global update) as the reference."""
        return dataclasses.replace(self, reference=tuple(np.array(u, dtype=np.float32) for u in update))

    def _references(self, shapes: Sequence[Shape]) -> list[np.ndarray]:
        if not self.reference:
            return [np.zeros(s, dtype=np.float32) for s in shapes]
        got = [r.shape for r in self.reference]
        if got != [tuple(s) for s in shapes]:
            msg = f"the reference has shapes {got}, the update {[tuple(s) for s in shapes]}"
            raise ConfigError(msg)
        return list(self.reference)

    def encode(self, tensors: Sequence[np.ndarray]) -> bytes:
        refs = self._references([np.shape(t) for t in tensors])
        return self._frame([self.encode_tensor(t, r) for t, r in zip(tensors, refs, strict=True)])

    def decode(self, message: bytes, shapes: Sequence[Shape]) -> list[np.ndarray]:
        refs = self._references(shapes)
        chunks = self._unframe(message, len(shapes))
        return [self.decode_tensor(c, tuple(s), r) for c, s, r in zip(chunks, shapes, refs, strict=True)]

    def encode_tensor(self, values: np.ndarray, reference: np.ndarray | None = None) -> bytes:
        """Codes one tensor against its reference (zeros if ``None``)."""
        levels, step = self.levels(values)
        hints = previous_update_hints(np.zeros(levels.shape) if reference is None else reference, step)
        return struct.pack("<f", step) + encode_levels_hinted(levels, hints, HINT_CLASSES)

    def decode_tensor(self, payload: bytes, shape: Shape, reference: np.ndarray | None = None) -> np.ndarray:
        """Decodes one tensor coded against the same reference (zeros if ``None``)."""
        reader, step = self._read_step(payload)
        hints = previous_update_hints(np.zeros(shape) if reference is None else reference, step)
        try:
            levels = decode_levels_hinted(reader.rest(), shape, hints, HINT_CLASSES)
        except ConfigError as exc:  # hints of the wrong shape: the reference does not fit
            raise BitstreamError(str(exc)) from None
        return self._reconstruct(levels, step)


@dataclass(frozen=True)
class NnsqUpdate(Compressor):
    """The change as an ``.nnsq`` update file of the model both sides hold (:mod:`nnsqueeze.update`):
    the new model ``model + change`` coded against ``model`` at the update's step ``qp``, with the
    update's trellis and reconstruction gain.  The message is the file: ``nnsqueeze.apply_update``
    (or ``nnsqueeze decompress --base``) turns it and the model into exactly the model the receiver
    gets by adding the decoded change, and the file's base hash makes a receiver that holds another
    model fail with :class:`~nnsqueeze.errors.BaseMismatchError` instead of drifting.

    Both sides set the model with :meth:`for_model` before each message (float32 copies; names and
    order as in the model).

    >>> import nnsqueeze
    >>> model = {"w": np.linspace(-1, 1, 400, dtype=np.float32).reshape(20, 20)}
    >>> coder = NnsqUpdate(qp=-32).for_model(model)
    >>> change = [np.full((20, 20), 0.01, np.float32)]
    >>> message, decoded = coder.roundtrip(change)
    >>> new = nnsqueeze.apply_update(message, [model])
    >>> bool(np.array_equal(new["w"], model["w"] + decoded[0])), message[1:5] == b"NNSQ"
    (True, True)
    """

    qp: int = DEFAULT_UPDATE_QP
    model: tuple[NamedTensor, ...] = field(default=(), compare=False, repr=False)
    name: ClassVar[str] = "nnsq-update"
    method_id: ClassVar[int] = 6

    def for_model(self, model: Mapping[str, np.ndarray]) -> NnsqUpdate:
        held = tuple(
            NamedTensor(n, np.array(a, dtype=np.float32, copy=True), "float32") for n, a in model.items()
        )
        return dataclasses.replace(self, model=held)

    def _model_of(self, shapes: Sequence[Shape]) -> tuple[NamedTensor, ...]:
        if not self.model:
            msg = "nnsq-update codes against the model both sides hold; set it with for_model(model)"
            raise ConfigError(msg)
        got = [t.array.shape for t in self.model]
        if got != [tuple(s) for s in shapes]:
            msg = f"the model has shapes {got}, the update {[tuple(s) for s in shapes]}"
            raise ConfigError(msg)
        return self.model

    def encode_tensor(self, values: np.ndarray) -> bytes:
        msg = "nnsq-update codes whole models (encode), not single tensors"
        raise ConfigError(msg)

    def decode_tensor(self, payload: bytes, shape: Shape) -> np.ndarray:
        msg = "nnsq-update decodes whole models (decode), not single tensors"
        raise ConfigError(msg)

    def encode(self, tensors: Sequence[np.ndarray]) -> bytes:
        model = self._model_of([np.shape(t) for t in tensors])
        new = {t.name: t.array + np.asarray(c, dtype=np.float32) for t, c in zip(model, tensors, strict=True)}
        base = {t.name: t.array for t in model}
        data = compress_update(new, [base], qp=self.qp).data
        assert data is not None  # no destination given: the file comes back as bytes
        return data

    def decode(self, message: bytes, shapes: Sequence[Shape]) -> list[np.ndarray]:
        model = self._model_of(shapes)
        records = update_records(bytes(message), {t.name: t for t in model})
        names = [t.name for t in model]
        if list(records) != names:
            msg = f"the update has tensors {list(records)[:4]}..., the model {names[:4]}..."
            raise BitstreamError(msg)
        out = []
        for t in model:
            kind, coded = records[t.name]
            if kind == UNCHANGED:
                # x + (-0.0) is x for every float x (+0.0 would turn a -0.0 weight into +0.0)
                out.append(np.full(t.array.shape, -0.0, dtype=np.float32))
            elif kind == DELTA and coded is not None and coded.dtype == "float32":
                out.append(coded.array.reshape(t.array.shape))
            else:
                msg = f"the update stores tensor {t.name!r} as {kind}; a change of the model is a difference"
                raise BitstreamError(msg)
        return out


COMPRESSORS: dict[str, type[Compressor]] = {
    c.name: c
    for c in (Identity, TopK, SparseBinary, SparseTernary, CabacQuantized, CabacPreviousUpdate, NnsqUpdate)
}


def make_compressor(
    name: str,
    *,
    sparsity: float = 0.01,
    bits: int = 2,
    whole_model: bool = False,
    qp: int = DEFAULT_UPDATE_QP,
) -> Compressor:
    """A compressor by name: ``identity``, ``topk``, ``sbc``, ``stc``, ``cabac``, ``cabac-prev``,
    ``nnsq-update`` (``dgc`` uses ``topk``); ``whole_model`` applies to the sparsifiers (top-k, SBC,
    STC), ``qp`` to ``nnsq-update``."""
    if name == "identity":
        return Identity()
    if name in ("topk", "dgc"):
        return TopK(sparsity, whole_model)
    if name == "sbc":
        return SparseBinary(sparsity, whole_model)
    if name == "stc":
        return SparseTernary(sparsity, whole_model)
    if name == "cabac":
        return CabacQuantized(bits=bits)
    if name == "cabac-prev":
        return CabacPreviousUpdate(bits=bits)
    if name == "nnsq-update":
        return NnsqUpdate(qp=qp)
    msg = f"unknown compressor {name!r}; choose from {', '.join([*COMPRESSORS, 'dgc'])}"
    raise ConfigError(msg)
