"""Modules that make operations explicit, so that a rule can be attached to them."""

from __future__ import annotations

from torch import Tensor, nn

__all__ = ["Sum"]


class Sum(nn.Module):
    """``a + b + ...`` as a module: a residual connection that the composites give the :class:`Norm`
    rule (each summand gets relevance in proportion to its contribution, stabilised).

    Plain ``a + b`` in a forward also works with :mod:`nnsqueeze.xai` (autograd splits relevance the same
    way, unstabilised); :class:`~nnsqueeze.xai.canonizers.ExplicitSum` puts this module in their place."""

    def forward(self, *summands: Tensor) -> Tensor:
        if not summands:
            msg = "Sum needs at least one tensor"
            raise ValueError(msg)
        total = summands[0]
        for t in summands[1:]:
            total = total + t
        return total
