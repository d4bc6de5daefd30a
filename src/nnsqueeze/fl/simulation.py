"""An in-process federated learning simulator: N clients, FedAvg, compressed updates as real bytes.

Each round a seeded fraction of the clients downloads the global model, trains ``local_epochs`` of SGD
on its shard (communication delay), and uploads ``W_local - W_global`` through its compressor (with
its own residual when error feedback is on).  The server screens every reply with
:class:`~nnsqueeze.fl.screening.ReplyScreen` (the checks ``CompressedFedAvg`` makes), excludes
dropped, stale, replayed, malformed or non-finite ones with a logged reason, and adds the
sample-weighted mean of the rest.
The server's broadcast can be compressed too (``downstream``, with a server residual, as in STC);
``downstream="nnsq-update"`` broadcasts each round as an ``.nnsq`` update file of the last global
model, so the server's next model is exactly ``nnsqueeze.apply_update(broadcast, [last model])``.
Upload and download bytes are the lengths of the messages.

>>> result = run_simulation(SimulationConfig(clients=4, rounds=2, compressor="stc"))  # doctest: +SKIP
>>> result.rounds[-1].cumulative_upload  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import random
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import numpy as np

from nnsqueeze.errors import BitstreamError, ConfigError, NnsqueezeError
from nnsqueeze.fl.compressors import CabacPreviousUpdate, Compressor, Identity, make_compressor
from nnsqueeze.fl.error_feedback import DeepGradientCompression, ErrorFeedback
from nnsqueeze.fl.partition import dirichlet_partition, iid_partition
from nnsqueeze.fl.screening import ReplyScreen
from nnsqueeze.update import DEFAULT_UPDATE_QP

log = logging.getLogger("nnsqueeze.fl")

DATASETS = ("digits", "mnist1d")
COMPRESSOR_NAMES = ("identity", "topk", "dgc", "sbc", "stc", "cabac", "cabac-prev", "nnsq-update")
# What a faulty client does: NaN values, a flipped byte, a reply tagged with the last round, its
# reply sent twice, an absurd number of examples, a message padded past the size bound, an update
# missing its last tensor (another model).
FAULT_KINDS = ("nan", "corrupt", "stale", "replay", "examples", "oversized", "shape")


@dataclass(frozen=True)
class SimulationConfig:
    """Everything that defines a run; the same config and seed give the same result."""

    dataset: str = "digits"
    clients: int = 10
    rounds: int = 50
    compressor: str = "stc"
    sparsity: float = 0.01
    bits: int = 2
    whole_model: bool = False  # topk / sbc / stc uploads: one selection over all tensors, not per tensor
    error_feedback: bool = True
    noniid: float | None = None  # Dirichlet alpha over classes; None: IID
    participation: float = 1.0
    local_epochs: int = 1
    batch_size: int = 16
    lr: float = 0.2
    momentum: float = 0.0  # the clients' SGD momentum (its buffer restarts every round)
    # DGC's momentum correction across rounds; with client momentum as well the two compound (MNIST-1D,
    # client momentum 0.9: 0.11 accuracy after 40 rounds at 0.9 here, 0.69 at 0)
    dgc_momentum: float = 0.9
    downstream: str | None = None  # compressor of the server's broadcast (with a server residual)
    qp: int = DEFAULT_UPDATE_QP  # the step of nnsq-update messages (either direction)
    dropout: float = 0.0  # probability that a selected client does not answer
    faults: float = 0.0  # probability that a client's reply is faulty (robustness tests)
    fault_kinds: tuple[str, ...] = FAULT_KINDS  # the faults drawn from, uniformly
    seed: int = 0
    mnist1d_samples: int = 5000

    def __post_init__(self) -> None:
        if self.dataset not in DATASETS:
            msg = f"dataset must be one of {DATASETS}, got {self.dataset!r}"
            raise ConfigError(msg)
        if self.compressor not in COMPRESSOR_NAMES:
            msg = f"compressor must be one of {COMPRESSOR_NAMES}, got {self.compressor!r}"
            raise ConfigError(msg)
        if self.downstream is not None and self.downstream not in COMPRESSOR_NAMES:
            msg = f"downstream must be one of {COMPRESSOR_NAMES}, got {self.downstream!r}"
            raise ConfigError(msg)
        if self.whole_model and self.compressor not in ("topk", "sbc", "stc"):
            msg = f"whole_model applies to topk, sbc and stc, not {self.compressor!r}"
            raise ConfigError(msg)
        if self.clients < 1 or self.rounds < 0 or self.local_epochs < 1 or self.batch_size < 1:
            msg = "clients, local_epochs and batch_size must be >= 1 and rounds >= 0"
            raise ConfigError(msg)
        for name in ("participation", "sparsity"):
            if not 0 < getattr(self, name) <= 1:
                msg = f"{name} must be in (0, 1], got {getattr(self, name)}"
                raise ConfigError(msg)
        for name in ("dropout", "faults", "momentum", "dgc_momentum"):
            if not 0 <= getattr(self, name) <= 1:
                msg = f"{name} must be in [0, 1], got {getattr(self, name)}"
                raise ConfigError(msg)
        if not self.lr > 0:
            msg = f"lr must be positive, got {self.lr}"
            raise ConfigError(msg)
        unknown = [k for k in self.fault_kinds if k not in FAULT_KINDS]
        if unknown or not self.fault_kinds:
            msg = f"fault_kinds must be a non-empty subset of {FAULT_KINDS}, got {self.fault_kinds!r}"
            raise ConfigError(msg)


@dataclass
class RoundRecord:
    round: int
    accuracy: float
    upload_bytes: int
    download_bytes: int
    cumulative_upload: int
    cumulative_download: int
    participants: list[int]
    excluded: dict[int, str] = field(default_factory=dict)


@dataclass
class SimulationResult:
    config: SimulationConfig
    initial_accuracy: float
    dense_update_bytes: int  # one identity-coded update: the per-client cost of dense FedAvg
    num_parameters: int
    rounds: list[RoundRecord]
    seconds: float = 0.0

    @property
    def final_accuracy(self) -> float:
        return self.rounds[-1].accuracy if self.rounds else self.initial_accuracy

    @property
    def total_upload(self) -> int:
        return self.rounds[-1].cumulative_upload if self.rounds else 0

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["final_accuracy"] = self.final_accuracy
        d["total_upload"] = self.total_upload
        return d

    def save_json(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=1) + "\n")


def fedavg(updates: Sequence[Sequence[np.ndarray]], num_examples: Sequence[float]) -> list[np.ndarray]:
    """The mean of the clients' updates weighted by their numbers of examples (float64 sums, float32 out)."""
    if not updates or len(updates) != len(num_examples) or not sum(num_examples) > 0:
        msg = "fedavg needs at least one update and positive total weight, one weight per update"
        raise ConfigError(msg)
    if not all(0 <= n < math.inf for n in num_examples):  # one inf or NaN count poisons the mean
        msg = f"fedavg weights must be finite and non-negative, got {list(num_examples)}"
        raise ConfigError(msg)
    w = np.asarray(num_examples, dtype=np.float64) / float(np.sum(num_examples))
    return [
        np.sum([wi * np.asarray(u[i], np.float64) for wi, u in zip(w, updates, strict=True)], axis=0).astype(
            np.float32
        )
        for i in range(len(updates[0]))
    ]


