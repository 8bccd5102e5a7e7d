// CPU kernels for mmgen::reparameterize, mmgen::_reparameterize_backward and mmgen::gaussian_kl.
//
// The tensor is treated as one flat array (the noise stream depends only on the flat index) cut into
// tiles of kChunk elements, whatever the row length: a 1-D tensor or one of two columns keeps every
// thread busy and draws each Philox group once. Per-row KL sums are kept in a fixed order (within a
// tile, then tile by tile), so they do not depend on the thread count. Inside a tile, blocks of
// kBlock elements go through float (or double) scratch buffers on the stack; the float loops are
// compiled for x86-64-v4 (AVX-512), v3 (AVX2) and the baseline, and the level is picked once by
// cpu_isa() (ops/cpu_isa.h).
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Generator.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <c10/util/SmallVector.h>
#include <torch/library.h>

#include <algorithm>

#include "ops/cpu_isa.h"
#include "ops/philox.h"
#ifdef MMGEN_X86_DISPATCH
#include <immintrin.h>
#endif
#include "ops/reparameterize.h"
#include "ops/rng.h"

// The float loops' bodies are inlined into one entry point per ISA level (MMGEN_FLOAT_LOOPS).
#define MMGEN_INLINE inline __attribute__((always_inline))
#define MMGEN_RESTRICT __restrict__

