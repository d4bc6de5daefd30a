"""LRP rules: how one layer hands the relevance of its outputs down to its inputs.

Every rule here runs inside plain autograd, as a *forward* rewrite: the layer's output keeps its value, but
its gradient path is replaced by the rule's modified forward (the gradient trick of Montavon et al. 2019,
§10.2, in the form AttnLRP/LXT uses).  The attributor then needs one ordinary backward pass, and the
relevance of any tensor ``a`` on the path is ``a * grad(a)``.  Between layers the gradient is therefore
*relevance per unit activation*: ``g = R / a``.

For a linear layer (Linear, Conv) with input ``x``, output ``z`` and upper relevance ``R_k = z_k g_k``,
each rule builds a "carrier" ``Z'`` from modified inputs and parameters and lets the gradient flow through
``Z' * (z / stab(Z'))`` (the ratio detached), so that ``R_j = x_j * sum_k dZ'_k/dx_j * R_k / stab(Z'_k)``:

==================  =================================================================================
rule                ``R_j = sum_k (...) R_k``
==================  =================================================================================
:class:`Epsilon`    ``x_j w_jk / (z_k + eps sign z_k)``; ``Epsilon(0)`` is LRP-0 (= gradient × input)
:class:`Gamma`      ``x_j (w_jk + gamma w_jk+) / sum_j (...)`` (generalised to signed inputs)
:class:`AlphaBeta`  ``alpha (x_j w_jk)+ / sum (..)+ - beta (x_j w_jk)- / sum (..)-``, ``alpha - beta = 1``
:class:`ZPlus`      ``(x_j w_jk)+ / sum_j (x_j w_jk)+`` (alpha=1, beta=0)
:class:`WSquare`    ``w_jk^2 / sum_j w_jk^2`` (input layer only)
:class:`Flat`       ``1 / sum_j 1`` over the receptive field (input layer only)
:class:`ZBox`       ``(x_j w_jk - l_j w_jk+ - h_j w_jk-) / sum_j (...)`` for ``l <= x <= h`` (input layer)
==================  =================================================================================

plus :class:`Norm` (sum/average pooling, explicit sums), :class:`Pass` (element-wise layers: relevance
passes unchanged), :class:`Gradient` (leave the gradient as it is: max-pooling is winner-take-all), and
the transformer rules of AttnLRP (:class:`LayerNormIdentity`, :class:`Uniform`, :class:`StopGradient`).

Stabilisers follow zennit: ``stab(z) = z + eps * sign(z)`` with ``sign(0) = +1``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nnsqueeze.xai.errors import RuleError

__all__ = [
    "LINEAR_TYPES",
    "AlphaBeta",
    "Call",
    "Epsilon",
    "Flat",
    "Gamma",
    "Gradient",
    "LayerNormIdentity",
    "Norm",
    "Pass",
    "Rule",
    "StopGradient",
    "Uniform",
    "WSquare",
    "ZBox",
    "ZPlus",
    "layer_function",
    "stabilize",
]

LayerFn = Callable[[Tensor, Tensor, "Tensor | None"], Tensor]

LINEAR_TYPES: tuple[type[nn.Module], ...] = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
"""Module types whose rules modify weights and biases (``Linear`` and standard convolutions)."""


def layer_function(module: nn.Module) -> LayerFn | None:
    """The linear map of ``module`` as ``f(x, weight, bias)``, or None for a module without one."""
    if isinstance(module, nn.Linear):
        return F.linear
    if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
        conv: Any = module
        fn: LayerFn = conv._conv_forward  # padding modes, stride, dilation and groups of the module
        return fn
    return None


def stabilize(z: Tensor, epsilon: float) -> Tensor:
    """``z + epsilon * sign(z)`` with ``sign(0) = +1``: the denominator of every rule (as zennit)."""
    return z + epsilon * ((z == 0).to(z.dtype) + z.sign())


@torch.no_grad()
def share(num: Tensor, den: Tensor, epsilon: float) -> Tensor:
    """``num / stabilize(den, epsilon)``, fused (a few in-place ops: this runs on every layer output);
    0 where the denominator is 0, which only a zero ``epsilon`` allows."""
    if epsilon > 0:
        # |den| + eps with den's sign: equal to stabilize() but for den = -0.0, where num is 0 anyway
        d = den.abs().add_(epsilon).copysign_(den)
        return num / d
    zero = den == 0
    return torch.where(zero, torch.zeros_like(num), num / den.masked_fill(zero, 1.0))


class _Carry(torch.autograd.Function):
    """Value of ``value``; the gradient ``g`` goes to the carriers as ``g * ratio`` (not into ``value``)."""

    @staticmethod
    def forward(ctx: Any, value: Tensor, *pairs: Tensor) -> Tensor:
        ctx.save_for_backward(*pairs[1::2])
        return value.clone()

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        out: list[Tensor | None] = [None]
        for i, ratio in enumerate(ctx.saved_tensors):
            out += [grad * ratio if ctx.needs_input_grad[1 + 2 * i] else None, None]
        return tuple(out)


def carry(value: Tensor, *pairs: tuple[Tensor, Tensor]) -> Tensor:
    """``value``, with a gradient that flows into each ``carrier`` scaled by its ``ratio`` (detached):
    the output of every rule.  ``carry(z, (z, k))`` keeps ``z``'s own graph and scales its gradient."""
    flat = [t for carrier, ratio in pairs for t in (carrier, ratio.detach())]
    out: Tensor = _Carry.apply(value.detach(), *flat)  # type: ignore[no-untyped-call]
    return out


