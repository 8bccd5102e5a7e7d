// CPU kernels for mmgen::vq_nearest, mmgen::vector_quantize, mmgen::_vector_quantize_backward and
// mmgen::vq_ema_stats.
//
// Nearest code search: argmin_k ||e_k||^2 - 2 x.e_k, never forming the N x K distance matrix. The
// codebook is packed once per call into tiles of C codes laid out [D][C] (with ||e||^2 alongside,
// +inf for padding), so one SIMD load gives one feature of C/lanes codes. A block of x rows stays
// in cache while every code tile goes by; for each (6 rows x C codes) register tile the dot
// products accumulate over D in registers, and the per-lane running minimum (value, index) is kept
// per row. Codes are visited in increasing order and replaced only on a strictly smaller distance,
// so ties go to the lowest index. The SIMD width follows cpu_isa() (AVX-512, AVX2, SSE2).
//
// The GEMM path (float32 and float64, where the shape makes it faster; see use_gemm_path): the
// dot products of a block of rows with a block of codes come from torch's matrix multiply (at::mm
// into a per-thread buffer of at most kGemmTileElems entries, never N x K), then one SIMD pass
// ranks ||e||^2 - 2 x.e with the same running per-lane minimum (strictly smaller replaces, codes
// in increasing order), so both paths rank by the same expression and break ties the same way.
// sqdist is recomputed directly as sum_d (x_d - e_d)^2 for the chosen code on either path.
//
// The codebook gradient and the EMA statistics are segmented sums: rows are grouped by code with
// a counting sort, then each code sums its rows in row order (deterministic for any thread count).
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/LegacyTypeDispatch.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/from_blob.h>
#include <ATen/ops/mm.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <cstdlib>
#include <cstring>
#include <string>
#include <limits>
#include <type_traits>
#include <vector>

#include "ops/cpu_isa.h"
#include "ops/vq.h"

namespace mmgen {
namespace {

using at::Tensor;

constexpr int kTileRows = 6;   // rows of x in a register tile
// SIMD vectors of codes in a register tile: kTileRows x this many accumulators must fit in the
// 32 AVX-512 registers (24) or the 16 AVX2 / SSE registers (12).
constexpr int tile_vecs(int simd_bytes) { return simd_bytes == 64 ? 4 : 2; }
constexpr int64_t kBlockBytes = 32 * 1024;  // target size of the block of x rows kept in cache
// Elements (rows x D) below which the elementwise and segmented-sum loops stay on one thread: a
// parallel region costs more than such work (and, on a busy machine, waits for a second core).
constexpr int64_t kSerialElems = 64 * 1024;

template <typename T>
using acc_type = std::conditional_t<std::is_same_v<T, double>, double, float>;

// SIMD vectors of kBytes bytes (GCC vector extensions; lowered to whatever the target has). Code
// indices ride along in integer lanes of the same width as A.
template <typename A, int kBytes>
struct Simd {
  using index_t = std::conditional_t<sizeof(A) == 8, int64_t, int32_t>;
  typedef A vec __attribute__((vector_size(kBytes)));
  typedef index_t ivec __attribute__((vector_size(kBytes)));
  static constexpr int kLanes = kBytes / sizeof(A);
  static constexpr int kVecs = tile_vecs(kBytes);
  static constexpr int kCodes = kLanes * kVecs;  // codes per packed tile
};

// The codebook in tiles of `codes_per_tile` codes: pack[t][d][c] = e[t * C + c][d] (0 past K),
// norms[t * C + c] = ||e||^2 (+inf past K).
template <typename A>
struct PackedCodebook {
  std::vector<A> pack, norms;
  int64_t tiles = 0, dim = 0, codes_per_tile = 0;

