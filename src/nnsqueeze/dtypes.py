"""Element types nnsqueeze stores, with their stable codes in the ``.nnsq`` format.

Arrays travel through nnsqueeze as NumPy arrays tagged with a dtype name.  bfloat16, which
NumPy lacks, travels as its raw ``uint16`` bit patterns tagged ``"bfloat16"``.
"""

from __future__ import annotations

import numpy as np

from nnsqueeze.errors import ConfigError, TensorError

# name -> (format code, numpy dtype that holds the data).  Codes are frozen by the format.
_DTYPES: dict[str, tuple[int, np.dtype[np.generic]]] = {
    "float32": (1, np.dtype("<f4")),
    "float16": (2, np.dtype("<f2")),
    "bfloat16": (3, np.dtype("<u2")),
    "float64": (4, np.dtype("<f8")),
    "int8": (5, np.dtype("i1")),
    "int16": (6, np.dtype("<i2")),
    "int32": (7, np.dtype("<i4")),
    "int64": (8, np.dtype("<i8")),
    "uint8": (9, np.dtype("u1")),
    "uint16": (10, np.dtype("<u2")),
    "uint32": (11, np.dtype("<u4")),
    "uint64": (12, np.dtype("<u8")),
    "bool": (13, np.dtype("?")),
}
_BY_CODE = {code: name for name, (code, _) in _DTYPES.items()}

FLOAT_DTYPES = frozenset({"float32", "float16", "bfloat16", "float64"})
DTYPE_NAMES = tuple(_DTYPES)


def dtype_code(name: str) -> int:
    """Format code of a dtype name."""
    try:
        return _DTYPES[name][0]
    except KeyError:
        msg = f"unsupported dtype {name!r}; supported: {', '.join(_DTYPES)}"
        raise TensorError(msg) from None


def dtype_from_code(code: int) -> str:
    """Dtype name of a format code; raises ``KeyError`` for unknown codes."""
    return _BY_CODE[code]


def storage_dtype(name: str) -> np.dtype[np.generic]:
    """The NumPy dtype whose buffer holds elements of ``name``."""
    dtype_code(name)
    return _DTYPES[name][1]


def dtype_name_of(array: np.ndarray) -> str:
    """The dtype name of a NumPy array (never ``"bfloat16"``: NumPy has no such type)."""
    kind = array.dtype
    for name, (_, dt) in _DTYPES.items():
        if name != "bfloat16" and kind == dt:
            return name
    msg = f"unsupported array dtype {kind}; supported: {', '.join(n for n in _DTYPES if n != 'bfloat16')}"
    raise TensorError(msg)


def to_float32(array: np.ndarray, name: str) -> np.ndarray:
    """Float values of a tensor as float32 (bfloat16 bits are widened exactly)."""
    if name == "bfloat16":
        return (array.astype(np.uint32) << 16).view(np.float32)
    return np.asarray(array, dtype=np.float32)


def from_float32(values: np.ndarray, name: str) -> np.ndarray:
    """Convert float32 values to the storage of float dtype ``name`` (bfloat16: round to nearest even)."""
    values = np.asarray(values, dtype=np.float32)
    if name == "bfloat16":
        bits = values.reshape(-1).view(np.uint32)
        rounding = ((bits >> 16) & 1) + np.uint32(0x7FFF)
        return ((bits + rounding) >> 16).astype(np.uint16).reshape(values.shape)
    if name == "float16":
        # A reconstruction may land just past float16's range: keep the nearest finite value.  (np.clip
        # of a 0-d array gives a scalar: asarray keeps a scalar tensor an array.)
        values = np.asarray(np.clip(values, -65504.0, 65504.0))
    return values.astype(storage_dtype(name), copy=False)  # float32 stays as decoded, no copy


def little_endian_bytes(array: np.ndarray) -> np.ndarray:
    """The elements' little-endian bytes as a flat uint8 array (the byte order of every coder)."""
    flat = np.ascontiguousarray(array).reshape(-1)
    if flat.dtype.itemsize not in (1, 2, 4, 8):
        msg = f"cannot code elements of {flat.dtype.itemsize} bytes"
        raise ConfigError(msg)
    if flat.dtype.byteorder == ">":
        flat = flat.astype(flat.dtype.newbyteorder("<"))
    return flat.view(np.uint8)
