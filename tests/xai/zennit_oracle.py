"""Optional oracle: zennit (LGPL, not a dependency) for cross-checking the composites.

zennit imports torchvision only for its ResNet/VGG canonizers (``zennit.torchvision``), which the checks
here do not use.  When torchvision is not installed (it is not here: no build matches torch 2.13 CPU),
a stub with the two class names zennit imports is put in place for the import and removed after.
Everything compared runs zennit's own rule code."""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from typing import Any

from torch import nn


def import_zennit() -> Any | None:
    """The zennit module, or None when it is not installed."""
    if importlib.util.find_spec("zennit") is None:
        return None
    if "zennit" in sys.modules:
        return sys.modules["zennit"]
    try:
        importlib.import_module("torchvision.models.resnet")
        stubbed: list[str] = []
    except Exception:
        stubbed = ["torchvision", "torchvision.models", "torchvision.models.resnet"]
        for name in stubbed:
            sys.modules[name] = types.ModuleType(name)
        resnet = sys.modules["torchvision.models.resnet"]
        resnet.Bottleneck = type("Bottleneck", (nn.Module,), {})  # type: ignore[attr-defined]
        resnet.BasicBlock = type("BasicBlock", (nn.Module,), {})  # type: ignore[attr-defined]
    try:
        return importlib.import_module("zennit")
    finally:
        for name in stubbed:
            sys.modules.pop(name, None)