namespace mmgen {
namespace {

using at::Tensor;

constexpr int64_t kBlock = 256;    // elements per scratch block (a multiple of 4)
constexpr int64_t kChunk = 16384;  // elements per tile (a multiple of kBlock)
constexpr int64_t kGroups = kBlock / 4;

// Philox of groups g0 + j for j in [j0, groups), into structure of arrays (the compiler vectorizes
// the loop).
MMGEN_INLINE void philox_groups(uint64_t seed, uint64_t offset, int64_t g0, int64_t j0, int64_t groups,
                                uint32_t* rx, uint32_t* ry, uint32_t* rz, uint32_t* rw) {
  for (int64_t j = j0; j < groups; ++j) {
    const philox::Uint4 r = philox::random_group(seed, offset, static_cast<uint64_t>(g0 + j));
    rx[j] = r.x;
    ry[j] = r.y;
    rz[j] = r.z;
    rw[j] = r.w;
  }
}

#ifdef MMGEN_X86_DISPATCH
// The high and low 32-bit words of a * m in every 32-bit lane (m: the multiplier, zero-extended in
// every 64-bit lane): vpmuludq on the even lanes and on the odd lanes shifted down, blended back.
MMGEN_TARGET_AVX512 MMGEN_INLINE void mul_hi_lo_avx512(__m512i a, __m512i m, __m512i* hi, __m512i* lo) {
  constexpr __mmask16 kOdd = 0xAAAA;
  const __m512i even = _mm512_mul_epu32(a, m), odd = _mm512_mul_epu32(_mm512_srli_epi64(a, 32), m);
  *hi = _mm512_mask_blend_epi32(kOdd, _mm512_srli_epi64(even, 32), odd);
  *lo = _mm512_mask_blend_epi32(kOdd, even, _mm512_slli_epi64(odd, 32));
}

// The same for x86-64-v4, 16 groups per step with intrinsics. GCC vectorizes the loop above for v4
// with vpmullq, a 64x64-bit multiply of the zero-extended words (3 uops and 15 cycles of latency on
// Intel cores, where it dominated the forward pass); the 32x32->64-bit multiply is vpmuludq (one
// uop), which takes the even 32-bit lanes: the odd lanes are shifted down and multiplied
// separately, and the high and low words blended back into lane order. Same integers as
// philox4x32_10.
MMGEN_TARGET_AVX512 void philox_groups_avx512(uint64_t seed, uint64_t offset, int64_t g0,
                                                           int64_t j0, int64_t groups, uint32_t* rx,
                                                           uint32_t* ry, uint32_t* rz, uint32_t* rw) {
  const __m512i m0 = _mm512_set1_epi64(0xD2511F53u), m1 = _mm512_set1_epi64(0xCD9E8D57u);
  const __m512i lanes = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  const uint64_t base = offset / 4;
  int64_t j = j0;
  for (; j + 16 <= groups; j += 16) {
    const uint64_t g = static_cast<uint64_t>(g0 + j);
    __m512i x = _mm512_set1_epi32(static_cast<int32_t>(static_cast<uint32_t>(base)));
    __m512i y = _mm512_set1_epi32(static_cast<int32_t>(static_cast<uint32_t>(base >> 32)));
    // counter words 2 and 3: the 64-bit group index g + lane, its low word wrapping with a carry
    const __m512i g_lo = _mm512_set1_epi32(static_cast<int32_t>(static_cast<uint32_t>(g)));
    __m512i z = _mm512_add_epi32(g_lo, lanes);
    __m512i w = _mm512_set1_epi32(static_cast<int32_t>(static_cast<uint32_t>(g >> 32)));
    w = _mm512_mask_add_epi32(w, _mm512_cmplt_epu32_mask(z, g_lo), w, _mm512_set1_epi32(1));
    uint32_t k0 = static_cast<uint32_t>(seed), k1 = static_cast<uint32_t>(seed >> 32);
    for (int round = 0; round < 10; ++round) {
      __m512i hi0, lo0, hi1, lo1;
      mul_hi_lo_avx512(x, m0, &hi0, &lo0);
      mul_hi_lo_avx512(z, m1, &hi1, &lo1);
      x = _mm512_xor_si512(_mm512_xor_si512(hi1, y), _mm512_set1_epi32(static_cast<int32_t>(k0)));
      y = lo1;
      z = _mm512_xor_si512(_mm512_xor_si512(hi0, w), _mm512_set1_epi32(static_cast<int32_t>(k1)));
      w = lo0;
      k0 += 0x9E3779B9u;
      k1 += 0xBB67AE85u;
    }
    _mm512_storeu_si512(rx + j, x);
    _mm512_storeu_si512(ry + j, y);
    _mm512_storeu_si512(rz + j, z);
    _mm512_storeu_si512(rw + j, w);
  }
  philox_groups(seed, offset, g0, j, groups, rx, ry, rz, rw);  // the last groups, fewer than 16
}

// The same for x86-64-v3, 8 groups per step. GCC vectorizes the generic loop for v3 with 64-bit
// lanes (4 groups per register, widened and narrowed around every multiply), which made the
// normals three times the AVX-512 path's time per element; here the 32-bit lanes stay packed.
// AVX2 has no unsigned compare: the counter's carry compares with the sign bit flipped.
MMGEN_TARGET_AVX2 MMGEN_INLINE void mul_hi_lo_avx2(__m256i a, __m256i m, __m256i* hi, __m256i* lo) {
  constexpr int kOdd = 0xAA;
  const __m256i even = _mm256_mul_epu32(a, m), odd = _mm256_mul_epu32(_mm256_srli_epi64(a, 32), m);
  *hi = _mm256_blend_epi32(_mm256_srli_epi64(even, 32), odd, kOdd);
  *lo = _mm256_blend_epi32(even, _mm256_slli_epi64(odd, 32), kOdd);
}

MMGEN_TARGET_AVX2 void philox_groups_avx2(uint64_t seed, uint64_t offset, int64_t g0, int64_t j0,
                                          int64_t groups, uint32_t* rx, uint32_t* ry, uint32_t* rz,
                                          uint32_t* rw) {
  const __m256i m0 = _mm256_set1_epi64x(0xD2511F53u), m1 = _mm256_set1_epi64x(0xCD9E8D57u);
  const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  const __m256i sign = _mm256_set1_epi32(static_cast<int32_t>(0x80000000u));
  const uint64_t base = offset / 4;
  int64_t j = j0;
  for (; j + 8 <= groups; j += 8) {
    const uint64_t g = static_cast<uint64_t>(g0 + j);
    __m256i x = _mm256_set1_epi32(static_cast<int32_t>(static_cast<uint32_t>(base)));
    __m256i y = _mm256_set1_epi32(static_cast<int32_t>(static_cast<uint32_t>(base >> 32)));
    const __m256i g_lo = _mm256_set1_epi32(static_cast<int32_t>(static_cast<uint32_t>(g)));
    __m256i z = _mm256_add_epi32(g_lo, lanes);
    __m256i w = _mm256_set1_epi32(static_cast<int32_t>(static_cast<uint32_t>(g >> 32)));
    // z < g_lo (unsigned) where the low word wrapped: -1 there, so subtracting it adds the carry
    const __m256i carry = _mm256_cmpgt_epi32(_mm256_xor_si256(g_lo, sign), _mm256_xor_si256(z, sign));
    w = _mm256_sub_epi32(w, carry);
    uint32_t k0 = static_cast<uint32_t>(seed), k1 = static_cast<uint32_t>(seed >> 32);
    for (int round = 0; round < 10; ++round) {
      __m256i hi0, lo0, hi1, lo1;
      mul_hi_lo_avx2(x, m0, &hi0, &lo0);
      mul_hi_lo_avx2(z, m1, &hi1, &lo1);
      x = _mm256_xor_si256(_mm256_xor_si256(hi1, y), _mm256_set1_epi32(static_cast<int32_t>(k0)));
      y = lo1;
      z = _mm256_xor_si256(_mm256_xor_si256(hi0, w), _mm256_set1_epi32(static_cast<int32_t>(k1)));
      w = lo0;
      k0 += 0x9E3779B9u;
      k1 += 0xBB67AE85u;
    }
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(rx + j), x);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(ry + j), y);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(rz + j), z);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(rw + j), w);
  }
  philox_groups(seed, offset, g0, j, groups, rx, ry, rz, rw);  // the last groups, fewer than 8
}
#endif

