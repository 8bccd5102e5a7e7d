"""Multi-process training with ``torch.distributed``: ``torchrun --nproc_per_node=N -m mmgen train ...``.

torchrun describes the process group in the environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR``, ``MASTER_PORT``); :func:`init_from_env` joins it (gloo on CPU, nccl on CUDA, one
GPU per process: ``cuda:LOCAL_RANK``). Without those variables everything here is a no-op for a
single process (rank 0 of 1), so the same code runs with and without torchrun.
"""
from __future__ import annotations

import gc
import os
import re

import torch
import torch.distributed as dist

_joined_here = False  # whether init_from_env created the process group (and shutdown ends it)


def is_initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if is_initialized() else 1


def is_main() -> bool:
    """Whether this process writes files (checkpoints, logs, samples, the model): rank 0."""
    return rank() == 0


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, str(default))
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name}={value!r} must be an integer (torchrun sets it)") from None


DEVICES = ["cpu", "cuda", "cuda:N"]


def check_device(device, what: str = "device") -> str:
    """``device`` if it is cpu, cuda or cuda:N and, for CUDA, torch sees that GPU; else a ValueError
    naming ``what``, the value and what is accepted."""
    if not isinstance(device, str) or not (device in ("cpu", "cuda") or re.fullmatch(r"cuda:\d+", device)):
        raise ValueError(f"{what}={device!r} is not one of {DEVICES}")
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(f"{what}={device!r}, but torch sees no CUDA device (torch {torch.__version__}, "
                             f"built for CUDA {torch.version.cuda or 'none'}); accepted here: 'cpu'")
        count, index = torch.cuda.device_count(), int(device.partition(":")[2] or 0)
        if index >= count:
            raise ValueError(f"{what}={device!r}, but torch sees {count} CUDA device(s); accepted: "
                             f"{['cpu', 'cuda', *(f'cuda:{i}' for i in range(count))]}")
    return device


def init_from_env(device: str = "cpu") -> str:
    """Join the process group torchrun describes, if any and not joined yet; return the device this
    process computes on (``"cuda"`` becomes ``"cuda:LOCAL_RANK"`` under torchrun)."""
    global _joined_here
    cuda = str(device).startswith("cuda")
    if not is_initialized() and _env_int("WORLD_SIZE", 1) > 1:
        if cuda:
            torch.cuda.set_device(_env_int("LOCAL_RANK", 0))
        dist.init_process_group("nccl" if cuda else "gloo")
        _joined_here = True
    if cuda and device == "cuda" and is_initialized():
        return f"cuda:{_env_int('LOCAL_RANK', torch.cuda.current_device())}"
    return device


def shutdown() -> None:
    """Leave the process group if :func:`init_from_env` created it. Unreachable DDP wrappers are
    collected first: one that outlives the group holds gloo's threads until the interpreter exits,
    and its destructor then aborts the process ("terminate called without an active exception"
    after the run had finished; 2 of 5 two-process runs here, 0 of 6 with the collection)."""
    global _joined_here
    if _joined_here and is_initialized():
        gc.collect()
        dist.destroy_process_group()
    _joined_here = False


def barrier() -> None:
    if is_initialized():
        dist.barrier()


def sum_across_ranks(values: list[float]) -> list[float]:
    """Element-wise sums of ``values`` over all ranks (the values themselves in one process)."""
    if not is_initialized():
        return list(values)
    nccl = dist.get_backend() == "nccl"  # nccl reduces CUDA tensors only
    device = torch.device("cuda", torch.cuda.current_device()) if nccl else torch.device("cpu")
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return tensor.tolist()


def gather(obj) -> list:
    """``[obj of rank 0, obj of rank 1, ...]`` (any picklable object), on every rank."""
    if not is_initialized():
        return [obj]
    out = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def rank_seed(seed: int, rank_: int, step: int = 0) -> int:
    """The RNG seed of ``rank_`` for a run seeded ``seed``: rank 0 keeps ``seed`` (so its random
    stream is the single-process one); other ranks get their own stream, so their shards of a batch
    draw different noise. ``step`` > 0 starts a fresh stream for a rank joining a resumed run."""
    if rank_ == 0 and step == 0:
        return seed
    return (seed * 1_000_003 + rank_ * 7_919 + step * 104_729) % (2 ** 63)
