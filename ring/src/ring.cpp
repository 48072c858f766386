#include "ringroute/ring/ring.hpp"

#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <limits>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace ringroute::ring {

namespace detail {
std::atomic<void (*)()> after_claim_hook{nullptr};
std::atomic<void (*)()> unheaded_claim_hook{nullptr};
std::atomic<void (*)()> before_owner_judged_hook{nullptr};
std::atomic<void (*)()> before_head_reload_hook{nullptr};
std::atomic<void (*)()> page_marked_hook{nullptr};
std::atomic<std::uint64_t> fork_generation{0};
}  // namespace detail

namespace {

// An owner pid being taken (a producer slot's, or the consumer's in the
// header): the new owner's start ticks are not written yet, so whoever
// sees this must treat the owner as alive.
constexpr std::int32_t kOwnerBeingTaken = -1;

// Takes an owner pid from `expected` (free, or a dead owner's) for `self`:
// marked, then the start ticks, then the pid published, so no one reads the
// new owner's pid with the old owner's ticks (and takes it as well). False
// when another changed it first.
// `marks_taken_over`: whether another may take over a mark left standing
// (the consumer's, after a second; producer slots' never are).
bool take_owner(std::atomic<std::int32_t>& pid, std::atomic<std::uint64_t>& start_ticks, std::int32_t expected,
                pid_t self, std::uint64_t self_ticks, bool marks_taken_over) {
  // Where marks are taken over, the ticks are read before the mark and
  // replaced by a CAS from them: a taker stalled for over a second after its
  // mark finds them changed by whoever took it over, and gives up rather
  // than writing its own over the new owner's (who would look dead).
  // Relaxed: ordered by the pid CAS and the publishing CAS below.
  std::uint64_t previous_ticks = start_ticks.load(std::memory_order_relaxed);
  // acq_rel: exclusive ownership against others taking it now.
  if (!pid.compare_exchange_strong(expected, kOwnerBeingTaken, std::memory_order_acq_rel)) return false;
  if (!marks_taken_over) {
    start_ticks.store(self_ticks, std::memory_order_relaxed);
  } else if (!start_ticks.compare_exchange_strong(previous_ticks, self_ticks, std::memory_order_relaxed)) {
    return false;  // the mark left standing is taken over in turn after a second
  }
  // Release: pairs with the acquire loads of the pid (the consumer's in
  // skip_if_stalled(), a would-be consumer's in its constructor). A CAS, not
  // a store: one stalled here for over a second has had its mark taken over
  // (see Consumer's constructor), and must not become a second owner.
  std::int32_t marked = kOwnerBeingTaken;
  return pid.compare_exchange_strong(marked, static_cast<std::int32_t>(self), std::memory_order_release,
                                     std::memory_order_relaxed);
}

// Slot `index`'s liveness lock, of `type`: its byte of the segment file.
struct flock slot_lock(std::uint32_t index, short type) noexcept {
  struct flock lock {};
  lock.l_type = type;
  lock.l_whence = SEEK_SET;
  lock.l_start = static_cast<off_t>(index);
  lock.l_len = 1;
  return lock;
}

// Takes or drops slot `index`'s liveness lock on `fd` (F_WRLCK or F_UNLCK);
// false with errno where fcntl refused (EAGAIN: another holds it).
bool lock_slot(int fd, std::uint32_t index, short type) noexcept {
  struct flock lock = slot_lock(index, type);
  return ::fcntl(fd, F_OFD_SETLK, &lock) == 0;
}

// What taking a slot came to: taken; not taken; or not taken, and our
// slot lock descriptor is of no use (fcntl refused it for a reason other
// than another holding the lock: unsupported, or forbidden by a sandbox).
enum class Take { taken, not_taken, locks_unusable };

// `lock_fd`: ours for the slot lock, or -1 (then the pid decides, as for
// producers built before the lock, but a slot whose lock is held is still
// left alone).
Take take_slot(ProducerSlot& slot, std::uint32_t index, int lock_fd, int segment_fd, bool only_free, pid_t self,
               std::uint64_t self_ticks) {
  std::int32_t owner = slot.owner_pid.load(std::memory_order_acquire);
  if (owner == kOwnerBeingTaken) return Take::not_taken;
  if (owner != 0 && only_free) return Take::not_taken;
  // The lock first: refused as held, the slot's owner lives (in any
  // namespace; another handle of this process holds it on a descriptor of
  // its own), or another producer is taking the slot now.
  bool locked = false;
  if (lock_fd >= 0) {
    locked = lock_slot(lock_fd, index, F_WRLCK);
    if (!locked) return errno == EAGAIN || errno == EACCES ? Take::not_taken : Take::locks_unusable;
  } else if (owner != 0 && slot_lock_state(segment_fd, index) == SlotLock::held) {
    return Take::not_taken;
  }
  // An owner that held the slot's lock is dead now that we have it; one
  // that never took it (a build before the lock) is judged by its pid.
  // Relaxed: what these say is checked against the lock we hold.
  const std::uint64_t owner_ticks = slot.owner_start_ticks.load(std::memory_order_relaxed);
  const bool owner_held_lock = owner != 0 && owner_ticks != 0 &&
                               slot.locked_by.load(std::memory_order_relaxed) == owner &&
                               slot.locked_ticks.load(std::memory_order_relaxed) == owner_ticks;
  const bool owner_alive = owner != 0 && !(locked && owner_held_lock) && process_alive(owner, owner_ticks);
  if (owner_alive || !take_owner(slot.owner_pid, slot.owner_start_ticks, owner, self, self_ticks, false)) {
    if (locked) lock_slot(lock_fd, index, F_UNLCK);
    return Take::not_taken;
  }
  // Before our first claim, whose header store (release) publishes them to
  // the consumer with the claim: it then judges us by the lock alone.
  slot.locked_ticks.store(locked ? self_ticks : 0, std::memory_order_relaxed);
  slot.locked_by.store(locked ? static_cast<std::int32_t>(self) : 0, std::memory_order_relaxed);
  return Take::taken;
}

// The descriptors holding this process's producers' slot locks, so a child
// fork() made closes its copies at once: they share the parent's open file
// descriptions, and would keep the parent's locks held after the parent
// died (its slots taken, its claims skipped only on the timeout). Never
// destroyed: the fork handlers may run while statics are torn down.
struct LockFds {
  std::mutex mutex;
  std::vector<int> fds;
};
LockFds& lock_fds() {
  static LockFds* const fds = new LockFds;
  return *fds;
}

// A descriptor of `segment` of our own: a new open file description, so the
// slot lock it holds is ours alone (the segment's own descriptor is shared
// with every handle made from that segment, and with children fork() made)
// and close-on-exec (a program this process runs does not keep it).
// /proc/thread-self first: /proc/self/fd is empty once the main thread
// has left with pthread_exit. Where /proc is not there at all (a sandbox
// without it), the segment opened again by name, if that is still the
// same file: without a lock, a producer whose pid the consumer cannot see
// (a PID namespace of its own) was taken for dead, its claims skipped.
int open_lock_fd(const Segment& segment) noexcept {
  if (segment.fd() < 0) return -1;
  for (const char* self : {"/proc/thread-self", "/proc/self"}) {
    char path[64];
    std::snprintf(path, sizeof path, "%s/fd/%d", self, segment.fd());
    if (const int fd = ::open(path, O_RDWR | O_CLOEXEC); fd >= 0) return fd;
  }
  char name[512];
  if (std::snprintf(name, sizeof name, "/%s", segment.name().c_str()) >= static_cast<int>(sizeof name)) return -1;
  const int fd = ::shm_open(name, O_RDWR | O_CLOEXEC, 0);
  if (fd < 0) return -1;
  struct stat ours {}, reopened {};
  if (::fstat(segment.fd(), &ours) == 0 && ::fstat(fd, &reopened) == 0 && ours.st_dev == reopened.st_dev &&
      ours.st_ino == reopened.st_ino) {
    return fd;
  }
  ::close(fd);
  return -1;
}

// Counts forks and closes a child's copies of the registered descriptors,
// once a process: before any is registered, by producers and consumers
// alike (a process with only consumers, a router, forked children that
// kept its consumer lock after it died). The mutex is held across fork()
// (prepare, then parent or child), so the child's list is whole.
void watch_forks() noexcept {
  static const int registered = ::pthread_atfork(
      [] { lock_fds().mutex.lock(); }, [] { lock_fds().mutex.unlock(); },
      [] {
        detail::fork_generation.fetch_add(1, std::memory_order_relaxed);
        for (const int fd : lock_fds().fds) ::close(fd);
        lock_fds().fds.clear();
        lock_fds().mutex.unlock();
      });
  (void)registered;  // only fails for lack of memory: then forks go unnoticed, as before
}

// Opens and registers one under the registry's mutex, so no fork() comes
// between (the child would keep a copy not on its list); -1 where none.
int open_registered_lock_fd(const Segment& segment) noexcept {
  watch_forks();
  try {
    std::lock_guard guard(lock_fds().mutex);
    lock_fds().fds.reserve(lock_fds().fds.size() + 1);
    const int fd = open_lock_fd(segment);
    if (fd >= 0) lock_fds().fds.push_back(fd);
    return fd;
  } catch (const std::exception&) {  // out of memory: no lock, the pid decides
    return -1;
  }
}

void close_registered_lock_fd(int fd) noexcept {
  std::lock_guard guard(lock_fds().mutex);
  auto& fds = lock_fds().fds;
  fds.erase(std::remove(fds.begin(), fds.end(), fd), fds.end());
  ::close(fd);
}

}  // namespace

