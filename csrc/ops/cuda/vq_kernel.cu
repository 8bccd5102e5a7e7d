// CUDA kernels for mmgen::vq_nearest, mmgen::vector_quantize, mmgen::_vector_quantize_backward and
// mmgen::vq_ema_stats.
//
// Nearest code: each block owns kBM rows of x and walks the codebook in tiles of kBN codes; x and
// code tiles of kBK features are staged in shared memory, every thread accumulates a kTM x kTN
// register tile of dot products and keeps a running (distance, index) minimum per row, which the
// 16 threads sharing a row reduce with warp shuffles at the end. Distances are ||e||^2 - 2 x.e
// (code norms precomputed); a strictly smaller distance wins and threads see their codes in
// increasing order, so ties go to the lowest index. sqdist is recomputed as ||x - e||^2 directly.
//
// Segmented sums (codebook gradient, EMA statistics): rows are stably sorted by code and the
// sorted list is cut into chunks of R = max(64, sqrt(N)) rows. A piece is the rows of one code in
// one chunk; one block sums each piece (in row order), then one block per code sums its pieces (in
// chunk order). So a code that holds every row (a collapsed codebook) is summed by N / R blocks,
// nothing waits on one block walking N rows, and the result depends only on the input.
// Code indices are range-checked on the host before any launch.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/cuda/CUDAContext.h>
#include <ATen/cuda/CUDAGraphsUtils.cuh>
#include <ATen/ops/arange.h>
#include <ATen/ops/cumsum.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/where.h>
#include <ATen/ops/searchsorted.h>
#include <ATen/ops/sort.h>
#include <ATen/ops/zeros.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>

#include "ops/vq.h"

