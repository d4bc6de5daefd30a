"""Round trips of every compressor on its own bytes, corrupt payloads, and the Golomb coder."""

from __future__ import annotations

import math
import zlib
from pathlib import Path

import numpy as np
import pytest

import nnsqueeze
from nnsqueeze.cli import main
from nnsqueeze.errors import BaseMismatchError, BitstreamError, ConfigError, TensorError
from nnsqueeze.fl.compressors import (
    CabacPreviousUpdate,
    CabacQuantized,
    Compressor,
    Identity,
    NnsqUpdate,
    SparseBinary,
    SparseTernary,
    TopK,
    count_for,
    make_compressor,
)
from nnsqueeze.fl.error_feedback import ErrorFeedback
from nnsqueeze.fl.golomb import (
    decode_positions,
    encode_positions,
    expected_bits_per_position,
    optimal_rice_parameter,
    position_bits,
)

SHAPES = [(16, 1, 3, 3), (16,), (64, 50), (10,), (1,)]


def update(seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.normal(0, 0.1, s).astype(np.float32) for s in SHAPES]


ALL: list[Compressor] = [
    Identity(),
    TopK(0.05),
    SparseBinary(0.05),
    SparseTernary(0.05),
    TopK(0.05, whole_model=True),
    SparseBinary(0.05, whole_model=True),
    SparseTernary(0.05, whole_model=True),
    CabacQuantized(2),
    CabacQuantized(4),
    CabacPreviousUpdate(2),
    CabacPreviousUpdate(2).with_reference(update(9)),
    NnsqUpdate(qp=-32).for_model({f"layer{i}": t for i, t in enumerate(update(7))}),
]


@pytest.mark.parametrize("c", ALL, ids=lambda c: f"{c.name}")
def test_roundtrip_is_deterministic_and_matches_size(c: Compressor) -> None:
    x = update()
    message, decoded = c.roundtrip(x)
    assert [d.shape for d in decoded] == SHAPES
    assert all(d.dtype == np.float32 for d in decoded)
    assert c.encode(x) == message
    again = c.decode(message, SHAPES)
    assert all(np.array_equal(a, b) for a, b in zip(decoded, again, strict=True))
    if not isinstance(c, Identity):
        assert len(message) < sum(4 * t.size for t in x)


@pytest.mark.parametrize("kind", [TopK, SparseBinary, SparseTernary])
def test_whole_model_is_the_tensor_codec_on_the_concatenation(kind: type[SparseBinary]) -> None:
    x = update()
    whole = kind(0.05, whole_model=True)
    flat = np.concatenate([t.reshape(-1) for t in x])
    expected = kind(0.05).decode_tensor(kind(0.05).encode_tensor(flat), flat.shape)
    message, decoded = whole.roundtrip(x)
    assert np.array_equal(np.concatenate([d.reshape(-1) for d in decoded]), expected)
    assert np.count_nonzero(expected) <= count_for(0.05, flat.size)
    per_tensor = kind(0.05).encode(x)
    assert len(message) < len(per_tensor)  # one count, mean and framing entry instead of five
    with pytest.raises(BitstreamError, match="method"):  # the method byte tells the two apart
        kind(0.05).decode(message, SHAPES)
    with pytest.raises(BitstreamError, match="method"):
        whole.decode(per_tensor, SHAPES)


def test_identity_is_exact() -> None:
    x = update()
    _, decoded = Identity().roundtrip(x)
    assert all(np.array_equal(a, b) for a, b in zip(x, decoded, strict=True))
    varints = sum(1 if 4 * t.size < 128 else 2 for t in x)  # payload lengths 576, 64, 12800, 40, 4
    assert len(Identity().encode(x)) == 4 + varints + 4 * sum(t.size for t in x) + 4  # header, CRC


