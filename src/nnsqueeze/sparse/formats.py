"""Weight-matrix formats: dense, CSR, CER and CSER (packed codebooks are in :mod:`.packed`).

Each format holds a matrix ``W`` of shape (rows, cols) exactly and computes ``X @ W.T (+ bias)`` with
the C++ kernels.  Built with :meth:`Format.from_dense` or, without a float matrix,
:meth:`Format.from_levels` from the integer levels of a uniform quantizer.  Index arrays use the
narrowest of uint8 / uint16 / uint32 that holds their largest value.

The seed's 5 x 10 example (Wiedemann et al., TNNLS 2019):

>>> import numpy as np
>>> from nnsqueeze.sparse import CSER
>>> M = np.array([[0, 4, 0, 0, 0, 4, 0, 4, 0, 0],
...               [0, 2, 4, 0, 0, 4, 2, 0, 2, 0],
...               [2, 2, 0, 0, 0, 0, 0, 2, 0, 0],
...               [0, 0, 4, 4, 0, 0, 0, 4, 0, 4],
...               [4, 0, 0, 0, 2, 0, 0, 4, 2, 2]], dtype=np.float32)
>>> f = CSER.from_dense(M)
>>> f.values.tolist(), f.value_idx.tolist(), f.group_ptr.tolist(), f.row_ptr.tolist()
([4.0, 2.0], [0, 0, 1, 1, 0, 0, 1], [0, 3, 5, 8, 11, 15, 17, 20], [0, 1, 3, 4, 5, 7])
>>> f.col_idx.tolist()
[1, 5, 7, 2, 5, 1, 6, 8, 0, 1, 7, 2, 3, 7, 9, 0, 7, 4, 8, 9]
>>> bool(np.allclose(f.matmul(np.ones(10, np.float32)), M.sum(axis=1)))
True
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

import numpy as np

from nnsqueeze import _core
from nnsqueeze.errors import ConfigError, TensorError
from nnsqueeze.sparse._codes import ValueCodes, check_matrix, codes_from_dense, codes_from_levels, narrow_uint
from nnsqueeze.sparse.cost import Access, Energy, OpCounts, ProductCost, activation_accesses, row_adds

_F = TypeVar("_F", bound="Format")
_UINTS = (np.dtype(np.uint8), np.dtype(np.uint16), np.dtype(np.uint32))
Scalar = float | int | bool


class FormatError(TensorError):
    """The arrays of a matrix format are malformed: wrong dtype or length, a pointer that decreases or
    points past its array, a column or value index out of range, a repeated column."""


# ------------------------------------------------------------------------------------ array checks


def uint_array(a: object, name: str, allowed: tuple[np.dtype[Any], ...] = _UINTS) -> np.ndarray:
    """A 1-D C-contiguous array of one of the ``allowed`` unsigned dtypes, read-only."""
    if not isinstance(a, np.ndarray):
        msg = f"{name} must be a NumPy array, got {type(a).__name__}"
        raise FormatError(msg)
    if a.dtype not in allowed:
        names = ", ".join(d.name for d in allowed)
        msg = f"{name} must have dtype {names}; got {a.dtype}"
        raise FormatError(msg)
    if a.ndim != 1:
        msg = f"{name} must be 1-D, got shape {a.shape}"
        raise FormatError(msg)
    return _readonly(np.ascontiguousarray(a))


def float_array(a: object, name: str, length: int | None = None) -> np.ndarray:
    """A 1-D C-contiguous float32 array of finite values, read-only."""
    if not isinstance(a, np.ndarray) or a.dtype != np.float32 or a.ndim != 1:
        got = f"{a.dtype} of shape {a.shape}" if isinstance(a, np.ndarray) else type(a).__name__
        msg = f"{name} must be a 1-D float32 array, got {got}"
        raise FormatError(msg)
    if length is not None and a.size != length:
        msg = f"{name} has {a.size} entries, expected {length}"
        raise FormatError(msg)
    if not np.isfinite(a).all():
        msg = f"{name} holds NaN or Inf"
        raise FormatError(msg)
    return _readonly(np.ascontiguousarray(a))


def _steps(ptr: np.ndarray) -> np.ndarray:
    """Entries per slot of a pointer array."""
    out: np.ndarray = np.diff(ptr.astype(np.int64))
    return out


def _readonly(a: np.ndarray) -> np.ndarray:
    v = a.view()
    v.flags.writeable = False
    return v


def check_pointers(ptr: np.ndarray, name: str, length: int, end: int) -> None:
    """``ptr`` has ``length`` entries, starts at 0, never decreases and ends at ``end``."""
    if ptr.size != length:
        msg = f"{name} has {ptr.size} entries, expected {length}"
        raise FormatError(msg)
    if int(ptr[0]) != 0:
        msg = f"{name}[0] must be 0, got {int(ptr[0])}"
        raise FormatError(msg)
    steps = np.diff(ptr.astype(np.int64))
    if steps.size and int(steps.min()) < 0:
        i = int(np.argmax(steps < 0)) + 1
        msg = f"{name} decreases at entry {i}: {int(ptr[i - 1])} -> {int(ptr[i])}"
        raise FormatError(msg)
    if int(ptr[-1]) != end:
        msg = f"{name}[-1] = {int(ptr[-1])}, expected {end} (the length of the array it points into)"
        raise FormatError(msg)


def check_columns(
    col_idx: np.ndarray,
    cols: int,
    entry_rows: np.ndarray,
    rows: int,
    runs: np.ndarray,
    *,
    runs_are_rows: bool,
) -> None:
    """Column indices below ``cols``, ascending within each run (``runs[i]``: first entry of run i) and,
    where a row spans several runs, no column twice in a row."""
    if col_idx.size == 0:
        return
    if int(col_idx.max()) >= cols:
        k = int(np.argmax(col_idx >= cols))
        msg = f"col_idx[{k}] = {int(col_idx[k])} is out of range for {cols} columns"
        raise FormatError(msg)
    c = col_idx.astype(np.int64)
    inside = np.ones(c.size, dtype=bool)
    inside[runs[runs < c.size]] = False  # the first entry of a run has no predecessor in it
    bad = inside[1:] & (np.diff(c) <= 0)
    if bad.any():
        k = int(np.argmax(bad)) + 1
        msg = f"col_idx[{k}] = {int(c[k])} does not follow col_idx[{k - 1}] = {int(c[k - 1])} (ascending)"
        raise FormatError(msg)
    if runs_are_rows:
        return
    key = entry_rows.astype(np.int64) * cols + c
    if rows * cols <= (1 << 27):
        seen = np.zeros(rows * cols, dtype=bool)
        seen[key] = True
        dup = int(np.count_nonzero(seen)) != key.size
    else:
        dup = np.unique(key).size != key.size
    if dup:
        msg = "a column appears in two groups of one row"
        raise FormatError(msg)


def check_shape(shape: object) -> tuple[int, int]:
    if (
        not isinstance(shape, tuple)
        or len(shape) != 2
        or not all(isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d >= 0 for d in shape)
    ):
        msg = f"shape must be a tuple of two non-negative integers, got {shape!r}"
        raise FormatError(msg)
    return int(shape[0]), int(shape[1])


def _bits(a: np.ndarray) -> int:
    return 8 * a.dtype.itemsize


def _index_dtype(max_value: int, forced: object) -> np.dtype[Any]:
    if forced is None:
        return narrow_uint(max_value)
    dt: np.dtype[Any] = np.dtype(forced)  # type: ignore[call-overload]
    if dt not in _UINTS:
        msg = f"index_dtype must be uint8, uint16 or uint32, got {dt}"
        raise ConfigError(msg)
    if max_value > np.iinfo(dt).max:
        msg = f"index_dtype {dt} cannot hold {max_value}"
        raise ConfigError(msg)
    return dt


# --------------------------------------------------------------------------------------- the base


@dataclass(frozen=True)
class KernelSpec:
    """How a format calls its C++ kernel: ``factory(rows, cols, *arrays, *scalars)`` returns a
    :class:`nnsqueeze._core.Kernel` bound to the format's attributes named in ``arrays`` and
    ``scalars``.  Each scalar comes with its type in torch's operator schema ("float", "int" or
    "bool"); :mod:`.ops` generates the torch operators from this list."""

    factory: Callable[..., _core.Kernel]
    arrays: tuple[str, ...]
    scalars: tuple[tuple[str, str], ...] = ()

    def bind(
        self, shape: tuple[int, int], arrays: Mapping[str, np.ndarray], scalars: Mapping[str, Scalar]
    ) -> _core.Kernel:
        """The kernel of a (rows, cols) matrix over these arrays (read zero-copy; checked as read)."""
        try:
            return self.factory(
                *shape, *(arrays[n] for n in self.arrays), *(scalars[n] for n, _ in self.scalars)
            )
        except _core.CoreFormatError as exc:
            raise FormatError(str(exc)) from None


FORMATS: dict[str, type[Format]] = {}
"""Every format by name: the one registry (filled by :func:`register`)."""


def register(cls: type[_F]) -> type[_F]:
    """Class decorator: adds a format to :data:`FORMATS` under its ``name``."""
    if cls.name in FORMATS:
        msg = f"format {cls.name!r} is registered twice"
        raise ConfigError(msg)
    FORMATS[cls.name] = cls
    return cls


class Format(ABC):
    """A weight matrix in one storage format.  Subclasses hold their arrays as read-only attributes,
    declare how their C++ kernel is called (:class:`KernelSpec`; None for BLAS) and are added to
    :data:`FORMATS` by :func:`register`."""

    name: ClassVar[str]
    kernel_spec: ClassVar[KernelSpec | None] = None
    shape: tuple[int, int]

    @property
    def rows(self) -> int:
        return self.shape[0]

    @property
    def cols(self) -> int:
        return self.shape[1]

    @abstractmethod
    def arrays(self) -> dict[str, np.ndarray]:
        """The stored arrays by name (what :attr:`nbytes` counts)."""

    def scalars(self) -> dict[str, float]:
        """Stored scalars besides the arrays (4 bytes each)."""
        return {}

    def kernel_inputs(self) -> tuple[dict[str, np.ndarray], dict[str, Scalar]]:
        """The arrays and scalars the kernel reads (:attr:`kernel_spec`), by name."""
        spec = self.kernel_spec
        if spec is None:
            return {}, {}
        return {n: getattr(self, n) for n in spec.arrays}, {n: getattr(self, n) for n, _ in spec.scalars}

    @classmethod
    def from_kernel_inputs(
        cls: type[_F], shape: tuple[int, int], arrays: Mapping[str, np.ndarray], scalars: Mapping[str, Scalar]
    ) -> _F:
        """The format (checked) from what :meth:`kernel_inputs` returns."""
        return cls(shape, **arrays, **scalars)  # type: ignore[call-arg]

    @property
    def kernel(self) -> _core.Kernel:
        """The C++ kernel bound to this format's arrays (made once)."""
        bound: _core.Kernel | None = self.__dict__.get("_kernel")
        if bound is None:
            if self.kernel_spec is None:
                msg = f"{self.name} has no C++ kernel"
                raise ConfigError(msg)
            bound = self.kernel_spec.bind(self.shape, *self.kernel_inputs())
            self.__dict__["_kernel"] = bound
        return bound

    def with_arrays(self: _F, arrays: dict[str, np.ndarray]) -> _F:
        """A copy of this format whose arrays are ``arrays`` (same names, equal contents, e.g. views of
        torch buffers): no checks, so only pass arrays equal to :meth:`arrays`."""
        new = copy.copy(self)
        new.__dict__.pop("_kernel", None)  # bound to the old arrays
        own = self.arrays()
        for name, a in arrays.items():
            if name not in own or a.shape != own[name].shape or a.dtype != own[name].dtype:
                msg = f"{name}: expected {own.get(name)!r:.40}, got {a.dtype} {a.shape}"
                raise FormatError(msg)
            setattr(new, name, _readonly(a))
        return new

    @property
    def nbytes(self) -> int:
        """Exact storage in bytes: every array at its dtype, plus 4 bytes per stored scalar."""
        return sum(a.nbytes for a in self.arrays().values()) + 4 * len(self.scalars())

    def storage(self) -> dict[str, int]:
        """Bytes per stored array."""
        out = {k: int(a.nbytes) for k, a in self.arrays().items()}
        out.update({k: 4 for k in self.scalars()})
        return out

    @property
    @abstractmethod
    def num_values(self) -> int:
        """Distinct values the format stores (implicit ones included)."""

    @abstractmethod
    def to_dense(self) -> np.ndarray:
        """The matrix as a float32 array (rows, cols)."""

    @abstractmethod
    def product_cost(self, *, bias: bool = False) -> ProductCost:
        """Accesses and arithmetic of one matrix-vector product (the talk's counting convention)."""

    def op_counts(self, batch: int = 1, *, bias: bool = False) -> OpCounts:
        """Loads, additions, multiplications and writes of ``batch`` matrix-vector products."""
        return self.product_cost(bias=bias).counts * batch

    def energy(self, batch: int = 1, *, bias: bool = False) -> Energy:
        """Energy (45 nm model) of ``batch`` matrix-vector products."""
        return self.product_cost(bias=bias).energy * batch

    def matmul(self, x: np.ndarray, bias: np.ndarray | None = None, *, threads: int = 1) -> np.ndarray:
        """``x @ W.T + bias`` for x of shape (cols,) or (batch, cols), float32."""
        if type(x) is np.ndarray and x.dtype == np.float32 and x.ndim == 2 and x.flags.c_contiguous:
            x2, vector = x, False  # the common case, checked cheaply
            if x.shape[1] != self.cols:
                _input(x, self.cols)  # raises
        else:
            x2, vector = _input(x, self.cols)
        b = None if bias is None else _bias(bias, self.rows)
        if threads < 1:
            msg = f"threads must be >= 1, got {threads}"
            raise ConfigError(msg)
        out = np.empty((x2.shape[0], self.rows), dtype=np.float32)
        self._matmul(x2, out, b, threads)
        return out[0] if vector else out

    def matvec(self, x: np.ndarray, bias: np.ndarray | None = None) -> np.ndarray:
        """``W @ x + bias`` for one vector."""
        if np.ndim(x) != 1:
            msg = f"matvec needs a vector, got shape {np.shape(x)}"
            raise TensorError(msg)
        return self.matmul(x, bias)

    def _matmul(self, x: np.ndarray, out: np.ndarray, bias: np.ndarray | None, threads: int) -> None:
        try:
            self.kernel.matmul(x, out, bias, threads=threads)
        except _core.CoreFormatError as exc:
            msg = f"{self.name}: {exc}"
            raise FormatError(msg) from None

    @classmethod
    @abstractmethod
    def from_codes(cls: type[_F], codes: ValueCodes, **options: Any) -> _F:
        """Builds the format from a value coding (see :mod:`nnsqueeze.sparse._codes`)."""

    @classmethod
    def from_dense(cls: type[_F], w: object, **options: Any) -> _F:
        """Builds the format from a dense 2-D float matrix (exactly)."""
        return cls.from_codes(codes_from_dense(w), **options)

    @classmethod
    def from_levels(cls: type[_F], levels: object, step: float, offset: int = 0, **options: Any) -> _F:
        """Builds the format from integer quantization levels: ``W = float32((levels + offset) * step)``,
        the codec's reconstruction, without forming a float matrix."""
        return cls.from_codes(codes_from_levels(levels, step, offset), **options)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(shape={self.shape}, values={self.num_values}, nbytes={self.nbytes})"