class Reply(NamedTuple):
    """What reaches the server from one client: the round it answers, its weight, its message."""

    client: int
    round: int
    num_examples: float
    message: bytes


class Task(NamedTuple):
    build_model: Callable[[], Any]
    x_train: Any
    y_train: Any
    x_test: Any
    y_test: Any


def load_task(dataset: str, seed: int = 0, mnist1d_samples: int = 5000) -> Task:
    """The model builder and data of ``digits`` (scikit-learn) or ``mnist1d`` (generated offline)."""
    if dataset == "digits":
        from nnsqueeze.zoo import digits

        d = digits.load_data(seed, validation=0.0)  # every training sample goes to a client
        return Task(digits.build_model, d.x_train, d.y_train, d.x_test, d.y_test)
    if dataset == "mnist1d":
        from nnsqueeze.zoo import mnist1d

        m = mnist1d.load_data(num_samples=mnist1d_samples, validation=0.0)
        return Task(mnist1d.build_model, m.x_train, m.y_train, m.x_test, m.y_test)
    msg = f"unknown dataset {dataset!r}"
    raise ConfigError(msg)


class _Uploader(Protocol):
    def step(self, update: Sequence[np.ndarray]) -> tuple[bytes, list[np.ndarray]]: ...


def _client_state(config: SimulationConfig) -> _Uploader:
    if config.compressor == "dgc":
        return DeepGradientCompression(
            config.sparsity, momentum=config.dgc_momentum, accumulate=config.error_feedback
        )
    return ErrorFeedback(_decoder(config), enabled=config.error_feedback)


