// Counter-based normal random numbers shared by the CPU and CUDA kernels.
//
// Stream layout (the same on every device, so CPU and CUDA draw the same numbers):
//   key     = (seed lo, seed hi)
//   counter = (offset/4 lo, offset/4 hi, group lo, group hi)   -- curand's (offset, subsequence)
// where `offset` is the generator offset reserved for one op call (advanced by 4, as torch's own
// Philox ops do) and `group` = element index / 4. One Philox4x32-10 call yields four uint32 that
// Box-Muller turns into the normals of elements 4*group .. 4*group+3.
//
// Float math uses short polynomials (written branch-free so the CPU loops vectorize and so CPU and
// CUDA evaluate the same formulas); double math uses the standard library.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#define MMGEN_HD __host__ __device__ __forceinline__
#else
#define MMGEN_HD inline __attribute__((always_inline))
#endif

namespace mmgen {
namespace philox {

constexpr uint64_t kOffsetIncrement = 4;

struct Uint4 {
  uint32_t x, y, z, w;
};

MMGEN_HD Uint4 philox4x32_10(Uint4 c, uint32_t k0, uint32_t k1) {
#pragma unroll
  for (int round = 0; round < 10; ++round) {
    const uint64_t p0 = static_cast<uint64_t>(0xD2511F53u) * c.x;
    const uint64_t p1 = static_cast<uint64_t>(0xCD9E8D57u) * c.z;
    c = Uint4{static_cast<uint32_t>(p1 >> 32) ^ c.y ^ k0, static_cast<uint32_t>(p1),
              static_cast<uint32_t>(p0 >> 32) ^ c.w ^ k1, static_cast<uint32_t>(p0)};
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  return c;
}

MMGEN_HD Uint4 random_group(uint64_t seed, uint64_t offset, uint64_t group) {
  const uint64_t base = offset / 4;
  return philox4x32_10(Uint4{static_cast<uint32_t>(base), static_cast<uint32_t>(base >> 32),
                             static_cast<uint32_t>(group), static_cast<uint32_t>(group >> 32)},
                       static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32));
}

MMGEN_HD float bits_as_float(uint32_t b) {
  float f;
  memcpy(&f, &b, sizeof(f));
  return f;
}

MMGEN_HD uint32_t float_as_bits(float f) {
  uint32_t b;
  memcpy(&b, &f, sizeof(b));
  return b;
}

// Natural log for normal positive floats (the only inputs Box-Muller gives it).
MMGEN_HD float log_f32(float x) {
  const uint32_t bits = float_as_bits(x);
  int e = static_cast<int>((bits >> 23) & 0xff) - 126;  // x = m * 2^e with m in [0.5, 1)
  float m = bits_as_float((bits & 0x007fffffu) | 0x3f000000u);
  const bool small = m < 0.70710678f;
  e = small ? e - 1 : e;
  m = small ? m + m - 1.0f : m - 1.0f;
  const float z = m * m;
  float y = 7.0376836292e-2f;
  y = y * m - 1.1514610310e-1f;
  y = y * m + 1.1676998740e-1f;
  y = y * m - 1.2420140846e-1f;
  y = y * m + 1.4249322787e-1f;
  y = y * m - 1.6668057665e-1f;
  y = y * m + 2.0000714765e-1f;
  y = y * m - 2.4999993993e-1f;
  y = y * m + 3.3333331174e-1f;
  y = y * m * z;
  const float fe = static_cast<float>(e);
  y += -2.12194440e-4f * fe;
  y += -0.5f * z;
  return m + y + 0.693359375f * fe;
}

// exp for floats, as std::exp rounds it: finite up to the overflow point ln(FLT_MAX) = 88.72284,
// +inf above, subnormal results down to exp(-103.97), 0 below; NaN stays NaN. Branch-free; n =
// round(x / ln 2) is found by adding 1.5 * 2^23, which leaves n in the mantissa. 2^n is applied as
// 2^(n/2) * 2^(n - n/2) so that n = 128 (x up to 88.72) and n < -126 (subnormal results) work too.
MMGEN_HD float exp_f32(float x) {
  float xc = x > 88.7228394f ? 88.7228394f : x;  // the largest float whose exp is finite
  xc = xc < -104.0f ? -104.0f : xc;
  const float shifted = xc * 1.44269504088896341f + 12582912.0f;
  const float n = shifted - 12582912.0f;
  const int32_t ni = static_cast<int32_t>(float_as_bits(shifted) - 0x4B400000u);
  float r = xc - n * 0.693359375f;
  r = r + n * 2.12194440e-4f;
  const float z = r * r;
  float y = 1.9875691500e-4f;
  y = y * r + 1.3981999507e-3f;
  y = y * r + 8.3334519073e-3f;
  y = y * r + 4.1665795894e-2f;
  y = y * r + 1.6666665459e-1f;
  y = y * r + 5.0000001201e-1f;
  y = y * z + r + 1.0f;
  const int32_t half = ni >> 1;  // n in [-150, 128]: both factors are normal floats
  const float scale_a = bits_as_float(static_cast<uint32_t>(half + 127) << 23);
  const float scale_b = bits_as_float(static_cast<uint32_t>(ni - half + 127) << 23);
  float out = (y * scale_a) * scale_b;
  out = x > 88.7228394f ? INFINITY : out;
  return x < -104.0f ? 0.0f : out;
}

// sin and cos of 2*pi*(bits + 0.5)/2^32, reduced exactly in integers to [-pi/4, pi/4].
MMGEN_HD void sincos_turn_f32(uint32_t bits, float* s, float* c) {
  const uint32_t quadrant = ((bits >> 29) + 1) >> 1 & 3u;
  const int32_t rest = static_cast<int32_t>(bits - (quadrant << 30));
  const float phi = (static_cast<float>(rest) + 0.5f) * 1.46291807926715968e-9f;  // 2pi / 2^32
  const float z = phi * phi;
  float sn = -1.9515295891e-4f;
  sn = sn * z + 8.3321608736e-3f;
  sn = sn * z - 1.6666654611e-1f;
  sn = sn * z * phi + phi;
  float cs = 2.443315711809948e-5f;
  cs = cs * z - 1.388731625493765e-3f;
  cs = cs * z + 4.166664568298827e-2f;
  cs = cs * z * z - 0.5f * z + 1.0f;
  const bool swap = quadrant & 1u;
  const float s0 = swap ? cs : sn;
  const float c0 = swap ? sn : cs;
  *s = (quadrant >= 2u) ? -s0 : s0;
  *c = (quadrant == 1u || quadrant == 2u) ? -c0 : c0;
}

// Four standard normals from four uint32: Box-Muller on (x, y) and on (z, w).
MMGEN_HD void box_muller_f32(Uint4 r, float out[4]) {
  const float u0 = static_cast<float>(r.x) * 2.3283064365386963e-10f + 1.1641532182693481e-10f;
  const float u1 = static_cast<float>(r.z) * 2.3283064365386963e-10f + 1.1641532182693481e-10f;
  const float rad0 = sqrtf(-2.0f * log_f32(u0));
  const float rad1 = sqrtf(-2.0f * log_f32(u1));
  float s0, c0, s1, c1;
  sincos_turn_f32(r.y, &s0, &c0);
  sincos_turn_f32(r.w, &s1, &c1);
  out[0] = rad0 * c0;
  out[1] = rad0 * s0;
  out[2] = rad1 * c1;
  out[3] = rad1 * s1;
}

MMGEN_HD void box_muller_f64(Uint4 r, double out[4]) {
  const double two_pi_over_2_32 = 1.4629180792671596e-09;
  const double u0 = (static_cast<double>(r.x) + 0.5) * 2.3283064365386963e-10;
  const double u1 = (static_cast<double>(r.z) + 0.5) * 2.3283064365386963e-10;
  const double rad0 = sqrt(-2.0 * log(u0));
  const double rad1 = sqrt(-2.0 * log(u1));
  const double t0 = (static_cast<double>(r.y) + 0.5) * two_pi_over_2_32;
  const double t1 = (static_cast<double>(r.w) + 0.5) * two_pi_over_2_32;
  out[0] = rad0 * cos(t0);
  out[1] = rad0 * sin(t0);
  out[2] = rad1 * cos(t1);
  out[3] = rad1 * sin(t1);
}

}  // namespace philox
}  // namespace mmgen
