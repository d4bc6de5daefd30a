"""MPEG NNR (ISO/IEC 15938-17) bitstreams, as NNCodec 2.1.3 writes them: read them into tensors, write them.

>>> from nnsqueeze import nnr
>>> tensors, info = nnr.read(open("tests/golden/nnr/dq_qp-28.nnc", "rb").read())
>>> tensors["fc.weight"].shape, info.tensors[0].dependent
((48, 64), True)

``docs/nnr.md`` lists the tools covered and those refused (with the error raised).
"""

from __future__ import annotations

from nnsqueeze.nnr.decoder import StreamInfo, TensorInfo, decode, looks_like_nnr, read, step_of
from nnsqueeze.nnr.encoder import encode

__all__ = ["StreamInfo", "TensorInfo", "decode", "encode", "looks_like_nnr", "read", "step_of"]
