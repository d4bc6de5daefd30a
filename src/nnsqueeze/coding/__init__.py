"""Entropy coding: the CABAC level coder, the lossless byte coder and the ``.nnsq`` container."""

from nnsqueeze.coding.cabac import (
    Adaptation,
    adaptation_for_size,
    decode_bytes,
    decode_levels,
    encode_bytes,
    encode_levels,
)

__all__ = [
    "Adaptation",
    "adaptation_for_size",
    "decode_bytes",
    "decode_levels",
    "encode_bytes",
    "encode_levels",
]
