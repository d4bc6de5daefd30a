"""Slow explicit AttnLRP for a Hugging Face ``BertModel``: the oracle of ``nnsqueeze.xai.transformer``.

The forward pass is re-implemented in float64 NumPy from the model's parameters (one sentence, no
padding), and relevance is propagated op by op with the AttnLRP rules written as explicit shares
(Achtibat et al. 2024): LRP-ε for Linear layers, LRP-0 on LayerNorm with a constant standard deviation,
the identity rule for GELU, the uniform rule (half to each factor) for both attention products, the
softmax rule ``R_A = A (R_P - P sum R_P)``, and proportional shares for sums and the mean pooling.
No autograd anywhere."""

from __future__ import annotations

import math

import numpy as np
from torch import nn

Array = np.ndarray


def _p(module: nn.Module, name: str) -> Array:
    return getattr(module, name).detach().double().numpy()


def stab(z: Array, eps: float) -> Array:
    return z + eps * np.where(z == 0, 1.0, np.sign(z))


def _safe_div(num: Array, den: Array) -> Array:
    return np.where(den == 0, 0.0, num / np.where(den == 0, 1.0, den))


class Linear:
    def __init__(self, module: nn.Module) -> None:
        self.w, self.b = _p(module, "weight"), _p(module, "bias")

    def forward(self, x: Array) -> Array:
        return x @ self.w.T + self.b

    def relevance(self, x: Array, r: Array, eps: float) -> Array:
        """LRP-ε per row (token): R_j = sum_k x_j w_kj / stab(z_k) R_k."""
        z = self.forward(x)
        return x * ((r / stab(z, eps)) @ self.w)


class LayerNorm:
    def __init__(self, module: nn.Module) -> None:
        self.w, self.b, self.eps = _p(module, "weight"), _p(module, "bias"), module.eps  # type: ignore[attr-defined]

    def forward(self, x: Array) -> Array:
        mu = x.mean(-1, keepdims=True)
        sd = np.sqrt(((x - mu) ** 2).mean(-1, keepdims=True) + self.eps)
        return (x - mu) / sd * self.w + self.b

    def relevance(self, x: Array, r: Array) -> Array:
        """LRP-0 on y = M x + b with M = diag(w / sd) (I - 11^T / H), sd a constant; per token."""
        out = np.zeros_like(x)
        h = x.shape[-1]
        centre = np.eye(h) - 1.0 / h
        for t in range(x.shape[0]):
            mu = x[t].mean()
            sd = math.sqrt(((x[t] - mu) ** 2).mean() + self.eps)
            m = (self.w / sd)[:, None] * centre
            contrib = m * x[t][None, :]  # (k, j)
            y = contrib.sum(1) + self.b
            out[t] = (contrib * _safe_div(r[t], y)[:, None]).sum(0)
        return out


def gelu(x: Array) -> Array:
    erf = np.vectorize(math.erf)
    return 0.5 * x * (1 + erf(x / math.sqrt(2)))


def split_sum(parts: list[Array], r: Array) -> list[Array]:
    """Each summand gets its proportional share of the sum's relevance."""
    total = sum(parts)
    return [_safe_div(p * r, total) for p in parts]


def bilinear(a: Array, b: Array, r: Array) -> tuple[Array, Array]:
    """Uniform rule for out = a @ b: contribution c_ijk = a_ij b_jk shares r_ik; half to each factor."""
    out = a @ b
    share = _safe_div(r, out)  # (i, k)
    contrib = a[:, :, None] * b[None, :, :]  # (i, j, k)
    weighted = contrib * share[:, None, :]
    return 0.5 * weighted.sum(2), 0.5 * weighted.sum(0)


def softmax_rule(a: Array, p: Array, r: Array) -> Array:
    return a * (r - p * r.sum(-1, keepdims=True))


