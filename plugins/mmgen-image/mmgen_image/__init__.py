"""mmgen plugin for images: conv encoder/decoder, VQ grid encoder/decoder, DCGAN generator/discriminator,
U-Net denoiser."""
from mmgen import hookimpl
from mmgen_image.modality import ImageModality
from mmgen_image.conv import ConvDecoder, ConvEncoder
from mmgen_image.dcgan import DCGANDiscriminator, DCGANGenerator
from mmgen_image.sizes import MIN_SIZE, SIZES
from mmgen_image.text_conditional import RefinerGenerator, TextMatchingDiscriminator
from mmgen_image.unet import UNetDenoiser
from mmgen_image.vqconv import VQConvDecoder, VQConvEncoder

__version__ = "0.1.0"
__all__ = ["ImageModality", "ConvEncoder", "ConvDecoder", "DCGANGenerator", "DCGANDiscriminator", "VQConvEncoder",
           "VQConvDecoder", "UNetDenoiser", "SIZES", "MIN_SIZE"]


@hookimpl
def mmgen_register(registry):
    registry.add("modality", "image", ImageModality, description="PNG/JPEG files (Pillow), resize + centre crop, PNG sample grids")
    registry.add("encoder", "image.conv", ConvEncoder, modality="image", min_size=MIN_SIZE,
                 infer={"in_channels": "channels", "size": "size"},
                 description="strided conv encoder: [B, C, H, W] -> [B, out_features]")
    registry.add("decoder", "image.conv", ConvDecoder, modality="image", min_size=MIN_SIZE,
                 infer={"out_channels": "channels", "size": "size"},
                 description="transposed-conv decoder: [B, in_features] -> [B, C*P, H, W] logits/means")
    registry.add("encoder", "image.vqconv", VQConvEncoder, modality="image", min_size=MIN_SIZE,
                 infer={"in_channels": "channels", "size": "size"},
                 description="conv encoder to a code grid: [B, C, H, W] -> [B, D, H/2^s, W/2^s]")
    registry.add("decoder", "image.vqconv", VQConvDecoder, modality="image", min_size=MIN_SIZE,
                 infer={"out_channels": "channels", "size": "size"},
                 description="conv decoder from a code grid: [B, D, h, w] -> [B, C*P, H, W]")
    registry.add("generator", "image.dcgan", DCGANGenerator, modality="image", min_size=MIN_SIZE,
                 infer={"out_channels": "channels", "size": "size"},
                 description="DCGAN generator: [B, latent_dim] -> [B, C, H, W] in [-1, 1]")
    registry.add("discriminator", "image.dcgan", DCGANDiscriminator, modality="image", min_size=MIN_SIZE,
                 infer={"in_channels": "channels", "size": "size"},
                 description="DCGAN discriminator: [B, C, H, W] -> [B] logits")
    registry.add("discriminator", "image.text_dcgan", TextMatchingDiscriminator, modality="image", min_size=MIN_SIZE,
                 infer={"in_channels": "channels", "size": "size"},
                 description="matching-aware DCGAN discriminator: images [B, C, H, W], text [B, F] -> [B] logits")
    registry.add("generator", "image.refiner", RefinerGenerator, modality="image", min_size=MIN_SIZE,
                 infer={"channels": "channels"},  # its size is half the data's
                 description="StackGAN stage two: image [B, C, s, s] + condition [B, D] -> [B, C, 2s, 2s]")
    registry.add("denoiser", "image.unet", UNetDenoiser, modality="image", min_size=MIN_SIZE,
                 infer={"in_channels": "channels", "size": "size"},
                 description="U-Net noise predictor: x_t [B, C, H, W], t [B], condition [B, F] -> noise [B, C, H, W]")
