// Module init of the mmgen_gumbel plugin: its operator schemas (each written once, here) and the
// build record. Kernels register per backend in cpu/ and cuda/.
#include <torch/extension.h>
#include <torch/library.h>

#include "generated/build_info.h"

TORCH_LIBRARY(mmgen_gumbel, m) {
  // Gumbel-softmax sample over the last dim: softmax((logits - log(-log(uniform))) / tau), or with
  // hard=true the one-hot of its argmax (ties to the lowest index). The uniform noise is an input,
  // so the op is deterministic and the caller controls the random numbers.
  m.def("gumbel_softmax_sample(Tensor logits, Tensor uniform, float tau, bool hard) -> Tensor");
  // Gradient with respect to logits of the relaxed sample (also the straight-through gradient of
  // hard=true); it recomputes the sample instead of saving it.
  m.def("_gumbel_softmax_backward(Tensor grad, Tensor logits, Tensor uniform, float tau) -> Tensor");
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, module) {
  module.doc() = "mmgen_gumbel native kernels (operators are registered under torch.ops.mmgen_gumbel)";
  module.def("build_info_json", [] { return std::string(MMGEN_BUILD_INFO_JSON); },
             "JSON record of the torch / CUDA versions and archs this library was built for");
}
