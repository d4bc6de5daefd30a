"""MPEG NNR bitstreams: NNCodec's streams decode bit-exactly; malformed streams fail with named errors."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nnsqueeze import _core, nnr
from nnsqueeze.errors import ConfigError, NnrError, NnrUnsupportedError, TensorError
from nnsqueeze.nnr import UpdateChain, syntax

from . import nnr_reference as ref

CORPUS = Path(__file__).parent / "golden" / "nnr"
MANIFEST = json.loads((CORPUS / "manifest.json").read_text())
STREAMS = {e["stream"]: e for e in MANIFEST["streams"] if "chain" not in e}
CHAINS: dict[str, list[dict[str, object]]] = {}
for _entry in MANIFEST["streams"]:
    if "chain" in _entry:
        CHAINS.setdefault(_entry["chain"], []).append(_entry)


def _stream(name: str) -> bytes:
    return (CORPUS / name).read_bytes()


@pytest.mark.parametrize("name", sorted(STREAMS))
def test_corpus_decodes_to_nncodecs_values(name: str) -> None:
    _check_hashes(nnr.decode(_stream(name)), STREAMS[name]["tensors"])


@pytest.mark.parametrize("chain", sorted(CHAINS))
def test_update_chains_with_temporal_contexts_decode_to_nncodecs_values(chain: str) -> None:
    updates = UpdateChain()
    for entry in CHAINS[chain]:
        tensors, info = nnr.read(_stream(str(entry["stream"])), chain=updates)
        _check_hashes(tensors, entry["tensors"])  # type: ignore[arg-type]
    assert all(t.temporal_context for t in info.tensors)  # the last update is coded against the one before


def test_an_update_with_temporal_contexts_needs_its_chain() -> None:
    first, second = (str(e["stream"]) for e in CHAINS["tca_dq"][:2])
    with pytest.raises(NnrError, match="UpdateChain"):
        nnr.decode(_stream(second))
    updates = UpdateChain()
    nnr.read(_stream(first), chain=updates)
    nnr.read(_stream(second), chain=updates)


def _check_hashes(tensors: dict[str, np.ndarray], expected: dict[str, dict[str, object]]) -> None:
    assert sorted(tensors) == sorted(expected)
    for tensor_name, want in expected.items():
        values = np.ascontiguousarray(tensors[tensor_name])
        assert (list(values.shape), str(values.dtype)) == (want["shape"], want["dtype"])
        assert hashlib.sha256(values.tobytes()).hexdigest() == want["sha256"], tensor_name


def test_corpus_covers_the_tools() -> None:
    seen = {
        "dependent": set(),
        "scan": set(),
        "codebook": False,
        "row_skip": False,
        "tuned": set(),
        "payloads": set(),
    }
    for name in STREAMS:
        for t in nnr.read(_stream(name))[1].tensors:
            seen["dependent"].add(t.dependent)
            seen["scan"].add(t.scan_order)
            seen["codebook"] |= t.codebook_size > 0
            seen["row_skip"] |= t.skipped_rows > 0
            seen["tuned"].add(t.tuned_contexts > 0)
            seen["payloads"].add(t.payload_type)
    assert seen["dependent"] == {False, True}
    assert seen["scan"] == {0, 1, 2, 4}
    assert seen["codebook"]
    assert seen["row_skip"]
    assert seen["tuned"] == {False, True}  # param_opt off and on
    assert seen["payloads"] == {"float", "int"}


def _units(data: bytes) -> list[syntax.UnitHeader]:
    units, offset = [], 0
    while offset < len(data):
        units.append(syntax.read_unit_header(data, offset))
        offset += units[-1].size
    return units


@pytest.mark.parametrize(
    "name",
    [
        "urq_qp-28.nnc",
        "dq_qp-20.nnc",
        "dq_qp-24_scan1.nnc",
        "urq_qp-24_scan2.nnc",
        "urq_qp-28_codebook.nnc",
        "dq_qp-12_sparse.nnc",
        "dq_qp-28_unary4.nnc",
    ],
)
def test_payload_decoder_matches_reference(name: str) -> None:
    """The C++ payload decoder against the slow Python reference, on every data unit."""
    data = _stream(name)
    start = mps = None
    for unit in _units(data):
        if unit.type == syntax.UnitType.STR:
            start = syntax.read_start_unit(data, unit)
        elif unit.type == syntax.UnitType.MPS:
            mps = syntax.read_model_parameter_set(data, unit, start)
        elif unit.type == syntax.UnitType.NDU:
            header = syntax.read_data_unit_header(data, unit, start, mps, None)
            payload = data[header.payload_offset : unit.offset + unit.size]
            rows = header.shape[0]
            cols = int(np.prod(header.shape[1:])) if len(header.shape) > 1 else 1
            book = header.codebook
            blocks = _core.nnr_block_rows(rows, cols, header.scan_order) > 0
            is_float = header.payload_type == syntax.PayloadType.FLOAT
            s = ref.Syntax(
                rows,
                cols,
                6 + mps.qp_density if is_float else 0,
                header.dependent and is_float,
                header.scan_order if blocks else 0,
                start,
                len(book.values) if book else 0,
                book.zero_offset if book else 0,
                header.unary_length,
            )
            levels, qp_offset, used = ref.decode(payload, s)
            fast = np.empty(rows * cols, dtype=np.int32)
            got = _core.nnr_decode_tensor(
                np.frombuffer(payload, dtype=np.uint8),
                rows,
                cols,
                s.qp_bits,
                s.dependent,
                s.scan_order,
                start,
                False,
                s.codebook_size,
                s.zero_offset,
                s.unary_length,
                header.entry_point_offsets if blocks else [],
                header.entry_point_values if blocks else [],
                header.entry_point_states if blocks else [],
                fast,
            )
            assert (got[0], got[1]) == (qp_offset, used) == (got[0], len(payload))
            assert fast.tolist() == levels


def test_info_describes_units_and_tensors() -> None:
    tensors, info = nnr.read(_stream("dq_qp-24_scan1.nnc"))
    assert info.profile == 1
    assert [kind for kind, _ in info.units[:3]] == ["STR", "MPS", "TPL"]
    assert sum(size for _, size in info.units) == len(_stream("dq_qp-24_scan1.nnc"))
    fc = next(t for t in info.tensors if t.name == "fc.weight")
    assert (fc.qp, fc.dependent, fc.scan_order, fc.skipped_rows) == (-24, True, 1, 4)
    assert fc.step == 2.0**-6
    assert not tensors["fc.weight"][[3, 17, 18, 40]].any()  # the all-zero rows were skipped


def test_step_of_follows_qp_density() -> None:
    assert nnr.step_of(-28, 2) == 2.0**-7
    assert nnr.step_of(-27, 2) == 1.25 * 2.0**-7
    assert nnr.step_of(-56, 3) == 2.0**-7


@pytest.mark.parametrize("name", ["urq_qp-20.nnc", "dq_qp-24_scan1.nnc"])
def test_every_truncation_is_a_named_error_or_a_unit_boundary(name: str) -> None:
    """NNR units are self-delimiting and a stream has no unit count: cut between two units, it is a shorter
    valid stream (its first tensors).  Any other cut is an error."""
    data = _stream(name)
    full = nnr.decode(data)
    boundaries = {u.offset for u in _units(data)}
    for cut in range(len(data)):
        if cut in boundaries and cut > 0:
            assert list(nnr.decode(data[:cut])) == list(full)[: len(nnr.decode(data[:cut]))]
            continue
        with pytest.raises(NnrError):
            nnr.decode(data[:cut])


def _flip_bits(data: bytes, positions: list[int]) -> bytes:
    out = bytearray(data)
    for p in positions:
        out[(p // 8) % len(out)] ^= 1 << (p % 8)
    return bytes(out)


@settings(deadline=None, max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=st.sampled_from(["urq_qp-28.nnc", "dq_qp-28.nnc", "dq_qp-32_scan4.nnc", "urq_qp-28_codebook.nnc"]),
    positions=st.lists(st.integers(0, 1 << 20), min_size=1, max_size=6),
)
def test_corrupted_streams_decode_or_fail_with_nnr_errors(name: str, positions: list[int]) -> None:
    damaged = _flip_bits(_stream(name), positions)
    try:
        tensors = nnr.decode(damaged)
    except NnrError:
        return
    assert all(np.isfinite(v).all() for v in tensors.values() if v.dtype.kind == "f")


def test_a_tiny_stream_cannot_claim_a_huge_tensor() -> None:
    data = bytearray(_stream("urq_qp-28.nnc"))
    with pytest.raises(NnrError, match="max_elements"):
        nnr.decode(bytes(data), max_elements=100)


def test_partial_data_units_are_refused_by_name() -> None:
    data = bytearray(_stream("urq_qp-28.nnc"))
    unit = _units(bytes(data))[3]  # the first data unit; its header byte follows a 2-byte size
    data[unit.offset + 2] |= 1  # partial_data_counter_present_flag
    with pytest.raises(NnrUnsupportedError, match="partial data units"):
        nnr.decode(bytes(data))


def test_not_an_nnr_stream() -> None:
    with pytest.raises(NnrError, match="not an NNR bitstream"):
        nnr.decode(b"NNSQ\x00\x01")
    assert not nnr.looks_like_nnr(b"")


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nnsqueeze", *args], capture_output=True, text=True, check=False
    )


def test_cli_decompresses_and_describes_nnr(tmp_path: Path) -> None:
    from safetensors.numpy import load_file

    out = tmp_path / "model.safetensors"
    done = _cli("decompress", str(CORPUS / "dq_qp-28.nnc"), "-o", str(out))
    assert done.returncode == 0, done.stderr
    loaded = load_file(str(out))
    for name, values in nnr.decode(_stream("dq_qp-28.nnc")).items():
        np.testing.assert_array_equal(loaded[name], values)
    shown = _cli("info", str(CORPUS / "dq_qp-24_scan1.nnc"))
    assert shown.returncode == 0, shown.stderr
    assert "MPEG NNR bitstream" in shown.stdout
    assert "dependent" in shown.stdout
    assert "row skip" in shown.stdout


def test_cli_describes_an_update_with_temporal_contexts_after_its_chain() -> None:
    first, second = (str(CORPUS / str(e["stream"])) for e in CHAINS["tca_dq"][:2])
    alone = _cli("info", second)
    assert alone.returncode == 2
    assert "--base" in alone.stderr
    assert len(alone.stderr.strip().splitlines()) == 1
    shown = _cli("info", second, "--base", first)
    assert shown.returncode == 0, shown.stderr
    assert "temporal contexts" in shown.stdout
    assert "fc.weight" in shown.stdout


def test_cli_reports_a_broken_nnr_stream_in_one_line(tmp_path: Path) -> None:
    broken = tmp_path / "broken.nnc"
    broken.write_bytes(_stream("urq_qp-28.nnc")[:200])
    done = _cli("decompress", str(broken), "-o", str(tmp_path / "out.safetensors"))
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1
    assert "truncated" in done.stderr
    assert not (tmp_path / "out.safetensors").exists()


# ------------------------------------------------------------------------------------------ encoder


@settings(deadline=None, max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=st.integers(0, 12),
    cols=st.integers(1, 40),
    scale=st.sampled_from([0.0, 0.4, 3.0, 200.0]),
    zero_rows=st.integers(0, 3),
    dependent=st.booleans(),
    unary_length=st.sampled_from([1, 4, 11, 40]),
    choose=st.booleans(),
    seed=st.integers(0, 2**31),
)
def test_payload_encoder_round_trips(
    rows: int,
    cols: int,
    scale: float,
    zero_rows: int,
    dependent: bool,
    unary_length: int,
    choose: bool,
    seed: int,
) -> None:
    rng = np.random.default_rng(seed)
    weights = (rng.laplace(0, scale + 1e-9, (rows, cols))).astype(np.float32)
    weights[: min(zero_rows, rows)] = 0
    levels = np.empty(rows * cols, dtype=np.int32)
    if dependent:
        _core.nnr_dependent_quantize(weights.ravel(), rows, cols, 1.0, 0.0, levels)
    else:
        levels[:] = np.rint(weights.ravel())
    payload = _core.nnr_encode_tensor(levels, rows, cols, 8, -3, dependent, unary_length, choose)
    out = np.empty_like(levels)
    qp_offset, used, *_ = _core.nnr_decode_tensor(
        np.frombuffer(payload, dtype=np.uint8),
        rows,
        cols,
        8,
        dependent,
        0,
        1,
        False,
        0,
        0,
        unary_length,
        [],
        [],
        [],
        out,
    )
    assert (qp_offset, used) == (-3, len(payload))
    np.testing.assert_array_equal(out, levels)
    s = ref.Syntax(rows, cols, 8, dependent, 0, unary_length=unary_length)
    assert ref.decode(payload, s)[0] == levels.tolist()


def test_dependent_quantization_follows_the_state_machine() -> None:
    """Every level suits the quantizer of its state, and the trellis beats rounding to the nearer of
    the two quantizers' grids on squared error."""
    rng = np.random.default_rng(3)
    w = rng.normal(0, 3, (30, 50)).astype(np.float32)
    levels = np.empty(w.size, dtype=np.int32)
    _core.nnr_dependent_quantize(w.ravel(), 30, 50, 1.0, 0.0, levels)
    state = 0
    for q in levels.tolist():
        odd = state & 1
        assert q == 0 or q % 2 == odd
        k = 0 if q == 0 else (q + (-odd if q < 0 else odd)) // 2
        state = ref.NEXT_STATE[state][k & 1]
    even_only = 2 * np.rint(w.ravel() / 2)  # the state 0 quantizer alone
    assert np.mean((levels - w.ravel()) ** 2) < np.mean((even_only - w.ravel()) ** 2)


