"""Flower integration: clients upload compressed update bytes, the server decodes them before averaging.

Two pieces, used together (``pip install "nnsqueeze[flower]"``):

* :func:`make_compression_mod` builds a client Mod, ``mod(msg, ctx, call_next)``.  It runs the train
  handler, takes ``local - global`` per array, adds the error-feedback residual (kept in ``ctx.state``
  across rounds, as ``.npy`` arrays, never pickled), and replaces the reply's ArrayRecord with a single
  :class:`flwr.app.Array` of ``stype`` ``"nnsqueeze/<compressor>"`` holding one update message of
  :mod:`nnsqueeze.fl.compressors`.  It adds ``bytes-up`` (the message) and ``dense-bytes-up`` (the
  float arrays it replaces) to the reply's MetricRecord.
* :class:`CompressedFedAvg` is FedAvg whose ``aggregate_train`` decodes every reply against the global
  arrays it sent (names, shapes and dtypes never travel), excludes replies that are errors, malformed,
  corrupt or non-finite with a logged reason, and returns ``global + sum_i w_i delta_i`` with
  ``w_i`` proportional to ``num-examples``.

Downstream: ``CompressedFedAvg(..., downstream="stc")`` compresses the broadcast too, as STC does
(``downstream="nnsq-update"``: each change is an ``.nnsq`` update file of the previous global model).
The server compresses each round's change of the global model (with its own error-feedback residual)
and applies the *decoded* change to its copy, so server and clients hold bit-identical models.  It keeps
the recent messages (STC's update caching) while their total stays below the dense model's size.  A node
that confirmed an older version (a usable reply in the round that produced it) is sent the chain of
messages from there to the current version when all are kept; any other node (new, failed, too far
behind) is sent the dense model.  The Mod applies the chain to the model it kept in ``ctx.state``
(``.npy``), checks versions and checksum, and hands the train handler an ordinary ArrayRecord;
``bytes-down`` (the chain's size) goes in the reply metrics.

Evaluate and query messages pass through the Mod unchanged (evaluate messages carry the dense model).

>>> from flwr.clientapp import ClientApp  # doctest: +SKIP
>>> app = ClientApp(mods=[make_compression_mod("stc", sparsity=0.01)])  # doctest: +SKIP
>>> strategy = CompressedFedAvg("stc", fraction_evaluate=0.0)  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Iterable
from typing import Any

import numpy as np

from nnsqueeze.errors import BitstreamError, ConfigError, MissingDependencyError, NnsqueezeError, TensorError
from nnsqueeze.fl.compressors import WHOLE_MODEL, CabacPreviousUpdate, Compressor, make_compressor
from nnsqueeze.fl.error_feedback import ErrorFeedback
from nnsqueeze.fl.screening import DEFAULT_MAX_NUM_EXAMPLES, ReplyScreen, check_bounds
from nnsqueeze.fl.simulation import fedavg
from nnsqueeze.update import DEFAULT_UPDATE_QP

try:
    from flwr.app import (
        Array,
        ArrayRecord,
        ConfigRecord,
        Context,
        Message,
        MessageType,
        MetricRecord,
        RecordDict,
    )
    from flwr.clientapp.typing import ClientAppCallable, Mod
    from flwr.serverapp import Grid
    from flwr.serverapp.strategy import FedAvg
except ImportError as exc:  # the module is the Flower extra; say how to get it
    msg = 'nnsqueeze.fl.flower needs Flower: pip install "nnsqueeze[flower]"'
    raise MissingDependencyError(msg) from exc

log = logging.getLogger("nnsqueeze.fl")

STYPE_PREFIX = "nnsqueeze/"
PAYLOAD_KEY = "update"
RESIDUAL_KEY = "nnsqueeze-residual"
DOWN_STYPE_PREFIX = "nnsqueeze-down/"  # a compressed broadcast: one Array per change, keyed by its version
DOWN_KEY = "nnsqueeze-down"  # the ConfigRecord of a downstream train message: version, crc (base, bits)
GLOBAL_KEY = "nnsqueeze-global"  # ctx.state: the global arrays this node holds
GLOBAL_VERSION_KEY = "nnsqueeze-global-version"  # ctx.state: their version
ROUND_KEY = "server-round"  # FedAvg's train config; the Mod echoes it in the reply's metrics


def _the_array_record(content: RecordDict, what: str) -> tuple[str, ArrayRecord]:
    records = content.array_records
    if len(records) != 1:
        msg = f"{what} must hold exactly one ArrayRecord, found {len(records)}"
        raise ConfigError(msg)
    return next(iter(records.items()))


def _the_metric_record(content: RecordDict, what: str) -> MetricRecord:
    records = content.metric_records
    if len(records) != 1:
        msg = f"{what} must hold exactly one MetricRecord (with num-examples), found {len(records)}"
        raise ConfigError(msg)
    return next(iter(records.values()))


def _codec(compressor: str | Compressor, sparsity: float, bits: int, qp: int) -> Compressor:
    codec = (
        compressor
        if isinstance(compressor, Compressor)
        else make_compressor(compressor, sparsity=sparsity, bits=bits, qp=qp)
    )
    if isinstance(codec, CabacPreviousUpdate):
        msg = "'cabac-prev' is not supported with Flower (nodes that miss rounds lack its reference)"
        raise ConfigError(msg)
    return codec


def _numpy(record: ArrayRecord) -> dict[str, np.ndarray]:
    return {name: array.numpy() for name, array in record.items()}


def _load_residual(state: RecordDict, shapes: list[tuple[int, ...]]) -> list[np.ndarray]:
    """The residual kept from the last round; empty if none or if the model's arrays changed."""
    record = state.array_records.get(RESIDUAL_KEY)
    if record is None:
        return []
    residual = [array.numpy() for array in record.values()]
    if [r.shape for r in residual] != shapes:
        log.warning("error-feedback residual does not match the model's arrays; starting a new one")
        return []
    return residual


