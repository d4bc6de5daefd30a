"""torch modules that compute in the inference formats, and :func:`convert` to put them into a model.

>>> import torch
>>> from nnsqueeze.sparse import convert, layer_formats
>>> model = torch.nn.Sequential(torch.nn.Linear(32, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4))
>>> with torch.no_grad():
...     for p in model.parameters():
...         _ = p.copy_(torch.round(p * 64) / 64)  # weights on a grid: few distinct values
>>> fast = convert(model, "packed")
>>> x = torch.randn(3, 32)
>>> bool(torch.allclose(fast(x), model(x), atol=1e-5)), layer_formats(fast)
(True, {'0': 'packed', '2': 'packed'})
"""

from __future__ import annotations

import copy
import statistics
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from nnsqueeze import _core
from nnsqueeze.codec import NnsqFile
from nnsqueeze.errors import ConfigError, TensorError
from nnsqueeze.sparse import ops
from nnsqueeze.sparse._codes import ValueCodes, codes_from_dense, codes_from_levels
from nnsqueeze.sparse.cost import CostedFormat, LayerShape, ModelCost, format_model_cost
from nnsqueeze.sparse.formats import FORMATS, Format, FormatError
from nnsqueeze.sparse.levels import read_levels

Layer = nn.Linear | nn.Conv1d | nn.Conv2d


class FormatLinear(nn.Module):
    """``y = x @ W.T + bias`` with W held in a :class:`~nnsqueeze.sparse.Format`.

    The arrays the format's kernel reads are buffers (they travel in the state dict; the module is
    float32 / CPU only).  ``threads`` > 1 splits the rows of W over threads inside the kernel."""

    def __init__(self, weight: Format, bias: Tensor | None = None, *, threads: int = 1) -> None:
        super().__init__()
        self.kind = weight.name
        self.out_features, self.in_features = weight.shape
        self.threads = threads
        self._spec = weight.kernel_spec
        arrays, self._scalars = weight.kernel_inputs() if self._spec is not None else (weight.arrays(), {})
        for name, a in arrays.items():
            self.register_buffer(name, torch.from_numpy(np.array(a)))
        self._names = tuple(arrays)
        self._format = weight.with_arrays({n: self._b(n).numpy() for n in weight.arrays()})
        if bias is not None:
            self.register_buffer("bias", bias.detach().to(torch.float32).contiguous().clone())
        else:
            self.bias: Tensor | None = None
        self._bound: tuple[_core.Kernel, np.ndarray | None] | None = None

    @property
    def format(self) -> Format:
        """The weight as a :class:`~nnsqueeze.sparse.Format` over this module's buffers."""
        return self._format.with_arrays({n: self._b(n).numpy() for n in self._format.arrays()})

    @property
    def weight_nbytes(self) -> int:
        """Bytes of every buffer but the bias (the format's arrays plus derived decoding data)."""
        return sum(int(b.nbytes) for n, b in self._buffers.items() if n != "bias" and b is not None)

    def _b(self, name: str) -> Tensor:
        t = self._buffers[name]
        assert t is not None
        return t

    def _kernel(self) -> tuple[_core.Kernel, np.ndarray | None]:
        """The C++ kernel bound to NumPy views of the buffers, and the bias view (cached until a buffer
        is replaced)."""
        if self._bound is None:
            assert self._spec is not None
            views = {n: self._b(n).detach().numpy() for n in self._names}
            kernel = self._spec.bind(self._format.shape, views, self._scalars)
            self._bound = (kernel, None if self.bias is None else self.bias.detach().numpy())
        return self._bound

    def _apply(self, fn: Any, recurse: bool = True) -> FormatLinear:  # .to(), .float(), ...: rebind
        self._bound = None
        super()._apply(fn, recurse)  # type: ignore[no-untyped-call]
        return self

    def __setattr__(self, name: str, value: Any) -> None:
        if name != "_bound" and "_buffers" in self.__dict__ and name in self._buffers:
            self.__dict__["_bound"] = None  # a buffer replaced: rebind the kernel's arrays
        super().__setattr__(name, value)

    def linear(self, x: Tensor) -> Tensor:
        """The product for x of shape (..., in_features)."""
        if self._spec is None:
            return F.linear(x, self._b("weight"), self.bias)
        if (
            type(x) is torch.Tensor
            and x.dtype is torch.float32
            and x.is_cpu
            and not (x.requires_grad and torch.is_grad_enabled())
            and not torch.compiler.is_compiling()
            and x.dim() > 0
            and x.shape[-1] == self.in_features
        ):  # eager inference: call the kernel directly (the custom operator adds ~10 us of dispatch)
            flat = x.dim() == 2
            x2 = x if flat else x.reshape(-1, self.in_features)
            if x2.requires_grad:
                x2 = x2.detach()
            if not x2.is_contiguous():
                x2 = x2.contiguous()
            o = np.empty((x2.shape[0], self.out_features), dtype=np.float32)  # cheaper than torch.empty
            kernel, bias = self._kernel()
            try:
                kernel.matmul(x2.numpy(), o, bias, threads=self.threads)
            except _core.CoreFormatError as exc:
                msg = f"{self.kind}: {exc}"
                raise FormatError(msg) from None
            out = torch.from_numpy(o)
            return out if flat else out.reshape(*x.shape[:-1], self.out_features)
        arrays = (self._b(n) for n in self._names)
        y: Tensor = ops.linear_op(self.kind)(
            x, *arrays, self.bias, *self._scalars.values(), self.out_features, self.threads
        )
        return y

    forward = linear  # one Python call less per layer

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, format={self.kind}"


