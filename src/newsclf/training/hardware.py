"""Device-dependent training choices, made in one place, and the processes of a DDP run."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

from newsclf.errors import InputError
from newsclf.training.config import Precision


def world_size() -> int:
    """Processes training together, as torchrun and accelerate launch say (WORLD_SIZE); read
    from the environment, so that nothing initialises a process group or CUDA to know it."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    """Whether this is rank 0 (or the only process): the one that writes files and prints."""
    return int(os.environ.get("RANK", "0")) == 0


@dataclass(frozen=True)
class HardwareSetup:
    """Device, precision and the CUDA-only settings of a run."""

    device: torch.device
    precision: str
    # Pad batches to a multiple of this (bounded shapes, tensor-core friendly) on CUDA.
    pad_to_multiple_of: int | None
    # PyTorch's cuDNN attention builds a plan for every new tensor shape: measured on an H100,
    # 90 ms per new shape against about 5 ms for a bert-base batch of 256 rows. Dynamic padding
    # and length grouping make many shapes; flash / memory-efficient attention has no such cost.
    disable_cudnn_attention: bool
    # Fused AdamW: one kernel per step instead of one per parameter tensor (CUDA only).
    optimizer: str

    @property
    def device_name(self) -> str:
        if self.device.type == "cuda":
            return f"cuda ({torch.cuda.get_device_name(0)})"
        return "cpu"

    @contextlib.contextmanager
    def attention(self) -> Iterator[None]:
        """The attention kernels for batches of ever-changing length, restored on exit."""
        if not self.disable_cudnn_attention:
            yield
            return
        was_enabled = torch.backends.cuda.cudnn_sdp_enabled()
        torch.backends.cuda.enable_cudnn_sdp(False)
        try:
            yield
        finally:
            torch.backends.cuda.enable_cudnn_sdp(was_enabled)

    def training_arguments(self) -> dict[str, Any]:
        """The TrainingArguments keywords that follow from the hardware."""
        return {
            "bf16": self.precision == "bf16",
            "fp16": self.precision == "fp16",
            "optim": self.optimizer,
            "use_cpu": self.device.type == "cpu",
        }


def hardware_setup(requested: Precision) -> HardwareSetup:
    """Device, precision (bf16 where the hardware runs it natively, fp16 on older CUDA GPUs,
    else fp32) and the CUDA-only settings.

    Raises:
        InputError: fp16 asked for without CUDA.
    """
    on_cuda = torch.cuda.is_available()
    device = torch.device("cuda" if on_cuda else "cpu")
    if requested == "fp16" and not on_cuda:
        raise InputError("--precision fp16 needs a CUDA GPU; use bf16 or fp32 on the CPU.")
    if requested != "auto":
        precision = requested
    elif on_cuda:
        precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    else:
        # oneDNN reports bf16 support only for AVX512-BF16 or AMX, where bf16 autocast is fast.
        precision = "bf16" if torch.ops.mkldnn._is_mkldnn_bf16_supported() else "fp32"
    return HardwareSetup(
        device=device,
        precision=precision,
        pad_to_multiple_of=8 if on_cuda else None,
        disable_cudnn_attention=on_cuda,
        optimizer="adamw_torch_fused" if on_cuda else "adamw_torch",
    )