// normals_f32's Philox step per ISA level (types, so that the call inlines).
struct PhiloxPortable {
  MMGEN_INLINE void operator()(uint64_t s, uint64_t o, int64_t g0, int64_t j0, int64_t groups, uint32_t* rx,
                               uint32_t* ry, uint32_t* rz, uint32_t* rw) const {
    philox_groups(s, o, g0, j0, groups, rx, ry, rz, rw);
  }
};
#ifdef MMGEN_X86_DISPATCH
struct PhiloxAvx2 {  // as PhiloxAvx512
  void operator()(uint64_t s, uint64_t o, int64_t g0, int64_t j0, int64_t groups, uint32_t* rx,
                  uint32_t* ry, uint32_t* rz, uint32_t* rw) const {
    philox_groups_avx2(s, o, g0, j0, groups, rx, ry, rz, rw);
  }
};
struct PhiloxAvx512 {  // a call per block of kBlock elements (an AVX-512 function does not inline into generic code)
  void operator()(uint64_t s, uint64_t o, int64_t g0, int64_t j0, int64_t groups,
                                                   uint32_t* rx, uint32_t* ry, uint32_t* rz, uint32_t* rw) const {
    philox_groups_avx512(s, o, g0, j0, groups, rx, ry, rz, rw);
  }
};
#endif

// Normals for flat elements [begin, begin + n), begin a multiple of 4 (a block starts a Philox
// group), n <= kBlock; out has room for n rounded up to 4. Structure of arrays, so that each loop
// vectorizes: Philox (`philox`: PhiloxPortable or an ISA's own), then Box-Muller, then the four
// lanes interleaved into element order.
template <typename Philox>
MMGEN_INLINE void normals_f32(uint64_t seed, uint64_t offset, int64_t begin, int64_t n, float* out,
                              Philox philox) {
  const int64_t g0 = begin >> 2;
  const int64_t groups = (n + 3) >> 2;
  uint32_t rx[kGroups], ry[kGroups], rz[kGroups], rw[kGroups];
  philox(seed, offset, g0, 0, groups, rx, ry, rz, rw);
  float n0[kGroups], n1[kGroups], n2[kGroups], n3[kGroups];
  for (int64_t j = 0; j < groups; ++j) {
    float o[4];
    philox::box_muller_f32(philox::Uint4{rx[j], ry[j], rz[j], rw[j]}, o);
    n0[j] = o[0];
    n1[j] = o[1];
    n2[j] = o[2];
    n3[j] = o[3];
  }
  for (int64_t j = 0; j < groups; ++j) {
    out[4 * j] = n0[j];
    out[4 * j + 1] = n1[j];
    out[4 * j + 2] = n2[j];
    out[4 * j + 3] = n3[j];
  }
}

