"""Loads the compiled extension ``mmgen._C`` (which registers the ``torch.ops.mmgen`` kernels).

A missing or broken build is not an import error: the ops fall back to their pure-PyTorch
references with one warning, unless ``MMGEN_REQUIRE_NATIVE=1`` is set, in which case any use of an
op (and ``require_native()``) raises with the original cause.
"""
from __future__ import annotations

import json
import os
import warnings

import torch

__all__ = ["has_native", "build_info", "require_native", "NativeFallbackWarning", "load_error"]


class NativeFallbackWarning(UserWarning):
    """Emitted once when an op runs its pure-PyTorch reference because no native kernel is built."""


def _load():
    try:
        from mmgen import _C  # noqa: F401  (import registers the operators)
    except (ImportError, OSError) as exc:  # OSError: an undefined symbol from a torch mismatch
        return None, exc
    info = json.loads(_C.build_info_json())
    if info["torch_version"] != torch.__version__:
        return None, RuntimeError(
            f"mmgen._C was built for torch {info['torch_version']} but torch {torch.__version__} "
            "is installed; rebuild with `pip install --no-build-isolation -e .`")
    return info, None


_INFO, _ERROR = _load()
_warned = False


def has_native() -> bool:
    """True when the compiled kernels are loaded."""
    return _INFO is not None


def load_error() -> BaseException | None:
    """Why the extension did not load (None when it did)."""
    return _ERROR


def native_required() -> bool:
    return os.environ.get("MMGEN_REQUIRE_NATIVE", "").strip() in ("1", "true", "yes")


def require_native(what: str = "mmgen") -> None:
    """Raise if the native extension is not loaded, naming the cause."""
    if _INFO is None:
        raise RuntimeError(
            f"{what} needs the compiled extension mmgen._C, which did not load: {_ERROR!r}. "
            "Build it with `pip install --no-build-isolation -e .` (see README).") from _ERROR


def warn_fallback(what: str) -> None:
    """Called when an op runs its reference; warns once, or raises under MMGEN_REQUIRE_NATIVE=1."""
    global _warned
    if native_required():
        require_native(what)
        raise RuntimeError(f"{what}: no native kernel for this input and MMGEN_REQUIRE_NATIVE=1")
    if not _warned:
        _warned = True
        warnings.warn(
            f"{what}: using the pure-PyTorch reference (slower) because the native kernel is not "
            f"available ({_ERROR!r} )" if _ERROR else f"{what}: using the pure-PyTorch reference "
            "(slower) because mmgen was built without kernels for this device",
            NativeFallbackWarning, stacklevel=3)


def build_info() -> dict:
    """What the native library was built for: native, cuda, torch_version, cuda_version, arch_list."""
    if _INFO is None:
        return {"native": False, "cuda": False, "torch_version": torch.__version__,
                "cuda_version": None, "arch_list": None, "debug": False,
                "error": repr(_ERROR)}
    return {"native": True, **_INFO}