def _decoder(config: SimulationConfig) -> Compressor:
    return make_compressor(
        config.compressor,
        sparsity=config.sparsity,
        bits=config.bits,
        whole_model=config.whole_model,
        qp=config.qp,
    )


def _share_state(
    decoder: Compressor,
    uploaders: Sequence[_Uploader],
    model: Mapping[str, np.ndarray],
    applied: list[np.ndarray] | None = None,
) -> Compressor:
    """Before a round, every coder (clients, server, broadcast) codes against the global ``model``
    (``nnsq-update``) and, once an update was ``applied``, conditions on it (``cabac-prev``): all of
    them know both."""

    def share(coder: Compressor) -> Compressor:
        if applied is not None and isinstance(coder, CabacPreviousUpdate):
            coder = coder.with_reference(applied)
        return coder.for_model(model)

    for uploader in uploaders:
        if isinstance(uploader, ErrorFeedback):
            uploader.compressor = share(uploader.compressor)
    return share(decoder)


def _progress(config: SimulationConfig, rec: RoundRecord, stream: Any) -> None:
    line = (
        f"fl-sim {config.dataset} {config.compressor}: round {rec.round}/{config.rounds} "
        f"acc {rec.accuracy:.3f} up {rec.cumulative_upload / 1e6:.3f} MB"
    )
    if stream.isatty():
        stream.write("\r" + line + ("\n" if rec.round == config.rounds else ""))
    else:
        stream.write(line + "\n")
    stream.flush()


def run_simulation(
    config: SimulationConfig, *, task: Task | None = None, progress: bool = False
) -> SimulationResult:
    """Runs the simulation (torch on one thread, seeded); ``progress`` writes a line per round to stderr."""
    import time

    import torch

    from nnsqueeze.zoo import torch_threads

    started = time.perf_counter()
    task = task or load_task(config.dataset, config.seed, config.mnist1d_samples)
    with torch_threads(1), torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        result = _run(config, task, progress)
    result.seconds = time.perf_counter() - started
    return result


