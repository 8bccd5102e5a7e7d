// Shared declarations for the reparameterization / Gaussian KL kernels.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include <optional>
#include <utility>

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

// The backward's incoming gradients (each optional): grad_z shaped like mu, grad_kl [rows], both
// floating and on mu's device; rng_state int64[2] on the CPU or mu's device when grad_z is given.
// Checked before anything is launched.
inline void check_reparameterize_grads(const std::optional<at::Tensor>& grad_z,
                                       const std::optional<at::Tensor>& grad_kl,
                                       const at::Tensor& mu, const at::Tensor& rng_state,
                                       const char* op) {
  const auto check = [&](const at::Tensor& g, const char* name) {
    TORCH_CHECK(g.device() == mu.device(), op, ": ", name, " must be on mu's device (", mu.device(),
                "), got ", g.device());
    TORCH_CHECK(at::isFloatingType(g.scalar_type()), op, ": ", name,
                " must have a floating dtype (float16, bfloat16, float32, float64), got ",
                g.scalar_type());
  };
  if (grad_z.has_value() && grad_z->defined()) {
    check(*grad_z, "grad_z");
    TORCH_CHECK(grad_z->sizes() == mu.sizes(), op, ": grad_z must have mu's shape ", mu.sizes(),
                ", got ", grad_z->sizes());
    TORCH_CHECK(rng_state.numel() == 2 && rng_state.scalar_type() == at::kLong, op,
                ": rng_state must be int64[2] (seed, offset), got ", rng_state.scalar_type(), " ",
                rng_state.sizes());
    TORCH_CHECK(rng_state.is_cpu() || rng_state.device() == mu.device(), op,
                ": rng_state must be on the CPU or on mu's device (", mu.device(), "), got ",
                rng_state.device());
  }
  if (grad_kl.has_value() && grad_kl->defined()) {
    check(*grad_kl, "grad_kl");
    TORCH_CHECK(grad_kl->dim() == 1 && grad_kl->size(0) == mu.size(0), op,
                ": grad_kl must have shape [", mu.size(0), "], got ", grad_kl->sizes());
  }
}

// Rows (dim 0) and elements per row of a [B, ...] tensor.
inline std::pair<int64_t, int64_t> rows_and_cols(const at::Tensor& t) {
  const int64_t rows = t.size(0);
  return {rows, rows == 0 ? 0 : t.numel() / rows};
}

// The float32 normals of flat elements [start, start + numel) of the stream (seed, offset), on the
// CPU code path in use (start a multiple of 4): the noise reparameterize draws, at any position,
// for tests (mmgen::_philox_normals).
at::Tensor cpu_philox_normals(int64_t seed, int64_t offset, int64_t start, int64_t numel);

}  // namespace mmgen
