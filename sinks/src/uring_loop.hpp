#pragma once
// The sink thread's io_uring for network sinks: connect, send and receive
// operations tagged by the caller, each with an optional deadline (a linked
// timeout), completed in whatever order the kernel finishes them. Sinks keep
// several connections busy at once from one thread this way.
//
// Internal to ringroute::sinks.

#include <liburing.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "ringroute/sinks/sink.hpp"

namespace ringroute::sinks {

class UringLoop {
 public:
  // Tags with this value are the loop's own (linked timeouts).
  static constexpr std::uint64_t kInternalTag = ~0ull;
  // How often run() looks at its interrupt flag while it waits.
  static constexpr std::chrono::milliseconds kInterruptCheck{50};

  UringLoop(const std::string& who, unsigned entries) : timespecs_(entries * 2) {
    const int rc = io_uring_queue_init(entries, &ring_, 0);
    if (rc < 0) {
      throw std::runtime_error(who + ": io_uring is not available here (" + std::strerror(-rc) +
                               "); the kernel or a seccomp policy refuses io_uring_setup");
    }
    // cancel_all() asks for every operation at once (IORING_ASYNC_CANCEL_ANY,
    // Linux 5.19). An older kernel refuses that cancel (-EINVAL) and ends
    // nothing: each stop then waited its limit out and left the sink's
    // connections to operations that never end. Asked here of an empty
    // ring, a kernel that has it finds nothing (-ENOENT).
    if (io_uring_sqe* sqe = io_uring_get_sqe(&ring_); sqe != nullptr) {
      io_uring_prep_cancel64(sqe, 0, IORING_ASYNC_CANCEL_ANY);
      io_uring_sqe_set_data64(sqe, kInternalTag);
      io_uring_cqe* cqe = nullptr;
      int result = io_uring_submit_and_wait(&ring_, 1);
      if (result >= 0 && io_uring_peek_cqe(&ring_, &cqe) == 0 && cqe != nullptr) {
        result = cqe->res;
        io_uring_cqe_seen(&ring_, cqe);
      }
      if (result == -EINVAL) {
        io_uring_queue_exit(&ring_);
        throw std::runtime_error(who + ": this kernel's io_uring cannot cancel every operation at once "
                                       "(IORING_ASYNC_CANCEL_ANY, Linux 5.19 and later), which a stop needs "
                                       "to end sends and receives");
      }
    }
  }
  ~UringLoop() { io_uring_queue_exit(&ring_); }
  UringLoop(const UringLoop&) = delete;
  UringLoop& operator=(const UringLoop&) = delete;

  void connect(int fd, const sockaddr* address, socklen_t length, std::uint64_t tag, std::chrono::milliseconds limit) {
    io_uring_sqe* sqe = next_sqe();
    io_uring_prep_connect(sqe, fd, address, length);
    finish(sqe, tag, limit);
  }
  // `flags` beyond MSG_NOSIGNAL (MSG_DONTWAIT); `chain`: the next operation
  // queued runs only after this one succeeds (and is cancelled otherwise).
  // Not both a chain and a limit: the chain would end at the limit's own
  // entry, and the next operation would run beside this one.
  void send(int fd, const void* data, std::size_t size, std::uint64_t tag, std::chrono::milliseconds limit,
            int flags = 0, bool chain = false) {
    if (chain && limit.count() > 0) throw std::invalid_argument("UringLoop::send: a chain with a time limit");
    io_uring_sqe* sqe = next_sqe();
    io_uring_prep_send(sqe, fd, data, size, MSG_NOSIGNAL | flags);
    finish(sqe, tag, limit);
    if (chain) sqe->flags |= IOSQE_IO_LINK;
  }
  void sendmsg(int fd, const msghdr* message, std::uint64_t tag, std::chrono::milliseconds limit) {
    io_uring_sqe* sqe = next_sqe();
    io_uring_prep_sendmsg(sqe, fd, message, MSG_NOSIGNAL);
    finish(sqe, tag, limit);
  }
  void recv(int fd, void* data, std::size_t size, std::uint64_t tag, std::chrono::milliseconds limit) {
    io_uring_sqe* sqe = next_sqe();
    io_uring_prep_recv(sqe, fd, data, size, 0);
    finish(sqe, tag, limit);
  }

  [[nodiscard]] unsigned in_flight() const noexcept { return in_flight_; }

  // Ends what is still in flight before the buffers it names are reused:
  // asks the kernel to cancel every operation and reaps their completions,
  // for at most `limit`. For a sink whose write() threw midway; closing the
  // sockets alone does not stop a receive (the ring holds its own reference
  // to the file), and tearing the ring down cancels asynchronously.
  // Returns how many are still in flight when it gave up (0: all ended).
  unsigned cancel_all(std::chrono::milliseconds limit) noexcept {
    return cancel_all(limit, [](std::uint64_t, int) noexcept {});
  }
  // The same, handing each operation's completion (those that ended before
  // the cancel reached them, with what they did) to `on_completion(tag,
  // result)`, which must not throw nor queue anything.
  template <class OnCompletion>
  unsigned cancel_all(std::chrono::milliseconds limit, OnCompletion&& on_completion) noexcept {
    if (in_flight_ == 0) return 0;
    io_uring_submit(&ring_);  // what was queued, so the cancel can find it
    if (io_uring_sqe* sqe = io_uring_get_sqe(&ring_); sqe != nullptr) {
      io_uring_prep_cancel64(sqe, 0, IORING_ASYNC_CANCEL_ANY);
      io_uring_sqe_set_data64(sqe, kInternalTag);
      io_uring_submit(&ring_);
    }
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (in_flight_ > 0 && std::chrono::steady_clock::now() < deadline) {
      __kernel_timespec wait{0, 10'000'000};
      io_uring_cqe* cqe = nullptr;
      if (io_uring_wait_cqe_timeout(&ring_, &cqe, &wait) != 0 || cqe == nullptr) continue;
      if (cqe->user_data != kInternalTag) {
        --in_flight_;
        on_completion(cqe->user_data, cqe->res);
      }
      io_uring_cqe_seen(&ring_, cqe);
    }
    return in_flight_;
  }