def _input(x: object, cols: int) -> tuple[np.ndarray, bool]:
    if not isinstance(x, np.ndarray):
        msg = f"x must be a NumPy array, got {type(x).__name__}"
        raise TensorError(msg)
    if x.dtype != np.float32:
        msg = f"x must be float32, got {x.dtype} (convert it with x.astype(np.float32))"
        raise TensorError(msg)
    if x.ndim not in (1, 2) or x.shape[-1] != cols:
        msg = f"x must have shape ({cols},) or (batch, {cols}), got {x.shape}"
        raise TensorError(msg)
    vector = x.ndim == 1
    return np.ascontiguousarray(x.reshape(1, cols) if vector else x), vector


def _bias(bias: object, rows: int) -> np.ndarray:
    if not isinstance(bias, np.ndarray) or bias.dtype != np.float32 or bias.shape != (rows,):
        got = f"{bias.dtype} {bias.shape}" if isinstance(bias, np.ndarray) else type(bias).__name__
        msg = f"bias must be a float32 array of shape ({rows},), got {got}"
        raise TensorError(msg)
    return np.ascontiguousarray(bias)


# ------------------------------------------------------------------------------------------- dense


@register
class Dense(Format):
    """The matrix as float32, multiplied by BLAS (NumPy here; torch.nn.functional.linear in modules)."""

    name = "dense"

    def __init__(self, weight: np.ndarray) -> None:
        w = check_matrix(weight)
        self.weight = _readonly(np.ascontiguousarray(w))
        self.shape = (int(w.shape[0]), int(w.shape[1]))

    @classmethod
    def from_codes(cls, codes: ValueCodes, **options: Any) -> Dense:
        _no_options(options)
        return cls(codes.values[codes.codes] if codes.values.size else np.zeros(codes.shape, np.float32))

    @classmethod
    def from_dense(cls, w: object, **options: Any) -> Dense:
        _no_options(options)
        return cls(check_matrix(w))

    def arrays(self) -> dict[str, np.ndarray]:
        return {"weight": self.weight}

    @property
    def num_values(self) -> int:
        return int(np.unique(self.weight).size)

    def to_dense(self) -> np.ndarray:
        return np.array(self.weight)

    def product_cost(self, *, bias: bool = False) -> ProductCost:
        m, n = self.shape
        x, y = activation_accesses(m, n, m * n)
        acc = [Access("weight", m * n, 32, self.weight.nbytes), x, y]
        adds = m * max(n - 1, 0)
        if bias:
            acc.append(Access("bias", m, 32, 4 * m))
            adds += m
        return ProductCost(tuple(acc), adds, m * n)

    def _matmul(self, x: np.ndarray, out: np.ndarray, bias: np.ndarray | None, threads: int) -> None:
        np.matmul(x, self.weight.T, out=out)
        if bias is not None:
            out += bias


