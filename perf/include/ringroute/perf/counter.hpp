// Counters that live in shared memory and are read by other processes.
//
// A counter is a 64-bit atomic that only ever grows. Writers add with relaxed
// ordering: a counter publishes no other data, so a reader needs no
// happens-before edge with the writer, only a value that is not torn (64-bit
// aligned atomics are never torn on the platforms we build for).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

namespace ringroute::perf {

// x86-64 and most aarch64 parts use 64-byte lines; adjacent-line prefetch on
// Intel pulls pairs, which is why hot producer/consumer fields sit two lines
// apart where it matters (see ring/layout.hpp).
inline constexpr std::size_t kCacheLine = 64;

struct alignas(kCacheLine) PaddedCounter {
  std::atomic<std::uint64_t> value{0};

  void add(std::uint64_t n) noexcept { value.fetch_add(n, std::memory_order_relaxed); }
  // For counters with exactly one writer: a plain load and store, no locked
  // instruction. Readers still see whole values.
  void add_single_writer(std::uint64_t n) noexcept {
    value.store(value.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
  [[nodiscard]] std::uint64_t read() const noexcept {
    return value.load(std::memory_order_relaxed);
  }
};
static_assert(sizeof(PaddedCounter) == kCacheLine);
static_assert(std::atomic<std::uint64_t>::is_always_lock_free,
              "shared-memory counters must be lock-free to be shared across processes");

}  // namespace ringroute::perf
