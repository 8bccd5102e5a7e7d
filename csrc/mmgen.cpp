// Module init: the mmgen operator schemas (each written once, here) and the build record.
#include <torch/extension.h>
#include <torch/library.h>

#include "generated/build_info.h"
#include "ops/rng.h"

TORCH_LIBRARY(mmgen, m) {
  // Reparameterization: z = mu + exp(logvar / 2) * eps with eps drawn in-kernel by Philox.
  // rng_state = int64[2] (seed, offset) actually used, kept for the backward to regenerate eps.
  // kl is KL(N(mu, exp(logvar)) || N(0, I)) per sample when return_kl, else an empty tensor.
  m.def(
      "reparameterize(Tensor mu, Tensor logvar, Generator? generator=None, bool return_kl=False)"
      " -> (Tensor z, Tensor kl, Tensor rng_state)",
      {at::Tag::nondeterministic_seeded});
  m.def(
      "_reparameterize_backward(Tensor? grad_z, Tensor? grad_kl, Tensor mu, Tensor logvar,"
      " Tensor rng_state) -> (Tensor grad_mu, Tensor grad_logvar)");
  m.def("gaussian_kl(Tensor mu, Tensor logvar) -> Tensor");
  // The per-generator Philox offset mmgen keeps for CPU generators (saved with checkpoints).
  m.def("_cpu_philox_offset(Generator? generator=None) -> int", &mmgen::cpu_philox_next_offset);
  m.def("_set_cpu_philox_offset(Generator? generator, int offset) -> ()",
        &mmgen::set_cpu_philox_next_offset);
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, module) {
  module.doc() = "mmgen native kernels (operators are registered under torch.ops.mmgen)";
  module.def("build_info_json", [] { return std::string(MMGEN_BUILD_INFO_JSON); },
             "JSON record of the torch / CUDA versions and archs this library was built for");
}
