// CPU kernels for mmgen::reparameterize, mmgen::_reparameterize_backward and mmgen::gaussian_kl.
//
// Work is split into (row, chunk) tiles of at most kChunk elements, so the per-sample KL is summed
// in a fixed order whatever the thread count. Inside a tile, blocks of kBlock elements go through
// float (or double) scratch buffers; the float loops are compiled for x86-64-v4 (AVX-512), v3
// (AVX2) and the baseline, and the level is picked once by cpu_isa() (ops/cpu_isa.h).
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Generator.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <torch/library.h>

#include <vector>

#include "ops/cpu_isa.h"
#include "ops/philox.h"
#include "ops/reparameterize.h"
#include "ops/rng.h"

// The float loops' bodies are inlined into one entry point per ISA level (MMGEN_FLOAT_LOOPS).
#define MMGEN_INLINE inline __attribute__((always_inline))

namespace mmgen {
namespace {

using at::Tensor;

constexpr int64_t kBlock = 256;    // elements per scratch block (a multiple of 4)
constexpr int64_t kChunk = 16384;  // elements per tile (a multiple of kBlock)

// Normals for flat elements [begin, begin + n), n <= kBlock.
MMGEN_INLINE void normals_f32(uint64_t seed, uint64_t offset, int64_t begin, int64_t n,
                                   float* out) {
  constexpr int64_t G = kBlock / 4 + 1;
  const int64_t g0 = begin >> 2;
  const int64_t groups = ((begin + n + 3) >> 2) - g0;
  uint32_t rx[G], ry[G], rz[G], rw[G];
  for (int64_t j = 0; j < groups; ++j) {
    const philox::Uint4 r = philox::random_group(seed, offset, static_cast<uint64_t>(g0 + j));
    rx[j] = r.x;
    ry[j] = r.y;
    rz[j] = r.z;
    rw[j] = r.w;
  }
  float n0[G], n1[G], n2[G], n3[G];
  for (int64_t j = 0; j < groups; ++j) {
    float o[4];
    philox::box_muller_f32(philox::Uint4{rx[j], ry[j], rz[j], rw[j]}, o);
    n0[j] = o[0];
    n1[j] = o[1];
    n2[j] = o[2];
    n3[j] = o[3];
  }
  float all[4 * G];
  for (int64_t j = 0; j < groups; ++j) {
    all[4 * j] = n0[j];
    all[4 * j + 1] = n1[j];
    all[4 * j + 2] = n2[j];
    all[4 * j + 3] = n3[j];
  }
  const float* first = all + (begin - 4 * g0);
  for (int64_t i = 0; i < n; ++i) out[i] = first[i];
}

void normals_f64(uint64_t seed, uint64_t offset, int64_t begin, int64_t n, double* out) {
  for (int64_t i = 0; i < n;) {
    const int64_t e = begin + i;
    double o[4];
    philox::box_muller_f64(philox::random_group(seed, offset, static_cast<uint64_t>(e >> 2)), o);
    for (int64_t lane = e & 3; lane < 4 && i < n; ++lane, ++i) out[i] = o[lane];
  }
}

// Sum of terms[0..n) with 16 running partial sums (a shape the loop vectorizer accepts).
inline __attribute__((always_inline)) float sum16(const float* terms, int64_t n) {
  float acc[16] = {0};
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    for (int k = 0; k < 16; ++k) acc[k] += terms[i + k];
  for (; i < n; ++i) acc[i & 15] += terms[i];
  float total = 0.0f;
  for (float a : acc) total += a;
  return total;
}

// z = mu + exp(lv / 2) * eps; returns sum(exp(lv) + mu^2 - 1 - lv) when with_kl.
MMGEN_INLINE float forward_block_f32(const float* mu, const float* lv, const float* eps,
                                          float* z, int64_t n, bool with_kl) {
  if (!with_kl) {
    for (int64_t i = 0; i < n; ++i) z[i] = mu[i] + philox::exp_f32(0.5f * lv[i]) * eps[i];
    return 0.0f;
  }
  float terms[kBlock];
  for (int64_t i = 0; i < n; ++i) {
    const float sd = philox::exp_f32(0.5f * lv[i]);
    z[i] = mu[i] + sd * eps[i];
    terms[i] = sd * sd + mu[i] * mu[i] - 1.0f - lv[i];
  }
  return sum16(terms, n);
}

MMGEN_INLINE float kl_block_f32(const float* mu, const float* lv, int64_t n) {
  float terms[kBlock];
  for (int64_t i = 0; i < n; ++i) {
    const float sd = philox::exp_f32(0.5f * lv[i]);
    terms[i] = sd * sd + mu[i] * mu[i] - 1.0f - lv[i];
  }
  return sum16(terms, n);
}

// grad_mu = gz + gk * mu;  grad_lv = gz * eps * sd / 2 + gk * (sd^2 - 1) / 2  (absent terms are 0).
MMGEN_INLINE void backward_block_f32(const float* gz, float gk, const float* mu,
                                          const float* lv, const float* eps, float* gmu,
                                          float* glv, int64_t n) {
  if (gz != nullptr) {
    for (int64_t i = 0; i < n; ++i) {
      const float sd = philox::exp_f32(0.5f * lv[i]);
      gmu[i] = gz[i] + gk * mu[i];
      glv[i] = 0.5f * (gz[i] * eps[i] * sd + gk * (sd * sd - 1.0f));
    }
  } else {
    for (int64_t i = 0; i < n; ++i) {
      const float sd = philox::exp_f32(0.5f * lv[i]);
      gmu[i] = gk * mu[i];
      glv[i] = 0.5f * gk * (sd * sd - 1.0f);
    }
  }
}

// The float loops of one ISA level.
struct FloatLoops {
  void (*normals)(uint64_t seed, uint64_t offset, int64_t begin, int64_t n, float* out);
  float (*forward)(const float* mu, const float* lv, const float* eps, float* z, int64_t n,
                   bool with_kl);
  float (*kl)(const float* mu, const float* lv, int64_t n);
  void (*backward)(const float* gz, float gk, const float* mu, const float* lv, const float* eps,
                   float* gmu, float* glv, int64_t n);
};

#define MMGEN_FLOAT_LOOPS(level, target)                                                          \
  target void normals_##level(uint64_t s, uint64_t o, int64_t b, int64_t n, float* out) {        \
    normals_f32(s, o, b, n, out);                                                                \
  }                                                                                              \
  target float forward_##level(const float* mu, const float* lv, const float* eps, float* z,     \
                               int64_t n, bool with_kl) {                                        \
    return forward_block_f32(mu, lv, eps, z, n, with_kl);                                        \
  }                                                                                              \
  target float kl_##level(const float* mu, const float* lv, int64_t n) {                         \
    return kl_block_f32(mu, lv, n);                                                              \
  }                                                                                              \
  target void backward_##level(const float* gz, float gk, const float* mu, const float* lv,      \
                               const float* eps, float* gmu, float* glv, int64_t n) {            \
    backward_block_f32(gz, gk, mu, lv, eps, gmu, glv, n);                                        \
  }                                                                                              \
  constexpr FloatLoops loops_##level{&normals_##level, &forward_##level, &kl_##level,            \
                                     &backward_##level};