def _no_options(options: dict[str, Any]) -> None:
    if options:
        msg = f"unexpected options: {', '.join(options)}"
        raise ConfigError(msg)


# --------------------------------------------------------------------------------------------- CSR


@register
class CSR(Format):
    """Compressed sparse row: ``row_ptr`` (rows + 1) into ``col_idx`` and ``values`` (one per nonzero).

    Columns ascend within a row.  Zeros are implicit; every other value is stored as float32."""

    name = "csr"
    kernel_spec = KernelSpec(_core.csr_kernel, ("row_ptr", "col_idx", "values"))

    def __init__(
        self, shape: tuple[int, int], row_ptr: np.ndarray, col_idx: np.ndarray, values: np.ndarray
    ) -> None:
        self.shape = check_shape(shape)
        m, n = self.shape
        self.row_ptr = uint_array(row_ptr, "row_ptr")
        self.col_idx = uint_array(col_idx, "col_idx")
        check_pointers(self.row_ptr, "row_ptr", m + 1, self.col_idx.size)
        self.values = float_array(values, "values", self.col_idx.size)
        counts = _steps(self.row_ptr)
        check_columns(
            self.col_idx,
            n,
            np.repeat(np.arange(m), counts),
            m,
            self.row_ptr[:-1].astype(np.int64),
            runs_are_rows=True,
        )

    @classmethod
    def from_codes(cls, codes: ValueCodes, *, index_dtype: object = None, **options: Any) -> CSR:
        _no_options(options)
        m, n = codes.shape
        zero = np.searchsorted(codes.values, 0.0)
        if zero < codes.values.size and codes.values[zero] == 0.0:
            rows, cols = np.nonzero(codes.codes != zero)
        else:
            rows, cols = np.nonzero(np.ones(codes.shape, dtype=bool))
        values = codes.values[codes.codes[rows, cols]]
        nnz = rows.size
        row_ptr = np.zeros(m + 1, dtype=np.int64)
        np.cumsum(np.bincount(rows, minlength=m), out=row_ptr[1:])
        return cls(
            codes.shape,
            row_ptr.astype(_index_dtype(nnz, index_dtype)),
            cols.astype(_index_dtype(max(n - 1, 0), index_dtype)),
            values.astype(np.float32),
        )

    @classmethod
    def from_dense(cls, w: object, *, index_dtype: object = None, **options: Any) -> CSR:
        _no_options(options)
        a = check_matrix(w)
        m, n = a.shape
        rows, cols = np.nonzero(a)
        row_ptr = np.zeros(m + 1, dtype=np.int64)
        np.cumsum(np.bincount(rows, minlength=m), out=row_ptr[1:])
        return cls(
            (m, n),
            row_ptr.astype(_index_dtype(rows.size, index_dtype)),
            cols.astype(_index_dtype(max(n - 1, 0), index_dtype)),
            a[rows, cols],
        )

    @property
    def nnz(self) -> int:
        return int(self.col_idx.size)

    def arrays(self) -> dict[str, np.ndarray]:
        return {"row_ptr": self.row_ptr, "col_idx": self.col_idx, "values": self.values}

    @property
    def num_values(self) -> int:
        implicit = 1 if self.nnz < self.rows * self.cols else 0
        return int(np.unique(self.values).size) + implicit

    def to_dense(self) -> np.ndarray:
        w = np.zeros(self.shape, dtype=np.float32)
        rows = np.repeat(np.arange(self.rows), _steps(self.row_ptr))
        w[rows, self.col_idx] = self.values
        return w

    def product_cost(self, *, bias: bool = False) -> ProductCost:
        m, n = self.shape
        nnz = self.nnz
        x, y = activation_accesses(m, n, nnz)
        acc = [
            Access("row_ptr", 2 * m, _bits(self.row_ptr), self.row_ptr.nbytes),
            Access("col_idx", nnz, _bits(self.col_idx), self.col_idx.nbytes),
            Access("values", nnz, 32, self.values.nbytes),
            x,
            y,
        ]
        adds = row_adds(_steps(self.row_ptr))
        if bias:
            acc.append(Access("bias", m, 32, 4 * m))
            adds += m
        return ProductCost(tuple(acc), adds, nnz)


