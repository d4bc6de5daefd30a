"""Flower Mod and Strategy: in-process round trips, and a real SuperLink with two SuperNodes."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("flwr")

from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Error, Message, MetricRecord, RecordDict
from flwr.serverapp.strategy import FedAvg
from flwr.supercore.task_identity import TaskIdentity

import nnsqueeze
from nnsqueeze.errors import (
    BaseMismatchError,
    BitstreamError,
    ConfigError,
    MissingDependencyError,
    TensorError,
)
from nnsqueeze.fl.compressors import SparseTernary, TopK
from nnsqueeze.fl.flower import (
    GLOBAL_KEY,
    GLOBAL_VERSION_KEY,
    PAYLOAD_KEY,
    RESIDUAL_KEY,
    CompressedFedAvg,
    make_compression_mod,
)
from nnsqueeze.fl.simulation import fedavg

SHAPES = {"w": (12, 10), "b": (10,)}
APP = Path(__file__).parent / "flower_app"


@pytest.fixture(autouse=True)
def task_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    # Outside a run Flower refuses to create instruction messages (FedAvg.configure_train does):
    # the ids a SuperLink would assign live in this internal class.
    monkeypatch.setattr(TaskIdentity, "_run_id", 1)
    monkeypatch.setattr(TaskIdentity, "_node_id", 0)
    monkeypatch.setattr(TaskIdentity, "_task_id", 1)


class _Grid:
    """What FedAvg.configure_train asks of a Grid: the connected nodes."""

    def __init__(self, nodes: tuple[int, ...] = (1, 2)) -> None:
        self.nodes = list(nodes)

    def get_node_ids(self) -> list[int]:
        return self.nodes


def _arrays(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {k: rng.normal(size=s).astype(np.float32) for k, s in SHAPES.items()}


def _record(arrays: dict[str, np.ndarray]) -> ArrayRecord:
    return ArrayRecord({k: Array(v) for k, v in arrays.items()})


def _context(node_id: int) -> Context:
    return Context(run_id=1, node_id=node_id, node_config={}, state=RecordDict(), run_config={})


def _trainer(local: dict[str, np.ndarray], examples: int) -> Callable[[Message, Context], Message]:
    """A train handler that replies with ``local`` as its model."""

    def train(msg: Message, ctx: Context) -> Message:
        metrics = MetricRecord({"num-examples": examples, "train-loss": float(examples) / 10})
        content = RecordDict({"arrays": _record(local), "metrics": metrics})
        return Message(content=content, reply_to=msg)

    return train


def _round(
    strategy: FedAvg,
    global_arrays: dict[str, np.ndarray],
    locals_: list[dict[str, np.ndarray]],
    mod: Callable[..., Message] | None,
    contexts: list[Context] | None = None,
    server_round: int = 1,
) -> list[Message]:
    """One train round up to the replies: configure_train, then each node's handler (through ``mod``)."""
    messages = strategy.configure_train(server_round, _record(global_arrays), ConfigRecord(), _Grid())
    messages = sorted(messages, key=lambda m: m.metadata.dst_node_id)  # FedAvg samples in random order
    contexts = contexts or [_context(m.metadata.dst_node_id) for m in messages]
    replies = []
    for msg, ctx, local, examples in zip(messages, contexts, locals_, (30, 10), strict=True):
        handler = _trainer(local, examples)
        replies.append(handler(msg, ctx) if mod is None else mod(msg, ctx, handler))
    return replies


def _as_numpy(record: ArrayRecord) -> dict[str, np.ndarray]:
    return {k: a.numpy() for k, a in record.items()}


