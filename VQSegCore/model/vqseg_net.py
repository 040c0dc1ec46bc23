"""VQ-Seg: encoder -> VQ bottleneck -> (perturbation) -> segmentation decoder, + reconstruction, + PFA.

    images ─ encoder ─┬─ skips ───────────────────────────────────────┐
                      └─ bottleneck ─ pre_quant ─ z ─ quantizer ─ q ─┬─ perturbation ─ q' ─ seg decoder ─ logits
                                                                     ├─ reconstruction decoder ─ image
                                                                     └─ PFA adapter ─ features on the FM grid

The segmentation decoder sees the perturbed q' only when the caller asks (`perturb=True`: the
student's unlabelled strong views); reconstruction and PFA always read the unperturbed q, as in
the paper (L_rec(D_i(q(z_u))) + L_seg(D_s(q'(z_u)), teacher pseudo-label)). With
`config.perturb_skips` the skip features are channel-dropped too (UniMatch drops every level),
so the decoder cannot read the strong view around the perturbed bottleneck.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from VQSegCore.model.config import VQSegConfig
from VQSegCore.model.feature_dropout import channel_dropout
from VQSegCore.model.quantizer import VectorQuantizer, VQLosses


@dataclass
class VQSegOutput:
    logits: Tensor  # [B, num_classes, H, W]; channel 0 is background, then the class table's order
    reconstruction: Tensor | None  # [B, in_channels, H, W], or None when not asked for / not built
    indices: Tensor  # [B, h, w] assigned code ids (before any perturbation)
    quantization_distance: Tensor  # [B, h, w] squared distance of each token to its code
    vq_losses: VQLosses
    quantized: Tensor  # [B, D, h, w] post-VQ features (straight-through), unperturbed
    perturbed_mask: Tensor | None  # [B, h, w] tokens whose code QPM replaced; None for dropout/none
    pfa_features: Tensor | None  # [B, C', H', W'] adapter output when `pfa_grid` was given


class VQSegNet(nn.Module):
    """The VQ-Seg network; build it with `VQSegCore.model.build_model(config)`."""

    def __init__(
        self,
        config: VQSegConfig,
        *,
        encoder: nn.Module,
        pre_quant: nn.Module,
        quantizer: VectorQuantizer,
        perturbation: nn.Module,
        seg_decoder: nn.Module,
        seg_head: nn.Module,
        reconstruction_decoder: nn.Module | None,
        pfa_adapter: nn.Module | None,
    ) -> None:
        super().__init__()
        self.config = config
        self.encoder = encoder
        self.pre_quant = pre_quant
        self.quantizer = quantizer
        self.perturbation = perturbation
        self.seg_decoder = seg_decoder
        self.seg_head = seg_head
        self.reconstruction_decoder = reconstruction_decoder
        self.pfa_adapter = pfa_adapter

    @property
    def size_multiple(self) -> int:
        return self.config.size_multiple

    def forward(
        self,
        images: Tensor,
        *,
        perturb: bool = False,
        reconstruct: bool = True,
        pfa_grid: tuple[int, int] | None = None,
        generator: torch.Generator | None = None,
    ) -> VQSegOutput:
        """images: [B, in_channels, H, W], H and W multiples of `size_multiple`.

        perturb: apply the configured perturbation (qpm | dropout | none) before segmentation.
        reconstruct: run the reconstruction decoder (skip it at inference).
        pfa_grid: the foundation model's (H', W'); returns adapted features on that grid.
        generator: random source for the perturbation (reproducible tests and benchmarks).
        """
        self._check_input(images)
        features = self.encoder(images)
        z = self.pre_quant(features.bottleneck)  # [B, D, h, w]
        batch, dim, height, width = z.shape
        tokens = z.flatten(2).transpose(1, 2)  # [B, h*w, D]

        codes = self.quantizer.codes()
        quantized, indices, vq_losses, distance = self.quantizer(tokens, codes=codes, return_distance=True)

        seg_tokens, changed, skips = quantized, None, features.skips
        if perturb:
            seg_tokens, changed = self.perturbation(tokens, quantized, indices, codes, generator=generator)
            if self.config.perturb_skips and self.config.perturbation != "none":
                skips = [channel_dropout(skip, self.config.dropout_p, generator=generator) for skip in skips]

        def to_map(t: Tensor) -> Tensor:
            return t.transpose(1, 2).reshape(batch, dim, height, width)

        quantized_map = to_map(quantized)
        logits = self.seg_head(self.seg_decoder(skips, to_map(seg_tokens)))
        if logits.shape[-2:] != images.shape[-2:]:
            logits = F.interpolate(logits, size=images.shape[-2:], mode="bilinear", align_corners=False)

        reconstruction = None
        if reconstruct and self.reconstruction_decoder is not None:
            reconstruction = self.reconstruction_decoder(quantized_map, images.shape[-2:])

        pfa_features = None
        if pfa_grid is not None:
            if self.pfa_adapter is None:
                raise ValueError("this model has no PFA adapter (config.pfa_model is 'none')")
            pfa_features = self.pfa_adapter(quantized_map, pfa_grid)

        def per_token(t: Tensor | None) -> Tensor | None:
            return None if t is None else t.reshape(batch, height, width)

        return VQSegOutput(
            logits=logits,
            reconstruction=reconstruction,
            indices=per_token(indices),
            quantization_distance=per_token(distance),
            vq_losses=vq_losses,
            quantized=quantized_map,
            perturbed_mask=per_token(changed),
            pfa_features=pfa_features,
        )

    def _check_input(self, images: Tensor) -> None:
        if images.ndim != 4 or images.shape[1] != self.config.in_channels:
            raise ValueError(f"expected images [B, {self.config.in_channels}, H, W], got {tuple(images.shape)}")
        multiple = self.size_multiple
        if images.shape[-2] % multiple or images.shape[-1] % multiple:
            raise ValueError(f"image size {tuple(images.shape[-2:])} is not a multiple of {multiple}; pad the input")
