"""Mixed precision, memory layout and torch.compile for the training step. The model's weights, the optimizer,
the losses (stateful ones included), validation and checkpoints stay fp32: only the forward pass runs under
autocast, and its logits are cast back to fp32 before any loss sees them."""

from __future__ import annotations

import contextlib

import torch

from spml.errors import SpmlError

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_precision(precision: str, device: str) -> str:
    """auto: bf16 on GPUs that have it (Ampere and later), fp16 with loss scaling on older ones, fp32 on the CPU
    (bf16 runs there too, when asked, but is only faster on CPUs with AMX/AVX-512 BF16)."""
    if precision not in PRECISIONS:
        raise SpmlError(f"unknown precision {precision!r}; valid: {', '.join(PRECISIONS)}") from None
    if precision == "auto":
        if device != "cuda":
            return "fp32"
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if precision == "fp16" and device != "cuda":
        raise SpmlError("--precision fp16 needs a CUDA device; on the CPU use bf16 or fp32") from None
    if precision == "bf16" and device == "cuda" and not torch.cuda.is_bf16_supported():
        raise SpmlError("--precision bf16: this GPU has no bf16; use fp16 (or auto)") from None
    return precision


def autocast(precision: str, device: str):
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type="cuda" if device.startswith("cuda") else "cpu", dtype=DTYPES[precision])


def grad_scaler(precision: str, device: str) -> torch.amp.GradScaler | None:
    """fp16's gradients underflow without loss scaling; bf16 has fp32's range and needs none."""
    return torch.amp.GradScaler("cuda") if precision == "fp16" else None


def set_up_cuda(model: torch.nn.Module) -> torch.nn.Module:
    """channels_last (the layout tensor cores convolve in) and cuDNN's autotuner (input sizes are fixed)."""
    torch.backends.cudnn.benchmark = True
    return model.to(memory_format=torch.channels_last)


class CompiledOrEager(torch.nn.Module):
    """torch.compile'd forward that falls back to eager, with one line of warning, where it cannot compile
    (no C compiler, an unsupported op or platform). Compilation happens at the first call, so that is where
    the fallback is decided; tracing runs on fake tensors, so a failed compile has changed nothing."""

    def __init__(self, module: torch.nn.Module, log=print):
        super().__init__()
        self.module, self.log, self.first_call = module, log, True
        compiled = None
        try:
            compiled = torch.compile(module)
        except Exception as e:  # torch.compile unsupported here (e.g. a Python version dynamo lacks)
            self._fall_back(e)
        object.__setattr__(self, "compiled", compiled)  # not a submodule: its parameters are module's

    def _fall_back(self, e: Exception) -> None:
        first = (str(e).strip().splitlines() or [""])[0][:160]
        self.log(f"warning: --compile: torch.compile failed here ({type(e).__name__}: {first}); training eagerly")
        object.__setattr__(self, "compiled", None)

    def forward(self, *args, **kwargs):
        if self.compiled is not None and self.first_call:
            try:
                out = self.compiled(*args, **kwargs)
                self.first_call = False
                return out
            except Exception as e:  # only the first call compiles; later errors are the model's own
                self._fall_back(e)
        if self.compiled is not None:
            return self.compiled(*args, **kwargs)
        return self.module(*args, **kwargs)