def test_topk_keeps_largest_magnitudes_exactly() -> None:
    x = update()
    _, decoded = TopK(0.05).roundtrip(x)
    for a, d in zip(x, decoded, strict=True):
        k = count_for(0.05, a.size)
        assert np.count_nonzero(d) == k
        kept = d != 0
        assert np.array_equal(d[kept], a[kept])
        assert np.abs(a[~kept]).max(initial=0) <= np.abs(a[kept]).min()


def test_stc_is_ternary_with_mean_magnitude() -> None:
    x = update()
    _, decoded = SparseTernary(0.05).roundtrip(x)
    for a, d in zip(x, decoded, strict=True):
        kept = d != 0
        assert len(np.unique(np.abs(d[kept]))) == 1
        assert np.isclose(np.abs(d[kept][0]), np.abs(a[kept]).mean(), rtol=1e-6)
        assert np.array_equal(np.sign(d[kept]), np.sign(a[kept]))


def test_sbc_payload_is_count_mean_and_positions_only() -> None:
    # the Rice parameter is not sent: both sides derive it from k and the size
    x = update()[2]
    payload = SparseBinary(0.02).encode_tensor(x)  # k = 64 of 3200
    decoded = SparseBinary(0.02).decode_tensor(payload, x.shape).reshape(-1)
    code, _ = encode_positions(np.flatnonzero(decoded), x.size)
    assert len(payload) == 1 + 4 + len(code)  # varint k < 128, float32 mean


def test_sbc_is_binary_one_sign() -> None:
    x = update()
    _, decoded = SparseBinary(0.05).roundtrip(x)
    for a, d in zip(x, decoded, strict=True):
        values = np.unique(d[d != 0])
        assert values.size == 1
        kept = d != 0
        assert np.isclose(values[0], a[kept].mean(), rtol=1e-6)


def test_cabac_levels_and_reconstruction() -> None:
    x = update()
    c = CabacQuantized(bits=2)
    _, decoded = c.roundtrip(x)
    for a, d in zip(x, decoded, strict=True):
        levels, step = c.levels(a)
        assert np.abs(levels).max() <= 1
        assert np.allclose(d, levels * np.float32(step))


def test_cabac_smaller_than_zlib_on_2bit_levels() -> None:
    x = [np.random.default_rng(3).normal(0, 1, (200, 200)).astype(np.float32)]
    c = CabacQuantized(bits=2)
    levels, _ = c.levels(x[0])
    packed = np.packbits(((levels.reshape(-1) + 1).astype(np.uint8)[:, None] >> np.array([1, 0])) & 1)
    assert len(c.encode(x)) < len(zlib.compress(packed.tobytes(), 9))


def test_cabac_previous_update_codes_the_same_levels_in_fewer_bytes() -> None:
    """Both sides move to the applied update after a round; the next update, correlated with it,
    decodes to exactly what ``cabac`` would send and costs fewer bytes."""
    rng = np.random.default_rng(4)
    drift = [rng.normal(0, 0.1, s).astype(np.float32) for s in SHAPES]
    first = [d + rng.normal(0, 0.05, d.shape).astype(np.float32) for d in drift]
    second = [d + rng.normal(0, 0.05, d.shape).astype(np.float32) for d in drift]
    sender = receiver = CabacPreviousUpdate(2)
    message, sent = sender.roundtrip(first)
    assert all(np.array_equal(a, b) for a, b in zip(receiver.decode(message, SHAPES), sent, strict=True))
    sender, receiver = sender.with_reference(sent), receiver.with_reference(sent)
    message = sender.encode(second)
    plain_message, plain = CabacQuantized(2).roundtrip(second)
    decoded = receiver.decode(message, SHAPES)
    assert all(np.array_equal(a, b) for a, b in zip(decoded, plain, strict=True))
    assert len(message) < 0.9 * len(plain_message)


def test_cabac_previous_update_refuses_a_reference_that_does_not_fit() -> None:
    c = CabacPreviousUpdate(2).with_reference(update()[:2])
    with pytest.raises(ConfigError, match="reference has shapes"):
        c.encode(update())
    with pytest.raises(ConfigError, match="reference has shapes"):
        c.decode(b"", SHAPES)


