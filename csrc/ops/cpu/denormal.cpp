// Flush-to-zero for denormal floats on every CPU thread that runs ATen's kernels.
#include "ops/denormal.h"

#include <ATen/Context.h>
#include <ATen/Parallel.h>

namespace mmgen {

bool set_flush_denormal_all_threads(bool on) {
  // The mode lives in each thread's control register (MXCSR's FTZ and DAZ on x86, FPCR's FZ on
  // ARM); torch.set_flush_denormal sets only the calling thread's, so the intra-op pool's threads
  // would go on computing with denormals. One index per pool thread (grain 1): ATen's OpenMP
  // parallel_for gives thread t index t, and each sets its own register.
  if (!at::globalContext().setFlushDenormal(on)) return false;  // no such mode on this CPU
  const int64_t threads = at::get_num_threads();
  at::parallel_for(0, threads, 1, [on](int64_t, int64_t) { at::globalContext().setFlushDenormal(on); });
  return true;
}

}  // namespace mmgen
