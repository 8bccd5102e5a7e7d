"""mmgen's fused operators. Each takes ``backend="auto" | "native" | "reference"``: "auto" runs the
native kernel; without one it runs the pure-PyTorch reference on CPU inputs (one warning per op,
naming the cause) and raises on CUDA inputs, saying how to rebuild with CUDA kernels (see
:func:`mmgen.kernels.runtime.choose_native`)."""
from mmgen._extension import NativeFallbackWarning, has_native, native_required, require_native
from mmgen._extension import build_info as _build_info

if native_required():
    require_native("MMGEN_REQUIRE_NATIVE=1")

from mmgen.ops import reference  # noqa: E402
from mmgen.ops.reparameterize import gaussian_kl, reparameterize  # noqa: E402
from mmgen.ops.masked_conv2d import masked_conv2d  # noqa: E402
from mmgen.ops.vq import vector_quantize, vq_ema_stats, vq_nearest  # noqa: E402
from mmgen.ops.denormal import flush_denormal, set_flush_denormal  # noqa: E402


def build_info() -> dict:
    """What the native library was built for: native, cuda, torch/CUDA versions, arch list."""
    return _build_info()


__all__ = ["reparameterize", "gaussian_kl", "masked_conv2d",
           "vq_nearest", "vector_quantize", "vq_ema_stats",
           "build_info", "has_native", "reference", "flush_denormal", "set_flush_denormal",
           "NativeFallbackWarning"]
