"""Input checks for op wrappers, with messages that name the bad value and what is accepted, and
:func:`all_true`, the check of tensor values that also works inside ``torch.compile``."""
from __future__ import annotations

import torch

__all__ = ["check_tensor", "check_float", "check_same", "check_generator", "all_true"]


def check_tensor(t, name: str, op: str) -> None:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{op}: {name} must be a torch.Tensor, got {type(t).__name__}")


def check_float(t: torch.Tensor, name: str, op: str,
                allowed=(torch.float16, torch.bfloat16, torch.float32, torch.float64)) -> None:
    if t.dtype not in allowed:
        names = ", ".join(str(d).replace("torch.", "") for d in allowed)
        raise TypeError(f"{op}: {name} must have a floating dtype ({names}), got {t.dtype}")


def check_same(a: torch.Tensor, b: torch.Tensor, names: tuple[str, str], op: str,
               shape: bool = True) -> None:
    if a.device != b.device:
        raise ValueError(f"{op}: {names[0]} and {names[1]} must be on the same device, got "
                         f"{a.device} and {b.device}")
    if a.dtype != b.dtype:
        raise TypeError(f"{op}: {names[0]} and {names[1]} must have the same dtype, got "
                        f"{a.dtype} and {b.dtype}")
    if shape and a.shape != b.shape:
        raise ValueError(f"{op}: {names[0]} and {names[1]} must have the same shape, got "
                         f"{tuple(a.shape)} and {tuple(b.shape)}")


def check_generator(generator, device: torch.device, op: str) -> None:
    if generator is None:
        return
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"{op}: generator must be a torch.Generator or None, got "
                        f"{type(generator).__name__}")
    gen_device = generator.device
    other_index = gen_device.index is not None and device.index is not None and gen_device.index != device.index
    if gen_device.type != device.type or other_index:
        raise ValueError(f"{op}: generator is on {gen_device} but the inputs are on {device}; "
                         "pass a generator of the inputs' device (or None for its default generator)")


def all_true(condition: torch.Tensor, message: str) -> bool:
    """Whether every element of the bool tensor ``condition`` is true, for a check of data values.

    Eagerly this reads the answer on the host (the caller raises its own error, naming the values).
    While ``torch.compile`` traces, reading it would break the graph, so the check is put into the
    graph instead: the compiled code raises ``RuntimeError(message)`` when it runs on such data (on
    CUDA, a device-side assert), and the trace goes on as if the check passed.
    """
    if torch.compiler.is_compiling():
        torch._assert_async(condition.all(), message)
        return True
    return bool(condition.all())
