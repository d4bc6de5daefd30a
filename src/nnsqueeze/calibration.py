"""Calibrated bit allocation: how much each weight tensor's rounding moves the model's outputs.

The data-free rule (:mod:`nnsqueeze.quant.allocation`) guesses each tensor's sensitivity from its
statistics.  Given a few sample inputs, a :class:`Calibration` measures it instead: it rounds one
weight tensor at a time to the plain step, runs the model, and takes the relative output distortion

    D_t = mean over samples of ||y' - y||² / ||y||²

(the seed's output-space distortion, as MSE: it applies to logits, embeddings and any other
output alike).  Rounding noise grows with the step squared, so ``D_t(s) ≈ c_t · s²`` with
``c_t = D_t / step²``, and :func:`~nnsqueeze.quant.allocation.allocate_by_sensitivity` puts every
tensor at the same rate–distortion slope.  The sensitivities are measured once, at the first step
asked for, and reused for every other step (a target search asks for several).

Models nnsqueeze can run itself: torch modules (:meth:`Calibration.torch`) and ONNX models through
onnxruntime (:meth:`Calibration.onnx`).  Any other model: pass a function from weights to outputs.

>>> import torch, nnsqueeze
>>> model = torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.ReLU(), torch.nn.Linear(32, 4))
>>> calibration = nnsqueeze.Calibration.torch(model, torch.randn(64, 8))
>>> report = nnsqueeze.compress(model, calibration=calibration)
>>> decoded = nnsqueeze.decompress(report.data)
>>> calibration.fidelity(decoded) > 0.99  # mean cosine of the outputs to the float model's
True
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from nnsqueeze.errors import CalibrationError
from nnsqueeze.io import ONNX_ATTACHMENT, NamedTensor, onnx_bytes, open_checkpoint, require
from nnsqueeze.quant.allocation import allocate_by_sensitivity
from nnsqueeze.quant.uniform import dequantize, quantize

# A model's outputs for given weights (every tensor of the model, by name), on the calibration
# inputs: one row per sample.
Outputs = Callable[[Mapping[str, np.ndarray]], np.ndarray]

# ONNX input element types onnxruntime reports, and the NumPy dtype each needs.
_ONNX_DTYPES = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
    "tensor(float16)": np.float16,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(int8)": np.int8,
    "tensor(uint8)": np.uint8,
    "tensor(bool)": np.bool_,
}


def _rows(outputs: Sequence[Any], label: str) -> np.ndarray:
    """The outputs as one float64 row per sample (the first dimension of every output)."""
    arrays = [np.asarray(o, dtype=np.float64) for o in outputs]
    if not arrays or any(a.ndim == 0 for a in arrays):
        shapes = [a.shape for a in arrays]
        msg = f"{label}: calibration needs outputs with a batch dimension, got shapes {shapes}"
        raise CalibrationError(msg)
    samples = arrays[0].shape[0]
    if samples == 0 or any(a.shape[0] != samples for a in arrays):
        msg = f"{label}: the outputs disagree on the number of samples: {[a.shape for a in arrays]}"
        raise CalibrationError(msg)
    rows = np.concatenate([a.reshape(samples, -1) for a in arrays], axis=1)
    if not np.all(np.isfinite(rows)):
        msg = f"{label}: the model's outputs on the calibration inputs are not all finite"
        raise CalibrationError(msg)
    return rows


def _torch_outputs(value: Any) -> list[Any]:
    """The tensors of a torch model's output: a tensor, or a tuple, list, dict or ``ModelOutput``
    of them (nested), in order."""
    import torch

    if isinstance(value, torch.Tensor):
        return [value.detach().to(torch.float64).numpy()]
    if isinstance(value, Mapping):
        return [a for v in value.values() for a in _torch_outputs(v)]
    if isinstance(value, (tuple, list)):
        return [a for v in value for a in _torch_outputs(v)]
    return []  # None and other non-tensor values carry no output


class Calibration:
    """A model's outputs as a function of its weights, on calibration inputs.

    ``outputs(weights)`` returns one row per sample; ``weights`` are the model's float tensors
    (every tensor ``outputs`` needs), the ones whose steps are allocated being the float tensors
    of two or more dimensions."""

    def __init__(self, outputs: Outputs, weights: Mapping[str, np.ndarray], *, label: str = "model") -> None:
        self._outputs = outputs
        self.weights = {name: np.asarray(w) for name, w in weights.items()}
        self.label = label
        self.reference = self.outputs(self.weights)
        self._sensitivity: dict[str, float] | None = None

    # ------------------------------------------------------------------ models nnsqueeze can run
    @classmethod
    def torch(cls, module: Any, inputs: Any) -> Calibration:
        """A torch module on ``inputs``: a tensor or array (the one positional argument), a tuple of
        them (positional arguments) or a mapping (keyword arguments)."""
        torch = require("torch", "calibrating a torch module")
        scratch = copy.deepcopy(module).eval()

        def as_tensor(value: Any) -> Any:
            return value if isinstance(value, torch.Tensor) else torch.from_numpy(np.array(value))

        if isinstance(inputs, Mapping):
            args: tuple[Any, ...] = ()
            kwargs = {k: as_tensor(v) for k, v in inputs.items()}
        else:
            args = (
                tuple(as_tensor(v) for v in inputs)
                if isinstance(inputs, (tuple, list))
                else (as_tensor(inputs),)
            )
            kwargs = {}
        label = type(module).__name__

        def outputs(weights: Mapping[str, np.ndarray]) -> np.ndarray:
            state = {k: torch.from_numpy(np.array(v)) for k, v in weights.items()}
            try:
                scratch.load_state_dict(state, strict=True)
            except RuntimeError as exc:
                msg = f"{label}: the weights do not fit the module: {exc}"
                raise CalibrationError(msg) from exc
            try:
                with torch.no_grad():
                    result = scratch(*args, **kwargs)
            except (RuntimeError, TypeError, ValueError, IndexError) as exc:
                msg = f"{label}: the module cannot run on the calibration inputs: {exc}"
                raise CalibrationError(msg) from exc
            return _rows(_torch_outputs(result), label)

        weights = {k: v.detach().cpu().numpy() for k, v in module.state_dict().items()}
        return cls(outputs, weights, label=label)

    @classmethod
    def onnx(
        cls, model: str | os.PathLike[str], inputs: Mapping[str, np.ndarray] | str | os.PathLike[str]
    ) -> Calibration:
        """An ONNX model run by onnxruntime on ``inputs``: arrays by graph input name, or an ``.npz``
        file of them.  Names, dtypes and fixed dimensions are checked against the model's inputs."""
        ort = require("onnxruntime", "calibrating an ONNX model")
        path = Path(model)
        feeds = _load_inputs(inputs)
        checkpoint = open_checkpoint(path)
        tensors = {t.name: t for t in checkpoint.tensors}
        skeleton = checkpoint.attachments[ONNX_ATTACHMENT]
        label = path.name

        def session(weights: Mapping[str, np.ndarray]) -> Any:
            rebuilt = [_with_values(t, weights.get(t.name)) for t in tensors.values()]
            options = ort.SessionOptions()
            options.log_severity_level = 3  # warnings about unused initializers are not the user's
            return ort.InferenceSession(
                onnx_bytes(rebuilt, skeleton, label), options, providers=["CPUExecutionProvider"]
            )

        _check_feeds(session({}).get_inputs(), feeds, label)

        def outputs(weights: Mapping[str, np.ndarray]) -> np.ndarray:
            try:
                result = session(weights).run(None, feeds)
            except Exception as exc:  # onnxruntime raises its own exception types
                msg = f"{label}: onnxruntime cannot run the model on the calibration inputs: {exc}"
                raise CalibrationError(msg) from exc
            return _rows(result, label)

        weights = {n: t.array for n, t in tensors.items() if t.dtype == "float32"}
        return cls(outputs, weights, label=label)

    # ------------------------------------------------------------------ measurements
    def outputs(self, weights: Mapping[str, np.ndarray]) -> np.ndarray:
        """The model's outputs with ``weights`` (missing tensors keep the calibration's own)."""
        return self._outputs({**self.weights, **weights})

    def distortion(self, weights: Mapping[str, np.ndarray]) -> float:
        """Relative output distortion: the mean over samples of ||y' - y||² / ||y||²."""
        got, want = self.outputs(weights), self.reference
        power = np.maximum(np.sum(want * want, axis=1), np.finfo(np.float64).tiny)
        return float(np.mean(np.sum((got - want) ** 2, axis=1) / power))

    def fidelity(self, weights: Mapping[str, np.ndarray]) -> float:
        """Mean cosine similarity of each sample's outputs to the float model's (1.0 for it)."""
        got, want = self.outputs(weights), self.reference
        norms = np.linalg.norm(got, axis=1) * np.linalg.norm(want, axis=1)
        return float(np.mean(np.sum(got * want, axis=1) / np.maximum(norms, np.finfo(np.float64).tiny)))

    def allocated(self) -> list[str]:
        """The tensors whose steps calibration allocates: float, two or more dimensions."""
        return [n for n, w in self.weights.items() if w.ndim >= 2 and w.size > 0 and w.dtype.kind == "f"]

    def sensitivities(self, step: float, progress: Callable[[str], None] | None = None) -> dict[str, float]:
        """``c_t``: each allocated tensor's output distortion when it alone is rounded to ``step``,
        per squared step (measured at the first call, reused after; ``progress`` gets each tensor's
        name once it is measured)."""
        if self._sensitivity is None:
            measured = {}
            for name in self.allocated():
                values = self.weights[name].astype(np.float32)
                rounded = dequantize(quantize(values, step, name=name), step).reshape(values.shape)
                measured[name] = self.distortion({name: rounded}) / (step * step)
                if progress is not None:
                    progress(name)
            self._sensitivity = measured
        return dict(self._sensitivity)

    def steps(self, step: float, strength: float) -> dict[str, float]:
        """Each allocated tensor's step for a model whose plain step is ``step``."""
        sensitivity = self.sensitivities(step)
        elements = {name: int(self.weights[name].size) for name in sensitivity}
        return allocate_by_sensitivity(elements, sensitivity, step, strength)