# ------------------------------------------------------------------------------------- CER / CSER


class _Grouped:
    """Entries other than the most frequent value, sorted by (row, frequency rank, column)."""

    def __init__(self, codes: ValueCodes) -> None:
        order = codes.rank_order()
        k = order.size
        rank_of_code = np.empty(k, dtype=narrow_uint(max(k - 1, 0)))
        rank_of_code[order] = np.arange(k)
        # an empty matrix still has its implicit value
        self.omega = codes.values[order].astype(np.float32) if k else np.zeros(1, np.float32)
        m, n = codes.shape
        if k == 0 or m * n == 0:
            self.rows = np.zeros(0, np.int64)
            self.cols = np.zeros(0, np.int64)
            self.ranks = np.zeros(0, np.int64)
        else:
            rank = rank_of_code[codes.codes]
            perm = np.argsort(rank, axis=1, kind="stable")  # radix sort for 8/16-bit ranks
            srank = np.take_along_axis(rank, perm, axis=1)
            keep = srank > 0
            self.rows = np.nonzero(keep)[0]
            self.cols = perm[keep]
            self.ranks = srank[keep].astype(np.int64)
        nnz = self.rows.size
        first = np.ones(nnz, dtype=bool)
        if nnz:
            first[1:] = (self.rows[1:] != self.rows[:-1]) | (self.ranks[1:] != self.ranks[:-1])
        self.group_start = np.flatnonzero(first)
        self.group_row = self.rows[self.group_start]
        self.group_rank = self.ranks[self.group_start]
        self.group_size = np.diff(np.append(self.group_start, nnz))
        self.shape = codes.shape

    @property
    def nnz(self) -> int:
        return int(self.rows.size)


