"""ONNX models: their initializers and ``Constant`` node tensors, plus a skeleton to rebuild the model.

onnx is imported lazily.  Reading yields every initializer and every ``Constant`` node ``value`` tensor (named
after the node's output) in the main graph and in subgraphs, for the supported dtypes; tensors of other types
(strings, complex, 8-bit floats, ...) stay in the skeleton untouched.  The skeleton is the ``ModelProto`` with
the data of the yielded tensors cleared (name, dims and data type kept), so writing refills it by name.

Models saved with external data (``onnx.save(..., save_as_external_data=True)``) are read tensor by
tensor from their data files, which must lie inside the model's folder (no ``..`` or absolute
locations, no symbolic links out of it); the rebuilt model holds its data inline.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from nnsqueeze.errors import CheckpointError
from nnsqueeze.io._common import (
    Checkpoint,
    NamedTensor,
    atomic_write,
    checked_array,
    require,
    tensor_from_numpy,
    unique_names,
)

ATTACHMENT = "onnx.model"

# onnx.TensorProto.DataType values (frozen by the ONNX standard) -> nnsqueeze dtype name
_FROM_ONNX = {
    1: "float32",
    10: "float16",
    16: "bfloat16",
    11: "float64",
    3: "int8",
    5: "int16",
    6: "int32",
    7: "int64",
    2: "uint8",
    4: "uint16",
    12: "uint32",
    13: "uint64",
    9: "bool",
}
_ITEMSIZE = {"bool": 1, "bfloat16": 2}
_DATA_FIELDS = (
    "raw_data",
    "float_data",
    "int32_data",
    "string_data",
    "int64_data",
    "double_data",
    "uint64_data",
)


def _onnx(purpose: str) -> Any:
    return require("onnx", purpose)


def _graph_tensors(onnx: Any, graph: Any) -> Iterator[tuple[str, Any]]:
    """(name, TensorProto) of the initializers and Constant values of ``graph`` and its subgraphs."""
    for initializer in graph.initializer:
        yield initializer.name, initializer
    for node in graph.node:
        for attribute in node.attribute:
            if (
                node.op_type == "Constant"
                and node.domain in ("", "ai.onnx")
                and attribute.name == "value"
                and attribute.type == onnx.AttributeProto.TENSOR
                and len(node.output) == 1
            ):
                yield node.output[0], attribute.t
            elif attribute.type == onnx.AttributeProto.GRAPH:
                yield from _graph_tensors(onnx, attribute.g)
            elif attribute.type == onnx.AttributeProto.GRAPHS:
                for subgraph in attribute.graphs:
                    yield from _graph_tensors(onnx, subgraph)


def _model_tensors(onnx: Any, model: Any, where: str) -> dict[str, Any]:
    """The tensors nnsqueeze handles, by name, in model order."""
    found: dict[str, Any] = {}
    for name, tensor in _graph_tensors(onnx, model.graph):
        if tensor.data_type not in _FROM_ONNX:
            continue
        if name in found:
            msg = f"{where}: tensor name {name!r} is used twice in the model"
            raise CheckpointError(msg)
        found[name] = tensor
    return found


def _external_bytes(name: str, tensor: Any, folder: Path, where: str) -> bytes:
    """The data of an externally stored tensor, read from its file inside ``folder`` and checked
    against the tensor's size."""
    what = f"{where}: tensor {name!r}"
    info = {entry.key: entry.value for entry in tensor.external_data}
    location = info.get("location", "")
    root = folder.resolve()
    target = (root / location).resolve()
    if not location or Path(location).is_absolute() or not target.is_relative_to(root) or target == root:
        msg = f"{what}: external data location {location!r} is not a file inside the model's folder"
        raise CheckpointError(msg)
    dtype = _FROM_ONNX[tensor.data_type]
    count = 1
    for d in tensor.dims:
        if d < 0:
            msg = f"{what}: negative dimension {d}"
            raise CheckpointError(msg)
        count *= d
    expected = count * _ITEMSIZE.get(dtype, np.dtype(dtype).itemsize)
    try:
        offset = int(info.get("offset", "0"))
        length = int(info["length"]) if "length" in info else expected
    except ValueError:
        msg = f"{what}: external data offset/length are not integers: {info}"
        raise CheckpointError(msg) from None
    if offset < 0 or length != expected:
        msg = f"{what}: external data of {length} bytes at offset {offset}; the tensor needs {expected}"
        raise CheckpointError(msg)
    try:
        with target.open("rb") as handle:
            size = handle.seek(0, os.SEEK_END)
            if offset + expected > size:
                msg = f"{what}: {target.name} has {size} bytes, the tensor ends at {offset + expected}"
                raise CheckpointError(msg)
            handle.seek(offset)
            data: bytes = handle.read(expected)
    except OSError as exc:
        msg = f"{what}: cannot read external data {location!r}: {exc.strerror or exc}"
        raise CheckpointError(msg) from None
    if len(data) != expected:  # pragma: no cover - file shrank while reading
        msg = f"{what}: external data file shrank while reading"
        raise CheckpointError(msg)
    return data


def _inline(onnx: Any, tensor: Any) -> None:
    """Marks a tensor as holding its data in the model itself."""
    del tensor.external_data[:]
    tensor.data_location = onnx.TensorProto.DEFAULT


