"""A pool with one case, a model store with one active version: small, real, on disk."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from helpers.images import GEOMETRIES, make_image


def pool_with_one_case(pool_folder: Path, scratch: Path):
    """A pool holding one small labelled case (16×16×4, a 2×5×5 tumour); its input files go to `scratch`."""
    from VQSegCore.io.write import write_image, write_label_map
    from VQSegCore.pool import Pool

    image = make_image(GEOMETRIES["identity"], size=(16, 16, 4))
    label = np.zeros((4, 16, 16), np.uint8)
    label[1:3, 4:9, 4:9] = 1
    pool, _ = Pool.open_or_create(pool_folder)
    pool.add(write_image(image, scratch / "i.nii.gz"), label=write_label_map(label, image, scratch / "l.nii.gz"))
    return pool


def store_with_active_version(root: Path, name: str = "lung"):
    """A model store at `root` whose model `name` has one tiny version, v0001, active."""
    import torch

    from VQSegCore.model import VQSegConfig, build_model
    from VQSegCore.models import ModelStore

    store = ModelStore(root)
    torch.manual_seed(0)
    store.add_version(name, build_model(VQSegConfig(unet_base_width=4, unet_depth=2, codebook_size=16)))
    store.activate(name, "v0001")
    return store