def test_encoded_streams_decode_within_the_step() -> None:
    rng = np.random.default_rng(4)
    model = {
        "conv.weight": rng.normal(0, 0.1, (8, 3, 3, 3)).astype(np.float32),
        "conv.bias": rng.normal(0, 0.01, 8).astype(np.float32),
        "fc.weight": np.zeros((10, 40), dtype=np.float32),
        "scale": np.float32(0.5),
        "steps": rng.integers(-1000, 1000, (4, 4)).astype(np.int64),
    }
    model["fc.weight"][2] = rng.normal(0, 0.1, 40)
    for dependent in (False, True):
        stream = nnr.encode(model, qp=-24, dependent=dependent)
        decoded, info = nnr.read(stream)
        assert list(decoded) == list(model)
        step = nnr.step_of(-24, 2)
        bound = (2 if dependent else 0.5) * step
        assert np.abs(decoded["conv.weight"] - model["conv.weight"]).max() <= bound
        assert np.abs(decoded["conv.bias"] - model["conv.bias"]).max() <= 2 * nnr.step_of(-75, 2)
        assert decoded["scale"].shape == (1,)
        np.testing.assert_array_equal(decoded["steps"], model["steps"])
        assert next(t for t in info.tensors if t.name == "fc.weight").skipped_rows == 9


