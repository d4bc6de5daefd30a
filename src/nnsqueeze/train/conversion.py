"""``convert`` bakes every training-time parametrization (masks, sharing, ternary, grid) into plain
weights; ``clone`` copies a model that may carry parametrizations.

torch's parametrized modules share one generated class per original class *instance*, and
``register_parametrization`` / ``remove_parametrizations`` add and delete properties on that class,
so after ``copy.deepcopy`` an edit to the copy would change the original too.  ``clone`` gives every
parametrized module of the copy its own class; ``convert`` never edits a class.
"""

from __future__ import annotations

import copy
from typing import cast

import torch
from torch import nn
from torch.nn.utils import parametrize


def _own_class(module: nn.Module) -> None:
    cls = module.__class__
    body = {k: v for k, v in cls.__dict__.items() if k not in ("__dict__", "__weakref__")}
    module.__class__ = type(cls.__name__, cls.__bases__, body)


def clone(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` whose parametrized modules can be changed without touching ``model``."""
    out = copy.deepcopy(model)
    for module in out.modules():
        if parametrize.is_parametrized(module):
            _own_class(module)
    return out


def convert(model: nn.Module, *, inplace: bool = False) -> nn.Module:
    """Replaces each parametrized tensor by its current value (zeros of masks, shared or ternary
    values, grid levels) and removes the parametrizations: the result is an ordinary module whose
    ``state_dict`` has the usual names, ready for :func:`nnsqueeze.compress`."""
    if not inplace:
        model = clone(model)
    for module in list(model.modules()):
        if not parametrize.is_parametrized(module):
            continue
        plists = parametrizations_of(module)
        names = list(plists)
        values = {name: tensor_of(module, name).detach().clone() for name in names}
        originals = {name: tensor_of(plists[name], "original") for name in names}
        del module._modules["parametrizations"]
        module.__class__ = module.__class__.__bases__[0]
        for name in names:
            module._parameters[name] = nn.Parameter(values[name], requires_grad=originals[name].requires_grad)
    return model


def tensor_of(module: nn.Module, name: str = "weight") -> torch.Tensor:
    """``module.<name>`` (parametrized or not), typed as a tensor."""
    value = getattr(module, name)
    if not isinstance(value, torch.Tensor):
        msg = f"{type(module).__name__}.{name} is not a tensor"
        raise TypeError(msg)
    return value


def parametrizations_of(module: nn.Module) -> dict[str, parametrize.ParametrizationList]:
    """The parametrization lists of ``module`` by tensor name (empty when it has none)."""
    if not parametrize.is_parametrized(module):
        return {}
    plists = module._modules["parametrizations"]
    assert plists is not None
    return {name: cast(parametrize.ParametrizationList, p) for name, p in plists.named_children()}
