"""Layers built on mmgen ops."""
from mmgen.nn.flows import AffineCoupling, FlowSequence, PlanarFlow
from mmgen.nn.masked_conv import MaskedConv2d
from mmgen.nn.pixelcnn_blocks import ConditionalBias, GatedPixelCNNBlock
from mmgen.nn.vector_quantizer import VectorQuantizer, VQOutput

__all__ = ["PlanarFlow", "AffineCoupling", "FlowSequence", "MaskedConv2d", "GatedPixelCNNBlock", "ConditionalBias", "VectorQuantizer", "VQOutput"]
