#include "ops/rng.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/core/DistributionsHelper.h>
#include <ATen/core/MT19937RNGEngine.h>

#include <algorithm>
#include <iterator>
#include <mutex>
#include <optional>
#include <unordered_map>

namespace mmgen {
namespace {

// FNV-1a over the whole engine state, in four interleaved lanes (the state words i, i + 4, ... go to
// lane i % 4) so that the multiplies do not wait on each other: it runs twice per op call.
uint64_t fingerprint(const at::mt19937_data_pod& d) {
  constexpr uint64_t kBasis = 1469598103934665603ull, kPrime = 1099511628211ull;
  uint64_t lane[4] = {kBasis, kBasis ^ 1, kBasis ^ 2, kBasis ^ 3};
  const auto mix = [](uint64_t& h, uint64_t v) { h = (h ^ v) * kPrime; };
  const size_t words = d.state_.size();
  size_t i = 0;
  for (; i + 4 <= words; i += 4) {
    for (int j = 0; j < 4; ++j) mix(lane[j], d.state_[i + j]);
  }
  for (; i < words; ++i) mix(lane[i % 4], d.state_[i]);
  uint64_t h = kBasis;
  for (uint64_t v : lane) mix(h, v);
  mix(h, d.seed_);
  mix(h, static_cast<uint64_t>(d.left_));
  mix(h, d.seeded_);
  mix(h, d.next_);
  return h;
}

// The fingerprint of a generator freshly seeded with `seed` (an MT19937 seeded and hashed: as long
// as two op calls; kept for the last seed asked for, which is the seed of every call until the
// next manual_seed). Caller holds tracker_mutex.
uint64_t seeded_fingerprint(uint64_t seed) {
  static std::optional<std::pair<uint64_t, uint64_t>> last;  // (seed, its fingerprint)
  if (!last || last->first != seed) last = std::make_pair(seed, fingerprint(at::mt19937(seed).data()));
  return last->second;
}

// A generator's record. The key is the generator's address; the weak reference tells a live
// generator from a later one at the same address (it also keeps that address from being reused
// while the record exists) and lets the sweep drop the records of generators that are gone.
struct Tracked {
  c10::weak_intrusive_ptr<c10::GeneratorImpl> owner;
  uint64_t fingerprint;
  uint64_t next_offset;
};

std::mutex tracker_mutex;
std::unordered_map<const void*, Tracked> tracker;
size_t sweep_at = 64;  // table size that triggers the next sweep of dead generators' records

const at::Generator& generator_or_default(const std::optional<at::Generator>& generator) {
  return generator.has_value() && generator->defined() ? *generator
                                                       : at::detail::getDefaultCPUGenerator();
}

at::CPUGeneratorImpl* cpu_generator(const at::Generator& generator) {
  return at::check_generator<at::CPUGeneratorImpl>(generator);
}

// The record of this generator, or nullptr (none, or one left by a dead generator). Caller holds
// tracker_mutex.
const Tracked* find(const at::Generator& generator) {
  auto it = tracker.find(generator.unsafeGetGeneratorImpl());
  if (it == tracker.end()) return nullptr;
  if (it->second.owner.expired()) {
    tracker.erase(it);
    return nullptr;
  }
  return &it->second;
}

// Caller holds tracker_mutex. Amortized O(1): a sweep runs when the table has doubled since the last.
void record(const at::Generator& generator, uint64_t fingerprint, uint64_t next_offset) {
  tracker.insert_or_assign(
      generator.unsafeGetGeneratorImpl(),
      Tracked{c10::weak_intrusive_ptr<c10::GeneratorImpl>(generator.getIntrusivePtr()), fingerprint,
              next_offset});
  if (tracker.size() < sweep_at) return;
  for (auto it = tracker.begin(); it != tracker.end();) {
    it = it->second.owner.expired() ? tracker.erase(it) : std::next(it);
  }
  sweep_at = std::max<size_t>(64, 2 * tracker.size());
}

}  // namespace

int64_t cpu_philox_next_offset(const std::optional<at::Generator>& generator) {
  const at::Generator& handle = generator_or_default(generator);
  auto* gen = cpu_generator(handle);
  std::lock_guard<std::mutex> gen_lock(gen->mutex_);
  std::lock_guard<std::mutex> lock(tracker_mutex);
  const Tracked* known = find(handle);
  if (known == nullptr || known->fingerprint != fingerprint(gen->engine().data())) return -1;
  return static_cast<int64_t>(known->next_offset);
}

void set_cpu_philox_next_offset(const std::optional<at::Generator>& generator, int64_t offset) {
  TORCH_CHECK(offset >= 0 && offset % 4 == 0,
              "set_cpu_philox_next_offset: offset must be a non-negative multiple of 4, got ", offset);
  const at::Generator& handle = generator_or_default(generator);
  auto* gen = cpu_generator(handle);
  std::lock_guard<std::mutex> gen_lock(gen->mutex_);
  std::lock_guard<std::mutex> lock(tracker_mutex);
  record(handle, fingerprint(gen->engine().data()), static_cast<uint64_t>(offset));
}

int64_t cpu_philox_tracked_generators() {
  std::lock_guard<std::mutex> lock(tracker_mutex);
  return static_cast<int64_t>(tracker.size());
}

void check_generator_device(const std::optional<at::Generator>& generator, const at::Device& device,
                            const char* op) {
  if (!generator.has_value() || !generator->defined()) return;
  const at::Device gen_device = generator->device();
  const bool same = gen_device.type() == device.type() &&
                    (!gen_device.has_index() || !device.has_index() || gen_device.index() == device.index());
  TORCH_CHECK(same, op, ": generator is on ", gen_device, " but the inputs are on ", device,
              "; pass a generator of the inputs' device (or None for its default generator)");
}

std::pair<uint64_t, uint64_t> cpu_philox_seed_offset(const std::optional<at::Generator>& generator,
                                                     uint64_t increment) {
  const at::Generator& handle = generator_or_default(generator);
  auto* gen = cpu_generator(handle);
  std::lock_guard<std::mutex> gen_lock(gen->mutex_);
  std::lock_guard<std::mutex> lock(tracker_mutex);
  const uint64_t seed = gen->current_seed();
  const uint64_t now = fingerprint(gen->engine().data());
  const Tracked* known = find(handle);
  uint64_t offset;
  if (now == seeded_fingerprint(seed)) {
    offset = 0;  // freshly seeded
  } else if (known != nullptr && known->fingerprint == now) {
    offset = known->next_offset;  // nobody drew from it since our last call
  } else {
    // a fresh random start, kept below 2^62 so it stays positive as an int64 (rng_state, Python)
    offset = gen->random64() & ((uint64_t{1} << 62) - 4);
  }
  gen->random();  // marks the generator as used by this call
  record(handle, fingerprint(gen->engine().data()), offset + increment);
  return {seed, offset};
}

}  // namespace mmgen
