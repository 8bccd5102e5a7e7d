"""PixelCNN masked convolution layer over :func:`mmgen.ops.masked_conv2d`."""
from __future__ import annotations

import math

import torch
from torch import nn

from mmgen.ops import masked_conv2d, reference

__all__ = ["MaskedConv2d"]


def _pair(size, what: str) -> tuple[int, int]:
    pair = (size, size) if isinstance(size, int) else tuple(size)
    if len(pair) != 2 or not all(isinstance(k, int) and k >= 1 and k % 2 == 1 for k in pair):
        raise ValueError(f"{what} must be an odd int or a pair of odd ints, got {size!r}")
    return pair


class MaskedConv2d(nn.Module):
    """Conv2d with a PixelCNN mask ("A" or "B", optional R|G|B ``color_groups``) and "same" padding.

    The full ``[out, in, kh, kw]`` weight is a parameter; masked taps are never read and get zero
    gradient. See :func:`mmgen.ops.masked_conv2d` for the mask.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | tuple[int, int], *,
                 mask_type: str = "B", dilation: int = 1, color_groups: int = 1, bias: bool = True,
                 backend: str = "auto"):
        super().__init__()
        kh, kw = _pair(kernel_size, "MaskedConv2d: kernel_size")
        if mask_type not in ("A", "B"):
            raise ValueError(f"MaskedConv2d: mask_type must be 'A' or 'B', got {mask_type!r}")
        if in_channels % color_groups or out_channels % color_groups:
            raise ValueError(f"MaskedConv2d: color_groups={color_groups} must divide in_channels "
                             f"({in_channels}) and out_channels ({out_channels})")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size = (kh, kw)
        self.mask_type, self.dilation, self.color_groups = mask_type, dilation, color_groups
        self.backend = backend
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, kh, kw))
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        self.reset_parameters()

    @property
    def taps(self) -> int:
        """Number of kernel taps the mask keeps (a prefix of the kernel in raster order)."""
        kh, kw = self.kernel_size
        centre = self.mask_type == "B" or self.color_groups > 1
        return (kh // 2) * kw + kw // 2 + int(centre)

    def reset_parameters(self) -> None:
        # Uniform init scaled by the number of inputs the mask actually keeps.
        fan_in = max(1, self.in_channels * self.taps)
        bound = 1.0 / math.sqrt(fan_in)
        nn.init.uniform_(self.weight, -math.sqrt(3.0) * bound, math.sqrt(3.0) * bound)
        if self.bias is not None:
            nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return masked_conv2d(x, self.weight, self.bias, mask_type=self.mask_type,
                             dilation=self.dilation, color_groups=self.color_groups,
                             backend=self.backend)

    def masked_weight(self) -> torch.Tensor:
        """The weight with its masked taps set to zero."""
        mask = reference.masked_conv2d_mask(self.out_channels, self.in_channels, *self.kernel_size,
                                            self.mask_type, self.color_groups,
                                            dtype=self.weight.dtype, device=self.weight.device)
        return self.weight * mask

    def tap_weight(self) -> torch.Tensor:
        """``[out, in * taps]``: the kept taps, ordered (input channel, tap), for computing one
        output pixel as a matrix product with its gathered causal inputs."""
        w = self.masked_weight().reshape(self.out_channels, self.in_channels, -1)
        return w[:, :, : self.taps].reshape(self.out_channels, -1)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"mask_type={self.mask_type!r}, dilation={self.dilation}, "
                f"color_groups={self.color_groups}, bias={self.bias is not None}")
