"""The semi-supervised training step: every perturbation, supervised-only, learning, seeding, PFA."""

from __future__ import annotations

import math

import pytest
import torch

from VQSegCore.model import VQSegConfig, build_model
from VQSegCore.model.foundation import RandomConvFoundation
from VQSegCore.train import LossWeights, SemiSupervisedStep, make_teacher

TINY_UNET = dict(backbone="unet", unet_base_width=8, unet_depth=3, codebook_size=64)
LOSS_KEYS = {"loss", "sup", "sup_ce", "sup_dice", "rec", "vq"}


def square_batch(batch: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Dark noisy 32x32 images with one bright square, and its mask."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.zeros(batch, 32, 32, dtype=torch.long)
    for i in range(batch):
        size = int(torch.randint(6, 14, (1,), generator=g))
        top, left = (int(v) for v in torch.randint(0, 32 - size, (2,), generator=g))
        labels[i, top : top + size, left : left + size] = 1
    images = (0.2 + 0.6 * labels.float() + 0.05 * torch.randn(batch, 32, 32, generator=g)).clamp(0, 1)
    return images[:, None], labels


def make_step(seed: int = 0, foundation=None, lr: float = 1e-3, step_options: dict | None = None, **config) -> SemiSupervisedStep:
    torch.manual_seed(seed)
    student = build_model(VQSegConfig(**{**TINY_UNET, **config}))
    teacher = make_teacher(student)
    optimiser = torch.optim.AdamW(student.parameters(), lr=lr)
    return SemiSupervisedStep(student, teacher, optimiser, foundation=foundation, **(step_options or {}))


def snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.named_parameters()}


@pytest.mark.parametrize("perturbation", ["qpm", "dropout", "none", "supervised_only"])
def test_one_step_updates_student_and_teacher(perturbation):
    supervised_only = perturbation == "supervised_only"
    step = make_step(perturbation="qpm" if supervised_only else perturbation, qpm_epsilon=0.7, step_options={"ema_ramp": False})
    step.threshold = 0.0  # every pixel confident, so the unlabelled loss is non-trivial
    student_before, teacher_before = snapshot(step.student), snapshot(step.teacher)
    x_l, y_l = square_batch(2, 0)
    x_u, _ = square_batch(2, 1)
    logs = step(x_l, y_l, None if supervised_only else x_u, generator=torch.Generator().manual_seed(0), supervised_only=supervised_only)

    assert LOSS_KEYS <= set(logs) and all(math.isfinite(v) for v in logs.values())
    if supervised_only:
        assert "unsup" not in logs and logs["pseudo_coverage"] == 0.0
    else:
        assert logs["unsup"] > 0 and logs["pseudo_coverage"] == 1.0
        assert (logs["qpm_changed"] > 0) == (perturbation == "qpm")
    student_after, teacher_after = snapshot(step.student), snapshot(step.teacher)
    assert any(not torch.equal(student_before[k], student_after[k]) for k in student_before)
    for name, t in teacher_after.items():  # teacher = 0.99 teacher + 0.01 student (paper's alpha)
        assert torch.allclose(t, 0.99 * teacher_before[name] + 0.01 * student_after[name], atol=1e-6)
    assert any(not torch.equal(teacher_before[k], teacher_after[k]) for k in teacher_before)
    assert all(p.grad is None for p in step.teacher.parameters())
    assert step.iteration == 1


def test_the_default_teacher_ramps_from_the_student():
    """min(1 - 1/t, 0.99): the first step copies the student, the tenth keeps 0.9 of the teacher."""
    step = make_step()
    assert step.ema_ramp and step.ema_base == 0.99
    x_l, y_l = square_batch(2, 0)
    x_u, _ = square_batch(2, 1)
    logs = step(x_l, y_l, x_u, generator=torch.Generator().manual_seed(0))
    assert logs["ema_momentum"] == 0.0
    student, teacher = snapshot(step.student), snapshot(step.teacher)
    assert all(torch.equal(teacher[k], student[k]) for k in student)
    for _ in range(9):
        logs = step(x_l, y_l, x_u, generator=torch.Generator().manual_seed(0))
    assert logs["ema_momentum"] == pytest.approx(0.9)