def _row_pointer(group_row: np.ndarray, rows: int) -> np.ndarray:
    ptr = np.zeros(rows + 1, dtype=np.int64)
    np.cumsum(np.bincount(group_row, minlength=rows), out=ptr[1:])
    return ptr


def _entry_rows(row_ptr: np.ndarray, group_ptr: np.ndarray) -> np.ndarray:
    group_rows = np.repeat(np.arange(row_ptr.size - 1), _steps(row_ptr))
    return np.repeat(group_rows, _steps(group_ptr))


def _check_grouped(
    shape: tuple[int, int], row_ptr: np.ndarray, group_ptr: np.ndarray, col_idx: np.ndarray
) -> None:
    m, n = shape
    if group_ptr.size == 0:
        msg = "group_ptr is empty; it needs at least one entry"
        raise FormatError(msg)
    if group_ptr.dtype != row_ptr.dtype:
        msg = f"group_ptr must have the dtype of row_ptr ({row_ptr.dtype}), got {group_ptr.dtype}"
        raise FormatError(msg)
    check_pointers(row_ptr, "row_ptr", m + 1, group_ptr.size - 1)
    check_pointers(group_ptr, "group_ptr", group_ptr.size, col_idx.size)
    check_columns(
        col_idx, n, _entry_rows(row_ptr, group_ptr), m, group_ptr[:-1].astype(np.int64), runs_are_rows=False
    )