def make_compression_mod(
    compressor: str | Compressor = "stc",
    *,
    sparsity: float = 0.01,
    bits: int = 2,
    qp: int = DEFAULT_UPDATE_QP,
    error_feedback: bool = True,
) -> Mod:
    """A client Mod that replaces the train reply's arrays by one compressed update message.

    ``compressor`` is a :class:`Compressor` or a name for :func:`make_compressor` (``sparsity``,
    ``bits`` and ``qp`` go to it; ``nnsq-update`` replies are ``.nnsq`` update files of the global
    model the node was sent).  The server must run :class:`CompressedFedAvg` with the same compressor.
    """
    codec = _codec(compressor, sparsity, bits, qp)

    def compression_mod(msg: Message, ctx: Context, call_next: ClientAppCallable) -> Message:
        if msg.metadata.message_type != MessageType.TRAIN:
            return call_next(msg, ctx)
        key, record = _the_array_record(msg.content, "the train message")
        header = msg.content.config_records.get(DOWN_KEY)
        if header is None:
            global_arrays = _numpy(record)
            bytes_down = sum(a.nbytes for a in global_arrays.values())
        else:  # a downstream message: keep the model, and give the handler a plain one
            global_arrays, bytes_down = _receive_global(record, header, ctx.state)
            content = {k: r for k, r in msg.content.items() if k != DOWN_KEY}
            content[key] = ArrayRecord({n: Array(a) for n, a in global_arrays.items()})
            msg.content = RecordDict(content)
        reply = call_next(msg, ctx)
        if reply.has_error():
            return reply
        key, local_record = _the_array_record(reply.content, "the train reply")
        local = _numpy(local_record)
        if list(local) != list(global_arrays):
            reason = f"the train reply's arrays {list(local)} are not the global arrays {list(global_arrays)}"
            raise ConfigError(reason)
        delta = [(local[n].astype(np.float64) - g).astype(np.float32) for n, g in global_arrays.items()]
        if not all(np.all(np.isfinite(d)) for d in delta):
            # raising makes Flower send an error reply, and the residual stays clean
            reason = "the local model has NaN/Inf values; no update is sent"
            raise TensorError(reason)
        ef = ErrorFeedback(codec.for_model(global_arrays), enabled=error_feedback)
        if error_feedback:
            ef.residual = _load_residual(ctx.state, [d.shape for d in delta])
        message, _ = ef.step(delta)
        if error_feedback:
            ctx.state[RESIDUAL_KEY] = ArrayRecord(
                {n: Array(r) for n, r in zip(global_arrays, ef.residual, strict=True)}
            )
        metrics = _the_metric_record(reply.content, "the train reply")
        payload = Array(dtype="uint8", shape=(len(message),), stype=STYPE_PREFIX + codec.name, data=message)
        reply.content[key] = ArrayRecord({PAYLOAD_KEY: payload})
        if (server_round := _server_round(msg.content)) is not None:
            metrics[ROUND_KEY] = server_round  # the server refuses replies to other rounds
        metrics["bytes-down"] = bytes_down
        metrics["bytes-up"] = len(message)
        metrics["dense-bytes-up"] = sum(a.nbytes for a in local.values())
        return reply

    return compression_mod


