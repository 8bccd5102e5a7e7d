"""mmgen: multimodal deep generative models for PyTorch, with fused C++/CUDA kernels."""
from mmgen import ops
from mmgen.ops import build_info
from mmgen.hookspecs import hookimpl
from mmgen.plugins import build, list_components

__version__ = "0.1.0"
__all__ = ["ops", "build_info", "hookimpl", "build", "list_components", "__version__"]
