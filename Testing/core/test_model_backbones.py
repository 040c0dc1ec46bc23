"""Both backbones run forward and backward at a tiny size with every perturbation; DINOv2 names."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from VQSegCore.errors import InputError
from VQSegCore.model import VQSegConfig, build_model, reconstruction_l1_loss
from VQSegCore.model.pretrained import load_dinov2_weights
from VQSegCore.model.vit_dinov2 import DinoV2ViT

TINY_UNET = dict(backbone="unet", unet_base_width=8, unet_depth=3, codebook_size=64)
TINY_VIT = dict(backbone="vit_dinov2", vit_depth=4, vit_taps=(0, 1, 2, 3), codebook_size=128, qpm_median_sample=64)


@pytest.mark.parametrize("perturbation", ["qpm", "dropout", "none"])
@pytest.mark.parametrize("backbone, size", [(TINY_UNET, 32), (TINY_VIT, 28)], ids=["unet", "vit"])
def test_forward_backward_every_perturbation(backbone, size, perturbation):
    torch.manual_seed(0)
    model = build_model(VQSegConfig(**backbone, perturbation=perturbation, pfa_model="random", pfa_feature_dim=16))
    images = torch.rand(2, 1, size, size)
    out = model(images, perturb=True, pfa_grid=(2, 2), generator=torch.Generator().manual_seed(1))
    assert out.logits.shape == (2, 2, size, size)
    assert out.reconstruction.shape == images.shape
    assert out.pfa_features.shape == (2, 16, 2, 2)
    h = size // model.size_multiple
    assert out.indices.shape == out.quantization_distance.shape == (2, h, h)
    if perturbation == "qpm":
        assert out.perturbed_mask.shape == (2, h, h)
    else:
        assert out.perturbed_mask is None

    labels = torch.randint(2, (2, size, size))
    loss = F.cross_entropy(out.logits, labels) + out.vq_losses.total + reconstruction_l1_loss(out.reconstruction, images)
    loss.backward()
    first_encoder_weight = next(model.encoder.parameters())
    assert first_encoder_weight.grad is not None and first_encoder_weight.grad.abs().sum() > 0
    assert model.quantizer.codebook_projection.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("backbone, size", [(TINY_UNET, 32), (TINY_VIT, 28)], ids=["unet", "vit"])
def test_segmentation_gradient_reaches_encoder_through_qpm(backbone, size):
    # Only the segmentation loss of the perturbed path: the encoder must still learn from it (STE).
    model = build_model(VQSegConfig(**backbone, qpm_epsilon=1.0))
    out = model(torch.rand(1, 1, size, size), perturb=True, reconstruct=False)
    assert out.perturbed_mask.all()
    out.logits.square().mean().backward()
    grads = [p.grad for p in model.encoder.parameters() if p.grad is not None]
    assert grads and sum(g.abs().sum() for g in grads) > 0


def test_reconstruction_depends_only_on_quantised_features():
    model = build_model(VQSegConfig(**TINY_UNET)).eval()
    images = torch.rand(1, 1, 32, 32)
    out = model(images)
    again = model.reconstruction_decoder(out.quantized, (32, 32))
    assert torch.equal(out.reconstruction, again)


def test_perturbation_changes_only_segmentation_input():
    model = build_model(VQSegConfig(**TINY_UNET, qpm_epsilon=1.0)).eval()
    images = torch.rand(1, 1, 32, 32)
    clean, perturbed = model(images), model(images, perturb=True)
    assert torch.equal(clean.reconstruction, perturbed.reconstruction)
    assert torch.equal(clean.indices, perturbed.indices)
    assert not torch.equal(clean.logits, perturbed.logits)


def test_input_size_must_be_a_multiple():
    model = build_model(VQSegConfig(**TINY_UNET))
    with pytest.raises(ValueError, match="multiple of 8"):
        model(torch.rand(1, 1, 30, 32))
    with pytest.raises(ValueError, match="expected images"):
        model(torch.rand(1, 3, 32, 32))


# ---- DINOv2 checkpoint compatibility ------------------------------------------------------

def official_vits14_shapes() -> dict[str, tuple[int, ...]]:
    """Names and shapes of Meta's dinov2_vits14_pretrain.pth, written out from its architecture."""
    d, hidden = 384, 1536
    shapes = {
        "cls_token": (1, 1, d),
        "pos_embed": (1, 1 + 37 * 37, d),
        "mask_token": (1, d),
        "patch_embed.proj.weight": (d, 3, 14, 14),
        "patch_embed.proj.bias": (d,),
        "norm.weight": (d,),
        "norm.bias": (d,),
    }
    for n in range(12):
        b = f"blocks.{n}."
        shapes.update({
            b + "norm1.weight": (d,), b + "norm1.bias": (d,),
            b + "attn.qkv.weight": (3 * d, d), b + "attn.qkv.bias": (3 * d,),
            b + "attn.proj.weight": (d, d), b + "attn.proj.bias": (d,),
            b + "ls1.gamma": (d,),
            b + "norm2.weight": (d,), b + "norm2.bias": (d,),
            b + "mlp.fc1.weight": (hidden, d), b + "mlp.fc1.bias": (hidden,),
            b + "mlp.fc2.weight": (d, hidden), b + "mlp.fc2.bias": (d,),
            b + "ls2.gamma": (d,),
        })
    return shapes


