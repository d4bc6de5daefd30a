"""Canonizers: rewrite a model into an equivalent form on which the LRP rules are meant to run.

* :class:`MergeBatchNorm` folds an (eval-mode) BatchNorm into the Linear/Conv layer before it, so the
  rule of that layer sees the merged weights and the BatchNorm becomes the identity.  Without it a
  BatchNorm gets the :class:`~nnsqueeze.xai.rules.Pass` rule, which gives a different heatmap.
* :class:`ExplicitSum` traces the model (``torch.fx``) and replaces every tensor ``a + b`` by a
  :class:`~nnsqueeze.xai.layers.Sum` module, which the composites give the stabilised ``Norm`` rule.

Canonizers never write to the model's parameters or buffers: merged parameters are handed to the rules,
and an instance ``forward`` patched by :class:`ExplicitSum` is removed again when the attributor exits.
"""

from __future__ import annotations

import itertools
import operator
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from nnsqueeze.xai.errors import UnsupportedLayerError
from nnsqueeze.xai.layers import Sum
from nnsqueeze.xai.rules import LINEAR_TYPES

__all__ = ["BATCH_NORM_TYPES", "Canonized", "Canonizer", "ExplicitSum", "MergeBatchNorm", "merged_parameters"]

BATCH_NORM_TYPES: tuple[type[nn.Module], ...] = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


@dataclass
class Canonized:
    """What a canonizer did, for the attributor: merged parameters per layer, layers that became the
    identity, new modules that need rules, and how to undo it."""

    parameters: dict[nn.Module, tuple[Tensor, Tensor]] = field(default_factory=dict)
    identities: dict[nn.Module, str] = field(default_factory=dict)
    modules: list[tuple[str, nn.Module]] = field(default_factory=list)
    undo: list[Callable[[], None]] = field(default_factory=list)

    def update(self, other: Canonized) -> None:
        self.parameters.update(other.parameters)
        self.identities.update(other.identities)
        self.modules.extend(other.modules)
        self.undo.extend(other.undo)

    def remove(self) -> None:
        """Undoes every change, last first."""
        while self.undo:
            self.undo.pop()()


class Canonizer(ABC):
    """Rewrites a model for the duration of an attribution."""

    @abstractmethod
    def apply(self, model: nn.Module) -> Canonized:
        """Applies the canonizer to ``model``; the returned record undoes it."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def merged_parameters(linear: nn.Module, batch_norm: nn.Module) -> tuple[Tensor, Tensor]:
    """Weight and bias of ``linear`` followed by the eval-mode ``batch_norm``, as one layer (detached)."""
    if not isinstance(linear, LINEAR_TYPES):
        msg = f"cannot merge BatchNorm into {type(linear).__name__}: needs Linear or Conv"
        raise UnsupportedLayerError(msg)
    if not isinstance(batch_norm, nn.modules.batchnorm._BatchNorm):
        msg = f"cannot merge {type(batch_norm).__name__}: not a BatchNorm"
        raise UnsupportedLayerError(msg)
    bn = batch_norm
    if bn.running_mean is None or bn.running_var is None:
        msg = f"cannot merge {type(bn).__name__} without running statistics (track_running_stats=False)"
        raise UnsupportedLayerError(msg)
    weight = _tensor(linear, "weight")
    linear_bias = _tensor(linear, "bias")
    assert weight is not None
    scale = (bn.running_var.detach() + bn.eps).rsqrt()
    if bn.weight is not None:
        scale = scale * bn.weight.detach()
    shift = -bn.running_mean.detach() * scale
    if bn.bias is not None:
        shift = shift + bn.bias.detach()
    bias = shift if linear_bias is None else linear_bias.detach() * scale + shift
    index = (slice(None), *((None,) * (weight.ndim - 1)))
    return weight * scale[index], bias


class MergeBatchNorm(Canonizer):
    """Merges each BatchNorm into the Linear/Conv layer that feeds it.

    With ``pairs=None`` the pairs are found in ``nn.Sequential`` containers (a linear layer directly
    followed by a BatchNorm); otherwise give ``(linear name, batch-norm name)`` pairs, as in
    ``model.named_modules()``.  The linear layer's output must feed only that BatchNorm."""

    def __init__(self, pairs: Sequence[tuple[str, str]] | None = None) -> None:
        self.pairs = None if pairs is None else [tuple(p) for p in pairs]

    def __repr__(self) -> str:
        return f"MergeBatchNorm(pairs={self.pairs!r})"

    def find_pairs(self, model: nn.Module) -> list[tuple[str, str]]:
        """The ``(linear, batch norm)`` name pairs this canonizer merges in ``model``."""
        if self.pairs is not None:
            names = dict(model.named_modules())
            for pair in self.pairs:
                for name in pair:
                    if name not in names:
                        msg = f"MergeBatchNorm: no module named {name!r} in the model"
                        raise UnsupportedLayerError(msg)
            return [(a, b) for a, b in self.pairs]
        found: list[tuple[str, str]] = []
        for prefix, module in model.named_modules():
            if not isinstance(module, nn.Sequential):
                continue
            children = list(module.named_children())
            for (name_a, a), (name_b, b) in itertools.pairwise(children):
                if isinstance(a, LINEAR_TYPES) and isinstance(b, BATCH_NORM_TYPES):
                    found.append((_join(prefix, name_a), _join(prefix, name_b)))
        return found

    def apply(self, model: nn.Module) -> Canonized:
        names = dict(model.named_modules())
        out = Canonized()
        for linear_name, bn_name in self.find_pairs(model):
            linear, bn = names[linear_name], names[bn_name]
            if not isinstance(bn, BATCH_NORM_TYPES):
                msg = f"MergeBatchNorm: {bn_name!r} is {type(bn).__name__}, not a BatchNorm"
                raise UnsupportedLayerError(msg)
            out.parameters[linear] = merged_parameters(linear, bn)
            out.identities[bn] = linear_name
        return out


