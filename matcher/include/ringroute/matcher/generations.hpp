#pragma once
// Publishes immutable generations (compiled matchers) to reader threads
// while they keep matching, and frees an old generation only once no reader
// can hold it. Hazard pointers, one slot per reader thread: entering costs
// an acquire load, then a seq_cst store and reload (again while the
// generation changes under it), no lock, no reference count shared between
// readers.

#include <atomic>
#include <cstddef>
#include <memory>
#include <mutex>
#include <vector>

#include "ringroute/perf/counter.hpp"

namespace ringroute::matcher {

template <class T>
class Generations {
 public:
  explicit Generations(std::size_t readers) : slots_(readers) {}
  ~Generations() {
    // Readers are gone by now (callers join them first).
    delete current_.load(std::memory_order_relaxed);
    for (const T* old : retired_) delete old;
  }
  Generations(const Generations&) = delete;
  Generations& operator=(const Generations&) = delete;

  // Writer side; publishes may come from any thread (a mutex orders them,
  // off the hot path).
  void publish(std::unique_ptr<const T> next) {
    std::lock_guard lock(writer_);
    // seq_cst: ordered against readers' hazard stores and reloads (see enter()),
    // and release for the new generation's contents.
    const T* old = current_.exchange(next.release(), std::memory_order_seq_cst);
    if (old != nullptr) retired_.push_back(old);
    reclaim_locked();
  }

  // Frees retired generations no reader holds; returns how many remain.
  std::size_t reclaim() {
    std::lock_guard lock(writer_);
    reclaim_locked();
    return retired_.size();
  }

  // Reader side: slot `reader` belongs to one thread. Returns the current
  // generation (null before the first publish), valid until leave().
  const T* enter(std::size_t reader) noexcept {
    auto& slot = slots_[reader].value;
    // Acquire pairs with publish()'s exchange: the generation's contents.
    const T* seen = current_.load(std::memory_order_acquire);
    for (;;) {
      // seq_cst store then seq_cst reload: either the writer's slot scan (after
      // its exchange) sees our hazard, or our reload sees the new generation
      // and we retry with it. No generation we return can have been freed.
      slot.store(seen, std::memory_order_seq_cst);
      const T* again = current_.load(std::memory_order_seq_cst);
      if (again == seen) return seen;
      seen = again;
    }
  }
  void leave(std::size_t reader) noexcept {
    // Release: our reads of the generation happen before the writer frees it.
    slots_[reader].value.store(nullptr, std::memory_order_release);
  }

  // Holds a generation for a scope.
  class Pin {
   public:
    Pin(Generations& g, std::size_t reader) noexcept : g_(g), reader_(reader), value_(g.enter(reader)) {}
    ~Pin() { g_.leave(reader_); }
    Pin(const Pin&) = delete;
    Pin& operator=(const Pin&) = delete;
    const T* get() const noexcept { return value_; }
    const T* operator->() const noexcept { return value_; }

   private:
    Generations& g_;
    std::size_t reader_;
    const T* value_;
  };

 private:
  void reclaim_locked() {
    std::erase_if(retired_, [this](const T* old) {
      for (const auto& slot : slots_) {
        // seq_cst: see enter(). Acquire side of leave()'s release.
        if (slot.value.load(std::memory_order_seq_cst) == old) return false;
      }
      delete old;
      return true;
    });
  }

  struct alignas(perf::kCacheLine) Slot {
    std::atomic<const T*> value{nullptr};
  };

  std::atomic<const T*> current_{nullptr};
  std::vector<Slot> slots_;
  std::mutex writer_;
  std::vector<const T*> retired_;
};

}  // namespace ringroute::matcher
