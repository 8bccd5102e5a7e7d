// CPU kernels of mmgen_gumbel::gumbel_softmax_sample and mmgen_gumbel::_gumbel_softmax_backward.
// Rows are split across threads; each row is scored once into a scratch buffer.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <limits>
#include <vector>

#include "gumbel.h"

namespace mmgen_gumbel {
namespace {

using at::Tensor;

// Scores of one row into s; returns the argmax (first of equal maxima).
template <typename T, typename A>
int64_t score_row(const T* x, const T* u, int64_t k, A tau, A* s) {
  const A tiny = std::numeric_limits<A>::min();
  const A top = A(1) - std::numeric_limits<A>::epsilon();
  int64_t best = 0;
  for (int64_t j = 0; j < k; ++j) {
    s[j] = gumbel_score<A>(static_cast<A>(x[j]), static_cast<A>(u[j]), tau, tiny, top);
    if (j > 0 && beats(s[j], s[best])) best = j;
  }
  return best;
}

// Softmax of s in place; returns nothing, s[j] becomes the probability of category j.
template <typename A>
void softmax_row(A* s, int64_t k, int64_t best) {
  const A m = s[best];
  A sum = 0;
  for (int64_t j = 0; j < k; ++j) sum += (s[j] = std::exp(s[j] - m));
  for (int64_t j = 0; j < k; ++j) s[j] /= sum;
}

Tensor gumbel_softmax_sample_forward_kernel(const Tensor& logits, const Tensor& uniform, double tau, bool hard) {
  check_inputs(logits, uniform, tau, "mmgen_gumbel::gumbel_softmax_sample");
  const Tensor x = logits.contiguous(), u = uniform.contiguous();
  Tensor y = at::empty(x.sizes(), x.options());
  const auto [rows, k] = rows_and_categories(x);
  if (rows == 0) return y;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "gumbel_softmax_sample", [&] {
    using A = at::opmath_type<scalar_t>;
    const scalar_t* xp = x.const_data_ptr<scalar_t>();
    const scalar_t* up = u.const_data_ptr<scalar_t>();
    scalar_t* yp = y.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, rows, std::max<int64_t>(1, 4096 / k), [&](int64_t begin, int64_t end) {
      std::vector<A> s(k);
      for (int64_t r = begin; r < end; ++r) {
        const int64_t best = score_row(xp + r * k, up + r * k, k, static_cast<A>(tau), s.data());
        scalar_t* out = yp + r * k;
        if (hard) {
          for (int64_t j = 0; j < k; ++j) out[j] = static_cast<scalar_t>(j == best ? 1 : 0);
          continue;
        }
        softmax_row(s.data(), k, best);
        for (int64_t j = 0; j < k; ++j) out[j] = static_cast<scalar_t>(s[j]);
      }
    });
  });
  return y;
}

Tensor gumbel_softmax_sample_backward_kernel(const Tensor& grad, const Tensor& logits, const Tensor& uniform,
                                             double tau) {
  const char* op = "mmgen_gumbel::_gumbel_softmax_backward";
  check_inputs(logits, uniform, tau, op);
  TORCH_CHECK(grad.sizes() == logits.sizes() && grad.scalar_type() == logits.scalar_type(), op,
              ": grad must have the shape and dtype of logits, got ", grad.sizes(), " ", grad.scalar_type());
  const Tensor g = grad.contiguous(), x = logits.contiguous(), u = uniform.contiguous();
  Tensor dx = at::empty(x.sizes(), x.options());
  const auto [rows, k] = rows_and_categories(x);
  if (rows == 0) return dx;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "gumbel_softmax_backward", [&] {
    using A = at::opmath_type<scalar_t>;
    const scalar_t* gp = g.const_data_ptr<scalar_t>();
    const scalar_t* xp = x.const_data_ptr<scalar_t>();
    const scalar_t* up = u.const_data_ptr<scalar_t>();
    scalar_t* dp = dx.mutable_data_ptr<scalar_t>();
    const A t = static_cast<A>(tau);
    at::parallel_for(0, rows, std::max<int64_t>(1, 4096 / k), [&](int64_t begin, int64_t end) {
      std::vector<A> s(k);
      for (int64_t r = begin; r < end; ++r) {
        softmax_row(s.data(), k, score_row(xp + r * k, up + r * k, k, t, s.data()));
        const scalar_t* gr = gp + r * k;
        A dot = 0;  // sum_j grad_j y_j
        for (int64_t j = 0; j < k; ++j) dot += static_cast<A>(gr[j]) * s[j];
        for (int64_t j = 0; j < k; ++j)
          dp[r * k + j] = static_cast<scalar_t>(s[j] * (static_cast<A>(gr[j]) - dot) / t);
      }
    });
  });
  return dx;
}

}  // namespace

TORCH_LIBRARY_IMPL(mmgen_gumbel, CPU, m) {
  m.impl("gumbel_softmax_sample", &gumbel_softmax_sample_forward_kernel);
  m.impl("_gumbel_softmax_backward", &gumbel_softmax_sample_backward_kernel);
}

}  // namespace mmgen_gumbel