Producer::Producer(Segment segment)
    : segment_(std::move(segment)),
      header_(&segment_.header()),
      data_(segment_.data()),
      mask_(segment_.capacity() - 1),
      slot_(&header_->overflow_slot),
      slot_index_(kNoSlot) {
  // Pages as the ring's offsets count them: the data starts on a page (the
  // header is whole pages), and a claim's header never straddles one.
  static_assert(kHeaderBytes % (std::size_t{1} << kPageShift) == 0);
  touched_pages_ = std::make_unique<std::atomic<std::uint64_t>[]>(page_words());
  untouched_pages_.store(page_count(), std::memory_order_relaxed);
  watch_forks();
  fork_generation_ = detail::fork_generation.load(std::memory_order_relaxed);
  const pid_t self = ::getpid();
  const std::uint64_t ticks = process_start_ticks(self);
  lock_fd_ = open_registered_lock_fd(segment_);
  for (bool only_free : {true, false}) {
    for (std::uint32_t i = 0; i < kMaxProducerSlots; ++i) {
      Take take = take_slot(header_->slots[i], i, lock_fd_, segment_.fd(), only_free, self, ticks);
      if (take == Take::locks_unusable) {
        close_registered_lock_fd(lock_fd_);
        lock_fd_ = -1;
        take = take_slot(header_->slots[i], i, lock_fd_, segment_.fd(), only_free, self, ticks);
      }
      if (take == Take::taken) {
        slot_ = &header_->slots[i];
        slot_index_ = i;
        return;
      }
    }
  }
  // The overflow slot has no lock: the descriptor would only hold a slot
  // of ours that is not.
  if (lock_fd_ >= 0) close_registered_lock_fd(lock_fd_);
  lock_fd_ = -1;
}

