// Forked producer processes for `ringroute bench` and `bench ring`: a shared
// control block (ready, go, stop, the first error) in anonymous shared memory.
#pragma once

#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <new>
#include <stdexcept>
#include <thread>
#include <vector>

namespace ringroute::tools {

inline std::int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// Shared with the forked producers (MAP_SHARED | MAP_ANONYMOUS). Each flag is
// touched a few times a run; only `error` is published through `failed`
// (written before it is set, read after it is seen).
struct BenchControl {
  std::atomic<int> ready{0};
  std::atomic<int> go{0};
  std::atomic<int> stop{0};
  std::atomic<int> failed{0};
  std::atomic<std::uint64_t> full{0};  // emits that gave up waiting for room
  char error[512]{};
};

class ProducerProcesses {
 public:
  // Forks `count` children; child i runs run(i, control) and must not return.
  template <class Run>
  ProducerProcesses(unsigned count, Run&& run) {
    void* mem = ::mmap(nullptr, sizeof(BenchControl), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) throw std::runtime_error("mmap of the bench control block failed");
    control_ = new (mem) BenchControl{};
    for (unsigned i = 0; i < count; ++i) {
      const pid_t pid = ::fork();
      if (pid < 0) {
        kill_all();
        throw std::runtime_error("fork failed");
      }
      if (pid == 0) run(i, control_);
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
  bool wait_ready() {
    while (control_->ready.load() < static_cast<int>(children_.size()) && control_->failed.load() == 0) {
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