  template <typename T>
  PackedCodebook(const T* codebook, int64_t K, int64_t D, int64_t C)
      : tiles((K + C - 1) / C), dim(D), codes_per_tile(C) {
    pack.assign(tiles * D * C, A(0));
    norms.assign(tiles * C, std::numeric_limits<A>::infinity());
    at::parallel_for(0, K, 64, [&](int64_t k0, int64_t k1) {
      for (int64_t k = k0; k < k1; ++k) {
        A* dst = pack.data() + (k / C) * D * C + k % C;
        A norm = 0;
        for (int64_t d = 0; d < D; ++d) {
          const A v = static_cast<A>(codebook[k * D + d]);
          dst[d * C] = v;
          norm += v * v;
        }
        norms[k] = norm;
      }
    });
  }
  A at(int64_t k, int64_t d) const {
    return pack[(k / codes_per_tile) * dim * codes_per_tile + d * codes_per_tile + k % codes_per_tile];
  }
};

// The lowest of n (value, index) pairs, ties to the lowest index: the winner among the per-lane
// minima a row's scan kept.
template <typename A, typename I>
I lane_argmin(const A* val, const I* idx, int64_t n) {
  A m = val[0];
  I k = idx[0];
  for (int64_t c = 1; c < n; ++c) {
    if (val[c] < m || (val[c] == m && idx[c] < k)) {
      m = val[c];
      k = idx[c];
    }
  }
  return k;
}

// For `rows` contiguous rows of x (in the compute type), the index of the nearest code of each.
// best_val / best_idx: scratch of rows * C entries.
template <typename A, int kBytes>
__attribute__((always_inline)) inline void scan_block(
    const A* x, int64_t rows, int64_t D, const A* pack, const A* norms, int64_t tiles,
    A* best_val, typename Simd<A, kBytes>::index_t* best_idx, int64_t* out, int64_t K) {
  using S = Simd<A, kBytes>;
  using vec = typename S::vec;
  using ivec = typename S::ivec;
  using index_t = typename S::index_t;
  constexpr int L = S::kLanes, C = S::kCodes, kTileVecs = S::kVecs;
  for (int64_t i = 0; i < rows * C; ++i) {
    best_val[i] = std::numeric_limits<A>::infinity();
    best_idx[i] = 0;
  }
  ivec iota;
  for (int l = 0; l < L; ++l) iota[l] = l;
  const vec two = vec{} + A(2);
  for (int64_t t = 0; t < tiles; ++t) {
    const A* codes = pack + t * D * C;
    vec norm[kTileVecs];
    std::memcpy(norm, norms + t * C, sizeof(norm));
    for (int64_t r0 = 0; r0 < rows; r0 += kTileRows) {
      const A* xr[kTileRows];
      for (int r = 0; r < kTileRows; ++r) xr[r] = x + (r0 + r < rows ? r0 + r : rows - 1) * D;
      vec acc[kTileRows][kTileVecs] = {};
      for (int64_t d = 0; d < D; ++d) {
        vec e[kTileVecs];
        std::memcpy(e, codes + d * C, sizeof(e));
#pragma GCC unroll 8
        for (int r = 0; r < kTileRows; ++r) {
          const vec xb = xr[r][d] - vec{};  // broadcast (s - 0 == s for every s, unlike s + 0)
#pragma GCC unroll 4
          for (int v = 0; v < kTileVecs; ++v) acc[r][v] += xb * e[v];
        }
      }
      const int64_t live = rows - r0;
#pragma GCC unroll 8
      for (int r = 0; r < kTileRows; ++r) {
        if (r >= live) break;
#pragma GCC unroll 4
        for (int v = 0; v < kTileVecs; ++v) {
          A* bv = best_val + (r0 + r) * C + v * L;
          index_t* bi = best_idx + (r0 + r) * C + v * L;
          vec cur;
          ivec cur_idx;
          std::memcpy(&cur, bv, sizeof(vec));
          std::memcpy(&cur_idx, bi, sizeof(ivec));
          const vec dist = norm[v] - two * acc[r][v];
          const ivec closer = dist < cur;
          cur = closer ? dist : cur;
          cur_idx = closer ? iota + static_cast<index_t>(t * C + v * L) : cur_idx;
          std::memcpy(bv, &cur, sizeof(vec));
          std::memcpy(bi, &cur_idx, sizeof(ivec));
        }
      }
    }
  }
  // Entries past K (K < C) only ever saw padding codes (+inf, index 0): they cannot win.
  const int live = static_cast<int>(std::min<int64_t>(C, K));
  for (int64_t r = 0; r < rows; ++r) {
    out[r] = lane_argmin(best_val + r * C, best_idx + r * C, live);
  }
}

#ifdef MMGEN_X86_DISPATCH
template <typename A>
MMGEN_TARGET_AVX512 void scan_block_avx512(
    const A* x, int64_t rows, int64_t D, const A* pack, const A* norms, int64_t tiles,
    A* best_val, typename Simd<A, 64>::index_t* best_idx, int64_t* out, int64_t K) {
  scan_block<A, 64>(x, rows, D, pack, norms, tiles, best_val, best_idx, out, K);
}
template <typename A>
MMGEN_TARGET_AVX2 void scan_block_avx2(
    const A* x, int64_t rows, int64_t D, const A* pack, const A* norms, int64_t tiles,
    A* best_val, typename Simd<A, 32>::index_t* best_idx, int64_t* out, int64_t K) {
  scan_block<A, 32>(x, rows, D, pack, norms, tiles, best_val, best_idx, out, K);
}
#endif

template <typename A>
void scan_block_baseline(const A* x, int64_t rows, int64_t D, const A* pack, const A* norms,
                         int64_t tiles, A* best_val, typename Simd<A, 16>::index_t* best_idx,
                         int64_t* out, int64_t K) {
  scan_block<A, 16>(x, rows, D, pack, norms, tiles, best_val, best_idx, out, K);
}

// SIMD width in bytes: that of the ISA level in use (cpu_isa()), or a narrower one named by
// MMGEN_VQ_SIMD_BYTES (16, 32 or 64; lets the tests run every code path on one machine).
int simd_bytes() {
  static const int bytes = [] {
    int widest = 16;
#ifdef MMGEN_X86_DISPATCH
    if (cpu_isa() == CpuIsa::kAvx512) widest = 64;
    else if (cpu_isa() == CpuIsa::kAvx2) widest = 32;
#endif
    const char* env = std::getenv("MMGEN_VQ_SIMD_BYTES");
    const int asked = env != nullptr ? std::atoi(env) : 0;
    return (asked == 16 || asked == 32 || asked == 64) && asked <= widest ? asked : widest;
  }();
  return bytes;
}

// Rows of x per cache block: a multiple of kTileRows, about kBlockBytes of data.
template <typename A>
int64_t block_rows_for(int64_t D) {
  const int64_t row_bytes = std::max<int64_t>(1, D) * static_cast<int64_t>(sizeof(A));
  return std::min<int64_t>(240, std::max<int64_t>(1, kBlockBytes / row_bytes / kTileRows) * kTileRows);
}

// The direct path of nearest_rows: the packed codebook and the register-tiled scan above.
template <typename T, typename OnRow>
void nearest_rows_direct(const T* x, const T* codebook, int64_t N, int64_t K, int64_t D, OnRow on_row) {
  using A = acc_type<T>;
  const int bytes = simd_bytes();
  const int64_t C = static_cast<int64_t>(bytes / sizeof(A)) * tile_vecs(bytes);
  const PackedCodebook<A> packed(codebook, K, D, C);
  const int64_t block_rows = block_rows_for<A>(D);
  const int64_t blocks = (N + block_rows - 1) / block_rows;
  at::parallel_for(0, blocks, 1, [&](int64_t b0, int64_t b1) {
    std::vector<A> best_val(block_rows * C);
    std::vector<typename Simd<A, 16>::index_t> best_idx(block_rows * C);  // same type at every width
    std::vector<A> x_buf(std::is_same_v<A, T> ? 0 : block_rows * D);
    std::vector<int64_t> codes(block_rows);
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t r0 = b * block_rows;
      const int64_t rows = std::min(block_rows, N - r0);
      const A* xb;
      if constexpr (std::is_same_v<A, T>) {
        xb = x + r0 * D;
      } else {
        for (int64_t i = 0; i < rows * D; ++i) x_buf[i] = static_cast<A>(x[r0 * D + i]);
        xb = x_buf.data();
      }
      const A* pk = packed.pack.data();
      const A* nr = packed.norms.data();
#ifdef MMGEN_X86_DISPATCH
      if (bytes == 64) {
        scan_block_avx512<A>(xb, rows, D, pk, nr, packed.tiles, best_val.data(),
                             best_idx.data(), codes.data(), K);
      } else if (bytes == 32) {
        scan_block_avx2<A>(xb, rows, D, pk, nr, packed.tiles, best_val.data(),
                           best_idx.data(), codes.data(), K);
      } else
#endif
      {
        scan_block_baseline<A>(xb, rows, D, pk, nr, packed.tiles, best_val.data(),
                               best_idx.data(), codes.data(), K);
      }
      for (int64_t r = 0; r < rows; ++r) {
        const int64_t k = codes[r];
        A sq = 0;
        for (int64_t d = 0; d < D; ++d) {
          const A diff = xb[r * D + d] - packed.at(k, d);
          sq += diff * diff;
        }
        on_row(b, r0 + r, k, sq);
      }
    }
  });
}


// ---------------------------------------------------------------------------------------------
// GEMM path
// ---------------------------------------------------------------------------------------------
constexpr int64_t kGemmRows = 128;             // rows of x per block (one at::mm per code tile)
constexpr int64_t kGemmTileElems = 64 * 1024;  // entries of each thread's dot-product buffer

// Folds a [rows, kc] tile of dot products x.e_k (codes k0 .. k0 + kc) into the running minimum of
// ||e||^2 - 2 x.e: best_val / best_idx hold 2 * kLanes entries per row (two accumulators, to
// shorten the compare-select dependency chain); every entry sees its codes in increasing order.
template <typename A, int kBytes>
__attribute__((always_inline)) inline void rank_tile(
    const A* dots, int64_t rows, int64_t kc, const A* norms, int64_t k0, A* best_val,
    typename Simd<A, kBytes>::index_t* best_idx) {
  using S = Simd<A, kBytes>;
  using vec = typename S::vec;
  using ivec = typename S::ivec;
  using index_t = typename S::index_t;
  constexpr int L = S::kLanes;
  ivec iota;
  for (int l = 0; l < L; ++l) iota[l] = l;
  const vec two = vec{} + A(2);
  for (int64_t r = 0; r < rows; ++r) {
    const A* dr = dots + r * kc;
    A* bv = best_val + r * 2 * L;
    index_t* bi = best_idx + r * 2 * L;
    vec cur[2];
    ivec cur_idx[2];
    std::memcpy(cur, bv, sizeof(cur));
    std::memcpy(cur_idx, bi, sizeof(cur_idx));
    int64_t c = 0;
    for (; c + 2 * L <= kc; c += 2 * L) {
#pragma GCC unroll 2
      for (int h = 0; h < 2; ++h) {
        vec d, n;
        std::memcpy(&d, dr + c + h * L, sizeof(vec));
        std::memcpy(&n, norms + k0 + c + h * L, sizeof(vec));
        const vec dist = n - two * d;
        const ivec closer = dist < cur[h];
        cur[h] = closer ? dist : cur[h];
        cur_idx[h] = closer ? iota + static_cast<index_t>(k0 + c + h * L) : cur_idx[h];
      }
    }
    std::memcpy(bv, cur, sizeof(cur));
    std::memcpy(bi, cur_idx, sizeof(cur_idx));
    for (; c < kc; ++c) {  // the tail, one code at a time into entry c % 2L (still increasing)
      const A dist = norms[k0 + c] - A(2) * dr[c];
      const int64_t j = c % (2 * L);
      if (dist < bv[j]) {
        bv[j] = dist;
        bi[j] = static_cast<index_t>(k0 + c);
      }
    }
  }
}

#ifdef MMGEN_X86_DISPATCH
template <typename A>
MMGEN_TARGET_AVX512 void rank_tile_avx512(const A* dots, int64_t rows, int64_t kc, const A* norms,
                                          int64_t k0, A* best_val, typename Simd<A, 64>::index_t* best_idx) {
  rank_tile<A, 64>(dots, rows, kc, norms, k0, best_val, best_idx);
}
template <typename A>
MMGEN_TARGET_AVX2 void rank_tile_avx2(const A* dots, int64_t rows, int64_t kc, const A* norms,
                                      int64_t k0, A* best_val, typename Simd<A, 32>::index_t* best_idx) {
  rank_tile<A, 32>(dots, rows, kc, norms, k0, best_val, best_idx);
}
#endif

template <typename A>
void rank_tile_baseline(const A* dots, int64_t rows, int64_t kc, const A* norms, int64_t k0,
                        A* best_val, typename Simd<A, 16>::index_t* best_idx) {
  rank_tile<A, 16>(dots, rows, kc, norms, k0, best_val, best_idx);
}

// The GEMM path of nearest_rows, for float and double (x, codebook: contiguous [N, D], [K, D]).
template <typename A, typename OnRow>
void nearest_rows_gemm(const Tensor& x_t, const Tensor& codebook_t, int64_t block_rows, OnRow on_row) {
  using index_t = typename Simd<A, 16>::index_t;  // the same type at every width
  const int64_t N = x_t.size(0), K = codebook_t.size(0), D = codebook_t.size(1);
  const A* x = x_t.const_data_ptr<A>();
  const A* codebook = codebook_t.const_data_ptr<A>();
  const int bytes = simd_bytes();
  const int64_t entries = 2 * static_cast<int64_t>(bytes / sizeof(A));  // per row, see rank_tile
  std::vector<A> norms(K);
  at::parallel_for(0, K, 256, [&](int64_t k0, int64_t k1) {
    for (int64_t k = k0; k < k1; ++k) {
      A norm = 0;
      for (int64_t d = 0; d < D; ++d) norm += codebook[k * D + d] * codebook[k * D + d];
      norms[k] = norm;
    }
  });
  const int64_t code_tile = std::min(K, std::max<int64_t>(16, kGemmTileElems / block_rows));
  const int64_t blocks = (N + block_rows - 1) / block_rows;
  at::parallel_for(0, blocks, 1, [&](int64_t b0, int64_t b1) {
    // Inputs that require grad reach this kernel: the matrix products inside it are not recorded.
    const at::AutoDispatchBelowADInplaceOrView below_autograd;
    Tensor tile = at::empty({block_rows * code_tile}, x_t.options());
    std::vector<A> best_val(block_rows * entries);
    std::vector<index_t> best_idx(block_rows * entries);
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t r0 = b * block_rows;
      const int64_t rows = std::min(block_rows, N - r0);
      const Tensor xb = x_t.narrow(0, r0, rows);
      std::fill(best_val.begin(), best_val.end(), std::numeric_limits<A>::infinity());
      std::fill(best_idx.begin(), best_idx.end(), index_t(0));
      for (int64_t k0 = 0; k0 < K; k0 += code_tile) {
        const int64_t kc = std::min(code_tile, K - k0);
        Tensor dots = tile.narrow(0, 0, rows * kc).view({rows, kc});
        at::mm_out(dots, xb, codebook_t.narrow(0, k0, kc).t());
        const A* dp = dots.const_data_ptr<A>();
#ifdef MMGEN_X86_DISPATCH
        if (bytes == 64) {
          rank_tile_avx512<A>(dp, rows, kc, norms.data(), k0, best_val.data(), best_idx.data());
        } else if (bytes == 32) {
          rank_tile_avx2<A>(dp, rows, kc, norms.data(), k0, best_val.data(), best_idx.data());
        } else
#endif
        {
          rank_tile_baseline<A>(dp, rows, kc, norms.data(), k0, best_val.data(), best_idx.data());
        }
      }
      for (int64_t r = 0; r < rows; ++r) {
        const auto k = lane_argmin(best_val.data() + r * entries, best_idx.data() + r * entries, entries);
        const A* xr = x + (r0 + r) * D;
        const A* e = codebook + static_cast<int64_t>(k) * D;
        A sq = 0;
        for (int64_t d = 0; d < D; ++d) {
          const A diff = xr[d] - e[d];
          sq += diff * diff;
        }
        on_row(b, r0 + r, static_cast<int64_t>(k), sq);
      }
    }
  });
}

