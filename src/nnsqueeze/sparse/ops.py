"""The kernels as torch custom operators (``torch.ops.nnsqueeze.*_linear``), usable in ``torch.compile``.

Each operator computes ``x @ W.T + bias`` for ``x`` of shape (..., cols), float32 on the CPU, with ``W``
given by its format arrays.  The arrays are read zero-copy (``Tensor.numpy()``) and checked by the
kernels as they are read, so malformed arrays raise :class:`~nnsqueeze.sparse.FormatError` and are
never read out of bounds.  The gradient with respect to ``x`` (and ``bias``) is ``grad @ W``, with W
rebuilt densely: the formats are for inference, the gradient for attribution methods such as LRP.
Importing this module requires torch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor

from nnsqueeze import _core
from nnsqueeze.sparse.formats import CER, CSER, CSR, FormatError
from nnsqueeze.sparse.packed import PackedCodebook


def _np(t: Tensor) -> np.ndarray:
    return t.detach().numpy()


def _run(kernel: Callable[[np.ndarray, np.ndarray], None], x: Tensor, rows: int, name: str) -> Tensor:
    """Flattens x to (batch, cols), runs the kernel into a new (batch, rows) tensor, restores the shape."""
    if x.dtype != torch.float32 or x.device.type != "cpu":
        msg = f"{name}: x must be a float32 CPU tensor, got {x.dtype} on {x.device}"
        raise TypeError(msg)
    x2 = x.detach().reshape(-1, x.shape[-1]).contiguous() if x.dim() else x.detach().reshape(1, 1)
    out = torch.empty((x2.shape[0], rows), dtype=torch.float32)
    try:
        kernel(x2.numpy(), out.numpy())
    except _core.CoreFormatError as exc:
        msg_0 = f"{name}: {exc}"
        raise FormatError(msg_0) from None
    return out.reshape(*x.shape[:-1], rows)


def _bias(bias: Tensor | None) -> np.ndarray | None:
    return None if bias is None else _np(bias.contiguous())


# ------------------------------------------------------------------------------- implementations


def csr_impl(
    x: Tensor, row_ptr: Tensor, col_idx: Tensor, values: Tensor, bias: Tensor | None, rows: int, threads: int
) -> Tensor:
    cols = x.shape[-1]

    def k(xa: np.ndarray, out: np.ndarray) -> None:
        _core.csr_matmul(
            _np(row_ptr), _np(col_idx), _np(values), rows, cols, xa, out, _bias(bias), False, threads
        )

    return _run(k, x, rows, "csr_linear")


def cer_impl(
    x: Tensor,
    row_ptr: Tensor,
    group_ptr: Tensor,
    col_idx: Tensor,
    omega: Tensor,
    bias: Tensor | None,
    rows: int,
    threads: int,
) -> Tensor:
    cols = x.shape[-1]

    def k(xa: np.ndarray, out: np.ndarray) -> None:
        _core.cer_matmul(
            _np(row_ptr), _np(group_ptr), _np(col_idx), _np(omega), rows, cols, xa, out, _bias(bias), threads
        )

    return _run(k, x, rows, "cer_linear")


def cser_impl(
    x: Tensor,
    row_ptr: Tensor,
    group_ptr: Tensor,
    value_idx: Tensor,
    col_idx: Tensor,
    values: Tensor,
    omega0: float,
    bias: Tensor | None,
    rows: int,
    threads: int,
) -> Tensor:
    cols = x.shape[-1]

    def k(xa: np.ndarray, out: np.ndarray) -> None:
        _core.cser_matmul(
            _np(row_ptr),
            _np(group_ptr),
            _np(value_idx),
            _np(col_idx),
            _np(values),
            omega0,
            rows,
            cols,
            xa,
            out,
            _bias(bias),
            threads,
        )

    return _run(k, x, rows, "cser_linear")


def packed_impl(
    x: Tensor,
    data: Tensor,
    table: Tensor,
    bias: Tensor | None,
    rows: int,
    bits: int,
    affine: bool,
    scale: float,
    offset: float,
    corr_rows: Tensor | None,
    corr_cols: Tensor | None,
    corr_values: Tensor | None,
    threads: int,
) -> Tensor:
    cols = x.shape[-1]

    def k(xa: np.ndarray, out: np.ndarray) -> None:
        _core.packed_matmul(
            _np(data),
            _np(table),
            bits,
            rows,
            cols,
            xa,
            out,
            _bias(bias),
            affine,
            scale,
            offset,
            None if corr_rows is None else _np(corr_rows),
            None if corr_cols is None else _np(corr_cols),
            None if corr_values is None else _np(corr_values),
            threads,
        )

    return _run(k, x, rows, "packed_linear")


# ----------------------------------------------------------------------------------- operators


@torch.library.custom_op("nnsqueeze::csr_linear", mutates_args=(), device_types="cpu")
def csr_linear(
    x: Tensor,
    row_ptr: Tensor,
    col_idx: Tensor,
    values: Tensor,
    bias: Tensor | None,
    rows: int,
    threads: int = 1,
) -> Tensor:
    """``x @ W.T + bias`` with W in CSR."""
    return csr_impl(x, row_ptr, col_idx, values, bias, rows, threads)


@torch.library.custom_op("nnsqueeze::cer_linear", mutates_args=(), device_types="cpu")
def cer_linear(
    x: Tensor,
    row_ptr: Tensor,
    group_ptr: Tensor,
    col_idx: Tensor,
    omega: Tensor,
    bias: Tensor | None,
    rows: int,
    threads: int = 1,
) -> Tensor:
    """``x @ W.T + bias`` with W in CER."""
    return cer_impl(x, row_ptr, group_ptr, col_idx, omega, bias, rows, threads)


@torch.library.custom_op("nnsqueeze::cser_linear", mutates_args=(), device_types="cpu")
def cser_linear(
    x: Tensor,
    row_ptr: Tensor,
    group_ptr: Tensor,
    value_idx: Tensor,
    col_idx: Tensor,
    values: Tensor,
    omega0: float,
    bias: Tensor | None,
    rows: int,
    threads: int = 1,
) -> Tensor:
    """``x @ W.T + bias`` with W in CSER."""
    return cser_impl(x, row_ptr, group_ptr, value_idx, col_idx, values, omega0, bias, rows, threads)


@torch.library.custom_op("nnsqueeze::packed_linear", mutates_args=(), device_types="cpu")
def packed_linear(
    x: Tensor,
    data: Tensor,
    table: Tensor,
    bias: Tensor | None,
    rows: int,
    bits: int,
    affine: bool = False,
    scale: float = 1.0,
    offset: float = 0.0,
    corr_rows: Tensor | None = None,
    corr_cols: Tensor | None = None,
    corr_values: Tensor | None = None,
    threads: int = 1,
) -> Tensor:
    """``x @ W.T + bias`` with W a packed codebook (affine decoding with corrections if ``affine``)."""
    return packed_impl(
        x, data, table, bias, rows, bits, affine, scale, offset, corr_rows, corr_cols, corr_values, threads
    )


def _fake(x: Tensor, *args: Any, rows: int) -> Tensor:
    return x.new_empty((*x.shape[:-1], rows))


@csr_linear.register_fake
def _(
    x: Tensor,
    row_ptr: Tensor,
    col_idx: Tensor,
    values: Tensor,
    bias: Tensor | None,
    rows: int,
    threads: int = 1,
) -> Tensor:
    return _fake(x, rows=rows)


@cer_linear.register_fake
def _(
    x: Tensor,
    row_ptr: Tensor,
    group_ptr: Tensor,
    col_idx: Tensor,
    omega: Tensor,
    bias: Tensor | None,
    rows: int,
    threads: int = 1,
) -> Tensor:
    return _fake(x, rows=rows)


@cser_linear.register_fake
def _(
    x: Tensor,
    row_ptr: Tensor,
    group_ptr: Tensor,
    value_idx: Tensor,
    col_idx: Tensor,
    values: Tensor,
    omega0: float,
    bias: Tensor | None,
    rows: int,
    threads: int = 1,
) -> Tensor:
    return _fake(x, rows=rows)


@packed_linear.register_fake
def _(
    x: Tensor,
    data: Tensor,
    table: Tensor,
    bias: Tensor | None,
    rows: int,
    bits: int,
    affine: bool = False,
    scale: float = 1.0,
    offset: float = 0.0,
    corr_rows: Tensor | None = None,
    corr_cols: Tensor | None = None,
    corr_values: Tensor | None = None,
    threads: int = 1,
) -> Tensor:
    return _fake(x, rows=rows)


# ------------------------------------------------------------------------------------ gradients
# Only x and bias get gradients: grad @ W, with W rebuilt densely by the *_dense operators (checked
# like the constructors), so that the backward pass traces too.


@torch.library.custom_op("nnsqueeze::csr_dense", mutates_args=(), device_types="cpu")
def csr_dense(row_ptr: Tensor, col_idx: Tensor, values: Tensor, rows: int, cols: int) -> Tensor:
    """The CSR matrix as a dense float32 tensor."""
    return torch.from_numpy(CSR((rows, cols), _np(row_ptr), _np(col_idx), _np(values)).to_dense())


@torch.library.custom_op("nnsqueeze::cer_dense", mutates_args=(), device_types="cpu")
def cer_dense(
    row_ptr: Tensor, group_ptr: Tensor, col_idx: Tensor, omega: Tensor, rows: int, cols: int
) -> Tensor:
    """The CER matrix as a dense float32 tensor."""
    return torch.from_numpy(
        CER((rows, cols), _np(omega), _np(row_ptr), _np(group_ptr), _np(col_idx)).to_dense()
    )


@torch.library.custom_op("nnsqueeze::cser_dense", mutates_args=(), device_types="cpu")
def cser_dense(
    row_ptr: Tensor,
    group_ptr: Tensor,
    value_idx: Tensor,
    col_idx: Tensor,
    values: Tensor,
    omega0: float,
    rows: int,
    cols: int,
) -> Tensor:
    """The CSER matrix as a dense float32 tensor."""
    f = CSER((rows, cols), _np(values), _np(row_ptr), _np(group_ptr), _np(value_idx), _np(col_idx), omega0)
    return torch.from_numpy(f.to_dense())


@torch.library.custom_op("nnsqueeze::packed_dense", mutates_args=(), device_types="cpu")
def packed_dense(data: Tensor, table: Tensor, rows: int, cols: int, bits: int) -> Tensor:
    """The packed codebook matrix as a dense float32 tensor."""
    return torch.from_numpy(PackedCodebook((rows, cols), bits, _np(data), _np(table)).to_dense())


def _dense_fake(first: Tensor, rows: int, cols: int) -> Tensor:
    return first.new_empty((rows, cols), dtype=torch.float32)


@csr_dense.register_fake
def _(row_ptr: Tensor, col_idx: Tensor, values: Tensor, rows: int, cols: int) -> Tensor:
    return _dense_fake(values, rows, cols)


@cer_dense.register_fake
def _(row_ptr: Tensor, group_ptr: Tensor, col_idx: Tensor, omega: Tensor, rows: int, cols: int) -> Tensor:
    return _dense_fake(omega, rows, cols)


@cser_dense.register_fake
def _(
    row_ptr: Tensor,
    group_ptr: Tensor,
    value_idx: Tensor,
    col_idx: Tensor,
    values: Tensor,
    omega0: float,
    rows: int,
    cols: int,
) -> Tensor:
    return _dense_fake(values, rows, cols)


@packed_dense.register_fake
def _(data: Tensor, table: Tensor, rows: int, cols: int, bits: int) -> Tensor:
    return _dense_fake(table, rows, cols)


def _grads(ctx: Any, grad: Tensor, w: Tensor) -> tuple[Tensor | None, Tensor | None]:
    gx = grad.matmul(w) if ctx.need_x else None
    gb = grad.reshape(-1, grad.shape[-1]).sum(0) if ctx.need_bias else None
    return gx, gb


def _setup(n_arrays: int, bias_at: int) -> Callable[[Any, tuple[Any, ...], Any], None]:
    def setup(ctx: Any, inputs: tuple[Any, ...], output: Any) -> None:
        ctx.save_for_backward(*inputs[1 : 1 + n_arrays])
        ctx.cols = inputs[0].shape[-1]
        ctx.need_x = ctx.needs_input_grad[0]
        ctx.need_bias = ctx.needs_input_grad[bias_at]
        # the scalars (rows, bits, omega0, ...) for the dense rebuild; tensors are saved above
        ctx.inputs = tuple(None if isinstance(v, Tensor) else v for v in inputs)

    return setup


def _csr_backward(ctx: Any, grad: Tensor) -> tuple[Any, ...]:
    w = csr_dense(*ctx.saved_tensors, ctx.inputs[5], ctx.cols)
    gx, gb = _grads(ctx, grad, w)
    return gx, None, None, None, gb, None, None


def _cer_backward(ctx: Any, grad: Tensor) -> tuple[Any, ...]:
    w = cer_dense(*ctx.saved_tensors, ctx.inputs[6], ctx.cols)
    gx, gb = _grads(ctx, grad, w)
    return gx, None, None, None, None, gb, None, None


def _cser_backward(ctx: Any, grad: Tensor) -> tuple[Any, ...]:
    w = cser_dense(*ctx.saved_tensors, ctx.inputs[6], ctx.inputs[8], ctx.cols)
    gx, gb = _grads(ctx, grad, w)
    return gx, None, None, None, None, None, None, gb, None, None


def _packed_backward(ctx: Any, grad: Tensor) -> tuple[Any, ...]:
    w = packed_dense(*ctx.saved_tensors, ctx.inputs[4], ctx.cols, ctx.inputs[5])
    gx, gb = _grads(ctx, grad, w)
    return (gx, None, None, gb) + (None,) * 9


csr_linear.register_autograd(_csr_backward, setup_context=_setup(3, 4))
cer_linear.register_autograd(_cer_backward, setup_context=_setup(4, 5))
cser_linear.register_autograd(_cser_backward, setup_context=_setup(5, 7))
packed_linear.register_autograd(_packed_backward, setup_context=_setup(2, 3))