class SparseLinear(FormatLinear):
    """Drop-in replacement of :class:`torch.nn.Linear`."""


class SparseConv(FormatLinear):
    """Drop-in replacement of :class:`torch.nn.Conv1d` / :class:`torch.nn.Conv2d` (groups = 1, zero
    padding) by im2col: the unfolded input patches times the (out, in * kernel) weight matrix."""

    def __init__(
        self,
        weight: Format,
        bias: Tensor | None,
        *,
        kernel_size: tuple[int, ...],
        stride: tuple[int, ...],
        padding: tuple[int, ...],
        dilation: tuple[int, ...],
        threads: int = 1,
    ) -> None:
        super().__init__(weight, bias, threads=threads)
        self.dims = len(kernel_size)
        self.kernel_size, self.stride, self.padding, self.dilation = kernel_size, stride, padding, dilation

    def forward(self, x: Tensor) -> Tensor:
        one_d = self.dims == 1
        x4 = x.unsqueeze(-2) if one_d else x
        k = (1, *self.kernel_size) if one_d else self.kernel_size
        s = (1, *self.stride) if one_d else self.stride
        p = (0, *self.padding) if one_d else self.padding
        d = (1, *self.dilation) if one_d else self.dilation
        batched = x4.dim() == 4
        if not batched:
            x4 = x4.unsqueeze(0)
        n, _, h, w = x4.shape
        h_out = (h + 2 * p[0] - d[0] * (k[0] - 1) - 1) // s[0] + 1
        w_out = (w + 2 * p[1] - d[1] * (k[1] - 1) - 1) // s[1] + 1
        cols = F.unfold(x4, k, dilation=d, padding=p, stride=s)  # (n, in * k, L)
        y = self.linear(cols.transpose(1, 2))  # (n, L, out)
        y = y.transpose(1, 2).reshape(n, self.out_features, h_out, w_out)
        if one_d:
            y = y.squeeze(-2)
        return y if batched else y.squeeze(0)

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, kernel_size={self.kernel_size}, stride={self.stride}, "
            f"padding={self.padding}, dilation={self.dilation}"
        )


# --------------------------------------------------------------------------------------- convert


@dataclass(frozen=True)
class LayerChoice:
    """What :func:`convert` did with one layer: the format, the measured seconds per call of each
    candidate and each one's time relative to dense (median of per-round ratios); both empty unless
    ``fmt="auto"``."""

    name: str
    format: str
    times: Mapping[str, float]
    nbytes: int
    dense_nbytes: int
    relative: Mapping[str, float] = field(default_factory=dict)