def _tensor(module: nn.Module, name: str) -> Tensor | None:
    value = getattr(module, name, None)
    return value.detach() if isinstance(value, Tensor) else None


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


_ADDS = {operator.add, torch.add, operator.iadd}


class ExplicitSum(Canonizer):
    """Replaces every ``a + b`` of two tensors in the model's forward by a :class:`Sum` module.

    The model is traced with ``torch.fx`` (so its forward must be traceable: no data-dependent control
    flow); during the attribution the model's ``forward`` is the traced one, and the original is back
    afterwards."""

    def apply(self, model: nn.Module) -> Canonized:
        import torch.fx

        try:
            traced = torch.fx.symbolic_trace(model)
        except Exception as exc:  # fx raises many types (TraceError, TypeError, ...)
            msg = f"ExplicitSum could not trace {type(model).__name__} with torch.fx: {exc}"
            raise UnsupportedLayerError(msg) from exc
        graph = traced.graph
        out = Canonized()
        count = 0
        for node in list(graph.nodes):
            is_add = (node.op == "call_function" and node.target in _ADDS) or (
                node.op == "call_method" and node.target in ("add", "__add__")
            )
            if not is_add or node.kwargs or len(node.args) != 2:
                continue
            if not all(isinstance(a, torch.fx.Node) and _is_tensor_node(a) for a in node.args):
                continue
            name = f"xai_sum{count}"
            count += 1
            module = Sum()
            traced.add_submodule(name, module)
            with graph.inserting_after(node):
                replacement = graph.call_module(name, args=tuple(node.args))
            node.replace_all_uses_with(replacement)
            graph.erase_node(node)
            out.modules.append((name, module))
        if not count:
            return out
        graph.lint()
        traced.recompile()
        had_forward = "forward" in vars(model)
        previous = vars(model).get("forward")
        object.__setattr__(model, "forward", traced.forward)

        def undo() -> None:
            if had_forward:
                object.__setattr__(model, "forward", previous)
            else:
                object.__delattr__(model, "forward")

        out.undo.append(undo)
        return out


_NON_TENSOR_METHODS = {"size", "dim", "numel", "item", "tolist", "__len__"}


def _is_tensor_node(node: object) -> bool:
    """Whether an fx node stands for a tensor, not a shape, size or Python number (a best guess from the
    graph alone: sizes come from ``.size()``, ``.shape``, ``len`` and arithmetic on those)."""
    import torch.fx

    if not isinstance(node, torch.fx.Node):
        return False
    if node.op == "call_method" and node.target in _NON_TENSOR_METHODS:
        return False
    if node.op == "call_function":
        if node.target in (getattr, len):
            return False
        if getattr(node.target, "__module__", None) in ("_operator", "operator"):
            return any(_is_tensor_node(a) for a in node.args if isinstance(a, torch.fx.Node))
    return True
