#include "ringroute/perf/block.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <stdexcept>

namespace ringroute::perf {
namespace {

std::string shm_name(const std::string& instance) { return "/" + instance + ".perf"; }

// Whether `stored` holds `name` as set_name() writes it (cut to fit).
bool same_name(const char (&stored)[kNameBytes], std::string_view name) {
  const std::size_t n = std::min(name.size(), kNameBytes);
  return std::memcmp(stored, name.data(), n) == 0 && (n == kNameBytes || stored[n] == 0);
}

// A name that fills the field has no terminating zero (read it with
// slot_name()).
void set_name(char (&stored)[kNameBytes], std::string_view name) {
  const std::size_t n = std::min(name.size(), kNameBytes);
  std::memcpy(stored, name.data(), n);
  if (n < kNameBytes) stored[n] = 0;
}

// What "Permission denied" on the block is about: whose it is, and its
// mode, against this process's ids (as a ring's refusal says them).
std::string access_note(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return {};
  char mode[8];
  std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
  return " (uid " + std::to_string(st.st_uid) + "'s, gid " + std::to_string(st.st_gid) + ", mode " + mode +
         "; this process is uid " + std::to_string(::geteuid()) + ", gid " + std::to_string(::getegid()) + ")";
}

}  // namespace

std::string block_path(const std::string& instance) { return "/dev/shm/" + instance + ".perf"; }

std::uint64_t histogram_quantile(const std::array<std::uint64_t, kHistogramBuckets>& counts,
                                 double quantile) noexcept {
  // Summed in 128 bits: the block is anyone's to write who may write it,
  // and counts summing past 2^64 wrapped to a total that put the rank in
  // the wrong bucket (or past the last one).
  __extension__ typedef unsigned __int128 Uint128;
  Uint128 total = 0;
  for (std::uint64_t c : counts) total += c;
  if (total == 0) return 0;
  // Nearest rank: the smallest value with at least `quantile` of all at or
  // below it (p999 of 100 samples is the largest). The slack keeps a
  // product like 0.99 * 100 = 99.000000000000014 from rounding up a rank.
  // Clamped as a floating value first: one past what the integer holds
  // (a quantile of 1 against a huge total) would not convert.
  const long double wanted =
      std::ceil(static_cast<long double>(std::clamp(quantile, 0.0, 1.0)) * static_cast<long double>(total) - 1e-6L);
  const Uint128 rank = wanted < 1 ? 1 : wanted >= static_cast<long double>(total) ? total : static_cast<Uint128>(wanted);
  Uint128 seen = 0;
  for (std::size_t b = 0; b < kHistogramBuckets; ++b) {
    seen += counts[b];
    if (seen >= rank) return Histogram::upper_bound(b);
  }
  return UINT64_MAX;
}

BlockMapping BlockMapping::create_or_open(const std::string& instance, std::uint32_t mode) {
  const std::string name = shm_name(instance);
  // Made here, or there already (O_EXCL tells them apart).
  int fd = ::shm_open(name.c_str(), O_RDWR | O_CREAT | O_EXCL, static_cast<mode_t>(mode));
  const bool made_now = fd >= 0;
  if (fd < 0 && errno == EEXIST) fd = ::shm_open(name.c_str(), O_RDWR | O_CREAT, static_cast<mode_t>(mode));
  if (fd < 0) {
    const int e = errno;
    throw std::runtime_error(block_path(instance) + ": " + std::strerror(e) +
                             (e == EACCES || e == EPERM ? access_note(block_path(instance)) : std::string()));
  }
  // One router per instance, of any build: the lock is held while the
  // mapping lives, and everything below (sizing, starting a block of
  // another layout again) happens under it, so no running router's block
  // is ever cut or wiped.
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    const int e = errno;
    ::close(fd);
    throw std::runtime_error(block_path(instance) +
                             (e == EWOULDBLOCK ? " is held by another router of instance \"" + instance +
                                                     "\" (one router per instance: stop it, or give this config "
                                                     "another instance)"
                                               : ": flock: " + std::string(std::strerror(e))));
  }
  struct stat st {};
  ::fstat(fd, &st);
  // One made first by someone else would let them set the positions that
  // decide what a restart skips: the router uses only its own.
  if (st.st_uid != ::geteuid()) {
    ::close(fd);
    throw std::runtime_error(block_path(instance) + " is owned by uid " + std::to_string(st.st_uid) +
                             ", not this router's (" + std::to_string(::geteuid()) +
                             "): remove it, or run the router as its owner");
  }
  // Only a block (of any version) or a file not yet made into one is
  // started again: a ring of that name (another instance's, or made before
  // validate refused the name) mapped by producers and a router would be
  // cut under them, a SIGBUS at their next record.
  std::uint64_t magic = 0;
  if (st.st_size > 0 && (::pread(fd, &magic, sizeof magic, 0) != static_cast<ssize_t>(sizeof magic) ||
                         (magic != kBlockMagic && magic != 0))) {
    ::close(fd);
    throw std::runtime_error(block_path(instance) +
                             " holds something other than a perf block (a ring named \"" + instance +
                             ".perf\"?): left alone; remove it, or give this config another instance");
  }
  ::fchmod(fd, static_cast<mode_t>(mode));  // shm_open's mode is masked by umask
  const bool fresh = static_cast<std::size_t>(st.st_size) != sizeof(Block);
  if (fresh && ::ftruncate(fd, 0) != 0) {
    ::close(fd);
    throw std::runtime_error(block_path(instance) + ": " + std::strerror(errno));
  }
  if (fresh && ::ftruncate(fd, sizeof(Block)) != 0) {
    const int e = errno;
    ::close(fd);
    throw std::runtime_error(block_path(instance) + ": cannot size it: " + std::strerror(e));
  }
  // tmpfs sizes a file without reserving it: with /dev/shm full, the first
  // counter written past the room would be a SIGBUS.
  int reserved = 0;
  do {
    reserved = ::posix_fallocate(fd, 0, sizeof(Block));
  } while (reserved == EINTR);
  if (reserved != 0) {
    ::close(fd);
    throw std::runtime_error(block_path(instance) + ": /dev/shm has no room for its " + std::to_string(sizeof(Block)) +
                             " bytes: " + std::strerror(reserved));
  }
  void* p = ::mmap(nullptr, sizeof(Block), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) {
    const int e = errno;
    ::close(fd);
    throw std::runtime_error(block_path(instance) + ": mmap: " + std::strerror(e));
  }
  auto* block = static_cast<Block*>(p);
  // A block of another version (or a half-made one) is started again: its
  // counters and positions can't be read by this build.
  if (fresh || block->header.magic != kBlockMagic ||
      block->header.version.load(std::memory_order_acquire) != kBlockVersion) {
    // The version goes first, so a stat of the old version reading now
    // finds it changed (its acquire fence after reading pairs with this
    // release fence) rather than taking the zeros for figures.
    block->header.version.store(0, std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_release);
    std::memset(static_cast<void*>(block), 0, sizeof(Block));
    block->header.magic = kBlockMagic;
    block->header.created_ns.store(
        std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch())
            .count(),
        std::memory_order_relaxed);
    // Release: a reader that sees the version sees the zeroed block.
    block->header.version.store(kBlockVersion, std::memory_order_release);
  }
  return BlockMapping(block, fd, made_now);
}

