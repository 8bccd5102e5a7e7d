"""mmgen: multimodal deep generative models for PyTorch, with fused C++/CUDA kernels."""
from mmgen import ops
from mmgen.ops import build_info

__version__ = "0.1.0"
__all__ = ["ops", "build_info", "__version__"]