def test_values_beyond_the_level_range_get_a_coarser_qp() -> None:
    """As NNCodec clips its QPs: 1e9 at QP -28 would need levels near 2^37."""
    w = {"w": np.array([[1e9, 1.0]], dtype=np.float32), "v": np.array([3e4, 1.0], dtype=np.float32)}
    decoded, info = nnr.read(nnr.encode(w, qp=-28, dependent=False))
    qps = {t.name: t.qp for t in info.tensors}
    assert qps["w"] > -28
    assert qps["v"] > -75
    for name in w:
        step = nnr.step_of(qps[name], 2)
        assert np.abs(decoded[name] - w[name]).max() <= step / 2
        assert np.abs(w[name]).max() / step < 2**29


def test_encoder_refuses_what_nnr_cannot_carry() -> None:
    with pytest.raises(TensorError, match="finite"):
        nnr.encode({"w": np.array([[np.nan, 1.0]], dtype=np.float32)})
    with pytest.raises(ConfigError, match="outside what NNR signals"):
        nnr.encode({"w": np.ones((2, 2), dtype=np.float32)}, qp=-28, nonweight_qp=-400)
    with pytest.raises(TensorError, match="cannot be coded"):
        nnr.encode({"w": np.array(["a"])})


def test_cli_compresses_to_nnr(tmp_path: Path) -> None:
    from safetensors.numpy import load_file, save_file

    rng = np.random.default_rng(5)
    model = {
        "fc.weight": rng.normal(0, 0.1, (12, 20)).astype(np.float32),
        "fc.bias": np.zeros(12, np.float32),
    }
    src = tmp_path / "model.safetensors"
    save_file(model, str(src))
    done = _cli("compress", str(src), "--format", "nnr", "--qp", "-24", "--nnr-quantizer", "uniform")
    assert done.returncode == 0, done.stderr
    stream = (tmp_path / "model.nnc").read_bytes()
    in_file_order = {name: model[name] for name in sorted(model)}  # safetensors stores names sorted
    assert stream == nnr.encode(in_file_order, qp=-24, dependent=False)
    back = tmp_path / "back.safetensors"
    assert _cli("decompress", str(tmp_path / "model.nnc"), "-o", str(back)).returncode == 0
    decoded = load_file(str(back))
    assert np.abs(decoded["fc.weight"] - model["fc.weight"]).max() <= nnr.step_of(-24, 2) / 2
    refused = _cli("compress", str(src), "--format", "nnr", "--lossless")
    assert refused.returncode == 2
    assert "--lossless" in refused.stderr


