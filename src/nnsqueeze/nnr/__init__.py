"""MPEG NNR (ISO/IEC 15938-17) bitstreams, as NNCodec 2.1.3 writes them: read them into tensors, write them.

>>> import numpy as np
>>> from nnsqueeze import nnr
>>> stream = nnr.encode({"fc.weight": np.ones((48, 64), dtype=np.float32)}, qp=-28)
>>> tensors, info = nnr.read(stream)
>>> tensors["fc.weight"].shape, info.tensors[0].dependent, info.tensors[0].qp
((48, 64), True, -28)

``docs/nnr.md`` lists the tools covered and those refused (with the error raised).
"""

from __future__ import annotations

from nnsqueeze.nnr.decoder import StreamInfo, TensorInfo, UpdateChain, decode, looks_like_nnr, read, step_of
from nnsqueeze.nnr.encoder import encode

__all__ = ["StreamInfo", "TensorInfo", "UpdateChain", "decode", "encode", "looks_like_nnr", "read", "step_of"]
