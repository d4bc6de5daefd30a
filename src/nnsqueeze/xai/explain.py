"""Explaining a stored model: ``nnsqueeze explain MODEL.nnsq --input X.npy``.

The checkpoint holds weights only, so the architecture is named: ``digits`` (the demo CNN) or
``package.module:function``, a function returning an untrained ``nn.Module`` into which the state dict
loads.  Inputs come from ``.npy``, ``.npz`` (the array ``x``, or the only one) or ``.pt`` (a tensor,
loaded with ``weights_only=True``), shaped like a batch for the model.

Writes ``relevance.npy`` (the inputs' shape) and, for image-like inputs, one signed heatmap PNG per input.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from nnsqueeze.errors import CheckpointError, ConfigError
from nnsqueeze.xai.attribution import Attributor
from nnsqueeze.xai.composites import Composite, get_composite
from nnsqueeze.xai.heatmap import save_heatmap

__all__ = ["ExplainResult", "build_architecture", "explain_checkpoint", "load_inputs"]


def build_architecture(arch: str) -> nn.Module:
    """A fresh model: ``digits`` or ``module:function``."""
    if arch == "digits":
        from nnsqueeze import zoo

        return zoo.build("digits_cnn")
    module_name, sep, attr = arch.partition(":")
    if not sep or not module_name or not attr:
        msg = f"--arch must be 'digits' or 'package.module:function', got {arch!r}"
        raise ConfigError(msg)
    try:
        factory: Callable[[], object] = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        msg = f"cannot import the architecture {arch!r}: {exc}"
        raise ConfigError(msg) from exc
    model = factory()
    if not isinstance(model, nn.Module):
        msg = f"{arch} returned {type(model).__name__}, not a torch.nn.Module"
        raise ConfigError(msg)
    return model


def load_inputs(path: str | Path) -> Tensor:
    """Inputs from ``.npy``, ``.npz`` or ``.pt`` as a float32 tensor."""
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix == ".npy":
        array = np.load(p, allow_pickle=False)
    elif suffix == ".npz":
        with np.load(p, allow_pickle=False) as npz:
            names = list(npz.files)
            if "x" in names:
                array = npz["x"]
            elif len(names) == 1:
                array = npz[names[0]]
            else:
                msg = f"{p}: holds {names}; name the inputs 'x'"
                raise CheckpointError(msg)
    elif suffix in (".pt", ".pth"):
        loaded = torch.load(p, weights_only=True)
        if not isinstance(loaded, Tensor):
            msg = f"{p}: expected a tensor, found {type(loaded).__name__}"
            raise CheckpointError(msg)
        return loaded.float()
    else:
        msg = f"{p}: inputs must be .npy, .npz or .pt"
        raise CheckpointError(msg)
    return torch.from_numpy(np.array(array, dtype=np.float32))


@dataclass(frozen=True)
class ExplainResult:
    """Per input: the predicted class, the explained class, its logit and the sum of the relevance."""

    predictions: list[int]
    targets: list[int]
    logits: list[float]
    relevance_sums: list[float]
    rules: dict[str, str]
    files: list[Path] = field(default_factory=list)

    def summary(self) -> str:
        lines = ["input  predicted  explained  logit       sum R"]
        lines += [
            f"{i:<6} {p:<10} {t:<10} {v:<11.4f} {r:.4f}"
            for i, (p, t, v, r) in enumerate(
                zip(self.predictions, self.targets, self.logits, self.relevance_sums, strict=True)
            )
        ]
        lines.append("rules: " + ", ".join(f"{k or '<model>'}: {v}" for k, v in self.rules.items()))
        lines.append("wrote: " + ", ".join(str(f) for f in self.files))
        return "\n".join(lines)


def explain_checkpoint(
    model_path: str | Path,
    input_path: str | Path,
    out_dir: str | Path,
    *,
    arch: str = "digits",
    composite: Composite | str = "epsilon_plus_flat",
    target: int | None = None,
) -> ExplainResult:
    """Loads the model and inputs, explains ``target`` (default: each input's predicted class), writes
    ``relevance.npy`` and heatmaps to ``out_dir``."""
    import nnsqueeze

    model = build_architecture(arch)
    state = nnsqueeze.load_state_dict(model_path)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        msg = f"{model_path} does not fit the architecture {arch!r}: {exc}"
        raise CheckpointError(msg) from exc
    model.eval()
    x = load_inputs(input_path)
    comp = get_composite(composite) if isinstance(composite, str) else composite
    with torch.no_grad():
        logits = model(x)
    if logits.ndim != 2:
        msg = f"the model returns shape {tuple(logits.shape)}; explain needs (batch, classes)"
        raise ConfigError(msg)
    targets = logits.argmax(1) if target is None else torch.full((x.shape[0],), target, dtype=torch.long)
    with Attributor(model, comp) as attributor:
        output, relevance = attributor(x, targets)
        rules = dict(attributor.rules)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = [out / "relevance.npy"]
    np.save(files[0], relevance.numpy())
    if relevance.ndim == 4 or (relevance.ndim == 3 and relevance.shape[1] > 1 and relevance.shape[2] > 1):
        for i in range(relevance.shape[0]):
            files.append(save_heatmap(out / f"heatmap_{i}_class{int(targets[i])}.png", relevance[i]))
    return ExplainResult(
        predictions=[int(v) for v in logits.argmax(1)],
        targets=[int(v) for v in targets],
        logits=[float(v) for v in output.gather(1, targets[:, None]).squeeze(1)],
        relevance_sums=[float(v) for v in relevance.flatten(1).sum(1)],
        rules=rules,
        files=files,
    )