// ---------------------------------------------------------------------------------------------
// Choosing the path
// ---------------------------------------------------------------------------------------------
// Whether the GEMM path is expected to beat the direct scan at SIMD width `bytes`. Measured on an
// AMD EPYC (Zen 4) with torch's MKL, one thread, float32 (docs/kernels.md): with AVX-512 the
// direct scan matches the GEMM path within 5% at every shape tried, so it stays (it needs no
// buffer); with AVX2 and SSE2 the GEMM path is 1.5-6x faster from about 2M multiply-adds on when
// D >= 32, and from about 16M with smaller D (where ranking the dot products costs more than
// computing them), and on a par or slower below.
bool gemm_pays(int64_t N, int64_t K, int64_t D, int bytes) {
  if (bytes == 64) return false;
  const double work = static_cast<double>(N) * static_cast<double>(K) * static_cast<double>(D);
  return work >= (D >= 32 ? 2.0 : 16.0) * 1024 * 1024;
}

// Which path nearest_rows takes for x [N, D] and K codes in dtype T: the GEMM path only for float
// and double. MMGEN_VQ_PATH=direct or gemm forces one (read at every call; "auto" or unset: the
// rule below, measured on x86-64: see docs/kernels.md).
template <typename T>
bool use_gemm_path(int64_t N, int64_t K, int64_t D) {
  if constexpr (!std::is_same_v<T, float> && !std::is_same_v<T, double>) {
    return false;
  } else {
    const char* env = std::getenv("MMGEN_VQ_PATH");
    const std::string path = env != nullptr ? env : "";
    TORCH_CHECK(path.empty() || path == "auto" || path == "direct" || path == "gemm",
                "MMGEN_VQ_PATH must be auto, direct or gemm, got '", path, "'");
    if (path == "direct" || path == "gemm") return path == "gemm";
    return gemm_pays(N, K, D, simd_bytes());
  }
}

