"""The attributor: LRP on a model as a context manager, and the gradient baselines.

>>> import torch
>>> from torch import nn
>>> from nnsqueeze.xai import Attributor, EpsilonPlusFlat
>>> model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
>>> with Attributor(model, EpsilonPlusFlat()) as lrp:
...     result = lrp(torch.rand(2, 4), target=1)
>>> result.relevance.shape
torch.Size([2, 4])

Inside the ``with`` block the model carries forward hooks (and, with canonizers, merged parameters handed
to the rules and possibly a traced ``forward``); on exit the model is exactly as before: the same
parameters and buffers (never written), the same hooks, the same ``training`` flags.  The hooks act
only while the attributor is being called, so the model can be used normally inside the block.

Relevance is seeded at the output as ``R_out = output * seed``: with ``target`` a class (or one class
per sample) the seed is one-hot and the relevance explains that logit, so that ``R.sum()`` is close to
the logit (equal for conservative rules on a bias-free network).  A float tensor of the output's shape
is used as the seed as it is (``onehot(3) - onehot(8)`` explains "3 rather than 8").
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch
from torch import Tensor, nn

from nnsqueeze.xai.canonizers import BATCH_NORM_TYPES, Canonized
from nnsqueeze.xai.composites import Composite, EpsilonPlusFlat
from nnsqueeze.xai.errors import LRPWarning, RuleError
from nnsqueeze.xai.rules import Call, Gradient, Rule, layer_function

__all__ = [
    "Attribution",
    "Attributor",
    "Target",
    "gradient",
    "gradient_x_input",
    "output_seed",
    "random_relevance",
    "saliency",
]

Target = int | Sequence[int] | Tensor | None


class Attribution(NamedTuple):
    """The model's output (detached) and the relevance of each input element (the input's shape)."""

    output: Tensor
    relevance: Tensor


def output_seed(output: Tensor, target: Target) -> Tensor:
    """The seed ``s`` with ``R_out = output * s``: one-hot for class indices (``None``: the predicted
    class), a float tensor of ``output``'s shape as it is."""
    if isinstance(target, Tensor) and target.is_floating_point():
        if target.shape != output.shape:
            msg = (
                f"a float target must have the output's shape {tuple(output.shape)}, "
                f"got {tuple(target.shape)}"
            )
            raise RuleError(msg)
        return target.to(output.dtype)
    if output.ndim != 2:
        msg = f"class targets need an output of shape (batch, classes), got {tuple(output.shape)}"
        raise RuleError(msg)
    if target is None:
        index = output.argmax(dim=1)
    elif isinstance(target, int):
        index = torch.full((output.shape[0],), target, dtype=torch.long, device=output.device)
    else:
        index = torch.as_tensor(target, dtype=torch.long, device=output.device).reshape(-1)
        if index.numel() == 1:
            index = index.expand(output.shape[0])
    if index.shape[0] != output.shape[0] or bool(((index < 0) | (index >= output.shape[1])).any()):
        msg = f"targets {index.tolist()[:8]} do not fit an output of shape {tuple(output.shape)}"
        raise RuleError(msg)
    seed = torch.zeros_like(output)
    seed[torch.arange(output.shape[0], device=output.device), index] = 1
    return seed