def scale_grad(value: Tensor, scale: Tensor | float) -> Tensor:
    """``value`` whose gradient is multiplied by ``scale`` (a tensor of the same shape, or a number)."""
    if not isinstance(scale, Tensor):
        scale = torch.full_like(value, scale)
    return carry(value, (value, scale))


@dataclass
class Call:
    """One forward call of a module, as a rule sees it.

    ``output`` is the value the layer must keep (with BatchNorm merged by a canonizer, that of the merged
    layer); ``weight`` and ``bias`` are detached (and merged) parameters; ``layer(x, weight, bias)``
    recomputes the layer with other parameters.  Input-layer rules add new leaf tensors to ``sinks``: their
    ``value * grad`` is added to the input relevance."""

    name: str
    module: nn.Module
    inputs: tuple[Tensor, ...]
    output: Tensor
    weight: Tensor | None = None
    bias: Tensor | None = None
    layer: LayerFn | None = None
    is_model_input: bool = False
    sinks: list[Tensor] = field(default_factory=list)

    @property
    def x(self) -> Tensor:
        return self.inputs[0]


class Rule(ABC):
    """A relevance rule.  ``apply`` returns the replacement of the layer's output: same value, the rule's
    gradient.  Rules hold only their hyper-parameters, so one instance can serve many layers."""

    needs_parameters: ClassVar[bool] = False
    """Whether the rule modifies weights (it then applies only to :data:`LINEAR_TYPES`)."""
    input_layer_only: ClassVar[bool] = False
    """Whether the rule's relevance is not ``input * gradient`` and so must sit on the model's input."""

    @abstractmethod
    def apply(self, call: Call) -> Tensor:
        """The output tensor that carries this rule's gradient for ``call``."""

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({params})"


def _check_nonnegative(name: str, value: float) -> float:
    if not value >= 0:
        msg = f"{name} must be >= 0, got {value}"
        raise RuleError(msg)
    return float(value)


class Gradient(Rule):
    """Leave the layer's gradient as it is (no hook).  For max-pooling this is winner-take-all; for ReLU,
    LeakyReLU, Flatten, Dropout (eval) it equals :class:`Pass`; for a linear layer it is LRP-0."""

    def apply(self, call: Call) -> Tensor:
        return call.output


