"""Builders: a config in, a VQSegNet out. `MODEL_BUILDERS` maps `config.backbone` to its builder."""

from __future__ import annotations

import os
from typing import Callable

from torch import nn

from VQSegCore.errors import InputError
from VQSegCore.model.config import VQSegConfig
from VQSegCore.model.dpt_decoder import DPTDecoder
from VQSegCore.model.feature_dropout import FeatureDropout, NoPerturbation
from VQSegCore.model.heads import ReconstructionDecoder, SegmentationHead
from VQSegCore.model.pfa import PFAAdapter
from VQSegCore.model.qpm import QuantizedPerturbation
from VQSegCore.model.quantizer import VectorQuantizer
from VQSegCore.model.unet_decoder import UNetDecoder
from VQSegCore.model.unet_encoder import UNetEncoder
from VQSegCore.model.vit_dinov2 import DinoV2Encoder
from VQSegCore.model.vqseg_net import VQSegNet

VIT_RECONSTRUCTION_WIDTHS = [128, 64, 32, 16]  # 4 x 2x upsamplings (16x), then resized to the 14x input


def build_quantizer(config: VQSegConfig) -> VectorQuantizer:
    return VectorQuantizer(
        config.codebook_size,
        config.code_dim,
        commitment_weight=config.commitment_weight,
        entropy_loss_weight=config.entropy_loss_weight,
        entropy_temperature=config.entropy_temperature,
    )


def build_perturbation(config: VQSegConfig) -> nn.Module:
    if config.perturbation == "qpm":
        return QuantizedPerturbation(config.qpm_epsilon, config.qpm_temperature, config.qpm_median_sample, config.qpm_candidates)
    if config.perturbation == "dropout":
        return FeatureDropout(config.dropout_p)
    return NoPerturbation()


def build_pfa_adapter(config: VQSegConfig) -> PFAAdapter | None:
    return None if config.pfa_model == "none" else PFAAdapter(config.code_dim, config.pfa_feature_dim)


def build_unet_vqseg(config: VQSegConfig, encoder_weights: str | os.PathLike | None = None) -> VQSegNet:
    """The CPU default: U-Net encoder, VQ at the bottleneck, U-Net decoder with skips."""
    if encoder_weights is not None:
        raise InputError("the U-Net backbone trains from scratch; it takes no encoder weights")
    encoder = UNetEncoder(config.in_channels, config.unet_base_width, config.unet_depth, config.unet_norm)
    reconstruction = None
    if config.reconstruction:
        reconstruction = ReconstructionDecoder(
            config.code_dim, list(reversed(encoder.skip_channels)), config.in_channels, config.unet_norm
        )
    return VQSegNet(
        config,
        encoder=encoder,
        pre_quant=nn.Conv2d(encoder.out_channels, config.code_dim, kernel_size=1),
        quantizer=build_quantizer(config),
        perturbation=build_perturbation(config),
        seg_decoder=UNetDecoder(config.code_dim, encoder.skip_channels, encoder.out_channels, config.unet_norm),
        seg_head=SegmentationHead(encoder.skip_channels[0], config.num_classes),
        reconstruction_decoder=reconstruction,
        pfa_adapter=build_pfa_adapter(config),
    )


def build_vit_vqseg(config: VQSegConfig, encoder_weights: str | os.PathLike | None = None) -> VQSegNet:
    """The paper's backbone: DINOv2 ViT-S/14 + DPT decoder, VQ on the deepest tap.

    encoder_weights: a local checkpoint path, "auto" (the user's torch.hub / Hugging Face cache;
    an error if absent) or None (random initialisation).
    """
    encoder = DinoV2Encoder(
        config.in_channels,
        config.vit_embed_dim,
        config.vit_depth,
        config.vit_heads,
        config.vit_patch_size,
        config.vit_pos_grid,
        config.vit_taps,
    )
    if encoder_weights is not None:
        from VQSegCore.model.pretrained import find_dinov2_weights, load_dinov2_weights

        path = find_dinov2_weights() if encoder_weights == "auto" else encoder_weights
        if path is None:
            raise InputError(
                "no DINOv2 ViT-S/14 weights in the torch.hub or Hugging Face cache",
                "pass the path of dinov2_vits14_pretrain.pth (or timm's safetensors) explicitly",
            )
        load_dinov2_weights(encoder.vit, path)
    decoder = DPTDecoder(config.vit_embed_dim, config.dpt_tap_channels, config.dpt_features)
    reconstruction = None
    if config.reconstruction:
        reconstruction = ReconstructionDecoder(config.code_dim, VIT_RECONSTRUCTION_WIDTHS, config.in_channels)
    return VQSegNet(
        config,
        encoder=encoder,
        pre_quant=nn.Identity(),  # the VQ quantises the ViT's normalised tokens directly
        quantizer=build_quantizer(config),
        perturbation=build_perturbation(config),
        seg_decoder=decoder,
        seg_head=SegmentationHead(decoder.out_channels, config.num_classes, hidden_channels=decoder.out_channels),
        reconstruction_decoder=reconstruction,
        pfa_adapter=build_pfa_adapter(config),
    )


MODEL_BUILDERS: dict[str, Callable[..., VQSegNet]] = {
    "unet": build_unet_vqseg,
    "vit_dinov2": build_vit_vqseg,
}


def build_model(config: VQSegConfig, *, encoder_weights: str | os.PathLike | None = None) -> VQSegNet:
    """Build the model a config describes (random weights unless `encoder_weights` is given)."""
    config = config.resolved()
    return MODEL_BUILDERS[config.backbone](config, encoder_weights=encoder_weights)
