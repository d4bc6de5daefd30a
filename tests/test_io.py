"""Tests of nnsqueeze.io: checkpoint reading and writing."""

from __future__ import annotations

import importlib.util
import json
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from nnsqueeze.cli import main as cli_main
from nnsqueeze.errors import CheckpointError, MissingDependencyError
from nnsqueeze.io import Checkpoint, NamedTensor, open_checkpoint, to_torch_state_dict, write_checkpoint


def _bf16(values: list[float]) -> np.ndarray:
    bits = np.asarray(values, dtype=np.float32).view(np.uint32) >> 16
    return bits.astype(np.uint16)


def _sample() -> list[NamedTensor]:
    rng = np.random.default_rng(0)
    return [
        NamedTensor("layer.weight", rng.standard_normal((3, 4)).astype(np.float32), "float32"),
        NamedTensor("half", rng.standard_normal(5).astype(np.float16), "float16"),
        NamedTensor("brain", _bf16([1.0, -2.5, 3.140625, 0.0]).reshape(2, 2), "bfloat16"),
        NamedTensor("double", rng.standard_normal((2, 1, 2)), "float64"),
        NamedTensor("steps", np.array([1, -(2**40), 2**62], dtype=np.int64), "int64"),
        NamedTensor("i8", np.array([-128, 0, 127], dtype=np.int8), "int8"),
        NamedTensor("u8", np.array([0, 255], dtype=np.uint8), "uint8"),
        NamedTensor("mask", np.array([[True, False], [False, True]]), "bool"),
        NamedTensor("scalar", np.array(3.5, dtype=np.float32), "float32"),
        NamedTensor("empty", np.zeros((0, 3), dtype=np.float32), "float32"),
    ]


def _collect(checkpoint: Checkpoint) -> list[NamedTensor]:
    tensors = list(checkpoint.tensors)
    assert len(tensors) == checkpoint.num_tensors
    return tensors


def _assert_same(got: list[NamedTensor], want: list[NamedTensor], *, bf16_as_f32: bool = False) -> None:
    assert sorted(t.name for t in got) == sorted(t.name for t in want)
    by_name = {t.name: t for t in got}
    for expected in want:
        actual = by_name[expected.name]
        assert actual.array.flags.c_contiguous
        if bf16_as_f32 and expected.dtype == "bfloat16":
            assert actual.dtype == "float32"
            widened = (expected.array.astype(np.uint32) << 16).view(np.float32)
            np.testing.assert_array_equal(actual.array, widened)
            continue
        assert actual.dtype == expected.dtype, expected.name
        assert actual.array.dtype == expected.array.dtype, expected.name
        assert actual.array.shape == expected.array.shape, expected.name
        np.testing.assert_array_equal(actual.array, expected.array)


# --------------------------------------------------------------------------------------------- round trips


def test_safetensors_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    write_checkpoint(path, iter(_sample()), metadata={"format": "pt", "note": "héllo"})
    checkpoint = open_checkpoint(path)
    assert checkpoint.format == "safetensors"
    assert checkpoint.metadata == {"format": "pt", "note": "héllo"}
    assert checkpoint.attachments == {}
    tensors = _collect(checkpoint)
    assert [t.name for t in tensors] == [t.name for t in _sample()]  # file order
    _assert_same(tensors, _sample())
    # each tensor is read into a buffer of its own (not a view of a file mapping)
    assert tensors[0].array.base is not None
    assert tensors[0].array.base.nbytes == tensors[0].array.nbytes


def test_npz_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "model.npz"
    write_checkpoint(path, _sample())
    checkpoint = open_checkpoint(path)
    assert checkpoint.format == "npz"
    tensors = _collect(checkpoint)
    assert [t.name for t in tensors] == [t.name for t in _sample()]
    _assert_same(tensors, _sample(), bf16_as_f32=True)
    with np.load(path, allow_pickle=False) as plain:  # a normal np.savez archive
        np.testing.assert_array_equal(plain["layer.weight"], _sample()[0].array)