def _to_numpy(onnx: Any, name: str, tensor: Any, where: str, folder: Path) -> NamedTensor:
    dtype = _FROM_ONNX[tensor.data_type]
    shape = tuple(tensor.dims)
    if tensor.data_location == onnx.TensorProto.EXTERNAL:
        tensor.raw_data = _external_bytes(name, tensor, folder, where)
        _inline(onnx, tensor)
    try:
        if dtype == "bfloat16":  # decoded here: older onnx versions widen bfloat16 to float32
            if tensor.HasField("raw_data"):
                bits = np.frombuffer(tensor.raw_data, dtype="<u2")
            else:
                bits = np.asarray(tensor.int32_data, dtype=np.int64).astype(np.uint16)
            return NamedTensor(name, bits.reshape(shape).copy(), "bfloat16")
        array = onnx.numpy_helper.to_array(tensor)
    except (ValueError, TypeError) as exc:
        msg = f"{where}: cannot decode tensor {name!r}: {exc}"
        raise CheckpointError(msg) from exc
    return tensor_from_numpy(name, np.asarray(array).reshape(shape))


def _iter_tensors(onnx: Any, tensors: dict[str, Any], where: str, folder: Path) -> Iterator[NamedTensor]:
    for name, tensor in tensors.items():
        named = _to_numpy(onnx, name, tensor, where, folder)
        for data_field in _DATA_FIELDS:
            tensor.ClearField(data_field)  # free the protobuf copy as we go
        yield named


def read_onnx(path: str | os.PathLike[str]) -> Checkpoint:
    """Open an ``.onnx`` model: its tensors, and ``attachments["onnx.model"]`` holding the skeleton."""
    file = Path(path)
    onnx = _onnx(f"reading {file.name}")
    try:
        model = onnx.load(file, load_external_data=False)
    except Exception as exc:
        msg = f"{file}: not a readable ONNX model: {exc}"
        raise CheckpointError(msg) from exc
    where = str(file)
    for name, tensor in _graph_tensors(onnx, model.graph):
        if tensor.data_location == onnx.TensorProto.EXTERNAL and tensor.data_type not in _FROM_ONNX:
            msg = (
                f"{file}: tensor {name!r} of ONNX data type {tensor.data_type} stores its data in an "
                "external file; nnsqueeze reads external data only for the tensors it codes"
            )
            raise CheckpointError(msg)
    skeleton = onnx.ModelProto()
    skeleton.CopyFrom(model)
    for tensor in _model_tensors(onnx, skeleton, where).values():
        for data_field in _DATA_FIELDS:
            tensor.ClearField(data_field)
        _inline(onnx, tensor)
    attachments = {ATTACHMENT: skeleton.SerializeToString()}
    del skeleton
    tensors = _model_tensors(onnx, model, where)
    return Checkpoint(
        format="onnx",
        tensors=_iter_tensors(onnx, tensors, where, file.parent),
        num_tensors=len(tensors),
        attachments=attachments,
        metadata={},
    )


def write_onnx(path: str | os.PathLike[str], tensors: Iterable[NamedTensor], skeleton: bytes) -> None:
    """Rebuild an ONNX model from its skeleton and ``tensors`` (matched by name), check it and save it."""
    target = Path(path)
    data = onnx_bytes(tensors, skeleton, f"cannot write {target}")
    with atomic_write(target) as out:
        out.write(data)


def onnx_bytes(tensors: Iterable[NamedTensor], skeleton: bytes, where: str) -> bytes:
    """The serialized ONNX model rebuilt from its skeleton and ``tensors`` (matched by name), checked;
    errors start with ``where``."""
    onnx = _onnx(where)
    model = onnx.ModelProto()
    try:
        model.ParseFromString(skeleton)
    except Exception as exc:
        msg = f"{where}: the stored ONNX model skeleton is corrupt: {exc}"
        raise CheckpointError(msg) from exc
    slots = _model_tensors(onnx, model, where)
    for tensor in unique_names(tensors):
        slot = slots.pop(tensor.name, None)
        if slot is None:
            msg = f"{where}: tensor {tensor.name!r} is not an initializer or constant of the ONNX model"
            raise CheckpointError(msg)
        expected = _FROM_ONNX[slot.data_type]
        array = checked_array(tensor)
        if tensor.dtype != expected or array.shape != tuple(slot.dims):
            msg = (
                f"{where}: tensor {tensor.name!r} is {tensor.dtype}{list(array.shape)} but the model "
                f"expects {expected}{list(slot.dims)}"
            )
            raise CheckpointError(msg)
        for data_field in _DATA_FIELDS:
            slot.ClearField(data_field)
        slot.raw_data = array.tobytes()
    if slots:
        names = ", ".join(repr(n) for n in list(slots)[:5]) + (", ..." if len(slots) > 5 else "")
        msg = f"{where}: {len(slots)} tensors of the ONNX model are missing: {names}"
        raise CheckpointError(msg)
    try:
        onnx.checker.check_model(model)
        return bytes(model.SerializeToString())
    except Exception as exc:
        msg = f"{where}: the rebuilt ONNX model is invalid: {exc}"
        raise CheckpointError(msg) from exc