void Producer::mark_every_page_touched() noexcept {
  const std::uint64_t pages = page_count();
  for (std::uint64_t word = 0; word < page_words(); ++word) {
    const std::uint64_t in_use = word + 1 < page_words() || pages % 64 == 0
                                     ? ~std::uint64_t{0}
                                     : (std::uint64_t{1} << (pages % 64)) - 1;
    // Only the bits this sets are taken off the count: a claim on another
    // thread may set one between its own fetch_or and its subtraction, and
    // a count set to 0 here would then wrap below it, never to read 0 again.
    // Relaxed, as touch_page().
    const std::uint64_t before = touched_pages_[word].fetch_or(in_use, std::memory_order_relaxed);
    untouched_pages_.fetch_sub(static_cast<std::uint64_t>(__builtin_popcountll(in_use & ~before)),
                               std::memory_order_relaxed);
  }
}

void Producer::touch_claim_pages(std::uint64_t tail_index, std::uint64_t bytes, bool wraps) noexcept {
  // Every page the claim covers, not only its header's: a page only ever
  // inside claims (a batch of 16 KiB takes four) would never be touched,
  // and with it untouched every claim came here for good.
  const auto touch_range = [this](std::uint64_t from, std::uint64_t to) {
    touch_page(from);
    for (std::uint64_t page = (from >> kPageShift) + 1; page <= ((to - 1) >> kPageShift); ++page) {
      touch_page(page << kPageShift);
    }
  };
  if (wraps) {
    // The padding too, though only its header is written: with claims of
    // one size the lap ends the same way each time, and pages only ever
    // inside a padding would stay untouched for good.
    touch_range(tail_index, mask_ + 1);
    touch_range(0, bytes);
  } else {
    touch_range(tail_index, tail_index + bytes);
  }
}

void Producer::touch_page(std::uint64_t index) noexcept {
  const std::uint64_t page = index >> kPageShift;
  const std::uint64_t bit = std::uint64_t{1} << (page & 63);
  // Relaxed, all three: the bits only save repeating an add that changes
  // nothing, and the count only ends the looking.
  if ((touched_pages_[page >> 6].load(std::memory_order_relaxed) & bit) != 0) return;
#if !defined(__SANITIZE_THREAD__) && !defined(RINGROUTE_TSAN)
  // TSan would see the add race with another producer's plain payload
  // writes to the word (a stale tail); harmless, but it can't know.
  detail::header_word(data_ + (index & ~std::uint64_t{kRecordAlignment - 1})).fetch_add(0, std::memory_order_relaxed);
#endif
  if ((touched_pages_[page >> 6].fetch_or(bit, std::memory_order_relaxed) & bit) == 0) {
    if (auto* hook = detail::page_marked_hook.load(std::memory_order_relaxed)) [[unlikely]] hook();
    untouched_pages_.fetch_sub(1, std::memory_order_relaxed);
  }
}

Producer::~Producer() {
  // Freed only if it is still ours: a child made without the fork
  // handlers (a raw clone) runs this copy too, and storing 0 would have
  // the consumer take its live parent's claims for a dead producer's.
  if (std::int32_t self = static_cast<std::int32_t>(::getpid());
      slot_index_ != kNoSlot && !forked() && slot_->owner_pid.load(std::memory_order_relaxed) == self) {
    // An exchange too: a slot taken over since the check (we were judged
    // dead) keeps its new owner's mark.
    std::int32_t locked = self;
    slot_->locked_by.compare_exchange_strong(locked, 0, std::memory_order_relaxed);  // published by the exchange below
    // Release: our commits happen-before the slot reads as free.
    slot_->owner_pid.compare_exchange_strong(self, 0, std::memory_order_release, std::memory_order_relaxed);
  }
  // Closing drops our slot lock (the descriptor's open file description is
  // ours alone). A copy fork() made has had its descriptor closed already.
  if (lock_fd_ >= 0 && !forked()) close_registered_lock_fd(lock_fd_);
}