def _layers(model: nn.Module) -> list[tuple[str, Layer]]:
    """The Linear layers and the convolutions im2col handles (groups 1, numeric zero padding)."""
    out: list[tuple[str, Layer]] = []
    for n, m in model.named_modules():
        if isinstance(m, nn.Linear) or (
            isinstance(m, (nn.Conv1d, nn.Conv2d))
            and m.groups == 1
            and m.padding_mode == "zeros"
            and not isinstance(m.padding, str)
        ):
            out.append((n, m))
    return out


def _weight_matrix(m: Layer) -> np.ndarray:
    w = m.weight.detach().to(torch.float32).cpu()
    return np.ascontiguousarray(w.reshape(w.shape[0], -1).numpy())


def _codes_for(name: str, m: Layer, source: NnsqFile | None) -> ValueCodes:
    if source is not None:
        key = _find_tensor(source, f"{name}.weight")
        if key is not None:
            lv = read_levels(source, key)
            if lv is not None:
                if lv.levels.shape != _weight_matrix_shape(m):
                    msg = f"{key}: levels of shape {lv.levels.shape} do not fit layer {name!r}"
                    raise TensorError(msg)
                return codes_from_levels(lv.levels, lv.step, lv.offset)
    return codes_from_dense(_weight_matrix(m))


def _weight_matrix_shape(m: Layer) -> tuple[int, int]:
    s = tuple(m.weight.shape)
    return int(s[0]), int(np.prod(s[1:]))


def _find_tensor(source: NnsqFile, key: str) -> str | None:
    if key in source.names:
        return key
    matches = [n for n in source.names if n.endswith("." + key) or key.endswith("." + n)]
    return matches[0] if len(matches) == 1 else None


def _module_for(m: Layer, fmt: Format, threads: int) -> FormatLinear:
    bias = m.bias.detach() if m.bias is not None else None
    if isinstance(m, nn.Linear):
        return SparseLinear(fmt, bias, threads=threads)
    assert not isinstance(m.padding, str)  # _layers leaves string padding alone
    return SparseConv(
        fmt,
        bias,
        kernel_size=tuple(m.kernel_size),
        stride=tuple(m.stride),
        padding=tuple(m.padding),
        dilation=tuple(m.dilation),
        threads=threads,
    )


def _time_calls(calls: Mapping[str, Callable[[], object]], repeats: int) -> dict[str, list[float]]:
    """Seconds per call of each callable, one sample per round; the callables take turns (so drift and
    other jobs on the machine hit them alike), and a sample repeats fast calls for >= 50 us."""
    reps: dict[str, int] = {}
    for k, fn in calls.items():  # warm-up, and the repetitions per sample
        fn()
        t0 = time.perf_counter()
        fn()
        reps[k] = max(1, min(100, int(5e-5 / max(time.perf_counter() - t0, 1e-7)) + 1))
    samples: dict[str, list[float]] = {k: [] for k in calls}
    for _ in range(repeats):
        for k, fn in calls.items():
            t0 = time.perf_counter()
            for _ in range(reps[k]):
                fn()
            samples[k].append((time.perf_counter() - t0) / reps[k])
    return samples


def _example_inputs(model: nn.Module, names: Iterable[str], example: Sequence[Any]) -> dict[str, Tensor]:
    """The input each named layer sees when the model runs on ``example``."""
    seen: dict[str, Tensor] = {}
    mods = dict(model.named_modules())

    def hook(name: str) -> Callable[[nn.Module, tuple[Any, ...], Any], None]:
        def record(mod: nn.Module, args: tuple[Any, ...], out: Any) -> None:
            seen.setdefault(name, args[0].detach())

        return record

    hooks = [mods[n].register_forward_hook(hook(n)) for n in names]
    try:
        with torch.no_grad():
            model(*example)
    finally:
        for h in hooks:
            h.remove()
    return seen


