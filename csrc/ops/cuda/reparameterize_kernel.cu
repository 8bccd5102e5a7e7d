// CUDA kernels for mmgen::reparameterize, mmgen::_reparameterize_backward and mmgen::gaussian_kl.
//
// Each thread owns quads of 4 consecutive elements (one Philox call gives their 4 normals), loaded
// with one vector load when aligned. The per-sample KL is reduced over fixed segments of a row by
// groups of lanes sized to the row (several short rows per warp, a full warp per segment of a long
// row), and the segments of a long row are then summed by a tree reduction; the order is fixed by
// the shape, so it is deterministic. The noise of an element depends only on the seed, the offset
// and its flat index. The generator offset comes from philox_cuda_state and is unpacked on the
// device, so the ops are safe under CUDA graphs.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/core/Generator.h>
#include <ATen/cuda/CUDAContext.h>
#include <ATen/cuda/CUDAGeneratorImpl.h>
#include <ATen/cuda/PhiloxUtils.cuh>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "ops/philox.h"
#include "ops/reparameterize.h"
#include "ops/rng.h"

namespace mmgen {
namespace {

using at::Tensor;

constexpr int kThreads = 256;
constexpr int kWarp = 32;
constexpr int64_t kQuadsPerLane = 4;                     // quads per lane per segment of a long row
constexpr int64_t kSegment = kWarp * 4 * kQuadsPerLane;  // elements of a long row reduced by one warp

__device__ __forceinline__ float exp_op(float x) { return philox::exp_f32(x); }
__device__ __forceinline__ double exp_op(double x) { return exp(x); }

__device__ __forceinline__ void normals4(uint64_t seed, uint64_t offset, uint64_t group, float o[4]) {
  philox::box_muller_f32(philox::random_group(seed, offset, group), o);
}
__device__ __forceinline__ void normals4(uint64_t seed, uint64_t offset, uint64_t group, double o[4]) {
  philox::box_muller_f64(philox::random_group(seed, offset, group), o);
}

// The normals of elements e0 .. e0+3 (which may straddle two Philox groups when e0 % 4 != 0).
template <typename A>
__device__ __forceinline__ void normals_at(uint64_t seed, uint64_t offset, int64_t e0, A eps[4]) {
  A a[4];
  normals4(seed, offset, static_cast<uint64_t>(e0 >> 2), a);
  const int lane = static_cast<int>(e0 & 3);
  if (lane == 0) {
#pragma unroll
    for (int k = 0; k < 4; ++k) eps[k] = a[k];
    return;
  }
  A b[4];
  normals4(seed, offset, static_cast<uint64_t>((e0 >> 2) + 1), b);
#pragma unroll
  for (int k = 0; k < 4; ++k) eps[k] = lane + k < 4 ? a[lane + k] : b[lane + k - 4];
}

template <typename T>
struct alignas(sizeof(T) * 4) Quad {
  T v[4];
};

template <typename T, typename A>
__device__ __forceinline__ void load4(const T* p, int n, bool vec, A out[4]) {
  if (vec) {
    const Quad<T> q = *reinterpret_cast<const Quad<T>*>(p);
#pragma unroll
    for (int k = 0; k < 4; ++k) out[k] = static_cast<A>(q.v[k]);
  } else {
#pragma unroll
    for (int k = 0; k < 4; ++k) out[k] = k < n ? static_cast<A>(p[k]) : A(0);
  }
}

template <typename T, typename A>
__device__ __forceinline__ void store4(T* p, int n, bool vec, const A in[4]) {
  if (vec) {
    Quad<T> q;
#pragma unroll
    for (int k = 0; k < 4; ++k) q.v[k] = static_cast<T>(in[k]);
    *reinterpret_cast<Quad<T>*>(p) = q;
  } else {
#pragma unroll
    for (int k = 0; k < 4; ++k)
      if (k < n) p[k] = static_cast<T>(in[k]);
  }
}

template <typename T>
bool aligned4(const void* p) {
  return reinterpret_cast<uintptr_t>(p) % (sizeof(T) * 4) == 0;
}

__device__ __forceinline__ void record_rng(at::PhiloxCudaState rng, int64_t* rng_state) {
  const auto seeds = at::cuda::philox::unpack(rng);
  rng_state[0] = static_cast<int64_t>(std::get<0>(seeds));
  rng_state[1] = static_cast<int64_t>(std::get<1>(seeds));
}

__global__ void record_rng_kernel(at::PhiloxCudaState rng, int64_t* rng_state) {
  record_rng(rng, rng_state);
}

// z only: a flat grid-stride loop over quads.
template <typename T>
__global__ void forward_flat_kernel(const T* __restrict__ mu, const T* __restrict__ lv,
                                    T* __restrict__ z, int64_t numel, bool vec,
                                    at::PhiloxCudaState rng, int64_t* rng_state) {
  using A = at::opmath_type<T>;
  const auto seeds = at::cuda::philox::unpack(rng);
  const uint64_t seed = std::get<0>(seeds), offset = std::get<1>(seeds);
  if (blockIdx.x == 0 && threadIdx.x == 0) record_rng(rng, rng_state);
  const int64_t quads = (numel + 3) / 4;
  for (int64_t q = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; q < quads;
       q += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t e0 = 4 * q;
    const int n = static_cast<int>(numel - e0 < 4 ? numel - e0 : 4);
    const bool v = vec && n == 4;
    A m[4], l[4], eps[4], out[4];
    load4(mu + e0, n, v, m);
    load4(lv + e0, n, v, l);
    normals_at(seed, offset, e0, eps);
#pragma unroll
    for (int k = 0; k < 4; ++k) out[k] = m[k] + exp_op(A(0.5) * l[k]) * eps[k];
    store4(z + e0, n, v, out);
  }
}

// A group of `group` lanes (a power of two, at most a warp) per segment of seg_len elements of one
// row: optional z, and the KL sum of the segment, reduced by shuffles within the group. With one
// segment per row the sum is the row's KL (written to kl), else a partial sum (to partial).
template <typename T, bool WITH_Z>
__global__ void segment_kernel(const T* __restrict__ mu, const T* __restrict__ lv,
                               T* __restrict__ z, at::opmath_type<T>* __restrict__ partial,
                               T* __restrict__ kl, int64_t rows, int64_t cols, int64_t segs_per_row,
                               int64_t seg_len, int group, bool vec, at::PhiloxCudaState rng,
                               int64_t* rng_state) {
  using A = at::opmath_type<T>;
  uint64_t seed = 0, offset = 0;
  if constexpr (WITH_Z) {
    const auto seeds = at::cuda::philox::unpack(rng);
    seed = std::get<0>(seeds);
    offset = std::get<1>(seeds);
    if (blockIdx.x == 0 && threadIdx.x == 0) record_rng(rng, rng_state);
  }
  const int lane = threadIdx.x % group;
  const int64_t seg = (blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x) / group;
  const bool active = seg < rows * segs_per_row;  // every lane takes part in the shuffles below
  const int64_t row = seg / segs_per_row;
  A acc = 0;
  if (active) {
    const int64_t c_begin = (seg % segs_per_row) * seg_len;
    const int64_t c_end = min(cols, c_begin + seg_len);
    const bool v = vec && (cols % 4 == 0);
    for (int64_t c = c_begin + 4 * lane; c < c_end; c += 4 * group) {
      const int64_t e0 = row * cols + c;
      const int n = static_cast<int>(c_end - c < 4 ? c_end - c : 4);
      const bool vq = v && n == 4;
      A m[4], l[4];
      load4(mu + e0, n, vq, m);
      load4(lv + e0, n, vq, l);
      A sd[4];
#pragma unroll
      for (int k = 0; k < 4; ++k) sd[k] = exp_op(A(0.5) * l[k]);
      if constexpr (WITH_Z) {
        A eps[4], out[4];
        normals_at(seed, offset, e0, eps);
#pragma unroll
        for (int k = 0; k < 4; ++k) out[k] = m[k] + sd[k] * eps[k];
        store4(z + e0, n, vq, out);
      }
#pragma unroll
      for (int k = 0; k < 4; ++k)
        if (k < n) acc += sd[k] * sd[k] + m[k] * m[k] - A(1) - l[k];
    }
  }
  for (int delta = group / 2; delta > 0; delta /= 2) acc += __shfl_down_sync(0xffffffffu, acc, delta, group);
  if (active && lane == 0) {
    if (segs_per_row == 1) kl[row] = static_cast<T>(A(0.5) * acc);
    else partial[seg] = acc;
  }
}

// kl[r] = sum of the segs_per_row partial sums of row r / 2, by threads_per_row threads per row (a
// power of two up to the block): strided sums, then a shuffle tree within each warp and, for more
// than a warp per row, the warps' sums in order.
template <typename T>
__global__ void sum_rows_kernel(const at::opmath_type<T>* __restrict__ partial, T* __restrict__ kl,
                                int64_t rows, int64_t segs_per_row, int threads_per_row) {
  using A = at::opmath_type<T>;
  __shared__ A warp_sums[kThreads / kWarp];
  const int t = threadIdx.x % threads_per_row;
  const int64_t row = blockIdx.x * static_cast<int64_t>(kThreads / threads_per_row) +
                      threadIdx.x / threads_per_row;
  A s = 0;
  if (row < rows) {
    for (int64_t k = t; k < segs_per_row; k += threads_per_row) s += partial[row * segs_per_row + k];
  }
  const int width = threads_per_row < kWarp ? threads_per_row : kWarp;
  for (int delta = width / 2; delta > 0; delta /= 2) s += __shfl_down_sync(0xffffffffu, s, delta, width);
  if (threads_per_row > kWarp) {  // the same for the whole block
    if (threadIdx.x % kWarp == 0) warp_sums[threadIdx.x / kWarp] = s;
    __syncthreads();
    if (t == 0) {
      s = 0;
      for (int w = 0; w < threads_per_row / kWarp; ++w) s += warp_sums[threadIdx.x / kWarp + w];
    }
  }
  if (row < rows && t == 0) kl[row] = static_cast<T>(A(0.5) * s);
}

template <typename T>
__global__ void backward_kernel(const T* __restrict__ gz, const T* __restrict__ gk,
                                const T* __restrict__ mu, const T* __restrict__ lv,
                                T* __restrict__ gmu, T* __restrict__ glv, int64_t numel,
                                int64_t cols, bool vec, const int64_t* __restrict__ rng_state) {
  using A = at::opmath_type<T>;
  uint64_t seed = 0, offset = 0;
  if (gz != nullptr) {
    seed = static_cast<uint64_t>(rng_state[0]);
    offset = static_cast<uint64_t>(rng_state[1]);
  }
  const int64_t quads = (numel + 3) / 4;
  for (int64_t q = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; q < quads;
       q += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t e0 = 4 * q;
    const int n = static_cast<int>(numel - e0 < 4 ? numel - e0 : 4);
    const bool v = vec && n == 4;
    A m[4], l[4], g[4] = {0, 0, 0, 0}, eps[4] = {0, 0, 0, 0}, k[4] = {0, 0, 0, 0};
    A out_mu[4], out_lv[4];
    load4(mu + e0, n, v, m);
    load4(lv + e0, n, v, l);
    if (gz != nullptr) {
      load4(gz + e0, n, v, g);
      normals_at(seed, offset, e0, eps);
    }
    if (gk != nullptr) {
#pragma unroll
      for (int j = 0; j < 4; ++j) k[j] = j < n ? static_cast<A>(gk[(e0 + j) / cols]) : A(0);
    }
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const A sd = exp_op(A(0.5) * l[j]);
      out_mu[j] = g[j] + k[j] * m[j];
      out_lv[j] = A(0.5) * (g[j] * eps[j] * sd + k[j] * (sd * sd - A(1)));
    }
    if (gmu != nullptr) store4(gmu + e0, n, v, out_mu);
    store4(glv + e0, n, v, out_lv);
  }
}

int64_t grid_for(int64_t work_items) {
  const int64_t sms = at::cuda::getCurrentDeviceProperties()->multiProcessorCount;
  return std::max<int64_t>(1, std::min<int64_t>((work_items + kThreads - 1) / kThreads, sms * 32));
}

int next_pow2(int64_t n) {
  int p = 1;
  while (p < n) p *= 2;
  return p;
}

// KL (and z when WITH_Z) of a [rows, cols] array into kl [rows]. A row of up to a warp of quads is
// one segment of a group of next_pow2(quads) lanes (mu[4096, 16]: 4 lanes per row, 8 rows per warp);
// a longer row is cut into kSegment segments of a full warp, summed by sum_rows_kernel.
template <typename T, bool WITH_Z>
void launch_segments(const Tensor& mu, const Tensor& lv, Tensor* z, Tensor& kl,
                     at::PhiloxCudaState rng, int64_t* rng_state, bool vec) {
  using A = at::opmath_type<T>;
  const int64_t rows = rows_and_cols(mu).first, cols = rows_and_cols(mu).second;
  const int64_t quads = (cols + 3) / 4;
  const bool short_rows = quads <= kWarp;
  const int group = short_rows ? next_pow2(quads) : kWarp;
  const int64_t seg_len = short_rows ? cols : kSegment;
  const int64_t segs_per_row = short_rows ? 1 : (cols + kSegment - 1) / kSegment;
  Tensor partial = at::empty({segs_per_row > 1 ? rows * segs_per_row : 0},
                             mu.options().dtype(std::is_same_v<A, double> ? at::kDouble : at::kFloat));
  auto stream = at::cuda::getCurrentCUDAStream();
  const int64_t blocks = (rows * segs_per_row * group + kThreads - 1) / kThreads;
  segment_kernel<T, WITH_Z><<<blocks, kThreads, 0, stream>>>(
      mu.const_data_ptr<T>(), lv.const_data_ptr<T>(), z ? z->mutable_data_ptr<T>() : nullptr,
      segs_per_row > 1 ? partial.mutable_data_ptr<A>() : nullptr, kl.mutable_data_ptr<T>(), rows, cols,
      segs_per_row, seg_len, group, vec, rng, rng_state);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  if (segs_per_row > 1) {
    const int threads_per_row = std::min(kThreads, next_pow2(segs_per_row));
    const int64_t rows_per_block = kThreads / threads_per_row;
    sum_rows_kernel<T><<<(rows + rows_per_block - 1) / rows_per_block, kThreads, 0, stream>>>(
        partial.const_data_ptr<A>(), kl.mutable_data_ptr<T>(), rows, segs_per_row, threads_per_row);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
}

std::tuple<Tensor, Tensor, Tensor> reparameterize_forward_kernel(
    const Tensor& mu_in, const Tensor& logvar_in, const std::optional<at::Generator>& generator,
    bool return_kl) {
  check_gaussian_inputs(mu_in, logvar_in, "mmgen.ops.reparameterize");
  check_generator_device(generator, mu_in.device(), "mmgen.ops.reparameterize");
  const c10::cuda::CUDAGuard guard(mu_in.device());
  const Tensor mu = mu_in.contiguous();
  const Tensor logvar = logvar_in.contiguous();
  const int64_t rows = rows_and_cols(mu).first, cols = rows_and_cols(mu).second;
  auto* gen = at::get_generator_or_default<at::CUDAGeneratorImpl>(
      generator, at::cuda::detail::getDefaultCUDAGenerator(mu.device().index()));
  at::PhiloxCudaState rng;
  {
    std::lock_guard<std::mutex> lock(gen->mutex_);
    rng = gen->philox_cuda_state(philox::kOffsetIncrement);
  }
  Tensor rng_state = at::empty({2}, mu.options().dtype(at::kLong));
  Tensor z = at::empty_like(mu);
  Tensor kl = at::empty({return_kl ? rows : 0}, mu.options());
  int64_t* rs = rng_state.mutable_data_ptr<int64_t>();
  auto stream = at::cuda::getCurrentCUDAStream();
  if (mu.numel() == 0) {
    record_rng_kernel<<<1, 1, 0, stream>>>(rng, rs);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    if (return_kl) kl.zero_();
    return {z, kl, rng_state};
  }
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, mu.scalar_type(), "reparameterize", [&] {
    const bool vec = aligned4<scalar_t>(mu.const_data_ptr()) &&
                     aligned4<scalar_t>(logvar.const_data_ptr()) && aligned4<scalar_t>(z.const_data_ptr());
    if (return_kl) {
      launch_segments<scalar_t, true>(mu, logvar, &z, kl, rng, rs, vec);
    } else {
      const int64_t quads = (mu.numel() + 3) / 4;
      forward_flat_kernel<scalar_t><<<grid_for(quads), kThreads, 0, stream>>>(
          mu.const_data_ptr<scalar_t>(), logvar.const_data_ptr<scalar_t>(),
          z.mutable_data_ptr<scalar_t>(), mu.numel(), vec, rng, rs);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
  });
  return {z, kl, rng_state};
}

std::tuple<Tensor, Tensor> reparameterize_backward_kernel(const std::optional<Tensor>& grad_z,
                                                          const std::optional<Tensor>& grad_kl,
                                                          const Tensor& mu_in,
                                                          const Tensor& logvar_in,
                                                          const Tensor& rng_state,
                                                          bool need_grad_mu) {
  const char* op = "mmgen.ops._reparameterize_backward";
  check_gaussian_inputs(mu_in, logvar_in, op);
  check_reparameterize_grads(grad_z, grad_kl, mu_in, rng_state, op);
  const c10::cuda::CUDAGuard guard(mu_in.device());
  const Tensor mu = mu_in.contiguous();
  const Tensor logvar = logvar_in.contiguous();
  const int64_t cols = rows_and_cols(mu).second;
  const bool has_gz = grad_z.has_value() && grad_z->defined();
  const bool has_gk = grad_kl.has_value() && grad_kl->defined();
  Tensor gz, gk, state;
  if (has_gz) {
    gz = grad_z->to(mu.scalar_type()).contiguous();
    state = rng_state.to(mu.device()).contiguous();
  }
  if (has_gk) gk = grad_kl->to(mu.scalar_type()).contiguous();
  // without need_grad_mu, grad_mu is an empty tensor (the caller has it: grad_z when no grad_kl)
  Tensor grad_mu = need_grad_mu ? at::empty_like(mu) : at::empty({0}, mu.options());
  Tensor grad_logvar = at::empty_like(mu);
  if ((!has_gz && !has_gk) || mu.numel() == 0) return {grad_mu.zero_(), grad_logvar.zero_()};
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, mu.scalar_type(), "reparameterize_backward", [&] {
    const bool vec = aligned4<scalar_t>(mu.const_data_ptr()) &&
                     aligned4<scalar_t>(logvar.const_data_ptr()) &&
                     (!need_grad_mu || aligned4<scalar_t>(grad_mu.const_data_ptr())) &&
                     aligned4<scalar_t>(grad_logvar.const_data_ptr()) &&
                     (!has_gz || aligned4<scalar_t>(gz.const_data_ptr()));
    const int64_t quads = (mu.numel() + 3) / 4;
    backward_kernel<scalar_t><<<grid_for(quads), kThreads, 0, at::cuda::getCurrentCUDAStream()>>>(
        has_gz ? gz.const_data_ptr<scalar_t>() : nullptr,
        has_gk ? gk.const_data_ptr<scalar_t>() : nullptr, mu.const_data_ptr<scalar_t>(),
        logvar.const_data_ptr<scalar_t>(), need_grad_mu ? grad_mu.mutable_data_ptr<scalar_t>() : nullptr,
        grad_logvar.mutable_data_ptr<scalar_t>(), mu.numel(), cols, vec,
        has_gz ? state.const_data_ptr<int64_t>() : nullptr);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {grad_mu, grad_logvar};
}

Tensor gaussian_kl_kernel(const Tensor& mu_in, const Tensor& logvar_in) {
  check_gaussian_inputs(mu_in, logvar_in, "mmgen.ops.gaussian_kl");
  const c10::cuda::CUDAGuard guard(mu_in.device());
  const Tensor mu = mu_in.contiguous();
  const Tensor logvar = logvar_in.contiguous();
  Tensor kl = at::empty({mu.size(0)}, mu.options());
  if (mu.numel() == 0) return kl.zero_();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, mu.scalar_type(), "gaussian_kl", [&] {
    const bool vec = aligned4<scalar_t>(mu.const_data_ptr()) && aligned4<scalar_t>(logvar.const_data_ptr());
    launch_segments<scalar_t, false>(mu, logvar, nullptr, kl, at::PhiloxCudaState(), nullptr, vec);
  });
  return kl;
}

}  // namespace

TORCH_LIBRARY_IMPL(mmgen, CUDA, m) {
  m.impl("reparameterize", &reparameterize_forward_kernel);
  m.impl("_reparameterize_backward", &reparameterize_backward_kernel);
  m.impl("gaussian_kl", &gaussian_kl_kernel);
}

}  // namespace mmgen
