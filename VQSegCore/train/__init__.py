"""One VQ-Seg training iteration: tensors in, losses out (no data loading, no CLI, no DDP).

    from VQSegCore.train import SemiSupervisedStep, LossWeights, make_teacher
    teacher = make_teacher(student)
    step = SemiSupervisedStep(student, teacher, optimiser, config)
    logs = step(labelled_images, labels, unlabelled_images, generator=generator)   # dict of floats
"""

from VQSegCore.train.augment import StrongAugment, cutmix, cutmix_boxes, strong_view, weak_view
from VQSegCore.train.ema import ema_momentum, make_teacher, update_ema
from VQSegCore.train.losses import pseudo_label_loss, pseudo_labels, supervised_loss
from VQSegCore.train.step import LossWeights, SemiSupervisedStep, strong_cutmix_views
from VQSegCore.train.checkpoint import load_checkpoint, save_checkpoint
from VQSegCore.train.data import CaseCache, PreparedCase, SliceSampler, prepare_training_data
from VQSegCore.train.loop import train, validate

__all__ = [
    "CaseCache",
    "PreparedCase",
    "SliceSampler",
    "load_checkpoint",
    "prepare_training_data",
    "save_checkpoint",
    "train",
    "validate",
    "LossWeights",
    "SemiSupervisedStep",
    "StrongAugment",
    "cutmix",
    "cutmix_boxes",
    "ema_momentum",
    "make_teacher",
    "pseudo_label_loss",
    "pseudo_labels",
    "strong_cutmix_views",
    "strong_view",
    "supervised_loss",
    "update_ema",
    "weak_view",
]