Status Producer::claim(std::uint32_t bytes, Claim& out, std::chrono::nanoseconds timeout) noexcept {
  std::int64_t deadline = 0;
  return claim(bytes, out, timeout, deadline);
}

Status Producer::claim(std::uint32_t bytes, Claim& out, std::chrono::nanoseconds timeout,
                       std::int64_t& deadline_ns, ClaimGiveUp give_up) noexcept {
  Status s = claim_once(bytes, out);
  if (s != Status::full) return s;
  // Relaxed: a count (threads sharing the slot add to it at once, hence
  // the RMW), read only to be shown.
  slot_->full.fetch_add(1, std::memory_order_relaxed);
  if (timeout.count() <= 0) return s;
  // Saturated: a timeout meaning "wait for good" (INT64_MAX) must not wrap
  // the deadline into the past.
  if (deadline_ns == 0) {
    const std::int64_t now_ns = detail::monotonic_ns();
    deadline_ns = timeout.count() > std::numeric_limits<std::int64_t>::max() - now_ns
                      ? std::numeric_limits<std::int64_t>::max()
                      : now_ns + timeout.count();
  }
  const std::int64_t deadline = deadline_ns;
  // The timeout bounds the whole wait: a later run of a batch that finds
  // the shared deadline passed returns at once, and a yield (which may
  // give the core away for a scheduler slice) is made only before it.
  if (detail::monotonic_ns() >= deadline) return Status::full;
  for (int i = 0; i < 128; ++i) {
    detail::cpu_relax();
    if ((s = claim_once(bytes, out)) != Status::full) return s;
  }
  for (int i = 0; i < 8 && detail::monotonic_ns() < deadline; ++i) {
    ::sched_yield();
    if ((s = claim_once(bytes, out)) != Status::full) return s;
  }
  for (;;) {
    const std::int64_t now = detail::monotonic_ns();
    if (now >= deadline) return Status::full;
    if (give_up.now != nullptr && give_up.now(give_up.context)) return Status::not_ready;
    // Acquire pairs with the consumer's release fetch_add of space_wake
    // after it moved head: reading its count, we see that head too.
    const std::uint32_t seen = header_->space_wake.load(std::memory_order_acquire);
    // Dekker with Consumer::release: announce, fence, re-check; the consumer
    // stores head, fences, then reads producers_waiting.
    header_->producers_waiting.fetch_add(1, std::memory_order_seq_cst);
    std::atomic_thread_fence(std::memory_order_seq_cst);
    s = claim_once(bytes, out);
    if (s != Status::full) {
      // Relaxed, both decrements: the count only tells the consumer whether
      // to make the wake syscall; a stale high count costs one futile wake.
      header_->producers_waiting.fetch_sub(1, std::memory_order_relaxed);
      return s;
    }
    // Bounded sleeps: a consumer that died can't wake us.
    detail::futex_wait(header_->space_wake, seen,
                       std::chrono::nanoseconds(std::min<std::int64_t>(deadline - now, 10'000'000)));
    header_->producers_waiting.fetch_sub(1, std::memory_order_relaxed);
    if ((s = claim_once(bytes, out)) != Status::full) return s;
  }
}

