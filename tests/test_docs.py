"""The runnable examples in the public docstrings."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "nnsqueeze",
    "nnsqueeze.codec",
    "nnsqueeze.coding.cabac",
    "nnsqueeze.coding.planes",
    "nnsqueeze.coding.bytestream",
    "nnsqueeze.quant.uniform",
    "nnsqueeze.quant.rdo",
    "nnsqueeze.quant.fisher",
    "nnsqueeze.fl.screening",
    "nnsqueeze.package",
    "nnsqueeze.update",
    "nnsqueeze.sparse.isa",
    "nnsqueeze.zoo",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0