def convert(
    model: nn.Module,
    fmt: str = "auto",
    *,
    source: str | Path | NnsqFile | None = None,
    candidates: Sequence[str] | None = None,
    batch_size: int = 1,
    example_inputs: Sequence[Any] | None = None,
    min_gain: float = 0.1,
    repeats: int = 11,
    threads: int = 1,
    inplace: bool = False,
    report: list[LayerChoice] | None = None,
) -> nn.Module:
    """Replaces the Linear and Conv1d/Conv2d layers of ``model`` by modules that compute in ``fmt``: a
    name in :data:`~nnsqueeze.sparse.FORMATS` ("dense", "csr", "cer", "cser", "packed") or "auto".
    The weights are represented exactly, so the outputs match the model's within float rounding.

    source
        A ``.nnsq`` file (path or :class:`~nnsqueeze.NnsqFile`) holding the model's weights: layers whose
        ``<name>.weight`` is stored uniformly quantized are built from its integer levels, without a
        float matrix (the model's own weights are used for the others).
    auto
        Per layer, times every format in ``candidates`` (default: all) that can hold the weight (round-robin,
        ``repeats`` rounds) on the layer's input from ``example_inputs`` (a tuple of model arguments)
        or, without it, on ``batch_size`` random rows, and keeps the fastest.  A layer leaves dense only
        for a format at least ``min_gain`` faster than dense (median of the per-round time ratios; when
        "dense" is a candidate), so noise does not make it slower.  Leave "dense" out of
        ``candidates`` to force a compact format.
    report
        A list that receives one :class:`LayerChoice` per converted layer.

    Conv layers with groups > 1, string padding or non-zero padding modes stay as they are.  Unless
    ``inplace``, the model is deep-copied first.
    """
    names = tuple(FORMATS)
    if candidates is None:
        candidates = names
    if fmt != "auto" and fmt not in FORMATS:
        msg = f"unknown format {fmt!r}; use one of {', '.join(names)} or 'auto'"
        raise ConfigError(msg)
    bad = [c for c in candidates if c not in FORMATS]
    if bad or not candidates:
        msg = f"candidates must be a non-empty subset of {names}, got {tuple(candidates)}"
        raise ConfigError(msg)
    if batch_size < 1 or repeats < 1 or threads < 1:
        msg = "batch_size, repeats and threads must be >= 1"
        raise ConfigError(msg)
    target = model if inplace else copy.deepcopy(model)
    layers = _layers(target)
    opened = NnsqFile(source) if isinstance(source, (str, Path)) else source
    try:
        inputs = (
            _example_inputs(target, [n for n, _ in layers], example_inputs)
            if example_inputs and fmt == "auto"
            else {}
        )
        for name, m in layers:
            codes = _codes_for(name, m, opened)
            if fmt == "auto":
                new, choice = _choose(
                    name, m, codes, candidates, inputs.get(name), batch_size, min_gain, repeats, threads
                )
            else:
                new = _module_for(m, FORMATS[fmt].from_codes(codes), threads)
                choice = LayerChoice(name, fmt, {}, new.weight_nbytes, 4 * codes.shape[0] * codes.shape[1])
            if report is not None:
                report.append(choice)
            if new is not None:
                if name:
                    _set_module(target, name, new)
                else:  # the model is itself a layer
                    target = new
    finally:
        if isinstance(source, (str, Path)) and opened is not None:
            opened.close()
    return target


