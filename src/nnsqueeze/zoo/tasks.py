"""A zoo task: the float model's weights and the metric that scores any weights for it.

A metric is "higher is better" and scored on one part of the data: ``"validation"`` to choose
settings, ``"test"`` to report them."""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Literal

import numpy as np

from nnsqueeze.calibration import Calibration
from nnsqueeze.errors import ConfigError

if TYPE_CHECKING:
    import torch
    from torch import nn

    from nnsqueeze.zoo.minilm import Embedder
    from nnsqueeze.zoo.splits import Split

Part = Literal["validation", "test"]
PARTS: tuple[Part, ...] = ("validation", "test")


def _check_part(part: str) -> None:
    if part not in PARTS:
        msg = f"unknown data part {part!r}; choose 'validation' or 'test'"
        raise ConfigError(msg)


class Task(ABC):
    """One zoo model ready to be compressed and scored."""

    name: str
    metric: str

    @abstractmethod
    def state_dict(self) -> dict[str, np.ndarray]:
        """The float model's tensors by name (a fresh dict; the arrays may be shared, do not write)."""

    @abstractmethod
    def evaluate(self, state: Mapping[str, np.ndarray], part: Part = "test") -> float:
        """The metric of the model with ``state`` loaded (every tensor of :meth:`state_dict`)."""

    def reference(self, part: Part = "test") -> float:
        """The metric of the float model itself."""
        return self.evaluate(self.state_dict(), part)

    @abstractmethod
    def calibration(self, part: Part = "validation") -> Calibration:
        """The model run on the inputs of ``part``, for calibrated bit allocation."""


def _as_tensor(value: np.ndarray | torch.Tensor) -> torch.Tensor:
    import torch

    if isinstance(value, torch.Tensor):
        return value
    # np.array copies: decoded arrays may be read-only, which torch.from_numpy warns about.
    return torch.from_numpy(np.array(value))


class ClassifierTask(Task):
    """A classifier and its data split; the metric is accuracy."""

    metric = "accuracy"

    def __init__(self, name: str, model: nn.Module, data: Split) -> None:
        self.name = name
        self.model = model.eval()
        self.data = data
        self._scratch = copy.deepcopy(self.model)  # evaluate() loads weights here, never into model

    def state_dict(self) -> dict[str, np.ndarray]:
        return {k: v.detach().numpy() for k, v in self.model.state_dict().items()}

    def evaluate(self, state: Mapping[str, np.ndarray], part: Part = "test") -> float:
        from nnsqueeze.zoo.training import accuracy

        _check_part(part)
        x, y = (
            (self.data.x_val, self.data.y_val)
            if part == "validation"
            else (self.data.x_test, self.data.y_test)
        )
        if x.shape[0] == 0:
            msg = f"{self.name}: this split has no {part} part"
            raise ConfigError(msg)
        self._scratch.load_state_dict({k: _as_tensor(v) for k, v in state.items()}, strict=True)
        return accuracy(self._scratch, x, y)

    def calibration(self, part: Part = "validation") -> Calibration:
        _check_part(part)
        return Calibration.torch(self.model, self.data.x_val if part == "validation" else self.data.x_test)


class EmbeddingTask(Task):
    """A sentence encoder; the metric is the mean cosine similarity of each sentence's embedding to the
    float model's (1.0 for the float model)."""

    metric = "embedding cosine"

    def __init__(
        self,
        name: str,
        embedder: Embedder,
        weights: Mapping[str, np.ndarray],
        sentences: Mapping[Part, Sequence[str]],
    ) -> None:
        self.name = name
        self.embedder = embedder
        self.weights = dict(weights)
        self.sentences = dict(sentences)
        self._reference: dict[Part, np.ndarray] = {}  # the float model's embeddings, made when first needed

    def state_dict(self) -> dict[str, np.ndarray]:
        return dict(self.weights)

    def cosines(self, state: Mapping[str, np.ndarray], part: Part = "test") -> np.ndarray:
        """Each sentence's cosine similarity to the float model's embedding."""
        _check_part(part)
        if part not in self._reference:
            self._reference[part] = self.embedder.embed(self.sentences[part], state=self.weights)
        got = self.embedder.embed(self.sentences[part], state=state).astype(np.float64)
        want = self._reference[part].astype(np.float64)
        norms = np.linalg.norm(got, axis=1) * np.linalg.norm(want, axis=1)
        return np.asarray(np.sum(got * want, axis=1) / np.maximum(norms, 1e-12))

    def evaluate(self, state: Mapping[str, np.ndarray], part: Part = "test") -> float:
        return float(self.cosines(state, part).mean())

    def calibration(self, part: Part = "validation") -> Calibration:
        _check_part(part)
        sentences = self.sentences[part]

        def embeddings(state: Mapping[str, np.ndarray]) -> np.ndarray:
            return self.embedder.embed(sentences, state=state).astype(np.float64)

        return Calibration(embeddings, self.weights, label=self.name)


class PitchTask(Task):
    """A pitch tracker scored on generated tones; the metric is raw pitch accuracy (within 50 cents)."""

    metric = "raw pitch accuracy"

    def __init__(self, name: str, model: nn.Module) -> None:
        from nnsqueeze.zoo import crepe

        self.name = name
        self.model = model.eval()
        self._scratch = copy.deepcopy(self.model)
        self.tones = {
            "validation": crepe.tones(crepe.FRAMES, crepe.VALIDATION_SEED),
            "test": crepe.tones(crepe.FRAMES, crepe.TEST_SEED),
        }

    def state_dict(self) -> dict[str, np.ndarray]:
        return {k: v.detach().numpy() for k, v in self.model.state_dict().items()}

    def evaluate(self, state: Mapping[str, np.ndarray], part: Part = "test") -> float:
        from nnsqueeze.zoo import crepe

        _check_part(part)
        self._scratch.load_state_dict({k: _as_tensor(v) for k, v in state.items()}, strict=True)
        frames, cents = self.tones[part]
        return crepe.raw_pitch_accuracy(self._scratch, frames, cents)

    def calibration(self, part: Part = "validation") -> Calibration:
        _check_part(part)
        return Calibration.torch(self.model, self.tones[part][0])