MMGEN_FLOAT_LOOPS(baseline, )
#ifdef MMGEN_X86_DISPATCH
MMGEN_FLOAT_LOOPS(avx2, MMGEN_TARGET_AVX2)
MMGEN_FLOAT_LOOPS(avx512, MMGEN_TARGET_AVX512)
#endif

const FloatLoops& float_loops() {
  static const FloatLoops& loops = [] () -> const FloatLoops& {
#ifdef MMGEN_X86_DISPATCH
    if (cpu_isa() == CpuIsa::kAvx512) return loops_avx512;
    if (cpu_isa() == CpuIsa::kAvx2) return loops_avx2;
#endif
    return loops_baseline;
  }();
  return loops;
}

// Per-dtype access to a tile: loads blocks into the compute type and stores them back.
template <typename T>
struct Block {
  using acc_t = float;
  static void normals(uint64_t s, uint64_t o, int64_t b, int64_t n, float* out) {
    float_loops().normals(s, o, b, n, out);
  }
  static const float* load(const T* src, int64_t n, float* buf) {
    for (int64_t i = 0; i < n; ++i) buf[i] = static_cast<float>(src[i]);
    return buf;
  }
  static float* out(T*, float* buf) { return buf; }
  static void store(T* dst, const float* buf, int64_t n) {
    for (int64_t i = 0; i < n; ++i) dst[i] = static_cast<T>(buf[i]);
  }
  static float forward(const float* mu, const float* lv, const float* eps, float* z, int64_t n,
                       bool kl) {
    return float_loops().forward(mu, lv, eps, z, n, kl);
  }
  static void backward(const float* gz, float gk, const float* mu, const float* lv,
                       const float* eps, float* gmu, float* glv, int64_t n) {
    float_loops().backward(gz, gk, mu, lv, eps, gmu, glv, n);
  }
  static float kl_sum(const float* mu, const float* lv, int64_t n) { return float_loops().kl(mu, lv, n); }
};

