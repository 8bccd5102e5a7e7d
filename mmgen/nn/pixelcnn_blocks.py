"""Gated PixelCNN block: vertical and horizontal stacks without a blind spot.

van den Oord et al., 2016, "Conditional Image Generation with PixelCNN Decoders". The vertical
stack at row i sees the rows <= i (a (k//2 + 1) x k kernel over the rows above, zero-padded), and
reaches the horizontal stack only shifted down by one row, so the horizontal stack at (i, j) sees
rows < i through it and pixels j' < j (mask "A") or j' <= j (mask "B") of row i through its own
1 x k masked convolution. With ``color_groups`` the horizontal stack keeps the R|G|B channel masks.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from mmgen.nn.masked_conv import MaskedConv2d

__all__ = ["GatedPixelCNNBlock", "ConditionalBias", "gate"]


def gate(a: torch.Tensor, groups: int = 1) -> torch.Tensor:
    """tanh(f) * sigmoid(g) where each of ``groups`` contiguous channel groups of ``a`` holds its
    own f and g halves, so the output keeps the group layout (channel dim 1 is halved)."""
    b, c = a.shape[:2]
    # unbind, not two selects: the backward stacks the two halves' gradients into one tensor, where
    # each select's backward filled a zero tensor of a's size, copied into it and added the two
    f, g = a.reshape(b, groups, 2, c // (2 * groups), *a.shape[2:]).unbind(2)
    return (torch.tanh(f) * torch.sigmoid(g)).reshape(b, c // 2, *a.shape[2:])


def shift_down(t: torch.Tensor) -> torch.Tensor:
    """Row i of the result is row i - 1 of ``t`` (zeros in row 0): one pad that adds a row on top
    and drops the last (a contiguous result; padding then slicing left a strided view that the
    next convolution copied)."""
    return F.pad(t, (0, 0, 1, -1))


class ConditionalBias(nn.Module):
    """A per-channel bias from a class label (``num_classes``) or a conditioning vector (``cond_dim``)."""

    def __init__(self, out_channels: int, *, num_classes: int | None = None, cond_dim: int | None = None):
        super().__init__()
        if (num_classes is None) == (cond_dim is None):
            raise ValueError("ConditionalBias: give exactly one of num_classes and cond_dim, got "
                             f"num_classes={num_classes!r}, cond_dim={cond_dim!r}")
        self.num_classes, self.cond_dim = num_classes, cond_dim
        self.map = (nn.Embedding(num_classes, out_channels) if num_classes is not None
                    else nn.Linear(cond_dim, out_channels, bias=False))

    def forward(self, cond: torch.Tensor) -> torch.Tensor:
        """``[B, out_channels]`` for labels ``[B]`` (int) or vectors ``[B, cond_dim]``."""
        return self.map(cond)


class StepWeights(NamedTuple):
    """One block's weights arranged for computing a single row or pixel (the *_step methods)."""
    horizontal: torch.Tensor        # [taps * in, 2C], rows ordered (tap, input channel)
    to_horizontal: torch.Tensor     # [2C, 2C]
    row_bias: torch.Tensor          # [2C]: biases of the horizontal conv and of to_horizontal
    horizontal_out: torch.Tensor    # [C, C], masked
    horizontal_out_bias: torch.Tensor | None