void normals_f64(uint64_t seed, uint64_t offset, int64_t begin, int64_t n, double* out) {
  for (int64_t i = 0; i < n; i += 4) {
    philox::box_muller_f64(philox::random_group(seed, offset, static_cast<uint64_t>((begin + i) >> 2)),
                           out + i);
  }
}

// Sum of terms[0..n) with 16 running partial sums (a shape the loop vectorizer accepts).
MMGEN_INLINE float sum16(const float* terms, int64_t n) {
  float acc[16] = {0};
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    for (int k = 0; k < 16; ++k) acc[k] += terms[i + k];
  for (; i < n; ++i) acc[i & 15] += terms[i];
  float total = 0.0f;
  for (float a : acc) total += a;
  return total;
}

// z = mu + exp(lv / 2) * eps; with terms, also terms = exp(lv) + mu^2 - 1 - lv.
MMGEN_INLINE void forward_block_f32(const float* MMGEN_RESTRICT mu, const float* MMGEN_RESTRICT lv,
                                    const float* MMGEN_RESTRICT eps, float* MMGEN_RESTRICT z,
                                    float* MMGEN_RESTRICT terms, int64_t n) {
  if (terms == nullptr) {
    for (int64_t i = 0; i < n; ++i) z[i] = mu[i] + philox::exp_f32(0.5f * lv[i]) * eps[i];
    return;
  }
  for (int64_t i = 0; i < n; ++i) {
    const float sd = philox::exp_f32(0.5f * lv[i]);
    z[i] = mu[i] + sd * eps[i];
    terms[i] = sd * sd + mu[i] * mu[i] - 1.0f - lv[i];
  }
}

MMGEN_INLINE void kl_block_f32(const float* MMGEN_RESTRICT mu, const float* MMGEN_RESTRICT lv,
                               float* MMGEN_RESTRICT terms, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const float sd = philox::exp_f32(0.5f * lv[i]);
    terms[i] = sd * sd + mu[i] * mu[i] - 1.0f - lv[i];
  }
}

// grad_mu = gz + gk * mu;  grad_lv = gz * eps * sd / 2 + gk * (sd^2 - 1) / 2, with gk per element
// (the row's grad_kl), either of gz, gk absent (nullptr), and gmu nullptr when grad_mu is not
// wanted. The pointers are restrict-qualified: without it GCC needs more run-time alias checks than
// it allows (7 arrays) and keeps these loops scalar, which made the backward twice the forward's
// time.
MMGEN_INLINE void backward_block_f32(const float* MMGEN_RESTRICT gz, const float* MMGEN_RESTRICT gk,
                                     const float* MMGEN_RESTRICT mu, const float* MMGEN_RESTRICT lv,
                                     const float* MMGEN_RESTRICT eps, float* MMGEN_RESTRICT gmu,
                                     float* MMGEN_RESTRICT glv, int64_t n) {
  if (gmu != nullptr) {
    if (gk == nullptr) {
      for (int64_t i = 0; i < n; ++i) gmu[i] = gz[i];
    } else if (gz == nullptr) {
      for (int64_t i = 0; i < n; ++i) gmu[i] = gk[i] * mu[i];
    } else {
      for (int64_t i = 0; i < n; ++i) gmu[i] = gz[i] + gk[i] * mu[i];
    }
  }
  if (gk == nullptr) {
    for (int64_t i = 0; i < n; ++i) glv[i] = 0.5f * gz[i] * eps[i] * philox::exp_f32(0.5f * lv[i]);
  } else if (gz != nullptr) {
    for (int64_t i = 0; i < n; ++i) {
      const float sd = philox::exp_f32(0.5f * lv[i]);
      glv[i] = 0.5f * (gz[i] * eps[i] * sd + gk[i] * (sd * sd - 1.0f));
    }
  } else {
    for (int64_t i = 0; i < n; ++i) {
      const float sd = philox::exp_f32(0.5f * lv[i]);
      glv[i] = 0.5f * gk[i] * (sd * sd - 1.0f);
    }
  }
}

