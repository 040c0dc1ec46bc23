"""Batched slice inference: a model-grid volume [z, H, W] in, per-class probabilities out.

    engine = SliceEngine(model, torch.device("cpu"), precision="auto", batch_size=8)  # window: the model's own
    out = engine.run(volume, background=0.0)            # out.probabilities [C, z, H, W] float32
    out.codes                                            # code usage, for the OOD score

Speed: `torch.inference_mode` (no autograd records), channels-last tensors and weights (oneDNN's
fast convolution layout on CPU), a few slices per forward pass (the caller picks: 2 on CPU, where
larger batches fall out of cache, more on GPU), and reduced precision where the hardware does it
natively (precision "auto", decided in compute.py).
Uncertainty "samples" adds passes: a left-right flip and QPM-perturbed passes (the method's own
perturbation), averaged with the plain pass.

Field of view: GroupNorm's statistics depend on the whole input, and models train on square crops.
With a window (`window`, by default the model's `config.inference_window`, which training sets to
its crop size) every pass (plain, flipped, perturbed) runs through MONAI's `sliding_window_inference`:
windows of that side, overlapping by WINDOW_OVERLAP, their logits blended with Gaussian weights.
A slice smaller than the window along a side is padded to the window there with the background
value, centred, as training pads slices smaller than its crop. Window 0: whole (padded) slices.
`codes` then counts the tokens of every window of the plain pass (overlapping windows count a
voxel's token more than once, padding's tokens too); the OOD reference made in training uses this
engine with the model's own window, so reference and inference count tokens the same way.

A `field` (a boolean mask of the volume, e.g. the lungs) skips the windows that hold none of it: they
are not computed and count as certain background. Every window that covers a voxel of the field
holds that voxel, so voxels in the field get exactly the result they get without one; only voxels
outside it change. Whole slices (window 0) ignore the field.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np
import torch

from VQSegCore.cancel import NEVER_CANCELLED
from VQSegCore.compute import autocast_dtype
from VQSegCore.infer.ood import CodeStatistics
from VQSegCore.preprocess import crop_from_padding, pad_to_multiple, slice_stack

UNCERTAINTY_MODES = ("entropy", "samples")
QPM_SAMPLES = 2
# Overlap of neighbouring windows, a fraction of the window side (MONAI's `overlap`): each voxel away
# from the borders lies in 4 windows, whose Gaussian weights favour the windows centred near it.
WINDOW_OVERLAP = 0.5
# Logits of a skipped window: background certain (softmax ~ 1 - 2e-9 per foreground class).
SKIPPED_FOREGROUND_LOGIT = -20.0


def resolve_window(window: int | None, config) -> int:
    """The side of the inference windows: `window`, or the model's own when None; 0 = whole slices."""
    value = config.inference_window if window is None else int(window)
    if value < 0 or value % config.size_multiple:
        raise ValueError(f"the inference window must be 0 (whole slices) or a positive multiple of {config.size_multiple}, "
                         f"got {value}")
    return value


@dataclass
class EngineOutput:
    probabilities: np.ndarray  # [C, z, H, W] float32 (the mean over samples when sampling)
    uncertainty: np.ndarray | None  # [z, H, W] float32 in [0, 1] (normalised entropy), when asked
    codes: CodeStatistics  # code usage and quantization distances of the unperturbed pass (all its windows)