def token_relevance(model: nn.Module, embeds: Array, reference: Array, eps: float, cp: bool = False) -> Array:
    """AttnLRP relevance of the word embeddings ``embeds`` (T, H) of one unpadded sentence (token type 0)
    for ``normalize(mean_t hidden) . reference``; returns the relevance per token (T,)."""
    emb = model.embeddings  # type: ignore[union-attr]
    t_len = embeds.shape[0]
    pos = _p(emb.position_embeddings, "weight")[:t_len]
    typ = np.broadcast_to(_p(emb.token_type_embeddings, "weight")[0], embeds.shape)
    ln_emb = LayerNorm(emb.LayerNorm)
    e = embeds + typ + pos
    h = ln_emb.forward(e)
    cache = []
    for layer in model.encoder.layer:  # type: ignore[union-attr]
        att = layer.attention
        q_l, k_l, v_l = Linear(att.self.query), Linear(att.self.key), Linear(att.self.value)
        o_l, ln1 = Linear(att.output.dense), LayerNorm(att.output.LayerNorm)
        i_l, d_l, ln2 = (
            Linear(layer.intermediate.dense),
            Linear(layer.output.dense),
            LayerNorm(layer.output.LayerNorm),
        )
        heads = att.self.num_attention_heads
        size = att.self.attention_head_size
        q, k, v = q_l.forward(h), k_l.forward(h), v_l.forward(h)
        per_head = []
        o = np.zeros_like(q)
        for n in range(heads):
            sl = slice(n * size, (n + 1) * size)
            a = (q[:, sl] @ k[:, sl].T) / math.sqrt(size)
            p = np.exp(a - a.max(-1, keepdims=True))
            p = p / p.sum(-1, keepdims=True)
            o[:, sl] = p @ v[:, sl]
            per_head.append((sl, a, p))
        a_out = o_l.forward(o)
        r1 = a_out + h
        h1 = ln1.forward(r1)
        g = gelu(i_l.forward(h1))
        d = d_l.forward(g)
        r2 = d + h1
        h2 = ln2.forward(r2)
        layers = (q_l, k_l, v_l, o_l, ln1, i_l, d_l, ln2)
        cache.append((h, q, k, v, per_head, o, a_out, r1, h1, g, d, r2, layers))
        h = h2
    pooled = h.mean(0)
    norm = np.linalg.norm(pooled)
    # relevance, top down
    r_pooled = pooled * reference / norm
    r_h = _safe_div(h / t_len * r_pooled[None, :], np.broadcast_to(pooled, h.shape))
    for h_in, q, k, v, per_head, o, a_out, r1, h1, g, d, r2, layers in reversed(cache):
        q_l, k_l, v_l, o_l, ln1, i_l, d_l, ln2 = layers
        r_r2 = ln2.relevance(r2, r_h)
        r_d, r_h1_res = split_sum([d, h1], r_r2)
        r_g = d_l.relevance(g, r_d, eps)
        r_h1 = i_l.relevance(h1, r_g, eps) + r_h1_res  # GELU: identity rule
        r_r1 = ln1.relevance(r1, r_h1)
        r_a, r_h_res = split_sum([a_out, h_in], r_r1)
        r_o = o_l.relevance(o, r_a, eps)
        r_q, r_k, r_v = np.zeros_like(q), np.zeros_like(k), np.zeros_like(v)
        for sl, a, p in per_head:
            if cp:  # attention weights are constants: all of R_o goes to v
                r_v[:, sl] = (
                    p[:, :, None] * v[None, :, sl] * _safe_div(r_o[:, sl], o[:, sl])[:, None, :]
                ).sum(0)
                continue
            r_p, r_v[:, sl] = bilinear(p, v[:, sl], r_o[:, sl])
            r_a_scores = softmax_rule(a, p, r_p)
            scale = 1 / math.sqrt(size)
            r_qh, r_kt = bilinear(q[:, sl] * scale, k[:, sl].T, r_a_scores)
            r_q[:, sl], r_k[:, sl] = r_qh, r_kt.T
        r_h = r_h_res + v_l.relevance(h_in, r_v, eps)
        if not cp:
            r_h = r_h + q_l.relevance(h_in, r_q, eps) + k_l.relevance(h_in, r_k, eps)
    r_e = ln_emb.relevance(e, r_h)
    r_embeds = split_sum([embeds, typ, pos], r_e)[0]
    return r_embeds.sum(-1)