std::optional<BlockMapping> BlockMapping::open_read_only(const std::string& instance, std::string* error,
                                                         const std::function<void(const Block&)>& mapped) {
  // O_NONBLOCK: a FIFO put at the block's name (/dev/shm is anyone's to
  // write in) made the open wait for a writer, and `stat` with it, for ever.
  const int fd = ::shm_open(shm_name(instance).c_str(), O_RDONLY | O_NONBLOCK, 0);
  if (fd < 0) {
    const int e = errno;
    if (error) {
      *error = block_path(instance) + ": " + std::strerror(e) +
               (e == EACCES || e == EPERM ? access_note(block_path(instance))
                                          : " (is a router running with instance \"" + instance + "\"?)");
    }
    return std::nullopt;
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int e = errno;
    ::close(fd);
    if (error) *error = block_path(instance) + ": fstat: " + std::strerror(e);
    return std::nullopt;
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    if (error) *error = block_path(instance) + " is not a regular file, so no router's perf block";
    return std::nullopt;
  }
  if (auto why = unreadable_block_size(static_cast<std::uint64_t>(st.st_size))) {
    // Another version's block is only one that starts as ours do: any
    // other file of the wrong size sent its reader looking for a version
    // of ringroute that never made it.
    // A magic of 0 may be another version's block not yet whole (the
    // magic goes in after the size): that one keeps the size's words.
    std::uint64_t magic = 0;
    if (st.st_size != 0 && (::pread(fd, &magic, sizeof magic, 0) != static_cast<ssize_t>(sizeof magic) ||
                            (magic != kBlockMagic && magic != 0))) {
      why = "is not a ringroute counter block (no magic)";
    }
    ::close(fd);
    if (error) *error = block_path(instance) + " " + *why;
    return std::nullopt;
  }
  void* p = ::mmap(nullptr, sizeof(Block), PROT_READ, MAP_SHARED, fd, 0);
  ::close(fd);
  if (p == MAP_FAILED) {
    if (error) *error = block_path(instance) + ": mmap: " + std::strerror(errno);
    return std::nullopt;
  }
  auto* block = static_cast<Block*>(p);
  if (mapped) mapped(*block);
  if (auto why = unreadable_block(*block)) {
    ::munmap(p, sizeof(Block));
    if (error) *error = block_path(instance) + " " + *why;
    return std::nullopt;
  }
  return BlockMapping(block);
}

