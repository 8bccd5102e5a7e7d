// Shared declarations of the mmgen_gumbel kernels: input checks and the score of one category.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include <cmath>
#include <utility>

namespace mmgen_gumbel {

inline void check_inputs(const at::Tensor& logits, const at::Tensor& uniform, double tau, const char* op) {
  TORCH_CHECK(logits.sizes() == uniform.sizes(), op, ": logits and uniform must have the same shape, got ",
              logits.sizes(), " and ", uniform.sizes());
  TORCH_CHECK(logits.scalar_type() == uniform.scalar_type(), op,
              ": logits and uniform must have the same dtype, got ", logits.scalar_type(), " and ",
              uniform.scalar_type());
  TORCH_CHECK(logits.device() == uniform.device(), op, ": logits and uniform must be on the same device, got ",
              logits.device(), " and ", uniform.device());
  TORCH_CHECK(at::isFloatingType(logits.scalar_type()), op,
              ": expected a floating dtype (float16, bfloat16, float32, float64), got ", logits.scalar_type());
  TORCH_CHECK(logits.dim() >= 1, op, ": logits must have at least 1 dimension (the categories), got 0-dim");
  TORCH_CHECK(tau > 0 && std::isfinite(tau), op, ": tau must be a finite number > 0, got ", tau);
}

// Rows and categories of a [..., K] tensor (softmax over the last dim).
inline std::pair<int64_t, int64_t> rows_and_categories(const at::Tensor& t) {
  const int64_t k = t.size(-1);
  return {k == 0 ? 0 : t.numel() / k, k};
}

}  // namespace mmgen_gumbel

#ifdef __CUDACC__
#define MMGEN_GUMBEL_HOST_DEVICE __host__ __device__
#else
#define MMGEN_GUMBEL_HOST_DEVICE
#endif

namespace mmgen_gumbel {

// (logit + g) / tau with Gumbel noise g = -log(-log(u)), u clamped to [tiny, 1 - eps] of A.
template <typename A>
MMGEN_GUMBEL_HOST_DEVICE inline A gumbel_score(A logit, A u, A tau, A tiny, A one_minus_eps) {
  u = u < tiny ? tiny : (u > one_minus_eps ? one_minus_eps : u);
  return (logit - std::log(-std::log(u))) / tau;
}

// a beats b in an argmax: larger, or NaN against a number (as torch.argmax).
template <typename A>
MMGEN_GUMBEL_HOST_DEVICE inline bool beats(A a, A b) {
  return a > b || (a != a && b == b);
}

}  // namespace mmgen_gumbel