def fake_checkpoint() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return {name: torch.randn(shape, generator=generator) * 0.02 for name, shape in official_vits14_shapes().items()}


def test_vit_has_exactly_the_official_parameter_names():
    vit = DinoV2ViT()
    assert {k: tuple(v.shape) for k, v in vit.state_dict().items()} == official_vits14_shapes()


def test_official_pth_loads_strictly_and_runs_at_a_small_size(tmp_path):
    checkpoint = fake_checkpoint()
    path = tmp_path / "dinov2_vits14_pretrain.pth"
    torch.save(checkpoint, path)
    model = build_model(VQSegConfig(backbone="vit_dinov2", codebook_size=64), encoder_weights=path)
    assert torch.equal(model.encoder.vit.blocks[11].ls2.gamma, checkpoint["blocks.11.ls2.gamma"])
    out = model(torch.rand(1, 1, 56, 56))
    assert out.logits.shape == (1, 2, 56, 56) and out.indices.shape == (1, 4, 4)


def test_safetensors_without_mask_token_loads_and_foreign_file_is_refused(tmp_path):
    from safetensors.torch import save_file

    checkpoint = fake_checkpoint()
    del checkpoint["mask_token"]  # timm's export has no mask token
    save_file(checkpoint, str(tmp_path / "model.safetensors"))
    vit = DinoV2ViT()
    load_dinov2_weights(vit, tmp_path / "model.safetensors")
    assert torch.equal(vit.pos_embed, checkpoint["pos_embed"])

    checkpoint["head.weight"] = torch.zeros(10, 384)
    save_file(checkpoint, str(tmp_path / "foreign.safetensors"))
    with pytest.raises(InputError, match="unexpected"):
        load_dinov2_weights(vit, tmp_path / "foreign.safetensors")
    with pytest.raises(InputError, match="not found"):
        load_dinov2_weights(vit, tmp_path / "missing.pth")


def test_auto_weights_never_download(tmp_path, monkeypatch):
    for variable in ("TORCH_HOME", "HF_HOME", "HF_HUB_CACHE", "XDG_CACHE_HOME"):
        monkeypatch.setenv(variable, str(tmp_path / variable))
    with pytest.raises(InputError, match="no DINOv2"):
        build_model(VQSegConfig(**TINY_VIT), encoder_weights="auto")


def test_position_embedding_interpolation():
    vit = DinoV2ViT(depth=1)
    assert vit.position_embedding(37, 37) is vit.pos_embed
    with torch.no_grad():
        vit.pos_embed.fill_(0.5)
    resized = vit.position_embedding(4, 6)
    assert resized.shape == (1, 1 + 24, 384)
    assert torch.allclose(resized, torch.full_like(resized, 0.5), atol=1e-5)


def test_training_builds_its_network_with_the_encoder_weights_it_is_given(tmp_path, monkeypatch):
    """`vqseg train --encoder-weights FILE` reaches build_model for a new run (which loads them: tests above)."""
    from helpers.toydata import make_dataset
    from VQSegCore.cli.app import build_parser
    from VQSegCore.cli.commands import COMMANDS
    from VQSegCore.dataset_spec import DatasetSpec
    from VQSegCore.train import loop

    asked = []

    class Built(Exception):
        pass

    def recording_build(config, *, encoder_weights=None):
        asked.append(encoder_weights)
        raise Built

    monkeypatch.setattr(loop, "build_model", recording_build)
    spec = DatasetSpec.load(make_dataset(tmp_path / "data"))
    with pytest.raises(Built):
        loop.train(spec, VQSegConfig(), tmp_path / "run", iterations=1, device="cpu", encoder_weights=tmp_path / "w.pth")
    assert asked == [tmp_path / "w.pth"]
    args = build_parser(COMMANDS).parse_args(["train", "--dataset", "d.json", "--out", "o", "--iterations", "1", "--backbone", "vit_dinov2",
                                      "--encoder-weights", "auto"])
    assert args.encoder_weights == "auto"


def test_encoder_weights_are_checked_before_any_work(cli, tmp_path):
    from helpers.toydata import make_dataset

    spec = make_dataset(tmp_path / "data")
    unet = cli("train", "--dataset", spec, "--out", tmp_path / "a", "--iterations", "1", "--encoder-weights", "auto")
    missing = cli("train", "--dataset", spec, "--out", tmp_path / "b", "--iterations", "1", "--backbone", "vit_dinov2",
                  "--encoder-weights", tmp_path / "nope.pth")
    assert unet.returncode == 2 and "--backbone vit_dinov2" in unet.stderr
    assert missing.returncode == 2 and "no such file" in missing.stderr
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
