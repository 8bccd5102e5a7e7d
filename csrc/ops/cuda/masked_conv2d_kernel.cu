// CUDA kernels for mmgen::masked_conv2d and mmgen::_masked_conv2d_backward.
//
// The batch is processed in chunks: im2col over the causal taps of a chunk into columns
// [C_in * taps, chunk * H * W], one cuBLAS GEMM (at::mm) with the kept weights, and for the input
// gradient a gather-style col2im (each input element sums its taps; no atomics, deterministic).
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
constexpr int64_t kColumnBudget = int64_t(1) << 26;  // elements of the column buffer per chunk

// Kernel geometry passed by value.
struct Geo {
  int64_t c_in, height, width, kh, kw, dilation, taps;
  __device__ __forceinline__ int64_t dy(int64_t t) const { return (t / kw - kh / 2) * dilation; }
  __device__ __forceinline__ int64_t dx(int64_t t) const { return (t % kw - kw / 2) * dilation; }
};

Geo to_geo(const MaskedConvGeometry& g) {
  return Geo{g.c_in, g.height, g.width, g.kh, g.kw, g.dilation, g.taps};
}

// cols[(c * taps + t)][n * HW + p] = x[n][c][h + dy(t)][w + dx(t)] for the nb samples at x.
template <typename T>
__global__ void im2col_kernel(const T* __restrict__ x, T* __restrict__ cols, Geo g, int64_t nb) {
  const int64_t hw = g.height * g.width;
  const int64_t total = g.c_in * g.taps * nb * hw;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t p = i % hw;
    int64_t rest = i / hw;
    const int64_t n = rest % nb;
    rest /= nb;
    const int64_t t = rest % g.taps;
    const int64_t c = rest / g.taps;
    const int64_t y = p / g.width + g.dy(t);
    const int64_t xx = p % g.width + g.dx(t);
    const bool inside = y >= 0 && y < g.height && xx >= 0 && xx < g.width;
    cols[i] = inside ? x[((n * g.c_in + c) * g.height + y) * g.width + xx] : T(0);
  }
}

// grad_x[n][c][y][xx] = sum_t gcols[(c * taps + t)][n * HW + (y - dy(t)) * W + (xx - dx(t))].
template <typename T>
__global__ void col2im_kernel(const T* __restrict__ gcols, T* __restrict__ grad_x, Geo g, int64_t nb) {
  using A = at::opmath_type<T>;
  const int64_t hw = g.height * g.width;
  const int64_t total = nb * g.c_in * hw;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t p = i % hw;
    const int64_t c = (i / hw) % g.c_in;
    const int64_t n = i / (hw * g.c_in);
    const int64_t y = p / g.width, xx = p % g.width;
    A acc = 0;
    for (int64_t t = 0; t < g.taps; ++t) {
      const int64_t h = y - g.dy(t), w = xx - g.dx(t);
      if (h >= 0 && h < g.height && w >= 0 && w < g.width)
        acc += static_cast<A>(gcols[(c * g.taps + t) * nb * hw + n * hw + h * g.width + w]);
    }
    grad_x[i] = static_cast<T>(acc);
  }
}

int64_t blocks_for(int64_t work) {
  const int64_t sms = at::cuda::getCurrentDeviceProperties()->multiProcessorCount;
  const int64_t want = (work + kThreads - 1) / kThreads;
  const int64_t cap = sms * 32;
  return want < 1 ? 1 : (want > cap ? cap : want);
}

template <typename T>
void launch_im2col(const Tensor& x_chunk, Tensor& cols, const MaskedConvGeometry& g, int64_t nb) {
  const int64_t work = cols.numel();
  if (work == 0) return;
  im2col_kernel<T><<<blocks_for(work), kThreads, 0, at::cuda::getCurrentCUDAStream()>>>(
      x_chunk.const_data_ptr<T>(), cols.mutable_data_ptr<T>(), to_geo(g), nb);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

int64_t chunk_size(const MaskedConvGeometry& g) {
  const int64_t per_sample = g.k() * g.pixels();
  const int64_t nb = per_sample > 0 ? kColumnBudget / per_sample : g.batch;
  return nb < 1 ? 1 : (nb > g.batch ? g.batch : nb);
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
  const int64_t nb_max = chunk_size(g);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "masked_conv2d", [&] {
    for (int64_t n0 = 0; n0 < g.batch; n0 += nb_max) {
      const int64_t nb = g.batch - n0 < nb_max ? g.batch - n0 : nb_max;
      Tensor cols = at::empty({g.k(), nb * g.pixels()}, x.options());
      launch_im2col<scalar_t>(x.narrow(0, n0, nb), cols, g, nb);
      const Tensor y = at::mm(w, cols).view({g.c_out, nb, g.height, g.width});
      out.narrow(0, n0, nb).copy_(y.permute({1, 0, 2, 3}));
    }
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
  check_grad_out(grad_out_in, g, op);
  const c10::cuda::CUDAGuard guard(x_in.device());
  const Tensor x = x_in.contiguous();
  const Tensor grad_out = grad_out_in.to(x.scalar_type()).contiguous();
  const bool need_x = output_mask[0], need_w = output_mask[1], need_b = output_mask[2];
  const Tensor none = at::empty({0}, x.options());
  Tensor grad_x = need_x ? at::empty_like(x) : none;
  // The weight gradient is accumulated over chunks in float32 (float64 for double).
  const auto acc_type = x.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  Tensor grad_wc = need_w ? at::zeros({g.c_out, g.k()}, x.options().dtype(acc_type)) : none;
  const Tensor w_t = need_x ? causal_weight(weight, g).t() : none;
  if ((need_x || need_w) && g.batch > 0 && g.pixels() > 0) {
    const int64_t nb_max = chunk_size(g);
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "masked_conv2d_backward", [&] {
      for (int64_t n0 = 0; n0 < g.batch; n0 += nb_max) {
        const int64_t nb = g.batch - n0 < nb_max ? g.batch - n0 : nb_max;
        const Tensor go = grad_out.narrow(0, n0, nb).permute({1, 0, 2, 3}).reshape({g.c_out, nb * g.pixels()});
        Tensor cols = at::empty({g.k(), nb * g.pixels()}, x.options());
        if (need_w) {
          launch_im2col<scalar_t>(x.narrow(0, n0, nb), cols, g, nb);
          grad_wc.add_(at::mm(go, cols.t()));
        }
        if (need_x) {
          if (g.k() == 0) {
            grad_x.narrow(0, n0, nb).zero_();
            continue;
          }
          at::mm_out(cols, w_t, go);
          const int64_t work = nb * g.c_in * g.pixels();
          col2im_kernel<scalar_t><<<blocks_for(work), kThreads, 0, at::cuda::getCurrentCUDAStream()>>>(
              cols.const_data_ptr<scalar_t>(), grad_x.mutable_data_ptr<scalar_t>() + n0 * g.c_in * g.pixels(),
              to_geo(g), nb);
          C10_CUDA_KERNEL_LAUNCH_CHECK();
        }
      }
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
