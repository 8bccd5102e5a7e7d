// CPU kernels for mmgen::masked_conv2d and mmgen::_masked_conv2d_backward.
//
// Per sample and tile of output pixels (whole rows, or a part of a row when one row is too big, so
// the column buffer is bounded for any image): im2col over the causal taps only, then one GEMM with
// the kept weights (at::mm, MKL); tiles are sized to stay in L2. A kernel whose only kept tap is the
// centre (1x1) gathers nothing: its GEMMs read the image and grad_out in place. The input
// gradient gathers grad_out at the mirrored taps and is one GEMM too (K = C_out * taps), with no
// scatter. Samples run in parallel and each GEMM runs single-threaded inside the parallel region.
// The weight gradient is accumulated over fixed batch chunks and summed in chunk order, so it does
// not depend on the thread count. float16 / bfloat16 are computed in float32.
//
// The band path (float32, kernels of at least kBandMinRows rows and kBandMinChannels input channels):
// the kept taps lie in the kernel's top kh/2 + 1 rows, so the op is also one dense convolution of
// that band (masked taps zeroed) over x padded with kh/2 rows on top, run by ATen's convolution
// (oneDNN): 28 of 49 taps for a 7x7 'B' kernel. On x86 CPUs where MKL's GEMM runs AVX2 code and
// oneDNN's convolution AVX-512 (AMD EPYC), that beats the GEMM path for 5x5 and 7x7 kernels at 16 to
// 64 channels (fwd + bwd, batch 32, 28x28: 1.2-1.7x; there the GEMM path was 0.8-1.2x F.conv2d on
// the masked weight, the band path 1.3-1.5x); for 3x3 (a 2x3 band) oneDNN is slow and the GEMM path
// 1.6-1.8x F.conv2d; with one input channel (the first layer) the GEMM path is faster too.
// MMGEN_MASKED_CONV_PATH=gemm or band forces one (read at every call; auto or unset: the rule).
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/LegacyTypeDispatch.h>
#include <ATen/ops/addmm.h>
#include <ATen/ops/constant_pad_nd.h>
#include <ATen/ops/convolution.h>
#include <ATen/ops/convolution_backward.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/mm.h>
#include <ATen/ops/sum.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "ops/masked_conv2d.h"

namespace mmgen {
namespace {

using at::Tensor;

constexpr int64_t kWeightChunks = 16;          // batch chunks the weight gradient is summed over
constexpr int64_t kTileBytes = int64_t(1) << 20;  // column tile (1 MiB), so it stays in L2
constexpr int64_t kBandMinChannels = 16;         // the band path's least C_in (auto)
constexpr int64_t kBandMinRows = 5;              // and least kernel height (auto)

// Whether the band path (see the top of the file) runs for float32 data of geometry g.
bool use_band_path(const MaskedConvGeometry& g, const at::Tensor& x) {
  const char* env = std::getenv("MMGEN_MASKED_CONV_PATH");
  const std::string path = env != nullptr ? env : "";
  TORCH_CHECK(path.empty() || path == "auto" || path == "gemm" || path == "band",
              "MMGEN_MASKED_CONV_PATH must be auto, gemm or band, got '", path, "'");
  if (x.scalar_type() != at::kFloat || g.kh == 1) return false;  // no band to gain on
  if (path == "gemm" || path == "band") return path == "band";
  return g.c_in >= kBandMinChannels && g.kh >= kBandMinRows;
}

// The band's weight [C_out, C_in, kh / 2 + 1, kw]: the kept taps of `weight` (centre channel mask
// applied), zeros elsewhere. Contiguous: a narrowed view was copied again by every chunk's
// convolution.
at::Tensor band_weight(const at::Tensor& weight, const MaskedConvGeometry& g) {
  return full_weight_grad(causal_weight(weight, g), g, weight).narrow(2, 0, g.kh / 2 + 1).contiguous();
}

// x padded with (kh / 2) * dilation zero rows on top: the band reads rows above the image only.
at::Tensor band_input(const at::Tensor& x, const MaskedConvGeometry& g) {
  return at::constant_pad_nd(x, {0, 0, (g.kh / 2) * g.dilation, 0});
}

// The band path runs the batch in min(N, kWeightChunks) fixed chunks of samples, in parallel, each
// chunk one single-threaded ATen convolution (nested in the parallel region): oneDNN's own
// threading of the [kh / 2 + 1, kw] band scaled worse over 2 threads than the 7x7 convolution it
// replaces (1.56x vs 1.91x at batch 32), while its cost per sample hardly depends on the batch (1 to
// 32 within 7%). Fixed chunks also make the weight gradient (chunk sums added in chunk order)
// independent of the thread count. With more threads than chunks (a small batch, a big machine) it
// is one convolution of the whole batch, threaded by oneDNN. Calls fn(chunk, first sample, count).
//
// Inside the parallel region each worker tells OpenMP it has one thread (OneOmpThread): oneDNN
// plans its work by omp_get_max_threads() but runs nested regions on one thread, and its weight
// gradient then came out wrong at 2 threads and hung at 3 (measured).
class OneOmpThread {
 public:
  OneOmpThread() {
#ifdef _OPENMP
    if (omp_in_parallel()) {
      saved_ = omp_get_max_threads();
      omp_set_num_threads(1);
    }
#endif
  }
  ~OneOmpThread() {
#ifdef _OPENMP
    if (saved_ > 0) omp_set_num_threads(saved_);
#endif
  }
  OneOmpThread(const OneOmpThread&) = delete;
  OneOmpThread& operator=(const OneOmpThread&) = delete;