def test_thread_count_never_changes_the_decode() -> None:
    data = _stream("dq_qp-32_scan4.nnc")
    one = nnr.decode(data, threads=1)
    two = nnr.decode(data, threads=2)
    assert list(one) == list(two)
    for name in one:
        np.testing.assert_array_equal(one[name], two[name])


def test_step_allocation_gives_each_weight_tensor_its_own_qp(tmp_path: Path) -> None:
    rng = np.random.default_rng(6)
    model = {
        "small.weight": rng.normal(0, 0.02, (8, 8)).astype(np.float32),
        "large.weight": rng.normal(0, 0.2, (64, 64)).astype(np.float32),
        "large.bias": rng.normal(0, 0.01, 64).astype(np.float32),
    }
    _, plain = nnr.read(nnr.encode(model, qp=-28))
    _, allocated = nnr.read(nnr.encode(model, qp=-28, step_allocation=1.5))
    assert {t.qp for t in plain.tensors if t.name.endswith("weight")} == {-28}
    qps = {t.name: t.qp for t in allocated.tensors}
    # finer where weights spread less and are fewer (the large tensor dominates the size-weighted mean)
    assert qps["small.weight"] < qps["large.weight"]
    assert qps["small.weight"] < -28
    assert qps["large.bias"] == -75
    with pytest.raises(ConfigError, match="strength"):
        nnr.encode(model, step_allocation=3.0)
    from safetensors.numpy import save_file

    src = tmp_path / "m.safetensors"
    save_file(model, str(src))
    assert _cli("compress", str(src), "--format", "nnr", "--rdo").returncode == 0
    refused = _cli("compress", str(src), "--format", "nnr", "--rdo", "0.1")
    assert refused.returncode == 2
    assert "lambda" in refused.stderr
