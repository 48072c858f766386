#include "ringroute/ring/segment.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <boost/interprocess/mapped_region.hpp>
#include <boost/interprocess/shared_memory_object.hpp>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <new>
#include <optional>

#include "ringroute/ring/truncation_guard.hpp"

namespace bip = boost::interprocess;

#if defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define RINGROUTE_TSAN 1
#endif
#endif

namespace ringroute::ring {

struct Segment::Attached {
  Attached() = default;
  Attached(const Attached&) = delete;
  Attached& operator=(const Attached&) = delete;
  ~Attached() {
    if (read_only_fd >= 0) ::close(read_only_fd);
  }
  bip::shared_memory_object shm;
  // A read-only attach's descriptor, opened without Boost (see attach()).
  int read_only_fd = -1;
  bip::mapped_region region;
  // Declared after `region`, so gone before it unmaps: a fault at its
  // addresses is then no ring's.
  std::optional<GuardedMapping> guard;
  // Every mapping is guarded from its first read of the header on (a file
  // cut short while a segment is attached reads zeros there too).
  void map(bip::mapped_region mapped) {
    guard.reset();
    region = std::move(mapped);
    if (region.get_address() != nullptr) {
      guard.emplace(region.get_address(), region.get_size(), region.get_mode() == bip::read_write);
    }
  }
};

namespace {

// A descriptor of our own, as Boost's mapped_region maps one.
struct DescriptorMapping {
  int fd;
  [[nodiscard]] bip::mapping_handle_t get_mapping_handle() const noexcept { return {fd, false}; }
};

bool is_power_of_two(std::uint64_t v) { return v != 0 && (v & (v - 1)) == 0; }

// The identity line, each word read once: any process that may write the
// ring may write these too, so what is checked is what is used.
struct RingGeometry {
  std::uint64_t magic, capacity, max_record_bytes;
  std::uint32_t header_bytes;

