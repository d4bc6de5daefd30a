"""Composites: which rule each layer of a model gets.

A :class:`Composite` maps modules to rules by, in this order of precedence,

1. ``name_map``: dotted module names or ``fnmatch`` patterns (``"features.0"``, ``"*.query"``);
2. ``first_map``: types, for the *first* module of one of these types (in ``model.named_modules()``
   order), the input layer;
3. ``layer_map``: types (the caller's entries before the preset's);
4. the base map shared by all presets: activations get :class:`~nnsqueeze.xai.rules.Pass` (ReLU and
   LeakyReLU keep their gradient, which is the same thing), average pooling and
   :class:`~nnsqueeze.xai.layers.Sum` get :class:`~nnsqueeze.xai.rules.Norm`, max-pooling keeps its
   gradient (winner-take-all), Flatten/Dropout/Identity pass, un-merged BatchNorm gets ``Pass``.

Every leaf module must get a rule: one that none of the maps covers raises
:class:`~nnsqueeze.xai.errors.UnsupportedLayerError` naming it.  The presets (Kohlbrenner et al. 2020;
Montavon et al. 2019; the zennit presets of the same names) are registered by name for the CLI::

    >>> from nnsqueeze.xai.composites import get_composite
    >>> get_composite("epsilon_plus_flat")
    EpsilonPlusFlat(epsilon=1e-06, stabilizer=1e-06, zero_bias=False)
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TypeVar

from torch import Tensor, nn

from nnsqueeze.errors import ConfigError
from nnsqueeze.xai.canonizers import BATCH_NORM_TYPES, Canonizer, MergeBatchNorm
from nnsqueeze.xai.errors import UnsupportedLayerError
from nnsqueeze.xai.layers import Sum
from nnsqueeze.xai.rules import (
    LINEAR_TYPES,
    AlphaBeta,
    Epsilon,
    Flat,
    Gamma,
    Gradient,
    Norm,
    Pass,
    Rule,
    ZBox,
    ZPlus,
)

__all__ = [
    "ACTIVATION_TYPES",
    "AVG_POOL_TYPES",
    "COMPOSITES",
    "CONV_TYPES",
    "GRADIENT_TYPES",
    "Composite",
    "EpsilonAlpha2Beta1",
    "EpsilonAlpha2Beta1Flat",
    "EpsilonComposite",
    "EpsilonGammaBox",
    "EpsilonPlus",
    "EpsilonPlusFlat",
    "get_composite",
    "register_composite",
]

TypeSpec = type[nn.Module] | tuple[type[nn.Module], ...]
LayerMap = Sequence[tuple[TypeSpec, Rule]]
NameMap = Mapping[str, Rule] | Sequence[tuple[str | Sequence[str], Rule]]

CONV_TYPES: tuple[type[nn.Module], ...] = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
AVG_POOL_TYPES: tuple[type[nn.Module], ...] = (
    nn.AvgPool1d,
    nn.AvgPool2d,
    nn.AvgPool3d,
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveAvgPool3d,
)
GRADIENT_TYPES: tuple[type[nn.Module], ...] = (
    # piecewise linear through the origin: the gradient *is* the identity rule
    nn.ReLU,
    nn.LeakyReLU,
    nn.PReLU,
    # winner-take-all
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.MaxPool3d,
    nn.AdaptiveMaxPool1d,
    nn.AdaptiveMaxPool2d,
    nn.AdaptiveMaxPool3d,
    # shape only, or the identity in eval mode
    nn.Flatten,
    nn.Unflatten,
    nn.Identity,
    nn.Dropout,
    nn.Dropout1d,
    nn.Dropout2d,
    nn.Dropout3d,
    nn.AlphaDropout,
)
"""Module types whose plain gradient already is the right rule; they get no hook."""
ACTIVATION_TYPES: tuple[type[nn.Module], ...] = (
    nn.ELU,
    nn.CELU,
    nn.SELU,
    nn.GELU,
    nn.SiLU,
    nn.Mish,
    nn.Sigmoid,
    nn.Tanh,
    nn.Softplus,
    nn.Softsign,
    nn.ReLU6,
    nn.Hardtanh,
    nn.Hardswish,
    nn.Hardsigmoid,
    nn.LogSigmoid,
    nn.Tanhshrink,
)
"""Element-wise activations that get the :class:`Pass` (identity) rule."""


class Composite:
    """Assigns rules to a model's modules; see the module docstring for the precedence.

    ``canonizers`` run first (by default :class:`MergeBatchNorm`, which is a no-op for a model without
    BatchNorm).  ``stabilizer`` is that of the base map's ``Norm`` rules."""

    def __init__(
        self,
        layer_map: LayerMap = (),
        *,
        first_map: LayerMap = (),
        name_map: NameMap = (),
        canonizers: Sequence[Canonizer] | None = None,
        stabilizer: float = 1e-6,
    ) -> None:
        self.layer_map: list[tuple[TypeSpec, Rule]] = list(layer_map)
        self.first_map: list[tuple[TypeSpec, Rule]] = list(first_map)
        self.name_map: list[tuple[tuple[str, ...], Rule]] = _name_entries(name_map)
        self.canonizers: list[Canonizer] = [MergeBatchNorm()] if canonizers is None else list(canonizers)
        self.stabilizer = stabilizer
        self.base_map: list[tuple[TypeSpec, Rule]] = [
            (GRADIENT_TYPES, Gradient()),
            (ACTIVATION_TYPES, Pass()),
            ((Sum, *AVG_POOL_TYPES), Norm(stabilizer)),
            (BATCH_NORM_TYPES, Pass()),
        ]

    def _preset_map(self) -> list[tuple[TypeSpec, Rule]]:
        return []

    def assign(self, modules: Iterable[tuple[str, nn.Module]]) -> dict[str, tuple[nn.Module, Rule]]:
        """The rule of every module that needs one, by name.

        Leaves (modules without children) must all get a rule; containers get one only by ``name_map``.
        Raises :class:`UnsupportedLayerError` naming the first leaf no map covers."""
        type_map = self.layer_map + self._preset_map() + self.base_map
        first_done = not self.first_map
        out: dict[str, tuple[nn.Module, Rule]] = {}
        for name, module in modules:
            rule = self._by_name(name)
            is_leaf = not any(True for _ in module.children())
            if not first_done:  # the input layer is the first module of a first-map type, named or not
                first_rule = _by_type(self.first_map, module)
                first_done = first_rule is not None
                rule = rule or first_rule
            if rule is None and is_leaf:
                rule = _by_type(type_map, module)
                if rule is None:
                    raise UnsupportedLayerError(_unsupported_message(name, module))
            if rule is not None:
                if rule.needs_parameters and not isinstance(module, LINEAR_TYPES):
                    msg = (
                        f"layer {name!r} ({type(module).__name__}) cannot take rule {rule!r}: it modifies "
                        "weights and works on Linear and Conv1d/2d/3d layers only"
                    )
                    raise UnsupportedLayerError(msg)
                out[name] = (module, rule)
        return out

    def _by_name(self, name: str) -> Rule | None:
        for patterns, rule in self.name_map:
            if any(name == p or fnmatch.fnmatchcase(name, p) for p in patterns):
                return rule
        return None

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(layer_map={self.layer_map!r}, first_map={self.first_map!r}, "
            f"name_map={self.name_map!r}, canonizers={self.canonizers!r})"
        )


