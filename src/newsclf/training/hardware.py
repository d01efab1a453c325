"""Device-dependent training choices, made in one place, and the processes of a DDP run."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch

from newsclf.errors import InputError
from newsclf.training.config import Precision
from newsclf.training.results import StepPlan


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


# The largest batch a step is merged into: beyond it the GPU is busy enough with micro-batches.
MAX_MERGED_ROWS = 1024
# Share of the GPU's free memory a merged step may plan to use (the rest: fragmentation, the
# longer rows of later batches, other processes).
MEMORY_SHARE = 0.9

# (rows, tokens per row) -> whether a forward and backward pass of that size fits, and why not.
FitCheck = Callable[[int, int], tuple[bool, str]]


def plan_step(
    batch_size: int,
    grad_accum: int,
    *,
    merge: bool,
    device: torch.device,
    processes: int = 1,
    max_length: int = 128,
    fits: FitCheck | None = None,
) -> StepPlan:
    """How a device runs the `batch_size` x `grad_accum` rows of an optimizer step: on a GPU,
    in as few micro-batches as fit in memory (one, ideally: at micro-batch 64 a GPU mostly
    waits for kernel launches); elsewhere as configured. Averaged micro-batch losses make the
    update the same either way.

    Args:
        merge: False keeps the configured micro-batches (--no-merge-accumulation).
        device: where the model trains.
        processes: processes training together; under DDP every process keeps the configured
            micro-batches, since all must agree on the step.
        max_length: tokens per row the probe assumes (the longest a batch can be).
        fits: whether a micro-batch fits (`gpu_memory_check` of the model); required on CUDA.
    """
    total = batch_size * grad_accum
    if grad_accum == 1:
        return StepPlan(batch_size, 1, "no accumulation asked for")
    if not merge:
        return StepPlan(batch_size, grad_accum, "--no-merge-accumulation")
    if device.type != "cuda":
        return StepPlan(batch_size, grad_accum, "micro-batches as configured on the CPU")
    if processes > 1:
        return StepPlan(
            batch_size, grad_accum, f"{processes} processes keep the configured micro-batches"
        )
    if fits is None:
        raise ValueError("plan_step on CUDA needs a memory check (fits)")
    reasons = []
    for steps in (k for k in range(1, grad_accum) if grad_accum % k == 0):
        rows = total // steps
        if rows > MAX_MERGED_ROWS:
            reasons.append(f"{rows} rows is over {MAX_MERGED_ROWS}")
            continue
        ok, reason = fits(rows, max_length)
        if ok:
            return StepPlan(
                rows,
                steps,
                f"{batch_size} x {grad_accum} merged: fits in GPU memory at {max_length} tokens",
            )
        reasons.append(reason)
    return StepPlan(batch_size, grad_accum, "micro-batches as configured: " + "; ".join(reasons))


def gpu_memory_check(model: torch.nn.Module, hardware: HardwareSetup, copies: int = 1) -> FitCheck:
    """A probe of `model` on `hardware`'s GPU: one forward and backward pass of random tokens
    (each row `copies` times, as R-Drop's forward takes them) under the run's precision, whose
    peak memory, with AdamW's two states per parameter, must fit in `MEMORY_SHARE` of the free
    memory. Random number generators are left as they were."""

    def fits(rows: int, length: int) -> tuple[bool, str]:
        device = hardware.device
        model.to(device).train()
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(hardware.precision)
        free, _ = torch.cuda.mem_get_info(device)
        state = 8 * sum(p.numel() for p in model.parameters() if p.requires_grad)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        out_of_memory = False
        try:
            with (
                torch.random.fork_rng(devices=[device]),
                torch.autocast("cuda", dtype=dtype or torch.float32, enabled=dtype is not None),
                hardware.attention(),
            ):
                _forward_backward(model, rows * copies, length, device)
            torch.cuda.synchronize(device)
        except torch.cuda.OutOfMemoryError:
            out_of_memory = True
        needed = torch.cuda.max_memory_allocated(device) - base + state
        model.zero_grad(set_to_none=True)
        torch.cuda.empty_cache()
        if out_of_memory:
            return False, f"{rows} rows ran out of GPU memory"
        if needed > MEMORY_SHARE * free:
            return False, f"{rows} rows need {needed / 2**30:.1f} GiB of {free / 2**30:.1f} free"
        return True, ""

    return fits


def _forward_backward(model: torch.nn.Module, rows: int, length: int, device: torch.device) -> None:
    # Its tensors are freed on return, before the probe empties the cache.
    ids = torch.randint(0, getattr(model.config, "vocab_size", 1000), (rows, length), device=device)
    labels = torch.zeros(rows, dtype=torch.long, device=device)
    model(input_ids=ids, attention_mask=torch.ones_like(ids), labels=labels).loss.backward()