// How nearest_rows splits the rows: blocks (each handled whole by one thread) of block_rows rows.
struct NearestPlan {
  bool gemm;
  int64_t block_rows, blocks;
};

template <typename T>
NearestPlan plan_nearest(int64_t N, int64_t K, int64_t D) {
  using A = acc_type<T>;
  const bool gemm = use_gemm_path<T>(N, K, D);
  int64_t rows = block_rows_for<A>(D);
  if (gemm) {  // kGemmRows, or fewer (a multiple of 16) so that every thread gets two blocks
    const int64_t share = (N + 2 * at::get_num_threads() - 1) / (2 * at::get_num_threads());
    rows = std::min(kGemmRows, std::max<int64_t>(16, (share + 15) / 16 * 16));
  }
  return {gemm, rows, (N + rows - 1) / rows};
}

// Finds the nearest code of every row of x [N, D] (contiguous, N >= 1) and calls
// on_row(block, row, code, sqdist) (sqdist = ||x - e_code||^2, computed directly) from the parallel
// region, where block < plan.blocks.
template <typename T, typename OnRow>
void nearest_rows(const Tensor& x, const Tensor& codebook, const NearestPlan& plan, OnRow on_row) {
  if constexpr (std::is_same_v<T, float> || std::is_same_v<T, double>) {
    if (plan.gemm) return nearest_rows_gemm<T>(x, codebook, plan.block_rows, on_row);
  }
  nearest_rows_direct<T>(x.const_data_ptr<T>(), codebook.const_data_ptr<T>(), x.size(0), codebook.size(0),
                         codebook.size(1), on_row);
}

