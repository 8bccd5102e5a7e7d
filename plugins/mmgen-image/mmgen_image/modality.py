"""The image modality: PNG/JPEG files decoded with Pillow (resize + centre crop), PNG sample grids."""
from __future__ import annotations

import html
import os

import numpy as np
import torch
import torch.nn.functional as F

from mmgen.io import data_uri, image_grid, save_png

CHANNELS = (1, 3)


class ImageModality:
    """``load(path, size=None, channels=None) -> float [C, size, size]`` in [0, 1]: the shorter side
    resized to ``size`` (bilinear, antialiased) and the centre cropped to a square; ``channels`` 1
    (luminance) or 3 (RGB; the file's own, grey files as 1 and colour as 3, when None)."""

    name = "image"
    extensions = (".png", ".jpg", ".jpeg")

    def load(self, path: str, size: int | None = None, channels: int | None = None) -> torch.Tensor:
        from PIL import Image, UnidentifiedImageError
        check_options(size, channels)
        try:
            with Image.open(path) as image:
                image.load()
                mode = {1: "L", 3: "RGB"}.get(channels) or ("L" if image.mode in ("1", "L", "I", "I;16") else "RGB")
                array = np.asarray(image.convert(mode), dtype=np.float32) / 255.0
        except FileNotFoundError:
            raise ValueError(f"image file {path} does not exist") from None
        except (UnidentifiedImageError, OSError, SyntaxError) as exc:
            raise ValueError(f"image file {path} cannot be read as PNG/JPEG: {exc}") from None
        x = torch.from_numpy(array.copy())
        x = x.unsqueeze(0) if x.dim() == 2 else x.permute(2, 0, 1)
        return x if size is None else resize_crop(x, size)

    def write(self, path_prefix: str, values: torch.Tensor, labels=None, nrow: int = 10, **info) -> str:
        if values.dim() != 4 or values.shape[1] not in CHANNELS:
            raise ValueError(f"image samples must be [n, 1 or 3, H, W], got {tuple(values.shape)}")
        path = f"{path_prefix}.png"
        save_png(image_grid(values.float().clamp(0, 1), nrow=nrow), path, scale=max(1, 56 // values.shape[-1]))
        return path

    def html(self, path: str) -> str:
        """An ``<img>`` of the file, embedded as a data: URI, its pixels drawn sharp."""
        mime = "image/png" if path.lower().endswith(".png") else "image/jpeg"
        return (f'<img src="{data_uri(path, mime)}" alt="{html.escape(os.path.basename(path))}" '
                'style="image-rendering: pixelated">')

    def to_tensorboard(self, writer, tag: str, path: str, step: int) -> None:
        writer.add_image(tag, self.load(path), step)  # [C, H, W] in [0, 1]

    def example(self, source: str, size: int, channels: int, **entry) -> torch.Tensor:
        """One example from an image file, as data described by ``entry`` holds it: [channels, size, size]."""
        return self.load(source, size=size, channels=channels)


def check_options(size, channels) -> None:
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
        raise ValueError(f"image option size must be an int >= 1 (pixels of the square side), got {size!r}")
    if channels is not None and channels not in CHANNELS:
        raise ValueError(f"image option channels must be 1 or 3, got {channels!r}")


def resize_crop(x: torch.Tensor, size: int) -> torch.Tensor:
    """[C, H, W] -> [C, size, size]: shorter side to ``size``, then the centre square."""
    h, w = x.shape[-2:]
    scale = size / min(h, w)
    new_h, new_w = max(size, round(h * scale)), max(size, round(w * scale))
    if (new_h, new_w) != (h, w):
        x = F.interpolate(x.unsqueeze(0), size=(new_h, new_w), mode="bilinear", antialias=True,
                          align_corners=False).squeeze(0).clamp(0, 1)
    top, left = (new_h - size) // 2, (new_w - size) // 2
    return x[:, top:top + size, left:left + size].contiguous()

