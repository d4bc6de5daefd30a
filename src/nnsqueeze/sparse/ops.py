"""The kernels as torch custom operators, usable in ``torch.compile``: generated from each format's
:class:`~nnsqueeze.sparse.formats.KernelSpec`, so a new format gets its operators by being registered.

For a format named ``F`` with kernel arrays ``a1..an`` and scalars ``s1..sk``:

``torch.ops.nnsqueeze.F_linear(x, a1..an, bias, s1..sk, rows, threads=1)``
    ``x @ W.T + bias`` for ``x`` of shape (..., cols), float32 on the CPU.  The arrays are read
    zero-copy (``Tensor.numpy()``) and checked by the kernel as it reads them, so malformed arrays
    raise :class:`~nnsqueeze.sparse.FormatError` and are never read out of bounds.
``torch.ops.nnsqueeze.F_dense(a1..an, s1..sk, rows, cols)``
    W as a dense float32 tensor (the format's checks apply).

The gradient with respect to ``x`` (and ``bias``) is ``grad @ W`` with W from ``F_dense``, so the
backward pass traces too: the formats are for inference, the gradient for attribution methods such as
LRP.  Importing this module requires torch.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from nnsqueeze import _core
from nnsqueeze.errors import ConfigError
from nnsqueeze.sparse.formats import FORMATS, Format, FormatError, KernelSpec


def linear_op(name: str) -> Any:
    """``torch.ops.nnsqueeze.<name>_linear`` (defined on first use for formats registered later)."""
    return _operators(name)[0]


def dense_op(name: str) -> Any:
    """``torch.ops.nnsqueeze.<name>_dense``."""
    return _operators(name)[1]


_DEFINED: dict[str, tuple[Any, Any]] = {}  # the generated operators, by format name


def _operators(name: str) -> tuple[Any, Any]:
    if name not in _DEFINED:
        cls = FORMATS.get(name)
        if cls is None or cls.kernel_spec is None:
            kernels = ", ".join(n for n, c in FORMATS.items() if c.kernel_spec is not None)
            msg = f"no torch operator for format {name!r}; formats with kernels: {kernels}"
            raise ConfigError(msg)
        _DEFINED[name] = _define(cls, cls.kernel_spec)
    return _DEFINED[name]


def linear_args(fmt: Format, x: Tensor, bias: Tensor | None, threads: int = 1) -> tuple[Any, ...]:
    """The arguments of ``linear_op(fmt.name)`` for a format (its arrays copied into tensors)."""
    arrays, scalars = fmt.kernel_inputs()
    tensors = tuple(torch.from_numpy(np.array(a)) for a in arrays.values())
    return (x, *tensors, bias, *scalars.values(), fmt.rows, threads)


def _np(t: Tensor) -> np.ndarray:
    return t.detach().numpy()


def _linear_impl(cls: type[Format], spec: KernelSpec) -> Any:
    n, k = len(spec.arrays), len(spec.scalars)

    def impl(x: Tensor, *rest: Any, threads: int = 1) -> Tensor:
        # the dispatcher leaves out a trailing argument at its default (threads)
        arrays, bias, scalars, rows = rest[:n], rest[n], rest[n + 1 : n + 1 + k], rest[n + 1 + k]
        threads = rest[n + 2 + k] if len(rest) > n + 2 + k else threads
        op_name = f"{cls.name}_linear"
        if x.dtype != torch.float32 or x.device.type != "cpu":
            msg = f"{op_name}: x must be a float32 CPU tensor, got {x.dtype} on {x.device}"
            raise TypeError(msg)
        x2 = x.detach().reshape(-1, x.shape[-1]).contiguous() if x.dim() else x.detach().reshape(1, 1)
        kernel = spec.bind(
            (rows, x2.shape[1]),
            {name: _np(a) for name, a in zip(spec.arrays, arrays, strict=True)},
            dict(zip((s for s, _ in spec.scalars), scalars, strict=True)),
        )
        out = torch.empty((x2.shape[0], rows), dtype=torch.float32)
        try:
            b = None if bias is None else _np(bias.contiguous())
            kernel.matmul(x2.numpy(), out.numpy(), b, threads=threads)
        except _core.CoreFormatError as exc:
            msg = f"{op_name}: {exc}"
            raise FormatError(msg) from None
        return out.reshape(*x.shape[:-1], rows)

    return impl


def _dense_impl(cls: type[Format], spec: KernelSpec) -> Any:
    n = len(spec.arrays)

    def impl(*args: Any) -> Tensor:
        arrays, scalars, rows, cols = args[:n], args[n:-2], args[-2], args[-1]
        fmt = cls.from_kernel_inputs(
            (rows, cols),
            {name: _np(a) for name, a in zip(spec.arrays, arrays, strict=True)},
            dict(zip((s for s, _ in spec.scalars), scalars, strict=True)),
        )
        return torch.from_numpy(fmt.to_dense())

    return impl


def _define(cls: type[Format], spec: KernelSpec) -> tuple[Any, Any]:
    arrays = ", ".join(f"Tensor {a}" for a in spec.arrays)
    scalars = "".join(f", {t} {s}" for s, t in spec.scalars)
    n, k = len(spec.arrays), len(spec.scalars)
    linear = torch.library.custom_op(
        f"nnsqueeze::{cls.name}_linear",
        _linear_impl(cls, spec),
        mutates_args=(),
        device_types="cpu",
        schema=f"(Tensor x, {arrays}, Tensor? bias{scalars}, int rows, int threads=1) -> Tensor",
    )
    dense = torch.library.custom_op(
        f"nnsqueeze::{cls.name}_dense",
        _dense_impl(cls, spec),
        mutates_args=(),
        device_types="cpu",
        schema=f"({arrays}{scalars}, int rows, int cols) -> Tensor",
    )

    def linear_fake(x: Tensor, *rest: Any, threads: int = 1) -> Tensor:
        return x.new_empty((*x.shape[:-1], rest[n + 1 + k]))

    def dense_fake(first: Tensor, *rest: Any) -> Tensor:
        return first.new_empty((rest[-2], rest[-1]), dtype=torch.float32)

    linear.register_fake(linear_fake)
    dense.register_fake(dense_fake)

    def setup(ctx: Any, inputs: tuple[Any, ...], output: Any) -> None:
        ctx.save_for_backward(*inputs[1 : 1 + n])
        ctx.scalars = inputs[n + 2 : n + 2 + k]
        ctx.rows, ctx.cols = inputs[n + 2 + k], inputs[0].shape[-1]
        ctx.need_x, ctx.need_bias = ctx.needs_input_grad[0], ctx.needs_input_grad[n + 1]

    def backward(ctx: Any, grad: Tensor) -> tuple[Any, ...]:
        w = dense(*ctx.saved_tensors, *ctx.scalars, ctx.rows, ctx.cols)
        gx = grad.matmul(w) if ctx.need_x else None
        gb = grad.reshape(-1, grad.shape[-1]).sum(0) if ctx.need_bias else None
        return (gx, *(None,) * n, gb, *(None,) * (k + 2))

    linear.register_autograd(backward, setup_context=setup)
    return linear, dense


for _name, _cls in FORMATS.items():  # defined at import, so that traced graphs find them
    if _cls.kernel_spec is not None:
        _operators(_name)

__all__ = ["dense_op", "linear_args", "linear_op"]