def _server_round(content: RecordDict) -> int | None:
    """The round FedAvg writes into the train message's config (``server-round``), if any."""
    for record in content.config_records.values():
        value = record.get(ROUND_KEY)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


def _header_int(header: ConfigRecord, key: str) -> int:
    value = header.get(key)
    if not isinstance(value, int):
        msg = f"the downstream header has no integer {key!r} (got {value!r})"
        raise BitstreamError(msg)
    return value


def _receive_global(
    record: ArrayRecord, header: ConfigRecord, state: RecordDict
) -> tuple[dict[str, np.ndarray], int]:
    """The global arrays of a downstream train message and its size in bytes; stores them in ``state``.

    A dense message (no ``base`` in the header) is taken as it is.  A compressed one is a chain of
    changes, applied in order to the arrays kept from an earlier round, which must be the version the
    chain starts from; each message must make the next version, and the result must be the header's
    version and match the server's checksum.
    """
    version = _header_int(header, "version")
    if "base" not in header:
        arrays = _numpy(record)
        size = sum(a.nbytes for a in arrays.values())
    else:
        base = _header_int(header, "base")
        held = state.config_records.get(GLOBAL_VERSION_KEY)
        kept = state.array_records.get(GLOBAL_KEY)
        if held is None or kept is None:
            msg = (
                f"the compressed broadcast updates global model {base}, but this node holds no "
                "global model; the server must send it the dense model (CompressedFedAvg does)"
            )
            raise BitstreamError(msg)
        if (version_held := held.get("version")) != base:
            msg = f"the compressed broadcast updates global model {base}; this node holds {version_held!r}"
            raise BitstreamError(msg)
        arrays, size = _apply_chain(record, _numpy(kept), base, _header_int(header, "bits"))
        if (end := base + len(record)) != version:
            msg = f"the compressed broadcast ends at global model {end}, but the header says {version}"
            raise BitstreamError(msg)
        if _crc(arrays) != _header_int(header, "crc"):
            msg = "the reconstructed global model does not match the server's (checksum mismatch)"
            raise BitstreamError(msg)
    state[GLOBAL_KEY] = ArrayRecord({n: Array(a) for n, a in arrays.items()})
    state[GLOBAL_VERSION_KEY] = ConfigRecord({"version": version})
    return arrays, size


def _apply_chain(
    record: ArrayRecord, arrays: dict[str, np.ndarray], base: int, bits: int
) -> tuple[dict[str, np.ndarray], int]:
    """``arrays`` (global model ``base``) moved by each message of ``record`` in turn, and their size."""
    size = 0
    for at, (key, payload) in enumerate(record.items(), start=base + 1):
        if key != str(at):
            msg = (
                f"the compressed broadcast from global model {base} has the change to {key!r} "
                f"where the change to {at} belongs (missing or out of order)"
            )
            raise BitstreamError(msg)
        if not payload.stype.startswith(DOWN_STYPE_PREFIX):
            msg = f"the compressed broadcast's change to global model {at} has stype {payload.stype!r}"
            raise BitstreamError(msg)
        # the method byte says whether the server sparsified tensor by tensor or the whole model
        whole_model = len(payload.data) > 3 and bool(payload.data[3] & WHOLE_MODEL)
        codec = make_compressor(
            payload.stype.removeprefix(DOWN_STYPE_PREFIX), bits=bits, whole_model=whole_model
        ).for_model(arrays)
        try:
            delta = codec.decode(payload.data, [a.shape for a in arrays.values()])
        except BitstreamError as exc:
            msg = f"the compressed broadcast's change to global model {at}: {exc}"
            raise BitstreamError(msg) from exc
        arrays = {n: _add(a, d) for (n, a), d in zip(arrays.items(), delta, strict=True)}
        size += len(payload.data)
    return arrays, size


def _crc(arrays: dict[str, np.ndarray]) -> int:
    """CRC-32 of the arrays' bytes, in order: server and client check they hold the same model."""
    crc = 0
    for a in arrays.values():
        crc = zlib.crc32(np.ascontiguousarray(a).tobytes(), crc)
    return crc


