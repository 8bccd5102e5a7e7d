// Host-side access to the generator state the Philox kernels start from.
#pragma once

#include <ATen/core/Generator.h>

#include <cstdint>
#include <optional>
#include <utility>

namespace mmgen {

// (seed, offset) for one op call on a CPU generator, reserving `increment` offsets.
// The CPU generator (an MT19937) has no offset of its own, so mmgen keeps one per generator:
// it starts at 0 right after the generator is seeded, so that the CPU and CUDA generators seeded
// alike give the same numbers, and it advances by `increment` per call. A call also draws one
// 32-bit value from the MT19937, which is how a re-seed is told apart from a later call. If other
// ops drew from the generator since mmgen last did, the offset restarts at a fresh random value.
std::pair<uint64_t, uint64_t> cpu_philox_seed_offset(const std::optional<at::Generator>& generator,
                                                     uint64_t increment);

// The offset the next call on this CPU generator will use if nothing else draws from it first, or
// -1 when mmgen has no record for the generator's current state (the next call then starts fresh).
int64_t cpu_philox_next_offset(const std::optional<at::Generator>& generator);

// Record `offset` as the next offset for the generator's current state (to restore a checkpoint:
// set the generator's state first, then this).
void set_cpu_philox_next_offset(const std::optional<at::Generator>& generator, int64_t offset);

// How many generator records mmgen holds. Records hold weak references and those of generators
// that are gone are swept whenever the table has doubled, so it stays below max(64, 2 x the live
// generators mmgen has seen), however many generators come and go.
int64_t cpu_philox_tracked_generators();

// Checks that a generator passed to an op on `device` belongs to that device (index included).
void check_generator_device(const std::optional<at::Generator>& generator, const at::Device& device,
                            const char* op);

}  // namespace mmgen