def _name_entries(name_map: NameMap) -> list[tuple[tuple[str, ...], Rule]]:
    items = list(name_map.items()) if isinstance(name_map, Mapping) else list(name_map)
    out: list[tuple[tuple[str, ...], Rule]] = []
    for names, rule in items:
        out.append(((names,) if isinstance(names, str) else tuple(names), rule))
    return out


def _by_type(type_map: Sequence[tuple[TypeSpec, Rule]], module: nn.Module) -> Rule | None:
    for types, rule in type_map:
        if isinstance(module, types):
            return rule
    return None


def _unsupported_message(name: str, module: nn.Module) -> str:
    label = name or "<model>"
    if isinstance(module, LINEAR_TYPES):
        return (
            f"layer {label!r} ({type(module).__name__}) has no rule in this composite: add "
            f"({type(module).__name__}, Epsilon()) to its layer_map, or start from a preset "
            "such as EpsilonPlusFlat"
        )
    return (
        f"layer {label!r} ({type(module).__name__}) has no LRP rule. Supported: Linear, Conv1d/2d/3d, "
        "BatchNorm (merged by MergeBatchNorm), max/avg/adaptive pooling, element-wise activations, Flatten, "
        "Dropout, Identity and Sum; with a transformer composite also LayerNorm and attention. Give it a "
        "rule with Composite(layer_map=[(type, rule)]) or name_map={name: rule}."
    )


class _Preset(Composite):
    """A preset: ``epsilon`` for dense layers, ``stabilizer`` for every other denominator, ``zero_bias``
    for rules that leave biases out (making them conservative)."""

    def __init__(
        self,
        *,
        epsilon: float = 1e-6,
        stabilizer: float = 1e-6,
        zero_bias: bool = False,
        layer_map: LayerMap = (),
        first_map: LayerMap = (),
        name_map: NameMap = (),
        canonizers: Sequence[Canonizer] | None = None,
    ) -> None:
        self.epsilon = epsilon
        self.zero_bias = zero_bias
        super().__init__(
            layer_map,
            first_map=list(first_map) + self._preset_first_map(stabilizer, zero_bias),
            name_map=name_map,
            canonizers=canonizers,
            stabilizer=stabilizer,
        )

    def _preset_first_map(self, stabilizer: float, zero_bias: bool) -> list[tuple[TypeSpec, Rule]]:
        return []

    def _conv_rule(self) -> Rule:
        raise NotImplementedError

    def _preset_map(self) -> list[tuple[TypeSpec, Rule]]:
        return [(CONV_TYPES, self._conv_rule()), (nn.Linear, Epsilon(self.epsilon, zero_bias=self.zero_bias))]

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(epsilon={self.epsilon!r}, stabilizer={self.stabilizer!r}, "
            f"zero_bias={self.zero_bias!r})"
        )