  // Submits what is queued and hands completions to `on_completion(tag,
  // result)` (result as the syscall's: bytes, or -errno; -ECANCELED when
  // the operation's deadline passed) until nothing is in flight. The
  // callback may queue more operations.
  //
  // Each operation has its own deadline, but a destination that takes
  // every step just in time could keep the whole going for hours, and a
  // stop must not wait for that: once `interrupt` (may be null) is set, run
  // throws WriteInterrupted within kInterruptCheck, leaving what is in
  // flight to cancel_all().
  template <class OnCompletion>
  void run(const std::atomic<bool>* interrupt, OnCompletion&& on_completion) {
    while (in_flight_ > 0) {
      io_uring_cqe* cqe = nullptr;
      int rc = 0;
      if (interrupt == nullptr) {
        rc = io_uring_submit_and_wait(&ring_, 1);
      } else {
        __kernel_timespec slice{0, std::chrono::nanoseconds(kInterruptCheck).count()};
        rc = io_uring_submit_and_wait_timeout(&ring_, &cqe, 1, &slice, nullptr);
        if (rc == -ETIME) rc = 0;
        // Relaxed: the flag is a request that needs no other data with it;
        // the stopping thread's join() orders everything after.
        if (interrupt->load(std::memory_order_relaxed)) {
          throw WriteInterrupted("the write in progress was cut short by a stop");
        }
      }
      if (rc < 0 && rc != -EINTR && rc != -EBUSY) {
        throw std::runtime_error(std::string("io_uring_submit: ") + std::strerror(-rc));
      }
      unsigned head;
      unsigned seen = 0;
      // Collected first, then handled: a handler may queue (and submit) more.
      completions_.clear();
      io_uring_for_each_cqe(&ring_, head, cqe) {
        ++seen;
        if (cqe->user_data == kInternalTag) continue;
        completions_.push_back({cqe->user_data, cqe->res});
      }
      io_uring_cq_advance(&ring_, seen);
      // Counted off before any handler runs: one that throws leaves the
      // rest unhandled but gone from the queue, and cancel_all() must not
      // wait for them.
      in_flight_ -= static_cast<unsigned>(completions_.size());
      for (const auto& [tag, result] : completions_) on_completion(tag, result);
    }
  }

 private:
  io_uring_sqe* next_sqe() {
    // An operation and its linked timeout must go to the kernel together:
    // room for both (finish() takes the second), or neither is taken. A
    // submit refused just now (-EBUSY) can leave room for one only.
    if (io_uring_sq_space_left(&ring_) < 2) io_uring_submit(&ring_);
    if (io_uring_sq_space_left(&ring_) < 2) throw std::runtime_error("io_uring submission queue stuck");
    return io_uring_get_sqe(&ring_);
  }
  void finish(io_uring_sqe* sqe, std::uint64_t tag, std::chrono::milliseconds limit) {
    io_uring_sqe_set_data64(sqe, tag);
    ++in_flight_;
    if (limit.count() <= 0) return;
    sqe->flags |= IOSQE_IO_LINK;
    // The kernel reads the timespec when it takes the SQE; a slot is reused
    // only after the ring has wrapped twice, long after that.
    __kernel_timespec& ts = timespecs_[next_timespec_++ % timespecs_.size()];
    ts.tv_sec = limit.count() / 1000;
    ts.tv_nsec = (limit.count() % 1000) * 1'000'000;
    io_uring_sqe* timeout = io_uring_get_sqe(&ring_);  // next_sqe() kept room for it
    io_uring_prep_link_timeout(timeout, &ts, 0);
    io_uring_sqe_set_data64(timeout, kInternalTag);
  }

  io_uring ring_{};
  std::vector<__kernel_timespec> timespecs_;
  std::size_t next_timespec_ = 0;
  unsigned in_flight_ = 0;
  struct Completion {
    std::uint64_t tag;
    int result;
  };
  std::vector<Completion> completions_;
};

// Ends what a sink's write() that threw left in flight, waiting up to
// `limit`. Where the kernel would not let go, `connections` (whose buffers
// those operations name) are left to it: moved into a vector never freed,
// so neither freed nor reused (io_uring would write into whatever took
// their place). `who` names the sink in the log line.
template <class Connections>
void settle_in_flight(UringLoop& loop, Connections& connections, std::chrono::milliseconds limit,
                      const std::string& who) {
  if (const unsigned left = loop.cancel_all(limit); left != 0) {
    std::fprintf(stderr,
                 "ringroute: %s: %u operations still in flight after cancelling them; their connections are left "
                 "to them\n",
                 who.c_str(), left);
    new Connections(std::move(connections));  // NOLINT: leaked on purpose
    connections.clear();
  }
}

}  // namespace ringroute::sinks
