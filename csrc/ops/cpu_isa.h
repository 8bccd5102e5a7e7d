// The x86-64 level the CPU kernels run at: one check, used by every op that dispatches by ISA.
#pragma once

namespace mmgen {

// x86-64 psABI levels the CPU kernels are compiled for: x86-64-v4 ("avx512": AVX-512 F, BW, CD, DQ
// and VL on top of v3), x86-64-v3 ("avx2": AVX, AVX2, BMI1, BMI2, F16C, FMA, LZCNT, MOVBE and
// XSAVE on top of v2) and the baseline every x86-64 CPU (and every other architecture) runs.
enum class CpuIsa : int { kBaseline = 0, kAvx2 = 1, kAvx512 = 2 };

// The highest level whose every extension the CPU reports and whose register state the OS saves
// (XCR0: the AVX state for v3, the opmask and ZMM state for v4). Baseline off x86-64.
CpuIsa cpu_isa_supported();

// The level in use: cpu_isa_supported(), or a lower one named by MMGEN_CPU_ISA ("avx512", "avx2" or
// "baseline"; a level above the supported one gives the supported one). Read once per process.
CpuIsa cpu_isa();

const char* cpu_isa_name(CpuIsa isa);

}  // namespace mmgen

// Function attributes compiling one function for a level: with GCC >= 11 or clang >= 12 on x86-64
// (the first releases that know the x86-64-v3 / v4 names). Elsewhere (aarch64, MSVC, older
// compilers) only the baseline code exists, MMGEN_X86_DISPATCH is undefined and cpu_isa() is the
// baseline whatever the CPU supports.
#if defined(__x86_64__) && \
    ((defined(__clang__) && __clang_major__ >= 12) || (!defined(__clang__) && defined(__GNUC__) && __GNUC__ >= 11))
#define MMGEN_X86_DISPATCH 1
#define MMGEN_TARGET_AVX512 __attribute__((target("arch=x86-64-v4")))
#define MMGEN_TARGET_AVX2 __attribute__((target("arch=x86-64-v3")))
#endif
