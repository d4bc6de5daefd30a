"""CABAC against general-purpose compressors on the same 2-bit levels of federated client updates.

Runs FedAvg on digits (10 clients, 1 local epoch of SGD, lr 0.2, batch 16, the server applies the
mean of the decoded 2-bit updates) and, for every client update of every round, codes the very same
levels with

* ``cabac``: :class:`CabacQuantized` (the per-tensor payloads: step and levels, without the
  message framing, which is the same for every method);
* ``cabac-prev``: :class:`CabacPreviousUpdate`, contexts conditioned on the previous global update
  (round 1 has none: it codes against zeros);
* zlib level 9 of the levels packed 2 bits each and of the levels as int8 (the better one is the
  baseline), xz (preset 9 extreme) and zstd level 19 (if ``zstandard`` is installed) of the same two.

Every size includes the 4-byte float32 step per tensor.

    python benchmarks/bench_fl_cabac.py                  # IID and Dir(0.5), 10 rounds
    python benchmarks/bench_fl_cabac.py --rounds 3

``bench_fl.py`` imports :func:`cabac_vs_zip` and :func:`markdown_table`.
"""

from __future__ import annotations

import argparse
import lzma
import sys
import zlib
from collections.abc import Callable
from typing import Any

import numpy as np

from nnsqueeze.fl.compressors import CabacPreviousUpdate, CabacQuantized
from nnsqueeze.fl.partition import dirichlet_partition, iid_partition
from nnsqueeze.fl.simulation import fedavg, load_task

XZ_PRESET = 9 | lzma.PRESET_EXTREME


def _zstd() -> Callable[[bytes], bytes] | None:
    try:
        import zstandard
    except ImportError:
        return None
    return zstandard.ZstdCompressor(level=19).compress


def _packed(levels: np.ndarray) -> bytes:
    symbols = (levels + 1).astype(np.uint8)  # {-1, 0, 1} -> {0, 1, 2}: 2 bits each
    return np.packbits(((symbols[:, None] >> np.array([1, 0])) & 1).astype(np.uint8)).tobytes()


def _general(levels: np.ndarray, compress: Callable[[bytes], bytes]) -> int:
    """The better of the 2-bit-packed and the int8 representation."""
    return min(len(compress(_packed(levels))), len(compress(levels.astype(np.int8).tobytes())))


def cabac_vs_zip(
    *, rounds: int = 10, clients: int = 10, alpha: float | None = None, seed: int = 0
) -> list[dict[str, Any]]:
    """One row per round: the bytes of all clients' updates of that round under each coder."""
    import torch
    from torch import nn

    torch.manual_seed(seed)
    task = load_task("digits", seed)
    model = task.build_model()
    global_params = [p.detach().numpy().copy() for p in model.parameters()]
    labels = task.y_train.numpy()
    shards = (
        iid_partition(labels.size, clients, seed)
        if alpha is None
        else dirichlet_partition(labels, clients, alpha, seed)
    )
    plain = CabacQuantized(bits=2)
    hinted = CabacPreviousUpdate(bits=2)
    zstd = _zstd()
    loss_fn = nn.CrossEntropyLoss()
    rows = []
    for rnd in range(1, rounds + 1):
        sizes: dict[str, int] = {"cabac": 0, "cabac-prev": 0, "zlib": 0, "xz": 0, "zstd": 0}
        decoded, nonzero, count = [], 0, 0
        for client in range(clients):
            with torch.no_grad():
                for p, g in zip(model.parameters(), global_params, strict=True):
                    p.copy_(torch.from_numpy(g))
            opt = torch.optim.SGD(model.parameters(), lr=0.2)
            gen = torch.Generator().manual_seed(seed * 1_000_003 + rnd * 1009 + client)
            idx = torch.from_numpy(shards[client])
            order = idx[torch.randperm(idx.numel(), generator=gen)]
            for start in range(0, order.numel(), 16):
                batch = order[start : start + 16]
                opt.zero_grad()
                loss_fn(model(task.x_train[batch]), task.y_train[batch]).backward()
                opt.step()
            update = [p.detach().numpy() - g for p, g in zip(model.parameters(), global_params, strict=True)]
            _, sent = plain.roundtrip(update)
            _, hinted_sent = hinted.roundtrip(update)  # checks the hinted round trip on real updates
            assert all(np.array_equal(a, b) for a, b in zip(sent, hinted_sent, strict=True))
            refs = hinted.reference or (None,) * len(update)
            levels = np.concatenate([plain.levels(u)[0].reshape(-1) for u in update])
            steps = 4 * len(update)
            sizes["cabac"] += sum(len(plain.encode_tensor(u)) for u in update)
            sizes["cabac-prev"] += sum(
                len(hinted.encode_tensor(u, r)) for u, r in zip(update, refs, strict=True)
            )
            sizes["zlib"] += _general(levels, lambda b: zlib.compress(b, 9)) + steps
            sizes["xz"] += _general(levels, lambda b: lzma.compress(b, preset=XZ_PRESET)) + steps
            if zstd is not None:
                sizes["zstd"] += _general(levels, zstd) + steps
            decoded.append(sent)
            nonzero += int(np.count_nonzero(levels))
            count += levels.size
        applied = fedavg(decoded, [float(s.size) for s in shards])
        hinted = hinted.with_reference(applied)  # every client and the server, after the round
        global_params = [g + a for g, a in zip(global_params, applied, strict=True)]
        rows.append(
            {
                "partition": "IID" if alpha is None else f"Dir({alpha})",
                "round": rnd,
                "levels": count,
                "nonzero_fraction": nonzero / count,
                **{f"{k}_bytes": (v if k != "zstd" or zstd is not None else None) for k, v in sizes.items()},
            }
        )
    return rows


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """Rows of :func:`cabac_vs_zip` as a Markdown table (ratios: zlib bytes / CABAC bytes)."""
    lines = [
        "| partition | round | levels (all clients) | nonzero | zlib B | xz B | zstd B | CABAC B "
        "| CABAC prev-update B | zlib / CABAC | zlib / CABAC prev-update |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        zstd = "–" if r["zstd_bytes"] is None else f"{r['zstd_bytes']:,}"
        lines.append(
            f"| {r['partition']} | {r['round']} | {r['levels']:,} | {r['nonzero_fraction']:.3f} | "
            f"{r['zlib_bytes']:,} | {r['xz_bytes']:,} | {zstd} | {r['cabac_bytes']:,} | "
            f"{r['cabac-prev_bytes']:,} | {r['zlib_bytes'] / r['cabac_bytes']:.2f} | "
            f"{r['zlib_bytes'] / r['cabac-prev_bytes']:.2f} |"
        )
    for partition in dict.fromkeys(r["partition"] for r in rows):
        later = [r for r in rows if r["partition"] == partition and r["round"] > 1]  # those with a reference
        if later:
            keys = ("zlib_bytes", "cabac_bytes", "cabac-prev_bytes")
            zl, cab, prev = (sum(r[k] for r in later) for k in keys)
            lines.append(
                f"| {partition} | 2–{later[-1]['round']} (sum) | | | {zl:,} | | | {cab:,} | {prev:,} | "
                f"{zl / cab:.2f} | {zl / prev:.2f} |"
            )
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=10)
    args = ap.parse_args()
    rows = cabac_vs_zip(rounds=args.rounds) + cabac_vs_zip(rounds=args.rounds, alpha=0.5)
    sys.stdout.write(markdown_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
