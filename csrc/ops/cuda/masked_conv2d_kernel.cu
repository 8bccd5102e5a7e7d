// CUDA kernels for mmgen::masked_conv2d and mmgen::_masked_conv2d_backward.
//
// The work is split into tiles of (samples, output pixels) whose column buffer stays within a
// budget (256 MiB): several whole samples per tile while they fit, else a range of output pixels
// of one sample, so no image is too big. Per tile: im2col over the causal taps into columns
// [C_in * taps, samples * pixels] and one cuBLAS GEMM (at::mm) with the kept weights. The input
// gradient gathers grad_out at the mirrored taps (K = C_out * taps) and is one GEMM too: every
// tile writes its own pixels, no scatter, no atomics, deterministic. The weight gradient is
// accumulated over tiles in float32 (float64 for double) and rounded once at the end.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/core/LegacyTypeDispatch.h>
#include <ATen/cuda/CUDAContext.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/mm.h>
#include <ATen/ops/sum.h>
#include <ATen/ops/zeros.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "ops/masked_conv2d.h"

namespace mmgen {
namespace {

using at::Tensor;

constexpr int kThreads = 256;
constexpr int64_t kColumnBytes = int64_t(256) << 20;  // column buffer of one tile

// Kernel geometry passed by value.
struct Geo {
  int64_t height, width, kh, kw, dilation, taps;
  __device__ __forceinline__ int64_t dy(int64_t t) const { return (t / kw - kh / 2) * dilation; }
  __device__ __forceinline__ int64_t dx(int64_t t) const { return (t % kw - kw / 2) * dilation; }
};

Geo to_geo(const MaskedConvGeometry& g) {
  return Geo{g.height, g.width, g.kh, g.kw, g.dilation, g.taps};
}

// For the nb samples at src ([nb, channels, H, W]) and output pixels [p0, p0 + np):
// cols[c * taps + t][n * np + q] = src[n][c][p + sign * d(t)] with p = p0 + q, 0 outside the image.
// sign = +1 gathers the forward's inputs, -1 gathers grad_out for the input gradient.
template <typename T>
__global__ void im2col_kernel(const T* __restrict__ src, T* __restrict__ cols, Geo g,
                              int64_t channels, int64_t nb, int64_t p0, int64_t np, int64_t sign) {
  const int64_t hw = g.height * g.width;
  const int64_t total = channels * g.taps * nb * np;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t p = p0 + i % np;
    int64_t rest = i / np;
    const int64_t n = rest % nb;
    rest /= nb;
    const int64_t t = rest % g.taps;
    const int64_t c = rest / g.taps;
    const int64_t y = p / g.width + sign * g.dy(t);
    const int64_t xx = p % g.width + sign * g.dx(t);
    const bool inside = y >= 0 && y < g.height && xx >= 0 && xx < g.width;
    cols[i] = inside ? src[(n * channels + c) * hw + y * g.width + xx] : T(0);
  }
}

int64_t blocks_for(int64_t work) {
  const int64_t sms = at::cuda::getCurrentDeviceProperties()->multiProcessorCount;
  const int64_t want = (work + kThreads - 1) / kThreads;
  const int64_t cap = sms * 32;
  return want < 1 ? 1 : (want > cap ? cap : want);
}

// Columns [channels * taps, nb * np] of the tile (see im2col_kernel) of the [N, channels, H, W]
// tensor src, from sample n0.
template <typename T>
Tensor gather_columns(const Tensor& src, int64_t channels, const MaskedConvGeometry& g, int64_t n0,
                      int64_t nb, int64_t p0, int64_t np, int64_t sign) {
  Tensor cols = at::empty({channels * g.taps, nb * np}, src.options());
  const int64_t work = cols.numel();
  if (work == 0) return cols;
  im2col_kernel<T><<<blocks_for(work), kThreads, 0, at::cuda::getCurrentCUDAStream()>>>(
      src.const_data_ptr<T>() + n0 * channels * g.pixels(), cols.mutable_data_ptr<T>(), to_geo(g),
      channels, nb, p0, np, sign);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return cols;
}

// The [nb, channels, np] view of pixels [p0, p0 + np) of samples [n0, n0 + nb) of a contiguous
// [N, channels, H, W] tensor.
Tensor tile_of(const Tensor& t, int64_t channels, const MaskedConvGeometry& g, int64_t n0,
               int64_t nb, int64_t p0, int64_t np) {
  return t.narrow(0, n0, nb).view({nb, channels, g.pixels()}).narrow(2, p0, np);
}

// Calls fn(n0, nb, p0, np) for every tile, in order, when a pixel's columns hold `rows` values of
// elem_size bytes: whole samples while the buffer fits the budget, else pixel ranges of one sample.
template <typename F>
void for_each_tile(const MaskedConvGeometry& g, int64_t rows, int64_t elem_size, F fn) {
  const int64_t budget = column_tile_bytes(kColumnBytes);
  const int64_t np = tile_pixels(g, rows, elem_size, budget);
  const int64_t sample_bytes = std::max<int64_t>(1, rows * elem_size * g.pixels());
  const int64_t nb = np < g.pixels() ? 1 : std::clamp<int64_t>(budget / sample_bytes, 1, g.batch);
  for (int64_t n0 = 0; n0 < g.batch; n0 += nb) {
    const int64_t n = std::min(nb, g.batch - n0);
    for (int64_t p0 = 0; p0 < g.pixels(); p0 += np) fn(n0, n, p0, std::min(np, g.pixels() - p0));
  }
}

Tensor masked_conv2d_forward_kernel(const Tensor& x_in, const Tensor& weight,
                                    const std::optional<Tensor>& bias,
                                    c10::string_view mask_type, int64_t dilation,
                                    int64_t color_groups) {
  const MaskedConvGeometry g = masked_conv_geometry(x_in, weight, bias, std::string(mask_type),
                                                    dilation, color_groups, "mmgen.ops.masked_conv2d");
  const at::AutoDispatchBelowADInplaceOrView below_autograd;  // inner ATen calls record no graph
  const c10::cuda::CUDAGuard guard(x_in.device());
  const Tensor x = x_in.contiguous();
  const Tensor w = causal_weight(weight, g);
  Tensor out = at::empty({g.batch, g.c_out, g.height, g.width}, x.options());
  if (out.numel() == 0) return out;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "masked_conv2d", [&] {
    // per pixel: the gathered columns and the GEMM's output
    for_each_tile(g, std::max(g.k(), g.c_out), sizeof(scalar_t), [&](int64_t n0, int64_t nb, int64_t p0, int64_t np) {
      const Tensor cols = gather_columns<scalar_t>(x, g.c_in, g, n0, nb, p0, np, 1);
      const Tensor y = at::mm(w, cols).view({g.c_out, nb, np});
      tile_of(out, g.c_out, g, n0, nb, p0, np).copy_(y.permute({1, 0, 2}));
    });
  });
  if (bias.has_value() && bias->defined()) out.add_(bias->view({1, g.c_out, 1, 1}));
  return out;
}