def _run(config: SimulationConfig, task: Task, progress: bool) -> SimulationResult:
    import torch
    from torch import nn

    model: nn.Module = task.build_model()
    names = [n for n, _ in model.named_parameters()]
    shapes = [tuple(p.shape) for p in model.parameters()]
    global_params = [p.detach().numpy().astype(np.float32).copy() for p in model.parameters()]
    labels = task.y_train.numpy()
    if config.noniid is None:
        shards = iid_partition(labels.size, config.clients, config.seed)
    else:
        shards = dirichlet_partition(labels, config.clients, config.noniid, config.seed)
    weights = np.array([s.size for s in shards], dtype=np.float64)
    uploaders = [_client_state(config) for _ in range(config.clients)]
    decoder = _decoder(config)
    down = ErrorFeedback(
        make_compressor(config.downstream, sparsity=config.sparsity, bits=config.bits, qp=config.qp)
        if config.downstream
        else Identity(),
        enabled=True,
    )
    decoder = _share_state(decoder, [*uploaders, down], dict(zip(names, global_params, strict=True)))
    rng = np.random.default_rng(config.seed)
    fault_rng = random.Random(config.seed + 1)
    per_round = max(1, round(config.participation * config.clients))
    loss_fn = nn.CrossEntropyLoss()

    def set_params(values: Sequence[np.ndarray]) -> None:
        with torch.no_grad():
            for p, v in zip(model.parameters(), values, strict=True):
                p.copy_(torch.from_numpy(v))

    def evaluate() -> float:
        set_params(global_params)
        model.eval()
        with torch.no_grad():
            return float((model(task.x_test).argmax(1) == task.y_test).float().mean())

    def train_client(client: int, rnd: int) -> list[np.ndarray]:
        set_params(global_params)
        model.train()
        opt = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum)
        gen = torch.Generator().manual_seed(config.seed * 1_000_003 + rnd * 1009 + client)
        idx = torch.from_numpy(shards[client])
        for _ in range(config.local_epochs):
            order = idx[torch.randperm(idx.numel(), generator=gen)]
            for start in range(0, order.numel(), config.batch_size):
                batch = order[start : start + config.batch_size]
                opt.zero_grad()
                loss_fn(model(task.x_train[batch]), task.y_train[batch]).backward()
                opt.step()
        return [p.detach().numpy() - g for p, g in zip(model.parameters(), global_params, strict=True)]

    initial = evaluate()
    dense_bytes = len(Identity().encode(global_params))
    records: list[RoundRecord] = []
    cum_up = cum_down = 0
    broadcast_bytes = dense_bytes  # round 1: clients hold the initial model (counted as a dense download)
    for rnd in range(1, config.rounds + 1):
        chosen = sorted(rng.choice(config.clients, size=per_round, replace=False).tolist())
        excluded: dict[int, str] = {}
        replies: list[Reply] = []
        screen = ReplyScreen(decoder, names, shapes)
        screen.start_round(rnd)
        for client in chosen:
            if config.dropout and fault_rng.random() < config.dropout:
                excluded[client] = "dropped out (no reply)"
                continue
            faulty = fault_rng.random() < config.faults
            fault = fault_rng.choice(config.fault_kinds) if faulty else None
            try:
                update = train_client(client, rnd)
                reply = Reply(client, rnd, float(weights[client]), b"")
                replies += _replies(reply, update, fault, fault_rng, uploaders[client], screen)
            except NnsqueezeError as exc:
                excluded[client] = f"client failed to encode: {exc}"
        accepted: list[tuple[float, list[np.ndarray]]] = []
        up = 0
        down_bytes = broadcast_bytes * len(chosen)
        for reply in replies:
            up += len(reply.message)
            try:
                screen.admit(reply.client, reply.round)
                weight = screen.weight(reply.num_examples)
                accepted.append((weight, screen.deltas(reply.message)))
            except BitstreamError as exc:
                excluded[reply.client] = f"malformed update: {exc}"
            except NnsqueezeError as exc:
                excluded[reply.client] = str(exc)
        for client, reason in excluded.items():
            log.warning("round %d: client %d excluded: %s", rnd, client, reason)
        if accepted:
            mean = fedavg([d for _, d in accepted], [w for w, _ in accepted])
            message, applied = down.step(mean)
            broadcast_bytes = len(message)
            global_params = [g + a for g, a in zip(global_params, applied, strict=True)]
            model_now = dict(zip(names, global_params, strict=True))
            decoder = _share_state(decoder, [*uploaders, down], model_now, applied)
        else:
            log.warning("round %d: no usable update; the global model is unchanged", rnd)
            broadcast_bytes = 0
        cum_up += up
        cum_down += down_bytes
        rec = RoundRecord(rnd, evaluate(), up, down_bytes, cum_up, cum_down, chosen, excluded)
        records.append(rec)
        if progress:
            _progress(config, rec, sys.stderr)
    n_params = sum(math.prod(s) for s in shapes)
    return SimulationResult(config, initial, dense_bytes, n_params, records)


def _replies(
    reply: Reply,
    update: list[np.ndarray],
    fault: str | None,
    rng: random.Random,
    uploader: _Uploader,
    screen: ReplyScreen,
) -> list[Reply]:
    """What reaches the server from a client with ``update``: its reply, or what ``fault`` makes of it."""
    if fault == "nan":  # a broken client: its update never reaches its residual
        update[0] = np.full_like(update[0], np.nan)
        return [reply._replace(message=screen.decoder.encode(update))]
    if fault == "shape":
        return [reply._replace(message=screen.decoder.encode(update[:-1]))]
    message, _ = uploader.step(update)
    reply = reply._replace(message=message)
    if fault == "corrupt":
        return [reply._replace(message=message[:-7] + bytes([message[-7] ^ 0x5A]) + message[-6:])]
    if fault == "stale":  # delayed: it arrives as the answer to the previous round
        return [reply._replace(round=reply.round - 1)]
    if fault == "replay":
        return [reply, reply]
    if fault == "examples":
        claim = rng.choice((math.inf, math.nan, -reply.num_examples, 1e30))
        return [reply._replace(num_examples=claim)]
    if fault == "oversized":
        return [reply._replace(message=message + bytes(screen.max_message_bytes))]
    return [reply]


def plot_results(results: Sequence[tuple[str, SimulationResult]], path: str | Path, title: str = "") -> None:
    """Accuracy against cumulative upload bytes (log axis), one line per labelled run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, res in results:
        xs = [r.cumulative_upload for r in res.rounds]
        ys = [r.accuracy for r in res.rounds]
        ax.plot(xs, ys, label=label, linewidth=1.3, marker="o" if len(xs) < 10 else None, markersize=3)
    ax.set_xscale("log")
    ax.set_xlabel("cumulative upload (bytes, all clients)")
    ax.set_ylabel("test accuracy")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