// The float loops of one ISA level.
struct FloatLoops {
  void (*normals)(uint64_t seed, uint64_t offset, int64_t begin, int64_t n, float* out);
  void (*forward)(const float* mu, const float* lv, const float* eps, float* z, float* terms,
                  int64_t n);
  void (*kl)(const float* mu, const float* lv, float* terms, int64_t n);
  void (*backward)(const float* gz, const float* gk, const float* mu, const float* lv,
                   const float* eps, float* gmu, float* glv, int64_t n);
};

#define MMGEN_FLOAT_LOOPS(level, target, philox)                                                  \
  target void normals_##level(uint64_t s, uint64_t o, int64_t b, int64_t n, float* out) {        \
    normals_f32(s, o, b, n, out, philox);                                                        \
  }                                                                                              \
  target void forward_##level(const float* MMGEN_RESTRICT mu, const float* MMGEN_RESTRICT lv,  \
                              const float* MMGEN_RESTRICT eps, float* MMGEN_RESTRICT z,          \
                              float* MMGEN_RESTRICT terms, int64_t n) {                          \
    forward_block_f32(mu, lv, eps, z, terms, n);                                                 \
  }                                                                                              \
  target void kl_##level(const float* mu, const float* lv, float* terms, int64_t n) {            \
    kl_block_f32(mu, lv, terms, n);                                                              \
  }                                                                                              \
  target void backward_##level(const float* MMGEN_RESTRICT gz, const float* MMGEN_RESTRICT gk,   \
                               const float* MMGEN_RESTRICT mu, const float* MMGEN_RESTRICT lv,   \
                               const float* MMGEN_RESTRICT eps, float* MMGEN_RESTRICT gmu,       \
                               float* MMGEN_RESTRICT glv, int64_t n) {                           \
    backward_block_f32(gz, gk, mu, lv, eps, gmu, glv, n);                                        \
  }                                                                                              \
  constexpr FloatLoops loops_##level{&normals_##level, &forward_##level, &kl_##level,            \
                                     &backward_##level};

MMGEN_FLOAT_LOOPS(baseline, , PhiloxPortable{})
#ifdef MMGEN_X86_DISPATCH
MMGEN_FLOAT_LOOPS(avx2, MMGEN_TARGET_AVX2, PhiloxAvx2{})
MMGEN_FLOAT_LOOPS(avx512, MMGEN_TARGET_AVX512, PhiloxAvx512{})
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

// Per-dtype access to a block: loads it into the compute type and stores it back.
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
  static void forward(const float* mu, const float* lv, const float* eps, float* z, float* terms,
                      int64_t n) {
    float_loops().forward(mu, lv, eps, z, terms, n);
  }
  static void backward(const float* gz, const float* gk, const float* mu, const float* lv,
                       const float* eps, float* gmu, float* glv, int64_t n) {
    float_loops().backward(gz, gk, mu, lv, eps, gmu, glv, n);
  }
  static void kl_terms(const float* mu, const float* lv, float* terms, int64_t n) {
    float_loops().kl(mu, lv, terms, n);
  }
  // A row segment's sum: sum16 (a short segment in order: the same value as sum16 gives it).
  static float sum(const float* terms, int64_t n) {
    if (n >= 16) return sum16(terms, n);
    float total = 0.0f;
    for (int64_t i = 0; i < n; ++i) total += terms[i];
    return total;
  }
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
  static void forward(const double* mu, const double* lv, const double* eps, double* z,
                      double* terms, int64_t n) {
    for (int64_t i = 0; i < n; ++i) {
      const double sd = std::exp(0.5 * lv[i]);
      z[i] = mu[i] + sd * eps[i];
      if (terms != nullptr) terms[i] = sd * sd + mu[i] * mu[i] - 1.0 - lv[i];
    }
  }
  static void backward(const double* gz, const double* gk, const double* mu, const double* lv,
                       const double* eps, double* gmu, double* glv, int64_t n) {
    for (int64_t i = 0; i < n; ++i) {
      const double sd = std::exp(0.5 * lv[i]);
      const double g = gz != nullptr ? gz[i] : 0.0, k = gk != nullptr ? gk[i] : 0.0;
      if (gmu != nullptr) gmu[i] = g + k * mu[i];
      glv[i] = 0.5 * (g * (gz != nullptr ? eps[i] : 0.0) * sd + k * (sd * sd - 1.0));
    }
  }
  static void kl_terms(const double* mu, const double* lv, double* terms, int64_t n) {
    for (int64_t i = 0; i < n; ++i) terms[i] = std::exp(lv[i]) + mu[i] * mu[i] - 1.0 - lv[i];
  }
  static double sum(const double* terms, int64_t n) {
    double total = 0.0;
    for (int64_t i = 0; i < n; ++i) total += terms[i];
    return total;
  }
};