Consumer::Consumer(Segment segment, ConsumerOptions options)
    : segment_(std::move(segment)),
      header_(&segment_.header()),
      data_(segment_.data()),
      mask_(segment_.capacity() - 1),
      dead_claim_timeout_ns_(std::chrono::duration_cast<std::chrono::nanoseconds>(options.dead_claim_timeout).count()) {
  const pid_t self = ::getpid();
  const std::uint64_t ticks = process_start_ticks(self);
  // The consumer lock (kConsumerLockByte) first, on a descriptor of our
  // own, registered so that a child fork() makes closes its copy. Held by
  // another, that consumer lives, whatever its pid says to us (another PID
  // namespace): refused, as two consumers would corrupt the ring. Where
  // locks can't be had at all, the pid decides, as below. Producers read
  // it as the router still reading a ring whose file was removed.
  fork_generation_ = detail::fork_generation.load(std::memory_order_relaxed);
  lock_fd_ = open_registered_lock_fd(segment_);
  if (lock_fd_ >= 0 && !lock_slot(lock_fd_, kConsumerLockByte, F_WRLCK)) {
    const int e = errno;
    close_registered_lock_fd(lock_fd_);
    lock_fd_ = -1;
    if (e == EAGAIN || e == EACCES) {
      // Named by its pid where that is a process we can see: which router
      // to stop is what the reader of this wants to know. Acquire pairs
      // with the release that published the pid: these are its ticks.
      const std::int32_t owner = header_->consumer_pid.load(std::memory_order_acquire);
      const std::uint64_t owner_ticks = header_->consumer_start_ticks.load(std::memory_order_relaxed);
      std::string who;
      if (owner == self) {
        who = ": this process already consumes it";
      } else if (owner > 0 && process_alive(owner, owner_ticks)) {
        who = ": already consumed by pid " + std::to_string(owner) + " (one router or bench per ring)";
      } else {
        who = ": already consumed by another process (it holds the ring's consumer lock; one router or bench per "
              "ring)";
      }
      throw RingError(Status::busy, "ring " + segment_.name() + who);
    }
  }
  // Let go if this constructor throws from here (the destructor won't run).
  struct LockHeld {
    int* fd;
    ~LockHeld() {
      if (fd != nullptr && *fd >= 0) {
        close_registered_lock_fd(*fd);
        *fd = -1;
      }
    }
    void release() noexcept { fd = nullptr; }
  } lock_held{&lock_fd_};
  // Ownership is the pid and start time in the header rather than a file
  // lock alone: a consumer of a build before the lock takes none. Taken as
  // producer slots are (take_owner).
  const auto marked_since = std::chrono::steady_clock::now();
  for (;;) {
    std::int32_t owner = header_->consumer_pid.load(std::memory_order_acquire);
    if (owner == kOwnerBeingTaken) {
      // Another consumer is between its two stores. One that died there
      // (a window of two stores) would hold the ring for good: past a
      // second, its mark is taken over.
      if (std::chrono::steady_clock::now() - marked_since < std::chrono::seconds(1)) {
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
        continue;
      }
    } else if (owner != 0) {
      // Acquire on the pid above pairs with the release that published it:
      // these are its owner's ticks.
      const std::uint64_t owner_ticks = header_->consumer_start_ticks.load(std::memory_order_relaxed);
      if (owner == self && (owner_ticks == ticks || ticks == 0)) {
        throw RingError(Status::busy, "ring " + segment_.name() + ": this process already consumes it");
      }
      // Our own pid with other start ticks is an earlier process that had
      // it (a router restarted in a container comes back as the same pid):
      // dead, since we have that pid now.
      if (owner != self && process_alive(owner, owner_ticks)) {
        throw RingError(Status::busy, "ring " + segment_.name() + ": already consumed by pid " +
                                          std::to_string(owner) + " (one router or bench per ring)");
      }
    }
    if (take_owner(header_->consumer_pid, header_->consumer_start_ticks, owner, self, ticks, true)) break;
  }
  header_->dead_claim_timeout_ns.store(dead_claim_timeout_ns_, std::memory_order_relaxed);
  // Relaxed: a flag a dead consumer may have left set costs producers a
  // futile wake, never a missed one (our sleep() sets it with its fence).
  header_->consumer_sleeping.store(0, std::memory_order_relaxed);

  // A consumer that died while zeroing released space left releasing_to set:
  // everything below it was consumed, so finish the job before reading.
  // Positions from shared memory are taken on record boundaries only (one
  // off a boundary had headers read across the end of the data): a head
  // off one is rounded up to the next.
  constexpr std::uint64_t kOffBoundary = kRecordAlignment - 1;
  const std::uint64_t head = align_record(header_->head.load(std::memory_order_acquire));
  const std::uint64_t releasing_to = header_->releasing_to.load(std::memory_order_acquire);
  released_ = head;
  read_position_ = head;
  if (releasing_to > head && releasing_to - head <= segment_.capacity() && (releasing_to & kOffBoundary) == 0) {
    read_position_ = releasing_to;
    release(releasing_to);
  }
  // Relaxed, here and in release(): only a consumer that takes the ring
  // over reads the marker, after this process is gone.
  header_->releasing_to.store(0, std::memory_order_relaxed);
  // Jumps over corrupt headers that a consumer before us took in what is
  // not released yet: taken again at the same positions, before the header
  // is read (the tail has moved on since, and a header it let through then
  // may look whole now). Relaxed: written by the consumer before us, which
  // we took the ring over from (the acquire on consumer_pid above).
  for (const auto& jump : header_->framing_jumps) {
    const std::uint64_t from = jump.from.load(std::memory_order_relaxed);
    const std::uint64_t to = jump.to.load(std::memory_order_relaxed);
    if (from == kNoJump || from < read_position_ || to <= from || to > released_ + segment_.capacity() ||
        ((from | to) & kOffBoundary) != 0) {
      continue;
    }
    if (saved_jump_count_ < saved_jumps_.size()) saved_jumps_[saved_jump_count_++] = {from, to};
  }
  std::sort(saved_jumps_.begin(), saved_jumps_.begin() + static_cast<std::ptrdiff_t>(saved_jump_count_),
            [](const Jump& a, const Jump& b) { return a.from < b.from; });
  next_saved_jump_from_ = saved_jump_count_ != 0 ? saved_jumps_[0].from : kNoJump;
  // After taking ownership: a second would-be consumer is refused at once.
  segment_.touch_for_write();
  lock_held.release();
}

