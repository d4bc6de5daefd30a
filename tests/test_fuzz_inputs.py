"""Mutation fuzzing of the checkpoint readers (safetensors, .npz, .pt, ONNX): a mutated file either
reads or raises a NnsqueezeError (CheckpointError naming the file or field), nothing else."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nnsqueeze.errors import NnsqueezeError
from nnsqueeze.io import NamedTensor, open_checkpoint, write_checkpoint

from .test_fuzz import mutate, mutations


def _tensors() -> list[NamedTensor]:
    rng = np.random.default_rng(2)
    return [
        NamedTensor("w", rng.normal(0, 0.1, (4, 3)).astype(np.float32), "float32"),
        NamedTensor("h", rng.normal(0, 1, 5).astype(np.float16), "float16"),
        NamedTensor("i", np.arange(6, dtype=np.int64).reshape(2, 3), "int64"),
        NamedTensor("m", np.array([True, False]), "bool"),
    ]


@functools.cache
def valid_file(suffix: str) -> bytes:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"m{suffix}"
        if suffix == ".onnx":
            onnx = pytest.importorskip("onnx")
            from onnx import TensorProto, helper, numpy_helper

            init = [numpy_helper.from_array(t.array, t.name) for t in _tensors()[:3]]
            graph = helper.make_graph(
                [helper.make_node("Identity", ["w"], ["y"])],
                "g",
                [],
                [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 3])],
                initializer=init,
            )
            onnx.save(helper.make_model(graph), path)
        else:
            if suffix == ".pt":
                pytest.importorskip("torch")
            write_checkpoint(path, _tensors(), metadata={"k": "v"})
        return path.read_bytes()


def _read(data: bytes, suffix: str, tmp_path: Path) -> None:
    path = tmp_path / f"fuzz{suffix}"
    path.write_bytes(data)
    try:
        checkpoint = open_checkpoint(path)
        for t in checkpoint.tensors:
            assert isinstance(t.array, np.ndarray)
    except NnsqueezeError:
        pass


@pytest.mark.parametrize("suffix", [".safetensors", ".npz", ".pt", ".onnx"])
@settings(
    deadline=None,
    max_examples=150,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(ops=st.lists(mutations, min_size=1, max_size=3))
def test_mutated_checkpoints_raise_only_nnsqueeze_errors(
    suffix: str, ops: list[tuple[object, ...]], tmp_path: Path
) -> None:
    base = valid_file(suffix)
    _read(mutate(base, ops, (base,)), suffix, tmp_path)
