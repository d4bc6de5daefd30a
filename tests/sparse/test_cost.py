"""The cost model: the seed's VGG-16 row from shapes alone, energy pricing, model totals, the CLI table."""

from __future__ import annotations

import doctest
import importlib
from pathlib import Path

import numpy as np
import pytest

import nnsqueeze
from nnsqueeze.sparse import (
    CER,
    CSER,
    CSR,
    Dense,
    PackedCodebook,
    dense_model_cost,
    format_model_cost,
    vgg16_layers,
)
from nnsqueeze.sparse.cost import ENERGY_45NM, LayerShape, access_pj
from tests.sparse.test_formats import SEED


def test_vgg16_dense_row_of_the_seed() -> None:
    layers = vgg16_layers()
    assert len(layers) == 16
    c = dense_model_cost(layers)
    assert c.parameters == 138_357_544  # "138 000 000 parameters"
    assert round(c.megabytes) == 553  # "553 MB"
    assert c.ops // 10**6 == 30_940  # "30940 M float operations (sum+mult)"
    assert round(c.energy.compute_pj / 1e9) == 71  # "> 71 mJ just for the float operations"
    assert c.counts.mults == sum(layer.macs for layer in layers) == 15_470_264_320


def test_energy_table_is_linear_in_bits() -> None:
    for size, row in [
        (100, "memory <= 8 KB"),
        (20_000, "memory <= 32 KB"),
        (500_000, "memory <= 1 MB"),
        (2 << 20, "memory > 1 MB"),
    ]:
        for bits, pj in ENERGY_45NM[row].items():
            assert access_pj(bits, size) == pytest.approx(pj)
    assert access_pj(4, 100) == pytest.approx(0.625)


def test_energy_of_the_seed_example() -> None:
    c = CSR.from_dense(SEED).energy()
    # 20 mults, 15 adds; row_ptr (uint8) 10 loads, col_idx (uint8) 20, values (fp32) 20, x 20, y 5 writes
    compute = 20 * 3.7 + 15 * 0.9
    memory = 10 * 1.25 + 20 * 1.25 + 20 * 5.0 + 20 * 5.0 + 5 * 5.0
    assert c.compute_pj == pytest.approx(compute)
    assert c.memory_pj == pytest.approx(memory)
    cer = CER.from_dense(SEED).energy()
    assert cer.compute_pj == pytest.approx(8 * 3.7 + 15 * 0.9)
    assert cer.total_pj < c.total_pj < Dense.from_dense(SEED).energy().total_pj


def test_format_model_cost() -> None:
    w = np.kron(SEED, np.ones((4, 4), np.float32))  # 20 x 40
    layer = LayerShape("fc", 20, 40, positions=3)
    costs = {
        f.name: format_model_cost([(layer, f)])
        for f in (Dense.from_dense(w), CSR.from_dense(w), CSER.from_dense(w), PackedCodebook.from_dense(w))
    }
    assert costs["dense"].bytes == 4 * 800 + 4 * 20
    assert costs["dense"].counts.mults == 3 * 800
    assert costs["csr"].counts.mults == 3 * int((w != 0).sum())
    assert costs["cser"].bytes < costs["csr"].bytes < costs["dense"].bytes
    assert costs["packed"].bytes == 2 * 10 * 16 + 4 * 3 + 80


def test_info_formats_table(tmp_path: Path) -> None:
    from nnsqueeze.cli.formats import format_rows, render

    rng = np.random.default_rng(0)
    weights = {
        "fc.weight": rng.laplace(0, 0.02, (64, 128)).astype(np.float32),
        "fc.bias": np.zeros(64, np.float32),
        "conv.weight": rng.normal(0, 0.1, (8, 3, 3, 3)).astype(np.float32),
        "steps": np.arange(6, dtype=np.int64).reshape(2, 3),
    }
    path = tmp_path / "m.nnsq"
    nnsqueeze.compress(weights, path, qp=-20)
    rows = format_rows(path)
    assert {r.tensor for r in rows} == {"fc.weight", "conv.weight"}
    assert {r.format for r in rows if r.tensor == "fc.weight"} == {"dense", "packed", "csr", "cer", "cser"}
    decoded = nnsqueeze.decompress(path)["fc.weight"]
    cer = next(r for r in rows if r.tensor == "fc.weight" and r.format == "cer")
    assert cer.nbytes == CER.from_dense(decoded).nbytes
    assert cer.shape == (64, 128)
    assert cer.values == np.unique(decoded).size
    assert cer.zeros == pytest.approx((decoded == 0).mean())
    text = render(rows, "title")
    assert "conv.weight" in text
    assert "8x27" in text
    assert "totals" in text


MODULES = [
    "nnsqueeze.sparse",
    "nnsqueeze.sparse.formats",
    "nnsqueeze.sparse.packed",
    "nnsqueeze.sparse.cost",
    "nnsqueeze.sparse.nn",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0


def test_cser_storage_with_omega0_counts_the_scalar() -> None:
    w = np.full((2, 3), 0.5, np.float32)
    w[0, 0] = 1.0
    s = CSER.from_dense(w)
    assert s.omega0 == 0.5
    assert s.nbytes == sum(a.nbytes for a in s.arrays().values()) + 4


def test_cli_info_formats(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from nnsqueeze.cli.main import main as cli_main

    path = tmp_path / "m.nnsq"
    nnsqueeze.compress({"fc.weight": np.eye(8, dtype=np.float32)}, path, qp=-20)
    assert cli_main(["info", "--formats", str(path)]) == 0
    out = capsys.readouterr().out
    assert "fc.weight" in out
    assert "cser" in out
    assert "totals" in out