namespace mmgen {
namespace {

using at::Tensor;

constexpr int kBM = 64;   // rows of x per block
constexpr int kBN = 64;   // codes per tile
constexpr int kBK = 32;   // features per shared-memory stage
constexpr int kGroup = 16;                 // threads along codes (and along rows)
constexpr int kTM = kBM / kGroup;          // rows per thread
constexpr int kTN = kBN / kGroup;          // codes per thread
constexpr int kThreads = kGroup * kGroup;  // 256
constexpr int kWarp = 32;

template <typename A>
__device__ __forceinline__ A infinity() {
  return std::numeric_limits<A>::infinity();
}

// norms[k] = ||e_k||^2, one warp per code.
template <typename T>
__global__ void code_norms_kernel(const T* __restrict__ codebook, at::opmath_type<T>* __restrict__ norms,
                                  int64_t K, int64_t D) {
  using A = at::opmath_type<T>;
  const int64_t k = (blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x) / kWarp;
  const int lane = threadIdx.x % kWarp;
  if (k >= K) return;
  A s = 0;
  for (int64_t d = lane; d < D; d += kWarp) {
    const A v = static_cast<A>(codebook[k * D + d]);
    s += v * v;
  }
#pragma unroll
  for (int off = kWarp / 2; off > 0; off /= 2) s += __shfl_down_sync(0xffffffffu, s, off);
  if (lane == 0) norms[k] = s;
}

template <typename T>
__global__ void __launch_bounds__(kThreads)
nearest_kernel(const T* __restrict__ x, const T* __restrict__ codebook,
               const at::opmath_type<T>* __restrict__ norms, int64_t N, int64_t K, int64_t D,
               int64_t* __restrict__ out) {
  using A = at::opmath_type<T>;
  __shared__ A xs[kBK][kBM + 1];
  __shared__ A es[kBK][kBN + 1];
  const int tx = threadIdx.x % kGroup;  // code lane
  const int ty = threadIdx.x / kGroup;  // row lane
  const int64_t row0 = static_cast<int64_t>(blockIdx.x) * kBM;
  A best[kTM];
  int64_t best_idx[kTM];
#pragma unroll
  for (int i = 0; i < kTM; ++i) {
    best[i] = infinity<A>();
    best_idx[i] = 0;
  }
  for (int64_t c0 = 0; c0 < K; c0 += kBN) {
    A acc[kTM][kTN];
#pragma unroll
    for (int i = 0; i < kTM; ++i)
#pragma unroll
      for (int j = 0; j < kTN; ++j) acc[i][j] = 0;
    for (int64_t d0 = 0; d0 < D; d0 += kBK) {
      for (int t = threadIdx.x; t < kBM * kBK; t += kThreads) {
        const int r = t / kBK, d = t % kBK;
        const int64_t gr = row0 + r, gd = d0 + d;
        xs[d][r] = gr < N && gd < D ? static_cast<A>(x[gr * D + gd]) : A(0);
      }
      for (int t = threadIdx.x; t < kBN * kBK; t += kThreads) {
        const int c = t / kBK, d = t % kBK;
        const int64_t gc = c0 + c, gd = d0 + d;
        es[d][c] = gc < K && gd < D ? static_cast<A>(codebook[gc * D + gd]) : A(0);
      }
      __syncthreads();
#pragma unroll 8
      for (int k = 0; k < kBK; ++k) {
        A a[kTM], b[kTN];
#pragma unroll
        for (int i = 0; i < kTM; ++i) a[i] = xs[k][ty + kGroup * i];
#pragma unroll
        for (int j = 0; j < kTN; ++j) b[j] = es[k][tx + kGroup * j];
#pragma unroll
        for (int i = 0; i < kTM; ++i)
#pragma unroll
          for (int j = 0; j < kTN; ++j) acc[i][j] = fma(a[i], b[j], acc[i][j]);
      }
      __syncthreads();
    }
#pragma unroll
    for (int j = 0; j < kTN; ++j) {
      const int64_t c = c0 + tx + kGroup * j;
      if (c < K) {
        const A norm = norms[c];
#pragma unroll
        for (int i = 0; i < kTM; ++i) {
          const A dist = norm - A(2) * acc[i][j];
          if (dist < best[i]) {
            best[i] = dist;
            best_idx[i] = c;
          }
        }
      }
    }
  }
  // The kGroup threads of a row are consecutive lanes of one warp.
#pragma unroll
  for (int i = 0; i < kTM; ++i) {
    A v = best[i];
    int64_t k = best_idx[i];
#pragma unroll
    for (int off = kGroup / 2; off > 0; off /= 2) {
      const A ov = __shfl_xor_sync(0xffffffffu, v, off);
      const int64_t ok = __shfl_xor_sync(0xffffffffu, k, off);
      if (ov < v || (ov == v && ok < k)) {
        v = ov;
        k = ok;
      }
    }
    const int64_t r = row0 + ty + kGroup * i;
    if (tx == 0 && r < N) out[r] = k;
  }
}

// One warp per row: sqdist = ||x - e_idx||^2 (into sqdist and/or sqdist_acc) and, when asked,
// quantized = e_idx.
template <typename T>
__global__ void finish_rows_kernel(const T* __restrict__ x, const T* __restrict__ codebook,
                                   const int64_t* __restrict__ indices, int64_t N, int64_t D,
                                   T* __restrict__ sqdist, at::opmath_type<T>* __restrict__ sqdist_acc,
                                   T* __restrict__ quantized) {
  using A = at::opmath_type<T>;
  const int64_t row = (blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x) / kWarp;
  const int lane = threadIdx.x % kWarp;
  if (row >= N) return;
  const int64_t k = indices[row];
  A s = 0;
  for (int64_t d = lane; d < D; d += kWarp) {
    const T e = codebook[k * D + d];
    const A diff = static_cast<A>(x[row * D + d]) - static_cast<A>(e);
    s += diff * diff;
    if (quantized != nullptr) quantized[row * D + d] = e;
  }
#pragma unroll
  for (int off = kWarp / 2; off > 0; off /= 2) s += __shfl_down_sync(0xffffffffu, s, off);
  if (lane == 0) {
    if (sqdist != nullptr) sqdist[row] = static_cast<T>(s);
    if (sqdist_acc != nullptr) sqdist_acc[row] = s;
  }
}

// loss = (1 + beta) * sum(sqdist) / elems, summed by one block in a fixed order.
template <typename T>
__global__ void loss_kernel(const at::opmath_type<T>* __restrict__ sqdist, int64_t N, double elems,
                            double beta, T* __restrict__ loss) {
  using A = at::opmath_type<T>;
  __shared__ A partial[kThreads];
  A s = 0;
  for (int64_t i = threadIdx.x; i < N; i += kThreads) s += sqdist[i];
  partial[threadIdx.x] = s;
  __syncthreads();
  for (int half = kThreads / 2; half > 0; half /= 2) {
    if (threadIdx.x < half) partial[threadIdx.x] += partial[threadIdx.x + half];
    __syncthreads();
  }
  if (threadIdx.x == 0) loss[0] = static_cast<T>((1.0 + beta) * static_cast<double>(partial[0]) / elems);
}

// grad_x = grad_quantized + beta * 2 * grad_loss / elems * (x - e_idx).
template <typename T>
__global__ void grad_x_kernel(const T* __restrict__ grad_quantized,
                              const at::opmath_type<T>* __restrict__ grad_loss,
                              const T* __restrict__ x, const T* __restrict__ codebook,
                              const int64_t* __restrict__ indices, int64_t N, int64_t K, int64_t D,
                              double beta, double elems, T* __restrict__ grad_x) {
  using A = at::opmath_type<T>;
  const A scale = static_cast<A>(2.0 * beta / elems) * grad_loss[0];
  const int64_t total = N * D;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t row = i / D, d = i % D;
    const int64_t k = indices[row];
    CUDA_KERNEL_ASSERT(k >= 0 && k < K);
    const A g = grad_quantized != nullptr ? static_cast<A>(grad_quantized[i]) : A(0);
    grad_x[i] = static_cast<T>(g + scale * (static_cast<A>(x[i]) - static_cast<A>(codebook[k * D + d])));
  }
}

// Every index lies in [0, K) exactly when the sorted indices split as offsets[0] = 0, offsets[K] = N.
// Used only while a CUDA graph is being captured, where the host cannot wait for the device.
__global__ void check_offsets_kernel(const int64_t* __restrict__ offsets, int64_t K, int64_t N) {
  CUDA_KERNEL_ASSERT(offsets[0] == 0 && offsets[K] == N && "indices must lie in [0, num_codes)");
}

// Rows grouped by code and cut into pieces (see the top of the file): the rows of code k are
// order[offsets[k] : offsets[k + 1]], and its pieces are pieces_end[k] - pieces[k] ..
// pieces_end[k] - 1, the first in chunk first_chunk[k].
struct RowGroups {
  Tensor order, offsets, first_chunk, pieces, pieces_end;
  int64_t chunk_rows = 1, max_pieces = 0;
};

// Sums of the rows of piece b = blockIdx.x, column d = blockIdx.y * blockDim.x + threadIdx.x:
// partial[b, d] = sum(e_k[d] - x_r[d]) when DIFF, else sum(x_r[d]).
template <typename T, bool DIFF>
__global__ void piece_sum_kernel(const T* __restrict__ x, const T* __restrict__ codebook,
                                 const int64_t* __restrict__ order, const int64_t* __restrict__ offsets,
                                 const int64_t* __restrict__ first_chunk,
                                 const int64_t* __restrict__ pieces,
                                 const int64_t* __restrict__ pieces_end, int64_t K, int64_t D,
                                 int64_t chunk_rows, at::opmath_type<T>* __restrict__ partial) {
  using A = at::opmath_type<T>;
  const int64_t b = blockIdx.x;
  const int64_t d = blockIdx.y * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (b >= pieces_end[K - 1] || d >= D) return;
  int64_t lo = 0, hi = K - 1;  // the code of piece b: the first k with pieces_end[k] > b
  while (lo < hi) {
    const int64_t mid = (lo + hi) / 2;
    if (pieces_end[mid] > b) hi = mid;
    else lo = mid + 1;
  }
  const int64_t k = lo;
  const int64_t chunk = first_chunk[k] + (b - (pieces_end[k] - pieces[k]));
  const int64_t begin = max(offsets[k], chunk * chunk_rows);
  const int64_t end = min(offsets[k + 1], (chunk + 1) * chunk_rows);
  const A e = DIFF ? static_cast<A>(codebook[k * D + d]) : A(0);
  A acc = 0;
  for (int64_t j = begin; j < end; ++j) {
    const A v = static_cast<A>(x[order[j] * D + d]);
    acc += DIFF ? e - v : v;
  }
  partial[b * D + d] = acc;
}

// Block (k, y) sums the pieces of code k in chunk order, column d = y * blockDim.x + threadIdx.x:
// out[k, d] = scale * grad_loss * sum when DIFF (codebook gradient), else the sum; counts[k] = rows.
template <typename T, typename Out, bool DIFF>
__global__ void code_sum_kernel(const at::opmath_type<T>* __restrict__ partial,
                                const int64_t* __restrict__ offsets, const int64_t* __restrict__ pieces,
                                const int64_t* __restrict__ pieces_end, int64_t D,
                                const at::opmath_type<T>* __restrict__ grad_loss, double scale,
                                Out* __restrict__ out, Out* __restrict__ counts) {
  using A = at::opmath_type<T>;
  const int64_t k = blockIdx.x;
  const int64_t d = blockIdx.y * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (counts != nullptr && blockIdx.y == 0 && threadIdx.x == 0) {
    counts[k] = static_cast<Out>(offsets[k + 1] - offsets[k]);
  }
  if (d >= D) return;
  A acc = 0;
  for (int64_t b = pieces_end[k] - pieces[k]; b < pieces_end[k]; ++b) acc += partial[b * D + d];
  if constexpr (DIFF) acc *= static_cast<A>(scale) * grad_loss[0];
  out[k * D + d] = static_cast<Out>(acc);
}

// Groups the rows by code (indices already range-checked, unless a graph is being captured).
RowGroups group_rows(const Tensor& indices, int64_t K) {
  const Tensor flat = indices.reshape({-1});
  const int64_t N = flat.numel();
  auto sorted = at::sort(flat, /*stable=*/true, /*dim=*/0, /*descending=*/false);
  RowGroups g;
  g.order = std::get<1>(sorted);
  g.offsets = at::searchsorted(std::get<0>(sorted), at::arange(K + 1, flat.options()));
  if (at::cuda::currentStreamCaptureStatus() != at::cuda::CaptureStatus::None) {
    check_offsets_kernel<<<1, 1, 0, at::cuda::getCurrentCUDAStream()>>>(
        g.offsets.const_data_ptr<int64_t>(), K, N);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
  g.chunk_rows = std::max<int64_t>(64, static_cast<int64_t>(std::ceil(std::sqrt(static_cast<double>(N)))));
  const Tensor begin = g.offsets.narrow(0, 0, K), end = g.offsets.narrow(0, 1, K);
  g.first_chunk = begin.div(g.chunk_rows, "floor");
  const Tensor last_chunk = end.sub(1).div(g.chunk_rows, "floor");
  g.pieces = at::where(end.gt(begin), last_chunk.sub(g.first_chunk).add(1), at::zeros({}, flat.options()));
  g.pieces_end = at::cumsum(g.pieces, 0);
  g.max_pieces = K + (N + g.chunk_rows - 1) / g.chunk_rows;  // codes + chunk boundaries, at most
  return g;
}

// out[K, D] (and counts[K] when given) from the rows grouped by code: see the kernels above.
template <typename T, typename Out, bool DIFF>
void launch_segment_sums(const Tensor& x, const Tensor& codebook, const RowGroups& g, int64_t K,
                         int64_t D, const at::opmath_type<T>* grad_loss, double scale, Out* out,
                         Out* counts) {
  using A = at::opmath_type<T>;
  auto stream = at::cuda::getCurrentCUDAStream();
  const int threads = D >= 128 ? 128 : 32;
  const unsigned d_blocks = static_cast<unsigned>(std::max<int64_t>(1, (D + threads - 1) / threads));
  Tensor partial = at::empty({g.max_pieces, std::max<int64_t>(D, 1)},
                             x.options().dtype(std::is_same_v<A, double> ? at::kDouble : at::kFloat));
  piece_sum_kernel<T, DIFF><<<dim3(static_cast<unsigned>(g.max_pieces), d_blocks), threads, 0, stream>>>(
      x.const_data_ptr<T>(), DIFF ? codebook.const_data_ptr<T>() : nullptr,
      g.order.const_data_ptr<int64_t>(), g.offsets.const_data_ptr<int64_t>(),
      g.first_chunk.const_data_ptr<int64_t>(), g.pieces.const_data_ptr<int64_t>(),
      g.pieces_end.const_data_ptr<int64_t>(), K, D, g.chunk_rows, partial.mutable_data_ptr<A>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  code_sum_kernel<T, Out, DIFF><<<dim3(static_cast<unsigned>(K), d_blocks), threads, 0, stream>>>(
      partial.const_data_ptr<A>(), g.offsets.const_data_ptr<int64_t>(), g.pieces.const_data_ptr<int64_t>(),
      g.pieces_end.const_data_ptr<int64_t>(), D, grad_loss, scale, out, counts);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

// Range check of code indices on the host (skipped while a graph is captured: group_rows then
// checks on the device).
void check_indices_before_launch(const Tensor& indices, int64_t K, const char* op) {
  if (at::cuda::currentStreamCaptureStatus() == at::cuda::CaptureStatus::None) {
    check_indices_in_range(indices, K, op);
  }
}

int64_t blocks_for(int64_t work, int64_t threads) {
  return std::max<int64_t>(1, (work + threads - 1) / threads);
}

// indices[N] of the nearest codes of x [N, D] (N > 0).
template <typename T>
void launch_nearest(const Tensor& x, const Tensor& codebook, Tensor& indices) {
  using A = at::opmath_type<T>;
  const int64_t N = x.size(0), K = codebook.size(0), D = codebook.size(1);
  auto stream = at::cuda::getCurrentCUDAStream();
  Tensor norms = at::empty({K}, x.options().dtype(std::is_same_v<A, double> ? at::kDouble : at::kFloat));
  code_norms_kernel<T><<<blocks_for(K * kWarp, kThreads), kThreads, 0, stream>>>(
      codebook.const_data_ptr<T>(), norms.mutable_data_ptr<A>(), K, D);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  nearest_kernel<T><<<blocks_for(N, kBM), kThreads, 0, stream>>>(
      x.const_data_ptr<T>(), codebook.const_data_ptr<T>(), norms.const_data_ptr<A>(), N, K, D,
      indices.mutable_data_ptr<int64_t>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

std::tuple<Tensor, Tensor> vq_nearest_kernel(const Tensor& x_in, const Tensor& codebook_in) {
  check_vq_inputs(x_in, codebook_in, 2, "mmgen.ops.vq_nearest");
  const c10::cuda::CUDAGuard guard(x_in.device());
  const Tensor x = x_in.contiguous();
  const Tensor codebook = codebook_in.contiguous();
  const int64_t N = x.size(0), D = codebook.size(1);
  Tensor indices = at::empty({N}, x.options().dtype(at::kLong));
  Tensor sqdist = at::empty({N}, x.options());
  if (N == 0) return {indices, sqdist};
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "vq_nearest", [&] {
    launch_nearest<scalar_t>(x, codebook, indices);
    finish_rows_kernel<scalar_t><<<blocks_for(N * kWarp, kThreads), kThreads, 0, at::cuda::getCurrentCUDAStream()>>>(
        x.const_data_ptr<scalar_t>(), codebook.const_data_ptr<scalar_t>(),
        indices.const_data_ptr<int64_t>(), N, D, sqdist.mutable_data_ptr<scalar_t>(), nullptr, nullptr);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {indices, sqdist};
}

std::tuple<Tensor, Tensor, Tensor> vector_quantize_forward_kernel(const Tensor& x_in,
                                                                  const Tensor& codebook_in,
                                                                  double beta) {
  check_vq_inputs(x_in, codebook_in, -1, "mmgen.ops.vector_quantize");
  const c10::cuda::CUDAGuard guard(x_in.device());
  const Tensor x = x_in.contiguous();
  const Tensor codebook = codebook_in.contiguous();
  const int64_t D = codebook.size(1);
  const int64_t N = leading_rows(x);
  Tensor quantized = at::empty(x.sizes(), x.options());
  Tensor indices = at::empty(x.sizes().slice(0, x.dim() - 1), x.options().dtype(at::kLong));
  Tensor loss = at::empty({}, x.options());
  const double elems = static_cast<double>(N) * static_cast<double>(D);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "vector_quantize", [&] {
    using A = at::opmath_type<scalar_t>;
    auto stream = at::cuda::getCurrentCUDAStream();
    Tensor sq = at::empty({N}, x.options().dtype(std::is_same_v<A, double> ? at::kDouble : at::kFloat));
    if (N > 0) {
      const Tensor flat = x.view({N, D});
      launch_nearest<scalar_t>(flat, codebook, indices);
      finish_rows_kernel<scalar_t><<<blocks_for(N * kWarp, kThreads), kThreads, 0, stream>>>(
          x.const_data_ptr<scalar_t>(), codebook.const_data_ptr<scalar_t>(),
          indices.const_data_ptr<int64_t>(), N, D, nullptr, sq.mutable_data_ptr<A>(),
          quantized.mutable_data_ptr<scalar_t>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
    loss_kernel<scalar_t><<<1, kThreads, 0, stream>>>(sq.const_data_ptr<A>(), N, elems, beta,
                                                      loss.mutable_data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {quantized, indices, loss};
}

std::tuple<Tensor, Tensor> vector_quantize_backward_kernel(const std::optional<Tensor>& grad_quantized,
                                                           const std::optional<Tensor>& grad_loss,
                                                           const Tensor& x_in,
                                                           const Tensor& codebook_in,
                                                           const Tensor& indices_in, double beta,
                                                           std::array<bool, 2> output_mask) {
  const char* op = "mmgen.ops._vector_quantize_backward";
  check_vq_inputs(x_in, codebook_in, -1, op);
  const int64_t K = codebook_in.size(0), D = codebook_in.size(1);
  const int64_t N = leading_rows(x_in);
  check_vq_indices(indices_in, N, x_in, op);
  check_vq_grads(grad_quantized, grad_loss, x_in, op);
  const c10::cuda::CUDAGuard guard(x_in.device());
  check_indices_before_launch(indices_in, K, op);
  const Tensor x = x_in.contiguous();
  const Tensor codebook = codebook_in.contiguous();
  const Tensor indices = indices_in.contiguous();
  const bool need_x = output_mask[0], need_codebook = output_mask[1];
  const bool has_gq = grad_quantized.has_value() && grad_quantized->defined();
  const bool has_gl = grad_loss.has_value() && grad_loss->defined();
  const Tensor gq = has_gq ? grad_quantized->to(x.scalar_type()).contiguous() : Tensor();
  const Tensor none = at::empty({0}, x.options());
  Tensor grad_x = need_x ? at::empty(x.sizes(), x.options()) : none;
  Tensor grad_codebook = need_codebook ? at::zeros(codebook.sizes(), codebook.options()) : none;
  if (!has_gl || N == 0 || D == 0) {
    if (need_x && has_gq) grad_x.copy_(gq);
    else if (need_x) grad_x.zero_();
    return {grad_x, grad_codebook};
  }
  const double elems = static_cast<double>(N) * static_cast<double>(D);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "vector_quantize_backward", [&] {
    using A = at::opmath_type<scalar_t>;
    auto stream = at::cuda::getCurrentCUDAStream();
    const Tensor gl = grad_loss->reshape({1}).to(
        x.options().dtype(std::is_same_v<A, double> ? at::kDouble : at::kFloat));
    if (need_x) {
      const int64_t sms = at::cuda::getCurrentDeviceProperties()->multiProcessorCount;
      const int64_t grid = std::min<int64_t>(blocks_for(N * D, kThreads), sms * 32);
      grad_x_kernel<scalar_t><<<grid, kThreads, 0, stream>>>(
          has_gq ? gq.const_data_ptr<scalar_t>() : nullptr, gl.const_data_ptr<A>(),
          x.const_data_ptr<scalar_t>(), codebook.const_data_ptr<scalar_t>(),
          indices.const_data_ptr<int64_t>(), N, K, D, beta, elems, grad_x.mutable_data_ptr<scalar_t>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
    if (need_codebook) {
      launch_segment_sums<scalar_t, scalar_t, true>(
          x, codebook, group_rows(indices, K), K, D, gl.const_data_ptr<A>(), 2.0 / elems,
          grad_codebook.mutable_data_ptr<scalar_t>(), nullptr);
    }
  });
  return {grad_x, grad_codebook};
}

std::tuple<Tensor, Tensor> vq_ema_stats_kernel(const Tensor& x_in, const Tensor& indices_in,
                                               int64_t num_codes) {
  const char* op = "mmgen.ops.vq_ema_stats";
  check_vq_float(x_in, "x", op);
  TORCH_CHECK(x_in.dim() >= 1, op, ": x must have at least 1 dimension [..., D], got a 0-dim tensor");
  TORCH_CHECK(num_codes >= 1, op, ": num_codes must be at least 1, got ", num_codes);
  TORCH_CHECK(indices_in.sizes() == x_in.sizes().slice(0, x_in.dim() - 1), op,
              ": indices must have the shape of x without its last dim (",
              x_in.sizes().slice(0, x_in.dim() - 1), "), got ", indices_in.sizes());
  const int64_t N = indices_in.numel();
  check_vq_indices(indices_in, N, x_in, op);
  const c10::cuda::CUDAGuard guard(x_in.device());
  check_indices_before_launch(indices_in, num_codes, op);
  const Tensor x = x_in.contiguous();
  const Tensor indices = indices_in.contiguous();
  const int64_t D = x.size(-1);
  const auto stats_dtype = x.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  Tensor counts = at::zeros({num_codes}, x.options().dtype(stats_dtype));
  Tensor sums = at::zeros({num_codes, D}, x.options().dtype(stats_dtype));
  if (N == 0) return {counts, sums};
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "vq_ema_stats", [&] {
    using A = at::opmath_type<scalar_t>;
    launch_segment_sums<scalar_t, A, false>(x, Tensor(), group_rows(indices, num_codes), num_codes,
                                            D, nullptr, 1.0, sums.mutable_data_ptr<A>(),
                                            counts.mutable_data_ptr<A>());
  });
  return {counts, sums};
}

}  // namespace

TORCH_LIBRARY_IMPL(mmgen, CUDA, m) {
  m.impl("vq_nearest", &vq_nearest_kernel);
  m.impl("vector_quantize", &vector_quantize_forward_kernel);
  m.impl("_vector_quantize_backward", &vector_quantize_backward_kernel);
  m.impl("vq_ema_stats", &vq_ema_stats_kernel);
}

}  // namespace mmgen