// A flat array of `numel` elements in rows of `cols`, cut into tiles of kChunk elements.
struct Tiles {
  int64_t numel, cols;
  int64_t count() const { return (numel + kChunk - 1) / kChunk; }
  int64_t begin(int64_t t) const { return t * kChunk; }
  int64_t end(int64_t t) const { return std::min(numel, (t + 1) * kChunk); }
  // Calls fn(tile, begin, end) for every tile, in parallel.
  template <typename F>
  void for_each(F fn) const {
    at::parallel_for(0, count(), 1, [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; ++t) fn(t, begin(t), end(t));
    });
  }
};

// The sums of the rows a tile cuts (its first row when it starts before the tile, its last when it
// ends after), added up tile by tile once every tile is done.
struct TileEdges {
  double first = 0.0, last = 0.0;
};

// Per-row sums of one tile, fed block by block in element order: a row inside the tile goes to
// out[row] = sum / 2, a row the tile cuts to its TileEdges.
template <typename T>
class RowSums {
 public:
  using acc_t = typename Block<T>::acc_t;
  RowSums(int64_t begin, int64_t end, int64_t cols, TileEdges* edges, T* out)
      : begin_(begin), end_(end), cols_(cols), first_row_(begin / cols), row_(first_row_),
        edges_(edges), out_(out) {}

  // Adds the terms of flat elements [at, at + n) (consecutive calls cover the tile in order).
  void add(int64_t at, const acc_t* terms, int64_t n) {
    for (int64_t i = 0; i < n;) {
      const int64_t row_end = (row_ + 1) * cols_;
      const int64_t stop = std::min(n, row_end - at);
      sum_ += Block<T>::sum(terms + i, stop - i);
      i = stop;
      if (at + i == row_end) close(row_end);
    }
  }

  // At the end of the tile: a row left open continues in the next tile.
  void finish() {
    if (row_ * cols_ < end_) close((row_ + 1) * cols_);
  }

 private:
  void close(int64_t row_end) {
    const bool cut = row_ * cols_ < begin_ || row_end > end_;
    if (cut && row_ == first_row_) {
      edges_->first = sum_;
    } else if (cut) {
      edges_->last = sum_;
    } else {
      out_[row_] = static_cast<T>(0.5 * sum_);
    }
    sum_ = 0.0;
    ++row_;
  }

  const int64_t begin_, end_, cols_, first_row_;
  int64_t row_;
  double sum_ = 0.0;
  TileEdges* edges_;
  T* out_;
};

// out[row] for the rows that tiles cut, from their edge sums in tile order.
template <typename T>
void finish_cut_rows(const Tiles& tiles, const TileEdges* edges, T* out) {
  const int64_t cols = tiles.cols;
  int64_t open = -1;
  double sum = 0.0;
  for (int64_t t = 0; t < tiles.count(); ++t) {
    const int64_t a = tiles.begin(t), b = tiles.end(t);
    const int64_t first = a / cols, last = (b - 1) / cols;
    if (first * cols < a || (first + 1) * cols > b) {  // the tile cuts its first row
      sum = open == first ? sum + edges[t].first : edges[t].first;
      open = first;
      if ((first + 1) * cols <= b) out[first] = static_cast<T>(0.5 * sum);
    }
    if (last != first && (last + 1) * cols > b) {  // its last row goes on in the next tile
      sum = edges[t].last;
      open = last;
    }
  }
}