class Epsilon(Rule):
    """LRP-ε: ``R_j = sum_k x_j w_jk / (z_k + eps sign z_k) R_k``.  ``Epsilon(0)`` is LRP-0.

    Works on any layer that is linear in its input (Linear, Conv, average pooling, sums).  With
    ``zero_bias`` the bias is left out of the denominator, which makes the rule conservative."""

    def __init__(self, epsilon: float = 1e-6, *, zero_bias: bool = False) -> None:
        self.epsilon = _check_nonnegative("epsilon", epsilon)
        self.zero_bias = zero_bias

    def apply(self, call: Call) -> Tensor:
        z = call.output
        if self.zero_bias and call.bias is not None:
            assert call.layer is not None
            assert call.weight is not None
            zb = call.layer(call.x, call.weight, None)
            return carry(z, (zb, share(z, zb, self.epsilon)))
        return carry(z, (z, share(z, z, self.epsilon)))


class Norm(Epsilon):
    """Normalisation for parameter-free linear layers (sum/average pooling,
    :class:`~nnsqueeze.xai.layers.Sum`): each input gets its share ``x_j / z_k`` of ``R_k``.  The same as
    :class:`Epsilon` with ``epsilon`` as a mere stabiliser."""

    def __init__(self, stabilizer: float = 1e-6) -> None:
        super().__init__(stabilizer)


class _WeightRule(Rule):
    """Base of the rules that recompute the layer with modified inputs and parameters."""

    needs_parameters = True

    def __init__(self, stabilizer: float, zero_bias: bool) -> None:
        self.stabilizer = _check_nonnegative("stabilizer", stabilizer)
        self.zero_bias = zero_bias

    def _parts(self, call: Call) -> tuple[LayerFn, Tensor, Tensor | None]:
        if call.layer is None or call.weight is None:  # pragma: no cover - the attributor checks this
            msg = f"{type(self).__name__} needs a Linear or Conv layer, got {type(call.module).__name__}"
            raise RuleError(msg)
        return call.layer, call.weight, None if self.zero_bias else call.bias

    def _share(self, num: Tensor, carrier: Tensor) -> tuple[Tensor, Tensor]:
        """``(carrier, num / stab(carrier))``: a pair for :func:`carry`."""
        return carrier, share(num, carrier, self.stabilizer)


def _pos(t: Tensor | None) -> Tensor | None:
    return None if t is None else t.clamp(min=0)


def _neg(t: Tensor | None) -> Tensor | None:
    return None if t is None else t.clamp(max=0)


class ZPlus(_WeightRule):
    """LRP-z⁺ (α1β0): only positive contributions ``(x_j w_jk)+`` count.  Signed inputs are allowed
    (``x+ w+ + x- w-``), as in zennit; after a ReLU the second term vanishes and is skipped."""

    def __init__(self, stabilizer: float = 1e-6, *, zero_bias: bool = False) -> None:
        super().__init__(stabilizer, zero_bias)

    def apply(self, call: Call) -> Tensor:
        layer, w, b = self._parts(call)
        x = call.x
        if bool((x < 0).any()):
            z_pos = layer(x.clamp(min=0), w.clamp(min=0), _pos(b)) + layer(
                x.clamp(max=0), w.clamp(max=0), None
            )
        else:  # after a ReLU: x = x+, and the x- term vanishes
            z_pos = layer(x, w.clamp(min=0), _pos(b))
        return carry(call.output, self._share(call.output, z_pos))


