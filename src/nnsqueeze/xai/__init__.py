"""Explanations: layer-wise relevance propagation (LRP) on autograd, evaluated, also for compressed models.

>>> import torch
>>> from torch import nn
>>> from nnsqueeze import xai
>>> model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 10))
>>> x = torch.rand(2, 1, 8, 8)
>>> with xai.Attributor(model, xai.EpsilonPlusFlat()) as lrp:
...     output, relevance = lrp(x, target=3)
>>> relevance.shape == x.shape
True

* :mod:`~nnsqueeze.xai.rules`: LRP-0/ε, γ, αβ, z⁺, w², flat, z^B, and the pass/norm/AttnLRP rules;
* :mod:`~nnsqueeze.xai.composites`: rules per layer type/name/first layer; presets by name;
* :mod:`~nnsqueeze.xai.canonizers`: BatchNorm merging, explicit residual sums;
* :mod:`~nnsqueeze.xai.attribution`: the :class:`Attributor` context manager and gradient baselines;
* :mod:`~nnsqueeze.xai.transformer`: AttnLRP token relevance for BERT-style encoders (MiniLM);
* :mod:`~nnsqueeze.xai.evaluation`: region perturbation (AOPC) with several baselines;
* :mod:`~nnsqueeze.xai.agreement`: heatmap agreement of compressed models with the original;
* :mod:`~nnsqueeze.xai.heatmap`: signed heatmaps (PNG), grids, token HTML.

Needs torch; PNG grids with titles need matplotlib (``pip install "nnsqueeze[xai]"``).
"""

from __future__ import annotations

from nnsqueeze.xai.attribution import (
    Attribution,
    Attributor,
    gradient,
    gradient_x_input,
    output_seed,
    random_relevance,
    saliency,
)
from nnsqueeze.xai.canonizers import Canonizer, ExplicitSum, MergeBatchNorm
from nnsqueeze.xai.composites import (
    COMPOSITES,
    Composite,
    EpsilonAlpha2Beta1,
    EpsilonAlpha2Beta1Flat,
    EpsilonComposite,
    EpsilonGammaBox,
    EpsilonPlus,
    EpsilonPlusFlat,
    get_composite,
    register_composite,
)
from nnsqueeze.xai.errors import LRPWarning, RuleError, UnsupportedLayerError
from nnsqueeze.xai.layers import Sum
from nnsqueeze.xai.rules import (
    AlphaBeta,
    Epsilon,
    Flat,
    Gamma,
    Gradient,
    LayerNormIdentity,
    Norm,
    Pass,
    Rule,
    StopGradient,
    Uniform,
    WSquare,
    ZBox,
    ZPlus,
)
from nnsqueeze.xai.transformer import AttnLRP, SentenceScore, TokenRelevance, explain_similarity

__all__ = [
    "COMPOSITES",
    "AlphaBeta",
    "AttnLRP",
    "Attribution",
    "Attributor",
    "Canonizer",
    "Composite",
    "Epsilon",
    "EpsilonAlpha2Beta1",
    "EpsilonAlpha2Beta1Flat",
    "EpsilonComposite",
    "EpsilonGammaBox",
    "EpsilonPlus",
    "EpsilonPlusFlat",
    "ExplicitSum",
    "Flat",
    "Gamma",
    "Gradient",
    "LRPWarning",
    "LayerNormIdentity",
    "MergeBatchNorm",
    "Norm",
    "Pass",
    "Rule",
    "RuleError",
    "SentenceScore",
    "StopGradient",
    "Sum",
    "TokenRelevance",
    "Uniform",
    "UnsupportedLayerError",
    "WSquare",
    "ZBox",
    "ZPlus",
    "explain_similarity",
    "get_composite",
    "gradient",
    "gradient_x_input",
    "output_seed",
    "random_relevance",
    "register_composite",
    "saliency",
]
