// Forked producer processes for `ringroute bench` and `bench ring`: a shared
// control block (ready, go, stop, the first error) in anonymous shared memory.
#pragma once

#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CLI/CLI.hpp>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <new>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "ringroute/tools/commands.hpp"

namespace ringroute::tools {

inline std::int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// Shared with the forked producers (MAP_SHARED | MAP_ANONYMOUS). Each flag is
// touched a few times a run, so most take the default seq_cst and pair with
// nothing in particular. The orders that matter: `error` is published
// through `failed` (written before it is set, read after it is seen, both
// seq_cst); `go` is a release store the producers acquire, so what the
// parent set up before it (its rings, the schedule's start) is theirs;
// `stop` is relaxed, a flag only (each producer's figures come back through
// its exit and the counters, after a join or wait).
struct BenchControl {
  std::atomic<int> ready{0};
  std::atomic<int> go{0};
  std::atomic<int> stop{0};
  std::atomic<int> failed{0};
  std::atomic<std::uint64_t> full{0};  // emits whose wait for room ran out (the rest of the batch goes again)
  std::atomic<int> measuring{0};       // the measured window is open
  std::atomic<std::int64_t> lag_max_ns{0};  // --rate: the latest a producer emitted, against its schedule
  char error[512]{};
};

// Set by SIGINT or SIGTERM once catch_interrupts() ran: a bench's loops
// look at it, stop, and remove what they made (left to the default action,
// Ctrl-C left rings, the perf block and sink files in /dev/shm).
// Lock-free, so the handler may store it, and atomic, since the handler
// can run on any thread of the process (the in-process router's too).
inline std::atomic<int> bench_interrupted{0};
static_assert(std::atomic<int>::is_always_lock_free);

inline void catch_interrupts() {
  struct sigaction action {};
  action.sa_handler = [](int) { bench_interrupted.store(1, std::memory_order_relaxed); };
  sigemptyset(&action.sa_mask);
  ::sigaction(SIGINT, &action, nullptr);
  ::sigaction(SIGTERM, &action, nullptr);
}

class ProducerProcesses {
 public:
  // Forks `count` children; child i runs run(i, control) and must not return.
  template <class Run>
  ProducerProcesses(unsigned count, Run&& run) {
    void* mem = ::mmap(nullptr, sizeof(BenchControl), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) throw std::runtime_error("mmap of the bench control block failed");
    control_ = new (mem) BenchControl{};
    const pid_t parent = ::getpid();
    for (unsigned i = 0; i < count; ++i) {
      const pid_t pid = ::fork();
      if (pid < 0) {
        kill_all();
        throw std::runtime_error("fork failed");
      }
      if (pid == 0) {
        // A bench killed outright must not leave its producers spinning.
        ::prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (::getppid() != parent) ::_exit(1);  // it died before the line above
        run(i, control_);
      }
      children_.push_back(pid);
    }
  }
  ~ProducerProcesses() {
    kill_all();
    ::munmap(control_, sizeof(BenchControl));
  }
  ProducerProcesses(const ProducerProcesses&) = delete;
  ProducerProcesses& operator=(const ProducerProcesses&) = delete;

  [[nodiscard]] BenchControl& control() noexcept { return *control_; }
  [[nodiscard]] const std::vector<pid_t>& pids() const noexcept { return children_; }

  // Waits until every child is ready; false when one failed (then all are
  // stopped and reaped, and control().error says why).
  // A child that dies without saying why (killed, out of memory) counts as
  // failed too: waiting for it to be ready would never end.
  bool wait_ready() {
    while (control_->ready.load() < static_cast<int>(children_.size()) && control_->failed.load() == 0) {
      if (bench_interrupted) {
        std::snprintf(control_->error, sizeof control_->error, "interrupted");
        control_->failed.store(1);
        break;
      }
      for (pid_t& pid : children_) {
        int status = 0;
        if (pid == 0 || ::waitpid(pid, &status, WNOHANG) != pid) continue;
        pid = 0;
        if (control_->failed.load() == 0) {
          std::snprintf(control_->error, sizeof control_->error, "a producer process %s %d before it was ready",
                        WIFSIGNALED(status) ? "was killed by signal" : "exited with status",
                        WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
          control_->failed.store(1);
        }
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    if (control_->failed.load() == 0) return true;
    control_->stop.store(1);
    control_->go.store(1);
    reap();
    return false;
  }
  void go() { control_->go.store(1); }
  void stop() { control_->stop.store(1); }

  // Waits for every child to exit.
  void reap() {
    for (pid_t& pid : children_) {
      if (pid != 0) ::waitpid(pid, nullptr, 0);
      pid = 0;
    }
  }
  // Reaps those that exited; true once all have.
  bool reap_exited() {
    bool all = true;
    for (pid_t& pid : children_) {
      if (pid == 0) continue;
      if (::waitpid(pid, nullptr, WNOHANG) == pid) {
        pid = 0;
      } else {
        all = false;
      }
    }
    return all;
  }
  void kill_all() {
    control_->stop.store(1);
    control_->go.store(1);
    for (pid_t pid : children_) {
      if (pid != 0) ::kill(pid, SIGKILL);
    }
    reap();
  }

 private:
  BenchControl* control_ = nullptr;
  std::vector<pid_t> children_;
};

}  // namespace ringroute::tools
