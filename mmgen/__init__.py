"""mmgen: multimodal deep generative models for PyTorch, with fused C++/CUDA kernels.

``import mmgen`` loads only the plugin registry (``hookimpl``, ``build``, ``list_components``) and
does not import torch; the ops (``mmgen.ops``, ``mmgen.build_info``, which load the compiled
extension and torch) and the heavier subpackages (``mmgen.models``, ``mmgen.nn``, ``mmgen.data``,
``mmgen.train``, ``mmgen.eval``, ``mmgen.kernels``) are imported on first attribute access (PEP
562), so ``import mmgen; mmgen.models.VAE`` works and ``import mmgen`` / ``mmgen --help`` stay fast.
"""
import importlib as _importlib

from mmgen.hookspecs import hookimpl
from mmgen.plugins import build, list_components

__version__ = "0.1.0"
__all__ = ["ops", "build_info", "hookimpl", "build", "list_components", "__version__",
           "models", "nn", "data", "train", "eval", "kernels"]

_LAZY_SUBMODULES = ("ops", "models", "nn", "data", "train", "eval", "kernels")


def __getattr__(name: str):
    if name in _LAZY_SUBMODULES:
        module = _importlib.import_module(f"{__name__}.{name}")
        globals()[name] = module  # the import sets it too; later lookups skip __getattr__
        return module
    if name == "build_info":
        return __getattr__("ops").build_info
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY_SUBMODULES) | {"build_info"})
