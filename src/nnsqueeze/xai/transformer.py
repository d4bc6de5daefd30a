"""AttnLRP (Achtibat et al., ICML 2024) for BERT-style encoders: token-level relevance, e.g. for MiniLM.

The rules, all inside one gradient × input pass (the model's code is not changed, only hooked):

* LayerNorm: :class:`~nnsqueeze.xai.rules.LayerNormIdentity` (the standard deviation is a constant);
* element-wise activations (GELU): :class:`~nnsqueeze.xai.rules.Pass` (the identity rule);
* the bilinear products of attention get the uniform rule: the gradient is divided by 4 at the query and
  key projections and by 2 at the value projection (:class:`~nnsqueeze.xai.rules.Uniform`); the softmax
  keeps its gradient, which *is* AttnLRP's softmax rule ``R_in = x (R - s sum R)``;
* Linear layers: LRP-ε; residual sums and mean pooling: autograd's proportional split;
* embeddings: the relevance of the word embeddings is the tokens' relevance; position and token-type
  embeddings take their share like biases do.

With ``cp=True`` the query and key projections pass no relevance (CP-LRP, Ali et al. 2022): attention
weights act as constants, and on a bias-free model relevance is conserved.

:func:`explain_similarity` explains a sentence-transformer's cosine similarity to a reference sentence
(mean pooling, L2 normalisation treated like LayerNorm's scale): which tokens make the sentence similar.

Licence note from the LXT reference implementation: "LRP is a patented technology that can only be used
free of charge for personal and scientific purposes"; this module follows the published rules.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from nnsqueeze.xai.attribution import Attributor
from nnsqueeze.xai.canonizers import Canonizer
from nnsqueeze.xai.composites import ACTIVATION_TYPES, Composite, LayerMap, NameMap, register_composite
from nnsqueeze.xai.heatmap import tokens_html
from nnsqueeze.xai.rules import Epsilon, Gradient, LayerNormIdentity, Pass, Rule, StopGradient, Uniform

__all__ = ["AttnLRP", "SentenceScore", "TokenRelevance", "explain_similarity", "sentence_embedding"]

QUERY = ("*.query", "*.q_proj", "*.q_lin")
KEY = ("*.key", "*.k_proj", "*.k_lin")
VALUE = ("*.value", "*.v_proj", "*.v_lin")


def _transformers_activations() -> tuple[type[nn.Module], ...]:
    """The activation modules of ``transformers`` (GELUActivation, ...), if it is installed."""
    try:
        from transformers import activations
    except ImportError:
        return ()
    found = [
        obj
        for obj in vars(activations).values()
        if isinstance(obj, type) and issubclass(obj, nn.Module) and obj.__module__ == activations.__name__
    ]
    return tuple(found)


@register_composite("attnlrp")
class AttnLRP(Composite):
    """AttnLRP rules for a BERT-style encoder (see the module docstring).

    ``query``/``key``/``value`` are name patterns of the attention projections (BERT's ``*.query`` etc. by
    default); ``epsilon`` is that of the Linear layers; ``cp`` switches to CP-LRP."""

    def __init__(
        self,
        *,
        epsilon: float = 1e-6,
        cp: bool = False,
        query: Sequence[str] = QUERY,
        key: Sequence[str] = KEY,
        value: Sequence[str] = VALUE,
        layer_map: LayerMap = (),
        name_map: NameMap = (),
        canonizers: Sequence[Canonizer] = (),
    ) -> None:
        self.epsilon = epsilon
        self.cp = cp
        linear = Epsilon(epsilon)
        qk: Rule = StopGradient() if cp else Uniform(4, linear)
        v: Rule = linear if cp else Uniform(2, linear)
        names: list[tuple[str | Sequence[str], Rule]] = [
            (tuple(query), qk),
            (tuple(key), qk),
            (tuple(value), v),
        ]
        given = list(name_map.items()) if isinstance(name_map, dict) else list(name_map)
        super().__init__(
            [
                *layer_map,
                (nn.Linear, linear),
                (nn.LayerNorm, LayerNormIdentity()),
                ((nn.Embedding, nn.Softmax), Gradient()),
                ((*ACTIVATION_TYPES, *_transformers_activations()), Pass()),
            ],
            name_map=[*given, *names],  # the caller's names first
            canonizers=canonizers,
        )

    def __repr__(self) -> str:
        return f"AttnLRP(epsilon={self.epsilon!r}, cp={self.cp!r})"


class SentenceScore(nn.Module):
    """A sentence-transformer's score as a function of the word embeddings: the mean of the encoder's
    last hidden states over the attention mask, L2-normalised (the norm is a constant for the relevance,
    as LayerNorm's scale), dotted with ``reference`` (the cosine similarity, for a unit reference).

    ``forward(inputs_embeds)`` returns shape (batch, 1)."""

    def __init__(
        self,
        encoder: nn.Module,
        attention_mask: Tensor,
        reference: Tensor,
        token_type_ids: Tensor | None = None,
        normalize: bool = True,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.attention_mask = attention_mask
        self.token_type_ids = token_type_ids
        self.reference = reference
        self.normalize = normalize

    def forward(self, inputs_embeds: Tensor) -> Tensor:
        kwargs: dict[str, Any] = {"inputs_embeds": inputs_embeds, "attention_mask": self.attention_mask}
        if self.token_type_ids is not None:
            kwargs["token_type_ids"] = self.token_type_ids
        hidden: Tensor = self.encoder(**kwargs).last_hidden_state
        mask = self.attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1)
        if self.normalize:
            pooled = pooled / pooled.norm(dim=1, keepdim=True).detach()
        return (pooled * self.reference.to(pooled.dtype)).sum(dim=1, keepdim=True)


@dataclass(frozen=True)
class TokenRelevance:
    """Relevance per token for ``score``; ``relevance.sum()`` is close to ``score`` (the rest went to
    biases, position and token-type embeddings, and the softmax rule's non-conservation)."""

    tokens: list[str]
    relevance: np.ndarray
    score: float

    @property
    def total(self) -> float:
        return float(self.relevance.sum())

    def html(self, title: str | None = None) -> str:
        """The tokens on signed backgrounds (red: makes the score higher; blue: lower)."""
        return tokens_html(self.tokens, self.relevance, title=title)

    def top(self, k: int = 5) -> list[tuple[str, float]]:
        """The ``k`` most relevant tokens, most positive first."""
        order = np.argsort(-self.relevance)[:k]
        return [(self.tokens[i], float(self.relevance[i])) for i in order]


@torch.no_grad()
def sentence_embedding(encoder: nn.Module, tokenizer: Any, text: str, max_length: int = 256) -> Tensor:
    """Mean-pooled, L2-normalised embedding of ``text`` (as sentence-transformers computes it), (hidden,)."""
    batch = tokenizer([text], truncation=True, max_length=max_length, return_tensors="pt")
    hidden = encoder(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
    pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1)
    return torch.nn.functional.normalize(pooled, dim=1)[0]


def explain_similarity(
    encoder: nn.Module,
    tokenizer: Any,
    text: str,
    reference: str | Tensor,
    *,
    composite: Composite | None = None,
    max_length: int = 256,
) -> TokenRelevance:
    """Which tokens of ``text`` make its embedding similar to ``reference`` (a sentence or a unit
    embedding): AttnLRP relevance per token of the cosine similarity (special tokens included).

    ``encoder`` is a Hugging Face BERT-style model (``AutoModel``), ``tokenizer`` its tokenizer."""
    ref = (
        sentence_embedding(encoder, tokenizer, reference, max_length)
        if isinstance(reference, str)
        else reference
    )
    batch = tokenizer([text], truncation=True, max_length=max_length, return_tensors="pt")
    embedding: Any = getattr(encoder, "get_input_embeddings")()  # noqa: B009 - typed as Tensor | Module
    with torch.no_grad():
        embeds = embedding(batch["input_ids"])
    score_model = SentenceScore(encoder, batch["attention_mask"], ref, batch.get("token_type_ids"))
    with Attributor(score_model, composite if composite is not None else AttnLRP()) as attributor:
        output, relevance = attributor(embeds, target=torch.ones(1, 1, dtype=embeds.dtype))
    tokens = tokenizer.convert_ids_to_tokens(batch["input_ids"][0].tolist())
    return TokenRelevance(list(tokens), relevance[0].sum(dim=-1).double().numpy(), float(output[0, 0]))