std::tuple<Tensor, Tensor, Tensor> masked_conv2d_backward_kernel(
    const Tensor& grad_out_in, const Tensor& x_in, const Tensor& weight,
    c10::string_view mask_type, int64_t dilation, int64_t color_groups,
    std::array<bool, 3> output_mask) {
  const char* op = "mmgen.ops._masked_conv2d_backward";
  const MaskedConvGeometry g = masked_conv_geometry(x_in, weight, std::nullopt,
                                                    std::string(mask_type), dilation, color_groups, op);
  const at::AutoDispatchBelowADInplaceOrView below_autograd;
  check_grad_out(grad_out_in, g, x_in, op);
  const c10::cuda::CUDAGuard guard(x_in.device());
  const Tensor x = x_in.contiguous();
  const Tensor grad_out = grad_out_in.to(x.scalar_type()).contiguous();
  const bool need_x = output_mask[0], need_w = output_mask[1], need_b = output_mask[2];
  const Tensor none = at::empty({0}, x.options());
  Tensor grad_x = need_x ? at::empty_like(x) : none;
  // The weight gradient is accumulated over tiles in float32 (float64 for double).
  const auto acc_type = x.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  const bool reduced = x.scalar_type() != acc_type;
  Tensor grad_wc = need_w ? at::zeros({g.c_out, g.k()}, x.options().dtype(acc_type)) : none;
  // [C_in, C_out * taps]: the kept weights regrouped per input channel, for the input gradient.
  const Tensor w_in = need_x ? causal_weight(weight, g)
                                   .view({g.c_out, g.c_in, g.taps})
                                   .permute({1, 0, 2})
                                   .reshape({g.c_in, g.c_out * g.taps})
                             : none;
  if ((need_x || need_w) && g.batch > 0 && g.pixels() > 0) {
    // per pixel: the gathered columns (x's or grad_out's), grad_out's copy and the GEMM's output
    const int64_t rows = std::max({need_w ? g.k() : 0, need_x ? g.c_out * g.taps : 0, g.c_out, g.c_in});
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "masked_conv2d_backward", [&] {
      for_each_tile(g, rows, sizeof(scalar_t), [&](int64_t n0, int64_t nb, int64_t p0, int64_t np) {
        if (need_w) {
          const Tensor go = tile_of(grad_out, g.c_out, g, n0, nb, p0, np)
                                .permute({1, 0, 2})
                                .reshape({g.c_out, nb * np});
          const Tensor cols = gather_columns<scalar_t>(x, g.c_in, g, n0, nb, p0, np, 1);
          if (reduced) {
            grad_wc.add_(at::mm(go, cols.t(), acc_type));  // float32 products, no rounding per tile
          } else {
            grad_wc.addmm_(go, cols.t());
          }
        }
        if (need_x) {
          Tensor grad_x_tile = tile_of(grad_x, g.c_in, g, n0, nb, p0, np);
          if (g.taps == 0) {
            grad_x_tile.zero_();
            return;
          }
          const Tensor go_cols = gather_columns<scalar_t>(grad_out, g.c_out, g, n0, nb, p0, np, -1);
          grad_x_tile.copy_(at::mm(w_in, go_cols).view({g.c_in, nb, np}).permute({1, 0, 2}));
        }
      });
    });
  } else if (need_x) {
    grad_x.zero_();
  }
  Tensor grad_w = need_w ? full_weight_grad(grad_wc.to(x.scalar_type()), g, weight) : none;
  Tensor grad_b = need_b ? grad_out.sum({0, 2, 3}, false, acc_type).to(x.scalar_type()) : none;
  return {grad_x, grad_w, grad_b};
}

}  // namespace

TORCH_LIBRARY_IMPL(mmgen, CUDA, m) {
  m.impl("masked_conv2d", &masked_conv2d_forward_kernel);
  m.impl("_masked_conv2d_backward", &masked_conv2d_backward_kernel);
}

}  // namespace mmgen
