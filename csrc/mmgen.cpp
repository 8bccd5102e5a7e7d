// Module init: the mmgen operator schemas (each written once, here) and the build record.
#include <torch/extension.h>
#include <torch/library.h>

#include "generated/build_info.h"
#include "ops/cpu_isa.h"
#include "ops/denormal.h"
#include "ops/reparameterize.h"
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
      " Tensor rng_state, bool need_grad_mu=True) -> (Tensor grad_mu, Tensor grad_logvar)");
  m.def("gaussian_kl(Tensor mu, Tensor logvar) -> Tensor");
  // The per-generator Philox offset mmgen keeps for CPU generators (saved with checkpoints).
  m.def("_cpu_philox_offset(Generator? generator=None) -> int", &mmgen::cpu_philox_next_offset);
  m.def("_set_cpu_philox_offset(Generator? generator, int offset) -> ()",
        &mmgen::set_cpu_philox_next_offset);
  // The CPU noise stream at any position (float32 normals of elements start .. start + numel - 1 of
  // (seed, offset)), for tests of positions no tensor in memory reaches.
  m.def("_philox_normals(int seed, int offset, int start, int numel) -> Tensor", &mmgen::cpu_philox_normals);
  // How many CPU generators that offset is kept for (entries of dead generators are dropped).
  m.def("_cpu_philox_tracked() -> int", &mmgen::cpu_philox_tracked_generators);
  // The CPU code path in use: "avx512", "avx2" or "baseline" (MMGEN_CPU_ISA forces a lower one).
  m.def("_cpu_isa() -> str", [] { return std::string(mmgen::cpu_isa_name(mmgen::cpu_isa())); });
  // Flush denormal floats to zero on the calling thread and every intra-op pool thread
  // (torch.set_flush_denormal sets only the caller's); false where the CPU has no such mode.
  m.def("_set_flush_denormal(bool on) -> bool", &mmgen::set_flush_denormal_all_threads);
  // The C++ compiler this library was built with (its predefined version macros).
  m.def("_compiler() -> str", [] {
#if defined(__clang__)
    return std::string("clang ") + __clang_version__;
#elif defined(__GNUC__)
    return std::string("gcc ") + __VERSION__;
#else
    return std::string("unknown");
#endif
  });
  // Vector quantization: nearest code (ties to the lowest index) without an N x K buffer; the
  // straight-through quantizer with loss = codebook + beta * commitment (mean squared errors); and
  // the per-code counts and sums of rows for EMA codebook updates.
  m.def("vq_nearest(Tensor x, Tensor codebook) -> (Tensor indices, Tensor sqdist)");
  m.def(
      "vector_quantize(Tensor x, Tensor codebook, float beta=0.25)"
      " -> (Tensor quantized, Tensor indices, Tensor loss)");
  // output_mask: which of (grad_x, grad_codebook) to compute; the other is an empty tensor (an EMA
  // codebook needs no gradient, so its per-code sums are skipped).
  m.def(
      "_vector_quantize_backward(Tensor? grad_quantized, Tensor? grad_loss, Tensor x,"
      " Tensor codebook, Tensor indices, float beta, bool[2] output_mask=[True, True])"
      " -> (Tensor grad_x, Tensor grad_codebook)");
  m.def("vq_ema_stats(Tensor x, Tensor indices, int num_codes) -> (Tensor counts, Tensor sums)");

  // Masked convolution (PixelCNN): "same" padding, only the causal taps of the mask are computed.
  // The backward returns an empty tensor for each gradient whose output_mask entry is false.
  m.def(
      "masked_conv2d(Tensor x, Tensor weight, Tensor? bias, str mask_type, int dilation,"
      " int color_groups) -> Tensor");
  m.def(
      "_masked_conv2d_backward(Tensor grad_out, Tensor x, Tensor weight, str mask_type,"
      " int dilation, int color_groups, bool[3] output_mask)"
      " -> (Tensor grad_x, Tensor grad_weight, Tensor grad_bias)");
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, module) {
  module.doc() = "mmgen native kernels (operators are registered under torch.ops.mmgen)";
  module.def("build_info_json", [] { return std::string(MMGEN_BUILD_INFO_JSON); },
             "JSON record of the torch / CUDA versions and archs this library was built for");
}