class _GroupedFormat(Format):
    """What CER and CSER share: entries stored as groups of columns, ``group_ptr`` delimiting them."""

    row_ptr: np.ndarray
    col_idx: np.ndarray
    group_ptr: np.ndarray

    @property
    def nnz(self) -> int:
        return int(self.col_idx.size)

    @property
    def groups(self) -> int:
        return int(self.group_ptr.size - 1)

    @abstractmethod
    def _implicit_value(self) -> float:
        """The value every entry outside the groups holds (omega0)."""

    @abstractmethod
    def _value_accesses(self, implicit: bool) -> list[Access]:
        """The loads of the groups' values (``implicit``: omega0 is nonzero)."""

    def product_cost(self, *, bias: bool = False) -> ProductCost:
        m, n = self.shape
        nnz, groups = self.nnz, self.groups
        omega0 = self._implicit_value() != 0.0
        x, y = activation_accesses(m, n, nnz + (n if omega0 else 0))
        acc = [
            Access("row_ptr", 2 * m, _bits(self.row_ptr), self.row_ptr.nbytes),
            Access("group_ptr", groups + m, _bits(self.group_ptr), self.group_ptr.nbytes),
            *self._value_accesses(omega0),
            Access("col_idx", nnz, _bits(self.col_idx), self.col_idx.nbytes),
            x,
            y,
        ]
        adds = row_adds(_row_nnz(self.row_ptr, self.group_ptr))
        mults = groups
        if omega0:  # omega0 * sum(x): the sum once, then one multiply-add per row
            adds += max(n - 1, 0) + m
            mults += m
        if bias:
            acc.append(Access("bias", m, 32, 4 * m))
            adds += m
        return ProductCost(tuple(acc), adds, mults)


