"""Loads the compiled extension ``mmgen._C`` (which registers the ``torch.ops.mmgen`` kernels).

A missing or broken build is not an import error: the ops fall back to their pure-PyTorch
references with one warning, unless ``MMGEN_REQUIRE_NATIVE=1`` is set, in which case any use of an
op (and ``require_native()``) raises with the original cause. The loading and refusal logic is
``mmgen.kernels.runtime``, shared with plugins that ship their own extensions.
"""
from __future__ import annotations

import warnings

from mmgen.kernels.runtime import (NativeFallbackWarning, describe_build, fallback_message, load_native,
                                   missing_native_error, native_required)

__all__ = ["has_native", "build_info", "require_native", "NativeFallbackWarning", "load_error"]

MODULE = "mmgen._C"
REBUILD_HINT = "`pip install --no-build-isolation -e .`"

_INFO, _ERROR = load_native(MODULE, REBUILD_HINT)
_warned = False


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
    """Called when an op runs its reference; warns once, or raises under MMGEN_REQUIRE_NATIVE=1."""
    global _warned
    if native_required():
        require_native(what)
        raise RuntimeError(f"{what}: no native kernel for this input and MMGEN_REQUIRE_NATIVE=1")
    if not _warned:
        _warned = True
        warnings.warn(fallback_message(what, _ERROR, "mmgen"), NativeFallbackWarning, stacklevel=4)


def build_info() -> dict:
    """What the native library was built for: native, cuda, torch_version, cuda_version, arch_list."""
    return describe_build(_INFO, _ERROR)