def _load_inputs(inputs: Mapping[str, np.ndarray] | str | os.PathLike[str]) -> dict[str, np.ndarray]:
    if isinstance(inputs, Mapping):
        return {str(k): np.asarray(v) for k, v in inputs.items()}
    path = Path(inputs)
    try:
        with np.load(path, allow_pickle=False) as npz:
            if not isinstance(npz, np.lib.npyio.NpzFile):
                msg = f"{path}: calibration inputs must be an .npz file of arrays by input name"
                raise CalibrationError(msg)
            return {k: npz[k] for k in npz.files}
    except (OSError, ValueError) as exc:
        msg = f"{path}: cannot read calibration inputs: {exc}"
        raise CalibrationError(msg) from exc


def _check_feeds(expected: Sequence[Any], feeds: Mapping[str, np.ndarray], label: str) -> None:
    """Every graph input given, with its dtype and fixed dimensions; nothing else."""
    names = [i.name for i in expected]
    missing = [n for n in names if n not in feeds]
    unknown = [n for n in feeds if n not in names]
    if missing or unknown:
        msg = f"{label}: calibration inputs must be exactly the model's inputs {names}"
        msg += f"; missing {missing}" if missing else ""
        msg += f"; unknown {unknown}" if unknown else ""
        raise CalibrationError(msg)
    for info in expected:
        value = feeds[info.name]
        want = _ONNX_DTYPES.get(info.type)
        if want is None or value.dtype != want:
            msg = f"{label}: input {info.name!r} is {value.dtype} but the model expects {info.type}"
            raise CalibrationError(msg)
        fixed = [d if isinstance(d, int) else None for d in info.shape]
        if len(fixed) != value.ndim or any(
            d is not None and d != s for d, s in zip(fixed, value.shape, strict=True)
        ):
            shape = ["?" if d is None else d for d in fixed]
            msg = f"{label}: input {info.name!r} has shape {list(value.shape)} but the model expects {shape}"
            raise CalibrationError(msg)


def _with_values(tensor: NamedTensor, values: np.ndarray | None) -> NamedTensor:
    if values is None:
        return tensor
    return NamedTensor(tensor.name, np.ascontiguousarray(values, dtype=np.float32), tensor.dtype)
