"""The torch side: custom operators (opcheck), modules, convert, gradients, state dicts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

import nnsqueeze  # noqa: E402
from nnsqueeze.errors import ConfigError, TensorError  # noqa: E402
from nnsqueeze.sparse import (  # noqa: E402
    CSR,
    FORMATS,
    FormatError,
    PackedCodebook,
    convert,
    layer_formats,
    ops,
)
from nnsqueeze.sparse.nn import FormatLinear, SparseConv, SparseLinear, model_cost, weight_nbytes  # noqa: E402
from tests.sparse.test_formats import SEED, random_matrix  # noqa: E402


def grid(model: nn.Module, scale: float = 64) -> nn.Module:
    """Rounds every parameter to a grid (few distinct values, like quantized weights)."""
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.round(p * scale) / scale)
    return model


def digits_like() -> nn.Module:
    torch.manual_seed(0)
    return grid(
        nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(16, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(32 * 4 * 4, 64),
            nn.ReLU(),
            nn.Linear(64, 10),
        )
    )


def mnist1d_like() -> nn.Module:
    torch.manual_seed(1)
    return grid(
        nn.Sequential(
            nn.Conv1d(1, 8, 5, stride=2, padding=2),
            nn.ReLU(),
            nn.Conv1d(8, 8, 3, padding=2, dilation=2),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(8 * 20, 10, bias=False),
        )
    )


@pytest.mark.parametrize("name", ["csr", "cer", "cser", "packed"])
@pytest.mark.parametrize("grad", [False, True])
def test_opcheck(name: str, grad: bool) -> None:
    rng = np.random.default_rng(0)
    w = random_matrix(rng, 20, 30, 6, 0.5, 0.25 if name in ("cer", "cser") else 0.0)
    fmt = FORMATS[name].from_dense(w)
    x = torch.randn(2, 3, 30, requires_grad=grad)
    bias = torch.randn(20, requires_grad=grad)
    op, args = ops.linear_op(name), ops.linear_args(fmt, x, bias)
    torch.library.opcheck(op, args)
    y = op(*args)
    want = x.detach().double() @ torch.from_numpy(w).double().T + bias.detach().double()
    torch.testing.assert_close(y.double(), want, rtol=1e-5, atol=1e-4)
    if grad:
        y.sum().backward()
        gx = torch.ones(2, 3, 20).double() @ torch.from_numpy(w).double()
        torch.testing.assert_close(x.grad.double(), gx, rtol=1e-5, atol=1e-4)
        torch.testing.assert_close(bias.grad, torch.full((20,), 6.0))


def test_operators_reject_malformed_tensors() -> None:
    f = CSR.from_dense(SEED)
    bad = torch.from_numpy(np.where(np.arange(20) == 2, 77, np.array(f.col_idx)).astype(np.uint8))
    with pytest.raises(FormatError, match="out of range"):
        ops.linear_op("csr")(
            torch.ones(10),
            torch.from_numpy(np.array(f.row_ptr)),
            bad,
            torch.from_numpy(np.array(f.values)),
            None,
            5,
        )
    args = ops.linear_args(f, torch.ones(10, dtype=torch.float64), None)
    with pytest.raises(TypeError, match="float32"):
        ops.linear_op("csr")(*args)


@pytest.mark.parametrize("fmt", ["dense", "packed", "csr", "cer", "cser"])
@pytest.mark.parametrize("make", [digits_like, mnist1d_like])
def test_converted_models_match(fmt: str, make: object) -> None:
    model = make()  # type: ignore[operator]
    x = torch.randn(4, 1, 8, 8) if make is digits_like else torch.randn(4, 1, 40)
    fast = convert(model, fmt)
    assert set(layer_formats(fast).values()) == {fmt}
    assert all(
        isinstance(m, FormatLinear) for m in fast.modules() if isinstance(m, (SparseLinear, SparseConv))
    )
    with torch.no_grad():
        torch.testing.assert_close(fast(x), model(x), rtol=1e-5, atol=1e-5)
        conv, sparse_conv = model[0], fast[0]
        torch.testing.assert_close(sparse_conv(x[0]), conv(x[0]), rtol=1e-5, atol=1e-5)  # unbatched
    assert convert(model, fmt) is not model
    assert isinstance(model[0], (nn.Conv1d, nn.Conv2d))


def test_gradients_through_converted_layers() -> None:
    model = digits_like()
    fast = convert(model, "cser")
    x = torch.randn(2, 1, 8, 8, requires_grad=True)
    fast(x).sum().backward()
    gx = x.grad.clone()
    x.grad = None
    model(x).sum().backward()
    torch.testing.assert_close(gx, x.grad, rtol=1e-4, atol=1e-5)


def test_auto_picks_measured_formats_and_never_loses_dense() -> None:
    model = digits_like()
    x = torch.randn(8, 1, 8, 8)
    report: list[object] = []
    fast = convert(model, "auto", example_inputs=(x,), repeats=3, report=report)
    assert len(report) == 4
    for choice in report:
        assert set(choice.times) == set(FORMATS)  # type: ignore[attr-defined]
        rel = choice.relative  # type: ignore[attr-defined]
        best = min(rel, key=rel.get)
        if choice.format != "dense":  # type: ignore[attr-defined]
            assert choice.format == best
            assert rel[best] <= 0.9
        else:
            assert rel[best] > 0.9
    with torch.no_grad():
        torch.testing.assert_close(fast(x), model(x), rtol=1e-5, atol=1e-5)
    compact = convert(model, "auto", candidates=("packed", "cser"), batch_size=4, repeats=2)
    assert set(layer_formats(compact).values()) <= {"packed", "cser"}
    assert len(layer_formats(compact)) == 4
    assert sum(weight_nbytes(compact).values()) < sum(weight_nbytes(model).values()) / 2


def test_convert_from_nnsq_levels(tmp_path: Path) -> None:
    model = mnist1d_like()
    path = tmp_path / "m.nnsq"
    nnsqueeze.compress(model, path, qp=-20)
    decoded = mnist1d_like()
    decoded.load_state_dict(nnsqueeze.load_state_dict(path))
    fast = convert(decoded, "cer", source=path)
    layers = [m for m in fast.modules() if isinstance(m, FormatLinear)]
    assert len(layers) == 3
    x = torch.randn(3, 1, 40)
    with torch.no_grad():
        torch.testing.assert_close(fast(x), decoded(x), rtol=1e-5, atol=1e-5)
    # each layer's matrix is exactly the codec's reconstruction
    for (name, m), layer in zip(
        [(n, m) for n, m in decoded.named_modules() if hasattr(m, "weight")], layers, strict=True
    ):
        np.testing.assert_array_equal(
            layer.format.to_dense(), m.weight.detach().reshape(m.weight.shape[0], -1).numpy(), err_msg=name
        )


def test_state_dict_round_trip() -> None:
    model = digits_like()
    fast = convert(model, "packed")
    other = convert(model, "packed")
    with torch.no_grad():
        for b in other.buffers():
            b.zero_()
    other.load_state_dict(fast.state_dict())
    x = torch.randn(2, 1, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(other(x), fast(x))
    assert isinstance(fast[6].format, PackedCodebook)


def test_model_cost_counts_positions() -> None:
    costs = model_cost(digits_like(), (torch.randn(3, 1, 8, 8),))
    dense = costs["dense"]
    assert dense.parameters == 38282
    assert dense.counts.mults == 16 * 9 * 64 + 32 * 144 * 64 + 64 * 512 + 10 * 64
    assert costs["cser"].bytes < dense.bytes < costs["csr"].bytes  # few zeros: CSR grows, CSER shrinks
    assert costs["cser"].counts.mults < costs["csr"].counts.mults <= dense.counts.mults


def test_convert_checks_options() -> None:
    with pytest.raises(ConfigError, match="unknown format"):
        convert(digits_like(), "coo")
    with pytest.raises(ConfigError, match="candidates"):
        convert(digits_like(), "auto", candidates=("coo",))
    with pytest.raises(TensorError, match="at most 256"):
        convert(nn.Linear(300, 20), "packed")


def test_a_bare_layer_is_replaced() -> None:
    lin = grid(nn.Linear(12, 3))
    fast = convert(lin, "csr")
    assert isinstance(fast, SparseLinear)
    assert "format=csr" in repr(fast)


def test_numpy_only_import() -> None:
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "import numpy as np, nnsqueeze.sparse as s\n"
        "f = s.CER.from_dense(np.eye(3, dtype=np.float32))\n"
        "print(f.matvec(np.ones(3, np.float32)).tolist())\n"
        "try:\n    s.convert\nexcept ImportError:\n    print('no torch')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split("\n")[:2] == ["[1.0, 1.0, 1.0]", "no torch"]


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch's own imports (torch.jit.script_method)
@pytest.mark.parametrize("backend", ["aot_eager"])
def test_torch_compile(backend: str) -> None:
    """The converted layers trace into one graph (the operators, not the eager shortcut)."""
    model = digits_like()
    fast = convert(model, "cser")
    fast[6] = convert(model[6], "packed")
    compiled = torch.compile(fast, fullgraph=True, backend=backend)
    x = torch.randn(2, 1, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), model(x), rtol=1e-5, atol=1e-5)


def test_a_registered_format_gets_modules_and_operators() -> None:
    """A new format is one registered class: convert, the eager kernel call, the generated operator
    (opcheck) and its gradient need nothing else (in a subprocess, to leave the registry as it is)."""
    code = """
import numpy as np, torch
from nnsqueeze.sparse import CSR, FORMATS, convert, layer_formats, ops
from nnsqueeze.sparse.formats import register

@register
class RowsAgain(CSR):
    name = "rows_again"

torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(12, 6), torch.nn.ReLU(), torch.nn.Linear(6, 3))
with torch.no_grad():
    for p in model.parameters():
        p.copy_(torch.round(p * 8) / 8 * (torch.rand_like(p) < 0.5))
fast = convert(model, "rows_again")
x = torch.randn(4, 12, requires_grad=True)
torch.testing.assert_close(fast(x), model(x), rtol=1e-5, atol=1e-5)
fast(x).sum().backward()
gx = x.grad.clone()
x.grad = None
model(x).sum().backward()
torch.testing.assert_close(gx, x.grad, rtol=1e-5, atol=1e-5)
fmt = fast[0].format
torch.library.opcheck(ops.linear_op("rows_again"), ops.linear_args(fmt, torch.randn(2, 12), None))
print(layer_formats(fast), "rows_again" in FORMATS)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "{'0': 'rows_again', '2': 'rows_again'} True"