_C = TypeVar("_C", bound=Callable[..., Composite])
COMPOSITES: dict[str, Callable[..., Composite]] = {}
"""Composite factories by name (``nnsqueeze explain --composite NAME``)."""


def register_composite(name: str) -> Callable[[_C], _C]:
    """Class decorator: makes a composite available as ``get_composite(name)``."""

    def register(factory: _C) -> _C:
        if name in COMPOSITES:
            msg = f"composite {name!r} is already registered"
            raise ConfigError(msg)
        COMPOSITES[name] = factory
        return factory

    return register


def get_composite(name: str, **kwargs: object) -> Composite:
    """The registered composite ``name`` built with ``kwargs``."""
    try:
        factory = COMPOSITES[name]
    except KeyError:
        msg = f"unknown composite {name!r}; known: {', '.join(sorted(COMPOSITES))}"
        raise ConfigError(msg) from None
    return factory(**kwargs)


@register_composite("epsilon_plus_flat")
class EpsilonPlusFlat(_Preset):
    """The default (Kohlbrenner et al. 2020): flat on the input layer, z⁺ on convolutions, ε on dense."""

    def _preset_first_map(self, stabilizer: float, zero_bias: bool) -> list[tuple[TypeSpec, Rule]]:
        return [(LINEAR_TYPES, Flat(stabilizer))]

    def _conv_rule(self) -> Rule:
        return ZPlus(self.stabilizer, zero_bias=self.zero_bias)


@register_composite("epsilon_plus")
class EpsilonPlus(_Preset):
    """z⁺ on convolutions, ε on dense layers."""

    def _conv_rule(self) -> Rule:
        return ZPlus(self.stabilizer, zero_bias=self.zero_bias)


@register_composite("epsilon_alpha2_beta1")
class EpsilonAlpha2Beta1(_Preset):
    """α2β1 on convolutions, ε on dense layers."""

    def _conv_rule(self) -> Rule:
        return AlphaBeta(2.0, 1.0, self.stabilizer, zero_bias=self.zero_bias)


@register_composite("epsilon_alpha2_beta1_flat")
class EpsilonAlpha2Beta1Flat(EpsilonAlpha2Beta1):
    """Flat on the input layer, α2β1 on convolutions, ε on dense layers."""

    def _preset_first_map(self, stabilizer: float, zero_bias: bool) -> list[tuple[TypeSpec, Rule]]:
        return [(LINEAR_TYPES, Flat(stabilizer))]


@register_composite("epsilon_gamma_box")
class EpsilonGammaBox(_Preset):
    """Montavon et al. 2019: z^B on the first convolution (inputs in ``[low, high]``, in the units the
    model sees), γ on the other convolutions, ε on dense layers."""

    def __init__(
        self,
        *,
        low: float | Tensor = 0.0,
        high: float | Tensor = 1.0,
        gamma: float = 0.25,
        epsilon: float = 1e-6,
        stabilizer: float = 1e-6,
        zero_bias: bool = False,
        layer_map: LayerMap = (),
        first_map: LayerMap = (),
        name_map: NameMap = (),
        canonizers: Sequence[Canonizer] | None = None,
    ) -> None:
        self.low, self.high, self.gamma = low, high, gamma
        super().__init__(
            epsilon=epsilon,
            stabilizer=stabilizer,
            zero_bias=zero_bias,
            layer_map=layer_map,
            first_map=first_map,
            name_map=name_map,
            canonizers=canonizers,
        )

    def _preset_first_map(self, stabilizer: float, zero_bias: bool) -> list[tuple[TypeSpec, Rule]]:
        return [(CONV_TYPES, ZBox(self.low, self.high, stabilizer, zero_bias=zero_bias))]

    def _conv_rule(self) -> Rule:
        return Gamma(self.gamma, self.stabilizer, zero_bias=self.zero_bias)


@register_composite("epsilon")
class EpsilonComposite(_Preset):
    """ε on every Linear and Conv layer; with ``epsilon=0`` this is LRP-0, which on ReLU networks equals
    gradient × input."""

    def _conv_rule(self) -> Rule:
        return Epsilon(self.epsilon, zero_bias=self.zero_bias)