std::optional<std::string> unreadable_block_size(std::uint64_t bytes) {
  if (bytes == sizeof(Block)) return std::nullopt;
  if (bytes == 0) return "is empty: a router is making it now (try again), or it was cut short";
  return "is " + std::to_string(bytes) + " bytes, where a counter block of this build is " +
         std::to_string(sizeof(Block)) + ": another version of ringroute made it (read it with that version's stat)";
}

std::optional<std::string> unreadable_block(const Block& block) {
  // The version first: acquire pairs with its creator's release store,
  // made after the magic, so a version seen means the magic is whole too.
  const std::uint32_t version = block.header.version.load(std::memory_order_acquire);
  if (block.header.magic != kBlockMagic) {
    return version == 0 && block.header.magic == 0 ? std::string("is being made (try again), or was cut short")
                                                   : std::string("is not a ringroute counter block (no magic)");
  }
  if (version == kBlockVersion) return std::nullopt;
  if (version == 0) return std::string("is being made: try again");
  return "is counter block version " + std::to_string(version) + "; this build reads version " +
         std::to_string(kBlockVersion) + " (read it with the ringroute that made it)";
}

bool BlockMapping::remove(const std::string& instance) noexcept {
  return ::shm_unlink(shm_name(instance).c_str()) == 0;
}

BlockMapping& BlockMapping::operator=(BlockMapping&& other) noexcept {
  if (this != &other) {
    if (block_) ::munmap(block_, sizeof(Block));
    if (fd_ >= 0) ::close(fd_);
    block_ = other.block_;
    fd_ = other.fd_;
    made_now_ = other.made_now_;
    other.block_ = nullptr;
    other.fd_ = -1;
  }
  return *this;
}

BlockMapping::~BlockMapping() {
  if (block_) ::munmap(block_, sizeof(Block));
  if (fd_ >= 0) ::close(fd_);
}

int BlockMapping::ring_slot(std::string_view name) {
  for (std::size_t i = 0; i < kMaxRings; ++i) {
    if (same_name(block_->rings[i].name, name)) return static_cast<int>(i);
  }
  for (std::size_t i = 0; i < kMaxRings; ++i) {
    if (block_->rings[i].name[0] == 0) {
      set_name(block_->rings[i].name, name);
      return static_cast<int>(i);
    }
  }
  return -1;
}

namespace {
// The first named slot `in_use` says is gone, zeroed; -1 when none. Nobody
// writes it (no runner or worker of that name runs); a `stat` reading now
// may see it half zeroed, once.
template <class Slot, std::size_t N>
int reclaim_first(Slot (&slots)[N], const std::function<bool(std::string_view)>& in_use) {
  for (std::size_t i = 0; i < N; ++i) {
    if (slots[i].name[0] == 0 || in_use(slot_name(slots[i].name))) continue;
    std::memset(static_cast<void*>(&slots[i]), 0, sizeof slots[i]);
    return static_cast<int>(i);
  }
  return -1;
}
}  // namespace

int BlockMapping::reclaim_backend_slot(const std::function<bool(std::string_view)>& in_use) {
  return reclaim_first(block_->backends, in_use);
}

int BlockMapping::reclaim_ring_slot(const std::function<bool(std::string_view)>& in_use) {
  // The backends' positions in it start over with the worker that takes
  // it: the zeroed slot names no segment (segment_created_ns).
  return reclaim_first(block_->rings, in_use);
}

int BlockMapping::backend_slot(std::string_view name, std::string_view type) {
  for (std::size_t i = 0; i < kMaxBackends; ++i) {
    if (same_name(block_->backends[i].name, name)) return static_cast<int>(i);
  }
  for (std::size_t i = 0; i < kMaxBackends; ++i) {
    if (block_->backends[i].name[0] == 0) {
      set_name(block_->backends[i].name, name);
      set_backend_type(static_cast<int>(i), type);
      return static_cast<int>(i);
    }
  }
  return -1;
}

