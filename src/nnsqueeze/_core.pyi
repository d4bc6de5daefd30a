"""nnsqueeze C++ core (private; use the nnsqueeze package instead)"""

from collections.abc import Sequence
from typing import Annotated

import numpy
from numpy.typing import NDArray


class CoreBitstreamError(ValueError):
    pass

MAX_GTX: int = 32

MAX_ABS_LEVEL: int = 1073741823

MAX_SHIFT: int = 14

MAX_HINT_CLASSES: int = 32

def max_elements_for_payload(payload_bytes: int) -> int: ...

def encode_levels(levels: Annotated[NDArray[numpy.int32], dict(shape=(None,), order='C', device='cpu', writable=False)], rows: int, cols: int, num_gtx: int, fast_shift: int, slow_shift: int) -> bytes: ...

def decode_levels(payload: Annotated[NDArray[numpy.uint8], dict(shape=(None,), order='C', device='cpu', writable=False)], rows: int, cols: int, num_gtx: int, fast_shift: int, slow_shift: int, out: Annotated[NDArray[numpy.int32], dict(shape=(None,), order='C', device='cpu')]) -> None: ...

def encode_levels_hinted(levels: Annotated[NDArray[numpy.int32], dict(shape=(None,), order='C', device='cpu', writable=False)], rows: int, cols: int, num_gtx: int, fast_shift: int, slow_shift: int, hints: Annotated[NDArray[numpy.uint8], dict(shape=(None,), order='C', device='cpu', writable=False)], hint_classes: int) -> bytes: ...

def decode_levels_hinted(payload: Annotated[NDArray[numpy.uint8], dict(shape=(None,), order='C', device='cpu', writable=False)], rows: int, cols: int, num_gtx: int, fast_shift: int, slow_shift: int, hints: Annotated[NDArray[numpy.uint8], dict(shape=(None,), order='C', device='cpu', writable=False)], hint_classes: int, out: Annotated[NDArray[numpy.int32], dict(shape=(None,), order='C', device='cpu')]) -> None: ...

def decode_dequantize(payload: Annotated[NDArray[numpy.uint8], dict(shape=(None,), order='C', device='cpu', writable=False)], rows: int, cols: int, num_gtx: int, fast_shift: int, slow_shift: int, offset: int, step: float, out: Annotated[NDArray[numpy.float32], dict(shape=(None,), order='C', device='cpu')]) -> None: ...

def decode_dependent(payload: Annotated[NDArray[numpy.uint8], dict(shape=(None,), order='C', device='cpu', writable=False)], rows: int, cols: int, num_gtx: int, fast_shift: int, slow_shift: int, step: float, out: Annotated[NDArray[numpy.float32], dict(shape=(None,), order='C', device='cpu')]) -> None: ...

TOKEN_CLASSES: int = 20

def max_elements_for_token_payload(payload_bytes: int) -> int: ...

def encode_tokens(levels: Annotated[NDArray[numpy.int32], dict(shape=(None,), order='C', device='cpu', writable=False)], rows: int, cols: int) -> bytes: ...

def decode_tokens(payload: Annotated[NDArray[numpy.uint8], dict(shape=(None,), order='C', device='cpu', writable=False)], rows: int, cols: int, out: Annotated[NDArray[numpy.int32], dict(shape=(None,), order='C', device='cpu')]) -> None: ...

def decode_tokens_dequantize(payload: Annotated[NDArray[numpy.uint8], dict(shape=(None,), order='C', device='cpu', writable=False)], rows: int, cols: int, offset: int, step: float, out: Annotated[NDArray[numpy.float32], dict(shape=(None,), order='C', device='cpu')]) -> None: ...

def encode_bytes(data: Annotated[NDArray[numpy.uint8], dict(shape=(None,), order='C', device='cpu', writable=False)], itemsize: int) -> bytes: ...

def decode_bytes(payload: Annotated[NDArray[numpy.uint8], dict(shape=(None,), order='C', device='cpu', writable=False)], itemsize: int, out: Annotated[NDArray[numpy.uint8], dict(shape=(None,), order='C', device='cpu')]) -> None: ...

