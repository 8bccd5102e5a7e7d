// Shared declarations for the PixelCNN masked convolution kernels (CPU and CUDA).
//
// In raster order the taps a PixelCNN mask keeps are a prefix of the kernel: every row above the
// centre, the centre row left of the centre, then the centre itself when some (output, input)
// channel pair may see it. Both backends gather only that prefix, so the GEMM's K dimension is
// C_in * taps instead of C_in * kh * kw.
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/ops/arange.h>
#include <ATen/ops/zeros.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <cstdlib>
#include <string>

namespace mmgen {

struct MaskedConvGeometry {
  int64_t batch, c_in, c_out, height, width;
  int64_t kh, kw, dilation, groups;
  bool mask_a;
  int64_t taps;         // causal taps kept: raster positions 0 .. taps - 1
  bool centre_masked;   // the last kept tap is the centre and needs the R|G|B channel mask

  int64_t pixels() const { return height * width; }
  int64_t k() const { return c_in * taps; }  // rows of the gathered columns
  // Offsets (in input pixels) of tap t from the output pixel.
  int64_t dy(int64_t t) const { return (t / kw - kh / 2) * dilation; }
  int64_t dx(int64_t t) const { return (t % kw - kw / 2) * dilation; }
};

inline MaskedConvGeometry masked_conv_geometry(const at::Tensor& x, const at::Tensor& weight,
                                               const std::optional<at::Tensor>& bias,
                                               const std::string& mask_type, int64_t dilation,
                                               int64_t color_groups, const char* op) {
  TORCH_CHECK(x.dim() == 4, op, ": x must be 4-D [N, C_in, H, W], got shape ", x.sizes());
  TORCH_CHECK(weight.dim() == 4, op, ": weight must be 4-D [C_out, C_in, kh, kw], got shape ",
              weight.sizes());
  TORCH_CHECK(x.scalar_type() == weight.scalar_type(), op,
              ": x and weight must have the same dtype, got ", x.scalar_type(), " and ",
              weight.scalar_type());
  TORCH_CHECK(x.device() == weight.device(), op, ": x and weight must be on the same device, got ",
              x.device(), " and ", weight.device());
  TORCH_CHECK(at::isFloatingType(x.scalar_type()), op,
              ": expected a floating dtype (float16, bfloat16, float32, float64), got ",
              x.scalar_type());
  TORCH_CHECK(weight.size(1) == x.size(1), op, ": weight has ", weight.size(1),
              " input channels but x has ", x.size(1));
  TORCH_CHECK(weight.size(2) % 2 == 1 && weight.size(3) % 2 == 1, op,
              ": kernel sizes must be odd (the mask is centred), got ", weight.size(2), "x",
              weight.size(3));
  TORCH_CHECK(mask_type == "A" || mask_type == "B", op, ": mask_type must be 'A' or 'B', got '",
              mask_type, "'");
  TORCH_CHECK(dilation >= 1, op, ": dilation must be >= 1, got ", dilation);
  TORCH_CHECK(color_groups >= 1, op, ": color_groups must be >= 1, got ", color_groups);
  TORCH_CHECK(x.size(1) % color_groups == 0 && weight.size(0) % color_groups == 0, op,
              ": color_groups=", color_groups, " must divide both C_in (", x.size(1),
              ") and C_out (", weight.size(0), ")");
  if (bias.has_value() && bias->defined()) {
    TORCH_CHECK(bias->dim() == 1 && bias->size(0) == weight.size(0), op,
                ": bias must have shape [", weight.size(0), "], got ", bias->sizes());
    TORCH_CHECK(bias->scalar_type() == x.scalar_type() && bias->device() == x.device(), op,
                ": bias must match x in dtype and device, got ", bias->scalar_type(), " on ",
                bias->device(), " (x: ", x.scalar_type(), " on ", x.device(), ")");
  }
  MaskedConvGeometry g;
  g.batch = x.size(0);
  g.c_in = x.size(1);
  g.height = x.size(2);
  g.width = x.size(3);
  g.c_out = weight.size(0);
  g.kh = weight.size(2);
  g.kw = weight.size(3);
  g.dilation = dilation;
  g.groups = color_groups;
  g.mask_a = mask_type == "A";
  const int64_t before_centre = (g.kh / 2) * g.kw + g.kw / 2;
  // With colour groups mask 'A' still lets group g see groups < g at the centre.
  const bool centre = !g.mask_a || color_groups > 1;
  g.taps = before_centre + (centre ? 1 : 0);
  g.centre_masked = color_groups > 1;
  return g;
}

// [C_out, C_in] 0/1 mask of the centre tap: output group g sees input groups < g ('A') or <= g ('B').
inline at::Tensor centre_channel_mask(const MaskedConvGeometry& g, const at::TensorOptions& opts) {
  const auto idx = opts.dtype(at::kLong);
  const at::Tensor out_group = at::arange(g.c_out, idx).div(g.c_out / g.groups, "floor").unsqueeze(1);
  const at::Tensor in_group = at::arange(g.c_in, idx).div(g.c_in / g.groups, "floor").unsqueeze(0);
  return (g.mask_a ? in_group.lt(out_group) : in_group.le(out_group)).to(opts.dtype());
}

// The weights of the kept taps as a [C_out, C_in * taps] matrix (row-major over (c_in, tap)).
inline at::Tensor causal_weight(const at::Tensor& weight, const MaskedConvGeometry& g) {
  at::Tensor w = weight.reshape({g.c_out, g.c_in, g.kh * g.kw}).narrow(2, 0, g.taps).clone();
  if (g.centre_masked) w.select(2, g.taps - 1).mul_(centre_channel_mask(g, weight.options()));
  return w.reshape({g.c_out, g.k()});
}

// Scatters the gradient of the kept taps back into a full weight-shaped gradient (masked taps: 0).
inline at::Tensor full_weight_grad(const at::Tensor& grad_causal, const MaskedConvGeometry& g,
                                   const at::Tensor& weight) {
  at::Tensor grad = at::zeros({g.c_out, g.c_in, g.kh * g.kw}, weight.options());
  at::Tensor kept = grad.narrow(2, 0, g.taps);
  kept.copy_(grad_causal.reshape({g.c_out, g.c_in, g.taps}));
  if (g.centre_masked) kept.select(2, g.taps - 1).mul_(centre_channel_mask(g, weight.options()));
  return grad.view(weight.sizes());
}

inline void check_grad_out(const at::Tensor& grad_out, const MaskedConvGeometry& g,
                           const at::Tensor& x, const char* op) {
  TORCH_CHECK(grad_out.device() == x.device(), op, ": grad_out must be on x's device (", x.device(),
              "), got ", grad_out.device());
  TORCH_CHECK(at::isFloatingType(grad_out.scalar_type()), op,
              ": grad_out must have a floating dtype (float16, bfloat16, float32, float64), got ",
              grad_out.scalar_type());
  TORCH_CHECK(grad_out.dim() == 4 && grad_out.size(0) == g.batch && grad_out.size(1) == g.c_out &&
                  grad_out.size(2) == g.height && grad_out.size(3) == g.width,
              op, ": grad_out must have shape [", g.batch, ", ", g.c_out, ", ", g.height, ", ",
              g.width, "], got ", grad_out.sizes());
}

// Bytes of one tile's column buffer: `fallback`, or MMGEN_MASKED_CONV_TILE_BYTES when set (the tests
// set a small one so that one image spans many tiles).
inline int64_t column_tile_bytes(int64_t fallback) {
  const char* env = std::getenv("MMGEN_MASKED_CONV_TILE_BYTES");
  if (env == nullptr || *env == '\0') return fallback;
  char* end = nullptr;
  const long long bytes = std::strtoll(env, &end, 10);
  TORCH_CHECK(*end == '\0' && bytes > 0,
              "MMGEN_MASKED_CONV_TILE_BYTES must be a positive number of bytes, got '", env, "'");
  return bytes;
}

// Output pixels per tile when a pixel's column holds `rows` values of `elem_size` bytes: the tile's
// columns take at most max(budget, one pixel's column) bytes, whatever the image size. Whole image
// rows when at least one fits, else a part of a row.
inline int64_t tile_pixels(const MaskedConvGeometry& g, int64_t rows, int64_t elem_size,
                           int64_t budget_bytes) {
  const int64_t per_pixel = std::max<int64_t>(1, rows * elem_size);
  const int64_t fit = std::clamp<int64_t>(budget_bytes / per_pixel, 1, std::max<int64_t>(g.pixels(), 1));
  return fit >= g.width ? fit / g.width * g.width : fit;
}

}  // namespace mmgen