// Rows of x grouped by code: the rows of code k are order[offsets[k] .. offsets[k + 1]), ascending.
struct RowGroups {
  std::vector<int64_t> offsets, order;
};

// Codes per task of a segmented sum over N rows of D features into K codes: all of them (one
// thread) when the whole sum is small, else one.
int64_t segment_grain(int64_t N, int64_t K, int64_t D) {
  return N * std::max<int64_t>(1, D) < kSerialElems ? std::max<int64_t>(1, K) : 1;
}

// indices: N values in [0, K) (check_indices_in_range).
RowGroups group_rows(const int64_t* indices, int64_t N, int64_t K) {
  RowGroups g;
  g.offsets.assign(K + 1, 0);
  for (int64_t i = 0; i < N; ++i) ++g.offsets[indices[i] + 1];
  for (int64_t k = 0; k < K; ++k) g.offsets[k + 1] += g.offsets[k];
  g.order.resize(N);
  std::vector<int64_t> next(g.offsets.begin(), g.offsets.end() - 1);
  for (int64_t i = 0; i < N; ++i) g.order[next[indices[i]]++] = i;
  return g;
}

std::tuple<Tensor, Tensor> vq_nearest_kernel(const Tensor& x_in, const Tensor& codebook_in) {
  check_vq_inputs(x_in, codebook_in, 2, "mmgen.ops.vq_nearest");
  const Tensor x = x_in.contiguous();
  const Tensor codebook = codebook_in.contiguous();
  const int64_t N = x.size(0), K = codebook.size(0), D = codebook.size(1);
  Tensor indices = at::empty({N}, x.options().dtype(at::kLong));
  Tensor sqdist = at::empty({N}, x.options());
  if (N == 0) return {indices, sqdist};
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "vq_nearest", [&] {
    int64_t* idx = indices.mutable_data_ptr<int64_t>();
    scalar_t* sq = sqdist.mutable_data_ptr<scalar_t>();
    nearest_rows<scalar_t>(x, codebook, plan_nearest<scalar_t>(N, K, D),
                           [&](int64_t, int64_t row, int64_t k, acc_type<scalar_t> s) {
                             idx[row] = k;
                             sq[row] = static_cast<scalar_t>(s);
                           });
  });
  return {indices, sqdist};
}