template <>
struct Block<float> : Block<c10::Half> {
  static const float* load(const float* src, int64_t, float*) { return src; }
  static float* out(float* dst, float*) { return dst; }
  static void store(float*, const float*, int64_t) {}
};

template <>
struct Block<double> {
  using acc_t = double;
  static void normals(uint64_t s, uint64_t o, int64_t b, int64_t n, double* out) {
    normals_f64(s, o, b, n, out);
  }
  static const double* load(const double* src, int64_t, double*) { return src; }
  static double* out(double* dst, double*) { return dst; }
  static void store(double*, const double*, int64_t) {}
  static double forward(const double* mu, const double* lv, const double* eps, double* z,
                        int64_t n, bool kl) {
    double acc = 0.0;
    for (int64_t i = 0; i < n; ++i) {
      const double sd = std::exp(0.5 * lv[i]);
      z[i] = mu[i] + sd * eps[i];
      if (kl) acc += sd * sd + mu[i] * mu[i] - 1.0 - lv[i];
    }
    return acc;
  }
  static void backward(const double* gz, double gk, const double* mu, const double* lv,
                       const double* eps, double* gmu, double* glv, int64_t n) {
    for (int64_t i = 0; i < n; ++i) {
      const double sd = std::exp(0.5 * lv[i]);
      const double g = gz != nullptr ? gz[i] : 0.0;
      gmu[i] = g + gk * mu[i];
      glv[i] = 0.5 * (g * (gz != nullptr ? eps[i] : 0.0) * sd + gk * (sd * sd - 1.0));
    }
  }
  static double kl_sum(const double* mu, const double* lv, int64_t n) {
    double acc = 0.0;
    for (int64_t i = 0; i < n; ++i) acc += std::exp(lv[i]) + mu[i] * mu[i] - 1.0 - lv[i];
    return acc;
  }
};

// Calls fn(row, col_begin, col_end, tile) for every tile of a rows x cols array, in parallel.
template <typename F>
void for_each_tile(int64_t rows, int64_t cols, F fn) {
  const int64_t per_row = (cols + kChunk - 1) / kChunk;
  const int64_t grain = std::max<int64_t>(1, kChunk / std::max<int64_t>(1, std::min(cols, kChunk)));
  at::parallel_for(0, rows * per_row, grain, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t row = t / per_row;
      const int64_t c0 = (t % per_row) * kChunk;
      fn(row, c0, std::min(cols, c0 + kChunk), t);
    }
  });
}

