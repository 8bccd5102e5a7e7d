// Flush-to-zero for denormal floats on every CPU thread that runs ATen's kernels.
#pragma once

namespace mmgen {

// Flush denormal floats to zero (on = true) or compute with them (false) on the calling thread and
// on every thread of ATen's intra-op pool; false where the CPU has no such mode.
bool set_flush_denormal_all_threads(bool on);

}  // namespace mmgen
