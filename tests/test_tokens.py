"""The token coder (method 6): the C++ coder against the decoder written from docs/format.md
(``spec_tokens``), round trips of levels of every size class, the coder option, and malformed
payloads."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import nnsqueeze
from nnsqueeze import BitstreamError, CompressOptions, ConfigError
from nnsqueeze.coding import tokens
from nnsqueeze.coding.cabac import MAX_ABS_LEVEL
from nnsqueeze.coding.container import Method
from nnsqueeze.coding.methods import TOKENS

from . import spec_tokens


def laplace_levels(rows: int, cols: int, scale: float, seed: int) -> np.ndarray:
    """Weight-like levels: per-row and per-column scales times Laplacian noise, rounded."""
    rng = np.random.default_rng(seed)
    row_scale = rng.uniform(0.3, 3.0, (rows, 1))
    col_scale = rng.uniform(0.5, 2.0, (1, cols))
    values = rng.laplace(0.0, scale, (rows, cols)) * row_scale * col_scale
    return np.clip(np.rint(values), -MAX_ABS_LEVEL, MAX_ABS_LEVEL).astype(np.int32)


@pytest.mark.parametrize("scale", [0.05, 1.0, 30.0, 5000.0])
@pytest.mark.parametrize("shape", [(1, 1), (3, 5), (40, 7), (7, 300), (600, 1)])
def test_cpp_and_spec_decoder_agree(shape: tuple[int, int], scale: float) -> None:
    levels = laplace_levels(*shape, scale=scale, seed=shape[0] * 31 + shape[1])
    payload = tokens.encode_tokens(levels)
    assert tokens.decode_tokens(payload, levels.shape).tolist() == levels.tolist()
    assert spec_tokens.decode(payload, *shape) == levels.reshape(-1).tolist()


def test_extreme_levels_round_trip() -> None:
    edge = [0, 1, -1, 15, -15, 16, -16, 17, 31, 32, 1000, -(2**20), MAX_ABS_LEVEL, -MAX_ABS_LEVEL]
    levels = np.array(edge * 3, dtype=np.int32).reshape(6, 7)
    payload = tokens.encode_tokens(levels)
    assert tokens.decode_tokens(payload, levels.shape).tolist() == levels.tolist()
    assert spec_tokens.decode(payload, 6, 7) == levels.reshape(-1).tolist()


@settings(max_examples=60, deadline=None)
@given(
    rows=st.integers(0, 12),
    cols=st.integers(0, 40),
    scale=st.sampled_from([0.01, 0.5, 4.0, 100.0, 1e6]),
    zeros=st.floats(0.0, 1.0),
    seed=st.integers(0, 2**32 - 1),
)
def test_round_trip_property(rows: int, cols: int, scale: float, zeros: float, seed: int) -> None:
    levels = laplace_levels(max(rows, 1), max(cols, 1), scale, seed)[:rows, :cols].copy()
    levels[np.random.default_rng(seed).random(levels.shape) < zeros] = 0
    payload = tokens.encode_tokens(levels)
    assert tokens.decode_tokens(payload, levels.shape).tolist() == levels.tolist()
    assert spec_tokens.decode(payload, rows, cols) == levels.reshape(-1).tolist()
    values = tokens.decode_dequantized(payload, levels.shape, 0.25, offset=3)
    assert np.array_equal(values, ((levels.astype(np.float64) + 3) * 0.25).astype(np.float32))


def test_golden_token_records_decode_as_the_spec_says() -> None:
    path = Path(__file__).resolve().parent / "golden" / "tokens.v2.1.nnsq"
    with nnsqueeze.NnsqFile(path) as f:
        for name in f.names:
            header, payload = f.read_record(name)
            assert header.method == Method.TOKENS
            rows = header.shape[0] if header.shape else 1
            cols = int(np.prod(header.shape[1:], dtype=np.int64))
            levels = TOKENS.read_levels(header, payload).reshape(-1).tolist()
            if not header.entry_points:
                assert spec_tokens.decode(bytes(payload), rows, cols) == levels
                continue
            start, first_row = 0, 0
            for length in header.entry_points:  # one row per chunk in this golden case
                n = min(header.chunk, rows - first_row)
                spec = spec_tokens.decode(bytes(payload[start : start + length]), n, cols)
                assert spec == levels[first_row * cols : (first_row + n) * cols]
                start, first_row = start + length, first_row + n


def test_levels_beyond_the_range_are_refused() -> None:
    with pytest.raises(ConfigError, match="codable range"):
        tokens.encode_tokens(np.array([[MAX_ABS_LEVEL + 1]], dtype=np.int32))
    with pytest.raises(ConfigError, match="int32"):
        tokens.encode_tokens(np.zeros((2, 2), dtype=np.int64))


def test_every_truncation_and_extension_is_refused() -> None:
    levels = laplace_levels(9, 13, 6.0, seed=5)
    payload = tokens.encode_tokens(levels)
    for cut in range(len(payload)):
        with pytest.raises(BitstreamError):
            tokens.decode_tokens(payload[:cut], levels.shape)
    for extra in (b"\x00", b"\x01", b"\xff" * 9):
        with pytest.raises(BitstreamError):
            tokens.decode_tokens(payload + extra, levels.shape)


def test_corrupt_payloads_fail_cleanly() -> None:
    """Every byte flip either fails with BitstreamError or decodes to some levels; never a crash,
    and the spec decoder agrees on which."""
    levels = laplace_levels(6, 17, 3.0, seed=9)
    payload = bytearray(tokens.encode_tokens(levels))
    rng = np.random.default_rng(0)
    for pos in range(len(payload)):
        for mask in (0x01, 0x80, int(rng.integers(1, 256))):
            bad = bytes(payload[:pos]) + bytes([payload[pos] ^ mask]) + bytes(payload[pos + 1 :])
            try:
                got = tokens.decode_tokens(bad, levels.shape).reshape(-1).tolist()
            except BitstreamError:
                got = None
            try:
                want = spec_tokens.decode(bad, 6, 17)
            except spec_tokens.SpecError:
                want = None
            assert got == want, (pos, mask)


def test_a_class_without_a_table_is_refused() -> None:
    levels = laplace_levels(4, 9, 2.0, seed=3)
    payload = bytearray(tokens.encode_tokens(levels))
    payload[0:3] = bytes(3)  # no class has a table: the tables then have trailing bytes
    with pytest.raises(BitstreamError):
        tokens.decode_tokens(bytes(payload), levels.shape)


def test_element_bound_is_checked_before_allocating() -> None:
    with pytest.raises(BitstreamError, match="cannot come from"):
        tokens.decode_tokens(b"\x01\x00\x00", (1 << 30, 1 << 10))


def test_compress_coder_option_and_effort() -> None:
    rng = np.random.default_rng(1)
    x = {
        "big.weight": (rng.laplace(0, 0.02, (300, 256)) * rng.uniform(0.5, 2, (300, 1))).astype(np.float32),
        "small.weight": rng.laplace(0, 0.02, (8, 8)).astype(np.float32),
        "bias": rng.normal(0, 0.01, 300).astype(np.float32),
    }
    files = {}
    for coder, effort in (("auto", 1), ("tokens", 1), ("cabac", 1), ("auto", 2)):
        data = nnsqueeze.compress(x, options=CompressOptions(coder=coder, effort=effort, threads=1)).data
        assert data is not None
        files[coder, effort] = data
        out = nnsqueeze.decompress(data)
        reference = nnsqueeze.decompress(files["auto", 1])
        for name in x:  # every coder reconstructs the same quantized values
            assert np.array_equal(out[name], reference[name])
    with nnsqueeze.NnsqFile(files["auto", 1]) as f:
        assert [f.header(n).method for n in ("big.weight", "small.weight", "bias")] == [
            Method.TOKENS,
            Method.UNIFORM,
            Method.UNIFORM,
        ]
    with nnsqueeze.NnsqFile(files["tokens", 1]) as f:
        assert {f.header(n).method for n in f.names} == {Method.TOKENS}
    with nnsqueeze.NnsqFile(files["cabac", 1]) as f:
        assert {f.header(n).method for n in f.names} == {Method.UNIFORM}
    sizes = {k: len(v) for k, v in files.items()}
    assert sizes["auto", 2] <= min(sizes["auto", 1], sizes["cabac", 1]) + 64  # headers aside
    with pytest.raises(ConfigError, match="coder"):
        CompressOptions(coder="zip")


def test_threads_never_change_the_bytes() -> None:
    rng = np.random.default_rng(2)
    x = {"w": rng.laplace(0, 0.02, (600, 512)).astype(np.float32)}
    one = nnsqueeze.compress(x, options=CompressOptions(threads=1, chunk_elements=1 << 16)).data
    two = nnsqueeze.compress(x, options=CompressOptions(threads=2, chunk_elements=1 << 16)).data
    assert one == two
    with nnsqueeze.NnsqFile(one) as f:
        assert len(f.header("w").entry_points) == 5  # chunks of 128 rows
    assert np.array_equal(
        nnsqueeze.decompress(one, threads=2)["w"], nnsqueeze.decompress(one, threads=1)["w"]
    )


def test_cli_coder_flag(tmp_path: Path) -> None:
    from nnsqueeze.cli.main import main

    work = tmp_path
    src = work / "m.npz"
    rng = np.random.default_rng(3)
    np.savez(src, w=rng.laplace(0, 0.02, (20, 30)).astype(np.float32))
    assert main(["compress", str(src), "-o", str(work / "m.nnsq"), "--coder", "tokens"]) == 0
    with nnsqueeze.NnsqFile(work / "m.nnsq") as f:
        assert f.header("w").method == Method.TOKENS


def test_auto_keeps_tokens_where_they_match_cabac_and_leaves_them_where_cabac_wins() -> None:
    rng = np.random.default_rng(5)
    iid = rng.laplace(0, 0.02, (512, 256)).astype(np.float32)
    # long runs of one value along each row: CABAC's adaptive contexts follow them, static tokens do not
    runs = np.repeat(rng.laplace(0, 0.02, (512, 16)), 16, axis=1).astype(np.float32)
    runs[rng.random(runs.shape) < 0.7] = 0.0
    opts = nnsqueeze.CompressOptions(qp=-24)
    by_name = {t.name: t for t in nnsqueeze.compress({"iid": iid, "runs": runs}, options=opts).tensors}
    assert by_name["iid"].method == "uniform-tokens"
    assert by_name["runs"].method == "uniform"
    forced = nnsqueeze.compress({"runs": runs}, options=dataclasses.replace(opts, coder="tokens"))
    assert by_name["runs"].coded_bytes < forced.tensors[0].coded_bytes


@pytest.mark.parametrize("shape", [(1, 1), (8, 40), (300, 200)])
def test_table_bytes_end_where_the_spec_reader_starts_the_rans_stream(shape: tuple[int, int]) -> None:
    levels = np.random.default_rng(11).laplace(0, 40, shape).astype(np.int32)
    payload = tokens.encode_tokens(levels)
    # format.md: bitmap[3], varint table_len, tables[table_len], then the stream
    table_len, pos = spec_tokens.read_varint(payload, 3)
    assert tokens.table_bytes(payload) == pos + table_len < len(payload)
    for cut in (0, 2, 3, pos + table_len - 1):
        with pytest.raises(BitstreamError, match="too short for its frequency tables"):
            tokens.table_bytes(payload[:cut])
