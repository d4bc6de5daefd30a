"""The runnable examples in the public docstrings and in the self-contained guides of ``docs/``."""

from __future__ import annotations

import doctest
import importlib
import re
from pathlib import Path

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
    "nnsqueeze.fl.compressors",
    "nnsqueeze.fl.error_feedback",
    "nnsqueeze.fl.screening",
    "nnsqueeze.package",
    "nnsqueeze.update",
    "nnsqueeze.sparse.isa",
    "nnsqueeze.zoo",
    "nnsqueeze.quant.allocation",
    "nnsqueeze.nnr",
    "nnsqueeze.nnr.decoder",
    "nnsqueeze.nnr.encoder",
]
# Guides whose Python blocks run as they stand (the others refer to the reader's own files).
GUIDES = ["rd.md", "nnr.md"]
DOCS = Path(__file__).resolve().parent.parent / "docs"


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0


@pytest.mark.parametrize("guide", GUIDES)
def test_guide_examples_run(guide: str) -> None:
    blocks = re.findall(r"```python\n(.*?)```", (DOCS / guide).read_text(), re.DOTALL)
    assert blocks
    for block in blocks:
        exec(compile(block, f"docs/{guide}", "exec"), {})
