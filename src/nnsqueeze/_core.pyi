"""nnsqueeze C++ core (private; use the nnsqueeze package instead)"""

from typing import Annotated

import numpy
from numpy.typing import NDArray


class CoreBitstreamError(ValueError):
    pass

MAX_GTX: int = 32

MAX_ABS_LEVEL: int = 1073741823

MAX_SHIFT: int = 14

def max_elements_for_payload(payload_bytes: int) -> int: ...

def encode_levels(levels: Annotated[NDArray[numpy.int32], dict(shape=(None,), order='C', device='cpu', writable=False)], rows: int, cols: int, num_gtx: int, fast_shift: int, slow_shift: int) -> bytes: ...

def decode_levels(payload: Annotated[NDArray[numpy.uint8], dict(shape=(None,), order='C', device='cpu', writable=False)], rows: int, cols: int, num_gtx: int, fast_shift: int, slow_shift: int, out: Annotated[NDArray[numpy.int32], dict(shape=(None,), order='C', device='cpu')]) -> None: ...

def decode_dequantize(payload: Annotated[NDArray[numpy.uint8], dict(shape=(None,), order='C', device='cpu', writable=False)], rows: int, cols: int, num_gtx: int, fast_shift: int, slow_shift: int, offset: int, step: float, out: Annotated[NDArray[numpy.float32], dict(shape=(None,), order='C', device='cpu')]) -> None: ...

def decode_dependent(payload: Annotated[NDArray[numpy.uint8], dict(shape=(None,), order='C', device='cpu', writable=False)], rows: int, cols: int, num_gtx: int, fast_shift: int, slow_shift: int, step: float, out: Annotated[NDArray[numpy.float32], dict(shape=(None,), order='C', device='cpu')]) -> None: ...

def encode_bytes(data: Annotated[NDArray[numpy.uint8], dict(shape=(None,), order='C', device='cpu', writable=False)], itemsize: int) -> bytes: ...

def decode_bytes(payload: Annotated[NDArray[numpy.uint8], dict(shape=(None,), order='C', device='cpu', writable=False)], itemsize: int, out: Annotated[NDArray[numpy.uint8], dict(shape=(None,), order='C', device='cpu')]) -> None: ...

def quantize_uniform(w: Annotated[NDArray[numpy.float32], dict(shape=(None,), order='C', device='cpu', writable=False)], step: float, max_abs_level: int, out: Annotated[NDArray[numpy.int32], dict(shape=(None,), order='C', device='cpu')]) -> int: ...

def dequantize_uniform(levels: Annotated[NDArray[numpy.int32], dict(shape=(None,), order='C', device='cpu', writable=False)], step: float, out: Annotated[NDArray[numpy.float32], dict(shape=(None,), order='C', device='cpu')]) -> None: ...

def encode_rdoq(w: Annotated[NDArray[numpy.float32], dict(shape=(None,), order='C', device='cpu', writable=False)], importance: Annotated[NDArray[numpy.float32], dict(shape=(None,), order='C', device='cpu', writable=False)] | None, rows: int, cols: int, step: float, lambda_: float, num_gtx: int, fast_shift: int, slow_shift: int, levels: Annotated[NDArray[numpy.int32], dict(shape=(None,), order='C', device='cpu')] | None) -> tuple[bytes, float, float]: ...

def encode_trellis(w: Annotated[NDArray[numpy.float32], dict(shape=(None,), order='C', device='cpu', writable=False)], importance: Annotated[NDArray[numpy.float32], dict(shape=(None,), order='C', device='cpu', writable=False)] | None, rows: int, cols: int, step: float, lambda_: float, num_gtx: int, fast_shift: int, slow_shift: int, levels: Annotated[NDArray[numpy.int32], dict(shape=(None,), order='C', device='cpu')] | None) -> tuple[bytes, float, float]: ...