@register
class CER(_GroupedFormat):
    """Compressed Entropy Row.  ``omega`` lists the distinct values by decreasing frequency; omega[0]
    is implicit.  Row r owns groups ``row_ptr[r]:row_ptr[r+1]``; its t-th group holds the columns
    ``col_idx[group_ptr[g]:group_ptr[g+1]]`` of value ``omega[t + 1]`` (empty groups pad values a row
    lacks).  Rows are computed as ``sum_t omega[t + 1] * sum(x[group])`` (+ ``omega[0] * sum(x)``)."""

    name = "cer"
    kernel_spec = KernelSpec(_core.cer_kernel, ("row_ptr", "group_ptr", "col_idx", "omega"))
    # Refuse to build CER when padding would multiply the groups beyond this factor of nnz + rows.
    MAX_PADDING = 16

    def __init__(
        self,
        shape: tuple[int, int],
        omega: np.ndarray,
        row_ptr: np.ndarray,
        group_ptr: np.ndarray,
        col_idx: np.ndarray,
    ) -> None:
        self.shape = check_shape(shape)
        self.omega = float_array(omega, "omega")
        if self.omega.size == 0:
            msg = "omega is empty: it must hold at least the implicit value omega[0]"
            raise FormatError(msg)
        self.row_ptr = uint_array(row_ptr, "row_ptr")
        self.group_ptr = uint_array(group_ptr, "group_ptr")
        self.col_idx = uint_array(col_idx, "col_idx")
        _check_grouped(self.shape, self.row_ptr, self.group_ptr, self.col_idx)
        per_row = _steps(self.row_ptr)
        if per_row.size and int(per_row.max()) >= self.omega.size:
            r = int(np.argmax(per_row))
            explicit = self.omega.size - 1
            msg = f"row {r} has {int(per_row[r])} groups but omega holds only {explicit} explicit values"
            raise FormatError(msg)

    @classmethod
    def from_codes(cls, codes: ValueCodes, *, index_dtype: object = None, **options: Any) -> CER:
        _no_options(options)
        g = _Grouped(codes)
        m, n = codes.shape
        top = np.zeros(m, dtype=np.int64)  # highest rank per row = its number of (padded) groups
        if g.group_row.size:
            last = _row_pointer(g.group_row, m)[1:] - 1
            has = np.diff(_row_pointer(g.group_row, m)) > 0
            top[has] = g.group_rank[last[has]]
        total = int(top.sum())
        if total > cls.MAX_PADDING * (g.nnz + m) + 4096:
            msg = (
                f"CER needs {total} groups for {g.nnz} entries ({codes.num_values} distinct values): "
                "too many values for CER; use CSER"
            )
            raise TensorError(msg)
        row_ptr = np.zeros(m + 1, dtype=np.int64)
        np.cumsum(top, out=row_ptr[1:])
        sizes = np.zeros(total, dtype=np.int64)
        sizes[row_ptr[g.group_row] + g.group_rank - 1] = g.group_size
        group_ptr = np.zeros(total + 1, dtype=np.int64)
        np.cumsum(sizes, out=group_ptr[1:])
        ptr_dt = _index_dtype(max(g.nnz, total), index_dtype)
        return cls(
            codes.shape,
            g.omega,
            row_ptr.astype(ptr_dt),
            group_ptr.astype(ptr_dt),
            g.cols.astype(_index_dtype(max(n - 1, 0), index_dtype)),
        )

    def arrays(self) -> dict[str, np.ndarray]:
        return {
            "omega": self.omega,
            "row_ptr": self.row_ptr,
            "group_ptr": self.group_ptr,
            "col_idx": self.col_idx,
        }

    @property
    def num_values(self) -> int:
        return int(self.omega.size)

    def to_dense(self) -> np.ndarray:
        w = np.full(self.shape, self.omega[0], dtype=np.float32)
        per_row = _steps(self.row_ptr)
        # rank of each group within its row: position after the row's first group
        first = np.repeat(self.row_ptr[:-1].astype(np.int64), per_row)
        t = np.arange(self.groups) - first
        group_value = self.omega[t + 1]
        sizes = _steps(self.group_ptr)
        w[_entry_rows(self.row_ptr, self.group_ptr), self.col_idx] = np.repeat(group_value, sizes)
        return w

    def _implicit_value(self) -> float:
        return float(self.omega[0])

    def _value_accesses(self, implicit: bool) -> list[Access]:
        m = self.shape[0]
        return [Access("omega", self.groups + (m if implicit else 0), 32, self.omega.nbytes)]