class AlphaBeta(_WeightRule):
    """LRP-αβ: ``alpha`` times the positive and ``beta`` times the negative contributions, each
    normalised by its own sum; ``alpha - beta`` must be 1 (α2β1 and α1β0 are the usual choices)."""

    def __init__(
        self, alpha: float = 2.0, beta: float = 1.0, stabilizer: float = 1e-6, *, zero_bias: bool = False
    ) -> None:
        _check_nonnegative("alpha", alpha)
        _check_nonnegative("beta", beta)
        if alpha - beta != 1:
            msg = f"AlphaBeta needs alpha - beta = 1, got alpha={alpha}, beta={beta}"
            raise RuleError(msg)
        super().__init__(stabilizer, zero_bias)
        self.alpha = float(alpha)
        self.beta = float(beta)

    def apply(self, call: Call) -> Tensor:
        layer, w, b = self._parts(call)
        x, z = call.x, call.output
        wp, wn = w.clamp(min=0), w.clamp(max=0)
        signed = bool((x < 0).any())
        xp = x.clamp(min=0) if signed else x
        z_pos = layer(xp, wp, _pos(b))
        if signed:
            z_pos = z_pos + layer(x.clamp(max=0), wn, None)
        pairs = [self._share(z * self.alpha, z_pos)]
        if self.beta:
            z_neg = layer(xp, wn, _neg(b))
            if signed:
                z_neg = z_neg + layer(x.clamp(max=0), wp, None)
            pairs.append(self._share(z * -self.beta, z_neg))
        return carry(z, *pairs)


class Gamma(_WeightRule):
    """LRP-γ, generalised to signed inputs (Andéol et al. 2021, as zennit): for a positive output
    ``z_k`` the weights ``w + gamma w+`` meet positive inputs and ``w + gamma w-`` negative ones; for a
    negative output the roles swap.  ``gamma -> inf`` approaches z⁺, ``gamma = 0`` is LRP-0."""

    def __init__(self, gamma: float = 0.25, stabilizer: float = 1e-6, *, zero_bias: bool = False) -> None:
        super().__init__(stabilizer, zero_bias)
        self.gamma = _check_nonnegative("gamma", gamma)

    def apply(self, call: Call) -> Tensor:
        layer, w, b = self._parts(call)
        x, z, g = call.x, call.output, self.gamma
        w_up, w_down = w + g * w.clamp(min=0), w + g * w.clamp(max=0)
        b_up = None if b is None else b + g * b.clamp(min=0)
        b_down = None if b is None else b + g * b.clamp(max=0)
        signed = bool((x < 0).any())
        xp = x.clamp(min=0) if signed else x
        z_pos = layer(xp, w_up, b_up)
        z_neg = layer(xp, w_down, b_down)
        if signed:
            xn = x.clamp(max=0)
            z_pos = z_pos + layer(xn, w_down, None)
            z_neg = z_neg + layer(xn, w_up, None)
        # z+ / stab(z_pos) is z / stab(z_pos) where z > 0 and 0 elsewhere: the mask for free
        return carry(z, self._share(z.clamp(min=0), z_pos), self._share(z.clamp(max=0), z_neg))


class _InputRule(_WeightRule):
    input_layer_only = True

    @staticmethod
    def _sink(call: Call, value: Tensor) -> Tensor:
        leaf = value.detach().clone().requires_grad_(True)
        call.sinks.append(leaf)
        return leaf


class WSquare(_InputRule):
    """LRP-w²: ``R_j = sum_k w_jk^2 / sum_j w_jk^2 R_k``, independent of the input (the bias, squared,
    joins the denominator unless ``zero_bias``).  For an input layer with unbounded inputs."""

    def __init__(self, stabilizer: float = 1e-6, *, zero_bias: bool = False) -> None:
        super().__init__(stabilizer, zero_bias)

    def apply(self, call: Call) -> Tensor:
        layer, w, b = self._parts(call)
        ones = self._sink(call, torch.ones_like(call.x))
        carrier = layer(ones, w * w, None if b is None else b * b)
        return carry(call.output, self._share(call.output, carrier))


class Flat(_InputRule):
    """LRP-flat: every input of a receptive field gets an equal share, ``R_j = sum_k R_k / n_k``
    (biases ignored).  For the input layer: coarse, robust maps."""

    def __init__(self, stabilizer: float = 1e-6) -> None:
        super().__init__(stabilizer, zero_bias=True)

    def apply(self, call: Call) -> Tensor:
        layer, w, _ = self._parts(call)
        ones = self._sink(call, torch.ones_like(call.x))
        carrier = layer(ones, torch.ones_like(w), None)
        return carry(call.output, self._share(call.output, carrier))