def test_identity_compressor_gives_plain_fedavg() -> None:
    g, locals_ = _arrays(0), [_arrays(1), _arrays(2)]
    plain = FedAvg()
    expected, expected_metrics = plain.aggregate_train(1, _round(plain, g, locals_, None))
    strategy = CompressedFedAvg("identity")
    replies = _round(strategy, g, locals_, make_compression_mod("identity"))
    arrays, metrics = strategy.aggregate_train(1, replies)
    assert arrays is not None
    assert expected is not None
    assert metrics is not None
    got, want = _as_numpy(arrays), _as_numpy(expected)
    assert list(got) == list(want)
    for k in want:
        assert got[k].dtype == np.float32
        np.testing.assert_allclose(got[k], want[k], rtol=0, atol=1e-6)
    assert metrics["train-loss"] == pytest.approx(expected_metrics["train-loss"])
    dense = sum(a.nbytes for a in g.values())
    assert metrics["dense-bytes-up"] == dense
    assert dense < metrics["bytes-up"] < dense + 16  # framing: magic, ids, lengths, CRC


def test_stc_replies_carry_bytes_and_average_the_decoded_deltas() -> None:
    g, locals_ = _arrays(0), [_arrays(1), _arrays(2)]
    strategy = CompressedFedAvg("stc")
    replies = _round(strategy, g, locals_, make_compression_mod("stc", sparsity=0.1))
    for reply in replies:
        (record,) = reply.content.array_records.values()
        assert list(record) == [PAYLOAD_KEY]
        assert record[PAYLOAD_KEY].stype == "nnsqueeze/stc"
        (metrics,) = reply.content.metric_records.values()
        assert metrics["bytes-up"] == len(record[PAYLOAD_KEY].data)
        assert 10 * metrics["bytes-up"] < metrics["dense-bytes-up"]
    arrays, _ = strategy.aggregate_train(1, replies)
    assert arrays is not None
    # the oracle: the clients' own STC round trips, averaged 30:10 by num-examples
    sent = [SparseTernary(0.1).roundtrip([loc[k] - g[k] for k in SHAPES])[1] for loc in locals_]
    mean = fedavg(sent, [30, 10])
    for (k, got), d in zip(_as_numpy(arrays).items(), mean, strict=True):
        np.testing.assert_allclose(got, g[k] + d, atol=1e-6)