class GatedPixelCNNBlock(nn.Module):
    """One gated layer: ``(v, h) -> (v', h')``, both stacks with ``channels`` feature maps.

    Args:
        in_channels: channels of the incoming v and h (the image channels for the first block).
        channels: feature maps of each stack.
        kernel_size: odd k; the vertical kernel is (k//2 + 1) x k, the horizontal one 1 x k.
        mask_type: "A" for the first block (the horizontal stack excludes the current pixel), "B" after.
        color_groups: R|G|B channel groups of the horizontal stack (3 for colour images).
        num_classes / cond_dim: add a learned bias from a class label or a vector to both stacks.
        residual: add h to h' (default: for "B" blocks whose in_channels == channels).
    """

    def __init__(self, in_channels: int, channels: int, kernel_size: int = 3, *, mask_type: str = "B",
                 color_groups: int = 1, num_classes: int | None = None, cond_dim: int | None = None,
                 residual: bool | None = None):
        super().__init__()
        if not isinstance(kernel_size, int) or kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"GatedPixelCNNBlock: kernel_size must be an odd int >= 1, got {kernel_size!r}")
        if channels % color_groups:
            raise ValueError(f"GatedPixelCNNBlock: color_groups={color_groups} must divide channels ({channels})")
        self.in_channels, self.channels, self.color_groups = in_channels, channels, color_groups
        self.pad = kernel_size // 2
        self.residual = (mask_type == "B" and in_channels == channels) if residual is None else residual
        if self.residual and in_channels != channels:
            raise ValueError(f"GatedPixelCNNBlock: a residual block needs in_channels == channels, got "
                             f"{in_channels} and {channels}")
        self.vertical = nn.Conv2d(in_channels, 2 * channels, (self.pad + 1, kernel_size))
        self.to_horizontal = nn.Conv2d(2 * channels, 2 * channels, 1)
        self.horizontal = MaskedConv2d(in_channels, 2 * channels, (1, kernel_size), mask_type=mask_type,
                                       color_groups=color_groups)
        self.horizontal_out = MaskedConv2d(channels, channels, 1, mask_type="B", color_groups=color_groups)
        conditioned = num_classes is not None or cond_dim is not None
        self.cond_vertical = (ConditionalBias(2 * channels, num_classes=num_classes, cond_dim=cond_dim)
                              if conditioned else None)
        self.cond_horizontal = (ConditionalBias(2 * channels, num_classes=num_classes, cond_dim=cond_dim)
                                if conditioned else None)

    def condition(self, cond: torch.Tensor | None) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """The ``[B, 2 * channels]`` biases of the vertical and horizontal stacks (None, None if unconditioned)."""
        if self.cond_vertical is None:
            return None, None
        return self.cond_vertical(cond), self.cond_horizontal(cond)

    def forward(self, v: torch.Tensor, h: torch.Tensor, cond: torch.Tensor | None = None):
        bias_v, bias_h = self.condition(cond)
        p = self.pad
        v_pre = self.vertical(F.pad(v, (p, p, p, 0)))
        h_pre = self.horizontal(h) + self.to_horizontal(shift_down(v_pre))
        if bias_v is not None:
            v_pre = v_pre + bias_v[:, :, None, None]
            h_pre = h_pre + bias_h[:, :, None, None]
        h_out = self.horizontal_out(gate(h_pre, self.color_groups))
        return gate(v_pre), (h_out + h if self.residual else h_out)

    # Incremental computation (cached sampling): one row of the vertical stack, one pixel of the
    # horizontal stack; the same sums as forward, in another order.
    def step_weights(self) -> StepWeights:
        taps = self.horizontal.taps
        kept = self.horizontal.tap_weight().reshape(-1, self.in_channels, taps)
        row_bias = self.to_horizontal.bias
        if self.horizontal.bias is not None:
            row_bias = row_bias + self.horizontal.bias
        return StepWeights(kept.transpose(1, 2).reshape(kept.shape[0], -1).t().contiguous(),
                           self.to_horizontal.weight.flatten(1), row_bias,
                           self.horizontal_out.tap_weight(), self.horizontal_out.bias)

    @property
    def horizontal_taps(self) -> int:
        return self.horizontal.taps

    def vertical_step(self, window: torch.Tensor, bias_v: torch.Tensor | None):
        """One row from ``window`` = the p + 1 input rows ending at it, zero-padded by p on the
        left and right (``[B, in, p + 1, W + 2p]``): ``(v_pre [B, 2C, W], v_out [B, C, W])``."""
        v_pre = self.vertical(window)[:, :, 0]
        v_act = v_pre if bias_v is None else v_pre + bias_v[:, :, None]
        return v_pre, gate(v_act)

    def row_terms(self, weights: StepWeights, v_pre_above: torch.Tensor,
                  bias_h: torch.Tensor | None) -> torch.Tensor:
        """``[B, W, 2C]``: what the horizontal pre-activations of a row get from the vertical
        stack one row above (``v_pre_above [B, 2C, W]``, zeros for row 0) and from the biases."""
        terms = F.linear(v_pre_above.transpose(1, 2), weights.to_horizontal, weights.row_bias)
        return terms if bias_h is None else terms + bias_h[:, None, :]

    def horizontal_step(self, weights: StepWeights, window: torch.Tensor, h_centre: torch.Tensor,
                        row_term: torch.Tensor) -> torch.Tensor:
        """h' ``[B, C]`` at one pixel from ``window`` = the h inputs at the kept taps flattened
        (tap, channel) to ``[B, taps * in]``, ``h_centre`` = h at the pixel ``[B, in]`` and the
        pixel's row term ``[B, 2C]``."""
        h_pre = torch.addmm(row_term, window, weights.horizontal)
        h_out = F.linear(gate(h_pre, self.color_groups), weights.horizontal_out, weights.horizontal_out_bias)
        return h_out + h_centre if self.residual else h_out