BackendBalance balance_of(const BackendSlot& slot) noexcept {
  BackendBalance b;
  const BackendSinkShard& sink = slot.sink;
  b.settled = sink.sent.read() + sink.dropped_failed.read() + sink.dropped_shutdown.read() + sink.dropped_removed.read();
  for (const BackendWorkerShard& shard : slot.worker) {
    b.settled += shard.dropped_queue_full.read() + shard.skipped_written.read() + shard.dropped_removed.read();
  }
  for (const BackendWorkerShard& shard : slot.worker) b.matched += shard.matched.read();
  return b;
}

std::optional<std::uint64_t> pending_of(const BackendSlot& slot) noexcept {
  const std::uint64_t base = slot.sink.pending_base.read();
  if ((base & kPendingBaseSet) == 0) return std::nullopt;
  const BackendBalance b = balance_of(slot);
  const std::uint64_t owed = b.settled + (base & ~kPendingBaseSet);
  return b.matched > owed ? b.matched - owed : 0;
}

void set_pending_base(BackendSlot& slot) noexcept {
  const BackendBalance b = balance_of(slot);
  const std::uint64_t unsettled = b.matched > b.settled ? b.matched - b.settled : 0;
  slot.sink.pending_base.value.store(unsettled | kPendingBaseSet, std::memory_order_relaxed);
}

std::uint32_t boot_seconds() noexcept {
  timespec now{};
  ::clock_gettime(CLOCK_BOOTTIME, &now);
  return static_cast<std::uint32_t>(std::max<std::int64_t>(now.tv_sec, 1));
}

void write_said(SaidLine& said, std::string_view text, std::int64_t at_unix_ns, std::uint32_t at_boot_s) noexcept {
  // A seqlock with one writer: odd, the words, even again. Relaxed stores
  // of the words between two fences: the release fence after the odd
  // sequence keeps them after it (pairs with read_said()'s acquire fence
  // after its copy), and the release store of the even one keeps them
  // before it (pairs with read_said()'s acquire load of it).
  const std::uint64_t sequence = said.sequence.load(std::memory_order_relaxed);
  said.sequence.store(sequence + 1, std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_release);
  const std::size_t n = std::min(text.size(), kSaidBytes - 1);  // room for a NUL
  for (std::size_t w = 0; w < said.text.size(); ++w) {
    char bytes[8] = {};
    for (std::size_t i = 0; i < 8; ++i) {
      if (w * 8 + i < n) bytes[i] = text[w * 8 + i];
    }
    std::uint64_t word;
    std::memcpy(&word, bytes, sizeof word);
    said.text[w].store(word, std::memory_order_relaxed);
  }
  said.at_unix_ns.store(at_unix_ns, std::memory_order_relaxed);
  said.at_boot_s.store(at_boot_s, std::memory_order_relaxed);
  said.sequence.store(sequence + 2, std::memory_order_release);
}

std::optional<SaidSeen> read_said(const SaidLine& said) {
  for (int attempt = 0; attempt < 100; ++attempt) {
    // Acquire pairs with write_said()'s release store of the even sequence.
    const std::uint64_t before = said.sequence.load(std::memory_order_acquire);
    if (before == 0) return std::nullopt;
    if (before % 2 != 0) continue;
    char bytes[kSaidBytes];
    for (std::size_t w = 0; w < said.text.size(); ++w) {
      const std::uint64_t word = said.text[w].load(std::memory_order_relaxed);
      std::memcpy(bytes + w * 8, &word, sizeof word);
    }
    const std::int64_t at = said.at_unix_ns.load(std::memory_order_relaxed);
    const std::uint32_t at_boot = said.at_boot_s.load(std::memory_order_relaxed);
    // Pairs with write_said()'s release fence: a copy that saw any word of
    // a later write sees its odd sequence here.
    std::atomic_thread_fence(std::memory_order_acquire);
    if (said.sequence.load(std::memory_order_relaxed) != before) continue;
    return SaidSeen{std::string(bytes, ::strnlen(bytes, sizeof bytes)), at, at_boot};
  }
  return std::nullopt;
}

void BlockMapping::set_backend_type(int slot, std::string_view type) noexcept {
  char (&stored)[sizeof BackendSlot::type] = block_->backends[slot].type;
  const std::size_t n = std::min(type.size(), sizeof stored - 1);
  std::memcpy(stored, type.data(), n);
  stored[n] = 0;
}

}  // namespace ringroute::perf