std::tuple<Tensor, Tensor, Tensor> vector_quantize_forward_kernel(const Tensor& x_in,
                                                                  const Tensor& codebook_in,
                                                                  double beta) {
  check_vq_inputs(x_in, codebook_in, -1, "mmgen.ops.vector_quantize");
  const Tensor codebook = codebook_in.contiguous();
  const int64_t K = codebook.size(0), D = codebook.size(1);
  const Tensor x = x_in.contiguous();
  Tensor quantized = at::empty(x.sizes(), x.options());
  Tensor indices = at::empty(x.sizes().slice(0, x.dim() - 1), x.options().dtype(at::kLong));
  Tensor loss = at::empty({}, x.options());
  const int64_t n_rows = leading_rows(x);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "vector_quantize", [&] {
    const scalar_t* cb = codebook.const_data_ptr<scalar_t>();
    int64_t* idx = indices.mutable_data_ptr<int64_t>();
    scalar_t* q = quantized.mutable_data_ptr<scalar_t>();
    const NearestPlan plan = plan_nearest<scalar_t>(n_rows, K, D);
    std::vector<double> partial(plan.blocks, 0.0);
    if (n_rows > 0) {
      nearest_rows<scalar_t>(x.view({n_rows, D}), codebook, plan,
                             [&](int64_t block, int64_t row, int64_t k, acc_type<scalar_t> s) {
                               idx[row] = k;
                               std::memcpy(q + row * D, cb + k * D, D * sizeof(scalar_t));
                               partial[block] += static_cast<double>(s);
                             });
    }
    double total = 0.0;
    for (double p : partial) total += p;
    const double elems = static_cast<double>(n_rows) * static_cast<double>(D);
    loss.fill_((1.0 + beta) * total / elems);
  });
  return {quantized, indices, loss};
}

