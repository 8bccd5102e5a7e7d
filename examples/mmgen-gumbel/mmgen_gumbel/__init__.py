"""mmgen-gumbel: an example plugin that ships its own C++/CUDA op (fused Gumbel-softmax sampling).

``gumbel_softmax_sample`` runs ``torch.ops.mmgen_gumbel.gumbel_softmax_sample`` (CPU and CUDA
kernels, fake kernels, autograd) or its pure-PyTorch reference; the plugin registers the encoder
``gumbel.categorical`` with mmgen.
"""
from mmgen import hookimpl
from mmgen_gumbel import reference
from mmgen_gumbel._extension import library
from mmgen_gumbel.encoder import CategoricalEncoder
from mmgen_gumbel.ops import gumbel_softmax_sample

__version__ = "0.1.0"
__all__ = ["gumbel_softmax_sample", "CategoricalEncoder", "library", "reference"]


@hookimpl
def mmgen_register(registry):
    registry.add("encoder", "gumbel.categorical", CategoricalEncoder, modality="any",
                 description="categorical bottleneck: any encoder -> [B, latents*categories] Gumbel-softmax "
                             "samples (fused mmgen_gumbel op)")