void Consumer::take_saved_jump() noexcept {
  const Jump jump = saved_jumps_[next_saved_jump_++];
  std::fprintf(stderr,
               "ringroute: ring %s: skipping %llu bytes at offset %llu, over the corrupt header the consumer "
               "before skipped\n",
               segment_.name().c_str(), static_cast<unsigned long long>(jump.to - jump.from),
               static_cast<unsigned long long>(jump.from & mask_));
  record_jump(jump.from, jump.to);  // for reread(), as poll() went
  read_position_ = jump.to;
  // The next one ahead, if any (one inside this jump can't be met).
  while (next_saved_jump_ < saved_jump_count_ && saved_jumps_[next_saved_jump_].from < read_position_) {
    ++next_saved_jump_;
  }
  next_saved_jump_from_ = next_saved_jump_ < saved_jump_count_ ? saved_jumps_[next_saved_jump_].from : kNoJump;
}

Consumer::~Consumer() {
  // Not in a child of fork(): its copy was closed at the fork, and the
  // number may name another file since.
  if (lock_fd_ >= 0 && !detail::forked_since(fork_generation_)) {
    close_registered_lock_fd(lock_fd_);
  }
  std::int32_t self = static_cast<std::int32_t>(::getpid());
  // Release: our releases happen-before the next consumer's acquire in its constructor.
  header_->consumer_pid.compare_exchange_strong(self, 0, std::memory_order_release,
                                                std::memory_order_relaxed);
}

void Consumer::release(std::uint64_t position) noexcept {
  const std::uint64_t capacity = mask_ + 1;
  // More than a lap would zero past the end of the mapping.
  if (position <= released_ || position > read_position_ || position - released_ > capacity) return;
  // Crash marker for the zeroing below; see the constructor.
  header_->releasing_to.store(position, std::memory_order_release);
  const std::uint64_t from = released_ & mask_;
  const std::uint64_t length = position - released_;
  const std::uint64_t first_part = std::min(length, capacity - from);
  std::memset(data_ + from, 0, first_part);
  if (length > first_part) std::memset(data_, 0, length - first_part);
  // Release: pairs with the producers' acquire loads of head in claim_once(),
  // so a producer that reuses this space sees the zeroes first.
  header_->head.store(position, std::memory_order_release);
  header_->releasing_to.store(0, std::memory_order_relaxed);
  released_ = position;
  forget_jumps_before(position);
  // Dekker with Producer::claim's wait: store head, fence, read the waiters.
  std::atomic_thread_fence(std::memory_order_seq_cst);
  if (header_->producers_waiting.load(std::memory_order_relaxed) != 0) {
    const bool throttled = futile_wakes_ >= kFutileWakesBeforeGap;
    if (!throttled || detail::monotonic_ns() - last_wake_ns_ >= kFutileWakeGap) {
      header_->space_wake.fetch_add(1, std::memory_order_release);
      const bool futile = detail::futex_wake_all(header_->space_wake) == 0;
      futile_wakes_ = futile ? futile_wakes_ + 1 : 0;
      if (futile_wakes_ >= kFutileWakesBeforeGap) last_wake_ns_ = detail::monotonic_ns();
      ++space_wake_calls_;
    }
  }
}

void Consumer::sleep(std::chrono::nanoseconds timeout) noexcept {
  // Acquire: pairs with the seq_cst fence before a producer's increment
  // (Producer::wake_consumer_if_sleeping), so reading an increment makes
  // that producer's commit visible to the re-check below; and it keeps this
  // load before the flag's store (read after it, it could take in an
  // increment whose wake was already spent, and sleep through it).
  const std::uint32_t seen = header_->consumer_wake.load(std::memory_order_acquire);
  header_->consumer_sleeping.store(1, std::memory_order_relaxed);
  // Dekker with Producer::wake_consumer_if_sleeping: flag, fence, re-check.
  std::atomic_thread_fence(std::memory_order_seq_cst);
  // A ring full of records read but not released yet holds nothing new
  // (the word at the read position is our own oldest record): sleep too,
  // or a router whose sinks are stuck would spin on a core.
  const bool full_of_ours = read_position_ - released_ >= mask_ + 1;
  // Likewise a header already found broken at the producers' tail: nothing
  // to read until a producer claims there.
  const std::uint64_t word = detail::header_word(data_ + (read_position_ & mask_)).load(std::memory_order_acquire);
  const bool broken_at_tail = read_position_ == broken_at_ && word == broken_word_;
  if (full_of_ours || broken_at_tail || header_length(word) <= 0) {
    header_->consumer_sleeps.add_single_writer(1);
    detail::futex_wait(header_->consumer_wake, seen, timeout);
  }
  // Relaxed: a producer that still sees 1 makes one futex wake for nobody
  // (see the constructor's store); the Dekker pair is at the 1 above.
  header_->consumer_sleeping.store(0, std::memory_order_relaxed);
  slept_since_clock_read_ = true;
}

SlotLock slot_lock_state(int fd, std::uint32_t slot_index) noexcept {
  if (fd < 0) return SlotLock::unknown;
  struct flock lock = slot_lock(slot_index, F_WRLCK);
  if (::fcntl(fd, F_OFD_GETLK, &lock) != 0) return SlotLock::unknown;
  return lock.l_type == F_UNLCK ? SlotLock::free : SlotLock::held;
}

