"""The VQ-Seg model: one component per file, composed in vqseg_net.py, built from a config in build.py.

    from VQSegCore.model import VQSegConfig, build_model, save_model, load_model
    model = build_model(VQSegConfig(backbone="unet"))
    out = model(images, perturb=True)          # VQSegOutput: logits, reconstruction, indices, ...
    save_model(model, folder); model, card = load_model(folder)
"""

from VQSegCore.model.build import MODEL_BUILDERS, build_model
from VQSegCore.model.config import PreprocessingConfig, VQSegConfig
from VQSegCore.model.foundation import FoundationModel, build_foundation
from VQSegCore.model.heads import reconstruction_l1_loss
from VQSegCore.model.persistence import load_model, read_card, save_model
from VQSegCore.model.pfa import patch_infonce_loss
from VQSegCore.model.qpm import perturb_codes
from VQSegCore.model.quantizer import VectorQuantizer, VQLosses
from VQSegCore.model.vqseg_net import VQSegNet, VQSegOutput

__all__ = [
    "MODEL_BUILDERS",
    "FoundationModel",
    "PreprocessingConfig",
    "VQLosses",
    "VQSegConfig",
    "VQSegNet",
    "VQSegOutput",
    "VectorQuantizer",
    "build_foundation",
    "build_model",
    "load_model",
    "patch_infonce_loss",
    "perturb_codes",
    "read_card",
    "reconstruction_l1_loss",
    "save_model",
]