def test_unlabelled_images_are_required_unless_supervised_only():
    step = make_step()
    x_l, y_l = square_batch(2, 0)
    with pytest.raises(ValueError, match="unlabelled"):
        step(x_l, y_l, generator=torch.Generator().manual_seed(0))


def test_steps_reduce_supervised_loss_on_a_fixed_problem():
    step = make_step(lr=5e-3)
    x_l, y_l = square_batch(4, 0)
    x_u, _ = square_batch(4, 1)
    g = torch.Generator().manual_seed(0)
    losses = [step(x_l, y_l, x_u, generator=g)["sup"] for _ in range(60)]
    first, last = sum(losses[:3]) / 3, sum(losses[-3:]) / 3
    assert last < 0.5 * first, (first, last)


def _weights_after_three_steps(seed: int) -> dict[str, torch.Tensor]:
    step = make_step(qpm_epsilon=0.7)
    x_l, y_l = square_batch(2, 0)
    x_u, _ = square_batch(2, 1)
    g = torch.Generator().manual_seed(seed)
    for _ in range(3):
        step(x_l, y_l, x_u, generator=g)
    return snapshot(step.student)


def test_same_seed_is_bit_identical_different_seed_differs():
    a, b, c = _weights_after_three_steps(7), _weights_after_three_steps(7), _weights_after_three_steps(8)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)


def test_pfa_term_with_random_foundation():
    foundation = RandomConvFoundation(in_channels=1, feature_dim=16, stride=8)
    step = make_step(foundation=foundation, pfa_model="random", pfa_feature_dim=16)
    x_l, y_l = square_batch(2, 0)
    x_u, _ = square_batch(2, 1)
    logs = step(x_l, y_l, x_u, generator=torch.Generator().manual_seed(0))
    assert math.isfinite(logs["pfa"]) and logs["pfa"] > 0
    assert all(math.isfinite(v) for v in logs.values())
    without = make_step()(x_l, y_l, x_u, generator=torch.Generator().manual_seed(0))
    assert "pfa" not in without


def test_pfa_needs_an_adapter():
    torch.manual_seed(0)
    student = build_model(VQSegConfig(**TINY_UNET))
    with pytest.raises(ValueError, match="PFA adapter"):
        SemiSupervisedStep(student, make_teacher(student), torch.optim.SGD(student.parameters(), lr=0.1), foundation=RandomConvFoundation())


def test_loss_weights_resolve_from_config_and_authors_preset():
    config = VQSegConfig(**TINY_UNET, reconstruction_weight=0.3, pfa_weight=2.0)
    weights = LossWeights().resolved(config)
    assert (weights.labelled, weights.unlabelled, weights.vq, weights.reconstruction, weights.pfa) == (1.0, 1.0, 0.1, 0.3, 2.0)
    code = LossWeights.authors_code()
    assert (code.labelled, code.unlabelled) == (2.5, 0.5)  # 1/2 (5 L_x + L_u)


def test_total_is_the_weighted_sum():
    step = make_step()
    step.weights = LossWeights(labelled=2.0, unlabelled=3.0, vq=0.5, reconstruction=0.25, pfa=0.0)
    x_l, y_l = square_batch(2, 0)
    x_u, _ = square_batch(2, 1)
    step.threshold = 0.0
    logs = step(x_l, y_l, x_u, generator=torch.Generator().manual_seed(0))
    expected = 2.0 * logs["sup"] + 3.0 * logs["unsup"] + 0.5 * logs["vq"] + 0.25 * logs["rec"]
    assert logs["loss"] == pytest.approx(expected, rel=1e-5)


def test_bfloat16_autocast_step_is_finite():
    step = make_step()
    step.autocast_dtype = torch.bfloat16
    x_l, y_l = square_batch(2, 0)
    x_u, _ = square_batch(2, 1)
    logs = step(x_l, y_l, x_u, generator=torch.Generator().manual_seed(0))
    assert all(math.isfinite(v) for v in logs.values())