bool slot_owner_alive(int fd, const ProducerSlot& slot, std::uint32_t slot_index, std::int32_t pid) noexcept {
  // An owner that holds the slot's lock is judged by it alone: its pid may
  // name another process, or none, here (a PID namespace of its own).
  // Others by their pid, the lock breaking a tie. Relaxed: see the header.
  const std::uint64_t ticks = slot.owner_start_ticks.load(std::memory_order_relaxed);
  const bool holds_lock = ticks != 0 && slot.locked_by.load(std::memory_order_relaxed) == pid &&
                          slot.locked_ticks.load(std::memory_order_relaxed) == ticks;
  const SlotLock lock = slot_lock_state(fd, slot_index);
  return holds_lock && lock != SlotLock::unknown ? lock == SlotLock::held
                                                 : process_alive(pid, ticks) || lock == SlotLock::held;
}

std::uint32_t live_producers(const Segment& segment) noexcept {
  std::uint32_t live = 0;
  const SegmentHeader& header = segment.header();
  for (std::uint32_t i = 0; i < kMaxProducerSlots; ++i) {
    // Acquire pairs with the publishing CAS in take_owner(): pid, then ticks.
    const std::int32_t pid = header.slots[i].owner_pid.load(std::memory_order_acquire);
    if (pid > 0 && slot_owner_alive(segment.fd(), header.slots[i], i, pid)) ++live;
  }
  return live;
}

bool Consumer::skip_if_stalled(std::uint64_t index, std::uint64_t word) noexcept {
  const std::int32_t length = header_length(word);
  if (length == 0) {
    // Acquire pairs with the producers' CAS on tail.
    const std::uint64_t tail = header_->tail.load(std::memory_order_acquire);
    if (tail == read_position_) return false;  // simply empty
  }
  // The consumer often reaches a claim a producer is still writing; reading
  // the clock each time cost more than the records. Look at the clock only
  // every kStallChecksPerClockRead polls of the same stalled position, or
  // on the first poll after a sleep: a consumer that sleeps a millisecond
  // between polls would otherwise judge a dead producer's claim only every
  // 64 ms, and hold every record behind it that long.
  if (stall_position_ != read_position_) {
    stall_position_ = read_position_;
    stall_checks_ = 0;
    stall_since_ns_ = 0;
    return false;
  }
  if (++stall_checks_ % kStallChecksPerClockRead != 0 && !slept_since_clock_read_) return false;
  slept_since_clock_read_ = false;
  const std::int64_t now = detail::monotonic_ns();
  if (stall_since_ns_ == 0) {
    stall_since_ns_ = now;
    last_liveness_check_ns_ = 0;
    // Acquire pairs with the producers' CAS on tail.
    stall_tail_ = header_->tail.load(std::memory_order_acquire);
  }
  const bool timed_out = now - stall_since_ns_ >= dead_claim_timeout_ns_;
  const std::uint64_t capacity = mask_ + 1;
  std::uint64_t skip = 0;
  if (length < 0) {
    bool dead = timed_out;
    const std::uint32_t slot_index = header_info(word) & 0xffffu;
    if (!dead && slot_index < kMaxProducerSlots && now - last_liveness_check_ns_ >= 1'000'000) {
      last_liveness_check_ns_ = now;
      if (auto* hook = detail::before_owner_judged_hook.load(std::memory_order_relaxed)) [[unlikely]] hook();
      const ProducerSlot& slot = header_->slots[slot_index];
      // Acquire pairs with the publishing CAS in take_owner(): pid, then ticks.
      const std::int32_t pid = slot.owner_pid.load(std::memory_order_acquire);
      if (pid == 0) {
        // The slot was given back (its owner closed or was reaped), or the
        // ring was laid out again on the same file under a producer still
        // attached: that one keeps its slot's lock, and lives.
        dead = slot_lock_state(segment_.fd(), slot_index) != SlotLock::held;
      } else if (pid > 0) {
        // Relaxed loads within: published with the claim's header, which
        // we read with acquire.
        dead = !slot_owner_alive(segment_.fd(), slot, slot_index, pid);
      }
    }
    if (!dead) return false;
    // `word` was read before the owner was judged: it may have committed
    // and then closed its handle or exited in between, and the claim is a
    // record now. Acquire pairs with its release store in commit(); the
    // owner's end (its pid's release store of 0, or the kernel freeing its
    // lock) came after that store, so this load sees it. Only a claim
    // still uncommitted now is skipped: a dead owner commits nothing more.
    if (detail::header_word(data_ + index).load(std::memory_order_acquire) != word) return false;
    skip = static_cast<std::uint64_t>(-static_cast<std::int64_t>(length));
    // No claim reaches past the producers' tail, nor a lap past the release.
    if (skip % kRecordAlignment != 0 || skip > capacity - index || skip > claimed_room()) {
      framing_broken(index);
      return false;
    }
  } else {
    // A claim whose header never came (its producer died between the CAS and
    // the header store): its bytes are still the zeroes we left. Skip to the
    // next non-zero header word, or to the lap's end if the claim padded.
    if (!timed_out) return false;
    if (auto* hook = detail::before_owner_judged_hook.load(std::memory_order_relaxed)) [[unlikely]] hook();
    // Its header may have come since `word` was read (a producer stalled
    // past the timeout that resumed): scanning on from here would stop
    // inside its payload and take that for a header. Acquire pairs with
    // the release store in commit().
    // (The word as read, not zero: one whose length is 0 and whose other
    // half is not, which no library writes, is stepped over as before.)
    if (detail::header_word(data_ + index).load(std::memory_order_acquire) != word) return false;
    std::uint64_t limit = std::min(capacity - index, claimed_room());
    // The zeroes may run on into the claims of live producers that are
    // between their CAS and their header store: each left its claim's start
    // in its slot, and the skip stops at the first. Acquire pairs with the
    // producer's release store of claim_start (made visible with our
    // acquire of tail above, through its CAS).
    auto bound_by = [&](const ProducerSlot& slot) {
      const std::uint64_t start = slot.claim_start.load(std::memory_order_acquire);
      if (start > read_position_ && start - read_position_ < limit) limit = start - read_position_;
    };
    for (const ProducerSlot& slot : header_->slots) bound_by(slot);
    bound_by(header_->overflow_slot);
    // claim_start holds one claim per slot, but threads sharing a handle,
    // and every producer in the overflow slot, overwrite each other's: a
    // claim may have no start left to stop at. Whatever was claimed after
    // the stall began is younger than the timeout, and is never skipped.
    if (stall_tail_ > read_position_ && stall_tail_ - read_position_ < limit) limit = stall_tail_ - read_position_;
    skip = kRecordAlignment;
    while (skip < limit &&
           detail::header_word(data_ + index + skip).load(std::memory_order_acquire) == 0) {
      skip += kRecordAlignment;
    }
  }
  record_jump(read_position_, read_position_ + skip);
  read_position_ += skip;
  header_->skipped.add_single_writer(1);
  header_->skipped_bytes.add_single_writer(skip);
  stall_position_ = ~std::uint64_t{0};
  std::fprintf(stderr, "ringroute: ring %s: skipped a claim of %llu bytes at position %llu (%s)\n",
               segment_.name().c_str(), static_cast<unsigned long long>(skip),
               static_cast<unsigned long long>(read_position_ - skip),
               timed_out ? "not committed within dead_claim_timeout_ms" : "its producer died");
  return true;
}

