// A quick experiment for mmgen.kernels.load (JIT): one CPU op in its own namespace, built into the
// kernel cache without a setup.py. `mmgen.kernels.load("mmgen_scale_demo", [this file])`.
#include <torch/extension.h>
#include <torch/library.h>

#include "generated/build_info.h"

namespace {

at::Tensor scale(const at::Tensor& x, double factor) {
  TORCH_CHECK(x.is_floating_point(), "mmgen_scale_demo::scale: x must be floating, got ", x.scalar_type());
  return x * factor;
}

}  // namespace

TORCH_LIBRARY(mmgen_scale_demo, m) { m.def("scale(Tensor x, float factor) -> Tensor"); }

TORCH_LIBRARY_IMPL(mmgen_scale_demo, CPU, m) { m.impl("scale", &scale); }

PYBIND11_MODULE(TORCH_EXTENSION_NAME, module) {
  module.def("build_info_json", [] { return std::string(MMGEN_BUILD_INFO_JSON); });
}