def _flip_a_byte(reply: Message) -> None:
    (record,) = reply.content.array_records.values()
    data = bytearray(record[PAYLOAD_KEY].data)
    data[len(data) // 2] ^= 0x40
    record[PAYLOAD_KEY] = Array(dtype="uint8", shape=(len(data),), stype="nnsqueeze/topk", data=bytes(data))


def _nan_update(reply: Message) -> None:
    (record,) = reply.content.array_records.values()
    message = TopK(0.1).encode([np.full(s, np.nan, np.float32) for s in SHAPES.values()])
    record[PAYLOAD_KEY] = Array(dtype="uint8", shape=(len(message),), stype="nnsqueeze/topk", data=message)


def _dense_arrays(reply: Message) -> None:
    (key,) = reply.content.array_records
    reply.content[key] = _record(_arrays(5))


def _no_weight(reply: Message) -> None:
    (metrics,) = reply.content.metric_records.values()
    del metrics["num-examples"]


def _oversized(reply: Message) -> None:
    (record,) = reply.content.array_records.values()
    data = bytes(200_000)
    record[PAYLOAD_KEY] = Array(dtype="uint8", shape=(len(data),), stype="nnsqueeze/topk", data=data)


def _weight(value: float) -> Callable[[Message], None]:
    def corrupt(reply: Message) -> None:
        (metrics,) = reply.content.metric_records.values()
        metrics["num-examples"] = value

    return corrupt


def _round_number(value: int) -> Callable[[Message], None]:
    def corrupt(reply: Message) -> None:
        (metrics,) = reply.content.metric_records.values()
        metrics["server-round"] = value

    return corrupt


def _no_round(reply: Message) -> None:
    (metrics,) = reply.content.metric_records.values()
    del metrics["server-round"]


@pytest.mark.parametrize(
    ("corrupt", "reason"),
    [
        (_flip_a_byte, "update message checksum mismatch"),
        (_nan_update, "non-finite values in w, b"),
        (_dense_arrays, "expected one array 'update' of stype 'nnsqueeze/topk'"),
        (_no_weight, "'num-examples' must be a positive finite number"),
        (_weight(float("inf")), "'num-examples' must be a positive finite number up to 9.0072e+15, got inf"),
        (_weight(float("nan")), "'num-examples' must be a positive finite number up to 9.0072e+15, got nan"),
        (_weight(-3), "'num-examples' must be a positive finite number up to 9.0072e+15, got -3"),
        (_weight(1e30), "'num-examples' must be a positive finite number up to 9.0072e+15, got 1e+30"),
        (_oversized, "update message of 200000 bytes exceeds 66576 bytes"),
        (_round_number(2), "a reply to round 2, not to the current round 3 (stale)"),
        (_no_round, "a reply to round None, not to the current round 3 (stale)"),
    ],
)
def test_a_bad_reply_is_excluded_with_its_reason(
    corrupt: Callable[[Message], None], reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    g, locals_ = _arrays(0), [_arrays(1), _arrays(2)]
    strategy = CompressedFedAvg("topk")
    replies = _round(strategy, g, locals_, make_compression_mod("topk", sparsity=0.1), server_round=3)
    corrupt(replies[1])
    with caplog.at_level(logging.WARNING, logger="nnsqueeze.fl"):
        arrays, metrics = strategy.aggregate_train(3, replies)
    assert arrays is not None
    assert metrics is not None
    assert f"round 3: node 2 excluded: {reason}" in caplog.text
    # only node 1's update is applied
    sent = TopK(0.1).roundtrip([locals_[0][k] - g[k] for k in SHAPES])[1]
    for (k, got), d in zip(_as_numpy(arrays).items(), sent, strict=True):
        np.testing.assert_allclose(got, g[k] + d, atol=1e-6)


def test_a_replayed_reply_and_an_update_beyond_the_norm_bound_are_excluded(
    caplog: pytest.LogCaptureFixture,
) -> None:
    g, locals_ = _arrays(0), [_arrays(1), _arrays(2)]
    strategy = CompressedFedAvg("topk", max_update_norm=1e6)
    replies = _round(strategy, g, locals_, make_compression_mod("topk", sparsity=0.1), server_round=3)
    with caplog.at_level(logging.WARNING, logger="nnsqueeze.fl"):
        strategy.aggregate_train(3, [*replies, replies[0]])
    assert "round 3: node 1 excluded: a second reply in one round (replayed?)" in caplog.text

    bounded = CompressedFedAvg("topk", max_update_norm=1e-3)
    replies = _round(bounded, g, locals_, make_compression_mod("topk", sparsity=0.1), server_round=3)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="nnsqueeze.fl"):
        assert bounded.aggregate_train(3, replies) == (None, None)
    assert "exceeds max_update_norm 0.001" in caplog.text
    with pytest.raises(ConfigError, match="max_update_norm"):
        CompressedFedAvg("topk", max_update_norm=float("inf"))
    with pytest.raises(ConfigError, match="aggregate_train before configure_train"):
        CompressedFedAvg("topk").aggregate_train(1, replies)


def test_error_replies_are_excluded_and_no_usable_reply_keeps_the_model(
    caplog: pytest.LogCaptureFixture,
) -> None:
    strategy = CompressedFedAvg("stc")
    messages = list(strategy.configure_train(1, _record(_arrays(0)), ConfigRecord(), _Grid()))
    replies = [Message(Error(code=0, reason="client crashed"), reply_to=m) for m in messages]
    with caplog.at_level(logging.WARNING, logger="nnsqueeze.fl"):
        assert strategy.aggregate_train(1, replies) == (None, None)
    assert "node 1 excluded: error reply: client crashed" in caplog.text
    assert "round 1: no usable update; the global model is unchanged" in caplog.text


def test_error_feedback_residual_persists_in_the_context_state() -> None:
    g = _arrays(0)
    strategy = CompressedFedAvg("topk")
    mod = make_compression_mod("topk", sparsity=0.05)
    contexts = [_context(1), _context(2)]
    residual_before = dict.fromkeys(SHAPES, np.float32(0))
    for rnd in range(2):
        locals_ = [_arrays(10 + rnd), _arrays(20 + rnd)]
        replies = _round(strategy, g, locals_, mod, contexts)
        (record,) = replies[0].content.array_records.values()
        sent = strategy.compressor.decode(record[PAYLOAD_KEY].data, list(SHAPES.values()))
        residual = _as_numpy(contexts[0].state[RESIDUAL_KEY])
        assert list(residual) == list(SHAPES)
        for (k, r), s in zip(residual.items(), sent, strict=True):
            # error feedback: what is sent plus what is kept = this delta plus what was kept before
            np.testing.assert_allclose(s + r, locals_[0][k] - g[k] + residual_before[k], atol=1e-5)
        residual_before = residual


def test_without_error_feedback_nothing_is_stored() -> None:
    ctx = _context(1)
    _round(
        CompressedFedAvg("stc"),
        _arrays(0),
        [_arrays(1), _arrays(2)],
        make_compression_mod("stc", error_feedback=False),
        [ctx, _context(2)],
    )
    assert RESIDUAL_KEY not in ctx.state


def test_a_non_finite_local_model_raises_and_keeps_the_residual_clean() -> None:
    g, ctx = _arrays(0), _context(1)
    bad = _arrays(1)
    bad["w"][0, 0] = np.inf
    with pytest.raises(TensorError, match="NaN/Inf"):
        _round(CompressedFedAvg("stc"), g, [bad, _arrays(2)], make_compression_mod("stc"), [ctx, _context(2)])
    assert RESIDUAL_KEY not in ctx.state


def test_evaluate_messages_pass_through() -> None:
    strategy = FedAvg()
    (msg, _) = strategy.configure_evaluate(1, _record(_arrays(0)), ConfigRecord(), _Grid())
    reply = _trainer(_arrays(1), 5)(msg, _context(1))
    assert make_compression_mod("stc")(msg, _context(1), lambda m, c: reply) is reply
    assert reply.content["arrays"]["w"].stype == "numpy.ndarray"


# --- downstream: the compressed broadcast ------------------------------------------------------------


class _DownRound:
    """One train round with ``downstream``: what each node's handler was given, and the replies."""

    def __init__(
        self,
        strategy: CompressedFedAvg,
        arrays: ArrayRecord,
        rnd: int,
        contexts: dict[int, Context],
        nodes: tuple[int, ...] = (1, 2),
        upload: str = "stc",
    ) -> None:
        self.upload = upload
        self.sent = sorted(
            strategy.configure_train(rnd, arrays, ConfigRecord(), _Grid(nodes)),
            key=lambda m: m.metadata.dst_node_id,
        )
        self.stypes = {m.metadata.dst_node_id: _stype(m) for m in self.sent}
        self.chains = {m.metadata.dst_node_id: _chain(m) for m in self.sent}  # the compressed messages
        self.given: dict[int, dict[str, np.ndarray]] = {}
        self.replies = [self._train(m, contexts, rnd) for m in self.sent]

    def _train(self, msg: Message, contexts: dict[int, Context], rnd: int) -> Message:
        node = msg.metadata.dst_node_id

        def train(m: Message, ctx: Context) -> Message:
            assert list(m.content.config_records) == ["config"]  # the handler sees a plain message
            self.given[node] = given = _as_numpy(m.content["arrays"])
            step = _arrays(10 * rnd + node)
            return _trainer({k: given[k] + 0.1 * step[k] for k in SHAPES}, 10 * node)(m, ctx)

        return make_compression_mod(self.upload, sparsity=0.1, qp=-32)(msg, contexts[node], train)


def _stype(msg: Message) -> str:
    (record,) = msg.content.array_records.values()
    return next(iter(record.values())).stype


def _chain(msg: Message) -> dict[str, bytes]:
    """The compressed broadcast's messages by the version each makes; empty for a dense model."""
    (record,) = msg.content.array_records.values()
    return {k: a.data for k, a in record.items() if a.stype.startswith("nnsqueeze-down/")}


def _metric(reply: Message, key: str) -> float:
    (metrics,) = reply.content.metric_records.values()
    value = metrics[key]
    assert isinstance(value, int | float)
    return value


DENSE_BYTES = sum(4 * int(np.prod(s)) for s in SHAPES.values())


def test_downstream_clients_rebuild_the_servers_model_exactly() -> None:
    strategy = CompressedFedAvg("stc", downstream="stc", downstream_sparsity=0.1)
    contexts = {n: _context(n) for n in (1, 2)}
    arrays = _record(_arrays(0))
    for rnd in (1, 2, 3):
        r = _DownRound(strategy, arrays, rnd, contexts)
        assert set(r.stypes.values()) == {"numpy.ndarray" if rnd == 1 else "nnsqueeze-down/stc"}
        for node, given in r.given.items():
            for k, want in _as_numpy(arrays).items():
                np.testing.assert_array_equal(given[k], want)  # bit-identical, not close
            np.testing.assert_array_equal(_as_numpy(contexts[node].state[GLOBAL_KEY])["w"], given["w"])
        for reply in r.replies:
            if rnd == 1:
                assert _metric(reply, "bytes-down") == DENSE_BYTES
            else:
                assert 10 * _metric(reply, "bytes-down") < DENSE_BYTES
        new, _ = strategy.aggregate_train(rnd, r.replies)
        assert new is not None
        change = _as_numpy(new)["w"] - _as_numpy(arrays)["w"]
        assert np.count_nonzero(change) == 12  # STC at 10 % of 120: the model moves by the broadcast
        arrays = new


def test_downstream_whole_model_broadcast_is_decoded_as_whole_model() -> None:
    # the Mod reads per-tensor or whole-model from each message's method byte
    strategy = CompressedFedAvg("stc", downstream=SparseTernary(0.1, whole_model=True))
    contexts = {n: _context(n) for n in (1, 2)}
    arrays = _record(_arrays(0))
    for rnd in (1, 2, 3):
        r = _DownRound(strategy, arrays, rnd, contexts)
        for given in r.given.values():
            for k, want in _as_numpy(arrays).items():
                np.testing.assert_array_equal(given[k], want)
        new, _ = strategy.aggregate_train(rnd, r.replies)
        assert new is not None
        moved = sum(np.count_nonzero(_as_numpy(new)[k] - _as_numpy(arrays)[k]) for k in SHAPES)
        assert moved == 13  # one selection of 10 % over all 130 entries
        arrays = new


def test_downstream_a_node_that_missed_rounds_gets_the_chain_of_changes() -> None:
    strategy = CompressedFedAvg(
        "stc", downstream="stc", downstream_sparsity=0.1, min_train_nodes=1, min_available_nodes=1
    )
    contexts = {n: _context(n) for n in (1, 2, 3, 4)}
    arrays = _record(_arrays(0))
    sent: dict[str, bytes] = {}  # every change of the global model, as node 1 (in every round) got it
    for rnd, nodes, chains in [
        (1, (1, 2, 3), {1: [], 2: [], 3: []}),  # version 1, dense
        (2, (1,), {1: ["2"]}),
        (3, (1, 2), {1: ["3"], 2: ["2", "3"]}),  # 2 missed round 2
        (4, (1, 2, 3, 4), {1: ["4"], 2: ["4"], 3: ["2", "3", "4"], 4: []}),  # 3 missed two, 4 is new
    ]:
        r = _DownRound(strategy, arrays, rnd, contexts, nodes)
        assert {n: list(c) for n, c in r.chains.items()} == chains
        sent |= r.chains[1]
        for node, given in r.given.items():
            for k, want in _as_numpy(arrays).items():
                np.testing.assert_array_equal(given[k], want)  # bit-identical after the whole chain
            assert r.chains[node] == {v: sent[v] for v in chains[node]}  # the messages exactly as sent
        for node, reply in zip(r.chains, r.replies, strict=True):
            size = sum(map(len, r.chains[node].values())) or DENSE_BYTES
            assert _metric(reply, "bytes-down") == size
        new, _ = strategy.aggregate_train(rnd, r.replies)
        assert new is not None
        arrays = new
    assert 0 < len(b"".join(sent[v] for v in "234")) < DENSE_BYTES


@pytest.mark.parametrize(
    "options",
    [
        {"downstream": "topk", "downstream_sparsity": 0.5},  # one change is 290 bytes, two are more than 520
        {"downstream": "stc", "downstream_sparsity": 0.1, "max_cached_versions": 1},
    ],
)
def test_downstream_a_chain_that_is_not_kept_is_sent_dense(options: dict[str, Any]) -> None:
    strategy = CompressedFedAvg("stc", min_train_nodes=1, min_available_nodes=1, **options)
    contexts = {n: _context(n) for n in (1, 2)}
    arrays = _record(_arrays(0))
    for rnd, nodes in [(1, (1, 2)), (2, (1,)), (3, (1, 2))]:
        r = _DownRound(strategy, arrays, rnd, contexts, nodes)
        new, _ = strategy.aggregate_train(rnd, r.replies)
        assert new is not None
        arrays = new
    assert {n: list(c) for n, c in r.chains.items()} == {1: ["3"], 2: []}  # 2 missed round 2
    assert len(r.chains[1]["3"]) < DENSE_BYTES
    assert _metric(r.replies[1], "bytes-down") == DENSE_BYTES
    np.testing.assert_array_equal(r.given[2]["w"], r.given[1]["w"])


def test_max_cached_versions_must_be_positive() -> None:
    with pytest.raises(ConfigError, match="max_cached_versions must be at least 1"):
        CompressedFedAvg("stc", downstream="stc", max_cached_versions=0)


def test_downstream_a_failed_node_gets_the_dense_model_next() -> None:
    strategy = CompressedFedAvg("stc", downstream="stc", downstream_sparsity=0.1)
    contexts = {n: _context(n) for n in (1, 2)}
    r = _DownRound(strategy, _record(_arrays(0)), 1, contexts)
    r.replies[1] = Message(Error(code=0, reason="client crashed"), reply_to=r.sent[1])
    arrays, _ = strategy.aggregate_train(1, r.replies)
    assert arrays is not None
    assert list(_DownRound(strategy, arrays, 2, contexts).stypes.values()) == [
        "nnsqueeze-down/stc",
        "numpy.ndarray",
    ]


def _flip_a_payload_byte(msg: Message, ctx: Context) -> None:
    (record,) = msg.content.array_records.values()
    data = bytearray(record["2"].data)
    data[len(data) // 2] ^= 0x40
    record["2"] = Array(dtype="uint8", shape=(len(data),), stype=_stype(msg), data=bytes(data))


def _reorder(keys: list[str]) -> Callable[[Message, Context], None]:
    """Keeps only the messages ``keys`` of the chain, in that order."""

    def corrupt(msg: Message, ctx: Context) -> None:
        ((name, record),) = msg.content.array_records.items()
        msg.content[name] = ArrayRecord({k: record[k] for k in keys})

    return corrupt


def _forget_the_model(msg: Message, ctx: Context) -> None:
    del ctx.state[GLOBAL_KEY]


def _hold_another_version(msg: Message, ctx: Context) -> None:
    ctx.state[GLOBAL_VERSION_KEY] = ConfigRecord({"version": 7})


def _hold_another_model(msg: Message, ctx: Context) -> None:
    ctx.state[GLOBAL_KEY] = _record(_arrays(9))


@pytest.mark.parametrize(
    ("corrupt", "reason"),
    [
        (_flip_a_payload_byte, "change to global model 2: update message checksum mismatch"),
        (_reorder(["3"]), "has the change to '3' where the change to 2 belongs"),
        (_reorder(["3", "2"]), "has the change to '3' where the change to 2 belongs"),
        (_reorder(["2"]), "ends at global model 2, but the header says 3"),
        (_forget_the_model, "updates global model 1, but this node holds no global model"),
        (_hold_another_version, "updates global model 1; this node holds 7"),
        (_hold_another_model, "does not match the server's"),
    ],
)
def test_downstream_a_broadcast_that_does_not_apply_raises(
    corrupt: Callable[[Message, Context], None], reason: str
) -> None:
    strategy = CompressedFedAvg(
        "stc", downstream="stc", downstream_sparsity=0.1, min_train_nodes=1, min_available_nodes=1
    )
    contexts = {n: _context(n) for n in (1, 2)}
    arrays = _record(_arrays(0))
    for rnd, nodes in [(1, (1, 2)), (2, (1,))]:
        new, _ = strategy.aggregate_train(rnd, _DownRound(strategy, arrays, rnd, contexts, nodes).replies)
        assert new is not None
        arrays = new
    (msg,) = strategy.configure_train(3, arrays, ConfigRecord(), _Grid((2,)))
    assert list(_chain(msg)) == ["2", "3"]  # node 2 holds version 1
    corrupt(msg, contexts[2])
    with pytest.raises(BitstreamError, match=reason):
        make_compression_mod("stc")(msg, contexts[2], _trainer(_arrays(1), 10))


@pytest.mark.parametrize("upload", ["stc", "nnsq-update"])
def test_downstream_nnsq_update_each_change_is_the_update_file_of_the_last_model(
    upload: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a model large enough that two update files (about 300 bytes of container each) stay below it
    monkeypatch.setattr(sys.modules[__name__], "SHAPES", {"w": (40, 30), "b": (30,)})
    strategy = CompressedFedAvg(
        upload, downstream="nnsq-update", qp=-32, min_train_nodes=1, min_available_nodes=1
    )
    contexts = {n: _context(n) for n in (1, 2)}
    arrays = _record(_arrays(0))
    previous: dict[str, np.ndarray] = {}
    for rnd, nodes, chains in [
        (1, (1, 2), {1: [], 2: []}),
        (2, (1, 2), {1: ["2"], 2: ["2"]}),
        (3, (1,), {1: ["3"]}),
        (4, (1, 2), {1: ["4"], 2: ["3", "4"]}),  # 2 missed round 3
    ]:
        r = _DownRound(strategy, arrays, rnd, contexts, nodes, upload)
        assert {n: list(c) for n, c in r.chains.items()} == chains
        for given in r.given.values():
            for k, want in _as_numpy(arrays).items():
                np.testing.assert_array_equal(given[k], want)  # bit-identical after the whole chain
        if rnd > 1:  # the change that made this round's model is an .nnsq update of the last one
            (message,) = r.chains[1].values()
            rebuilt = nnsqueeze.apply_update(message, [previous])
            for k, want in _as_numpy(arrays).items():
                assert rebuilt[k].tobytes() == want.tobytes()
            assert len(message) < 4 * 1230 / 2
        new, _ = strategy.aggregate_train(rnd, r.replies)
        assert new is not None
        previous, arrays = _as_numpy(arrays), new
        assert any(not np.array_equal(previous[k], _as_numpy(arrays)[k]) for k in SHAPES)


def test_downstream_nnsq_update_to_a_node_with_another_model_fails_on_the_base_hash() -> None:
    strategy = CompressedFedAvg("stc", downstream="nnsq-update", min_train_nodes=1, min_available_nodes=1)
    contexts = {n: _context(n) for n in (1, 2)}
    arrays = _record(_arrays(0))
    new, _ = strategy.aggregate_train(1, _DownRound(strategy, arrays, 1, contexts).replies)
    assert new is not None
    (msg,) = strategy.configure_train(2, new, ConfigRecord(), _Grid((2,)))
    assert list(_chain(msg)) == ["2"]
    _hold_another_model(msg, contexts[2])
    with pytest.raises(BaseMismatchError, match="updates the model with SHA-256"):
        make_compression_mod("stc")(msg, contexts[2], _trainer(_arrays(1), 10))


def test_cabac_prev_is_refused() -> None:
    with pytest.raises(ConfigError, match="cabac-prev"):
        CompressedFedAvg("stc", downstream="cabac-prev")
    with pytest.raises(ConfigError, match="cabac-prev"):
        CompressedFedAvg("cabac-prev")
    with pytest.raises(ConfigError, match="cabac-prev"):
        make_compression_mod("cabac-prev")


def test_missing_flower_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "flwr.app", None)  # makes `import flwr.app` fail
    monkeypatch.delitem(sys.modules, "nnsqueeze.fl.flower")
    with pytest.raises(MissingDependencyError, match=r'pip install "nnsqueeze\[flower\]"'):
        import nnsqueeze.fl.flower  # noqa: F401


# --- deployment: flower-superlink, two flower-supernodes and `flwr run`, all on 127.0.0.1 -------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"flower-superlink exited with {proc.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise TimeoutError(f"flower-superlink did not listen on {port} within {timeout} s")


@pytest.fixture
def flower_env(tmp_path: Path) -> dict[str, str]:
    """A private FLWR_HOME, no telemetry and no update check (the test runs offline)."""
    home = tmp_path / "flwr_home"
    home.mkdir()
    return {
        **os.environ,
        "FLWR_HOME": str(home),
        "FLWR_TELEMETRY_ENABLED": "0",
        "FLWR_DISABLE_UPDATE_CHECK": "1",
    }


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """Starts Flower daemons in their own process groups and always stops them (and their children)."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        exe = str(Path(sys.executable).parent / name)
        with (tmp_path / f"{name}-{len(procs)}.log").open("wb") as log:
            proc = subprocess.Popen(
                [exe, *args], stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        procs.append(proc)
        return proc

    try:
        yield start
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def _logs(tmp_path: Path) -> str:
    return "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in sorted(tmp_path.glob("*.log")))


@pytest.mark.slow  # about 45 s: each round starts a ClientApp process (torch import) per SuperNode
def test_deployment_two_supernodes_compress_both_directions(
    tmp_path: Path, flower_env: dict[str, str], spawn: Callable[..., subprocess.Popen[bytes]]
) -> None:
    port = _free_port()
    superlink = spawn(
        "flower-superlink",
        ["--insecure", "--disable-runtime-dependency-installation", "--port", str(port)],
        flower_env,
    )
    for i in range(2):
        args = ["--insecure", "--superlink", f"127.0.0.1:{port}", "--port", str(_free_port())]
        spawn("flower-supernode", [*args, "--node-config", f"partition-id={i} num-partitions=2"], flower_env)
    _wait_for_port(port, superlink, timeout=30)
    (Path(flower_env["FLWR_HOME"]) / "config.toml").write_text(
        f'[superlink]\ndefault = "test"\n\n[superlink.test]\naddress = "127.0.0.1:{port}"\ninsecure = true\n'
    )
    result_path = tmp_path / "result.json"
    flwr = str(Path(sys.executable).parent / "flwr")
    command = [flwr, "run", str(APP), "test", "--stream", "--run-config", f'result-path="{result_path}"']
    run = subprocess.run(command, env=flower_env, capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 0, run.stdout + run.stderr + _logs(tmp_path)
    assert result_path.exists(), run.stdout + _logs(tmp_path)
    summary = json.loads(result_path.read_text())
    assert sorted(summary["train"]) == ["1", "2"]
    for metrics in summary["train"].values():
        assert 0 < 20 * metrics["bytes-up"] < metrics["dense-bytes-up"]
    # downstream: the dense model in round 1, then the compressed change (both nodes hold round 1's)
    dense = summary["train"]["1"]["dense-bytes-up"]
    assert summary["train"]["1"]["bytes-down"] == dense
    assert 0 < 20 * summary["train"]["2"]["bytes-down"] < dense