@pytest.mark.parametrize("suffix", [".pt", ".pth", ".bin"])
def test_torch_round_trip(tmp_path: Path, suffix: str) -> None:
    torch = pytest.importorskip("torch")
    path = tmp_path / f"model{suffix}"
    write_checkpoint(path, _sample())
    state = torch.load(path, weights_only=True)
    assert state["brain"].dtype == torch.bfloat16
    assert state["brain"].float().tolist() == [[1.0, -2.5], [3.140625, 0.0]]
    assert state["scalar"].shape == ()
    checkpoint = open_checkpoint(path)
    assert checkpoint.format == "pt"
    _assert_same(_collect(checkpoint), _sample())


def test_numpy_input_variants(tmp_path: Path) -> None:
    base = np.arange(12, dtype=np.float32).reshape(3, 4)
    source = {
        "transposed": base.T,
        "big_endian": np.arange(3, dtype=">i4"),
        "list": [[1.5, 2.5]],
        "number": 7,
        "nested": {"inner": np.ones(2, dtype=np.uint16)},
    }
    checkpoint = open_checkpoint(source)
    assert checkpoint.format == "mapping"
    assert checkpoint.num_tensors == 5
    tensors = {t.name: t for t in checkpoint.tensors}
    assert set(tensors) == {"transposed", "big_endian", "list", "number", "nested.inner"}
    assert tensors["transposed"].array.flags.c_contiguous
    np.testing.assert_array_equal(tensors["transposed"].array, base.T)
    assert tensors["big_endian"].dtype == "int32"
    assert tensors["big_endian"].array.dtype == np.dtype("<i4")
    assert tensors["list"].dtype == "float64"
    assert tensors["number"].array.shape == ()
    assert tensors["nested.inner"].dtype == "uint16"
    path = tmp_path / "x.safetensors"
    write_checkpoint(path, tensors.values())
    _assert_same(_collect(open_checkpoint(path)), list(tensors.values()))


@pytest.mark.parametrize("value", ["text", None, object(), {"a": object()}, [[1, 2], [3]], np.array([1j])])
def test_mapping_rejects_non_arrays(value: Any) -> None:
    checkpoint = open_checkpoint({"ok": np.zeros(2), "bad_key": value})
    with pytest.raises(CheckpointError, match="bad_key"):
        list(checkpoint.tensors)


def test_torch_mapping_and_module() -> None:
    torch = pytest.importorskip("torch")
    weight = torch.arange(6, dtype=torch.float32).reshape(2, 3).t()  # non-contiguous
    source = {
        "w": weight,
        "b": torch.tensor([1.0, -0.5, 2.0], dtype=torch.bfloat16),
        "g": torch.ones(2, requires_grad=True),
        "u16": torch.tensor([0, 65535], dtype=torch.uint16),
        "s": torch.tensor(True),
        "np": np.array([1, 2], dtype=np.int16),
    }
    tensors = {t.name: t for t in open_checkpoint(source).tensors}
    np.testing.assert_array_equal(tensors["w"].array, weight.numpy())
    assert tensors["w"].array.flags.c_contiguous
    assert tensors["b"].dtype == "bfloat16"
    assert tensors["b"].array.dtype == np.uint16
    assert tensors["b"].array.tolist() == [0x3F80, 0xBF00, 0x4000]
    assert tensors["u16"].dtype == "uint16"
    assert tensors["u16"].array.tolist() == [0, 65535]
    assert tensors["s"].dtype == "bool"
    assert tensors["s"].array.shape == ()
    assert tensors["np"].dtype == "int16"

    module = torch.nn.Linear(3, 2)
    checkpoint = open_checkpoint(module)
    assert checkpoint.format == "module"
    named = {t.name: t for t in _collect(checkpoint)}
    assert set(named) == {"weight", "bias"}
    np.testing.assert_array_equal(named["weight"].array, module.weight.detach().numpy())


def test_torch_unsupported_dtype() -> None:
    torch = pytest.importorskip("torch")
    checkpoint = open_checkpoint({"c": torch.zeros(2, dtype=torch.complex64)})
    with pytest.raises(CheckpointError, match=r"'c'.*complex64"):
        list(checkpoint.tensors)


