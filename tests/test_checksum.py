"""The container's CRC32 (C++, folded with carry-less multiplication where the CPU has it) against
zlib.crc32, which defines it; both the folded and the portable byte-table path."""

from __future__ import annotations

import zlib

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from nnsqueeze import _core
from nnsqueeze.coding.bytestream import crc32


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=700), start=st.integers(0, 2**32 - 1), accelerated=st.booleans())
def test_crc32_matches_zlib(data: bytes, start: int, accelerated: bool) -> None:
    arr = np.frombuffer(data, dtype=np.uint8)
    assert _core.crc32(arr, start, accelerated) == zlib.crc32(data, start)


def test_crc32_of_a_large_buffer_at_every_alignment() -> None:
    raw = np.random.default_rng(3).integers(0, 256, size=(1 << 16) + 77, dtype=np.uint8)
    for offset in range(17):
        part = raw[offset:]
        expected = zlib.crc32(part.tobytes())
        assert _core.crc32(part) == expected
        assert _core.crc32(part, 0, False) == expected


def test_trailer_is_the_crc_of_the_concatenated_parts() -> None:
    parts = [b"TNSR", bytearray(b"\x01\x02" * 50), memoryview(b"payload" * 20)]
    expected = zlib.crc32(b"".join(bytes(p) for p in parts))
    assert crc32(*parts) == expected.to_bytes(4, "little")
