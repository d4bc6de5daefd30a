"""Calibrated bit allocation: measured output distortion per tensor, torch and ONNX models, the CLI."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest

import nnsqueeze
from nnsqueeze import Calibration, CalibrationError, CompressOptions
from nnsqueeze.cli.main import main
from nnsqueeze.quant.allocation import MAX_CALIBRATED_RATIO, allocate_by_sensitivity

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

RNG = np.random.default_rng(11)
W1 = RNG.normal(0, 0.2, (8, 16)).astype(np.float32)  # (in, hidden): ONNX MatMul layout
B1 = RNG.normal(0, 0.1, 16).astype(np.float32)
W2 = RNG.normal(0, 0.02, (16, 3)).astype(np.float32)  # small weights: the sensitive tensor
X = RNG.normal(0, 1, (32, 8)).astype(np.float32)


def forward(w1: np.ndarray, b1: np.ndarray, w2: np.ndarray, x: np.ndarray = X) -> np.ndarray:
    return np.maximum(x.astype(np.float64) @ w1 + b1, 0.0) @ w2


def relative_distortion(got: np.ndarray, want: np.ndarray) -> float:
    """mean over samples of ||got - want||^2 / ||want||^2, written out"""
    total = 0.0
    for g, w in zip(got, want, strict=True):
        total += float(np.sum((g - w) ** 2) / np.sum(w**2))
    return total / len(got)


def rounded(values: np.ndarray, step: float) -> np.ndarray:
    # nearest level, ties away from zero (the uniform quantizer's rule)
    return (np.sign(values) * np.floor(np.abs(values) / step + 0.5) * step).astype(np.float32)


def onnx_model(path: Path) -> Path:
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "w1"], ["h"]),
            helper.make_node("Add", ["h", "b1"], ["hb"]),
            helper.make_node("Relu", ["hb"], ["r"]),
            helper.make_node("MatMul", ["r", "w2"], ["y"]),
        ],
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])],
        [numpy_helper.from_array(a, n) for n, a in (("w1", W1), ("b1", B1), ("w2", W2))],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def torch_model() -> torch.nn.Module:
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3, bias=False))
    with torch.no_grad():
        model[0].weight.copy_(torch.from_numpy(W1.T.copy()))
        model[0].bias.copy_(torch.from_numpy(B1))
        model[2].weight.copy_(torch.from_numpy(W2.T.copy()))
    return model


# --------------------------------------------------------------------------- the allocation rule


def test_equal_slope_rule_by_hand() -> None:
    elements = {"a": 1000, "b": 10, "c": 100}
    sens = {"a": 2.0, "b": 50.0, "c": 0.5}
    steps = allocate_by_sensitivity(elements, sens, 0.01, 1.0)
    w = {k: math.sqrt(elements[k] / sens[k]) for k in elements}
    mean = sum(elements[k] * math.log(w[k]) for k in elements) / sum(elements.values())
    for k in elements:
        assert steps[k] == pytest.approx(0.01 * w[k] / math.exp(mean), rel=1e-12)
    assert allocate_by_sensitivity(elements, sens, 0.01, 0.0) == dict.fromkeys(elements, 0.01)


def test_ratios_are_bounded_and_insensitive_tensors_get_the_coarsest() -> None:
    steps = allocate_by_sensitivity({"used": 100, "unused": 100}, {"used": 1.0, "unused": 0.0}, 1.0, 2.0)
    assert steps["unused"] == pytest.approx(MAX_CALIBRATED_RATIO)
    assert steps["used"] == pytest.approx(1 / MAX_CALIBRATED_RATIO)
    with pytest.raises(nnsqueeze.ConfigError, match="different tensors"):
        allocate_by_sensitivity({"a": 1}, {"b": 1.0}, 1.0, 1.0)


# --------------------------------------------------------------------------- measurement


def test_torch_sensitivities_match_the_distortion_computed_by_hand() -> None:
    cal = Calibration.torch(torch_model(), torch.from_numpy(X))
    step = 0.05
    sens = cal.sensitivities(step)
    assert sorted(sens) == ["0.weight", "2.weight"]  # the bias is not allocated
    want = forward(W1, B1, W2)
    by_hand = {
        "0.weight": relative_distortion(forward(rounded(W1, step), B1, W2), want),
        "2.weight": relative_distortion(forward(W1, B1, rounded(W2, step)), want),
    }
    for name, d in by_hand.items():
        assert sens[name] * step**2 == pytest.approx(d, rel=1e-5)
    assert cal.sensitivities(0.5) == sens  # measured once
    seen: list[str] = []
    Calibration.torch(torch_model(), torch.from_numpy(X)).sensitivities(step, progress=seen.append)
    assert seen == ["0.weight", "2.weight"]


def test_onnx_and_torch_measure_the_same(tmp_path: Path) -> None:
    cal = Calibration.onnx(onnx_model(tmp_path / "m.onnx"), {"x": X})
    ours = Calibration.torch(torch_model(), torch.from_numpy(X))
    step = 0.05
    onnx_sens, torch_sens = cal.sensitivities(step), ours.sensitivities(step)
    assert onnx_sens["w1"] == pytest.approx(torch_sens["0.weight"], rel=1e-4)
    assert onnx_sens["w2"] == pytest.approx(torch_sens["2.weight"], rel=1e-4)
    assert cal.fidelity(cal.weights) == pytest.approx(1.0)
    assert cal.distortion(cal.weights) == pytest.approx(0.0, abs=1e-12)


def test_fidelity_is_the_mean_cosine() -> None:
    cal = Calibration.torch(torch_model(), torch.from_numpy(X))
    w2 = W2 + RNG.normal(0, 0.01, W2.shape).astype(np.float32)
    got, want = forward(W1, B1, w2), forward(W1, B1, W2)
    cosines = [float(g @ w / (np.linalg.norm(g) * np.linalg.norm(w))) for g, w in zip(got, want, strict=True)]
    # torch runs in float32, the oracle in float64
    assert cal.fidelity({"2.weight": w2.T.copy()}) == pytest.approx(np.mean(cosines), rel=1e-6)


def test_structured_inputs_and_outputs() -> None:
    class TwoIn(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = torch.nn.Linear(4, 4)

        def forward(self, x: torch.Tensor, *, scale: torch.Tensor) -> dict[str, object]:
            y = self.a(x) * scale
            return {"y": y, "pair": (y.sum(1), None)}

    x, s = torch.randn(5, 4), torch.full((5, 1), 2.0)
    cal = Calibration.torch(TwoIn(), {"x": x, "scale": s})
    assert cal.reference.shape == (5, 5)
    with pytest.raises(CalibrationError, match="cannot run"):
        Calibration.torch(TwoIn(), torch.randn(5, 4))  # scale missing


# --------------------------------------------------------------------------- compress


def test_compress_gives_the_sensitive_tensor_a_finer_step() -> None:
    model = torch_model()
    cal = Calibration.torch(model, torch.from_numpy(X))
    report = nnsqueeze.compress(model, calibration=cal, step=0.02)
    steps = {t.name: t.step for t in report.tensors}
    want = allocate_by_sensitivity(
        {n: int(cal.weights[n].size) for n in cal.allocated()},
        cal.sensitivities(0.02),
        0.02,
        nnsqueeze.CALIBRATED_DEFAULTS.step_allocation,
    )
    assert steps["0.weight"] == pytest.approx(want["0.weight"])
    assert steps["2.weight"] == pytest.approx(want["2.weight"])
    assert report.data == nnsqueeze.compress(model, calibration=cal, step=0.02).data  # deterministic
    plain = nnsqueeze.compress(model, options=CompressOptions(step=0.02))
    assert report.data is not None
    assert plain.data is not None
    calibrated = cal.distortion(nnsqueeze.decompress(report.data))
    assert calibrated < cal.distortion(nnsqueeze.decompress(plain.data))


def test_target_fidelity_search() -> None:
    model = torch_model()
    cal = Calibration.torch(model, torch.from_numpy(X))
    report = nnsqueeze.compress(model, calibration=cal, target_metric=cal.fidelity, min_metric=0.999)
    assert report.data is not None
    assert cal.fidelity(nnsqueeze.decompress(report.data)) >= 0.999
    assert len(report.search) > 1


def test_a_calibration_of_another_model_is_refused() -> None:
    cal = Calibration.torch(torch_model(), torch.from_numpy(X))
    other = torch.nn.Linear(8, 8)
    with pytest.raises(CalibrationError, match="does not have"):
        nnsqueeze.compress(other, calibration=cal)


def test_lossless_with_calibration_is_refused() -> None:
    model = torch_model()
    cal = Calibration.torch(model, torch.from_numpy(X))
    with pytest.raises(nnsqueeze.ConfigError, match="lossless"):
        nnsqueeze.compress(model, calibration=cal, lossless=True)


def test_non_finite_outputs_are_refused() -> None:
    model = torch_model()
    with pytest.raises(CalibrationError, match="not all finite"):
        Calibration.torch(model, torch.full((4, 8), float("inf")))


# --------------------------------------------------------------------------- ONNX inputs and the CLI


@pytest.mark.parametrize(
    ("feeds", "match"),
    [
        ({"x": X.astype(np.float64)}, "float64 but the model expects tensor\\(float\\)"),
        ({"x": X[:, :5]}, "shape \\[32, 5\\] but the model expects \\['\\?', 8\\]"),
        ({"x": X[0]}, "shape \\[8\\]"),
        ({}, "missing \\['x'\\]"),
        ({"x": X, "extra": X}, "unknown \\['extra'\\]"),
    ],
)
def test_bad_onnx_inputs_are_named(tmp_path: Path, feeds: dict[str, np.ndarray], match: str) -> None:
    with pytest.raises(CalibrationError, match=match):
        Calibration.onnx(onnx_model(tmp_path / "m.onnx"), feeds)


def test_cli_calibrate_and_target_fidelity(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = onnx_model(tmp_path / "m.onnx")
    np.savez(tmp_path / "x.npz", x=X)
    out = tmp_path / "m.nnsq"
    assert main(["compress", str(src), "-o", str(out), "--calibrate", str(tmp_path / "x.npz")]) == 0
    assert "calibrating on 32 samples: rounding 2 weight tensors" in capsys.readouterr().err
    args = ["compress", str(src), "-o", str(out), "--calibrate", str(tmp_path / "x.npz")]
    assert main([*args, "--target-fidelity", "0.9995"]) == 0
    cal = Calibration.onnx(src, tmp_path / "x.npz")
    assert cal.fidelity(nnsqueeze.decompress(out)) >= 0.9995
    restored = tmp_path / "r.onnx"
    assert main(["decompress", str(out), "-o", str(restored)]) == 0
    assert restored.exists()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--target-fidelity", "0.99"], "add --calibrate"),
        (["--calibrate", "{npz}", "--suffix-npz"], "needs an .onnx file"),
        (["--calibrate", "{missing}"], "cannot read calibration inputs"),
        (["--calibrate", "{bad}"], "float64 but the model expects"),
        (["--calibrate", "{npz}", "--lossless"], "--lossless has none"),
    ],
)
def test_cli_calibration_errors_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    src = onnx_model(tmp_path / "m.onnx")
    np.savez(tmp_path / "x.npz", x=X)
    np.savez(tmp_path / "bad.npz", x=X.astype(np.float64))
    if "--suffix-npz" in extra:
        extra = [e for e in extra if e != "--suffix-npz"]
        np.savez(tmp_path / "w.npz", w1=W1)
        src = tmp_path / "w.npz"
    names = {"npz": tmp_path / "x.npz", "missing": tmp_path / "nope.npz", "bad": tmp_path / "bad.npz"}
    argv = ["compress", str(src), "-o", str(tmp_path / "o.nnsq"), *(e.format(**names) for e in extra)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert message in err[0]


def test_missing_onnxruntime_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = onnx_model(tmp_path / "m.onnx")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # `import onnxruntime` fails as if not installed
    with pytest.raises(nnsqueeze.MissingDependencyError, match=r"nnsqueeze\[calibrate\]"):
        Calibration.onnx(src, {"x": X})
