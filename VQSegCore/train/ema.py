"""The mean teacher: an exponential moving average of the student's weights.

Paper: theta_t <- alpha * theta_t + (1 - alpha) * theta_s with a fixed alpha = 0.99. Authors'
code (UniMatch-V2 loop): alpha = min(1 - 1/t, 0.996), a ramp that makes the teacher follow the
student closely while the student changes fast; `ema_momentum(step, base)` gives either.

Buffer policy: floating-point buffers (BatchNorm running statistics; the VQ's frozen codebook,
identical in both) are averaged like parameters, as UniMatch-V2 does (the VQ-Seg code averages
parameters only; `average_buffers=False` reproduces that). Integer buffers (usage counters,
num_batches_tracked) are the teacher's own bookkeeping and are never touched.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


def make_teacher(student: nn.Module) -> nn.Module:
    """A frozen deep copy of the student in eval mode; only `update_ema` changes it."""
    teacher = copy.deepcopy(student)
    for parameter in teacher.parameters():
        parameter.requires_grad_(False)
    return teacher.eval()


def ema_momentum(step: int, base: float = 0.99, ramp: bool = False) -> float:
    """The EMA momentum at 0-based `step`: `base` (paper), or min(1 - 1/(step+1), base) (authors' code)."""
    if not 0.0 <= base <= 1.0:
        raise ValueError(f"EMA momentum must be in [0, 1], got {base}")
    return min(1.0 - 1.0 / (step + 1), base) if ramp else base


@torch.no_grad()
def update_ema(teacher: nn.Module, student: nn.Module, momentum: float, *, average_buffers: bool = True) -> None:
    """teacher <- momentum * teacher + (1 - momentum) * student (0 copies the student, 1 keeps the teacher)."""
    if not 0.0 <= momentum <= 1.0:
        raise ValueError(f"EMA momentum must be in [0, 1], got {momentum}")
    student_params = dict(student.named_parameters())
    for name, t in teacher.named_parameters():
        t.lerp_(student_params[name].detach().to(t.dtype), 1.0 - momentum)
    if average_buffers:
        student_buffers = dict(student.named_buffers())
        for name, t in teacher.named_buffers():
            if t.is_floating_point():
                t.lerp_(student_buffers[name].to(t.dtype), 1.0 - momentum)
