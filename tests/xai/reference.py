"""Slow matrix-form LRP: the independent oracle of every rule in ``nnsqueeze.xai.rules``.

Each layer is written out as a dense matrix ``M`` (``z = M a + b``) built with explicit loops over the
kernel (no torch convolution), and each rule is the textbook formula over the contributions
``C[k, j] = M[k, j] a[j]`` (Montavon et al. 2019; Andéol et al. 2021 for the generalised γ), in float64
NumPy.  Nothing here uses autograd or the gradient trick of the implementation under test."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from torch import nn

Array = np.ndarray


@dataclass
class Dense:
    """A linear layer as ``z = M @ a + b`` on flattened (C, *spatial) inputs of one sample."""

    weight: Array  # kernel or matrix, as in the module
    bias: Array  # (n_out,), expanded over positions
    matrix: Callable[[Array], Array]  # kernel -> dense matrix (n_out, n_in)
    out_shape: tuple[int, ...]


def _pair(v: int | tuple[int, ...], n: int) -> tuple[int, ...]:
    return (v,) * n if isinstance(v, int) else tuple(v)


def dense(module: nn.Module, in_shape: tuple[int, ...]) -> Dense:
    """The dense form of a Linear, Conv1d or Conv2d module (zero padding, groups=1) for one sample of
    shape ``in_shape`` (without the batch dimension)."""
    w = module.weight.detach().double().numpy()
    b = np.zeros(w.shape[0]) if module.bias is None else module.bias.detach().double().numpy()
    if isinstance(module, nn.Linear):
        return Dense(w, b, lambda k: k.copy(), (w.shape[0],))
    assert isinstance(module, (nn.Conv1d, nn.Conv2d))
    assert module.groups == 1
    nd = w.ndim - 2
    stride, pad, dil = (_pair(module.stride, nd), _pair(module.padding, nd), _pair(module.dilation, nd))
    c_in, *size = in_shape
    c_out, _, *ksize = w.shape
    out_size = [(size[d] + 2 * pad[d] - dil[d] * (ksize[d] - 1) - 1) // stride[d] + 1 for d in range(nd)]
    n_in = c_in * int(np.prod(size))
    out_positions = list(np.ndindex(*out_size))
    taps = list(np.ndindex(*ksize))

    def matrix(kernel: Array) -> Array:
        m = np.zeros((c_out * len(out_positions), n_in))
        for o in range(c_out):
            for p_idx, pos in enumerate(out_positions):
                row = o * len(out_positions) + p_idx
                for tap in taps:
                    src = [pos[d] * stride[d] - pad[d] + tap[d] * dil[d] for d in range(nd)]
                    if any(s < 0 or s >= size[d] for d, s in enumerate(src)):
                        continue
                    for c in range(c_in):
                        col = np.ravel_multi_index((c, *src), (c_in, *size))
                        m[row, col] += kernel[(o, c, *tap)]
        return m

    return Dense(w, np.repeat(b, len(out_positions)), matrix, (c_out, *out_size))


def stab(z: Array, eps: float) -> Array:
    return z + eps * np.where(z == 0, 1.0, np.sign(z))


def _share(num: Array, den: Array, r: Array, eps: float) -> Array:
    """``sum_k num[k, j] / stab(den_k) r_k``; 0 for a zero denominator (only with eps = 0)."""
    d = stab(den, eps)
    safe = np.where(d == 0, 1.0, d)
    return ((num / safe[:, None]) * np.where(d == 0, 0.0, r)[:, None]).sum(0)


def epsilon(layer: Dense, a: Array, r: Array, eps: float, zero_bias: bool = False) -> Array:
    c = layer.matrix(layer.weight) * a[None, :]
    return _share(c, c.sum(1) + (0 if zero_bias else layer.bias), r, eps)


def zplus(layer: Dense, a: Array, r: Array, eps: float, zero_bias: bool = False) -> Array:
    c = layer.matrix(layer.weight) * a[None, :]
    p = np.maximum(c, 0)
    return _share(p, p.sum(1) + (0 if zero_bias else np.maximum(layer.bias, 0)), r, eps)


def alpha_beta(
    layer: Dense, a: Array, r: Array, alpha: float, beta: float, eps: float, zero_bias: bool = False
) -> Array:
    c = layer.matrix(layer.weight) * a[None, :]
    p, n = np.maximum(c, 0), np.minimum(c, 0)
    bp = 0 if zero_bias else np.maximum(layer.bias, 0)
    bn = 0 if zero_bias else np.minimum(layer.bias, 0)
    return alpha * _share(p, p.sum(1) + bp, r, eps) - beta * _share(n, n.sum(1) + bn, r, eps)


def gamma(layer: Dense, a: Array, r: Array, g: float, eps: float, zero_bias: bool = False) -> Array:
    c = layer.matrix(layer.weight) * a[None, :]
    b = np.zeros_like(layer.bias) if zero_bias else layer.bias
    z = c.sum(1) + layer.bias
    up, down = c + g * np.maximum(c, 0), c + g * np.minimum(c, 0)
    r_up, r_down = np.where(z > 0, r, 0.0), np.where(z < 0, r, 0.0)
    return _share(up, up.sum(1) + b + g * np.maximum(b, 0), r_up, eps) + _share(
        down, down.sum(1) + b + g * np.minimum(b, 0), r_down, eps
    )


def wsquare(layer: Dense, a: Array, r: Array, eps: float, zero_bias: bool = False) -> Array:
    q = layer.matrix(layer.weight**2)
    return _share(q, q.sum(1) + (0 if zero_bias else layer.bias**2), r, eps)


def flat(layer: Dense, a: Array, r: Array, eps: float) -> Array:
    o = layer.matrix(np.ones_like(layer.weight))
    return _share(o, o.sum(1), r, eps)


def zbox(layer: Dense, a: Array, r: Array, low: Array, high: Array, eps: float) -> Array:
    m = layer.matrix(layer.weight)
    t = m * a[None, :] - np.maximum(m, 0) * low[None, :] - np.minimum(m, 0) * high[None, :]
    return _share(t, t.sum(1), r, eps)


# --- parameter-free layers --------------------------------------------------------------------------------


def maxpool2d(a: Array, shape: tuple[int, int, int], k: int, r: Array) -> Array:
    """Winner-take-all: each pooled relevance goes to the (first) maximum of its window."""
    c, h, w = shape
    x = a.reshape(shape)
    rr = r.reshape(c, h // k, w // k)
    out = np.zeros(shape)
    for ch in range(c):
        for i in range(h // k):
            for j in range(w // k):
                win = x[ch, i * k : (i + 1) * k, j * k : (j + 1) * k]
                di, dj = np.unravel_index(np.argmax(win), win.shape)
                out[ch, i * k + di, j * k + dj] += rr[ch, i, j]
    return out.reshape(-1)


def avgpool2d(a: Array, shape: tuple[int, int, int], k: int, r: Array, eps: float) -> Array:
    """Each input gets its share ``a_j / z_k`` of the window's relevance (the Norm rule)."""
    c, h, w = shape
    x = a.reshape(shape)
    rr = r.reshape(c, h // k, w // k)
    out = np.zeros(shape)
    for ch in range(c):
        for i in range(h // k):
            for j in range(w // k):
                win = x[ch, i * k : (i + 1) * k, j * k : (j + 1) * k]
                z = win.mean()
                out[ch, i * k : (i + 1) * k, j * k : (j + 1) * k] += (
                    (win / (k * k)) / stab(np.array(z), eps) * rr[ch, i, j]
                )
    return out.reshape(-1)