class SliceEngine:
    def __init__(self, model, device: torch.device, *, precision: str = "auto", batch_size: int = 8,
                 channels_last: bool = True, seed: int = 0, window: int | None = None) -> None:
        """`window`: the side of the square inference windows; None: the model's `config.inference_window`; 0: whole slices."""
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self.window = resolve_window(window, model.config)
        self.device = device
        self.autocast_dtype = autocast_dtype(precision, device)
        self.channels_last = channels_last
        self.model = model.to(device).eval()
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.config = model.config
        self.batch_size = batch_size
        self.seed = seed

    @property
    def precision_name(self) -> str:
        return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.autocast_dtype]

    @torch.inference_mode()
    def run(self, volume: np.ndarray, *, background: float = 0.0, uncertainty: str | None = None,
            cancel=None, progress=None, field: np.ndarray | None = None) -> EngineOutput:
        """`field`: bool [z, H, W] like `volume`; with windows, those that hold none of it are skipped."""
        if uncertainty is not None and uncertainty not in UNCERTAINTY_MODES:
            raise ValueError(f"uncertainty must be one of {UNCERTAINTY_MODES}, got {uncertainty!r}")
        if field is not None and field.shape != volume.shape:
            raise ValueError(f"field shape {field.shape} differs from the volume's {volume.shape}")
        field = field if self.window else None
        depth = volume.shape[0]
        context = self.config.preprocessing.context_slices
        probabilities = np.empty((self.config.num_classes, *volume.shape), dtype=np.float32)
        entropy = np.empty(volume.shape, dtype=np.float32) if uncertainty else None
        generator = torch.Generator(device=self.device).manual_seed(self.seed) if uncertainty == "samples" else None
        codes = CodeStatistics.empty(self.model.quantizer.codebook_size)
        for start in range(0, depth, self.batch_size):
            (cancel or NEVER_CANCELLED).check()
            stop = min(depth, start + self.batch_size)
            stack = np.stack([np.asarray(slice_stack(volume, k, context), dtype=np.float32) for k in range(start, stop)])
            padded, padding = pad_to_multiple(stack, self.config.size_multiple, value=background)
            x = torch.from_numpy(np.ascontiguousarray(padded)).to(self.device)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            batch_field = None
            if field is not None:
                batch_field = torch.from_numpy(pad_to_multiple(field[start:stop], self.config.size_multiple, value=False)[0])
            probs = torch.softmax(self._logits(x, background, codes=codes, field=batch_field), dim=1)
            if uncertainty == "samples":
                probs = self._sampled_mean(x, probs, background, generator, batch_field)
            probs = probs.cpu().numpy()
            probabilities[:, start:stop] = crop_from_padding(probs, padding).transpose(1, 0, 2, 3)
            if entropy is not None:
                entropy[start:stop] = normalised_entropy(probabilities[:, start:stop])
            if progress is not None:
                progress(stop, depth)
        return EngineOutput(probabilities, entropy, codes)

    def _forward(self, x: torch.Tensor, **kwargs):
        context = torch.autocast(self.device.type, dtype=self.autocast_dtype) if self.autocast_dtype else nullcontext()
        with context:
            return self.model(x, reconstruct=False, **kwargs)

    def _logits(self, x: torch.Tensor, background: float, codes: CodeStatistics | None = None,
                field: torch.Tensor | None = None, **kwargs) -> torch.Tensor:
        """float32 logits [B, C, H, W] of a batch of padded slices: one pass, or blended windows of `self.window`.

        `codes`, when given, gathers the tokens of every forward pass (every window); `kwargs` go to the model.
        `field` (bool [B, H, W]): windows holding none of it are skipped.
        """
        def predict(batch: torch.Tensor) -> torch.Tensor:
            if self.channels_last:
                batch = batch.contiguous(memory_format=torch.channels_last)
            out = self._forward(batch, **kwargs)
            if codes is not None:
                codes.add(out.indices, out.quantization_distance)
            return out.logits.float()

        if not self.window:
            return predict(x)
        from monai.inferers import sliding_window_inference  # seconds to import: only when windows are used

        height, width = x.shape[-2:]
        # as many window pixels per forward pass as `batch_size` whole slices hold (the memory whole slices need)
        per_pass = max(self.batch_size, self.batch_size * (height * width) // (self.window * self.window))
        options = dict(overlap=WINDOW_OVERLAP, mode="gaussian", padding_mode="constant", cval=float(background))
        if field is None:
            return sliding_window_inference(x, (self.window, self.window), per_pass, predict, **options)
        # MONAI pads a side shorter than the window (diff // 2 before); its window coordinates are in that frame.
        pad_h, pad_w = (max(0, self.window - n) for n in (height, width))
        padded_field = torch.nn.functional.pad(field, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2))

        def predict_in_field(batch: torch.Tensor, windows) -> torch.Tensor:
            needed = [i for i, (b, _c, rows, cols) in enumerate(windows) if bool(padded_field[b, rows, cols].any())]
            logits = torch.zeros((batch.shape[0], self.config.num_classes, *batch.shape[-2:]), dtype=torch.float32, device=batch.device)
            logits[:, 1:] = SKIPPED_FOREGROUND_LOGIT
            if needed:
                logits[needed] = predict(batch[needed])
            return logits

        return sliding_window_inference(x, (self.window, self.window), per_pass, predict_in_field, with_coord=True, **options)

    def _sampled_mean(self, x: torch.Tensor, probs: torch.Tensor, background: float, generator: torch.Generator,
                      field: torch.Tensor | None = None) -> torch.Tensor:
        """Mean softmax over the plain pass, a left-right flipped pass and QPM-perturbed passes (each windowed alike)."""
        total = probs.clone()
        flipped_field = torch.flip(field, dims=(-1,)) if field is not None else None
        flipped = self._logits(torch.flip(x, dims=(-1,)), background, field=flipped_field)
        total += torch.flip(torch.softmax(flipped, dim=1), dims=(-1,))
        for _ in range(QPM_SAMPLES):
            total += torch.softmax(self._logits(x, background, field=field, perturb=True, generator=generator), dim=1)
        return total / (2 + QPM_SAMPLES)


def normalised_entropy(probabilities: np.ndarray) -> np.ndarray:
    """Entropy over axis 0 divided by log(C): 0 = certain, 1 = uniform."""
    channels = probabilities.shape[0]
    clipped = np.clip(probabilities, 1e-7, 1.0)
    return (-(clipped * np.log(clipped)).sum(axis=0) / np.log(channels)).astype(np.float32)