std::tuple<Tensor, Tensor> vector_quantize_backward_kernel(const std::optional<Tensor>& grad_quantized,
                                                           const std::optional<Tensor>& grad_loss,
                                                           const Tensor& x_in,
                                                           const Tensor& codebook_in,
                                                           const Tensor& indices_in, double beta,
                                                           std::array<bool, 2> output_mask) {
  const char* op = "mmgen.ops._vector_quantize_backward";
  check_vq_inputs(x_in, codebook_in, -1, op);
  const int64_t K = codebook_in.size(0), D = codebook_in.size(1);
  const int64_t N = leading_rows(x_in);
  check_vq_indices(indices_in, N, x_in, op);
  check_vq_grads(grad_quantized, grad_loss, x_in, op);
  check_indices_in_range(indices_in, K, op);
  const Tensor x = x_in.contiguous();
  const Tensor codebook = codebook_in.contiguous();
  const Tensor indices = indices_in.contiguous();
  const bool need_x = output_mask[0], need_codebook = output_mask[1];
  const bool has_gq = grad_quantized.has_value() && grad_quantized->defined();
  const bool has_gl = grad_loss.has_value() && grad_loss->defined();
  const Tensor gq = has_gq ? grad_quantized->to(x.scalar_type()).contiguous() : Tensor();
  const Tensor none = at::empty({0}, x.options());
  Tensor grad_x = need_x ? at::empty(x.sizes(), x.options()) : none;
  Tensor grad_codebook = need_codebook ? at::zeros(codebook.sizes(), codebook.options()) : none;
  if (!has_gl) {
    if (need_x && has_gq) grad_x.copy_(gq);
    else if (need_x) grad_x.zero_();
    return {grad_x, grad_codebook};
  }
  const double gl = grad_loss->to(at::kDouble).item<double>();
  const double elems = static_cast<double>(N) * static_cast<double>(D);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "vector_quantize_backward", [&] {
    using A = acc_type<scalar_t>;
    const A scale = static_cast<A>(2.0 * gl / elems);
    const A scale_x = static_cast<A>(2.0 * gl * beta / elems);
    const scalar_t* xp = x.const_data_ptr<scalar_t>();
    const scalar_t* cb = codebook.const_data_ptr<scalar_t>();
    const scalar_t* g = has_gq ? gq.const_data_ptr<scalar_t>() : nullptr;
    const int64_t* idx = indices.const_data_ptr<int64_t>();
    if (need_x) {
      scalar_t* gx = grad_x.mutable_data_ptr<scalar_t>();
      at::parallel_for(0, N, std::max<int64_t>(1, kSerialElems / std::max<int64_t>(1, D)), [&](int64_t i0, int64_t i1) {
        for (int64_t i = i0; i < i1; ++i) {
          const scalar_t* e = cb + idx[i] * D;
          for (int64_t d = 0; d < D; ++d) {
            const A base = g != nullptr ? static_cast<A>(g[i * D + d]) : A(0);
            gx[i * D + d] = static_cast<scalar_t>(
                base + scale_x * (static_cast<A>(xp[i * D + d]) - static_cast<A>(e[d])));
          }
        }
      });
    }
    if (!need_codebook) return;
    scalar_t* gc = grad_codebook.mutable_data_ptr<scalar_t>();
    const RowGroups groups = group_rows(idx, N, K);
    at::parallel_for(0, K, segment_grain(N, K, D), [&](int64_t k0, int64_t k1) {
      std::vector<A> acc(D);
      for (int64_t k = k0; k < k1; ++k) {
        const int64_t begin = groups.offsets[k], end = groups.offsets[k + 1];
        if (begin == end) continue;
        std::fill(acc.begin(), acc.end(), A(0));
        const scalar_t* e = cb + k * D;
        for (int64_t j = begin; j < end; ++j) {
          const scalar_t* xr = xp + groups.order[j] * D;
          for (int64_t d = 0; d < D; ++d) acc[d] += static_cast<A>(e[d]) - static_cast<A>(xr[d]);
        }
        for (int64_t d = 0; d < D; ++d) gc[k * D + d] = static_cast<scalar_t>(scale * acc[d]);
      }
    });
  });
  return {grad_x, grad_codebook};
}