def test_to_torch_state_dict_bf16_exact() -> None:
    torch = pytest.importorskip("torch")
    bits = np.arange(65536, dtype=np.uint32).astype(np.uint16)  # every pattern, NaNs included
    state = to_torch_state_dict([NamedTensor("all", bits, "bfloat16"), *_sample()])
    assert state["all"].dtype == torch.bfloat16
    assert state["steps"].dtype == torch.int64
    assert state["mask"].dtype == torch.bool
    back = {t.name: t for t in open_checkpoint(state).tensors}
    np.testing.assert_array_equal(back["all"].array, bits)
    _assert_same([back[t.name] for t in _sample()], _sample())


def test_to_torch_state_dict_read_only_input(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    path = tmp_path / "m.safetensors"
    write_checkpoint(path, _sample())
    state = to_torch_state_dict(open_checkpoint(path).tensors)  # read-only memmap views: copied, no warning
    assert state["layer.weight"].shape == (3, 4)


def test_torch_checkpoint_layouts(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    w = torch.ones(2, 2)
    path = tmp_path / "ckpt.pt"
    torch.save({"epoch": 3, "state_dict": {"enc": {"w": w}, "dec.b": torch.zeros(1)}, "lr": 0.1}, path)
    checkpoint = open_checkpoint(path)
    assert [t.name for t in _collect(checkpoint)] == ["enc.w", "dec.b"]

    torch.save({"model": {"w": w}, "optimizer": {"state": {}}}, path)
    assert [t.name for t in open_checkpoint(path).tensors] == ["w"]

    torch.save({"w": w, "step": 5, "odd": (1, 2)}, path)  # a tuple would not read back as itself
    with pytest.raises(CheckpointError, match="'odd' is a tuple, neither a tensor nor plain data"):
        open_checkpoint(path)

    torch.save(w, path)
    with pytest.raises(CheckpointError, match="expected a dict of tensors"):
        open_checkpoint(path)

    legacy = tmp_path / "legacy.pth"
    torch.save({"w": w}, legacy, _use_new_zipfile_serialization=False)
    _assert_same(
        _collect(open_checkpoint(legacy)), [NamedTensor("w", np.ones((2, 2), np.float32), "float32")]
    )


class _Evil:
    """Unpickling this would create a marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return (Path.touch, (self.marker,))


def test_pt_with_objects_is_refused_without_running_code(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"w": torch.ones(1), "payload": _Evil(marker)}, path)
    with pytest.raises(CheckpointError, match="refused to load"):
        open_checkpoint(path)
    assert not marker.exists()


def test_corrupt_pt(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    path = tmp_path / "junk.pt"
    path.write_bytes(b"definitely not a checkpoint")
    with pytest.raises(CheckpointError, match=r"junk\.pt"):
        open_checkpoint(path)


# ------------------------------------------------------------------------------------ safetensors interop


def test_safetensors_interop_numpy(tmp_path: Path) -> None:
    st_numpy = pytest.importorskip("safetensors.numpy")
    tensors = [t for t in _sample() if t.dtype != "bfloat16"]
    ours = tmp_path / "ours.safetensors"
    write_checkpoint(ours, tensors)
    loaded = st_numpy.load_file(str(ours))
    _assert_same(
        [NamedTensor(k, v, t.dtype) for t in tensors for k, v in loaded.items() if k == t.name], tensors
    )

    theirs = tmp_path / "theirs.safetensors"
    st_numpy.save_file({t.name: t.array for t in tensors}, str(theirs), metadata={"k": "v"})
    checkpoint = open_checkpoint(theirs)
    assert checkpoint.metadata == {"k": "v"}
    _assert_same(_collect(checkpoint), tensors)


def test_safetensors_interop_torch_bf16(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    st_torch = pytest.importorskip("safetensors.torch")
    ours = tmp_path / "ours.safetensors"
    write_checkpoint(ours, _sample())
    loaded = st_torch.load_file(str(ours))
    assert loaded["brain"].dtype == torch.bfloat16
    assert loaded["brain"].flatten().float().tolist() == [1.0, -2.5, 3.140625, 0.0]
    assert loaded["steps"].tolist() == [1, -(2**40), 2**62]

    theirs = tmp_path / "theirs.safetensors"
    st_torch.save_file(
        {"b": torch.tensor([0.5, -8.0], dtype=torch.bfloat16), "e": torch.zeros(0)}, str(theirs)
    )
    tensors = {t.name: t for t in open_checkpoint(theirs).tensors}
    assert tensors["b"].dtype == "bfloat16"
    assert tensors["b"].array.tolist() == _bf16([0.5, -8.0]).tolist()
    assert tensors["e"].array.shape == (0,)


# ---------------------------------------------------------------------------------- malformed safetensors


def _raw_safetensors(header: Any, data: bytes, *, length: int | None = None) -> bytes:
    encoded = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(encoded) if length is None else length) + encoded + data


_F32x2 = {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}
_MALFORMED = {
    "too_short": b"\x01\x00",
    "truncated_header": _raw_safetensors({"a": _F32x2}, b"\0" * 8)[:20],
    "truncated_data": _raw_safetensors({"a": _F32x2}, b"\0" * 5),
    "bad_json": _raw_safetensors(b'{"a": {"dtype": "F32",', b""),
    "not_utf8": _raw_safetensors(b'{"\xff": 1}', b""),
    "not_object": _raw_safetensors([1, 2], b""),
    "huge_header_length": _raw_safetensors({}, b"", length=2**63),
    "header_length_past_end": _raw_safetensors({}, b"", length=100),
    "offsets_out_of_range": _raw_safetensors(
        {"a": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]}}, b""
    ),
    "overlapping": _raw_safetensors(
        {"a": _F32x2, "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}, b"\0" * 12
    ),
    "gap": _raw_safetensors({"a": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}, b"\0" * 12),
    "trailing_data": _raw_safetensors({"a": _F32x2}, b"\0" * 12),
    "shape_mismatch": _raw_safetensors(
        {"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, b"\0" * 8
    ),
    "unknown_dtype": _raw_safetensors(
        {"a": {"dtype": "F8_E4M3", "shape": [8], "data_offsets": [0, 8]}}, b"\0" * 8
    ),
    "negative_shape": _raw_safetensors({"a": {"dtype": "U8", "shape": [-1], "data_offsets": [0, 0]}}, b""),
    "reversed_offsets": _raw_safetensors({"a": {"dtype": "U8", "shape": [0], "data_offsets": [1, 0]}}, b"\0"),
    "missing_offsets": _raw_safetensors({"a": {"dtype": "U8", "shape": [0]}}, b""),
    "entry_not_object": _raw_safetensors({"a": 5}, b""),
    "bad_metadata": _raw_safetensors({"__metadata__": {"k": 1}}, b""),
    "duplicate_key": _raw_safetensors(b'{"a": 1, "a": 2}', b""),
}


@pytest.mark.parametrize("case", sorted(_MALFORMED))
def test_malformed_safetensors(tmp_path: Path, case: str) -> None:
    path = tmp_path / f"{case}.safetensors"
    path.write_bytes(_MALFORMED[case])
    with pytest.raises(CheckpointError, match=rf"{case}\.safetensors.*not a valid safetensors file"):
        list(open_checkpoint(path).tensors)


def test_safetensors_empty_and_scalar_only(tmp_path: Path) -> None:
    path = tmp_path / "e.safetensors"
    write_checkpoint(path, [NamedTensor("e", np.zeros(0, dtype=np.int64), "int64")])
    assert [t.array.shape for t in open_checkpoint(path).tensors] == [(0,)]
    write_checkpoint(path, [])
    assert open_checkpoint(path).num_tensors == 0


# ----------------------------------------------------------------------------------------- other errors


def test_unknown_suffix_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"unknown checkpoint format '\.h5'.*\.safetensors"):
        open_checkpoint(tmp_path / "model.h5")
    with pytest.raises(CheckpointError, match="unknown checkpoint format"):
        write_checkpoint(tmp_path / "model.ckpt", _sample())
    missing = tmp_path / "nope.safetensors"
    with pytest.raises(CheckpointError, match=r"nope\.safetensors: no such file"):
        open_checkpoint(missing)
    (tmp_path / "dir.npz").mkdir()
    with pytest.raises(CheckpointError, match="not a regular file"):
        open_checkpoint(tmp_path / "dir.npz")
    with pytest.raises(CheckpointError, match="cannot open a checkpoint from int"):
        open_checkpoint(42)  # type: ignore[arg-type]


def test_write_rejects_bad_tensors(tmp_path: Path) -> None:
    path = tmp_path / "x.safetensors"
    with pytest.raises(CheckpointError, match="duplicate tensor name 'a'"):
        write_checkpoint(path, [NamedTensor("a", np.zeros(1), "float64")] * 2)
    with pytest.raises(CheckpointError, match="does not match dtype 'float32'"):
        write_checkpoint(path, [NamedTensor("a", np.zeros(1), "float32")])
    with pytest.raises(CheckpointError, match="unsupported dtype 'complex64'"):
        write_checkpoint(path, [NamedTensor("a", np.zeros(1), "complex64")])
    assert list(tmp_path.iterdir()) == []


def test_bad_npz(tmp_path: Path) -> None:
    path = tmp_path / "bad.npz"
    path.write_bytes(b"garbage, not a zip")
    with pytest.raises(CheckpointError, match=r"bad\.npz"):
        open_checkpoint(path)
    np.save(tmp_path / "single.npy", np.zeros(2))
    (tmp_path / "single.npy").rename(path)
    with pytest.raises(CheckpointError, match=r"single \.npy array"):
        open_checkpoint(path)
    np.savez(path, ok=np.zeros(2), obj=np.array([{"a": 1}], dtype=object))
    with pytest.raises(CheckpointError, match="obj"):
        list(open_checkpoint(path).tensors)


# --------------------------------------------------------------------------------------- atomic writes


def _failing() -> Iterator[NamedTensor]:
    yield NamedTensor("a", np.ones(3, dtype=np.float32), "float32")
    msg = "source broke"
    raise RuntimeError(msg)


@pytest.mark.parametrize("suffix", [".safetensors", ".npz", ".pt"])
def test_atomic_write(tmp_path: Path, suffix: str) -> None:
    if suffix == ".pt":
        pytest.importorskip("torch")
    path = tmp_path / f"model{suffix}"
    write_checkpoint(path, _sample())
    assert [p.name for p in tmp_path.iterdir()] == [path.name]
    before = path.read_bytes()
    with pytest.raises(RuntimeError, match="source broke"):
        write_checkpoint(path, _failing())
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_write_into_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="cannot write"):
        write_checkpoint(tmp_path / "no" / "such.npz", _sample())


# -------------------------------------------------------------------------------------------------- onnx


def _onnx_model() -> Any:
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(1)
    weight = rng.standard_normal((4, 3)).astype(np.float32)
    bias = rng.standard_normal(3).astype(np.float32)
    shape = np.array([3, 1], dtype=np.int64)
    nodes = [
        helper.make_node("MatMul", ["x", "weight"], ["mm"]),
        helper.make_node("Constant", [], ["bias"], value=numpy_helper.from_array(bias, "bias_value")),
        helper.make_node("Add", ["mm", "bias"], ["sum"]),
        helper.make_node("Reshape", ["sum", "shape"], ["y"]),
        helper.make_node("Constant", [], ["unused_scalar"], value_float=2.0),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3, 1])],
        initializer=[
            numpy_helper.from_array(weight, "weight"),
            numpy_helper.from_array(shape, "shape"),
            helper.make_tensor("brain", TensorProto.BFLOAT16, [2], [1.0, -3.0]),
            numpy_helper.from_array(np.array(1.5, dtype=np.float16), "half_scalar"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    return model


def test_onnx_round_trip(tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    from onnx import numpy_helper

    model = _onnx_model()
    source = tmp_path / "tiny.onnx"
    onnx.save(model, source)
    checkpoint = open_checkpoint(source)
    assert checkpoint.format == "onnx"
    tensors = _collect(checkpoint)
    by_name = {t.name: t for t in tensors}
    assert list(by_name) == ["weight", "shape", "brain", "half_scalar", "bias"]
    np.testing.assert_array_equal(by_name["weight"].array, numpy_helper.to_array(model.graph.initializer[0]))
    assert by_name["shape"].dtype == "int64"
    assert by_name["brain"].dtype == "bfloat16"
    assert by_name["brain"].array.tolist() == _bf16([1.0, -3.0]).tolist()
    assert by_name["half_scalar"].array.shape == ()
    assert by_name["bias"].array.shape == (3,)

    skeleton = checkpoint.attachments["onnx.model"]
    assert len(skeleton) < len(model.SerializeToString())
    parsed = onnx.ModelProto()
    parsed.ParseFromString(skeleton)
    assert all(not t.raw_data and list(t.dims) for t in parsed.graph.initializer if t.name == "weight")

    # through safetensors and back, as a .nnsq round trip would do
    middle = tmp_path / "tiny.safetensors"
    write_checkpoint(middle, tensors)
    rebuilt = tmp_path / "rebuilt.onnx"
    write_checkpoint(rebuilt, open_checkpoint(middle).tensors, attachments=checkpoint.attachments)
    onnx.checker.check_model(str(rebuilt))
    again = {t.name: t for t in open_checkpoint(rebuilt).tensors}
    _assert_same(list(again.values()), tensors)
    assert [t.name for t in tmp_path.iterdir() if t.name.startswith(".")] == []

    if importlib.util.find_spec("onnxruntime") is not None:  # pragma: no cover - optional
        import onnxruntime as ort

        session = ort.InferenceSession(str(rebuilt))
        x = np.ones((1, 4), dtype=np.float32)
        expected = (x @ by_name["weight"].array + by_name["bias"].array).reshape(3, 1)
        np.testing.assert_allclose(session.run(None, {"x": x})[0], expected, rtol=1e-6)


def test_onnx_write_errors(tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    source = tmp_path / "tiny.onnx"
    onnx.save(_onnx_model(), source)
    checkpoint = open_checkpoint(source)
    tensors = _collect(checkpoint)
    out = tmp_path / "out.onnx"
    with pytest.raises(CheckpointError, match=r"not made from an \.onnx file.*\.safetensors"):
        write_checkpoint(out, tensors)
    with pytest.raises(CheckpointError, match="1 tensors of the ONNX model are missing: 'bias'"):
        write_checkpoint(out, tensors[:-1], attachments=checkpoint.attachments)
    extra = [*tensors, NamedTensor("stranger", np.zeros(1, np.float32), "float32")]
    with pytest.raises(CheckpointError, match="'stranger' is not an initializer"):
        write_checkpoint(out, extra, attachments=checkpoint.attachments)
    wrong = [NamedTensor("weight", np.zeros((3, 4), np.float32), "float32"), *tensors[1:]]
    with pytest.raises(
        CheckpointError, match=r"'weight' is float32\[3, 4\] but the model expects float32\[4, 3\]"
    ):
        write_checkpoint(out, wrong, attachments=checkpoint.attachments)
    with pytest.raises(CheckpointError, match="skeleton is corrupt"):
        write_checkpoint(out, tensors, attachments={"onnx.model": b"\xff\xff\xff"})
    assert not out.exists()


def test_onnx_bad_inputs(tmp_path: Path) -> None:
    pytest.importorskip("onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\xff\xfe not protobuf \x00\x01")
    with pytest.raises(CheckpointError, match=r"junk\.onnx"):
        open_checkpoint(junk)


def _with_external_data(tmp_path: Path) -> tuple[Any, Path]:
    onnx = pytest.importorskip("onnx")
    model = _onnx_model()
    path = tmp_path / "model" / "external.onnx"
    path.parent.mkdir()
    onnx.save(
        model,
        path,
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location="w.bin",
        size_threshold=0,
    )
    return model, path


def test_onnx_external_data_is_read_from_the_models_folder(tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    _, path = _with_external_data(tmp_path)
    loaded = onnx.load(path, load_external_data=False)
    assert any(t.data_location == onnx.TensorProto.EXTERNAL for t in loaded.graph.initializer)
    inline = tmp_path / "inline.onnx"
    onnx.save(_onnx_model(), inline)  # onnx.save with external data rewrote the model object
    _assert_same(_collect(open_checkpoint(path)), _collect(open_checkpoint(inline)))
    # through .nnsq and back to ONNX, which then holds its data inline
    packed = tmp_path / "m.nnsq"
    assert cli_main(["compress", str(path), "-o", str(packed), "--lossless"]) == 0
    rebuilt = tmp_path / "rebuilt.onnx"
    assert cli_main(["decompress", str(packed), "-o", str(rebuilt)]) == 0
    onnx.checker.check_model(str(rebuilt))
    again = onnx.load(rebuilt, load_external_data=False)
    assert all(t.data_location == onnx.TensorProto.DEFAULT for t in again.graph.initializer)
    _assert_same(_collect(open_checkpoint(rebuilt)), _collect(open_checkpoint(inline)))


@pytest.mark.parametrize(
    ("location", "why"),
    [("../secret.bin", "not a file inside"), ("/etc/passwd", "not a file inside"), ("", "not a file inside")],
)
def test_onnx_external_data_outside_the_folder_is_refused(tmp_path: Path, location: str, why: str) -> None:
    onnx = pytest.importorskip("onnx")
    _, path = _with_external_data(tmp_path)
    (tmp_path / "secret.bin").write_bytes(bytes(4096))
    model = onnx.load(path, load_external_data=False)
    for t in model.graph.initializer:
        for entry in t.external_data:
            if entry.key == "location":
                entry.value = location
    onnx.save(model, path)
    with pytest.raises(CheckpointError, match=why):
        _collect(open_checkpoint(path))


def test_onnx_external_data_of_the_wrong_length_is_refused(tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    _, path = _with_external_data(tmp_path)
    model = onnx.load(path, load_external_data=False)
    for entry in model.graph.initializer[0].external_data:
        if entry.key == "length":
            entry.value = str(int(entry.value) + 4)
    onnx.save(model, path)
    with pytest.raises(CheckpointError, match="the tensor needs"):
        _collect(open_checkpoint(path))
    (path.parent / "w.bin").write_bytes(b"\x00" * 8)  # truncated data file
    model = onnx.load(path, load_external_data=False)
    for entry in model.graph.initializer[0].external_data:
        if entry.key == "length":
            entry.value = str(int(entry.value) - 4)
    onnx.save(model, path)
    with pytest.raises(CheckpointError, match="bytes, the tensor ends at"):
        _collect(open_checkpoint(path))


# ------------------------------------------------------------------------------------ optional imports


def test_missing_optional_dependencies(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("model.pt", "model.onnx"):
        (tmp_path / name).write_bytes(b"x")
    monkeypatch.setitem(sys.modules, "torch", None)
    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(MissingDependencyError, match=r'pip install "nnsqueeze\[torch\]"'):
        open_checkpoint(tmp_path / "model.pt")
    with pytest.raises(MissingDependencyError, match=r'pip install "nnsqueeze\[onnx\]"'):
        open_checkpoint(tmp_path / "model.onnx")
    with pytest.raises(MissingDependencyError, match=r"nnsqueeze\[torch\]"):
        to_torch_state_dict(_sample())
    # numpy-only formats keep working
    write_checkpoint(tmp_path / "m.safetensors", _sample())
    assert open_checkpoint(tmp_path / "m.safetensors").num_tensors == len(_sample())


def test_io_imports_with_numpy_alone() -> None:
    code = (
        "import sys\nfor m in ('torch', 'onnx', 'safetensors'): sys.modules[m] = None\nimport nnsqueeze.io\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
