#include "ringroute/ring/truncation_guard.hpp"

#include <signal.h>
#include <sys/mman.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <cstdint>
#include <mutex>  // std::call_once
#include <system_error>

namespace ringroute::ring {
namespace {

enum : std::uint8_t { kWhole, kReplacing, kReplaced, kReplaceFailed };

// One mapping the handler may replace. The handler reads these without a
// lock, so every field is a lock-free atomic.
struct GuardEntry {
  std::atomic<std::uintptr_t> begin{0};  // 0: a free entry
  std::atomic<std::uintptr_t> end{0};
  std::atomic<bool> writable{false};
  std::atomic<std::uint8_t> state{kWhole};
};
static_assert(std::atomic<std::uintptr_t>::is_always_lock_free && std::atomic<std::uint8_t>::is_always_lock_free);

// A router maps one segment per ring, and a few while it starts; a process
// with more at once leaves the rest unguarded (as they were before).
constexpr std::size_t kMappings = 256;
std::array<GuardEntry, kMappings> g_mappings;
// `begin` of an entry being filled in: taken, but no address is in it.
constexpr std::uintptr_t kTaken = 1;

std::once_flag g_installed;
struct sigaction g_previous {};

// What the process did with SIGBUS before the guard: the handler it had, or
// the default action (death; for a fault, the access is tried again after
// the return and faults again, now fatally).
void pass_on(int signal, siginfo_t* info, void* context) {
  const bool sigaction_handler = (g_previous.sa_flags & SA_SIGINFO) != 0 && g_previous.sa_sigaction != nullptr;
  if (sigaction_handler || (g_previous.sa_handler != SIG_DFL && g_previous.sa_handler != SIG_IGN)) {
    // With the signals its sigaction blocked while it runs, as the kernel
    // would have run it (pthread_sigmask is async-signal-safe).
    sigset_t before;
    ::pthread_sigmask(SIG_BLOCK, &g_previous.sa_mask, &before);
    if (sigaction_handler) {
      g_previous.sa_sigaction(signal, info, context);
    } else {
      g_previous.sa_handler(signal);
    }
    ::pthread_sigmask(SIG_SETMASK, &before, nullptr);
    return;
  }
  const bool sent = info == nullptr || info->si_code <= 0;  // by kill() or sigqueue(), not a fault
  if (g_previous.sa_handler == SIG_IGN && sent) return;    // ignored, as it was
  // The default (and SIG_IGN for a fault, which would fault for ever: the
  // kernel kills then too).
  struct sigaction fallback {};
  fallback.sa_handler = SIG_DFL;
  ::sigemptyset(&fallback.sa_mask);
  ::sigaction(SIGBUS, &fallback, nullptr);
  // One sent is not raised again by returning: raise it (pending until this
  // handler returns, then fatal).
  if (sent) ::raise(SIGBUS);
}

void on_sigbus(int signal, siginfo_t* info, void* context) {
  const int saved_errno = errno;
  // si_code > 0: the kernel's, for an access (kill() and sigqueue() give <= 0).
  if (info != nullptr && info->si_code > 0) {
    const auto address = reinterpret_cast<std::uintptr_t>(info->si_addr);
    for (GuardEntry& mapping : g_mappings) {
      // A seqlock read, `begin` its sequence: acquire pairs with
      // the constructor's release store of begin (end and writable are this
      // mapping's); the fence and the second load of begin catch an entry
      // let go and taken again meanwhile (the constructor's fence), whose end
      // would not be this begin's.
      const std::uintptr_t begin = mapping.begin.load(std::memory_order_acquire);
      if (begin <= kTaken || address < begin) continue;
      const std::uintptr_t end = mapping.end.load(std::memory_order_relaxed);
      const bool writable = mapping.writable.load(std::memory_order_relaxed);
      std::atomic_thread_fence(std::memory_order_acquire);
      if (mapping.begin.load(std::memory_order_relaxed) != begin || address >= end) continue;
      std::uint8_t expected = kWhole;
      // acq_rel: one thread replaces; the others see kReplacing and return,
      // their accesses faulting again until the replacement is in place.
      if (mapping.state.compare_exchange_strong(expected, kReplacing, std::memory_order_acq_rel)) {
        const int protection = writable ? PROT_READ | PROT_WRITE : PROT_READ;
        void* zeros = ::mmap(reinterpret_cast<void*>(begin), end - begin, protection,
                             MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        // Release pairs with GuardedMapping::cut_short's acquire and with
        // the compare above in other threads.
        mapping.state.store(zeros == MAP_FAILED ? kReplaceFailed : kReplaced, std::memory_order_release);
        expected = zeros == MAP_FAILED ? kReplaceFailed : kReplaced;
      }
      if (expected == kReplaceFailed) break;  // no zeros to give: as if unguarded
      errno = saved_errno;
      return;
    }
  }
  pass_on(signal, info, context);
  errno = saved_errno;
}

}  // namespace

void install_truncation_guard() {
  std::call_once(g_installed, [] {
    // The previous action first: the handler may run as soon as it is in.
    if (::sigaction(SIGBUS, nullptr, &g_previous) != 0) {
      throw std::system_error(errno, std::generic_category(), "sigaction(SIGBUS) for the ring truncation guard");
    }
    struct sigaction action {};
    action.sa_sigaction = on_sigbus;
    action.sa_flags = SA_SIGINFO | SA_RESTART;
    ::sigemptyset(&action.sa_mask);
    if (::sigaction(SIGBUS, &action, nullptr) != 0) {
      throw std::system_error(errno, std::generic_category(), "sigaction(SIGBUS) for the ring truncation guard");
    }
  });
}

// Takes a free entry for the mapping; none left (-1) leaves it unguarded.
GuardedMapping::GuardedMapping(const void* begin, std::size_t bytes, bool writable) noexcept : index_(-1) {
  const auto address = reinterpret_cast<std::uintptr_t>(begin);
  for (std::size_t i = 0; i < kMappings; ++i) {
    GuardEntry& mapping = g_mappings[i];
    std::uintptr_t free = 0;
    // Taken with a compare, not under a mutex: a child forked while another
    // thread held one would find it held for good at its first attach.
    // Relaxed: the entry is not the handler's until the release store below.
    if (!mapping.begin.compare_exchange_strong(free, kTaken, std::memory_order_relaxed)) continue;
    // Pairs with the handler's acquire fence: a handler that reads the end
    // below then reads begin as kTaken or later, not the entry's old begin.
    std::atomic_thread_fence(std::memory_order_release);
    mapping.end.store(address + bytes, std::memory_order_relaxed);
    mapping.writable.store(writable, std::memory_order_relaxed);
    mapping.state.store(kWhole, std::memory_order_relaxed);
    // Release pairs with the handler's acquire load: it sees the fields above.
    mapping.begin.store(address, std::memory_order_release);
    index_ = static_cast<int>(i);
    return;
  }
}

GuardedMapping::~GuardedMapping() {
  if (index_ < 0) return;
  // Relaxed: the munmap that follows is a syscall, and a fault at these
  // addresses after it is no longer this mapping's anyway.
  g_mappings[static_cast<std::size_t>(index_)].begin.store(0, std::memory_order_relaxed);
}

bool GuardedMapping::cut_short() const noexcept {
  if (index_ < 0) return false;
  // Acquire pairs with the handler's release store.
  return g_mappings[static_cast<std::size_t>(index_)].state.load(std::memory_order_acquire) == kReplaced;
}

}  // namespace ringroute::ring