def test_cabac_previous_update_is_not_plain_cabac() -> None:
    message = CabacPreviousUpdate(2).encode(update())
    with pytest.raises(BitstreamError, match="method"):
        CabacQuantized(2).decode(message, SHAPES)
    assert isinstance(make_compressor("cabac-prev"), CabacPreviousUpdate)


def test_cabac_refuses_nan() -> None:
    x = update()
    x[0][0, 0, 0, 0] = np.nan
    with pytest.raises(TensorError, match="NaN"):
        CabacQuantized().encode(x)


@pytest.mark.parametrize("c", ALL, ids=lambda c: f"{c.name}")
def test_corrupted_payload_raises(c: Compressor) -> None:
    message = c.encode(update())
    for i in range(len(message)):
        bad = bytearray(message)
        bad[i] ^= 0x21
        with pytest.raises(BitstreamError):
            c.decode(bytes(bad), SHAPES)
    with pytest.raises(BitstreamError):
        c.decode(message[: len(message) // 2], SHAPES)
    with pytest.raises(BitstreamError):
        c.decode(b"", SHAPES)


def test_wrong_method_is_refused() -> None:
    message = SparseTernary(0.1).encode(update())
    with pytest.raises(BitstreamError, match="method"):
        SparseBinary(0.1).decode(message, SHAPES)


def test_tensor_payload_errors_without_checksum() -> None:
    """The per-tensor decoders validate on their own (the CRC is not their only guard)."""
    c = SparseTernary(0.1)
    payload = c.encode_tensor(update()[2])
    with pytest.raises(BitstreamError):
        c.decode_tensor(payload[:3], (64, 50))
    with pytest.raises(BitstreamError):
        c.decode_tensor(payload, (4, 4))


def test_bad_config() -> None:
    with pytest.raises(ConfigError):
        TopK(0.0)
    with pytest.raises(ConfigError):
        CabacQuantized(bits=1)
    with pytest.raises(ConfigError, match="unknown compressor"):
        make_compressor("zip")


@pytest.mark.parametrize("p", [0.1, 0.01, 0.0025, 0.001])
def test_golomb_matches_expected_length(p: float) -> None:
    rng = np.random.default_rng(int(p * 1e4))
    n = 400_000
    pos = np.flatnonzero(rng.random(n) < p)
    data, b = encode_positions(pos, n)
    assert b == optimal_rice_parameter(p)
    assert len(data) == math.ceil(position_bits(pos, n) / 8)
    measured = position_bits(pos, n) / pos.size
    assert measured == pytest.approx(expected_bits_per_position(p), rel=0.02)
    assert np.array_equal(decode_positions(data, count=pos.size, size=n, rice=b), pos)


def test_golomb_known_values() -> None:
    assert optimal_rice_parameter(0.01) == 6
    assert optimal_rice_parameter(0.001) == 9
    assert expected_bits_per_position(0.01) == pytest.approx(8.108, abs=1e-3)
    _, b = encode_positions(np.array([0, 6]), 8)
    assert b == optimal_rice_parameter(2 / 8)


@pytest.mark.parametrize("seed", range(5))
def test_golomb_random_roundtrip(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 5000))
    k = int(rng.integers(1, n + 1))
    pos = np.sort(rng.choice(n, size=k, replace=False))
    data, b = encode_positions(pos, n)
    assert np.array_equal(decode_positions(data, count=k, size=n, rice=b), pos)


def test_golomb_bad_input() -> None:
    with pytest.raises(ConfigError):
        encode_positions(np.array([3, 2]), 10)
    with pytest.raises(ConfigError):
        encode_positions(np.array([10]), 10)
    data, b = encode_positions(np.array([1, 500, 900]), 1000)
    with pytest.raises(BitstreamError):
        decode_positions(data, count=3, size=600, rice=b)
    with pytest.raises(BitstreamError):
        decode_positions(data[:1], count=3, size=1000, rice=b)


# --- nnsq-update: the change as an .nnsq update file of the model both sides hold -----------------


def _model(seed: int = 3) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    model = {"conv": rng.normal(0, 0.2, (16, 1, 3, 3)), "fc": rng.normal(0, 0.2, (64, 50))}
    model["bias"] = np.array([-0.0, 0.0, 1.5, -2.0])  # unchanged below, with a negative zero
    return {n: a.astype(np.float32) for n, a in model.items()}


def _change() -> list[np.ndarray]:
    rng = np.random.default_rng(4)
    return [
        rng.normal(0, 0.01, (16, 1, 3, 3)).astype(np.float32),
        rng.normal(0, 0.01, (64, 50)).astype(np.float32),
        np.zeros(4, np.float32),
    ]


def test_nnsq_update_message_is_the_update_file_of_the_model(tmp_path: Path) -> None:
    model = _model()
    ef = ErrorFeedback(NnsqUpdate(qp=-36).for_model(model))
    message, applied = ef.step(_change())
    assert ef.residual[1].std() < 0.01 / 4  # the step is 2**-9: the change is coded closely
    new_in_memory = {n: a + d for (n, a), d in zip(model.items(), applied, strict=True)}
    from_file = nnsqueeze.apply_update(message, [model])
    for n, want in new_in_memory.items():
        assert from_file[n].tobytes() == want.tobytes(), n  # bit for bit, the -0.0 included
    assert from_file["bias"].tobytes() == model["bias"].tobytes()
    # and from the command line, as a file next to the model
    base, update_file, out = tmp_path / "model.npz", tmp_path / "round.nnsq", tmp_path / "new.npz"
    np.savez(base, **model)
    update_file.write_bytes(message)
    assert main(["decompress", str(update_file), "--base", str(base), "-o", str(out)]) == 0
    with np.load(out) as restored:
        for n, want in new_in_memory.items():
            assert restored[n].tobytes() == want.tobytes(), n


def test_nnsq_update_refuses_another_model() -> None:
    message = NnsqUpdate().for_model(_model()).encode(_change())
    with pytest.raises(BaseMismatchError, match="updates the model with SHA-256"):
        NnsqUpdate().for_model(_model(seed=5)).decode(message, [a.shape for a in _model().values()])


def test_nnsq_update_needs_the_model_of_the_change() -> None:
    with pytest.raises(ConfigError, match="for_model"):
        NnsqUpdate().encode(_change())
    shapes = [a.shape for a in _model().values()]
    with pytest.raises(ConfigError, match="the model has shapes"):
        NnsqUpdate().for_model(_model()).decode(b"", shapes[:2])
    with pytest.raises(ConfigError, match="whole models"):
        NnsqUpdate().for_model(_model()).encode_tensor(_change()[0])


def test_nnsq_update_refuses_files_that_are_not_a_change_of_the_model() -> None:
    model = _model()
    shapes = [a.shape for a in model.values()]
    coder = NnsqUpdate().for_model(model)
    full = nnsqueeze.compress(model).data
    assert full is not None
    with pytest.raises(BaseMismatchError, match="full model, not an update"):
        coder.decode(full, shapes)
    renamed = {("renamed" if n == "fc" else n): a + 0.5 for n, a in model.items()}  # fc comes standalone
    other = nnsqueeze.compress_update(renamed, [model]).data
    assert other is not None
    with pytest.raises(BitstreamError, match="the update has tensors"):
        coder.decode(other, shapes)
    standalone = nnsqueeze.compress_update({**model, "fc": model["fc"][:32]}, [model]).data
    assert standalone is not None
    with pytest.raises(BitstreamError, match="stores tensor 'fc' as standalone"):
        coder.decode(standalone, shapes)


def test_nnsq_update_by_name_takes_its_step() -> None:
    coder = make_compressor("nnsq-update", qp=-30)
    assert isinstance(coder, NnsqUpdate)
    assert coder.qp == -30
    assert make_compressor("nnsq-update").for_model(_model()) != coder  # qp differs; the model is state
