"""PixelCNN masked 2-D convolution that computes only the causal (unmasked) taps."""
from __future__ import annotations

import torch

from mmgen._extension import has_native
from mmgen.ops import reference
from mmgen.ops._dispatch import check_float, check_same, check_tensor, use_native

__all__ = ["masked_conv2d"]

MASK_TYPES = ("A", "B")


def _check(x, weight, bias, mask_type, dilation, color_groups, op: str) -> None:
    check_tensor(x, "x", op)
    check_tensor(weight, "weight", op)
    check_float(x, "x", op)
    check_same(x, weight, ("x", "weight"), op, shape=False)
    if x.dim() != 4:
        raise ValueError(f"{op}: x must be 4-D [N, C_in, H, W], got shape {tuple(x.shape)}")
    if weight.dim() != 4:
        raise ValueError(f"{op}: weight must be 4-D [C_out, C_in, kh, kw], got shape "
                         f"{tuple(weight.shape)}")
    c_out, c_in, kh, kw = weight.shape
    if c_in != x.shape[1]:
        raise ValueError(f"{op}: weight has {c_in} input channels but x has {x.shape[1]}")
    if kh % 2 == 0 or kw % 2 == 0:
        raise ValueError(f"{op}: kernel sizes must be odd (the mask is centred), got {kh}x{kw}")
    if mask_type not in MASK_TYPES:
        raise ValueError(f"{op}: mask_type must be 'A' or 'B', got {mask_type!r}")
    if isinstance(dilation, bool) or not isinstance(dilation, int) or dilation < 1:
        raise ValueError(f"{op}: dilation must be an int >= 1, got {dilation!r}")
    if isinstance(color_groups, bool) or not isinstance(color_groups, int) or color_groups < 1:
        raise ValueError(f"{op}: color_groups must be an int >= 1, got {color_groups!r}")
    if c_in % color_groups or c_out % color_groups:
        raise ValueError(f"{op}: color_groups={color_groups} must divide both C_in ({c_in}) and "
                         f"C_out ({c_out})")
    if bias is not None:
        check_tensor(bias, "bias", op)
        check_same(x, bias, ("x", "bias"), op, shape=False)
        if bias.shape != (c_out,):
            raise ValueError(f"{op}: bias must have shape ({c_out},), got {tuple(bias.shape)}")


def masked_conv2d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, *,
                  mask_type: str = "B", dilation: int = 1, color_groups: int = 1,
                  backend: str = "auto") -> torch.Tensor:
    """PixelCNN masked convolution with "same" padding (van den Oord et al., 2016).

    Output pixel (i, j) sees input pixels above row i, and pixels of row i left of column j. At
    (i, j) itself, mask ``"A"`` sees nothing and ``"B"`` everything; with ``color_groups=G`` the
    channels are split into G contiguous groups (R|G|B for G=3) and output group g sees input
    groups < g (``"A"``) or <= g (``"B"``) at the centre. The kernel gathers only the kept taps, so
    a 7x7 ``"B"`` mask costs 25 taps, not 49; masked taps of ``weight`` are ignored and get a zero
    gradient.

    Args:
        x: ``[N, C_in, H, W]`` floating tensor.
        weight: ``[C_out, C_in, kh, kw]`` with odd kh and kw, same dtype and device as x.
        bias: ``[C_out]`` or None.
        mask_type: ``"A"`` (excludes the centre) or ``"B"`` (includes it).
        dilation: spacing between taps (>= 1); padding is ``dilation * (k // 2)``.
        color_groups: number of channel groups for the centre-tap mask; divides C_in and C_out.
        backend: ``"auto"`` (the native kernel; without one, the reference with a warning on CPU
            inputs and an error on CUDA inputs), ``"native"`` or ``"reference"``.

    Returns:
        ``[N, C_out, H, W]``.
    """
    op = "mmgen.ops.masked_conv2d"
    _check(x, weight, bias, mask_type, dilation, color_groups, op)
    if use_native(backend, op, x.device):
        return torch.ops.mmgen.masked_conv2d(x, weight, bias, mask_type, dilation, color_groups)
    return reference.masked_conv2d(x, weight, bias, mask_type, dilation, color_groups)


if has_native():
    @torch.library.register_fake("mmgen::masked_conv2d")
    def _masked_conv2d_fake(x, weight, bias, mask_type, dilation, color_groups):
        return x.new_empty((x.shape[0], weight.shape[0], x.shape[2], x.shape[3]))

    @torch.library.register_fake("mmgen::_masked_conv2d_backward")
    def _masked_conv2d_backward_fake(grad_out, x, weight, mask_type, dilation, color_groups,
                                     output_mask):
        def grad(t, wanted):
            return torch.empty_like(t, memory_format=torch.contiguous_format) if wanted else x.new_empty((0,))
        return (grad(x, output_mask[0]), grad(weight, output_mask[1]),
                x.new_empty((weight.shape[0],)) if output_mask[2] else x.new_empty((0,)))

    def _masked_conv2d_setup(ctx, inputs, output):
        x, weight, bias, mask_type, dilation, color_groups = inputs
        ctx.args = (mask_type, dilation, color_groups)
        ctx.has_bias = bias is not None
        ctx.save_for_backward(x, weight)

    def _masked_conv2d_backward(ctx, grad):
        x, weight = ctx.saved_tensors
        wanted = [ctx.needs_input_grad[0], ctx.needs_input_grad[1],
                  ctx.has_bias and ctx.needs_input_grad[2]]
        grads = torch.ops.mmgen._masked_conv2d_backward(grad, x, weight, *ctx.args, wanted)
        return (*(g if w else None for g, w in zip(grads, wanted)), None, None, None)

    torch.library.register_autograd("mmgen::masked_conv2d", _masked_conv2d_backward,
                                    setup_context=_masked_conv2d_setup)