def _choose(
    name: str,
    m: Layer,
    codes: ValueCodes,
    candidates: Sequence[str],
    x: Tensor | None,
    batch_size: int,
    min_gain: float,
    repeats: int,
    threads: int,
) -> tuple[FormatLinear | None, LayerChoice]:
    modules: dict[str, FormatLinear] = {}
    for c in candidates:
        if c != "dense":
            try:
                modules[c] = _module_for(m, FORMATS[c].from_codes(codes), threads)
            except TensorError:  # the format cannot hold this weight (too many values)
                continue
    dense_bytes = 4 * codes.shape[0] * codes.shape[1]
    if not modules and "dense" not in candidates:
        msg = f"layer {name!r}: none of the formats {tuple(candidates)} can hold its weight"
        raise TensorError(msg)
    calls: dict[str, Callable[[], object]] = {}
    if x is not None or isinstance(m, nn.Linear):  # time whole modules (module-call overhead included)
        xs = x if x is not None else torch.randn(batch_size, codes.shape[1])
        if "dense" in candidates:
            calls["dense"] = lambda: m(xs)
        for k, mod in modules.items():
            calls[k] = lambda mod=mod: mod(xs)  # type: ignore[misc]
    else:  # a convolution without example input: batch_size rows of its im2col matrix product
        xs = torch.randn(batch_size, codes.shape[1])
        if "dense" in candidates:
            w = torch.from_numpy(_weight_matrix(m))
            b = m.bias.detach() if m.bias is not None else None
            calls["dense"] = lambda: F.linear(xs, w, b)
        for k, mod in modules.items():
            calls[k] = lambda mod=mod: mod.linear(xs)  # type: ignore[misc]
    with torch.no_grad():
        samples = _time_calls(calls, repeats)
    times = {k: statistics.median(v) for k, v in samples.items()}
    rel: dict[str, float] = {}
    if "dense" in samples:  # compare with dense round by round: the median of the paired ratios
        rel = {
            k: statistics.median(t / d for t, d in zip(v, samples["dense"], strict=True))
            for k, v in samples.items()
            if k != "dense"
        }
        best = min(rel, key=rel.__getitem__) if rel else "dense"
        if best != "dense" and rel[best] > 1 - min_gain:
            best = "dense"
    else:
        best = min(times, key=times.__getitem__)
    if best == "dense":
        return None, LayerChoice(name, "dense", times, dense_bytes, dense_bytes, rel)
    chosen = modules[best]
    return chosen, LayerChoice(name, best, times, chosen.weight_nbytes, dense_bytes, rel)


def _set_module(root: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, child, new)


def layer_formats(model: nn.Module) -> dict[str, str]:
    """The format of every converted layer of ``model``, by module name."""
    return {n: m.kind for n, m in model.named_modules() if isinstance(m, FormatLinear)}


def weight_nbytes(model: nn.Module) -> dict[str, int]:
    """Weight bytes of each Linear / Conv layer, converted or not (float32 weights count 4 bytes each)."""
    out: dict[str, int] = {}
    for n, m in model.named_modules():
        if isinstance(m, FormatLinear):
            out[n] = m.weight_nbytes
        elif isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d)):
            out[n] = int(m.weight.nbytes)
    return out


def model_cost(
    model: nn.Module,
    example_inputs: Sequence[Any],
    formats: Sequence[str] | None = None,
    *,
    source: str | Path | NnsqFile | None = None,
) -> dict[str, ModelCost]:
    """Storage, operations and energy (45 nm model) of ``model`` for one input per format, with every
    Linear / Conv layer's weight held in that format (a format that cannot hold some weight is left
    out).  Convolutions count one matrix-vector product per output position of ``example_inputs``
    (divided by the batch size); ``source`` as in :func:`convert`."""
    layers = _layers(model)
    positions: dict[str, int] = {}
    mods = dict(model.named_modules())
    first = example_inputs[0] if example_inputs else None
    batch = int(first.shape[0]) if isinstance(first, Tensor) and first.dim() > 1 else 1

    def hook(name: str) -> Callable[[nn.Module, tuple[Any, ...], Any], None]:
        def record(mod: nn.Module, args: tuple[Any, ...], out: Any) -> None:
            products = out.numel() // int(mods_by_name[name].weight.shape[0])  # matrix-vector products
            positions.setdefault(name, max(products // batch, 1))

        return record

    mods_by_name = dict(layers)
    handles = [mods[n].register_forward_hook(hook(n)) for n, _ in layers]
    try:
        with torch.no_grad():
            model(*example_inputs)
    finally:
        for h in handles:
            h.remove()
    opened = NnsqFile(source) if isinstance(source, (str, Path)) else source
    try:
        codes = {n: _codes_for(n, m, opened) for n, m in layers}
    finally:
        if isinstance(source, (str, Path)) and opened is not None:
            opened.close()
    out: dict[str, ModelCost] = {}
    for fmt in tuple(FORMATS) if formats is None else formats:
        entries: list[tuple[LayerShape, CostedFormat]] = []
        try:
            for n, m in layers:
                c = codes[n]
                shape = LayerShape(n, c.shape[0], c.shape[1], positions.get(n, 1), m.bias is not None)
                entries.append((shape, FORMATS[fmt].from_codes(c)))
        except TensorError:
            continue
        out[fmt] = format_model_cost(entries)
    return out
