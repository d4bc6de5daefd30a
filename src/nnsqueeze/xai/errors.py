"""The exceptions and warnings of :mod:`nnsqueeze.xai` (errors derive from
:class:`~nnsqueeze.errors.NnsqueezeError`)."""

from __future__ import annotations

from nnsqueeze.errors import ConfigError, NnsqueezeError


class UnsupportedLayerError(NnsqueezeError, ValueError):
    """A layer of the model has no relevance rule (its type is unknown to LRP, or a rule does not fit it).

    The message names the layer (its dotted name in the model) and its type."""


class RuleError(ConfigError):
    """A rule's parameters are invalid (``alpha - beta != 1``, a negative ``gamma``), or a rule is used
    where it cannot work (an input-layer rule on a layer that does not receive the model's input)."""


class LRPWarning(UserWarning):
    """Something that makes the explanation differ from what the composite promises (an un-merged
    BatchNorm layer, a model left in training mode)."""
