"""Save and restore all random state mmgen's ops depend on (for checkpoints and exact resume).

``torch.get_rng_state()`` alone is not enough: CPU generators have no Philox offset, so mmgen keeps
one per generator (see ``mmgen.ops.reparameterize``); it is part of the state returned here.
"""
from __future__ import annotations

import torch

from mmgen._extension import has_native
from mmgen.ops import reference


def _cpu_offset(generator: torch.Generator | None) -> int:
    if has_native():
        return int(torch.ops.mmgen._cpu_philox_offset(generator))
    gen = generator or torch.default_generator
    known = reference._cpu_offsets.get(id(gen))
    return known[1] if known and known[0] == gen.get_state().numpy().tobytes() else -1


def _set_cpu_offset(generator: torch.Generator | None, offset: int) -> None:
    if offset < 0:
        return
    if has_native():
        torch.ops.mmgen._set_cpu_philox_offset(generator, offset)
    else:
        gen = generator or torch.default_generator
        reference._cpu_offsets[id(gen)] = (gen.get_state().numpy().tobytes(), offset)


def get_state(generator: torch.Generator | None = None) -> dict:
    """State of a CPU generator (default: the global one) and, for the global one, of every
    initialized CUDA generator."""
    gen = generator or torch.default_generator
    state = {"cpu": gen.get_state(), "cpu_philox_offset": _cpu_offset(generator)}
    if generator is None and torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_state(state: dict, generator: torch.Generator | None = None) -> None:
    """Restore what :func:`get_state` returned: later draws continue exactly as they would have."""
    gen = generator or torch.default_generator
    gen.set_state(state["cpu"])
    _set_cpu_offset(generator, int(state.get("cpu_philox_offset", -1)))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