template <typename T>
void forward_impl(const T* mu, const T* lv, T* z, int64_t numel, int64_t cols, uint64_t seed,
                  uint64_t offset, T* kl) {
  using acc_t = typename Block<T>::acc_t;
  const Tiles tiles{numel, cols};
  c10::SmallVector<TileEdges, 64> edges(kl != nullptr ? tiles.count() : 0);
  tiles.for_each([&](int64_t t, int64_t t0, int64_t t1) {
    acc_t eps[kBlock], mu_buf[kBlock], lv_buf[kBlock], z_buf[kBlock], terms[kBlock];
    RowSums<T> rows(t0, t1, cols, kl != nullptr ? &edges[t] : nullptr, kl);
    for (int64_t at = t0; at < t1; at += kBlock) {
      const int64_t n = std::min(kBlock, t1 - at);
      Block<T>::normals(seed, offset, at, n, eps);
      acc_t* zo = Block<T>::out(z + at, z_buf);
      Block<T>::forward(Block<T>::load(mu + at, n, mu_buf), Block<T>::load(lv + at, n, lv_buf), eps,
                        zo, kl != nullptr ? terms : nullptr, n);
      Block<T>::store(z + at, zo, n);
      if (kl != nullptr) rows.add(at, terms, n);
    }
    if (kl != nullptr) rows.finish();
  });
  if (kl != nullptr) finish_cut_rows(tiles, edges.data(), kl);
}

// gk[row] of each element of [at, at + n); one division per block.
template <typename T, typename acc_t>
void row_values(const T* gk, int64_t at, int64_t n, int64_t cols, acc_t* out) {
  for (int64_t i = 0, row = at / cols; i < n; ++row) {
    const int64_t stop = std::min(n, (row + 1) * cols - at);
    const acc_t v = static_cast<acc_t>(gk[row]);
    for (; i < stop; ++i) out[i] = v;
  }
}