 private:
  int saved_ = 0;
};

// A clang build runs its parallel regions on LLVM's libomp while torch and oneDNN run on libgomp
// (Linux wheels): oneDNN would start a team of its own in every chunk (threads oversubscribed, the
// weight gradient's rounding depending on the thread count), so there it is one convolution.
int64_t band_chunks(const MaskedConvGeometry& g) {
#if defined(__clang__)
  (void)g;
  return 1;
#else
  const int64_t chunks = std::min(g.batch, kWeightChunks);
  return at::get_num_threads() <= chunks ? chunks : 1;
#endif
}

template <typename Fn>
void for_band_chunks(const MaskedConvGeometry& g, int64_t chunks, const Fn& fn) {
  at::parallel_for(0, chunks, 1, [&](int64_t c0, int64_t c1) {
    const OneOmpThread one_thread;
    for (int64_t c = c0; c < c1; ++c) {
      const int64_t n0 = c * g.batch / chunks, n1 = (c + 1) * g.batch / chunks;
      if (n1 > n0) fn(c, n0, n1 - n0);
    }
  });
}

at::Tensor band_forward(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                        const MaskedConvGeometry& g) {
  const int64_t d = g.dilation;
  const at::Tensor w = band_weight(weight, g);
  const std::optional<at::Tensor> b = bias.defined() ? std::optional<at::Tensor>(bias) : std::nullopt;
  const auto conv = [&](const at::Tensor& xs) {
    return at::convolution(band_input(xs, g), w, b, {1, 1}, {0, (g.kw / 2) * d}, {d, d}, false, {0, 0}, 1);
  };
  const int64_t chunks = band_chunks(g);
  if (chunks == 1) return conv(x);
  at::Tensor out = at::empty({g.batch, g.c_out, g.height, g.width}, x.options());
  for_band_chunks(g, chunks, [&](int64_t, int64_t n0, int64_t count) {
    out.narrow(0, n0, count).copy_(conv(x.narrow(0, n0, count)));
  });
  return out;
}

// (grad_x or undefined, grad of the kept taps [C_out, C_in, taps] or undefined).
std::pair<at::Tensor, at::Tensor> band_backward(const at::Tensor& grad_out, const at::Tensor& x,
                                                const at::Tensor& weight, const MaskedConvGeometry& g,
                                                bool need_x, bool need_w) {
  const int64_t d = g.dilation, chunks = band_chunks(g);
  const at::Tensor w = band_weight(weight, g);
  at::Tensor grad_x = need_x ? at::empty_like(x) : at::Tensor();
  std::vector<at::Tensor> partial(need_w ? chunks : 0);  // each chunk's weight gradient, as computed
  for_band_chunks(g, chunks, [&](int64_t c, int64_t n0, int64_t count) {
    auto grads = at::convolution_backward(grad_out.narrow(0, n0, count), band_input(x.narrow(0, n0, count), g),
                                          w, std::nullopt, {1, 1}, {0, (g.kw / 2) * d}, {d, d}, false,
                                          {0, 0}, 1, {need_x, need_w, false});
    if (need_x) grad_x.narrow(0, n0, count).copy_(std::get<0>(grads).narrow(2, (g.kh / 2) * d, g.height));
    if (need_w) partial[c] = std::get<1>(grads).contiguous();
  });
  at::Tensor grad_kept;
  if (need_w) {
    // added in chunk order into the first chunk's (a tensor of this call's own)
    for (int64_t c = 1; c < chunks; ++c) partial[0].add_(partial[c]);
    grad_kept = partial[0].view({g.c_out, g.c_in, -1}).narrow(2, 0, g.taps);
  }
  return {grad_x, grad_kept};
}

// Columns of output pixels [p0, p1) (raster order) of a [channels, H, W] image:
// cols[c * taps + t][p - p0] = src[c][h + sign * dy(t)][w + sign * dx(t)] at p = (h, w), 0 outside.
// sign = +1 gathers the inputs of the forward; sign = -1 gathers grad_out for the input gradient
// (the adjoint reads the same taps mirrored).
template <typename T>
void im2col(const T* src, T* cols, int64_t channels, const MaskedConvGeometry& g, int64_t p0,
            int64_t p1, int64_t sign) {
  const int64_t H = g.height, W = g.width, HW = g.pixels(), n = p1 - p0;
  for (int64_t t = 0; t < g.taps; ++t) {
    const int64_t dy = sign * g.dy(t), dx = sign * g.dx(t);
    const int64_t w0 = std::clamp<int64_t>(-dx, 0, W), w1 = std::clamp<int64_t>(W - dx, w0, W);
    // Pixels [begin, end) of the tile read a row inside the image; as a flat range they are one
    // shifted copy, except columns w < w0 or w >= w1, which wrap into the neighbouring rows and are
    // zeroed after.
    const int64_t begin = std::clamp<int64_t>(-dy * W, p0, p1);
    const int64_t end = std::clamp<int64_t>((H - dy) * W, begin, p1);
    const int64_t shift = dy * W + dx;  // pixel p reads src[p + shift]
    const int64_t copy_begin = std::clamp<int64_t>(-shift, begin, end);
    const int64_t copy_end = std::clamp<int64_t>(HW - shift, copy_begin, end);
    for (int64_t c = 0; c < channels; ++c) {
      const T* plane = src + c * HW;
      T* dst = cols + (c * g.taps + t) * n;
      std::fill(dst, dst + (copy_begin - p0), T(0));
      std::memcpy(dst + (copy_begin - p0), plane + copy_begin + shift,
                  sizeof(T) * (copy_end - copy_begin));
      std::fill(dst + (copy_end - p0), dst + n, T(0));
      if ((w0 > 0 || w1 < W) && end > begin) {
        const auto zero = [&](int64_t lo, int64_t hi) {
          if (lo < hi) std::fill(dst + (lo - p0), dst + (hi - p0), T(0));
        };
        for (int64_t row = begin / W * W; row < end; row += W) {
          zero(std::max(row, begin), std::min(row + w0, end));
          zero(std::max(row + w1, begin), std::min(row + W, end));
        }
      }
    }
  }
}

// A kernel whose only kept tap is the centre (1x1, mask "B" or colour groups): the columns are the
// image itself, so the GEMMs read it in place and nothing is gathered.
bool centre_only(const MaskedConvGeometry& g) { return g.taps == 1 && g.dy(0) == 0 && g.dx(0) == 0; }

// The [channels * taps, p1 - p0] columns of output pixels [p0, p1) of sample n of src
// ([N, channels, H, W]): src itself for a centre-only kernel, else gathered into cols (sign as in
// im2col).
template <typename T>
Tensor columns(const Tensor& src, const Tensor& cols, int64_t channels, const MaskedConvGeometry& g,
               int64_t n, int64_t p0, int64_t p1, int64_t sign) {
  const int64_t span = p1 - p0;
  if (centre_only(g)) return src.select(0, n).view({channels, g.pixels()}).narrow(1, p0, span);
  im2col(src.const_data_ptr<T>() + n * channels * g.pixels(), cols.mutable_data_ptr<T>(), channels, g,
         p0, p1, sign);
  return cols.narrow(0, 0, channels * g.taps * span).view({channels * g.taps, span});
}

bool reduced_precision(const Tensor& t) {
  return t.scalar_type() == at::kHalf || t.scalar_type() == at::kBFloat16;
}

Tensor masked_conv2d_forward_kernel(const Tensor& x_in, const Tensor& weight,
                                    const std::optional<Tensor>& bias,
                                    c10::string_view mask_type, int64_t dilation,
                                    int64_t color_groups) {
  const MaskedConvGeometry g = masked_conv_geometry(x_in, weight, bias, std::string(mask_type),
                                                    dilation, color_groups, "mmgen.ops.masked_conv2d");
  const at::AutoDispatchBelowADInplaceOrView below_autograd;  // inner ATen calls record no graph
  const bool has_bias = bias.has_value() && bias->defined();
  if (reduced_precision(x_in)) {
    const std::optional<Tensor> b = has_bias ? std::optional<Tensor>(bias->to(at::kFloat)) : std::nullopt;
    return masked_conv2d_forward_kernel(x_in.to(at::kFloat), weight.to(at::kFloat), b, mask_type,
                                        dilation, color_groups)
        .to(x_in.scalar_type());
  }
  // detach(): views of x are read by ATen calls on the worker threads of parallel_for, where the
  // dispatch-key guard above does not reach; a view that requires grad would go to autograd there.
  const Tensor x = x_in.contiguous().detach();
  if (x.numel() > 0 && use_band_path(g, x))
    return band_forward(x, weight.detach(), has_bias ? bias->detach() : Tensor(), g);
  const Tensor w = causal_weight(weight, g);
  const Tensor b = has_bias ? bias->reshape({g.c_out, 1}) : Tensor();
  Tensor out = at::empty({g.batch, g.c_out, g.height, g.width}, x.options());
  if (out.numel() == 0) return out;
  const bool in_place = centre_only(g);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "masked_conv2d", [&] {
    const int64_t pixels = tile_pixels(g, g.k(), sizeof(scalar_t), column_tile_bytes(kTileBytes));
    at::parallel_for(0, g.batch, 1, [&](int64_t n0, int64_t n1) {
      Tensor cols = in_place ? Tensor() : at::empty({g.k() * pixels}, x.options());
      for (int64_t n = n0; n < n1; ++n) {
        const Tensor out_n = out.select(0, n).view({g.c_out, g.pixels()});
        for (int64_t p0 = 0; p0 < g.pixels(); p0 += pixels) {
          const int64_t p1 = std::min(g.pixels(), p0 + pixels), span = p1 - p0;
          const Tensor x_cols = columns<scalar_t>(x, cols, g.c_in, g, n, p0, p1, 1);
          Tensor out_tile = out_n.narrow(1, p0, span);
          if (has_bias) {
            at::addmm_out(out_tile, b, w, x_cols);
          } else {
            at::mm_out(out_tile, w, x_cols);
          }
        }
      }
    });
  });
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
  if (reduced_precision(x_in)) {
    auto grads = masked_conv2d_backward_kernel(grad_out_in.to(at::kFloat), x_in.to(at::kFloat),
                                               weight.to(at::kFloat), mask_type, dilation,
                                               color_groups, output_mask);
    return {std::get<0>(grads).to(x_in.scalar_type()), std::get<1>(grads).to(x_in.scalar_type()),
            std::get<2>(grads).to(x_in.scalar_type())};
  }
  const Tensor x = x_in.contiguous().detach();  // detached: see the forward
  const Tensor grad_out = grad_out_in.to(x.scalar_type()).contiguous().detach();
  const bool need_x = output_mask[0], need_w = output_mask[1], need_b = output_mask[2];
  const Tensor none = at::empty({0}, x.options());
  if ((need_x || need_w) && x.numel() > 0 && use_band_path(g, x)) {
    auto [grad_x, grad_kept] = band_backward(grad_out, x, weight.detach(), g, need_x, need_w);
    return {need_x ? grad_x : none, need_w ? full_weight_grad(grad_kept, g, weight) : none,
            need_b ? grad_out.sum({0, 2, 3}) : none};
  }
  Tensor grad_x = need_x ? at::empty_like(x) : none;
  const int64_t chunks = std::min(g.batch, kWeightChunks);
  Tensor partial = need_w ? at::zeros({std::max<int64_t>(chunks, 1), g.c_out, g.k()}, x.options()) : none;
  // [C_in, C_out * taps]: the kept weights regrouped per input channel, for the input gradient.
  const Tensor w_in = need_x ? causal_weight(weight, g)
                                   .view({g.c_out, g.c_in, g.taps})
                                   .permute({1, 0, 2})
                                   .reshape({g.c_in, g.c_out * g.taps})
                             : none;
  if ((need_x || need_w) && g.batch > 0 && g.pixels() > 0) {
    AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "masked_conv2d_backward", [&] {
      const int64_t widest = std::max(g.c_in, g.c_out);
      const int64_t pixels =
          tile_pixels(g, widest * g.taps, sizeof(scalar_t), column_tile_bytes(kTileBytes));
      const bool in_place = centre_only(g);
      at::parallel_for(0, chunks, 1, [&](int64_t c0, int64_t c1) {
        Tensor cols = in_place ? Tensor() : at::empty({widest * g.taps * pixels}, x.options());
        for (int64_t chunk = c0; chunk < c1; ++chunk) {
          for (int64_t n = chunk * g.batch / chunks; n < (chunk + 1) * g.batch / chunks; ++n) {
            const Tensor go_mat = grad_out.select(0, n).view({g.c_out, g.pixels()});
            for (int64_t p0 = 0; p0 < g.pixels(); p0 += pixels) {
              const int64_t p1 = std::min(g.pixels(), p0 + pixels), span = p1 - p0;
              if (need_w) {
                const Tensor x_cols = columns<scalar_t>(x, cols, g.c_in, g, n, p0, p1, 1);
                partial.select(0, chunk).addmm_(go_mat.narrow(1, p0, span), x_cols.t());
              }
              if (need_x) {
                const Tensor go_cols = columns<scalar_t>(grad_out, cols, g.c_out, g, n, p0, p1, -1);
                Tensor grad_x_tile = grad_x.select(0, n).view({g.c_in, g.pixels()}).narrow(1, p0, span);
                at::mm_out(grad_x_tile, w_in, go_cols);
              }
            }
          }
        }
      });
    });
  } else if (need_x) {
    grad_x.zero_();
  }
  Tensor grad_w = need_w ? full_weight_grad(partial.sum(0), g, weight) : none;
  Tensor grad_b = need_b ? grad_out.sum({0, 2, 3}) : none;
  return {grad_x, grad_w, grad_b};
}

}  // namespace

TORCH_LIBRARY_IMPL(mmgen, CPU, m) {
  m.impl("masked_conv2d", &masked_conv2d_forward_kernel);
  m.impl("_masked_conv2d_backward", &masked_conv2d_backward_kernel);
}

}  // namespace mmgen