std::tuple<Tensor, Tensor> vq_ema_stats_kernel(const Tensor& x_in, const Tensor& indices_in,
                                               int64_t num_codes) {
  const char* op = "mmgen.ops.vq_ema_stats";
  check_vq_float(x_in, "x", op);
  TORCH_CHECK(x_in.dim() >= 1, op, ": x must have at least 1 dimension [..., D], got a 0-dim tensor");
  TORCH_CHECK(num_codes >= 1, op, ": num_codes must be at least 1, got ", num_codes);
  TORCH_CHECK(indices_in.sizes() == x_in.sizes().slice(0, x_in.dim() - 1), op,
              ": indices must have the shape of x without its last dim (", x_in.sizes().slice(0, x_in.dim() - 1),
              "), got ", indices_in.sizes());
  const int64_t D = x_in.size(-1);
  const int64_t N = indices_in.numel();
  check_vq_indices(indices_in, N, x_in, op);
  check_indices_in_range(indices_in, num_codes, op);
  const Tensor x = x_in.contiguous();
  const Tensor indices = indices_in.contiguous();
  const auto stats_dtype = x.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  Tensor counts = at::empty({num_codes}, x.options().dtype(stats_dtype));
  Tensor sums = at::empty({num_codes, D}, x.options().dtype(stats_dtype));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "vq_ema_stats", [&] {
    using A = acc_type<scalar_t>;
    const scalar_t* xp = x.const_data_ptr<scalar_t>();
    const RowGroups groups = group_rows(indices.const_data_ptr<int64_t>(), N, num_codes);
    A* cnt = counts.mutable_data_ptr<A>();
    A* sm = sums.mutable_data_ptr<A>();
    at::parallel_for(0, num_codes, segment_grain(N, num_codes, D), [&](int64_t k0, int64_t k1) {
      for (int64_t k = k0; k < k1; ++k) {
        const int64_t begin = groups.offsets[k], end = groups.offsets[k + 1];
        A* out = sm + k * D;
        std::fill(out, out + D, A(0));
        for (int64_t j = begin; j < end; ++j) {
          const scalar_t* xr = xp + groups.order[j] * D;
          for (int64_t d = 0; d < D; ++d) out[d] += static_cast<A>(xr[d]);
        }
        cnt[k] = static_cast<A>(end - begin);
      }
    });
  });
  return {counts, sums};
}

}  // namespace

TORCH_LIBRARY_IMPL(mmgen, CPU, m) {
  m.impl("vq_nearest", &vq_nearest_kernel);
  m.impl("vector_quantize", &vector_quantize_forward_kernel);
  m.impl("_vector_quantize_backward", &vector_quantize_backward_kernel);
  m.impl("vq_ema_stats", &vq_ema_stats_kernel);
}

}  // namespace mmgen
