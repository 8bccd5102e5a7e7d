"""Backend choice and input checks shared by every op wrapper (the logic is in mmgen.kernels)."""
from __future__ import annotations

import torch

from mmgen._extension import build_info, cuda_missing, has_native, require_native, warn_fallback
from mmgen.kernels.checks import check_float, check_generator, check_same, check_tensor
from mmgen.kernels.runtime import BACKENDS, choose_native

__all__ = ["BACKENDS", "use_native", "check_tensor", "check_float", "check_same", "check_generator"]


def use_native(backend: str, op: str, device: torch.device) -> bool:
    """True to call the compiled kernel, False to run the reference (on the CPU under "auto", warning
    once per op; a CUDA input without CUDA kernels raises: see mmgen.kernels.runtime.choose_native)."""
    loaded = has_native()
    return choose_native(backend, op, device, loaded=loaded, cuda=loaded and build_info()["cuda"],
                         require=require_native, fallback=warn_fallback, no_cuda=cuda_missing, project="mmgen")
