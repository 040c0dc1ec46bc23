"""EMA, augmentations, CutMix and the segmentation losses of the training step."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from VQSegCore.model import VQSegConfig, build_model
from VQSegCore.train.augment import StrongAugment
from VQSegCore.train import (
    cutmix,
    cutmix_boxes,
    ema_momentum,
    make_teacher,
    pseudo_label_loss,
    pseudo_labels,
    strong_view,
    supervised_loss,
    update_ema,
    weak_view,
)

TINY_UNET = dict(backbone="unet", unet_base_width=8, unet_depth=3, codebook_size=64)


def _pair():
    torch.manual_seed(0)
    student = build_model(VQSegConfig(**TINY_UNET, unet_norm="batch"))
    teacher = make_teacher(student)
    with torch.no_grad():
        for p in student.parameters():
            p.add_(1.0)
        for name, b in student.named_buffers():
            if b.is_floating_point():
                b.add_(1.0)
    return student, teacher


@pytest.mark.parametrize("momentum", [0.0, 0.5, 1.0])
def test_ema_interpolates_parameters_and_float_buffers(momentum):
    student, teacher = _pair()
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    update_ema(teacher, student, momentum)
    s = student.state_dict()
    for name, t in teacher.state_dict().items():
        if not t.is_floating_point():
            assert torch.equal(t, before[name])  # integer bookkeeping is the teacher's own
            continue
        expected = momentum * before[name] + (1 - momentum) * s[name]
        assert torch.allclose(t, expected, atol=1e-6), name
    if momentum == 0.0:
        assert all(torch.equal(teacher.state_dict()[k], s[k]) for k in s if s[k].is_floating_point())
    if momentum == 1.0:
        assert all(torch.equal(teacher.state_dict()[k], before[k]) for k in before)


def test_ema_without_buffer_averaging_keeps_buffers():
    student, teacher = _pair()
    running = teacher.encoder.state_dict()
    running = {k: v.clone() for k, v in running.items() if "running_mean" in k}
    assert running
    update_ema(teacher, student, 0.0, average_buffers=False)
    for k, v in running.items():
        assert torch.equal(teacher.encoder.state_dict()[k], v)


def test_teacher_never_gets_gradients():
    student, teacher = _pair()
    assert not teacher.training
    assert all(not p.requires_grad for p in teacher.parameters())
    assert all(p.requires_grad for p in student.parameters())
    out = teacher(torch.rand(1, 1, 32, 32))
    assert not out.logits.requires_grad


def test_ema_momentum_ramp():
    assert ema_momentum(0, 0.99) == ema_momentum(10_000, 0.99) == 0.99
    assert ema_momentum(0, 0.996, ramp=True) == 0.0  # first step: the teacher copies the student
    assert ema_momentum(9, 0.996, ramp=True) == pytest.approx(0.9)
    assert ema_momentum(100_000, 0.996, ramp=True) == 0.996


def test_cutmix_box_area_and_mixing():
    g = torch.Generator().manual_seed(0)
    boxes = cutmix_boxes(200, (32, 48), g, p=1.0)
    fractions = boxes.float().mean(dim=(1, 2))
    assert fractions.min() >= 0.02 and fractions.max() <= 0.4
    assert fractions.max() > 0.25 and fractions.min() < 0.05  # the whole range is used
    for box in boxes[:20]:  # one axis-aligned rectangle
        rows, cols = box.any(1).nonzero(), box.any(0).nonzero()
        assert box.sum() == (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)

    images = torch.rand(4, 2, 32, 48, generator=g)
    labels = torch.randint(3, (4, 32, 48), generator=g)
    mixed_images, mixed_labels = cutmix(images, boxes[:4]), cutmix(labels, boxes[:4])
    for i in range(4):
        inside, j = boxes[i], 3 - i  # mixed with the batch in reverse order
        assert torch.equal(mixed_images[i][:, inside], images[j][:, inside])
        assert torch.equal(mixed_images[i][:, ~inside], images[i][:, ~inside])
        assert torch.equal(mixed_labels[i][inside], labels[j][inside])
        assert torch.equal(mixed_labels[i][~inside], labels[i][~inside])


def test_cutmix_probability_zero_mixes_nothing():
    boxes = cutmix_boxes(8, (16, 16), torch.Generator().manual_seed(0), p=0.0)
    assert not boxes.any()


def test_weak_view_keeps_labels_aligned():
    g = torch.Generator().manual_seed(0)
    labels = torch.zeros(16, 32, 32, dtype=torch.long)
    images = torch.zeros(16, 1, 32, 32)
    for i in range(16):  # a bright off-centre rectangle per sample, and its mask
        labels[i, 2 + i : 9 + i, 3:20] = 1
    images[:, 0] = labels.float() * 0.8 + 0.1
    x, y = weak_view(images, labels, generator=g)
    assert torch.equal((x[:, 0] > 0.5).long(), y)
    assert not torch.equal(y, labels)  # it did transform something
    assert torch.equal(y.sum(dim=(1, 2)), labels.sum(dim=(1, 2)))


def test_weak_view_non_square_keeps_shape():
    images = torch.rand(6, 1, 16, 32)
    (x,) = weak_view(images, generator=torch.Generator().manual_seed(1))
    assert x.shape == images.shape


def test_strong_view_stays_in_range_and_changes_intensity():
    g = torch.Generator().manual_seed(0)
    images = torch.rand(8, 1, 32, 32, generator=g)
    images[:, :, :4] = 1.0
    images[:, :, -4:] = 0.0
    strong = strong_view(images, g)
    assert strong.shape == images.shape
    assert strong.min() >= 0.0 and strong.max() <= 1.0
    assert not torch.allclose(strong, images, atol=1e-3)
    again = strong_view(images, torch.Generator().manual_seed(5))
    assert torch.equal(again, strong_view(images, torch.Generator().manual_seed(5)))  # seeded


def test_supervised_loss_parts_and_ignore():
    labels = torch.zeros(2, 8, 8, dtype=torch.long)
    labels[:, 2:5, 2:5] = 1
    perfect = F.one_hot(labels, 2).permute(0, 3, 1, 2).float() * 40
    loss = supervised_loss(perfect, labels)
    assert loss.total < 1e-3 and loss.dice < 1e-3
    wrong = supervised_loss(-perfect, labels)
    assert wrong.dice > 0.9 and wrong.cross_entropy > 10
    ignored = labels.clone()
    ignored[:, 2:5, 2:5] = 255  # hide the foreground: the wrong prediction there no longer counts
    mixed = perfect.clone()
    mixed[:, :, 2:5, 2:5] *= -1
    assert supervised_loss(mixed, ignored).cross_entropy < 1e-3
    assert supervised_loss(mixed, labels).cross_entropy > 1
    assert supervised_loss(perfect, labels, dice_weight=0.0).total == pytest.approx(float(loss.cross_entropy))


def test_pseudo_label_loss_threshold_and_normalisation():
    g = torch.Generator().manual_seed(0)
    teacher = torch.randn(2, 3, 8, 8, generator=g)
    student = torch.randn(2, 3, 8, 8, generator=g, requires_grad=True)
    labels, confidence = pseudo_labels(teacher)
    assert torch.equal(labels, teacher.argmax(1))
    assert torch.allclose(confidence, teacher.softmax(1).amax(1))

    nothing = pseudo_label_loss(student, labels, confidence, threshold=1.01)
    assert nothing == 0.0
    nothing.backward()  # still differentiable

    everything = pseudo_label_loss(student, labels, confidence, threshold=0.0)
    assert torch.allclose(everything, F.cross_entropy(student, labels))

    threshold = float(confidence.median())
    kept = confidence >= threshold
    some = pseudo_label_loss(student, labels, confidence, threshold=threshold)
    per_pixel = F.cross_entropy(student, labels, reduction="none")
    assert torch.allclose(some, per_pixel[kept].sum() / labels.numel())  # normalised by all pixels
    valid = torch.ones_like(labels, dtype=torch.bool)
    valid[0] = False
    masked = pseudo_label_loss(student, labels, confidence, threshold=threshold, valid=valid)
    assert torch.allclose(masked, per_pixel[kept & valid].sum() / valid.sum())


def test_pseudo_label_dice_is_the_foreground_dice_of_the_confident_pixels():
    g = torch.Generator().manual_seed(1)
    teacher = torch.randn(2, 2, 8, 8, generator=g)
    student = torch.randn(2, 2, 8, 8, generator=g, requires_grad=True)
    labels, confidence = pseudo_labels(teacher)
    threshold = float(confidence.median())
    kept = confidence >= threshold
    ce = pseudo_label_loss(student, labels, confidence, threshold=threshold)
    probs = student.softmax(1)[:, 1][kept]
    target = (labels[kept] == 1).float()
    dice = 1 - (2 * (probs * target).sum() + 1) / ((probs + target).sum() + 1)
    both = pseudo_label_loss(student, labels, confidence, threshold=threshold, dice_weight=3.0)
    assert torch.allclose(both, (ce + 3.0 * dice) / 4.0)
    assert not torch.allclose(both, ce)
    both.backward()
    assert student.grad[~kept.unsqueeze(1).expand_as(student)].abs().max() == 0  # unconfident pixels teach nothing


def zscored_slices(seed: int = 0) -> torch.Tensor:
    """MRI-like crops as preprocessing leaves them: a dark background, a bright pool, z-scored per crop."""
    g = torch.Generator().manual_seed(seed)
    images = 0.1 * torch.rand(8, 1, 32, 32, generator=g)
    images[:, :, 8:24, 8:24] += 0.5
    images[:, :, 12:20, 12:20] += 0.4
    mean, std = images.mean(dim=(1, 2, 3), keepdim=True), images.std(dim=(1, 2, 3), keepdim=True)
    return (images - mean) / std


def test_strong_view_of_zscored_images_keeps_their_range():
    images = zscored_slices()
    assert images.min() < -0.5 and images.max() > 1.5  # far outside [0, 1]
    strong = strong_view(images, torch.Generator().manual_seed(0))
    low = images.amin(dim=(1, 2, 3), keepdim=True)
    high = images.amax(dim=(1, 2, 3), keepdim=True)
    assert (strong >= low).all() and (strong <= high).all()
    # The structures keep their texture: the ring never, the pool rarely sits on a bound (a [0, 1]
    # clamp puts over half of each there: the next test). Only the background may clamp at its floor.
    at_bounds = (strong == low) | (strong == high)
    assert not at_bounds[:, :, 8:12, 8:24].any()
    assert at_bounds[:, :, 12:20, 12:20].float().mean() < 0.15
    # ... and the structures stay apart: the bright pool above the ring above the background, in every sample.
    pool = strong[:, :, 12:20, 12:20].mean(dim=(1, 2, 3))
    ring = strong[:, :, 8:12, 8:24].mean(dim=(1, 2, 3))
    background = strong[:, :, :6].mean(dim=(1, 2, 3))
    assert (pool > ring).all() and (ring > background).all()
    assert not torch.allclose(strong, images, atol=1e-3)


def test_a_fixed_unit_range_clamps_zscored_images_as_the_old_views_did():
    images = zscored_slices()
    strong = strong_view(images, torch.Generator().manual_seed(0), StrongAugment(value_range=(0.0, 1.0)))
    assert strong.min() >= 0.0 and strong.max() <= 1.0
    at_bounds = (strong == 0.0) | (strong == 1.0)
    assert at_bounds[:, :, 8:12, 8:24].float().mean() > 0.3  # the failure the sample range avoids
    assert at_bounds[:, :, 12:20, 12:20].float().mean() > 0.3


def test_strong_view_of_ct_windowed_images_matches_the_unit_range():
    # A crop that spans the whole window [0, 1]: its own range is the unit range, so both agree exactly.
    g = torch.Generator().manual_seed(3)
    images = torch.rand(4, 1, 16, 16, generator=g)
    images[:, :, 0, 0], images[:, :, 0, 1] = 0.0, 1.0
    own = strong_view(images, torch.Generator().manual_seed(4))
    unit = strong_view(images, torch.Generator().manual_seed(4), StrongAugment(value_range=(0.0, 1.0)))
    assert torch.allclose(own, unit, atol=1e-6)
