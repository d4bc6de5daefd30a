"""Default options take every float tensor: what cannot be quantized at its step (NaN/Inf, huge
magnitudes such as BatchNorm variances) is stored losslessly and reported; ``strict`` refuses."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import nnsqueeze
from nnsqueeze import CompressOptions, TensorError
from nnsqueeze.cli import main
from nnsqueeze.codec import NOTES_KEY


def awkward_checkpoint() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(11)
    weight = rng.normal(0, 0.05, (16, 8)).astype(np.float32)
    masked = rng.normal(0, 0.05, (4, 4)).astype(np.float32)
    masked[0, 1:] = -np.inf  # an attention mask
    placeholder = rng.normal(0, 0.05, (3, 5)).astype(np.float32)
    placeholder.reshape(-1)[[2, 7]] = np.nan
    return {
        "conv.weight": weight,
        "bn.running_var": np.array([1.04847e7, 3.2, 0.5, 8e4], np.float32),  # as in a real OCR model
        "bn.running_mean": np.array([1.2e4, -3.0, 0.1, 7.0], np.float32),
        "attn.mask": masked,
        "head.placeholder": placeholder,
        "half.extremes": np.array([[65504, -65504], [6e-8, 0]], np.float16),
    }


def _bits(a: np.ndarray) -> bytes:
    return np.ascontiguousarray(a).view(np.uint8).tobytes()


def test_defaults_store_unquantizable_tensors_losslessly_and_say_why() -> None:
    x = awkward_checkpoint()
    report = nnsqueeze.compress(x, None, threads=1)
    notes = {t.name: t.note for t in report.tensors if t.note}
    assert set(notes) == {"bn.running_var", "attn.mask", "head.placeholder"}
    assert "non-finite" in notes["attn.mask"]
    assert "exceed" in notes["bn.running_var"]
    methods = {t.name: t.method for t in report.tensors}
    assert methods["conv.weight"] == methods["bn.running_mean"] == "uniform"  # 1.2e4 fits 2^30 fine steps
    assert report.data is not None
    back = nnsqueeze.decompress(report.data, threads=1)
    for name in notes:  # bit-exact, NaN payloads and -inf included
        assert _bits(back[name]) == _bits(x[name])
    assert np.allclose(back["conv.weight"], x["conv.weight"], rtol=0, atol=2.0**-8 * 1.0001)  # half a step
    with nnsqueeze.NnsqFile(report.data) as f:
        recorded = f.metadata[NOTES_KEY]
    assert all(f"{name}: stored losslessly" in recorded for name in notes)


def test_fp16_extremes_quantize_at_the_default_step() -> None:
    x = {"half.extremes": awkward_checkpoint()["half.extremes"]}
    report = nnsqueeze.compress(x, None, threads=1)
    assert report.tensors[0].note == ""
    assert report.tensors[0].method == "uniform"


@pytest.mark.parametrize("dtype", ["float16", "float32", "bfloat16"])
def test_scalar_tensors_decode_to_zero_dimensional_arrays(dtype: str) -> None:
    # Found by the long record-mutation fuzz test: a 0-d float16 tensor came back as a NumPy scalar.
    from nnsqueeze.dtypes import from_float32

    value = from_float32(np.array(-0.0156, np.float32), dtype)
    assert isinstance(value, np.ndarray)
    assert value.shape == ()
    data = nnsqueeze.compress({"s": np.array(-0.0156, np.float16)}, None, threads=1).data
    assert data is not None
    out = nnsqueeze.decompress(data)["s"]
    assert isinstance(out, np.ndarray)
    assert out.shape == ()
    assert out.dtype == np.float16


def test_strict_refuses_what_defaults_store_losslessly() -> None:
    x = awkward_checkpoint()
    with pytest.raises(TensorError, match=r"bn\.running_var|attn\.mask|head\.placeholder"):
        nnsqueeze.compress(x, None, options=CompressOptions(strict=True, threads=1))


def test_cli_compresses_an_awkward_checkpoint_and_strict_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    npz = tmp_path / "awkward.npz"
    np.savez(npz, **awkward_checkpoint())
    out = tmp_path / "awkward.nnsq"
    assert main(["compress", str(npz), "-o", str(out), "--threads", "1"]) == 0
    printed = capsys.readouterr().out
    assert "bn.running_var: stored losslessly" in printed
    assert main(["info", str(out)]) == 0
    assert f"metadata {NOTES_KEY} = " in capsys.readouterr().out
    restored = tmp_path / "restored.npz"
    assert main(["decompress", str(out), "-o", str(restored)]) == 0
    with np.load(restored) as z:
        assert _bits(z["attn.mask"]) == _bits(awkward_checkpoint()["attn.mask"])
    capsys.readouterr()
    assert main(["compress", str(npz), "-o", str(tmp_path / "strict.nnsq"), "--strict"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "cannot be quantized" in err[0] or "beyond" in err[0]


def test_a_torch_checkpoint_with_shared_storage_views_and_plain_entries_round_trips(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    gen = torch.Generator().manual_seed(0)
    base = torch.randn(6, 4, generator=gen) * 0.05
    state = {
        "enc.weight": base,
        "dec.weight": base,  # tied: the same storage under two names
        "enc.weight_t": base.T,  # a transposed (non-contiguous) view
        "row": base[2],  # a view into the middle of the storage
        "bn.running_var": torch.tensor([1.04847e7, 3.0]),
        "bn.num_batches_tracked": torch.tensor(12, dtype=torch.int64),  # 0-d
        "empty": torch.zeros(0, 3),
        "one": torch.tensor([0.25]),
        "half": torch.tensor([65504.0, -6e-8], dtype=torch.float16),
        "brain": (torch.randn(3, 3, generator=gen) * 0.05).to(torch.bfloat16),
        "mask": torch.tensor([True, False, True]),
        "epoch": 7,
        "config": {"name": "tiny", "dropout": 0.1, "layers": [2, 2]},
    }
    source = tmp_path / "awkward.pt"
    torch.save(state, source)
    packed = tmp_path / "awkward.nnsq"
    assert main(["compress", str(source), "-o", str(packed), "--threads", "1"]) == 0
    back_path = tmp_path / "back.pt"
    assert main(["decompress", str(packed), "-o", str(back_path)]) == 0
    back = torch.load(back_path, weights_only=True)
    assert back["epoch"] == 7
    assert back["config.name"] == "tiny"
    assert back["config.layers"] == [2, 2]
    assert torch.equal(back["bn.running_var"], state["bn.running_var"])  # stored losslessly
    assert torch.equal(back["bn.num_batches_tracked"], state["bn.num_batches_tracked"])
    assert back["empty"].shape == (0, 3)
    assert back["brain"].dtype == torch.bfloat16
    assert torch.equal(back["mask"], state["mask"])
    step = 2.0**-7
    for name in ("enc.weight", "dec.weight", "enc.weight_t", "row"):
        assert back[name].shape == state[name].shape
        assert torch.allclose(back[name], state[name], rtol=0, atol=step / 2 * 1.0001)
    assert torch.equal(back["enc.weight"], back["dec.weight"])
    assert torch.equal(back["enc.weight_t"], back["enc.weight"].T)
    # the API reads the same file
    api = nnsqueeze.load_state_dict(packed)
    assert set(api) == {k for k, v in state.items() if isinstance(v, torch.Tensor)}
