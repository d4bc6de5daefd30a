"""The server's checks on client replies, one owner for the simulator and for ``CompressedFedAvg``.

A reply is excluded, never averaged, when its round is not the current one (a stale or delayed
reply), when its client already replied this round (a replay), when its weight (number of examples)
is not a number in (0, ``max_num_examples``], when its message is larger than ``max_message_bytes``
(default: twice the dense model plus 64 KiB), when the message does not decode to the model's
tensors, when a decoded value is NaN or infinite, or when the update's L2 norm exceeds
``max_update_norm`` (no bound by default).  Each check raises an :class:`NnsqueezeError` whose
message is the reason that gets logged.

>>> from nnsqueeze.fl.compressors import TopK
>>> screen = ReplyScreen(TopK(0.5), names=["w"], shapes=[(4,)])
>>> screen.start_round(1)
>>> screen.admit(client=7, reply_round=1)
>>> screen.admit(client=7, reply_round=1)
Traceback (most recent call last):
nnsqueeze.errors.ReplyRejected: a second reply in one round (replayed?)
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from nnsqueeze.errors import ConfigError, ReplyRejected, TensorError
from nnsqueeze.fl.compressors import Compressor

DEFAULT_MAX_NUM_EXAMPLES = 2.0**53  # beyond it float64 counts are no longer exact


class ReplyScreen:
    """Decides, reply by reply, which client updates one aggregation may use.

    ``decoder`` decodes messages against ``shapes`` (names and shapes never travel); ``names`` label
    the tensors in reasons.  Call :meth:`start_round` before the replies of each round.
    """

    def __init__(
        self,
        decoder: Compressor,
        names: Sequence[str],
        shapes: Sequence[tuple[int, ...]],
        *,
        max_num_examples: float = DEFAULT_MAX_NUM_EXAMPLES,
        max_message_bytes: int | None = None,
        max_update_norm: float | None = None,
    ) -> None:
        check_bounds(max_num_examples, max_message_bytes, max_update_norm)
        if len(names) != len(shapes):
            msg = f"{len(names)} names for {len(shapes)} shapes"
            raise ConfigError(msg)
        self.decoder = decoder
        self.names = list(names)
        self.shapes = [tuple(s) for s in shapes]
        self.max_num_examples = max_num_examples
        self.max_update_norm = max_update_norm
        dense = 4 * sum(math.prod(s) for s in self.shapes)
        self.max_message_bytes = max_message_bytes or 2 * dense + (1 << 16)
        self._round: int | None = None
        self._seen: set[int] = set()

    def start_round(self, server_round: int) -> None:
        self._round = server_round
        self._seen = set()

    def admit(self, client: int, reply_round: object) -> None:
        """Refuses a reply to another round than the current one, and a client's second reply."""
        if isinstance(reply_round, bool) or reply_round != self._round:
            msg = f"a reply to round {reply_round!r}, not to the current round {self._round} (stale)"
            raise ReplyRejected(msg)
        if client in self._seen:
            msg = "a second reply in one round (replayed?)"
            raise ReplyRejected(msg)
        self._seen.add(client)

    def weight(self, value: object, key: str = "num-examples") -> float:
        """The reply's weight; inf would pass ``> 0`` and make the average NaN, and a bool is no count."""
        limit = self.max_num_examples
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= limit:
            msg = f"{key!r} must be a positive finite number up to {limit:g}, got {value!r}"
            raise ReplyRejected(msg)
        return float(value)

    def deltas(self, message: bytes) -> list[np.ndarray]:
        """The decoded update: of the model's shapes, finite, within the norm bound."""
        if len(message) > self.max_message_bytes:
            msg = f"update message of {len(message)} bytes exceeds {self.max_message_bytes} bytes"
            raise ReplyRejected(msg)
        decoded = self.decoder.decode(message, self.shapes)
        bad = [n for n, d in zip(self.names, decoded, strict=True) if not np.all(np.isfinite(d))]
        if bad:
            msg = f"non-finite values in {', '.join(bad)}"
            raise TensorError(msg)
        if self.max_update_norm is not None:
            norm = math.sqrt(sum(float(np.sum(np.square(d, dtype=np.float64))) for d in decoded))
            if norm > self.max_update_norm:
                msg = f"update norm {norm:.4g} exceeds max_update_norm {self.max_update_norm:g}"
                raise ReplyRejected(msg)
        return decoded


def check_bounds(
    max_num_examples: float, max_message_bytes: int | None, max_update_norm: float | None
) -> None:
    """Raises :class:`ConfigError` unless every bound given is a positive finite number."""
    for name, bound in (
        ("max_update_norm", max_update_norm),
        ("max_num_examples", max_num_examples),
        ("max_message_bytes", max_message_bytes),
    ):
        if bound is not None and (isinstance(bound, bool) or not 0 < bound < math.inf):
            msg = f"{name} must be a positive finite number (or None), got {bound!r}"
            raise ConfigError(msg)
