"""The segmentation losses of one training step; small pure functions, always in fp32.

Supervised: cross-entropy + soft Dice over the foreground classes, averaged, as UniMatch's
medical loop ((CE + Dice) / 2); `dice_weight=0` gives the paper's CE only.
Pseudo-label: the teacher's argmax where its softmax confidence >= threshold (0.95, authors'
code; the paper uses no threshold: threshold 0 reproduces that), summed over the kept pixels and
divided by all valid pixels (authors' code), so few confident pixels give a small loss.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

IGNORE_INDEX = 255  # label value of pixels that count for nothing (padding), as the authors' code
PSEUDO_LABEL_THRESHOLD = 0.95  # the teacher's softmax confidence a pseudo-label needs (authors' code)


class SupervisedLoss(NamedTuple):
    total: Tensor
    cross_entropy: Tensor
    dice: Tensor  # 1 - soft Dice, mean over foreground classes


def supervised_loss(
    logits: Tensor, labels: Tensor, *, ignore_index: int = IGNORE_INDEX, dice_weight: float = 1.0, smooth: float = 1.0
) -> SupervisedLoss:
    """logits [B, K, H, W], labels [B, H, W] long (ignore_index marks pixels that do not count)."""
    logits = logits.float()
    valid = labels != ignore_index
    if not valid.any():  # nothing to learn from; keep the graph so backward still works
        zero = logits.sum() * 0.0
        return SupervisedLoss(zero, zero, zero)
    ce = F.cross_entropy(logits, labels, ignore_index=ignore_index)
    dice = foreground_dice_loss(logits, labels, valid, smooth=smooth)
    return SupervisedLoss((ce + dice_weight * dice) / (1.0 + dice_weight), ce, dice)


def foreground_dice_loss(logits: Tensor, labels: Tensor, valid: Tensor, *, smooth: float = 1.0) -> Tensor:
    """1 - soft Dice over the `valid` pixels, mean over the foreground classes (background Dice is uninformative)."""
    num_classes = logits.shape[1]
    probs = logits.float().softmax(dim=1)[:, 1:]
    target = F.one_hot(torch.where(valid, labels, 0), num_classes).permute(0, 3, 1, 2)[:, 1:].float()
    weight = valid[:, None].float()
    intersection = (probs * target * weight).sum(dim=(0, 2, 3))
    denominator = ((probs + target) * weight).sum(dim=(0, 2, 3))
    return 1.0 - ((2 * intersection + smooth) / (denominator + smooth)).mean()


@torch.no_grad()
def pseudo_labels(teacher_logits: Tensor) -> tuple[Tensor, Tensor]:
    """Teacher logits [B, K, H, W] -> (argmax labels [B, H, W] long, confidence [B, H, W] float)."""
    confidence, labels = teacher_logits.float().softmax(dim=1).max(dim=1)
    return labels, confidence


def pseudo_label_loss(
    student_logits: Tensor,
    labels: Tensor,
    confidence: Tensor,
    *,
    threshold: float = PSEUDO_LABEL_THRESHOLD,
    valid: Tensor | None = None,
    dice_weight: float = 0.0,
) -> Tensor:
    """CE on pixels with confidence >= threshold, normalised by all valid pixels (valid: [B, H, W] bool).

    `dice_weight` > 0 adds the foreground Dice of the confident pixels, as in the supervised loss:
    (CE + w Dice) / (1 + w). CE alone is dominated by the background when the object is small.
    """
    per_pixel = F.cross_entropy(student_logits.float(), labels, reduction="none")
    valid = torch.ones_like(labels, dtype=torch.bool) if valid is None else valid
    kept = (confidence >= threshold) & valid
    ce = (per_pixel * kept).sum() / valid.sum().clamp_min(1)
    if not dice_weight:
        return ce
    return (ce + dice_weight * foreground_dice_loss(student_logits, labels, kept)) / (1.0 + dice_weight)


def confident_fraction(confidence: Tensor, threshold: float, valid: Tensor | None = None) -> float:
    """Pseudo-label coverage: the share of valid pixels the loss learns from."""
    valid = torch.ones_like(confidence, dtype=torch.bool) if valid is None else valid
    return float(((confidence >= threshold) & valid).sum() / valid.sum().clamp_min(1))
