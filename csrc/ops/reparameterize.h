// Shared declarations for the reparameterization / Gaussian KL kernels.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

namespace mmgen {

inline void check_gaussian_inputs(const at::Tensor& mu, const at::Tensor& logvar, const char* op) {
  TORCH_CHECK(mu.sizes() == logvar.sizes(), op, ": mu and logvar must have the same shape, got ",
              mu.sizes(), " and ", logvar.sizes());
  TORCH_CHECK(mu.scalar_type() == logvar.scalar_type(), op,
              ": mu and logvar must have the same dtype, got ", mu.scalar_type(), " and ",
              logvar.scalar_type());
  TORCH_CHECK(mu.device() == logvar.device(), op,
              ": mu and logvar must be on the same device, got ", mu.device(), " and ",
              logvar.device());
  TORCH_CHECK(at::isFloatingType(mu.scalar_type()), op,
              ": expected a floating dtype (float16, bfloat16, float32, float64), got ",
              mu.scalar_type());
  TORCH_CHECK(mu.dim() >= 1, op,
              ": expected at least 1 dimension (dim 0 is the batch the KL is kept over), got a "
              "0-dim tensor");
}

// Rows (dim 0) and elements per row of a [B, ...] tensor.
inline std::pair<int64_t, int64_t> rows_and_cols(const at::Tensor& t) {
  const int64_t rows = t.size(0);
  return {rows, rows == 0 ? 0 : t.numel() / rows};
}

}  // namespace mmgen