template <typename T>
void forward_impl(const T* mu, const T* lv, T* z, int64_t rows, int64_t cols, uint64_t seed,
                  uint64_t offset, T* kl) {
  using acc_t = typename Block<T>::acc_t;
  const int64_t per_row = (cols + kChunk - 1) / kChunk;
  std::vector<double> partial(kl != nullptr ? rows * per_row : 0);
  for_each_tile(rows, cols, [&](int64_t row, int64_t c0, int64_t c1, int64_t tile) {
    acc_t eps[kBlock], mu_buf[kBlock], lv_buf[kBlock], z_buf[kBlock];
    double sum = 0.0;
    for (int64_t c = c0; c < c1; c += kBlock) {
      const int64_t n = std::min(kBlock, c1 - c);
      const int64_t at = row * cols + c;
      Block<T>::normals(seed, offset, at, n, eps);
      acc_t* zo = Block<T>::out(z + at, z_buf);
      sum += Block<T>::forward(Block<T>::load(mu + at, n, mu_buf), Block<T>::load(lv + at, n, lv_buf),
                               eps, zo, n, kl != nullptr);
      Block<T>::store(z + at, zo, n);
    }
    if (kl != nullptr) partial[tile] = sum;
  });
  if (kl != nullptr) {
    for (int64_t r = 0; r < rows; ++r) {
      double s = 0.0;
      for (int64_t c = 0; c < per_row; ++c) s += partial[r * per_row + c];
      kl[r] = static_cast<T>(0.5 * s);
    }
  }
}

template <typename T>
void backward_impl(const T* gz, const T* gk, const T* mu, const T* lv, T* gmu, T* glv,
                   int64_t rows, int64_t cols, uint64_t seed, uint64_t offset) {
  using acc_t = typename Block<T>::acc_t;
  for_each_tile(rows, cols, [&](int64_t row, int64_t c0, int64_t c1, int64_t) {
    acc_t eps[kBlock], gz_buf[kBlock], mu_buf[kBlock], lv_buf[kBlock], gmu_buf[kBlock],
        glv_buf[kBlock];
    const acc_t k = gk != nullptr ? static_cast<acc_t>(gk[row]) : acc_t(0);
    for (int64_t c = c0; c < c1; c += kBlock) {
      const int64_t n = std::min(kBlock, c1 - c);
      const int64_t at = row * cols + c;
      const acc_t* g = nullptr;
      if (gz != nullptr) {
        Block<T>::normals(seed, offset, at, n, eps);
        g = Block<T>::load(gz + at, n, gz_buf);
      }
      acc_t* gmo = Block<T>::out(gmu + at, gmu_buf);
      acc_t* glo = Block<T>::out(glv + at, glv_buf);
      Block<T>::backward(g, k, Block<T>::load(mu + at, n, mu_buf),
                         Block<T>::load(lv + at, n, lv_buf), eps, gmo, glo, n);
      Block<T>::store(gmu + at, gmo, n);
      Block<T>::store(glv + at, glo, n);
    }
  });
}

std::tuple<Tensor, Tensor, Tensor> reparameterize_forward_kernel(
    const Tensor& mu_in, const Tensor& logvar_in, const std::optional<at::Generator>& generator,
    bool return_kl) {
  check_gaussian_inputs(mu_in, logvar_in, "mmgen.ops.reparameterize");
  check_generator_device(generator, mu_in.device(), "mmgen.ops.reparameterize");
  const Tensor mu = mu_in.contiguous();
  const Tensor logvar = logvar_in.contiguous();
  const int64_t rows = rows_and_cols(mu).first, cols = rows_and_cols(mu).second;
  const auto seed_offset = cpu_philox_seed_offset(generator, philox::kOffsetIncrement);
  const uint64_t seed = seed_offset.first, offset = seed_offset.second;
  Tensor rng_state = at::empty({2}, mu.options().dtype(at::kLong));
  rng_state.data_ptr<int64_t>()[0] = static_cast<int64_t>(seed);
  rng_state.data_ptr<int64_t>()[1] = static_cast<int64_t>(offset);
  Tensor z = at::empty_like(mu);
  Tensor kl = at::empty({return_kl ? rows : 0}, mu.options());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, mu.scalar_type(), "reparameterize", [&] {
    forward_impl<scalar_t>(mu.const_data_ptr<scalar_t>(), logvar.const_data_ptr<scalar_t>(),
                           z.mutable_data_ptr<scalar_t>(), rows, cols, seed, offset,
                           return_kl ? kl.mutable_data_ptr<scalar_t>() : nullptr);
  });
  return {z, kl, rng_state};
}