def _same(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    return list(a) == list(b) and all(a[n].dtype == b[n].dtype and np.array_equal(a[n], b[n]) for n in a)


class CompressedFedAvg(FedAvg):
    """FedAvg over the update messages of :func:`make_compression_mod` clients.

    ``compressor`` (or a name with ``bits`` for ``cabac``) decodes the replies; the remaining keyword
    arguments are FedAvg's (``fraction_train``, ``min_available_nodes``, ``weighted_by_key``, ...).

    ``downstream`` (a compressor name, with ``downstream_sparsity``, ``bits`` and ``qp``) compresses
    the broadcast: each round's change of the global model plus the server's residual is compressed,
    and the decoded change is what the global model moves by.  With ``"nnsq-update"`` each change is
    an ``.nnsq`` update file of the previous global model, and the new global model is exactly what
    ``nnsqueeze.apply_update`` makes of it.  The recent messages are kept, the oldest
    dropped while their total size reaches the dense model's or there are more than
    ``max_cached_versions``.  A node that holds an older version (it sent a usable reply in the round
    that produced it) gets the kept messages from there to the current version, else the dense model.

    Robustness: a reply is excluded, with the reason logged, when it is an error or when
    :class:`~nnsqueeze.fl.screening.ReplyScreen` refuses it: a reply to another round (the Mod
    echoes ``server-round``), a node's second reply, a weight (``num-examples``) outside (0,
    ``max_num_examples``], a message over ``max_message_bytes``, one that does not decode to finite
    deltas of the model's shapes, or an update norm over ``max_update_norm``.
    """

    def __init__(
        self,
        compressor: str | Compressor = "stc",
        *,
        bits: int = 2,
        downstream: str | Compressor | None = None,
        downstream_sparsity: float = 0.01,
        qp: int = DEFAULT_UPDATE_QP,
        max_cached_versions: int | None = None,
        max_update_norm: float | None = None,
        max_num_examples: float = DEFAULT_MAX_NUM_EXAMPLES,
        max_message_bytes: int | None = None,
        **fedavg: Any,
    ) -> None:
        if max_cached_versions is not None and max_cached_versions < 1:
            msg = f"max_cached_versions must be at least 1 (or None), got {max_cached_versions}"
            raise ConfigError(msg)
        check_bounds(max_num_examples, max_message_bytes, max_update_norm)
        self.max_update_norm = max_update_norm
        self.max_num_examples = max_num_examples
        self.max_message_bytes = max_message_bytes
        super().__init__(**fedavg)
        self.compressor = _codec(compressor, 1.0, bits, qp)  # sparsity is read from the payload
        self.bits = bits
        self._global: dict[str, np.ndarray] = {}
        self._down: ErrorFeedback | None = None
        if downstream is not None:
            self._down = ErrorFeedback(_codec(downstream, downstream_sparsity, bits, qp))
        self.max_cached_versions = max_cached_versions
        self._version = 0  # of self._global; nodes hold versions
        self._cache: dict[int, bytes] = {}  # version v -> the change from v - 1 to v, as sent; recent ones
        self._holds: dict[int, int] = {}  # node -> the version it confirmed holding
        self._screen: ReplyScreen | None = None  # made for the model configure_train sends

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """FedAvg's train messages; the arrays are kept to add the clients' deltas to.

        With ``downstream``, a node that holds a version whose later changes are all kept gets them.
        """
        messages = super().configure_train(server_round, arrays, config, grid)
        current = _numpy(arrays)
        self._screen = ReplyScreen(
            self.compressor.for_model(current),  # nnsq-update replies code against the sent model
            list(current),
            [a.shape for a in current.values()],
            max_num_examples=self.max_num_examples,
            max_message_bytes=self.max_message_bytes,
            max_update_norm=self.max_update_norm,
        )
        if self._down is None:
            self._global = current
            return messages
        if not _same(current, self._global):  # the first round, or the model was changed outside
            if self._global:
                log.warning(
                    "round %d: the model is not the last aggregate; every node gets it dense", server_round
                )
            self._global, self._version = current, self._version + 1
            self._cache.clear()
            self._down.residual = []
        crc = _crc(self._global)
        return [self._downstream(m, self._down.compressor.name, crc) for m in messages]

    def _downstream(self, msg: Message, compressor: str, crc: int) -> Message:
        """``msg`` with the version header, and the compressed changes if its node's version is cached."""
        held = self._holds.pop(msg.metadata.dst_node_id, None)  # confirmed again by a usable reply
        header = ConfigRecord({"version": self._version, "crc": crc})
        content = dict(msg.content.items())
        if held is not None and (chain := self._chain(held)):
            stype = DOWN_STYPE_PREFIX + compressor
            content[self.arrayrecord_key] = ArrayRecord(
                {str(v): Array(dtype="uint8", shape=(len(d),), stype=stype, data=d) for v, d in chain.items()}
            )
            header["base"] = held
            header["bits"] = self.bits
        content[DOWN_KEY] = header
        msg.content = RecordDict(content)
        return msg

    def _chain(self, held: int) -> dict[int, bytes]:
        """The cached changes from version ``held`` to the current one, in order; empty if one is not kept."""
        versions = range(held + 1, self._version + 1)
        if not all(v in self._cache for v in versions):
            return {}
        return {v: self._cache[v] for v in versions}

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """The global arrays plus the weighted mean of the decoded deltas, and the mean train metrics.

        ``(None, None)`` when no reply is usable; the strategy then keeps the current model.
        """
        if self._screen is None:
            msg = "aggregate_train before configure_train: the strategy does not know the model"
            raise ConfigError(msg)
        self._screen.start_round(server_round)
        deltas: list[list[np.ndarray]] = []
        weights: list[float] = []
        contents: list[RecordDict] = []
        for reply in replies:
            node = reply.metadata.src_node_id
            if reply.has_error():
                log.warning(
                    "round %d: node %d excluded: error reply: %s", server_round, node, reply.error.reason
                )
                continue
            try:
                delta, weight = self._decode(self._screen, node, reply.content)
            except NnsqueezeError as exc:
                log.warning("round %d: node %d excluded: %s", server_round, node, exc)
                continue
            deltas.append(delta)
            weights.append(weight)
            contents.append(reply.content)
            self._holds[node] = self._version
        if not deltas:
            log.warning("round %d: no usable update; the global model is unchanged", server_round)
            return None, None
        mean = fedavg(deltas, weights)
        broadcast = None
        if self._down is not None:  # the model moves by what the clients will decode
            self._down.compressor = self._down.compressor.for_model(self._global)
            broadcast, mean = self._down.step(mean)
        arrays = {name: _add(g, d) for (name, g), d in zip(self._global.items(), mean, strict=True)}
        if broadcast is not None:
            self._global, self._version = arrays, self._version + 1
            self._keep(broadcast)
        metrics = self.train_metrics_aggr_fn(contents, self.weighted_by_key)
        return ArrayRecord({name: Array(a) for name, a in arrays.items()}), metrics

    def _keep(self, broadcast: bytes) -> None:
        """Caches the change to the current version; drops the oldest changes no chain could use.

        A chain is sent only if it is smaller than the dense model, so the cache never holds as many
        bytes as the dense model (nor more than ``max_cached_versions`` changes).
        """
        self._cache[self._version] = broadcast
        dense = sum(a.nbytes for a in self._global.values())
        limit = self.max_cached_versions
        while self._cache and (
            sum(map(len, self._cache.values())) >= dense or (limit is not None and len(self._cache) > limit)
        ):
            del self._cache[min(self._cache)]

    def _decode(self, screen: ReplyScreen, node: int, content: RecordDict) -> tuple[list[np.ndarray], float]:
        """One reply's deltas and weight; raises an :class:`NnsqueezeError` saying what is wrong."""
        _, record = _the_array_record(content, "the reply")
        metrics = _the_metric_record(content, "the reply")
        screen.admit(node, metrics.get(ROUND_KEY))
        weight = screen.weight(metrics.get(self.weighted_by_key), self.weighted_by_key)
        stype = STYPE_PREFIX + self.compressor.name
        array = record.get(PAYLOAD_KEY)
        if array is None or len(record) != 1 or array.stype != stype:
            found = {k: a.stype for k, a in record.items()}
            msg = f"expected one array {PAYLOAD_KEY!r} of stype {stype!r}, found {found}"
            raise BitstreamError(msg)
        return screen.deltas(array.data), weight


def _add(global_array: np.ndarray, delta: np.ndarray) -> np.ndarray:
    """``global + delta`` in the global array's dtype (integer buffers, e.g. step counters, are rounded)."""
    total = global_array.astype(np.float64) + delta
    if np.issubdtype(global_array.dtype, np.integer):
        total = np.rint(total)
    out: np.ndarray = total.astype(global_array.dtype)
    return out