template <typename T>
void backward_impl(const T* gz, const T* gk, const T* mu, const T* lv, T* gmu, T* glv,
                   int64_t numel, int64_t cols, uint64_t seed, uint64_t offset) {
  using acc_t = typename Block<T>::acc_t;
  Tiles{numel, cols}.for_each([&](int64_t, int64_t t0, int64_t t1) {
    acc_t eps[kBlock], gz_buf[kBlock], gk_buf[kBlock], mu_buf[kBlock], lv_buf[kBlock],
        gmu_buf[kBlock], glv_buf[kBlock];
    for (int64_t at = t0; at < t1; at += kBlock) {
      const int64_t n = std::min(kBlock, t1 - at);
      const acc_t* g = nullptr;
      if (gz != nullptr) {
        Block<T>::normals(seed, offset, at, n, eps);
        g = Block<T>::load(gz + at, n, gz_buf);
      }
      if (gk != nullptr) row_values(gk, at, n, cols, gk_buf);
      acc_t* gmo = gmu != nullptr ? Block<T>::out(gmu + at, gmu_buf) : nullptr;
      acc_t* glo = Block<T>::out(glv + at, glv_buf);
      Block<T>::backward(g, gk != nullptr ? gk_buf : nullptr, Block<T>::load(mu + at, n, mu_buf),
                         Block<T>::load(lv + at, n, lv_buf), eps, gmo, glo, n);
      if (gmu != nullptr) Block<T>::store(gmu + at, gmo, n);
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
  if (return_kl && cols == 0) kl.zero_();  // rows of no elements
  if (mu.numel() == 0) return {z, kl, rng_state};
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, mu.scalar_type(), "reparameterize", [&] {
    forward_impl<scalar_t>(mu.const_data_ptr<scalar_t>(), logvar.const_data_ptr<scalar_t>(),
                           z.mutable_data_ptr<scalar_t>(), mu.numel(), cols, seed, offset,
                           return_kl ? kl.mutable_data_ptr<scalar_t>() : nullptr);
  });
  return {z, kl, rng_state};
}

std::tuple<Tensor, Tensor> reparameterize_backward_kernel(const std::optional<Tensor>& grad_z,
                                                          const std::optional<Tensor>& grad_kl,
                                                          const Tensor& mu_in,
                                                          const Tensor& logvar_in,
                                                          const Tensor& rng_state,
                                                          bool need_grad_mu) {
  const char* op = "mmgen.ops._reparameterize_backward";
  check_gaussian_inputs(mu_in, logvar_in, op);
  check_reparameterize_grads(grad_z, grad_kl, mu_in, rng_state, op);
  const Tensor mu = mu_in.contiguous();
  const Tensor logvar = logvar_in.contiguous();
  const int64_t cols = rows_and_cols(mu).second;
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
  // without need_grad_mu, grad_mu is an empty tensor (the caller has it: grad_z when no grad_kl)
  Tensor grad_mu = need_grad_mu ? at::empty_like(mu) : at::empty({0}, mu.options());
  Tensor grad_logvar = at::empty_like(mu);
  if ((!has_gz && !has_gk) || mu.numel() == 0) return {grad_mu.zero_(), grad_logvar.zero_()};
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, mu.scalar_type(), "reparameterize_backward", [&] {
    backward_impl<scalar_t>(has_gz ? gz.const_data_ptr<scalar_t>() : nullptr,
                            has_gk ? gk.const_data_ptr<scalar_t>() : nullptr,
                            mu.const_data_ptr<scalar_t>(), logvar.const_data_ptr<scalar_t>(),
                            need_grad_mu ? grad_mu.mutable_data_ptr<scalar_t>() : nullptr,
                            grad_logvar.mutable_data_ptr<scalar_t>(), mu.numel(), cols, seed, offset);
  });
  return {grad_mu, grad_logvar};
}

Tensor gaussian_kl_kernel(const Tensor& mu_in, const Tensor& logvar_in) {
  check_gaussian_inputs(mu_in, logvar_in, "mmgen.ops.gaussian_kl");
  const Tensor mu = mu_in.contiguous();
  const Tensor logvar = logvar_in.contiguous();
  const int64_t rows = rows_and_cols(mu).first, cols = rows_and_cols(mu).second;
  Tensor kl = at::empty({rows}, mu.options());
  if (mu.numel() == 0) return kl.zero_();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, mu.scalar_type(), "gaussian_kl", [&] {
    using acc_t = typename Block<scalar_t>::acc_t;
    const scalar_t* m = mu.const_data_ptr<scalar_t>();
    const scalar_t* l = logvar.const_data_ptr<scalar_t>();
    scalar_t* out = kl.mutable_data_ptr<scalar_t>();
    const Tiles tiles{mu.numel(), cols};
    c10::SmallVector<TileEdges, 64> edges(tiles.count());
    tiles.for_each([&](int64_t t, int64_t t0, int64_t t1) {
      acc_t mu_buf[kBlock], lv_buf[kBlock], terms[kBlock];
      RowSums<scalar_t> sums(t0, t1, cols, &edges[t], out);
      for (int64_t at = t0; at < t1; at += kBlock) {
        const int64_t n = std::min(kBlock, t1 - at);
        Block<scalar_t>::kl_terms(Block<scalar_t>::load(m + at, n, mu_buf),
                                  Block<scalar_t>::load(l + at, n, lv_buf), terms, n);
        sums.add(at, terms, n);
      }
      sums.finish();
    });
    finish_cut_rows(tiles, edges.data(), out);
  });
  return kl;
}

}  // namespace

at::Tensor cpu_philox_normals(int64_t seed, int64_t offset, int64_t start, int64_t numel) {
  TORCH_CHECK(start >= 0 && start % 4 == 0, "mmgen._philox_normals: start must be a non-negative multiple of 4, got ",
              start);
  TORCH_CHECK(numel >= 0, "mmgen._philox_normals: numel must be non-negative, got ", numel);
  at::Tensor out = at::empty({numel}, at::TensorOptions().dtype(at::kFloat));
  float* dst = out.mutable_data_ptr<float>();
  float buf[kBlock];
  for (int64_t at = 0; at < numel; at += kBlock) {
    const int64_t n = std::min(kBlock, numel - at);
    float_loops().normals(static_cast<uint64_t>(seed), static_cast<uint64_t>(offset), start + at, n, buf);
    std::copy(buf, buf + n, dst + at);
  }
  return out;
}

TORCH_LIBRARY_IMPL(mmgen, CPU, m) {
  m.impl("reparameterize", &reparameterize_forward_kernel);
  m.impl("_reparameterize_backward", &reparameterize_backward_kernel);
  m.impl("gaussian_kl", &gaussian_kl_kernel);
}

}  // namespace mmgen
