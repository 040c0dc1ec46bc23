"""One rank of the data-parallel test (run by torchrun): a few training steps, then its weights to a file.

    python -m torch.distributed.run --standalone --nproc_per_node 2 Testing/ddp_worker.py SPEC OUT [--no-sync]

Each rank samples its own shard with its own random stream, as `train()` does. With --no-sync the
step does not average gradients: the test's control that the ranks' weights then drift apart.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

from VQSegCore.dataset_spec import DatasetSpec  # noqa: E402
from VQSegCore.model import VQSegConfig, build_model  # noqa: E402
from VQSegCore.model.config import PreprocessingConfig  # noqa: E402
from VQSegCore.train import SemiSupervisedStep, make_teacher  # noqa: E402
from VQSegCore.train.data import CaseCache, SliceSampler, prepare_training_data  # noqa: E402
from VQSegCore.train.distributed import SINGLE_PROCESS, Distributed  # noqa: E402
from VQSegCore.train.loop import _random_streams  # noqa: E402

TINY = VQSegConfig(backbone="unet", unet_base_width=8, unet_depth=3, codebook_size=64, unet_norm="batch",
                   preprocessing=PreprocessingConfig(spacing_mm=(3.0, 3.0)))


def main() -> None:
    spec_path, out = Path(sys.argv[1]), Path(sys.argv[2])
    sync = "--no-sync" not in sys.argv
    torch.set_num_threads(1)
    ranks = Distributed.from_environment()
    device = ranks.start("cpu")
    spec = DatasetSpec.load(spec_path)
    cache = CaseCache(out / f"cache-{ranks.rank}", TINY.preprocessing, spec.classes)
    labelled, unlabelled = prepare_training_data(spec, cache)
    torch.manual_seed(100 + ranks.rank)  # different initial weights: broadcast must fix that
    student = build_model(TINY).to(device)
    ranks.broadcast_module(student)
    teacher = make_teacher(student)
    optimiser = torch.optim.AdamW(student.parameters(), lr=1e-3)
    step = SemiSupervisedStep(student, teacher, optimiser, TINY, distributed=ranks if sync else SINGLE_PROCESS)
    rng, generator = _random_streams(0, ranks.rank)
    sampler = SliceSampler(labelled, unlabelled, crop_size=32, size_multiple=TINY.size_multiple, rng=rng,
                           shard=(ranks.rank, ranks.world_size))
    for _ in range(3):
        x_l, y_l = sampler.labelled_batch(2)
        step(x_l, y_l, sampler.unlabelled_batch(2), generator=generator)
    state = {f"student.{k}": v.contiguous() for k, v in student.state_dict().items()}
    state |= {f"teacher.{k}": v.contiguous() for k, v in teacher.state_dict().items()}
    save_file(state, str(out / f"rank{ranks.rank}.safetensors"))
    ranks.stop()


if __name__ == "__main__":
    main()
