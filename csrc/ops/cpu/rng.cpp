#include "ops/rng.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/core/DistributionsHelper.h>
#include <ATen/core/MT19937RNGEngine.h>

#include <mutex>
#include <unordered_map>

namespace mmgen {
namespace {

uint64_t fingerprint(const at::mt19937_data_pod& d) {
  uint64_t h = 1469598103934665603ull;  // FNV-1a over the whole engine state
  auto mix = [&h](uint64_t v) {
    h ^= v;
    h *= 1099511628211ull;
  };
  mix(d.seed_);
  mix(static_cast<uint64_t>(d.left_));
  mix(d.seeded_);
  mix(d.next_);
  for (uint32_t w : d.state_) mix(w);
  return h;
}

struct Tracked {
  uint64_t fingerprint;
  uint64_t next_offset;
};

std::mutex tracker_mutex;
std::unordered_map<const void*, Tracked> tracker;

}  // namespace

namespace {
at::CPUGeneratorImpl* cpu_generator(const std::optional<at::Generator>& generator) {
  return at::get_generator_or_default<at::CPUGeneratorImpl>(generator,
                                                             at::detail::getDefaultCPUGenerator());
}
}  // namespace

int64_t cpu_philox_next_offset(const std::optional<at::Generator>& generator) {
  auto* gen = cpu_generator(generator);
  std::lock_guard<std::mutex> gen_lock(gen->mutex_);
  std::lock_guard<std::mutex> lock(tracker_mutex);
  auto it = tracker.find(gen);
  if (it == tracker.end() || it->second.fingerprint != fingerprint(gen->engine().data())) return -1;
  return static_cast<int64_t>(it->second.next_offset);
}

void set_cpu_philox_next_offset(const std::optional<at::Generator>& generator, int64_t offset) {
  TORCH_CHECK(offset >= 0 && offset % 4 == 0,
              "set_cpu_philox_next_offset: offset must be a non-negative multiple of 4, got ", offset);
  auto* gen = cpu_generator(generator);
  std::lock_guard<std::mutex> gen_lock(gen->mutex_);
  std::lock_guard<std::mutex> lock(tracker_mutex);
  tracker[gen] = Tracked{fingerprint(gen->engine().data()), static_cast<uint64_t>(offset)};
}

std::pair<uint64_t, uint64_t> cpu_philox_seed_offset(const std::optional<at::Generator>& generator,
                                                     uint64_t increment) {
  auto* gen = cpu_generator(generator);
  std::lock_guard<std::mutex> gen_lock(gen->mutex_);
  std::lock_guard<std::mutex> lock(tracker_mutex);
  const uint64_t seed = gen->current_seed();
  const uint64_t now = fingerprint(gen->engine().data());
  auto it = tracker.find(gen);
  uint64_t offset;
  if (now == fingerprint(at::mt19937(seed).data())) {
    offset = 0;  // freshly seeded
  } else if (it != tracker.end() && it->second.fingerprint == now) {
    offset = it->second.next_offset;  // nobody drew from it since our last call
  } else {
    // a fresh random start, kept below 2^62 so it stays positive as an int64 (rng_state, Python)
    offset = gen->random64() & ((uint64_t{1} << 62) - 4);
  }
  gen->random();  // marks the generator as used by this call
  tracker[gen] = Tracked{fingerprint(gen->engine().data()), offset + increment};
  return {seed, offset};
}

}  // namespace mmgen
