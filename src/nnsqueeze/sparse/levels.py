"""Quantization levels straight from a ``.nnsq`` file, for building formats without a float matrix."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from nnsqueeze.codec import NnsqFile
from nnsqueeze.coding import methods
from nnsqueeze.coding.container import Method
from nnsqueeze.errors import BitstreamError, ConfigError, TensorError


class Levels(NamedTuple):
    """A tensor's integer levels as a matrix (first dimension x the rest): value = (level + offset) * step."""

    levels: np.ndarray
    step: float
    offset: int


def read_levels(source: NnsqFile, name: str) -> Levels | None:
    """The decoded levels of a uniformly quantized tensor of ``source``, or None when the tensor is coded
    otherwise (losslessly, as integers, or with dependent quantization, whose values are not
    ``level * step``).  Raises KeyError for an unknown name, BitstreamError for a corrupt record."""
    header, payload = source.read_record(name)
    p = header.levels
    method = methods.METHODS.get(header.method)
    uniform = header.method in (Method.UNIFORM, Method.TOKENS)
    if not uniform or p is None or not isinstance(method, methods.LevelMethod):
        return None
    try:
        levels = method.read_levels(header, payload)
    except (ConfigError, TensorError, ValueError) as exc:
        msg = f"tensor {name!r}: {exc}"
        raise BitstreamError(msg) from None
    shape = header.shape
    rows = shape[0] if shape else 1
    cols = int(np.prod(shape[1:], dtype=np.int64))  # 1 for vectors and scalars
    return Levels(levels.reshape(rows, cols), float(p.step), int(p.offset))