  // `file_size`: the segment's size when judged; `mapped`: what the mapping
  // holds (less, where the file was cut between the two). A capacity past
  // kMaxCapacity (never made by create_or_attach) would let a record's
  // length overflow the header's 32-bit field.
  [[nodiscard]] bool valid(std::uint64_t file_size, std::uint64_t mapped) const noexcept {
    return magic == kSegmentMagic && header_bytes == kHeaderBytes && is_power_of_two(capacity) &&
           capacity <= kMaxCapacity && max_record_bytes == capacity / 8 && file_size == kHeaderBytes + capacity &&
           mapped >= kHeaderBytes + capacity;
  }
};

// One load of a header field another process may be laying out this moment
// (the geometry is judged before the layout version says it is done):
// volatile so the compiler neither splits nor repeats it. Nothing is read
// through what it returns, only compared; the version's acquire, where the
// caller needs the field final, orders it.
template <typename T>
T read_once(const T& field) noexcept {
  return *static_cast<const volatile T*>(&field);
}

RingGeometry read_geometry(const SegmentHeader& h) noexcept {
  return {read_once(h.magic), read_once(h.capacity), read_once(h.max_record_bytes), read_once(h.header_bytes)};
}

// Maps the whole segment with its page tables filled in, for the consumer.
// Left to fault in, a fresh 64 MiB ring takes 16,384 faults during the first
// lap: in a VM, where a fault costs microseconds, that was a few hundred
// milliseconds of a full ring right after start. The ring's memory is all
// used in steady state anyway.
bip::mapped_region map_populated(const bip::shared_memory_object& shm) {
#if defined(MAP_POPULATE)
  return bip::mapped_region(shm, bip::read_write, 0, 0, nullptr, MAP_POPULATE);
#else
  return bip::mapped_region(shm, bip::read_write);
#endif
}

std::string describe_errno(const std::string& what, int err) {
  return what + ": " + std::strerror(err);
}

// Gives every page of the segment its memory now. tmpfs sizes a file
// without reserving it, so a ring larger than what /dev/shm has left (64 MiB
// in a container by default) mapped fine and then killed the process that
// touched a page past the room with SIGBUS: the router at start, a producer
// mid-record. Pages the segment has already cost nothing.
void reserve_pages(int fd, const std::string& name, std::uint64_t bytes) {
  int rc = 0;
  do {
    rc = ::posix_fallocate(fd, 0, static_cast<off_t>(bytes));
  } while (rc == EINTR);
  if (rc != 0) {
    throw RingError(Status::io_error, "ring " + name + ": /dev/shm has no room for its " + std::to_string(bytes) +
                                          " bytes (" + std::strerror(rc) +
                                          "): make size_bytes smaller or /dev/shm larger");
  }
}

std::int64_t realtime_ns() {
  timespec ts;
  ::clock_gettime(CLOCK_REALTIME, &ts);
  return std::int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

// Lays out a fresh header in zeroed memory; the version is stored last.
void initialise(SegmentHeader& h, std::uint64_t capacity, std::int64_t dead_claim_timeout_ms) {
  h.magic = kSegmentMagic;
  h.header_bytes = static_cast<std::uint32_t>(kHeaderBytes);
  h.capacity = capacity;
  // Aeron's limit: a single claim may take at most an eighth of the ring, so
  // one large batch can't starve every other producer.
  h.max_record_bytes = capacity / 8;
  h.created_unix_ns = realtime_ns();
  h.dead_claim_timeout_ns.store(dead_claim_timeout_ms * 1'000'000, std::memory_order_relaxed);
  // Release: pairs with Segment::attach's acquire load; once a producer sees
  // the version it sees every field above.
  h.layout_version.store(kLayoutVersion, std::memory_order_release);
}

}  // namespace

std::string octal_mode(mode_t mode) {
  char text[8];
  std::snprintf(text, sizeof text, "%04o", static_cast<unsigned>(mode & 07777));
  return text;
}

std::string access_note(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return {};
  return " (uid " + std::to_string(st.st_uid) + "'s, gid " + std::to_string(st.st_gid) + ", mode " +
         octal_mode(st.st_mode) + "; this process is uid " + std::to_string(::geteuid()) + ", gid " +
         std::to_string(::getegid()) + ")";
}

namespace {

// Fields 3 (state) and 22 (start time in clock ticks) of /proc/PID/stat;
// state '\0' and ticks 0 when it can't be read.
struct ProcessStat {
  char state = '\0';
  long threads = 0;
  std::uint64_t start_ticks = 0;
};

ProcessStat read_process_stat(pid_t pid) noexcept {
  char path[64];
  std::snprintf(path, sizeof path, "/proc/%d/stat", static_cast<int>(pid));
  const int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return {};
  char buf[1024];
  const ssize_t n = ::read(fd, buf, sizeof buf - 1);
  ::close(fd);
  if (n <= 0) return {};
  buf[n] = '\0';
  // The command name (field 2) may hold spaces and parentheses: count fields
  // from the last ')'.
  const char* p = std::strrchr(buf, ')');
  if (p == nullptr) return {};
  ++p;
  ProcessStat stat;
  if (p[0] == ' ') stat.state = p[1];
  for (int field = 2; field < 22 && *p != '\0'; ++p) {
    if (*p == ' ') ++field;
    if (field == 20 && *p == ' ') stat.threads = std::strtol(p + 1, nullptr, 10);
  }
  stat.start_ticks = std::strtoull(p, nullptr, 10);
  return stat;
}

}  // namespace

std::uint64_t process_start_ticks(pid_t pid) noexcept { return read_process_stat(pid).start_ticks; }

bool process_alive(pid_t pid, std::uint64_t start_ticks) noexcept {
  if (pid <= 0) return false;
  if (::kill(pid, 0) != 0 && errno == ESRCH) return false;
  const ProcessStat stat = read_process_stat(pid);
  // A zombie (killed, not reaped yet by its parent) is dead: its claims are
  // skipped at once, not after the dead-claim timeout. Not a leader thread
  // that ended (pthread_exit from main) while other threads go on: its
  // state says Z too, but the process still has them.
  if ((stat.state == 'Z' || stat.state == 'X') && stat.threads <= 1) return false;
  if (start_ticks == 0) return true;
  // 0: /proc does not show it (mounted hidepid, another user's process),
  // or it went between the two checks. kill() said it exists: alive is the
  // safe answer (a claim of the dead is still skipped on the timeout).
  return stat.start_ticks == 0 || stat.start_ticks == start_ticks;
}

void Segment::bind(std::shared_ptr<Attached> attached, std::string name, std::uint64_t capacity) noexcept {
  auto* base = static_cast<std::byte*>(attached->region.get_address());
  header_ = reinterpret_cast<SegmentHeader*>(base);
  data_ = base + kHeaderBytes;
  capacity_ = capacity;
  max_record_bytes_ = capacity / 8;
  attached_ = std::move(attached);
  name_ = std::move(name);
}

bool Segment::cut_short() const noexcept {
  return attached_ != nullptr && attached_->guard && attached_->guard->cut_short();
}

bool Segment::file_cut_short() const noexcept {
  if (cut_short()) return true;
  struct stat st {};
  // A failed fstat says nothing either way; the fault, if one comes, will.
  return attached_ != nullptr && ::fstat(fd(), &st) == 0 &&
         static_cast<std::uint64_t>(st.st_size) < attached_->region.get_size();
}

void Segment::touch_for_write() const noexcept {
#if defined(__SANITIZE_THREAD__) || defined(RINGROUTE_TSAN)
  // TSan would see these adds race with other threads' plain writes to the
  // same words (harmless here, but it can't know); it's speed only, so off.
  return;
#endif
  constexpr std::uint64_t kPage = 4096;
  for (std::uint64_t offset = 0; offset < capacity_; offset += kPage) {
    // Relaxed: the add changes nothing, so it publishes nothing; it only
    // has to be a write, and atomic so that it can't undo a concurrent one.
    std::atomic_ref<std::uint64_t>(*reinterpret_cast<std::uint64_t*>(data_ + offset))
        .fetch_add(0, std::memory_order_relaxed);
  }
}

int Segment::fd() const noexcept {
  if (!attached_) return -1;
  return attached_->read_only_fd >= 0 ? attached_->read_only_fd
                                      : static_cast<int>(attached_->shm.get_mapping_handle().handle);
}

Segment Segment::create_or_attach(const std::string& name, const SegmentOptions& options,
                                  std::string* warning) {
  if (!is_ring_capacity(options.capacity_bytes)) {
    throw RingError(Status::bad_argument,
                    "ring " + name + ": size_bytes " + std::to_string(options.capacity_bytes) +
                        " must be a power of two between " + std::to_string(kMinCapacity) +
                        " and " + std::to_string(kMaxCapacity));
  }
  auto attached = std::make_shared<Attached>();
  bool created = false;
  try {
    attached->shm = bip::shared_memory_object(bip::create_only, name.c_str(), bip::read_write,
                                              bip::permissions(options.mode));
    created = true;
  } catch (const bip::interprocess_exception& e) {
    if (e.get_error_code() != bip::already_exists_error) {
      throw RingError(Status::io_error, "ring " + name + ": cannot create /dev/shm/" + name + ": " + e.what());
    }
  }
  if (!created) {
    try {
      attached->shm = bip::shared_memory_object(bip::open_only, name.c_str(), bip::read_write);
    } catch (const bip::interprocess_exception& e) {
      const bool refused = e.get_native_error() == EACCES || e.get_native_error() == EPERM;
      throw RingError(Status::io_error, "ring " + name + ": cannot open /dev/shm/" + name + ": " + e.what() +
                                            (refused ? access_note("/dev/shm/" + name) : std::string()));
    }
  }
  const int fd = static_cast<int>(attached->shm.get_mapping_handle().handle);
  // A segment someone else made first (another user, before the router's
  // first start) would be theirs to read, chmod or truncate under us: the
  // router consumes only its own.
  if (struct stat st {}; ::fstat(fd, &st) == 0 && st.st_uid != ::geteuid()) {
    throw RingError(Status::io_error, "ring " + name + ": /dev/shm/" + name + " is owned by uid " +
                                          std::to_string(st.st_uid) + ", not this router's (" +
                                          std::to_string(::geteuid()) + "): remove it, or run the router as its owner");
  }
  std::string notes;
  if (created) {
    // shm_open applies the umask; the configured mode is what we promise.
    // (An existing segment's mode is its consumer's to set: apply_mode().)
    if (::fchmod(fd, options.mode) != 0) {
      throw RingError(Status::io_error, describe_errno("ring " + name + ": fchmod", errno));
    }
  }
  // Initialising (or re-initialising a half-made segment) holds a file lock
  // for the few instructions it takes, so two routers starting at once can't
  // both lay out the header. (Consumer ownership itself is the pid in the
  // header: see Consumer's constructor.)
  const bool locked = ::flock(fd, LOCK_EX | LOCK_NB) == 0;
  struct Unlock {
    int fd;
    bool locked;
    ~Unlock() {
      if (locked) ::flock(fd, LOCK_UN);
    }
  } unlock{fd, locked};

  bip::offset_t size = 0;
  attached->shm.get_size(size);
  // Judged under the lock from what the segment holds, not from whether
  // this process created it: another router may have opened the segment
  // between our create and our lock, and laid it out (and started
  // consuming it) already; laying it out again would wipe its ownership.
  bool needs_init = static_cast<std::uint64_t>(size) < kHeaderBytes;
  if (static_cast<std::uint64_t>(size) > kHeaderBytes + kMaxCapacity) {
    // Refused before mapping it populated, which would touch every page.
    throw RingError(Status::corrupt, "ring " + name + ": /dev/shm/" + name + " is " + std::to_string(size) +
                                         " bytes, larger than any ringroute ring");
  }
  std::uint64_t capacity = options.capacity_bytes;
  if (!needs_init) {
    attached->map(map_populated(attached->shm));
    auto* h = static_cast<SegmentHeader*>(attached->region.get_address());
    // Acquire pairs with the creator's release store of the version in
    // initialise(): the geometry read after it is the one it wrote.
    const std::uint32_t version = h->layout_version.load(std::memory_order_acquire);
    if (version == 0) {
      needs_init = true;  // its creator died before finishing
    } else if (version != kLayoutVersion) {
      throw RingError(Status::version_mismatch,
                      "ring " + name + ": /dev/shm/" + name + " has layout version " +
                          std::to_string(version) + ", this build reads version " +
                          std::to_string(kLayoutVersion) +
                          "; drain it with the build that made it, or remove it");
    } else if (const RingGeometry geometry = read_geometry(*h);
               !geometry.valid(static_cast<std::uint64_t>(size), attached->region.get_size()) ||
               geometry.capacity < kMinCapacity) {
      // Read only once the version says the line is written (acquire above).
      throw RingError(Status::corrupt, "ring " + name + ": /dev/shm/" + name +
                                           " is not a ringroute ring (bad magic, capacity or size)");
    } else if (capacity = geometry.capacity; capacity != options.capacity_bytes) {
      notes += (notes.empty() ? "" : "; ") + ("ring " + name + ": existing segment has size_bytes " +
                                              std::to_string(capacity) + ", not the configured " +
                                              std::to_string(options.capacity_bytes) + "; attached as it is (remove /dev/shm/" +
                                              name + " while stopped to resize)");
    }
  }
  // Before anything writes to it (its consumer touches every page).
  if (!needs_init) reserve_pages(fd, name, static_cast<std::uint64_t>(size));
  if (warning != nullptr) *warning = std::move(notes);
  if (needs_init) {
    if (!locked) {
      throw RingError(Status::busy, "ring " + name + ": another process is creating or consuming it");
    }
    // A header unwritten (version 0) or cut short under a router that
    // consumes the ring is not a creator that died: laying it out again
    // wiped the ring under that router.
    if (slot_lock_state(fd, kConsumerLockByte) == SlotLock::held) {
      throw RingError(Status::busy, "ring " + name + ": /dev/shm/" + name +
                                        " has no whole header, but a router consumes it (it holds the ring's "
                                        "consumer lock): not laid out again under it");
    }
    // Drop any old mapping, then size: ftruncate to 0 first so the data area
    // comes back zeroed, which the record protocol requires.
    attached->map(bip::mapped_region());
    attached->shm.truncate(0);
    attached->shm.truncate(static_cast<bip::offset_t>(kHeaderBytes + options.capacity_bytes));
    try {
      reserve_pages(fd, name, kHeaderBytes + options.capacity_bytes);
    } catch (const RingError&) {
      // Not left behind half-made, holding what room there was.
      attached->shm.truncate(0);
      if (created) bip::shared_memory_object::remove(name.c_str());
      throw;
    }
    attached->map(map_populated(attached->shm));
    auto* h = new (attached->region.get_address()) SegmentHeader{};
    initialise(*h, options.capacity_bytes, options.dead_claim_timeout_ms);
    capacity = options.capacity_bytes;
  }
  Segment segment;
  segment.bind(std::move(attached), name, capacity);
  return segment;
}

std::string Segment::apply_mode(mode_t mode) const {
  struct stat st {};
  if (::fstat(fd(), &st) != 0 || (st.st_mode & 07777) == mode) return "";
  const std::string was = octal_mode(st.st_mode);
  if (::fchmod(fd(), mode) != 0) {
    return describe_errno("ring " + name_ + ": /dev/shm/" + name_ + " has mode " + was + ", not the configured " +
                              octal_mode(mode) + ", and fchmod",
                          errno);
  }
  return "ring " + name_ + ": mode of /dev/shm/" + name_ + " changed from " + was + " to the configured " + octal_mode(mode);
}

Status Segment::attach(const std::string& name, Segment& out, std::string* error, Access access) noexcept {
  auto fail = [&](Status s, const std::string& why) {
    if (error != nullptr) *error = "ring " + name + ": " + why;
    return s;
  };
  try {
    auto attached = std::make_shared<Attached>();
    const bip::mode_t mode = access == Access::read_only ? bip::read_only : bip::read_write;
    const std::string missing = "/dev/shm/" + name + " does not exist (is the router running?)";
    const std::string no_file = "/dev/shm/" + name + " is not a regular file, so no ring";
    bip::offset_t size = 0;
    if (access == Access::read_only) {
      // A FIFO put at the ring's name (/dev/shm is anyone's to write in)
      // makes a read-only open wait for a writer, for ever: `stat` hung on
      // it. Opened without waiting, and what was opened is checked: a
      // check of the name before Boost's open left a moment in which a
      // FIFO swapped in still hung it.
      const int fd = ::shm_open(("/" + name).c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC, 0);
      if (fd < 0) {
        const int e = errno;
        if (e == ENOENT) return fail(Status::not_ready, missing);
        return fail(Status::io_error, "cannot open /dev/shm/" + name + ": " + std::strerror(e) +
                                          (e == EACCES || e == EPERM ? access_note("/dev/shm/" + name) : std::string()));
      }
      attached->read_only_fd = fd;
      struct stat st {};
      if (::fstat(fd, &st) != 0) {
        const int e = errno;  // before the text's allocations
        return fail(Status::io_error, "cannot stat /dev/shm/" + name + ": " + std::strerror(e));
      }
      if (!S_ISREG(st.st_mode)) return fail(Status::corrupt, no_file);
      size = st.st_size;
    } else {
      // Read and write: an open of a FIFO does not wait, and the mapping
      // below fails on one; said as no ring before that.
      if (struct stat st {}; ::stat(("/dev/shm/" + name).c_str(), &st) == 0 && !S_ISREG(st.st_mode)) {
        return fail(Status::corrupt, no_file);
      }
      try {
        attached->shm = bip::shared_memory_object(bip::open_only, name.c_str(), mode);
      } catch (const bip::interprocess_exception& e) {
        if (e.get_error_code() == bip::not_found_error) return fail(Status::not_ready, missing);
        const bool refused = e.get_native_error() == EACCES || e.get_native_error() == EPERM;
        return fail(Status::io_error, std::string("cannot open /dev/shm/") + name + ": " + e.what() +
                                          (refused ? access_note("/dev/shm/" + name) : std::string()));
      }
      attached->shm.get_size(size);
    }
    // The router sizes a ring from nothing to whole in one step: empty, it
    // is being made; any other size short of a header, it is no ring.
    if (size == 0) return fail(Status::not_ready, "/dev/shm/" + name + " is still being created");
    if (static_cast<std::uint64_t>(size) < kHeaderBytes) {
      return fail(Status::corrupt, "/dev/shm/" + name + " is " + std::to_string(size) +
                                       " bytes, short of a ring's header (" + std::to_string(kHeaderBytes) +
                                       "): not a ringroute ring");
    }
    // Not populated: readers of counters (stat, bench) touch only the
    // header, a short-lived producer only the pages it writes, and a
    // long-lived one maps them all when it asks for touch_for_write.
    attached->map(access == Access::read_only ? bip::mapped_region(DescriptorMapping{attached->read_only_fd}, mode)
                                              : bip::mapped_region(attached->shm, mode));
    auto* h = static_cast<SegmentHeader*>(attached->region.get_address());
    // Acquire pairs with the creator's release store in initialise().
    const std::uint32_t version = h->layout_version.load(std::memory_order_acquire);
    if (version == 0) return fail(Status::not_ready, "/dev/shm/" + name + " is still being created");
    // Magic first: another kind of file (a perf block, named by mistake)
    // is not a ring, whatever its second word holds. The magic stays at
    // offset 0 in every layout.
    if (h->magic != kSegmentMagic) {
      return fail(Status::corrupt, "/dev/shm/" + name + " is not a ringroute ring (bad magic)");
    }
    if (version != kLayoutVersion) {
      return fail(Status::version_mismatch, "layout version " + std::to_string(version) +
                                                 ", this library reads version " +
                                                 std::to_string(kLayoutVersion));
    }
    const RingGeometry geometry = read_geometry(*h);
    if (!geometry.valid(static_cast<std::uint64_t>(size), attached->region.get_size())) {
      return fail(Status::corrupt, "/dev/shm/" + name + " is not a ringroute ring (bad magic, capacity or size)");
    }
    out.bind(std::move(attached), name, geometry.capacity);
    return Status::ok;
  } catch (const std::bad_alloc&) {
    return fail(Status::io_error, "out of memory");
  } catch (const std::exception& e) {
    return fail(Status::io_error, e.what());
  }
}

bool Segment::remove(const std::string& name) noexcept {
  return bip::shared_memory_object::remove(name.c_str());
}

ProducerTotals sum_producer_slots(const SegmentHeader& header) noexcept {
  ProducerTotals totals;
  // Relaxed: counts, each a word of its own, read while producers add to
  // them; nothing is read through them, and a sum a moment old is a sum.
  auto add = [&](const ProducerSlot& s) {
    totals.written += s.written.load(std::memory_order_relaxed);
    totals.bytes += s.bytes.load(std::memory_order_relaxed);
    totals.full += s.full.load(std::memory_order_relaxed);
    totals.too_big += s.too_big.load(std::memory_order_relaxed);
  };
  add(header.overflow_slot);
  for (const auto& s : header.slots) add(s);
  return totals;
}

bool all_released(const SegmentHeader& header) noexcept {
  // Relaxed, both: nothing is published to the caller by these loads (no
  // record is read through them); they only compare two positions.
  return header.head.load(std::memory_order_relaxed) == header.tail.load(std::memory_order_relaxed);
}

}  // namespace ringroute::ring
