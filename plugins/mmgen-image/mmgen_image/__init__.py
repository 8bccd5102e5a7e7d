"""mmgen plugin for images: conv encoder/decoder and DCGAN generator/discriminator."""
from mmgen import hookimpl
from mmgen_image.conv import ConvDecoder, ConvEncoder
from mmgen_image.dcgan import DCGANDiscriminator, DCGANGenerator
from mmgen_image.sizes import SIZES

__version__ = "0.1.0"
__all__ = ["ConvEncoder", "ConvDecoder", "DCGANGenerator", "DCGANDiscriminator", "SIZES"]


@hookimpl
def mmgen_register(registry):
    sizes = list(SIZES)
    registry.add("encoder", "image.conv", ConvEncoder, modality="image", sizes=sizes,
                 description="strided conv encoder: [B, C, H, W] -> [B, out_features]")
    registry.add("decoder", "image.conv", ConvDecoder, modality="image", sizes=sizes,
                 description="transposed-conv decoder: [B, in_features] -> [B, C*P, H, W] logits/means")
    registry.add("generator", "image.dcgan", DCGANGenerator, modality="image", sizes=sizes,
                 description="DCGAN generator: [B, latent_dim] -> [B, C, H, W] in [-1, 1]")
    registry.add("discriminator", "image.dcgan", DCGANDiscriminator, modality="image", sizes=sizes,
                 description="DCGAN discriminator: [B, C, H, W] -> [B] logits")