def test_strong_cutmix_views_keep_pseudo_labels_with_their_pixels():
    from VQSegCore.train import StrongAugment, strong_cutmix_views

    batch = 4
    ids = torch.arange(batch)
    weak = (ids.float() / 10).view(batch, 1, 1, 1).expand(batch, 1, 32, 32)  # sample i is the value i/10
    pseudo = ids.view(batch, 1, 1).expand(batch, 32, 32)
    confidence = (0.5 + ids.float() / 10).view(batch, 1, 1).expand(batch, 32, 32)
    no_intensity = StrongAugment(jitter_p=0.0, blur_p=0.0, noise_p=0.0)
    images, labels, confidences = strong_cutmix_views(
        weak, pseudo, confidence, torch.Generator().manual_seed(0), strong=no_intensity, cutmix_p=1.0
    )
    assert len(images) == len(labels) == len(confidences) == 2
    assert not torch.equal(images[0], images[1])  # each view has its own boxes
    for image, label, conf in zip(images, labels, confidences):
        shown = (image[:, 0] * 10).round().long()
        assert torch.equal(shown, label)
        assert torch.allclose(conf, 0.5 + label.float() / 10)
        assert (label != pseudo).any()  # something was mixed in


@pytest.mark.parametrize("views", [1, 3])
def test_the_student_sees_as_many_strong_views_as_asked(views):
    torch.manual_seed(0)
    student = build_model(VQSegConfig(**TINY_UNET))
    step = SemiSupervisedStep(student, make_teacher(student), torch.optim.AdamW(student.parameters()), strong_views=views,
                              unlabelled_dice=1.0)
    step.threshold = 0.0
    batches = []
    student.register_forward_hook(lambda module, args, out: batches.append(args[0].shape[0]))
    x_l, y_l = square_batch(2, 0)
    x_u, _ = square_batch(2, 1)
    logs = step(x_l, y_l, x_u, generator=torch.Generator().manual_seed(0))
    assert batches == [2, 2 * views] and math.isfinite(logs["unsup"]) and logs["unsup"] > 0
    with pytest.raises(ValueError, match="strong_views"):
        SemiSupervisedStep(student, make_teacher(student), torch.optim.AdamW(student.parameters()), strong_views=0)


def decoder_skips(perturbation: str, perturb_skips: bool, perturb: bool = True) -> list[torch.Tensor]:
    """The skip features the segmentation decoder receives in one forward pass."""
    torch.manual_seed(0)
    model = build_model(VQSegConfig(**{**TINY_UNET, "perturbation": perturbation, "perturb_skips": perturb_skips}))
    seen = []
    model.seg_decoder.register_forward_pre_hook(lambda module, inputs: seen.append([s.detach() for s in inputs[0]]))
    x, _ = square_batch(4, 0)
    model(x, perturb=perturb, generator=torch.Generator().manual_seed(1))
    return seen[0]


def dropped_channel_share(perturbation: str, perturb_skips: bool, perturb: bool = True) -> float:
    """Share of the skip channels that are live in a plain pass and zero in this one."""
    plain = decoder_skips(perturbation, False, perturb=False)
    skips = decoder_skips(perturbation, perturb_skips, perturb)
    live = [p.abs().amax(dim=(2, 3)) > 0 for p in plain]
    dropped = [(s.abs().amax(dim=(2, 3)) == 0) & alive for s, alive in zip(skips, live)]
    return float(sum(d.sum() for d in dropped) / sum(alive.sum() for alive in live))


@pytest.mark.parametrize("perturbation", ["qpm", "dropout"])
def test_skip_perturbation_drops_skip_channels_when_asked(perturbation):
    assert dropped_channel_share(perturbation, perturb_skips=False) == 0.0
    assert 0.3 < dropped_channel_share(perturbation, perturb_skips=True) < 0.7  # p = 0.5 per sample and channel
    assert dropped_channel_share(perturbation, perturb_skips=True, perturb=False) == 0.0  # teacher, inference


def test_no_perturbation_leaves_the_skips_alone():
    assert dropped_channel_share("none", perturb_skips=True) == 0.0


def test_loss_weight_presets_are_named_settings():
    authors = make_step().weights
    assert (authors.labelled, authors.unlabelled) == (2.5, 0.5)  # the default: 1/2 (5 L_x + L_u)
    paper = make_step(step_options={"loss_weights": "paper"}).weights
    assert (paper.labelled, paper.unlabelled) == (1.0, 1.0)
    with pytest.raises(ValueError, match="loss_weights"):
        make_step(step_options={"loss_weights": "mine"})