MAX_PLANE_CHUNK_ELEMENTS: int = 262144

def encode_planes(data: Annotated[NDArray[numpy.uint8], dict(shape=(None,), order='C', device='cpu', writable=False)], itemsize: int, rotate_sign: bool, chunk_elements: int, threads: int) -> tuple[bytes, list[int]]: ...

def decode_planes(payload: Annotated[NDArray[numpy.uint8], dict(shape=(None,), order='C', device='cpu', writable=False)], chunk_lengths: Annotated[NDArray[numpy.uint64], dict(shape=(None,), order='C', device='cpu', writable=False)], itemsize: int, rotate_sign: bool, chunk_elements: int, threads: int, out: Annotated[NDArray[numpy.uint8], dict(shape=(None,), order='C', device='cpu')]) -> None: ...

def crc32(data: Annotated[NDArray[numpy.uint8], dict(shape=(None,), order='C', device='cpu', writable=False)], crc: int = 0, accelerated: bool = True) -> int:
    """
    zlib.crc32(data, crc); accelerated=False forces the portable byte-table path.
    """

CRC32_ACCELERATED: bool = True

def quantize_uniform(w: Annotated[NDArray[numpy.float32], dict(shape=(None,), order='C', device='cpu', writable=False)], step: float, max_abs_level: int, out: Annotated[NDArray[numpy.int32], dict(shape=(None,), order='C', device='cpu')]) -> int: ...

def dequantize_uniform(levels: Annotated[NDArray[numpy.int32], dict(shape=(None,), order='C', device='cpu', writable=False)], step: float, out: Annotated[NDArray[numpy.float32], dict(shape=(None,), order='C', device='cpu')]) -> None: ...

def encode_rdoq(w: Annotated[NDArray[numpy.float32], dict(shape=(None,), order='C', device='cpu', writable=False)], importance: Annotated[NDArray[numpy.float32], dict(shape=(None,), order='C', device='cpu', writable=False)] | None, rows: int, cols: int, step: float, lambda_: float, num_gtx: int, fast_shift: int, slow_shift: int, levels: Annotated[NDArray[numpy.int32], dict(shape=(None,), order='C', device='cpu')] | None) -> tuple[bytes, float]: ...

def encode_trellis(w: Annotated[NDArray[numpy.float32], dict(shape=(None,), order='C', device='cpu', writable=False)], importance: Annotated[NDArray[numpy.float32], dict(shape=(None,), order='C', device='cpu', writable=False)] | None, rows: int, cols: int, step: float, lambda_: float, num_gtx: int, fast_shift: int, slow_shift: int, levels: Annotated[NDArray[numpy.int32], dict(shape=(None,), order='C', device='cpu')] | None) -> tuple[bytes, float]: ...

class CoreFormatError(ValueError):
    pass

PANEL_ROWS: int = 16

def sparse_isa() -> str: ...

def sparse_isa_available(name: str) -> bool: ...

def sparse_set_isa(name: str) -> None: ...

def packed_data_bytes(rows: int, cols: int, bits: int) -> int: ...

class Kernel:
    """
    A weight matrix in one format, bound to its arrays (made by the *_kernel factories).
    """

    def matmul(self, x: Annotated[NDArray[numpy.float32], dict(shape=(None, None), order='C', device='cpu', writable=False)], out: Annotated[NDArray[numpy.float32], dict(shape=(None, None), order='C', device='cpu')], bias: Annotated[NDArray[numpy.float32], dict(shape=(None,), order='C', device='cpu', writable=False)] | None = None, accumulate: bool = False, threads: int = 1) -> None:
        """
        out = x @ W.T (+ bias), or out += ... with accumulate; threads > 1 split the rows of W.
        """

    @property
    def format(self) -> str: ...

    @property
    def rows(self) -> int: ...

    @property
    def cols(self) -> int: ...

def csr_kernel(rows: int, cols: int, row_ptr: Annotated[NDArray[numpy.uint8 | numpy.uint16 | numpy.uint32], dict(shape=(None,), order='C', device='cpu', writable=False)], col_idx: Annotated[NDArray[numpy.uint8 | numpy.uint16 | numpy.uint32], dict(shape=(None,), order='C', device='cpu', writable=False)], values: Annotated[NDArray[numpy.float32], dict(shape=(None,), order='C', device='cpu', writable=False)]) -> Kernel: ...

