"""One VQ-Seg training iteration: tensors in, losses out (no data loading, no CLI, no DDP).

    from VQSegCore.train import SemiSupervisedStep, LossWeights, make_teacher
    teacher = make_teacher(student)
    step = SemiSupervisedStep(student, teacher, optimiser, config)
    logs = step(labelled_images, labels, unlabelled_images, generator=generator)   # dict of floats
"""

import importlib

# Loaded on first use (PEP 562): importing VQSegCore.train.settings, which every command's start-up does
# to build its flags, must not import torch through this package.
_EXPORTS = {
    "StrongAugment": "VQSegCore.train.augment",
    "cutmix": "VQSegCore.train.augment",
    "cutmix_boxes": "VQSegCore.train.augment",
    "strong_view": "VQSegCore.train.augment",
    "weak_view": "VQSegCore.train.augment",
    "ema_momentum": "VQSegCore.train.ema",
    "make_teacher": "VQSegCore.train.ema",
    "update_ema": "VQSegCore.train.ema",
    "pseudo_label_loss": "VQSegCore.train.losses",
    "pseudo_labels": "VQSegCore.train.losses",
    "supervised_loss": "VQSegCore.train.losses",
    "LossWeights": "VQSegCore.train.step",
    "SemiSupervisedStep": "VQSegCore.train.step",
    "strong_cutmix_views": "VQSegCore.train.step",
    "load_checkpoint": "VQSegCore.train.checkpoint",
    "save_checkpoint": "VQSegCore.train.checkpoint",
    "CaseCache": "VQSegCore.train.data",
    "PreparedCase": "VQSegCore.train.data",
    "SliceSampler": "VQSegCore.train.data",
    "prepare_training_data": "VQSegCore.train.data",
    "train": "VQSegCore.train.loop",
    "validate": "VQSegCore.train.loop",
}


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)


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
