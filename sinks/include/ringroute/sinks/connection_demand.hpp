#pragma once
// How many connections a sink that may use several (socket streams, HTTP)
// uses: one while one keeps up, more (up to `max_connections`) only when it
// does not (DESIGN.md, Sinks). Order holds on each connection, so every
// connection opened without need splits a destination's stream into
// streams that arrive interleaved: Kazoo's http backend sends one request
// at a time, and its users expect events in order when one connection
// carries them.
//
// "Keeps up" is measured over windows of kWindow: the time the sink spent
// waiting on its destination (sends, or requests awaiting their answers;
// never setting a connection up: a lookup, a connect or a TLS handshake is
// a round trip, not a destination that lags). More than half a window
// waiting wants one more connection; each kQuietWindows windows in a row
// under a twentieth give one back, however rarely the sink writes (an idle
// span counts the windows it holds). A window is short enough that a
// backlog widens within a few of them, and long enough that one slow send
// (a scheduling hiccup, a kernel buffer draining) is not taken for a
// lagging destination.

#include <algorithm>
#include <chrono>
#include <cstdint>

namespace ringroute::sinks {

class ConnectionDemand {
 public:
  using Clock = std::chrono::steady_clock;
  static constexpr std::chrono::milliseconds kWindow{50};
  static constexpr std::uint32_t kQuietWindows = 200;

  explicit ConnectionDemand(std::uint32_t most) noexcept : most_(std::max<std::uint32_t>(most, 1)) {}

  // Connections the sink's next requests or batches are spread over.
  [[nodiscard]] std::uint32_t wanted() const noexcept { return wanted_; }

  // For a sink that times whole writes: [from, to) was spent waiting.
  void add_busy(Clock::time_point from, Clock::time_point to) noexcept {
    if (window_start_ == Clock::time_point{}) window_start_ = from;
    busy_ += to - from;
  }

  // For a sink with several exchanges in flight at once: time counts while
  // at least one is, once however many are.
  void exchange_begins(Clock::time_point now) noexcept {
    if (window_start_ == Clock::time_point{}) window_start_ = now;
    if (exchanges_++ == 0) busy_from_ = now;
  }
  void exchange_ends(Clock::time_point now) noexcept {
    if (exchanges_ == 0) return;
    if (--exchanges_ == 0) busy_ += now - busy_from_;
  }
  // A write that ends (or breaks off) with exchanges still counted: none is
  // in flight past it.
  void end_exchanges(Clock::time_point now) noexcept {
    if (exchanges_ != 0) busy_ += now - busy_from_;
    exchanges_ = 0;
  }

  // Closes the window once it is kWindow long and weighs it; true when
  // wanted() grew. Before anything was counted, starts the first window.
  bool weigh(Clock::time_point now) noexcept {
    if (window_start_ == Clock::time_point{}) {
      window_start_ = now;
      return false;
    }
    if (now - window_start_ < kWindow) return false;
    if (exchanges_ != 0) {  // the part of an exchange in flight that fell in this window
      busy_ += now - busy_from_;
      busy_from_ = now;
    }
    const auto span = now - window_start_;
    bool grew = false;
    if (busy_ * 20 < span) {
      // A sink written to now and then weighs a long span at once: the
      // windows it holds are counted, so a burst's connections are given
      // back after the quiet that follows it, not one a write (a sink
      // written once a minute sent seven writes over seven connections).
      const auto windows = static_cast<std::uint64_t>(std::max<std::int64_t>(span / kWindow, 1));
      const std::uint64_t quiet = quiet_windows_ + windows;
      const std::uint64_t back = std::min<std::uint64_t>(quiet / kQuietWindows, wanted_ - 1);
      wanted_ -= static_cast<std::uint32_t>(back);
      quiet_windows_ = wanted_ > 1 ? static_cast<std::uint32_t>(quiet % kQuietWindows) : 0;
    } else {
      quiet_windows_ = 0;  // in a row
      if (busy_ * 2 > span && wanted_ < most_ && (wanted_ < held_to_ || now >= held_until_)) {
        ++wanted_;
        grew = true;
      }
    }
    window_start_ = now;
    busy_ = Clock::duration::zero();
    return grew;
  }

  // The sink could not open the last one it wanted (no descriptor left in
  // the process, which other backends share): it wants no more than the
  // `usable` it has, for kQuietWindows windows, rather than trying one more
  // each window.
  void hold_at(std::uint32_t usable, Clock::time_point now) noexcept {
    wanted_ = std::clamp<std::uint32_t>(usable, 1, wanted_);
    held_to_ = wanted_;
    held_until_ = now + kWindow * kQuietWindows;
  }

 private:
  std::uint32_t most_;
  std::uint32_t wanted_ = 1;
  std::uint32_t quiet_windows_ = 0;
  std::uint32_t exchanges_ = 0;
  std::uint32_t held_to_ = 0;  // see hold_at()
  Clock::time_point held_until_{};
  Clock::time_point window_start_{};
  Clock::time_point busy_from_{};
  Clock::duration busy_{};
};

}  // namespace ringroute::sinks