def cer_kernel(rows: int, cols: int, row_ptr: Annotated[NDArray[numpy.uint8 | numpy.uint16 | numpy.uint32], dict(shape=(None,), order='C', device='cpu', writable=False)], group_ptr: Annotated[NDArray[numpy.uint8 | numpy.uint16 | numpy.uint32], dict(shape=(None,), order='C', device='cpu', writable=False)], col_idx: Annotated[NDArray[numpy.uint8 | numpy.uint16 | numpy.uint32], dict(shape=(None,), order='C', device='cpu', writable=False)], omega: Annotated[NDArray[numpy.float32], dict(shape=(None,), order='C', device='cpu', writable=False)]) -> Kernel: ...

def cser_kernel(rows: int, cols: int, row_ptr: Annotated[NDArray[numpy.uint8 | numpy.uint16 | numpy.uint32], dict(shape=(None,), order='C', device='cpu', writable=False)], group_ptr: Annotated[NDArray[numpy.uint8 | numpy.uint16 | numpy.uint32], dict(shape=(None,), order='C', device='cpu', writable=False)], value_idx: Annotated[NDArray[numpy.uint8 | numpy.uint16 | numpy.uint32], dict(shape=(None,), order='C', device='cpu', writable=False)], col_idx: Annotated[NDArray[numpy.uint8 | numpy.uint16 | numpy.uint32], dict(shape=(None,), order='C', device='cpu', writable=False)], values: Annotated[NDArray[numpy.float32], dict(shape=(None,), order='C', device='cpu', writable=False)], omega0: float) -> Kernel: ...

def packed_kernel(rows: int, cols: int, data: Annotated[NDArray[numpy.uint8], dict(shape=(None,), order='C', device='cpu', writable=False)], table: Annotated[NDArray[numpy.float32], dict(shape=(None,), order='C', device='cpu', writable=False)], corr_rows: Annotated[NDArray[numpy.uint8 | numpy.uint16 | numpy.uint32], dict(shape=(None,), order='C', device='cpu', writable=False)], corr_cols: Annotated[NDArray[numpy.uint8 | numpy.uint16 | numpy.uint32], dict(shape=(None,), order='C', device='cpu', writable=False)], corr_values: Annotated[NDArray[numpy.float32], dict(shape=(None,), order='C', device='cpu', writable=False)], bits: int, affine: bool, scale: float, offset: float) -> Kernel: ...

def nnr_decode_tensor(payload: Annotated[NDArray[numpy.uint8], dict(shape=(None,), order='C', device='cpu', writable=False)], rows: int, cols: int, qp_offset_bits: int, dependent: bool, scan_order: int, profile: int, parent_node_id_present: bool, codebook_size: int, codebook_zero_offset: int, unary_length: int, entry_point_offsets: Sequence[int], entry_point_values: Sequence[int], entry_point_states: Sequence[int], out: Annotated[NDArray[numpy.int32], dict(shape=(None,), order='C', device='cpu')], previous_update: Annotated[NDArray[numpy.int32], dict(shape=(None,), order='C', device='cpu', writable=False)] | None = None) -> tuple[int, int, bool, int, int]: ...

def nnr_encode_tensor(levels: Annotated[NDArray[numpy.int32], dict(shape=(None,), order='C', device='cpu', writable=False)], rows: int, cols: int, qp_offset_bits: int, qp_offset: int, dependent: bool, unary_length: int, choose_estimators: bool) -> bytes: ...

def nnr_dependent_quantize(weights: Annotated[NDArray[numpy.float32], dict(shape=(None,), order='C', device='cpu', writable=False)], rows: int, cols: int, step: float, lambda_: float, out: Annotated[NDArray[numpy.int32], dict(shape=(None,), order='C', device='cpu')]) -> None: ...

def nnr_block_rows(rows: int, cols: int, scan_order: int) -> int: ...
