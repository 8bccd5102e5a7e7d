"""Loads the compiled extension ``mmgen._C`` (which registers the ``torch.ops.mmgen`` kernels).

A missing or broken build is not an import error: on the CPU the ops fall back to their
pure-PyTorch references with one warning per op, naming the cause, unless
``MMGEN_REQUIRE_NATIVE=1`` is set, in which case any use of an op (and ``require_native()``) raises
with the original cause. CUDA inputs without CUDA kernels raise, saying how to rebuild
(``cuda_missing``). The loading and refusal logic is ``mmgen.kernels.runtime``, shared with
plugins that ship their own extensions.
"""
from __future__ import annotations

import warnings

import torch

from mmgen.kernels.runtime import (NativeFallbackWarning, cuda_missing_error, describe_build, fallback_message,
                                   load_native, missing_native_error, native_required)
from mmgen.kernels.runtime import fallbacks as library_fallbacks

__all__ = ["has_native", "build_info", "require_native", "NativeFallbackWarning", "load_error", "fallbacks"]

MODULE = "mmgen._C"
REBUILD_HINT = "`pip install --no-build-isolation -e .`"
CUDA_REBUILD_HINT = ("`FORCE_CUDA=1 pip install --no-build-isolation -e .` in mmgen's checkout (or "
                     "`FORCE_CUDA=1 bash scripts/install.sh`; docs/kernels.md)")

_INFO, _ERROR = load_native(MODULE, REBUILD_HINT)


def _read_native(name: str) -> str | None:
    """``torch.ops.mmgen.<name>()`` of the loaded kernels: None without them, or when it raises (an
    MMGEN_CPU_ISA that names no level: the ops then raise, saying which are accepted)."""
    if _INFO is None:
        return None
    try:
        return str(getattr(torch.ops.mmgen, name)())
    except (RuntimeError, AttributeError):
        return None


# Read once: build_info() is called where torch.compile traces.
_CPU_ISA = _read_native("_cpu_isa")  # the CPU code path of the loaded kernels
_COMPILER = _read_native("_compiler")  # the C++ compiler they were built with
_warned: set[str] = set()  # ops that warned of their fallback


def has_native() -> bool:
    """True when the compiled kernels are loaded."""
    return _INFO is not None


def load_error() -> BaseException | None:
    """Why the extension did not load (None when it did)."""
    return _ERROR


def require_native(what: str = "mmgen") -> None:
    """Raise if the native extension is not loaded, naming the cause."""
    if _INFO is None:
        raise missing_native_error(what, MODULE, _ERROR, REBUILD_HINT) from _ERROR


def warn_fallback(what: str) -> None:
    """Called when an op runs its reference; warns once per op, or raises under MMGEN_REQUIRE_NATIVE=1."""
    if native_required():
        require_native(what)
        raise RuntimeError(f"{what}: no native kernel for this input and MMGEN_REQUIRE_NATIVE=1")
    if what not in _warned:
        _warned.add(what)
        warnings.warn(fallback_message(what, _ERROR, "mmgen", MODULE, REBUILD_HINT), NativeFallbackWarning,
                      stacklevel=4)


def cuda_missing(what: str) -> RuntimeError:
    """The error of an op given CUDA tensors without mmgen's CUDA kernels."""
    return cuda_missing_error(what, "mmgen", MODULE, _ERROR, CUDA_REBUILD_HINT)


def fallbacks() -> dict:
    """What mmgen's ops run on CPU and CUDA inputs under ``backend="auto"``, and why
    (:func:`mmgen.kernels.runtime.fallbacks`)."""
    return library_fallbacks("mmgen", MODULE, _INFO, _ERROR, REBUILD_HINT, CUDA_REBUILD_HINT)


def build_info() -> dict:
    """What the native library was built for: native, cuda, torch_version, cuda_version, arch_list,
    and the CPU code path in use, ``cpu_isa``: "avx512" (x86-64-v4), "avx2" (x86-64-v3) or
    "baseline" (None without the library); ``MMGEN_CPU_ISA`` forces a lower one; ``compiler``: the
    C++ compiler of the library (e.g. "gcc 12.2.0", "clang 14.0.6")."""
    info = describe_build(_INFO, _ERROR)
    info["cpu_isa"] = _CPU_ISA
    info["compiler"] = _COMPILER
    return info
