// A thin C++ wrapper over libringroute-producer's C ABI (producer.h): RAII for
// the handle, string_view for strings. Same thread-safety, allocation and
// failure rules as the C calls; nothing here throws.
#pragma once

#include <span>
#include <string>
#include <string_view>
#include <utility>

#include "ringroute/producer.h"

namespace ringroute {

// rr_str from a string_view; an empty view with a null data pointer is absent.
[[nodiscard]] inline rr_str to_rr_str(std::string_view s) noexcept { return rr_str{s.data(), s.size()}; }
[[nodiscard]] inline rr_str rr_present(std::string_view s) noexcept {
  return rr_str{s.data() != nullptr ? s.data() : "", s.size()};
}

class EventProducer {
 public:
  EventProducer() = default;
  ~EventProducer() { rr_producer_close(handle_); }
  EventProducer(EventProducer&& other) noexcept : handle_(std::exchange(other.handle_, nullptr)) {}
  EventProducer& operator=(EventProducer&& other) noexcept {
    if (this != &other) {
      rr_producer_close(handle_);
      handle_ = std::exchange(other.handle_, nullptr);
    }
    return *this;
  }
  EventProducer(const EventProducer&) = delete;
  EventProducer& operator=(const EventProducer&) = delete;

  // Attaches to `ring`; on failure *this is as it was (closed, or still on
  // the ring it had) and `error` says why.
  [[nodiscard]] rr_status open(const std::string& ring, const rr_producer_options* options = nullptr,
                               rr_error* error = nullptr) noexcept {
    rr_producer* handle = nullptr;
    const rr_status s = rr_producer_open(ring.c_str(), options, &handle, error);
    if (s == RR_OK) {
      rr_producer_close(handle_);
      handle_ = handle;
    }
    return s;
  }

  [[nodiscard]] bool is_open() const noexcept { return handle_ != nullptr; }

  // See rr_producer_prefault: for producers that will write a lot.
  rr_status prefault() noexcept { return rr_producer_prefault(handle_); }

  [[nodiscard]] rr_status emit(const rr_event& event, std::uint32_t flags = 0,
                               rr_error* error = nullptr) noexcept {
    return rr_emit(handle_, &event, flags, error);
  }

  [[nodiscard]] rr_status emit_batch(std::span<const rr_event> events, std::uint32_t flags = 0,
                                     std::size_t* accepted = nullptr, rr_error* error = nullptr) noexcept {
    return rr_emit_batch(handle_, events.data(), events.size(), flags, accepted, error);
  }

  [[nodiscard]] rr_producer* handle() const noexcept { return handle_; }

 private:
  rr_producer* handle_ = nullptr;
};

}  // namespace ringroute
