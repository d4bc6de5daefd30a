"""Small models for the xai tests (float64 for exact comparisons)."""

from __future__ import annotations

import torch
from torch import nn

from nnsqueeze.xai import Sum


def kaiming(model: nn.Module, seed: int = 0) -> nn.Module:
    """He-normal weights and small random biases, so activations keep their scale through the layers."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d)):
                fan_in = m.weight[0].numel()
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen) * (2.0 / fan_in) ** 0.5)
                if m.bias is not None:
                    m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.1)
    return model


def small_cnn(bias: bool = True, seed: int = 0) -> nn.Sequential:
    """Conv-ReLU-Conv-ReLU-MaxPool-Conv-ReLU-AvgPool-Flatten-Linear-ReLU-Linear on (1, 8, 8) inputs."""
    model = nn.Sequential(
        nn.Conv2d(1, 6, 3, padding=1, bias=bias),
        nn.ReLU(),
        nn.Conv2d(6, 8, 3, padding=1, bias=bias),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 8, 3, padding=1, bias=bias),
        nn.ReLU(),
        nn.AvgPool2d(2),
        nn.Flatten(),
        nn.Linear(8 * 2 * 2, 16, bias=bias),
        nn.ReLU(),
        nn.Linear(16, 10, bias=bias),
    )
    return kaiming(model, seed).double().eval()  # type: ignore[return-value]


def cnn_1d(bias: bool = True, seed: int = 0) -> nn.Sequential:
    """A 1-D CNN on (1, 16) signals."""
    model = nn.Sequential(
        nn.Conv1d(1, 4, 5, padding=2, bias=bias),
        nn.ReLU(),
        nn.Conv1d(4, 6, 3, stride=2, padding=1, bias=bias),
        nn.ReLU(),
        nn.AdaptiveAvgPool1d(4),
        nn.Flatten(),
        nn.Linear(24, 5, bias=bias),
    )
    return kaiming(model, seed).double().eval()  # type: ignore[return-value]


class Residual(nn.Module):
    """``x + conv2(relu(conv1(x)))`` with an explicit or a plain sum."""

    def __init__(self, channels: int, bias: bool, explicit: bool) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=bias)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=bias)
        self.sum = Sum() if explicit else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv2(self.relu(self.conv1(x)))
        return self.sum(x, y) if self.sum is not None else x + y


def residual_net(bias: bool = True, explicit: bool = False, seed: int = 0) -> nn.Sequential:
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1, bias=bias),
        nn.ReLU(),
        Residual(4, bias, explicit),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(4 * 4 * 4, 10, bias=bias),
    )
    return kaiming(model, seed).double().eval()  # type: ignore[return-value]


def inputs(n: int = 4, shape: tuple[int, ...] = (1, 8, 8), seed: int = 0) -> torch.Tensor:
    return torch.rand((n, *shape), generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def snapshot(model: nn.Module) -> dict[str, object]:
    """Everything an attributor could leave behind: tensors (bit-exact), hooks, flags, instance attributes."""
    state = {k: v.detach().clone() for k, v in model.state_dict(keep_vars=True).items()}
    return {
        "state": state,
        "params": [id(p) for p in model.parameters()],
        "hooks": {
            name: (
                list(m._forward_hooks),
                list(m._forward_pre_hooks),
                list(m._backward_hooks),
                list(getattr(m, "_backward_pre_hooks", {})),
                list(m._forward_hooks_with_kwargs),
                list(m._forward_hooks_always_called),
            )
            for name, m in model.named_modules()
        },
        "training": {name: m.training for name, m in model.named_modules()},
        "attrs": {name: sorted(vars(m)) for name, m in model.named_modules()},
        "modules": [name for name, _ in model.named_modules()],
        "requires_grad": [p.requires_grad for p in model.parameters()],
        "grads": [p.grad for p in model.parameters()],
    }


def assert_same(before: dict[str, object], after: dict[str, object]) -> None:
    state_a, state_b = before.pop("state"), after.pop("state")
    assert isinstance(state_a, dict)
    assert isinstance(state_b, dict)
    assert state_a.keys() == state_b.keys()
    for key in state_a:
        assert torch.equal(state_a[key], state_b[key]), key
        assert state_a[key].dtype == state_b[key].dtype
    assert before == after