std::tuple<Tensor, Tensor> reparameterize_backward_kernel(const std::optional<Tensor>& grad_z,
                                                          const std::optional<Tensor>& grad_kl,
                                                          const Tensor& mu_in,
                                                          const Tensor& logvar_in,
                                                          const Tensor& rng_state) {
  const char* op = "mmgen.ops._reparameterize_backward";
  check_gaussian_inputs(mu_in, logvar_in, op);
  check_reparameterize_grads(grad_z, grad_kl, mu_in, rng_state, op);
  const Tensor mu = mu_in.contiguous();
  const Tensor logvar = logvar_in.contiguous();
  const int64_t rows = rows_and_cols(mu).first, cols = rows_and_cols(mu).second;
  const bool has_gz = grad_z.has_value() && grad_z->defined();
  const bool has_gk = grad_kl.has_value() && grad_kl->defined();
  Tensor gz, gk;
  uint64_t seed = 0, offset = 0;
  if (has_gz) {
    gz = grad_z->to(mu.scalar_type()).contiguous();
    const Tensor st = rng_state.cpu();
    seed = static_cast<uint64_t>(st.data_ptr<int64_t>()[0]);
    offset = static_cast<uint64_t>(st.data_ptr<int64_t>()[1]);
  }
  if (has_gk) gk = grad_kl->to(mu.scalar_type()).contiguous();
  Tensor grad_mu = at::empty_like(mu);
  Tensor grad_logvar = at::empty_like(mu);
  if (!has_gz && !has_gk) return {grad_mu.zero_(), grad_logvar.zero_()};
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, mu.scalar_type(), "reparameterize_backward", [&] {
    backward_impl<scalar_t>(has_gz ? gz.const_data_ptr<scalar_t>() : nullptr,
                            has_gk ? gk.const_data_ptr<scalar_t>() : nullptr,
                            mu.const_data_ptr<scalar_t>(), logvar.const_data_ptr<scalar_t>(),
                            grad_mu.mutable_data_ptr<scalar_t>(),
                            grad_logvar.mutable_data_ptr<scalar_t>(), rows, cols, seed, offset);
  });
  return {grad_mu, grad_logvar};
}

Tensor gaussian_kl_kernel(const Tensor& mu_in, const Tensor& logvar_in) {
  check_gaussian_inputs(mu_in, logvar_in, "mmgen.ops.gaussian_kl");
  const Tensor mu = mu_in.contiguous();
  const Tensor logvar = logvar_in.contiguous();
  const int64_t rows = rows_and_cols(mu).first, cols = rows_and_cols(mu).second;
  Tensor kl = at::empty({rows}, mu.options());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, mu.scalar_type(), "gaussian_kl", [&] {
    using acc_t = typename Block<scalar_t>::acc_t;
    const scalar_t* m = mu.const_data_ptr<scalar_t>();
    const scalar_t* l = logvar.const_data_ptr<scalar_t>();
    const int64_t per_row = (cols + kChunk - 1) / kChunk;
    std::vector<double> partial(rows * per_row);
    for_each_tile(rows, cols, [&](int64_t row, int64_t c0, int64_t c1, int64_t tile) {
      acc_t mu_buf[kBlock], lv_buf[kBlock];
      double sum = 0.0;
      for (int64_t c = c0; c < c1; c += kBlock) {
        const int64_t n = std::min(kBlock, c1 - c);
        const int64_t at = row * cols + c;
        sum += Block<scalar_t>::kl_sum(Block<scalar_t>::load(m + at, n, mu_buf),
                                       Block<scalar_t>::load(l + at, n, lv_buf), n);
      }
      partial[tile] = sum;
    });
    scalar_t* out = kl.mutable_data_ptr<scalar_t>();
    for (int64_t r = 0; r < rows; ++r) {
      double s = 0.0;
      for (int64_t c = 0; c < per_row; ++c) s += partial[r * per_row + c];
      out[r] = static_cast<scalar_t>(0.5 * s);
    }
  });
  return kl;
}

}  // namespace

TORCH_LIBRARY_IMPL(mmgen, CPU, m) {
  m.impl("reparameterize", &reparameterize_forward_kernel);
  m.impl("_reparameterize_backward", &reparameterize_backward_kernel);
  m.impl("gaussian_kl", &gaussian_kl_kernel);
}

}  // namespace mmgen
