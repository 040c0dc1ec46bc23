"""The one configuration that describes a VQ-Seg model: architecture, preprocessing and classes.

It round-trips through JSON (`to_dict` / `from_dict`) and is stored in every model card, so a
saved model can be rebuilt without the code that trained it. `resolved()` fills the fields whose
default depends on the backbone; a built model always holds a resolved config, so a later change
of a default can never change the shape of a saved model.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from VQSegCore.classes import LUNG_TUMOUR, ClassTable

BACKBONES = ("unet", "vit_dinov2")
PERTURBATIONS = ("qpm", "dropout", "none")
FOUNDATION_MODELS = ("none", "dinov2", "astra", "random")

# Backbone-dependent defaults, applied by `VQSegConfig.resolved()`.
# ViT: the paper's K = 16384 codes of the ViT width. U-Net: K = 1024 had the best mean validation
# Dice of K in 64..16384 on synthetic phantoms, though within seed noise of 4096 and 16384
# (benchmarks/codebook_size.py; results/codebook_size_gpu.md).
DEFAULT_CODEBOOK_SIZE = {"unet": 1024, "vit_dinov2": 16384}
DEFAULT_CODE_DIM = {"unet": 64, "vit_dinov2": 384}


@dataclass
class PreprocessingConfig:
    """How a volume becomes model input; the same for training and inference."""

    modality: str = "ct"  # "ct": HU window to [0, 1]; "mri": percentile clip, then z-score
    hu_window: tuple[float, float] = (-1000.0, 400.0)
    mri_percentiles: tuple[float, float] = (0.5, 99.5)
    spacing_mm: tuple[float, float] = (1.0, 1.0)  # in-plane (x, y) spacing the model works at
    context_slices: int = 0  # 2.5D: neighbouring slices on each side, stacked as channels

    @property
    def in_channels(self) -> int:
        return 2 * self.context_slices + 1

    def __post_init__(self) -> None:
        _tuples_from_lists(self)
        if self.modality not in ("ct", "mri"):
            raise ValueError(f"modality must be 'ct' or 'mri', got {self.modality!r}")
        low, high = self.hu_window
        if not low < high:
            raise ValueError(f"hu_window must be (low, high) with low < high, got {self.hu_window}")
        p_low, p_high = self.mri_percentiles
        if not 0.0 <= p_low < p_high <= 100.0:
            raise ValueError(f"mri_percentiles must satisfy 0 <= low < high <= 100, got {self.mri_percentiles}")
        if len(self.spacing_mm) != 2 or min(self.spacing_mm) <= 0:
            raise ValueError(f"spacing_mm must be two positive numbers, got {self.spacing_mm}")
        if self.context_slices < 0:
            raise ValueError(f"context_slices must be >= 0, got {self.context_slices}")

    def to_dict(self) -> dict:
        return _plain(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, data: dict) -> "PreprocessingConfig":
        return cls(**_known_fields(cls, data, "preprocessing"))


@dataclass
class VQSegConfig:
    """Architecture + preprocessing + classes of one VQ-Seg model."""

    backbone: str = "unet"  # "unet" (trains from scratch on a CPU) | "vit_dinov2" (the paper's)

    # U-Net backbone
    unet_base_width: int = 16  # channels at full resolution; doubles per level
    unet_depth: int = 4  # number of 2x downsamplings; the VQ sees 1/2**depth of the input size
    unet_norm: str = "group"  # "group" (batch-size independent) | "batch"

    # DINOv2 ViT-S/14 backbone + DPT decoder
    vit_embed_dim: int = 384
    vit_depth: int = 12
    vit_heads: int = 6
    vit_patch_size: int = 14
    vit_pos_grid: int = 37  # position-embedding grid of the checkpoint (518 / 14); interpolated
    vit_taps: tuple[int, ...] = (2, 5, 8, 11)  # blocks feeding the DPT; the VQ sits on the last
    dpt_features: int = 64
    dpt_tap_channels: tuple[int, ...] = (48, 96, 192, 384)

    # VQ bottleneck (None = backbone default, see `resolved()`)
    codebook_size: int | None = None
    code_dim: int | None = None
    commitment_weight: float = 0.25
    # Code-usage entropy loss inside the VQ loss; 1 makes it 0.1 of the total loss through the step's
    # VQ weight 0.1, as the authors' code (0 switches it off).
    entropy_loss_weight: float = 1.0
    entropy_temperature: float = 1.0

    # Perturbation of the student's unlabelled strong views
    perturbation: str = "qpm"  # "qpm" | "dropout" | "none"
    qpm_epsilon: float = 0.7  # paper's best; the authors' code uses 0.1
    # The replacement kernel's effective number of candidates (exp of its entropy): each source code's
    # temperature is solved so that its kernel spreads over about this many near codes, on any codebook
    # geometry. 0: a fixed `qpm_temperature` on distances divided by the median pairwise distance.
    qpm_candidates: float = 8.0
    qpm_temperature: float = 0.1
    qpm_median_sample: int = 512  # codes sampled to estimate the median pairwise distance
    dropout_p: float = 0.5
    # Perturb the decoder's skip features too (channel dropout, p = dropout_p) whenever the bottleneck is
    # perturbed, for qpm and dropout alike; otherwise the skips carry the strong view around the bottleneck.
    perturb_skips: bool = False

    # Dual-branch decoder
    reconstruction: bool = True
    reconstruction_weight: float = 1.0  # applied by the caller

    # PFA (training only): align post-VQ features with a frozen foundation model
    pfa_model: str = "none"  # "none" | "dinov2" | "astra" | "random"
    pfa_feature_dim: int = 0  # the foundation model's channel count (0 with pfa_model "none")
    pfa_temperature: float = 0.07
    pfa_weight: float = 5.0  # lambda_a, applied by the caller

    preprocessing: PreprocessingConfig = field(default_factory=PreprocessingConfig)
    classes: ClassTable = LUNG_TUMOUR

    # Inference field of view: square windows of this side (the training crop) slid over each slice
    # with Gaussian blending, so the network sees what it saw in training; 0 = whole slices.
    inference_window: int = 0

    def __post_init__(self) -> None:
        _tuples_from_lists(self)
        if isinstance(self.preprocessing, dict):
            self.preprocessing = PreprocessingConfig.from_dict(self.preprocessing)
        if isinstance(self.classes, list):
            self.classes = ClassTable.from_list(self.classes)
        self._validate()

    # ---- derived values -------------------------------------------------------------------
    @property
    def in_channels(self) -> int:
        return self.preprocessing.in_channels

    @property
    def num_classes(self) -> int:
        """Output channels: background plus one per class, in class-table order."""
        return len(self.classes.classes) + 1

    @property
    def size_multiple(self) -> int:
        """Input height and width must be multiples of this."""
        return 2**self.unet_depth if self.backbone == "unet" else self.vit_patch_size

    def resolved(self) -> "VQSegConfig":
        """A copy with backbone-dependent defaults filled in (what a built model stores)."""
        code_dim = self.code_dim or DEFAULT_CODE_DIM[self.backbone]
        if self.backbone == "vit_dinov2":
            code_dim = self.vit_embed_dim  # the VQ quantises the ViT tokens directly
        return dataclasses.replace(
            self,
            codebook_size=self.codebook_size or DEFAULT_CODEBOOK_SIZE[self.backbone],
            code_dim=code_dim,
        )

    # ---- JSON ------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        data["preprocessing"] = self.preprocessing.to_dict()
        data["classes"] = self.classes.to_list()
        return _plain(data)

    @classmethod
    def from_dict(cls, data: dict) -> "VQSegConfig":
        return cls(**_known_fields(cls, data, "model config"))

    # ---- checks ----------------------------------------------------------------------------
    def _validate(self) -> None:
        _choice("backbone", self.backbone, BACKBONES)
        _choice("perturbation", self.perturbation, PERTURBATIONS)
        _choice("pfa_model", self.pfa_model, FOUNDATION_MODELS)
        _choice("unet_norm", self.unet_norm, ("group", "batch"))
        if self.unet_base_width < 1 or self.unet_depth < 1:
            raise ValueError("unet_base_width and unet_depth must be >= 1")
        if self.vit_embed_dim % self.vit_heads:
            raise ValueError(f"vit_embed_dim {self.vit_embed_dim} is not divisible by vit_heads {self.vit_heads}")
        if len(self.vit_taps) != 4 or len(self.dpt_tap_channels) != 4:
            raise ValueError("vit_taps and dpt_tap_channels need exactly 4 entries (the DPT's four levels)")
        if list(self.vit_taps) != sorted(set(self.vit_taps)) or not 0 <= self.vit_taps[0] or self.vit_taps[-1] >= self.vit_depth:
            raise ValueError(f"vit_taps {self.vit_taps} must be increasing block indices below vit_depth {self.vit_depth}")
        if self.backbone == "vit_dinov2" and self.in_channels not in (1, 3):
            raise ValueError("the DINOv2 backbone takes 1 or 3 input channels (context_slices 0 or 1)")
        if self.codebook_size is not None and self.codebook_size < 2:
            raise ValueError("codebook_size must be >= 2 (QPM needs another code to move to)")
        if self.code_dim is not None and self.code_dim < 1:
            raise ValueError("code_dim must be >= 1")
        if not 0.0 <= self.qpm_epsilon <= 1.0:
            raise ValueError(f"qpm_epsilon must be in [0, 1], got {self.qpm_epsilon}")
        if not 0.0 <= self.dropout_p < 1.0:
            raise ValueError(f"dropout_p must be in [0, 1), got {self.dropout_p}")
        for name in ("qpm_temperature", "entropy_temperature", "pfa_temperature"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0")
        if self.qpm_candidates != 0 and self.qpm_candidates < 1:
            raise ValueError(f"qpm_candidates must be 0 (fixed temperature) or >= 1, got {self.qpm_candidates}")
        if self.inference_window < 0 or (self.inference_window and self.inference_window % self.size_multiple):
            raise ValueError(f"inference_window must be 0 or a positive multiple of {self.size_multiple}, got {self.inference_window}")
        if self.qpm_median_sample < 2:
            raise ValueError("qpm_median_sample must be >= 2")
        if (self.pfa_model == "none") != (self.pfa_feature_dim == 0):
            raise ValueError("pfa_feature_dim must be 0 exactly when pfa_model is 'none'")


def _choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")


def _known_fields(cls: type, data: dict, what: str) -> dict:
    if not isinstance(data, dict):
        raise ValueError(f"{what} must be a JSON object")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"unknown {what} field(s): {', '.join(unknown)}")
    return dict(data)


def _tuples_from_lists(obj: object) -> None:
    # JSON has no tuples; every sequence field of these configs is a tuple.
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if isinstance(value, list) and f.name != "classes":
            setattr(obj, f.name, tuple(value))


def _plain(value: object) -> object:
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value
