"""Small file helpers: atomic writes, PNG image grids (Pillow encodes the PNG), data: URIs."""
from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import tempfile
from typing import Iterator

import torch
from PIL import Image


@contextlib.contextmanager
def atomic_path(path: str) -> Iterator[str]:
    """A temp file beside ``path`` for a writer that takes a file name; when the block ends without
    error it is fsynced and renamed to ``path`` (never a half-written file), otherwise deleted. The
    file gets the permissions a plain ``open`` would give (0666 less the umask), not mkstemp's 0600."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=os.path.basename(path))
    os.close(fd)
    try:
        os.chmod(tmp, 0o666 & ~_umask())
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)  # the only way to read it is to set it
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temp file, fsync and rename: never a half-written file."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(data)


def atomic_write_json(path: str, value) -> None:
    """``value`` as indented JSON with a final newline (a result file), by :func:`atomic_write_bytes`."""
    atomic_write_bytes(path, (json.dumps(value, indent=2) + "\n").encode())


def image_grid(images: torch.Tensor, nrow: int = 8, pad: int = 1) -> torch.Tensor:
    """Tile images [N, C, H, W] with values in [0, 1] into one uint8 image [H', W', C]."""
    if images.dim() != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"image_grid expects [N, 1 or 3, H, W], got {tuple(images.shape)}")
    n, c, h, w = images.shape
    ncol = min(nrow, max(n, 1))
    nrows = (n + ncol - 1) // ncol
    grid = torch.ones(c, nrows * (h + pad) + pad, ncol * (w + pad) + pad)
    for i in range(n):
        r, col = divmod(i, ncol)
        top, left = pad + r * (h + pad), pad + col * (w + pad)
        grid[:, top:top + h, left:left + w] = images[i].detach().float().cpu().clamp(0, 1)
    return (grid * 255).round().to(torch.uint8).permute(1, 2, 0).contiguous()


def save_png(image: torch.Tensor, path: str, scale: int = 1) -> None:
    """Save a uint8 image [H, W, C] (C = 1 or 3) as PNG, each pixel repeated ``scale`` times."""
    if image.dtype != torch.uint8 or image.dim() != 3 or image.shape[2] not in (1, 3):
        raise ValueError(f"save_png expects uint8 [H, W, 1 or 3], got {image.dtype} {tuple(image.shape)}")
    if scale > 1:
        image = image.repeat_interleave(scale, 0).repeat_interleave(scale, 1)
    buffer = io.BytesIO()
    Image.fromarray(image.squeeze(2).numpy() if image.shape[2] == 1 else image.numpy()).save(
        buffer, format="PNG", compress_level=9)
    atomic_write_bytes(path, buffer.getvalue())


def data_uri(source: str | bytes, mime: str) -> str:
    """``data:MIME;base64,...`` of a file (a path) or of bytes: media embedded in an HTML page."""
    if isinstance(source, str):
        with open(source, "rb") as f:
            source = f.read()
    return f"data:{mime};base64,{base64.b64encode(source).decode('ascii')}"
