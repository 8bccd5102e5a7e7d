// Shared declarations and input checks for the vector quantization kernels.
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/ops/aminmax.h>
#include <ATen/ops/stack.h>
#include <c10/util/Exception.h>
#include <c10/util/accumulate.h>

#include <optional>

namespace mmgen {

// Number of D-vectors in x [..., D] (the product of all dims but the last).
inline int64_t leading_rows(const at::Tensor& x) {
  return c10::multiply_integers(x.sizes().slice(0, x.dim() - 1));
}

inline void check_vq_float(const at::Tensor& t, const char* name, const char* op) {
  TORCH_CHECK(at::isFloatingType(t.scalar_type()), op, ": ", name,
              " must have a floating dtype (float16, bfloat16, float32, float64), got ",
              t.scalar_type());
}

inline void check_vq_same(const at::Tensor& a, const at::Tensor& b, const char* names,
                          const char* op) {
  TORCH_CHECK(a.scalar_type() == b.scalar_type(), op, ": ", names,
              " must have the same dtype, got ", a.scalar_type(), " and ", b.scalar_type());
  TORCH_CHECK(a.device() == b.device(), op, ": ", names, " must be on the same device, got ",
              a.device(), " and ", b.device());
}

// x: [..., D] (x_dims == -1) or exactly x_dims dims; codebook: [K, D] with K >= 1.
inline void check_vq_inputs(const at::Tensor& x, const at::Tensor& codebook, int64_t x_dims,
                            const char* op) {
  check_vq_float(x, "x", op);
  check_vq_same(x, codebook, "x and codebook", op);
  if (x_dims > 0) {
    TORCH_CHECK(x.dim() == x_dims, op, ": x must be ", x_dims, "-D [N, D], got shape ", x.sizes());
  } else {
    TORCH_CHECK(x.dim() >= 1, op, ": x must have at least 1 dimension [..., D], got a 0-dim tensor");
  }
  TORCH_CHECK(codebook.dim() == 2, op, ": codebook must be 2-D [K, D], got shape ",
              codebook.sizes());
  TORCH_CHECK(codebook.size(0) >= 1, op, ": codebook is empty (K = 0); it needs at least 1 code");
  TORCH_CHECK(codebook.size(1) == x.size(-1), op, ": x has D = ", x.size(-1),
              " features in its last dim but the codebook has D = ", codebook.size(1));
  TORCH_CHECK(codebook.size(0) <= INT32_MAX, op, ": codebook has ", codebook.size(0),
              " codes; at most 2^31 - 1 are supported");
}

inline void check_vq_indices(const at::Tensor& indices, int64_t rows, const at::Tensor& like,
                             const char* op) {
  TORCH_CHECK(indices.scalar_type() == at::kLong, op, ": indices must be int64, got ",
              indices.scalar_type());
  TORCH_CHECK(indices.numel() == rows, op, ": indices must have one entry per row of x (", rows,
              "), got ", indices.numel());
  TORCH_CHECK(indices.device() == like.device(), op, ": indices must be on ", like.device(),
              ", got ", indices.device());
}

// Every index lies in [0, K), checked on the host before any kernel runs, with one message on every
// device naming the first bad value and its position. On CUDA this waits for the device (one copy
// of the min and max): a bad index would otherwise reach a device-side assert, which loses the
// CUDA context.
inline void check_indices_in_range(const at::Tensor& indices, int64_t K, const char* op) {
  if (indices.numel() == 0) return;
  const at::Tensor flat = indices.reshape({-1});
  int64_t position = -1;
  if (flat.is_cpu()) {
    const at::Tensor c = flat.contiguous();
    const int64_t* p = c.const_data_ptr<int64_t>();
    for (int64_t i = 0; i < c.numel(); ++i) {
      if (p[i] < 0 || p[i] >= K) {
        position = i;
        break;
      }
    }
  } else {
    const auto lo_hi = at::aminmax(flat);
    const at::Tensor range = at::stack({std::get<0>(lo_hi), std::get<1>(lo_hi)}).cpu();
    const int64_t lo = range[0].item<int64_t>(), hi = range[1].item<int64_t>();
    if (lo < 0 || hi >= K) position = flat.lt(0).logical_or_(flat.ge(K)).to(at::kInt).argmax().item<int64_t>();
  }
  if (position >= 0) {
    TORCH_CHECK(false, op, ": indices must lie in [0, ", K, "), got ", flat[position].item<int64_t>(),
                " at position ", position);
  }
}

// The backward's incoming gradients: grad_quantized shaped like x, grad_loss one element, both
// floating and on x's device. Checked before anything is launched.
inline void check_vq_grads(const std::optional<at::Tensor>& grad_quantized,
                           const std::optional<at::Tensor>& grad_loss, const at::Tensor& x,
                           const char* op) {
  const auto check = [&](const at::Tensor& g, const char* name) {
    TORCH_CHECK(g.device() == x.device(), op, ": ", name, " must be on x's device (", x.device(),
                "), got ", g.device());
    check_vq_float(g, name, op);
  };
  if (grad_quantized.has_value() && grad_quantized->defined()) {
    check(*grad_quantized, "grad_quantized");
    TORCH_CHECK(grad_quantized->sizes() == x.sizes(), op, ": grad_quantized must have x's shape ",
                x.sizes(), ", got ", grad_quantized->sizes());
  }
  if (grad_loss.has_value() && grad_loss->defined()) {
    check(*grad_loss, "grad_loss");
    TORCH_CHECK(grad_loss->numel() == 1, op, ": grad_loss must have one element, got shape ",
                grad_loss->sizes());
  }
}

}  // namespace mmgen