def _row_nnz(row_ptr: np.ndarray, group_ptr: np.ndarray) -> np.ndarray:
    return np.diff(group_ptr.astype(np.int64)[row_ptr.astype(np.int64)])


@register
class CSER(_GroupedFormat):
    """Compressed Shared Elements Row: as CER, but each group names its value, ``values[value_idx[g]]``,
    and only non-empty groups are stored.  ``omega0`` (usually 0) is the implicit value; ``values``
    are the explicit ones by decreasing frequency."""

    name = "cser"
    kernel_spec = KernelSpec(
        _core.cser_kernel,
        ("row_ptr", "group_ptr", "value_idx", "col_idx", "values"),
        (("omega0", "float"),),
    )

    def __init__(
        self,
        shape: tuple[int, int],
        values: np.ndarray,
        row_ptr: np.ndarray,
        group_ptr: np.ndarray,
        value_idx: np.ndarray,
        col_idx: np.ndarray,
        omega0: float = 0.0,
    ) -> None:
        self.shape = check_shape(shape)
        self.values = float_array(values, "values")
        self.row_ptr = uint_array(row_ptr, "row_ptr")
        self.group_ptr = uint_array(group_ptr, "group_ptr")
        self.value_idx = uint_array(value_idx, "value_idx", _UINTS[:2])
        self.col_idx = uint_array(col_idx, "col_idx")
        if not np.isfinite(omega0):
            msg = f"omega0 must be finite, got {omega0}"
            raise FormatError(msg)
        self.omega0 = float(np.float32(omega0))
        _check_grouped(self.shape, self.row_ptr, self.group_ptr, self.col_idx)
        if self.value_idx.size != self.group_ptr.size - 1:
            groups = self.group_ptr.size - 1
            msg = f"value_idx has {self.value_idx.size} entries, expected {groups} (one per group)"
            raise FormatError(msg)
        if self.value_idx.size and int(self.value_idx.max()) >= self.values.size:
            g = int(np.argmax(self.value_idx >= self.values.size))
            msg = f"value_idx[{g}] = {int(self.value_idx[g])} is out of range for {self.values.size} values"
            raise FormatError(msg)

    @classmethod
    def from_codes(cls, codes: ValueCodes, *, index_dtype: object = None, **options: Any) -> CSER:
        _no_options(options)
        g = _Grouped(codes)
        m, n = codes.shape
        explicit = max(g.omega.size - 1, 0)
        if explicit > 1 << 16:
            msg = f"CSER holds at most 65536 explicit values, got {explicit}"
            raise TensorError(msg)
        ptr_dt = _index_dtype(g.nnz, index_dtype)
        return cls(
            codes.shape,
            g.omega[1:],
            _row_pointer(g.group_row, m).astype(ptr_dt),
            np.append(g.group_start, g.nnz).astype(ptr_dt),
            (g.group_rank - 1).astype(narrow_uint(max(explicit - 1, 0))),
            g.cols.astype(_index_dtype(max(n - 1, 0), index_dtype)),
            float(g.omega[0]) if g.omega.size else 0.0,
        )

    def arrays(self) -> dict[str, np.ndarray]:
        return {
            "values": self.values,
            "row_ptr": self.row_ptr,
            "group_ptr": self.group_ptr,
            "value_idx": self.value_idx,
            "col_idx": self.col_idx,
        }

    def scalars(self) -> dict[str, float]:
        return {"omega0": self.omega0} if self.omega0 != 0.0 else {}

    @property
    def num_values(self) -> int:
        return int(self.values.size) + 1

    def to_dense(self) -> np.ndarray:
        w = np.full(self.shape, self.omega0, dtype=np.float32)
        sizes = _steps(self.group_ptr)
        w[_entry_rows(self.row_ptr, self.group_ptr), self.col_idx] = np.repeat(
            self.values[self.value_idx], sizes
        )
        return w

    def _implicit_value(self) -> float:
        return self.omega0

    def _value_accesses(self, implicit: bool) -> list[Access]:
        return [
            Access("value_idx", self.groups, _bits(self.value_idx), self.value_idx.nbytes),
            Access("values", self.groups, 32, self.values.nbytes),
        ]