class ZBox(_InputRule):
    """LRP-z^B for inputs bounded by ``low <= x <= high`` (numbers or tensors that broadcast to the
    input, e.g. per channel ``(C, 1, 1)``; in the units the model sees, i.e. after any normalisation):
    ``R_j = sum_k (x_j w_jk - l_j w_jk+ - h_j w_jk-) / sum_j (...) R_k``."""

    def __init__(
        self, low: float | Tensor, high: float | Tensor, stabilizer: float = 1e-6, *, zero_bias: bool = False
    ) -> None:
        super().__init__(stabilizer, zero_bias)
        self.low = low
        self.high = high

    def apply(self, call: Call) -> Tensor:
        layer, w, b = self._parts(call)
        x = call.x
        low = self._sink(
            call, torch.broadcast_to(torch.as_tensor(self.low, dtype=x.dtype, device=x.device), x.shape)
        )
        high = self._sink(
            call, torch.broadcast_to(torch.as_tensor(self.high, dtype=x.dtype, device=x.device), x.shape)
        )
        carrier = layer(x, w, b) - layer(low, w.clamp(min=0), _pos(b)) - layer(high, w.clamp(max=0), _neg(b))
        return carry(call.output, self._share(call.output, carrier))


class Pass(Rule):
    """Identity rule for element-wise layers: ``R_in = R_out`` (Activation, un-merged BatchNorm as in
    zennit, and AttnLRP's rule for GELU/SiLU).  Its gradient is ``y / x`` (0 where ``x = 0``)."""

    def apply(self, call: Call) -> Tensor:
        x, y = call.x, call.output
        if y.shape != x.shape:
            msg = f"Pass needs an element-wise layer; {call.name!r} maps {tuple(x.shape)} to {tuple(y.shape)}"
            raise RuleError(msg)
        return carry(y, (x, share(y, x, 0.0)))


class LayerNormIdentity(Rule):
    """AttnLRP's rule for LayerNorm: the standard deviation is treated as a constant (its gradient is
    stopped), so the layer is linear (centring, scaling, bias) and relevance flows through it as LRP-0.
    Bias-free, the rule is conservative."""

    def apply(self, call: Call) -> Tensor:
        module = call.module
        if not isinstance(module, nn.LayerNorm):
            msg = f"LayerNormIdentity needs nn.LayerNorm, got {type(module).__name__} at {call.name!r}"
            raise RuleError(msg)
        x = call.x
        dims = tuple(range(-len(module.normalized_shape), 0))
        centred = x - x.mean(dim=dims, keepdim=True)
        std = (x.var(dim=dims, keepdim=True, unbiased=False) + module.eps).sqrt()
        y = centred / std.detach()
        if module.weight is not None:
            y = y * module.weight.detach()
        if module.bias is not None:
            y = y + module.bias.detach()
        return carry(call.output, (y, torch.ones_like(y)))


class Uniform(Rule):
    """AttnLRP's uniform rule for a factor of a bilinear product: apply ``inner`` and divide the
    gradient by ``factor`` (2 for one product, 4 for the query and key of attention, whose relevance
    passes two products).  With ``inner=None`` the layer's own gradient is divided."""

    def __init__(self, factor: float, inner: Rule | None = None) -> None:
        if not factor > 0:
            msg = f"Uniform needs factor > 0, got {factor}"
            raise RuleError(msg)
        self.factor = float(factor)
        self.inner = inner

    @property
    def needs_parameters(self) -> bool:  # type: ignore[override]
        return self.inner is not None and self.inner.needs_parameters

    def apply(self, call: Call) -> Tensor:
        out = call.output if self.inner is None else self.inner.apply(call)
        return scale_grad(out, 1.0 / self.factor)


class StopGradient(Rule):
    """No relevance through this layer's output (CP-LRP puts it on the query and key projections, so that
    attention weights act as constants)."""

    def apply(self, call: Call) -> Tensor:
        return call.output.detach()