class Attributor:
    """LRP for ``model`` with ``composite`` (default :class:`EpsilonPlusFlat`), as a context manager.

    ``attributor(x, target)`` returns an :class:`Attribution`: one forward and one backward pass of the
    whole batch.  Once the context is entered, ``rules`` describes the rule of each layer by name.
    The model is in eval mode inside the context (its ``training`` flags come back on exit)."""

    def __init__(self, model: nn.Module, composite: Composite | None = None) -> None:
        self.model = model
        self.composite = composite if composite is not None else EpsilonPlusFlat()
        self.rules: dict[str, str] = {}
        self._handles: list[torch.utils.hooks.RemovableHandle] = []
        self._canonized = Canonized()
        self._training: dict[nn.Module, bool] = {}
        self._active = False
        self._input: Tensor | None = None
        self._sinks: list[Tensor] = []
        self._entered = False

    def __enter__(self) -> Attributor:
        if self._entered:
            msg = "this Attributor is already in use"
            raise RuntimeError(msg)
        model = self.model
        self._training = {m: m.training for m in model.modules()}
        try:
            for canonizer in self.composite.canonizers:
                self._canonized.update(canonizer.apply(model))
            identities = self._canonized.identities
            modules = [
                (n, m) for n, m in [*model.named_modules(), *self._canonized.modules] if m not in identities
            ]
            assignment = self.composite.assign(modules)
            self.rules = {name: repr(rule) for name, (_, rule) in assignment.items()}
            for bn, linear_name in identities.items():
                self._handles.append(bn.register_forward_hook(self._identity_hook))
                self.rules[_name_of(model, bn)] = f"merged into {linear_name!r}"
            unmerged: list[str] = []
            for name, (module, rule) in assignment.items():
                if isinstance(module, BATCH_NORM_TYPES):
                    unmerged.append(name)
                if isinstance(rule, Gradient) and module not in self._canonized.parameters:
                    continue
                self._handles.append(module.register_forward_hook(self._make_hook(name, rule)))
            if unmerged:
                warnings.warn(
                    f"BatchNorm layers {unmerged} are not merged into a linear layer; they pass relevance "
                    "unchanged (Pass rule). Use MergeBatchNorm(pairs=...) to merge them.",
                    LRPWarning,
                    stacklevel=2,
                )
            model.eval()
        except BaseException:
            self._restore()
            raise
        self._entered = True
        return self

    def __exit__(self, *exc: object) -> None:
        self._restore()
        self._entered = False

    def _restore(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self._canonized.remove()
        self._canonized = Canonized()
        for module, training in self._training.items():
            module.training = training

    def _identity_hook(self, module: nn.Module, args: tuple[object, ...], output: object) -> object:
        if self._active and args and isinstance(args[0], Tensor):
            return args[0]
        return None

    def _make_hook(self, name: str, rule: Rule) -> Callable[[nn.Module, tuple[object, ...], object], object]:
        params = self._canonized.parameters

        def hook(module: nn.Module, args: tuple[object, ...], output: object) -> object:
            if not self._active or not isinstance(output, Tensor) or not args:
                return None
            inputs = tuple(a for a in args if isinstance(a, Tensor))
            if len(inputs) != len(args):
                return None
            layer = layer_function(module)
            weight = bias = None
            merged = params.get(module)
            if merged is not None:
                assert layer is not None
                weight, bias = merged
                output = layer(inputs[0], weight, bias)
            elif layer is not None:
                weight = _parameter(module, "weight")
                bias = _parameter(module, "bias")
            call = Call(
                name=name,
                module=module,
                inputs=inputs,
                output=output,
                weight=weight,
                bias=bias,
                layer=layer,
                is_model_input=inputs[0] is self._input,
                sinks=self._sinks,
            )
            if rule.input_layer_only and not call.is_model_input:
                msg = (
                    f"{type(rule).__name__} is an input-layer rule, but layer {name!r} does not receive "
                    "the model's input directly; use it only for the first layer"
                )
                raise RuleError(msg)
            return rule.apply(call)

        return hook

    def __call__(self, x: Tensor, target: Target = None) -> Attribution:
        """Relevance of every element of ``x`` for ``target`` (see :func:`output_seed`)."""
        if not self._entered:
            msg = "use the Attributor as a context manager: `with Attributor(model) as lrp: lrp(x)`"
            raise RuntimeError(msg)
        leaf = x.detach().clone().requires_grad_(True)
        self._input, self._sinks, self._active = leaf, [], True
        try:
            with torch.enable_grad():
                output = self.model(leaf)
                if not isinstance(output, Tensor):
                    msg = f"the model must return a tensor, got {type(output).__name__}"
                    raise RuleError(msg)
                seed = output_seed(output.detach(), target)
                sources = [leaf, *self._sinks]
                grads = torch.autograd.grad(output, sources, seed, allow_unused=True)
        finally:
            self._active = False
            self._input = None
            sinks, self._sinks = self._sinks, []
        relevance = torch.zeros_like(leaf)
        for value, grad in zip([leaf, *sinks], grads, strict=True):
            if grad is not None:
                relevance = relevance + value.detach() * grad
        return Attribution(output.detach(), relevance)


def _parameter(module: nn.Module, name: str) -> Tensor | None:
    value = getattr(module, name, None)
    return value.detach() if isinstance(value, Tensor) else None


def _name_of(model: nn.Module, module: nn.Module) -> str:
    return next((n for n, m in model.named_modules() if m is module), type(module).__name__)


def gradient(model: nn.Module, x: Tensor, target: Target = None) -> Attribution:
    """The gradient of the target logit with respect to the input (the seed as in :func:`output_seed`)."""
    leaf = x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        output = model(leaf)
        (grad,) = torch.autograd.grad(output, leaf, output_seed(output.detach(), target))
    return Attribution(output.detach(), grad)


def gradient_x_input(model: nn.Module, x: Tensor, target: Target = None) -> Attribution:
    """Gradient × input (equal to LRP-0 on ReLU networks)."""
    output, grad = gradient(model, x, target)
    return Attribution(output, grad * x.detach())


def saliency(model: nn.Module, x: Tensor, target: Target = None) -> Attribution:
    """The absolute gradient (Simonyan et al. 2014)."""
    output, grad = gradient(model, x, target)
    return Attribution(output, grad.abs())


def random_relevance(x: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Uniform random relevance of ``x``'s shape: the reference every method has to beat."""
    return torch.rand(x.shape, generator=generator, dtype=x.dtype).to(x.device)
