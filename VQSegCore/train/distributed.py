"""Data-parallel training under torchrun: one process per device, the same weights on every rank.

    torchrun --nproc_per_node 2 -m VQSegCore train --dataset spec.json --out run --iterations 2000

torchrun sets RANK, LOCAL_RANK and WORLD_SIZE; `Distributed.from_environment()` reads them and
`start()` joins the process group (NCCL on CUDA devices, gloo on CPUs). Every rank starts from rank
0's weights, draws its own crops from its shard of the slices, and after each backward the
gradients are averaged over ranks (one all-reduce of one flat buffer), so every optimiser step is
the same on every rank. Floating-point buffers (BatchNorm statistics) are averaged after the step.
Only rank 0 writes files and reports.

Why not DistributedDataParallel: one VQ-Seg step runs the student twice (the labelled batch, then
the perturbed unlabelled views) before one backward, and which heads take part (reconstruction,
PFA) depends on the options. DDP's reducer assumes one forward per backward over a fixed set of
used parameters; averaging the accumulated gradients once after backward is the same arithmetic
without those assumptions.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Callable, Iterator, TypeVar

import torch
import torch.distributed as dist
from torch import nn
from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors

from VQSegCore.compute import resolve_device
from VQSegCore.errors import Cancelled, InputError

T = TypeVar("T")

# Validation and checkpoints run on rank 0 while the others wait in the next collective.
COLLECTIVE_TIMEOUT = timedelta(minutes=60)


@dataclass(frozen=True)
class Distributed:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_environment(cls, environ=None) -> "Distributed":
        environ = os.environ if environ is None else environ
        try:
            world_size = int(environ.get("WORLD_SIZE", "1"))
            rank = int(environ.get("RANK", "0"))
            local_rank = int(environ.get("LOCAL_RANK", str(rank)))
        except ValueError as problem:
            raise InputError(f"bad torchrun environment (RANK/LOCAL_RANK/WORLD_SIZE): {problem}",
                             "start distributed runs with torchrun") from problem
        if world_size < 1 or not 0 <= rank < world_size:
            raise InputError(f"bad torchrun environment: RANK={rank}, WORLD_SIZE={world_size}", "start distributed runs with torchrun")
        return cls(rank, local_rank, world_size)

    def start(self, device_request: str) -> torch.device:
        """Join the process group if needed and return this rank's device."""
        device = resolve_device(device_request, index=self.local_rank)
        use_cuda = device.type == "cuda"
        if use_cuda:
            torch.cuda.set_device(device)
        if self.enabled and not dist.is_initialized():
            dist.init_process_group("nccl" if use_cuda else "gloo", timeout=COLLECTIVE_TIMEOUT)
        return device

    # ---- collectives (all no-ops in a single process) ------------------------------------------
    def broadcast_module(self, module: nn.Module) -> None:
        """Copy rank 0's parameters and buffers into every rank's module."""
        if not self.enabled:
            return
        with torch.no_grad():
            for tensor in [*module.parameters(), *module.buffers()]:
                dist.broadcast(tensor.data, src=0)

    def average_gradients(self, module: nn.Module) -> None:
        """Replace each gradient by its mean over ranks (a missing gradient counts as zeros)."""
        if not self.enabled:
            return
        parameters = [p for p in module.parameters() if p.requires_grad]
        had = torch.tensor([p.grad is not None for p in parameters], dtype=torch.float32, device=parameters[0].device)
        dist.all_reduce(had, op=dist.ReduceOp.MAX)
        for p in parameters:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        grads = [p.grad for p in parameters]
        flat = _flatten_dense_tensors(grads)
        dist.all_reduce(flat)
        flat /= self.world_size
        for grad, synced in zip(grads, _unflatten_dense_tensors(flat, grads)):
            grad.copy_(synced)
        for p, used in zip(parameters, had.tolist()):
            if not used:  # no rank used it: no gradient, as in a single process (no decay, no momentum step)
                p.grad = None

    def average_buffers(self, module: nn.Module) -> None:
        """Average BatchNorm running statistics over ranks (constant buffers such as the frozen codebook stay as they are)."""
        if not self.enabled:
            return
        buffers = [b for name, b in module.named_buffers() if b.is_floating_point() and "running_" in name.rsplit(".", 1)[-1]]
        if not buffers:
            return
        flat = _flatten_dense_tensors(buffers)
        dist.all_reduce(flat)
        flat /= self.world_size
        for buffer, synced in zip(buffers, _unflatten_dense_tensors(flat, buffers)):
            buffer.copy_(synced)

    def agree(self, done: bool, cancel: bool, elapsed_s: float, device: torch.device) -> tuple[bool, bool, float]:
        """(stop, cancel, elapsed) with every rank's flags or-ed and the largest elapsed time.

        One value for all: a rank-local clock would give each rank its own learning rate under
        --minutes, and a rank-local cancel would leave the others waiting in a collective.
        """
        if not self.enabled:
            return done, cancel, elapsed_s
        values = torch.tensor([float(done), float(cancel), float(elapsed_s)], dtype=torch.float64, device=device)
        dist.all_reduce(values, op=dist.ReduceOp.MAX)
        return bool(values[0].item()), bool(values[1].item()), float(values[2].item())

    def any(self, flag: bool, device: torch.device) -> bool:
        """True on every rank when `flag` is true on at least one (stop and cancel decisions)."""
        if not self.enabled:
            return flag
        value = torch.tensor([1.0 if flag else 0.0], device=device)
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return bool(value.item())

    def broadcast_object(self, value):
        """Rank 0's `value` (any picklable object) on every rank."""
        if not self.enabled:
            return value
        box = [value if self.is_main else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def on_main(self, work: Callable[[], T]) -> T:
        """Run `work` on rank 0 only; every rank returns its value or raises its error.

        The others wait in one broadcast, so a bad input on rank 0 ends every rank with the same
        exit code and message instead of leaving them blocked in the next collective.
        """
        if not self.enabled:
            return work()
        outcome, failure = None, None
        if self.is_main:
            try:
                outcome = ("ok", work())
            except Exception as problem:  # noqa: BLE001 - passed on to the other ranks, then re-raised
                failure, outcome = problem, ("error", *_portable(problem))
        outcome = self.broadcast_object(outcome)
        if failure is not None:
            raise failure
        if outcome[0] == "error":
            raise _rebuilt(*outcome[1:])
        return outcome[1]

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def max_weight_difference(self, module: nn.Module) -> float:
        """Largest |rank 0 - this rank| over the module's parameters, as seen by every rank."""
        if not self.enabled:
            return 0.0
        tensors = [p.detach() for p in module.parameters()]
        local = _flatten_dense_tensors(tensors).float()
        reference = local.clone()
        dist.broadcast(reference, src=0)
        difference = (local - reference).abs().max().reshape(1)
        dist.all_reduce(difference, op=dist.ReduceOp.MAX)
        return float(difference.item())

    def stop(self) -> None:
        if self.enabled and dist.is_initialized():
            dist.destroy_process_group()

    @contextmanager
    def joined(self, device_request: str) -> Iterator[torch.device]:
        """`start()`, and at the end leave the process group if this call joined it.

        After a clean run every rank first meets in a barrier, so no rank closes its connections while
        another still reads the last broadcast from them (a gloo rank torn down that way can die with
        SIGABRT after its work is done). After an error there is no barrier: a rank that failed alone
        would leave the others waiting in it.
        """
        joined_here = self.enabled and not dist.is_initialized()
        device = self.start(device_request)
        try:
            yield device
        except BaseException:
            if joined_here:
                self.stop()
            raise
        if joined_here:
            self.barrier()
            self.stop()


def _portable(problem: Exception) -> tuple[str, str, str]:
    """(kind, message, hint) of an exception, for the ranks that did not see it."""
    if isinstance(problem, InputError):
        return "input", problem.message, problem.hint
    if isinstance(problem, Cancelled):
        return "cancelled", str(problem), ""
    return "bug", f"{type(problem).__name__}: {problem}", ""


def _rebuilt(kind: str, message: str, hint: str) -> Exception:
    """The same exit code on this rank as on rank 0: InputError 2, Cancelled 3, anything else 1."""
    if kind == "input":
        return InputError(message, hint)
    if kind == "cancelled":
        return Cancelled(message)
    return RuntimeError(f"rank 0 failed: {message}")


SINGLE_PROCESS = Distributed()
