// CUDA kernels of mmgen_gumbel::gumbel_softmax_sample and mmgen_gumbel::_gumbel_softmax_backward.
//
// One warp per row: lanes stride over the categories, the max / argmax and the sums are warp
// reductions, and scores are recomputed per pass instead of stored. Ties in the argmax go to the
// lowest index, as on the CPU.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/cuda/CUDAContext.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <limits>

#include "gumbel.h"

namespace mmgen_gumbel {
namespace {

using at::Tensor;

constexpr int kWarp = 32;
constexpr int kRowsPerBlock = 8;

template <typename A>
struct Scorer {
  A tau, tiny, top;
  template <typename T>
  __device__ A operator()(const T* x, const T* u, int64_t j) const {
    return gumbel_score<A>(static_cast<A>(x[j]), static_cast<A>(u[j]), tau, tiny, top);
  }
};

template <typename A>
Scorer<A> make_scorer(double tau) {
  return {static_cast<A>(tau), std::numeric_limits<A>::min(), A(1) - std::numeric_limits<A>::epsilon()};
}

// Max score of the row and its first index, known to every lane.
template <typename T, typename A>
__device__ void row_argmax(const T* x, const T* u, int64_t k, int lane, Scorer<A> score, A& m, int64_t& best) {
  m = -std::numeric_limits<A>::infinity();
  best = k;  // k: this lane saw no category
  for (int64_t j = lane; j < k; j += kWarp) {
    const A s = score(x, u, j);
    if (best == k || beats(s, m)) m = s, best = j;
  }
  for (int width = kWarp / 2; width > 0; width /= 2) {
    const A om = __shfl_xor_sync(0xffffffffu, m, width);
    const int64_t ob = __shfl_xor_sync(0xffffffffu, best, width);
    const bool same = om == m || (om != om && m != m);
    if ((ob != k && best == k) || (ob != k && (beats(om, m) || (same && ob < best)))) m = om, best = ob;
  }
}

template <typename A>
__device__ A warp_sum(A v) {
  for (int width = kWarp / 2; width > 0; width /= 2) v += __shfl_xor_sync(0xffffffffu, v, width);
  return v;
}

template <typename T, typename A>
__global__ void gumbel_softmax_sample_forward_kernel(const T* x, const T* u, T* y, int64_t rows, int64_t k,
                                                     Scorer<A> score, bool hard) {
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock + threadIdx.x / kWarp;
  const int lane = threadIdx.x % kWarp;
  if (row >= rows) return;  // the whole warp leaves together
  x += row * k, u += row * k, y += row * k;
  A m;
  int64_t best;
  row_argmax(x, u, k, lane, score, m, best);
  if (hard) {
    for (int64_t j = lane; j < k; j += kWarp) y[j] = static_cast<T>(j == best ? 1 : 0);
    return;
  }
  A sum = 0;
  for (int64_t j = lane; j < k; j += kWarp) sum += exp(score(x, u, j) - m);
  sum = warp_sum(sum);
  for (int64_t j = lane; j < k; j += kWarp) y[j] = static_cast<T>(exp(score(x, u, j) - m) / sum);
}

template <typename T, typename A>
__global__ void gumbel_softmax_sample_backward_kernel(const T* g, const T* x, const T* u, T* dx, int64_t rows,
                                                      int64_t k, Scorer<A> score) {
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock + threadIdx.x / kWarp;
  const int lane = threadIdx.x % kWarp;
  if (row >= rows) return;
  g += row * k, x += row * k, u += row * k, dx += row * k;
  A m;
  int64_t best;
  row_argmax(x, u, k, lane, score, m, best);
  A sum = 0, dot = 0;  // sum_j e_j and sum_j grad_j e_j, e_j = exp(s_j - m)
  for (int64_t j = lane; j < k; j += kWarp) {
    const A e = exp(score(x, u, j) - m);
    sum += e;
    dot += static_cast<A>(g[j]) * e;
  }
  sum = warp_sum(sum);
  dot = warp_sum(dot) / sum;
  for (int64_t j = lane; j < k; j += kWarp) {
    const A p = exp(score(x, u, j) - m) / sum;
    dx[j] = static_cast<T>(p * (static_cast<A>(g[j]) - dot) / score.tau);
  }
}

unsigned int blocks_for(int64_t rows) {
  return static_cast<unsigned int>((rows + kRowsPerBlock - 1) / kRowsPerBlock);
}

Tensor gumbel_softmax_sample_cuda(const Tensor& logits, const Tensor& uniform, double tau, bool hard) {
  check_inputs(logits, uniform, tau, "mmgen_gumbel::gumbel_softmax_sample");
  const c10::cuda::CUDAGuard guard(logits.device());
  const Tensor x = logits.contiguous(), u = uniform.contiguous();
  Tensor y = at::empty(x.sizes(), x.options());
  const auto [rows, k] = rows_and_categories(x);
  if (rows == 0) return y;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "gumbel_softmax_sample", [&] {
    using A = at::opmath_type<scalar_t>;
    gumbel_softmax_sample_forward_kernel<scalar_t, A>
        <<<blocks_for(rows), kRowsPerBlock * kWarp, 0, at::cuda::getCurrentCUDAStream()>>>(
            x.const_data_ptr<scalar_t>(), u.const_data_ptr<scalar_t>(), y.mutable_data_ptr<scalar_t>(), rows,
            k, make_scorer<A>(tau), hard);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return y;
}

Tensor gumbel_softmax_backward_cuda(const Tensor& grad, const Tensor& logits, const Tensor& uniform, double tau) {
  const char* op = "mmgen_gumbel::_gumbel_softmax_backward";
  check_inputs(logits, uniform, tau, op);
  TORCH_CHECK(grad.sizes() == logits.sizes() && grad.scalar_type() == logits.scalar_type() &&
                  grad.device() == logits.device(),
              op, ": grad must have the shape, dtype and device of logits, got ", grad.sizes(), " ",
              grad.scalar_type(), " ", grad.device());
  const c10::cuda::CUDAGuard guard(logits.device());
  const Tensor g = grad.contiguous(), x = logits.contiguous(), u = uniform.contiguous();
  Tensor dx = at::empty(x.sizes(), x.options());
  const auto [rows, k] = rows_and_categories(x);
  if (rows == 0) return dx;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "gumbel_softmax_backward", [&] {
    using A = at::opmath_type<scalar_t>;
    gumbel_softmax_sample_backward_kernel<scalar_t, A>
        <<<blocks_for(rows), kRowsPerBlock * kWarp, 0, at::cuda::getCurrentCUDAStream()>>>(
            g.const_data_ptr<scalar_t>(), x.const_data_ptr<scalar_t>(), u.const_data_ptr<scalar_t>(),
            dx.mutable_data_ptr<scalar_t>(), rows, k, make_scorer<A>(tau));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return dx;
}

}  // namespace

TORCH_LIBRARY_IMPL(mmgen_gumbel, CUDA, m) {
  m.impl("gumbel_softmax_sample", &gumbel_softmax_sample_cuda);
  m.impl("_gumbel_softmax_backward", &gumbel_softmax_backward_cuda);
}

}  // namespace mmgen_gumbel
