"""One VQ-Seg semi-supervised iteration (paper's method; authors' code choices as options).

    labelled x_l ── weak ── student (no perturbation) ── L_sup (CE + Dice), L_rec, L_vq, L_pfa
    unlabelled x_u ─ weak ─┬─ EMA teacher (no grad, eval, no perturbation) ─ pseudo-label + confidence
                          └─ strong x2 ─ CutMix ─ student (perturb=True: qpm | dropout | none)
                                                  ─ L_unsup (CutMix-mixed pseudo-labels), L_rec, L_vq, L_pfa
    total = w_l L_sup + w_u L_unsup + w_rec L_rec + w_vq L_vq + w_pfa L_pfa;  backward, step, EMA.

The two strong views go through the student in one pass of 2B, as the authors' code
(`strong_views` sets how many; `unlabelled_dice` adds the pseudo-labels' Dice to their CE). L_vq sums
the student passes (authors': L_vq^l + L_vq^u); L_rec and L_pfa average them, so their weights
mean the same with and without unlabelled data. `supervised_only=True` skips the unlabelled branch:
the supervised baseline on the same code path.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from VQSegCore.model.config import VQSegConfig
from VQSegCore.model.foundation import FoundationModel
from VQSegCore.model.heads import reconstruction_l1_loss
from VQSegCore.model.pfa import patch_infonce_loss
from VQSegCore.train.augment import StrongAugment, cutmix, cutmix_boxes, strong_view, weak_view
from VQSegCore.train.distributed import SINGLE_PROCESS, Distributed
from VQSegCore.train.ema import ema_momentum, update_ema
from VQSegCore.train.losses import PSEUDO_LABEL_THRESHOLD, confident_fraction, pseudo_label_loss, pseudo_labels, supervised_loss


STRONG_RANGES = {"sample": None, "unit": (0.0, 1.0)}


@dataclass
class LossWeights:
    """Weights of the total loss. Defaults: the paper where it gives one, else the authors' code.

    labelled 1 and unlabelled 1 (paper, lambda_u = 1); `authors_code()` gives the code's
    1/2 (5 L_x + L_u). vq 0.1 (code; the paper gives none). reconstruction and pfa: None takes
    `config.reconstruction_weight` (1) and `config.pfa_weight` (paper's lambda_a = 5).
    """

    labelled: float = 1.0
    unlabelled: float = 1.0
    vq: float = 0.1
    reconstruction: float | None = None
    pfa: float | None = None
    dice: float = 1.0  # inside L_sup: (CE + dice * Dice) / (1 + dice); 0 = paper's CE only

    @classmethod
    def authors_code(cls, **overrides: float) -> "LossWeights":
        return cls(**{"labelled": 2.5, "unlabelled": 0.5, **overrides})

    def resolved(self, config: VQSegConfig) -> "LossWeights":
        rec = config.reconstruction_weight if self.reconstruction is None else self.reconstruction
        pfa = config.pfa_weight if self.pfa is None else self.pfa
        return LossWeights(self.labelled, self.unlabelled, self.vq, rec, pfa, self.dice)


class SemiSupervisedStep:
    """Callable training step; holds the student, its EMA teacher, the optimiser and the options.

    Images are [B, C, H, W] as preprocessed (H, W multiples of `config.size_multiple`); labels [B, H, W]
    long with IGNORE_INDEX (255) for padding. `generator` (a CPU torch.Generator) drives all
    augmentation; on CPU it also drives the perturbation, so a seeded run is bit-reproducible.
    """

    def __init__(
        self,
        student: nn.Module,
        teacher: nn.Module,
        optimiser: torch.optim.Optimizer,
        config: VQSegConfig | None = None,
        *,
        weights: LossWeights | None = None,
        # The preset when `weights` is None: "authors" (the authors' code, 1/2 (5 L_sup + L_unsup)) | "paper"
        # (L_sup + L_unsup). With strong views in the image's own range, the paper's weights let the
        # pseudo-labels erase the thin ACDC myocardium (Dice 0 on all 20 volumes, two runs); the
        # authors' kept it (README, ACDC benchmark).
        loss_weights: str = "authors",
        foundation: FoundationModel | None = None,
        confidence_threshold: float = PSEUDO_LABEL_THRESHOLD,
        unlabelled_dice: float = 0.0,  # 0 = the authors' CE-only L_unsup; w > 0: (CE + w Dice) / (1 + w)
        strong_views: int = 2,  # the authors' code: two CutMix-ed strong views per unlabelled image
        # The teacher's momentum: min(1 - 1/t, ema_base), the authors' ramp (they cap it at 0.996), so
        # the random initial weights do not linger (a constant 0.99 still holds 37 % of them at t = 100).
        # ema_ramp=False: the paper's constant alpha = ema_base.
        ema_base: float = 0.99,
        ema_ramp: bool = True,
        ema_average_buffers: bool = True,
        cutmix_p: float = 0.5,
        strong: StrongAugment | None = None,
        strong_range: str = "sample",  # intensities of the strong views stay in "sample": each crop's own range | "unit": [0, 1]
        autocast_dtype: torch.dtype | None = None,  # None = fp32; torch.bfloat16 / float16 for mixed precision
        distributed: Distributed = SINGLE_PROCESS,  # under torchrun: gradients and buffers averaged over ranks
    ) -> None:
        self.student, self.teacher, self.optimiser = student, teacher, optimiser
        self.config = config or student.config
        if loss_weights not in LOSS_WEIGHT_PRESETS:
            raise ValueError(f"loss_weights must be one of {', '.join(LOSS_WEIGHT_PRESETS)}, got {loss_weights!r}")
        self.weights = (weights or LOSS_WEIGHT_PRESETS[loss_weights]()).resolved(self.config)
        self.foundation = foundation
        if self.weights.pfa and foundation is not None and getattr(student, "pfa_adapter", None) is None:
            raise ValueError("a foundation model was given but the model has no PFA adapter (config.pfa_model)")
        if strong_views < 1:
            raise ValueError(f"strong_views must be >= 1, got {strong_views}")
        self.threshold, self.unlabelled_dice, self.strong_views = confidence_threshold, unlabelled_dice, strong_views
        self.ema_base, self.ema_ramp, self.ema_average_buffers = ema_base, ema_ramp, ema_average_buffers
        self.cutmix_p = cutmix_p
        if strong_range not in STRONG_RANGES:
            raise ValueError(f"strong_range must be one of {', '.join(STRONG_RANGES)}, got {strong_range!r}")
        self.strong = strong or StrongAugment(value_range=STRONG_RANGES[strong_range])
        self.autocast_dtype = autocast_dtype
        self.distributed = distributed
        # float16 needs loss scaling (bfloat16 has float32's range and does not).
        device_type = next(student.parameters()).device.type
        self.scaler = torch.amp.GradScaler(device_type, enabled=autocast_dtype == torch.float16)
        self.iteration = 0

    def __call__(
        self,
        labelled_images: Tensor,
        labels: Tensor,
        unlabelled_images: Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
        supervised_only: bool = False,
    ) -> dict[str, float]:
        if not supervised_only and unlabelled_images is None:
            raise ValueError("unlabelled_images are required unless supervised_only=True")
        self.student.train()
        x_l, y_l = weak_view(labelled_images, labels, generator=generator)
        terms: dict[str, Tensor] = {}

        out_l = self._student(x_l, perturb=False, generator=generator)
        sup = supervised_loss(out_l.logits, y_l, dice_weight=self.weights.dice)
        terms.update(sup=sup.total, sup_ce=sup.cross_entropy, sup_dice=sup.dice)
        rec, vq, pfa = [self._reconstruction(out_l, x_l)], [out_l.vq_losses.total.float()], [self._pfa(out_l, x_l)]
        logs = {"pseudo_coverage": 0.0, "qpm_changed": 0.0}

        if not supervised_only:
            unsup, out_u, x_s, coverage = self._unlabelled(unlabelled_images, generator)
            terms["unsup"] = unsup
            rec.append(self._reconstruction(out_u, x_s))
            vq.append(out_u.vq_losses.total.float())
            pfa.append(self._pfa(out_u, x_s))
            logs["pseudo_coverage"] = coverage
            if out_u.perturbed_mask is not None:
                logs["qpm_changed"] = float(out_u.perturbed_mask.float().mean())

        terms["rec"] = _mean([r for r in rec if r is not None])
        terms["vq"] = torch.stack(vq).sum()
        terms["pfa"] = _mean([p for p in pfa if p is not None])
        w = self.weights
        total = w.labelled * terms["sup"] + w.vq * terms["vq"]
        if "unsup" in terms:
            total = total + w.unlabelled * terms["unsup"]
        if terms["rec"] is not None:
            total = total + w.reconstruction * terms["rec"]
        if terms["pfa"] is not None:
            total = total + w.pfa * terms["pfa"]

        self.optimiser.zero_grad(set_to_none=True)
        self.scaler.scale(total).backward()
        self.distributed.average_gradients(self.student)
        self.scaler.step(self.optimiser)
        self.scaler.update()
        self.distributed.average_buffers(self.student)
        momentum = ema_momentum(self.iteration, self.ema_base, self.ema_ramp)
        update_ema(self.teacher, self.student, momentum, average_buffers=self.ema_average_buffers)
        self.iteration += 1

        logs.update({name: float(value.detach()) for name, value in terms.items() if value is not None})
        logs.update(loss=float(total.detach()), ema_momentum=momentum)
        return logs

    # ---- the unlabelled branch ---------------------------------------------------------------
    def _unlabelled(self, images: Tensor, generator: torch.Generator | None) -> tuple[Tensor, object, Tensor, float]:
        (x_w,) = weak_view(images, generator=generator)
        self.teacher.eval()  # eval-mode semantics (BatchNorm statistics, dropout); no perturbation
        with torch.no_grad(), self._autocast():
            teacher_out = self.teacher(x_w, perturb=False, reconstruct=False)
        pseudo, confidence = pseudo_labels(teacher_out.logits)

        views, view_labels, view_confidence = strong_cutmix_views(
            x_w, pseudo, confidence, generator, strong=self.strong, cutmix_p=self.cutmix_p, views=self.strong_views
        )
        x_s = torch.cat(views)
        out = self._student(x_s, perturb=True, generator=generator)
        logits = out.logits.float().chunk(self.strong_views)
        losses = [
            pseudo_label_loss(lg, lb, cf, threshold=self.threshold, dice_weight=self.unlabelled_dice)
            for lg, lb, cf in zip(logits, view_labels, view_confidence)
        ]
        coverage = confident_fraction(torch.cat(view_confidence), self.threshold)
        return torch.stack(losses).mean(), out, x_s, coverage

    # ---- helpers ------------------------------------------------------------------------------
    def _student(self, images: Tensor, *, perturb: bool, generator: torch.Generator | None):
        pfa_grid = self.foundation.grid_for(tuple(images.shape[-2:])) if self._use_pfa() else None
        # A CPU generator cannot drive CUDA sampling; there the perturbation uses the global CUDA RNG.
        model_generator = generator if generator is not None and generator.device == images.device else None
        with self._autocast():
            return self.student(images, perturb=perturb, pfa_grid=pfa_grid, generator=model_generator)

    def _reconstruction(self, out, images: Tensor) -> Tensor | None:
        if out.reconstruction is None or not self.weights.reconstruction:
            return None
        return reconstruction_l1_loss(out.reconstruction.float(), images.float())

    def _pfa(self, out, images: Tensor) -> Tensor | None:
        if not self._use_pfa():
            return None
        target = self.foundation.features(images)  # frozen, no grad
        return patch_infonce_loss(out.pfa_features.float(), target, self.config.pfa_temperature)

    def _use_pfa(self) -> bool:
        return self.foundation is not None and bool(self.weights.pfa)

    def _autocast(self):
        if self.autocast_dtype is None:
            return nullcontext()
        device = next(self.student.parameters()).device.type
        return torch.autocast(device_type=device, dtype=self.autocast_dtype)


# Named presets of the loss weights, so a run's settings (numbers and strings) can choose one.
LOSS_WEIGHT_PRESETS = {"paper": LossWeights, "authors": LossWeights.authors_code}


def strong_cutmix_views(
    weak: Tensor,
    pseudo: Tensor,
    confidence: Tensor,
    generator: torch.Generator | None,
    *,
    strong: StrongAugment | None = None,
    cutmix_p: float = 0.5,
    views: int = 2,
) -> tuple[list[Tensor], list[Tensor], list[Tensor]]:
    """Strong views of the weak images, each CutMix-ed with its own boxes; the teacher's pseudo-labels
    and confidences mixed with the same boxes, so every pixel keeps the label of the image it shows."""
    images, labels, confidences = [], [], []
    for _ in range(views):
        boxes = cutmix_boxes(len(weak), weak.shape[-2:], generator, p=cutmix_p, device=weak.device)
        images.append(cutmix(strong_view(weak, generator, strong), boxes))
        labels.append(cutmix(pseudo, boxes))
        confidences.append(cutmix(confidence, boxes))
    return images, labels, confidences


def _mean(values: list[Tensor]) -> Tensor | None:
    return torch.stack(values).mean() if values else None