void Consumer::framing_broken(std::uint64_t index) noexcept {
  // A header that can't be a record's: something other than the producer
  // library wrote into the ring. Nothing after it can be framed, so give up
  // on what is there now and resume at the producers' tail.
  // Acquire pairs with the producers' CAS on tail. Never backwards: the
  // space behind the read position is ours until released.
  // At most a lap past what is released: a tail written by something other
  // than the library could be anywhere, and release() zeroes up to here.
  // On a record boundary: a tail off one (written by something other than
  // the library, as the header was) had the next header read across the
  // end of the data.
  const std::uint64_t tail =
      std::max(claimed_bound() & ~std::uint64_t{kRecordAlignment - 1}, read_position_);
  if (tail == read_position_) {
    // Nowhere to skip to: the broken header is at the tail, and a producer
    // claiming there overwrites it. Counted and said once, and sleep()
    // waits rather than polling it again and again.
    // Relaxed: only compared with our own earlier read of the same word,
    // to tell one broken header from the next; nothing is read through it.
    const std::uint64_t word = detail::header_word(data_ + index).load(std::memory_order_relaxed);
    if (broken_at_ == read_position_ && broken_word_ == word) return;
    broken_at_ = read_position_;
    broken_word_ = word;
  }
  header_->corrupt.add_single_writer(1);
  std::fprintf(stderr,
               "ringroute: ring %s: corrupt record header at offset %llu; skipping %llu bytes to the tail\n",
               segment_.name().c_str(), static_cast<unsigned long long>(index),
               static_cast<unsigned long long>(tail - read_position_));
  header_->skipped_bytes.add_single_writer(tail - read_position_);
  if (tail > read_position_) {
    record_jump(read_position_, tail);
    // Kept for a consumer after us (see the constructor). The count first,
    // so a crash in the middle leaves the next jump another entry. `from`
    // no position has, then `to`, then `from` (release: the stores before
    // it stay before it, for the compiler as for the CPU; the next consumer
    // reads them after taking the ring over), so an entry half written is
    // never followed.
    const std::uint64_t n = header_->framing_jump_count.load(std::memory_order_relaxed);
    header_->framing_jump_count.store(n + 1, std::memory_order_relaxed);
    auto& saved = header_->framing_jumps[n % SegmentHeader::kFramingJumps];
    saved.from.store(kNoJump, std::memory_order_relaxed);
    saved.to.store(tail, std::memory_order_release);
    saved.from.store(read_position_, std::memory_order_release);
  }
  read_position_ = tail;
}

}  // namespace ringroute::ring
