"""Where and in what precision the network runs: one owner for `--device` and `--precision`.

    device = resolve_device("auto")                       # cuda when available, else cpu
    device = resolve_device("auto", index=local_rank)     # a torchrun rank's own GPU
    dtype = autocast_dtype("auto", device)                # None = fp32

`auto` picks CUDA when torch sees a GPU, else the CPU (an Apple GPU is reported by `vqseg info`
but not used). Precision `auto` (inference): bf16 autocast on CUDA devices that support it (else
fp16) and on CPUs with native bf16 (AVX512-BF16 / AMX); fp32 elsewhere, because emulated bf16 is
slower than fp32. Training takes fp32, bf16 or fp16 (fp16 only on CUDA, with loss scaling).
"""

from __future__ import annotations

import torch

from VQSegCore.errors import InputError

DEVICES = ("auto", "cpu", "cuda")
PRECISION_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
PRECISIONS = ("auto", *PRECISION_DTYPES)


def wants_cuda(request: str) -> bool:
    """Whether `request` ("auto" | "cpu" | "cuda") means a CUDA device; InputError when it cannot be had."""
    if request not in DEVICES:
        raise InputError(f"unknown device {request!r}", "use auto, cpu or cuda")
    if request == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda was asked for, but no CUDA device is available", "use --device cpu or auto")
    return request == "cuda" or (request == "auto" and torch.cuda.is_available())


def resolve_device(request: str, index: int | None = None) -> torch.device:
    """The device for `request`; `index` picks a GPU (a torchrun rank's LOCAL_RANK) when it is CUDA."""
    if not wants_cuda(request):
        return torch.device("cpu")
    if index is None:
        return torch.device("cuda")
    if index >= torch.cuda.device_count():
        raise InputError(f"CUDA device {index} was asked for, but only {torch.cuda.device_count()} are visible",
                         "use --nproc_per_node no larger than the number of GPUs")
    return torch.device("cuda", index)


def cpu_has_native_bf16() -> bool:
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of `precision` on `device` (None = fp32); ValueError for what cannot run there."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "fp16" and device.type != "cuda":
        raise ValueError("fp16 needs a CUDA device")
    if precision != "auto":
        return PRECISION_DTYPES[precision]
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if cpu_has_native_bf16() else None
