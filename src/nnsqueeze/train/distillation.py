"""Knowledge distillation (Hinton, Vinyals & Dean 2015): a loss and a small teacher → student trainer.

>>> import torch
>>> from nnsqueeze.train import distillation_loss
>>> logits = torch.zeros(2, 10)
>>> float(distillation_loss(logits, logits, torch.tensor([1, 2]), temperature=4.0, alpha=1.0))
0.0
"""

from __future__ import annotations

import torch
from torch import nn

from nnsqueeze.errors import ConfigError
from nnsqueeze.train.config import DistillConfig
from nnsqueeze.zoo.training import Batches, fit


def distillation_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    targets: torch.Tensor | None,
    *,
    temperature: float = 4.0,
    alpha: float = 0.7,
) -> torch.Tensor:
    """``alpha · T² · KL(softmax(t/T) ‖ softmax(s/T)) + (1 − alpha) · CE(s, targets)``.

    The ``T²`` keeps the soft term's gradient scale independent of ``T``.  ``targets`` may be None
    only with ``alpha = 1`` (pure distillation, e.g. on unlabelled data)."""
    DistillConfig(temperature=temperature, alpha=alpha)
    log_p_student = nn.functional.log_softmax(student_logits / temperature, dim=-1)
    log_p_teacher = nn.functional.log_softmax(teacher_logits.detach() / temperature, dim=-1)
    soft = nn.functional.kl_div(log_p_student, log_p_teacher, reduction="batchmean", log_target=True)
    loss = alpha * temperature**2 * soft
    if alpha < 1.0:
        if targets is None:
            msg = "targets are needed unless alpha = 1"
            raise ConfigError(msg)
        loss = loss + (1.0 - alpha) * nn.functional.cross_entropy(student_logits, targets)
    return loss


class DistillationLoss(nn.Module):
    """:func:`distillation_loss` as a module: ``DistillationLoss(T, alpha)(student, teacher, y)``."""

    def __init__(self, temperature: float = 4.0, alpha: float = 0.7) -> None:
        super().__init__()
        DistillConfig(temperature=temperature, alpha=alpha)
        self.temperature = temperature
        self.alpha = alpha

    def forward(
        self, student_logits: torch.Tensor, teacher_logits: torch.Tensor, targets: torch.Tensor | None
    ) -> torch.Tensor:
        return distillation_loss(
            student_logits, teacher_logits, targets, temperature=self.temperature, alpha=self.alpha
        )


def distill(
    student: nn.Module, teacher: nn.Module, loader: Batches, config: DistillConfig | None = None
) -> nn.Module:
    """Trains ``student`` in place to match ``teacher`` (kept in eval mode, no gradients) on the
    batches of ``loader``; returns the student."""
    config = config or DistillConfig()
    criterion = DistillationLoss(config.temperature, config.alpha)
    teacher.eval()

    def loss_fn(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            t = teacher(x)
        out: torch.Tensor = criterion(model(x), t, y)
        return out

    return fit(student, loader, epochs=config.epochs, lr=config.lr, loss_fn=loss_fn)


def num_parameters(model: nn.Module) -> int:
    """Number of scalar parameters of ``model``."""
    return sum(p.numel() for p in model.parameters())
