#include "ops/cpu_isa.h"

#include <c10/util/Exception.h>

#include <cstdint>
#include <cstdlib>
#include <string>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#define MMGEN_HAS_CPUID 1
#endif

namespace mmgen {
namespace {

#ifdef MMGEN_HAS_CPUID
constexpr uint32_t bit(int i) { return uint32_t{1} << i; }
bool all(uint32_t reg, uint32_t mask) { return (reg & mask) == mask; }

// XCR0: which register state the OS saves on a context switch (valid once OSXSAVE is set).
uint64_t xcr0() {
  uint32_t lo, hi;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return (static_cast<uint64_t>(hi) << 32) | lo;
}

// Every extension of each level, from CPUID and XCR0.
CpuIsa detect() {
  unsigned a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return CpuIsa::kBaseline;
  // x86-64-v2: SSE3, SSSE3, CMPXCHG16B, SSE4.1, SSE4.2, POPCNT; v3: FMA, MOVBE, XSAVE, AVX, F16C,
  // and OSXSAVE (the OS enabled XGETBV and manages the extended state).
  const uint32_t v2_ecx1 = bit(0) | bit(9) | bit(13) | bit(19) | bit(20) | bit(23);
  const uint32_t v3_ecx1 = bit(12) | bit(22) | bit(26) | bit(27) | bit(28) | bit(29);
  if (!all(c, v2_ecx1 | v3_ecx1)) return CpuIsa::kBaseline;
  if (__get_cpuid_max(0, nullptr) < 7) return CpuIsa::kBaseline;
  __cpuid_count(7, 0, a, b, c, d);
  const uint32_t ebx7 = b;
  if (!all(ebx7, bit(3) | bit(5) | bit(8))) return CpuIsa::kBaseline;  // BMI1, AVX2, BMI2
  // LAHF/SAHF (v2) and LZCNT (v3) are in the extended leaf.
  if (!__get_cpuid(0x80000001u, &a, &b, &c, &d) || !all(c, bit(0) | bit(5))) return CpuIsa::kBaseline;
  const uint64_t os = xcr0();
  if ((os & 0x6) != 0x6) return CpuIsa::kBaseline;  // XMM and YMM state
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 12
  __builtin_cpu_init();
  if (!__builtin_cpu_supports("x86-64-v3")) return CpuIsa::kBaseline;
#endif
  // v4: AVX512F, AVX512DQ, AVX512CD, AVX512BW, AVX512VL, and the opmask / ZMM state.
  const uint32_t v4_ebx7 = bit(16) | bit(17) | bit(28) | bit(30) | bit(31);
  if (!all(ebx7, v4_ebx7) || (os & 0xe0) != 0xe0) return CpuIsa::kAvx2;
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 12
  if (!__builtin_cpu_supports("x86-64-v4")) return CpuIsa::kAvx2;
#endif
  return CpuIsa::kAvx512;
}
#else
CpuIsa detect() { return CpuIsa::kBaseline; }
#endif

CpuIsa parse_isa(const std::string& name) {
  for (CpuIsa isa : {CpuIsa::kBaseline, CpuIsa::kAvx2, CpuIsa::kAvx512})
    if (name == cpu_isa_name(isa)) return isa;
  TORCH_CHECK(false, "MMGEN_CPU_ISA must be one of avx512, avx2, baseline, got '", name, "'");
}

}  // namespace

const char* cpu_isa_name(CpuIsa isa) {
  switch (isa) {
    case CpuIsa::kAvx512: return "avx512";
    case CpuIsa::kAvx2: return "avx2";
    default: return "baseline";
  }
}

CpuIsa cpu_isa_supported() {
#ifdef MMGEN_X86_DISPATCH
  static const CpuIsa supported = detect();
  return supported;
#else
  return CpuIsa::kBaseline;  // this build has no code for the higher levels
#endif
}

CpuIsa cpu_isa() {
  static const CpuIsa in_use = [] {
    const CpuIsa supported = cpu_isa_supported();
    const char* env = std::getenv("MMGEN_CPU_ISA");
    if (env == nullptr || *env == '\0') return supported;
    const CpuIsa asked = parse_isa(env);
    return static_cast<int>(asked) < static_cast<int>(supported) ? asked : supported;
  }();
  return in_use;
}

}  // namespace mmgen
