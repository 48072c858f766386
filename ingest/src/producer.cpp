// libringroute-producer: the C ABI over ring::Producer and the event encoder.
#include "ringroute/producer.h"

#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <charconv>
#include <cstdarg>
#include <cstdio>
#include <climits>
#include <cstring>
#include <ctime>
#include <memory>
#include <new>
#include <string>
#include <system_error>

#include "ringroute/event/event.hpp"
#include "ringroute/ingest/body_check.hpp"
#include "ringroute/ring/ring.hpp"
#include "ringroute/ring/truncation_guard.hpp"
#include "thread_object.hpp"

namespace ev = ringroute::event;
namespace ring = ringroute::ring;

struct rr_producer {
  std::unique_ptr<ring::Producer> ring;
  std::string name;  // id prefix, followed by '-'
  std::string node;
  std::chrono::nanoseconds wait_timeout{0};
  // Relaxed: ids only need to be unique, and fetch_add gives that.
  std::atomic<std::uint64_t> next_sequence{0};
  // When an emit next looks whether the ring's file is still linked (the
  // call's CLOCK_REALTIME). Relaxed: threads racing past the time each look
  // once more.
  std::atomic<std::int64_t> next_link_check_ns{0};
  // Why emits are refused, if they are (RingState). One word, so a thread
  // whose look found the ring well can't undo a refusal for good another
  // thread set meanwhile: only not_as_mapped is ever cleared, and only by a
  // compare-exchange from itself.
  std::atomic<std::uint8_t> ring_state{0};
  std::string ring_path;  // /dev/shm/{name}: whether another ring took the name
};

namespace {

constexpr std::size_t kMaxNameBytes = 64;
// Events are encoded in windows of this many, so per-call scratch (ids,
// sizes) lives on the stack: no allocation whatever the batch size.
constexpr std::size_t kWindow = 128;
constexpr std::size_t kMaxIdBytes = kMaxNameBytes + 1 + 20;

rr_status to_rr(ring::Status s) {
  switch (s) {
    case ring::Status::ok: return RR_OK;
    case ring::Status::full: return RR_FULL;
    case ring::Status::too_big: return RR_TOO_BIG;
    case ring::Status::bad_argument: return RR_BAD_ARGUMENT;
    case ring::Status::not_ready: return RR_NOT_READY;
    case ring::Status::version_mismatch: return RR_VERSION_MISMATCH;
    case ring::Status::busy:
    case ring::Status::io_error: return RR_IO_ERROR;
    case ring::Status::corrupt: return RR_CORRUPT;
  }
  return RR_IO_ERROR;
}

[[gnu::format(printf, 4, 5)]] rr_status fail(rr_error* error, rr_status status, std::size_t index,
                                             const char* fmt, ...) {
  if (error != nullptr) {
    error->event_index = index;
    error->byte_offset = 0;  // a body error sets it after; never one left from an earlier call
    va_list args;
    va_start(args, fmt);
    std::vsnprintf(error->message, sizeof error->message, fmt, args);
    va_end(args);
  }
  return status;
}

struct Scratch {
  std::array<ev::EventInput, kWindow> inputs;
  std::array<std::uint32_t, kWindow> lengths;
  std::array<char, kWindow * kMaxIdBytes> ids;
};

// Per-thread scratch, allocated on a thread's first emit, so emitting
// itself neither allocates nor zeroes kilobytes of stack per call. On the
// heap (thread_object.hpp), not in thread_local storage itself: 33 KB of
// static TLS is carved out of every thread of the host process, emitting
// or not, and threads made with small stacks then failed to start
// (EINVAL); and an emit from any destructor (a log flushed at exit) finds
// it valid.
Scratch* thread_scratch() noexcept { return ringroute::ingest::detail::thread_object<Scratch>(); }

std::int64_t now_ns() {
  timespec ts;
  ::clock_gettime(CLOCK_REALTIME, &ts);
  return std::int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

// A ring removed while a handle holds it is read by the router that had
// it, for as long as that one runs; after it, by none: the next start
// makes a ring anew under the name, and whatever the handle wrote into the
// old one was lost with RR_OK, a ring's worth of events. Emits look every
// kLinkCheckNs (one fstat) whether the ring's file is still linked, and
// once it is not, whether a router still reads it: none does once another
// ring has the name (one router per instance: the one that made it
// followed the old one), nor once its consumer is gone.
constexpr std::int64_t kLinkCheckNs = 10'000'000;

// What an emit finds of its ring, worst last: a later state replaces an
// earlier one, never the reverse, except that not_as_mapped goes back to
// well once the ring is whole again at this handle's size.
enum class RingState : std::uint8_t {
  well,
  // Cut short (a router laying it out again cuts it to nothing first) or
  // laid out at another size_bytes, as of the last look: refused while it
  // stays so. Not for good: a ring made anew at this handle's size is
  // written again, as README says.
  not_as_mapped,
  removed,          // for good: no router reads it now
  cut_under_guard,  // for good: rr_guard_truncated_rings() replaced the mapping with zeros
};

// Relaxed, all of them: the state is the whole of what a refusal says;
// nothing else is read through it.
RingState state_of(const rr_producer& p) noexcept {
  return static_cast<RingState>(p.ring_state.load(std::memory_order_relaxed));
}

void worsen(rr_producer& p, RingState to) noexcept {
  auto current = p.ring_state.load(std::memory_order_relaxed);
  while (current < static_cast<std::uint8_t>(to) &&
         !p.ring_state.compare_exchange_weak(current, static_cast<std::uint8_t>(to), std::memory_order_relaxed)) {
  }
}

// The ring whole again at this handle's size: refused no longer, unless
// another thread found it worse meanwhile.
void mend(rr_producer& p) noexcept {
  auto expected = static_cast<std::uint8_t>(RingState::not_as_mapped);
  p.ring_state.compare_exchange_strong(expected, static_cast<std::uint8_t>(RingState::well),
                                       std::memory_order_relaxed);
}

// Why an emit is refused, for every place that refuses one. `while_waiting`:
// found while the emit waited for room.
const char* refusal(RingState state, bool while_waiting) noexcept {
  switch (state) {
    case RingState::cut_under_guard:
      return "was cut short under this handle, whose mapping of it is zeros now: open the ring again";
    case RingState::not_as_mapped:
      return "is no longer laid out as this handle mapped it (cut short, or made anew at another size_bytes): emits "
             "are refused until it is whole again at its size; or open the ring again";
    case RingState::removed:
    case RingState::well:  // not refused: never asked
      break;
  }
  return while_waiting ? "was removed while this emit waited for room, and no router reads it now: open the ring again"
                       : "was removed since this handle opened it, and no router reads it now (another ring may have "
                         "its name): open the ring again";
}

// Whether the ring `mapped` is one no router reads now, nor will: removed
// from its name (or the name given to another ring) and its consumer gone.
bool read_by_no_router(const rr_producer& p, const struct stat& mapped, const ring::SegmentHeader& header) {
  // The name, not only a link: a ring renamed away, or removed while a
  // hard link (a backup's) kept its file, is linked still, yet no router
  // looks for it by its name.
  struct stat named {};
  const bool named_so = ::stat(p.ring_path.c_str(), &named) == 0;
  const bool ours = named_so && named.st_dev == mapped.st_dev && named.st_ino == mapped.st_ino;
  if (ours) return false;
  const bool replaced = named_so;
  if (replaced) return true;
  // A consumer holding its lock reads the ring, whatever its pid says to
  // us (another PID namespace).
  if (ring::slot_lock_state(p.ring->segment().fd(), ring::kConsumerLockByte) == ring::SlotLock::held) return false;
  // Acquire pairs with the release that published the consumer's pid:
  // these are its ticks.
  const std::int32_t consumer = header.consumer_pid.load(std::memory_order_acquire);
  const std::uint64_t ticks = header.consumer_start_ticks.load(std::memory_order_relaxed);
  return consumer == 0 || (consumer > 0 && !ring::process_alive(consumer, ticks));  // else still read
}

// Whether emits are refused now (state_of() says why).
bool ring_refused(rr_producer& p, std::int64_t now) {
  const RingState state = state_of(p);
  if (state >= RingState::removed) return true;
  // Cut under us, with rr_guard_truncated_rings(): the mapping is zeros
  // now. Looked at on every call (a load or two): what is written into
  // the zeros is lost.
  if (p.ring->segment().cut_short()) [[unlikely]] {
    worsen(p, RingState::cut_under_guard);
    return true;
  }
  const std::int64_t next = p.next_link_check_ns.load(std::memory_order_relaxed);
  // A clock set back looks again at once, rather than after the jump.
  if (now < next && now > next - 2 * kLinkCheckNs) [[likely]] return state != RingState::well;
  p.next_link_check_ns.store(now + kLinkCheckNs, std::memory_order_relaxed);
  struct stat mapped {};
  // A failed fstat says nothing: the ring stays mapped whatever it says.
  if (::fstat(p.ring->segment().fd(), &mapped) != 0) return state != RingState::well;
  // Cut short, the next write into the cut part kills the process (SIGBUS);
  // laid out again at another size_bytes, our offsets no longer name its
  // records: claims went where the consumer read no header, and a third
  // of the events taken with RR_OK were lost. The header is read only
  // where the file holds our whole mapping; a file grown past it (no
  // router does that) with our layout is still our ring.
  const ring::SegmentHeader& header = p.ring->segment().header();
  const bool cut = static_cast<std::uint64_t>(mapped.st_size) < ring::kHeaderBytes + p.ring->segment().capacity();
  // Acquire pairs with the creator's release of the version: the capacity
  // read after it is the one it wrote. Relaxed for the capacity itself: a
  // word another process may be writing, read through an atomic_ref.
  const bool relaid =
      !cut && (header.layout_version.load(std::memory_order_acquire) != ring::kLayoutVersion ||
               std::atomic_ref<std::uint64_t>(const_cast<std::uint64_t&>(header.capacity))
                       .load(std::memory_order_relaxed) != p.ring->segment().capacity());
  if (cut || relaid) {
    worsen(p, RingState::not_as_mapped);
    return true;
  }
  mend(p);
  if (read_by_no_router(p, mapped, header)) worsen(p, RingState::removed);
  return state_of(p) != RingState::well;
}

struct TreeOfRrStr {
  const rr_str* entries;
  std::size_t count;
  std::size_t size() const { return count; }
  std::string_view operator[](std::size_t i) const { return {entries[i].data, entries[i].size}; }
};

const rr_str& field(const rr_event& e, ev::StringField f) {
  static constexpr rr_str rr_event::*kMembers[ev::kStringFieldCount] = {
      &rr_event::id,   &rr_event::account_id,  &rr_event::app_name,   &rr_event::app_version, &rr_event::node,
      &rr_event::topic, &rr_event::stream_name, &rr_event::event_type, &rr_event::tag};
  return e.*kMembers[static_cast<std::size_t>(f)];
}

// A C caller may store any int in an enum field; in C++ loading such a value
// as the enum is undefined, so read the bytes as the int they are.
template <class Enum>
int raw_enum(const Enum& value) {
  static_assert(sizeof(Enum) == sizeof(int));
  int raw;
  std::memcpy(&raw, &value, sizeof raw);
  return raw;
}

// Checks one event's arguments (not its body). Returns RR_OK or fails.
rr_status check_event(const rr_event& e, std::size_t index, rr_error* error) {
  if (const int severity = raw_enum(e.severity); severity < RR_SEVERITY_DEFAULT || severity > RR_SEVERITY_CRITICAL) {
    return fail(error, RR_BAD_ARGUMENT, index, "event %zu: severity: %d is not an rr_severity", index, severity);
  }
  if (const int verbosity = raw_enum(e.verbosity); verbosity < RR_VERBOSITY_DEFAULT || verbosity > RR_VERBOSITY_FATAL) {
    return fail(error, RR_BAD_ARGUMENT, index, "event %zu: verbosity: %d is not an rr_verbosity", index, verbosity);
  }
  for (std::size_t f = 0; f < ev::kStringFieldCount; ++f) {
    const rr_str& s = field(e, static_cast<ev::StringField>(f));
    if (s.data == nullptr) {
      // NULL means absent; with a length it is a caller's mistake (a failed
      // allocation, say), not a field to leave out quietly.
      if (s.size != 0) {
        return fail(error, RR_BAD_ARGUMENT, index, "event %zu: %s: NULL with length %zu", index,
                    ev::kStringFieldNames[f].data(), s.size);
      }
      continue;
    }
    if (s.size > ev::kMaxFieldBytes) {
      return fail(error, RR_TOO_BIG, index, "event %zu: %s: %zu bytes, at most %zu", index,
                  ev::kStringFieldNames[f].data(), s.size, ev::kMaxFieldBytes);
    }
    // An id names one event, a node one host: an empty one names none.
    // Absent, the library assigns an id and the producer's node.
    if (s.size == 0 && (f == static_cast<std::size_t>(ev::StringField::account_id) ||
                        f == static_cast<std::size_t>(ev::StringField::app_name) ||
                        f == static_cast<std::size_t>(ev::StringField::id) ||
                        f == static_cast<std::size_t>(ev::StringField::node))) {
      return fail(error, RR_BAD_ARGUMENT, index, "event %zu: %s: empty (leave it absent instead)", index,
                  ev::kStringFieldNames[f].data());
    }
  }
  if (e.body.data == nullptr && e.body.size != 0) {
    return fail(error, RR_BAD_ARGUMENT, index, "event %zu: body: NULL with length %zu", index, e.body.size);
  }
  if (e.account_tree_len > 0 && e.account_tree == nullptr) {
    return fail(error, RR_BAD_ARGUMENT, index, "event %zu: account_tree: NULL with length %zu", index,
                e.account_tree_len);
  }
  if (e.account_tree_len > ev::kMaxTreeEntries) {
    return fail(error, RR_TOO_BIG, index, "event %zu: account_tree: %zu entries, at most %zu", index,
                e.account_tree_len, ev::kMaxTreeEntries);
  }
  for (std::size_t i = 0; i < e.account_tree_len; ++i) {
    if (e.account_tree[i].data == nullptr || e.account_tree[i].size == 0) {
      return fail(error, RR_BAD_ARGUMENT, index, "event %zu: account_tree[%zu]: empty or NULL", index, i);
    }
    if (e.account_tree[i].size > ev::kMaxFieldBytes) {
      return fail(error, RR_TOO_BIG, index, "event %zu: account_tree[%zu]: %zu bytes, at most %zu", index, i,
                  e.account_tree[i].size, ev::kMaxFieldBytes);
    }
  }
  return RR_OK;
}

// Before anything adds the body's size to others (a size near SIZE_MAX
// wrapped the sum into a small claim that the copy then overran) or parses
// it (a body of a gigabyte was parsed whole before being refused).
rr_status check_body_size(const rr_event& e, std::size_t index, std::uint32_t max_claim, rr_error* error) {
  if (e.body.data == nullptr || e.body.size <= max_claim) [[likely]] return RR_OK;
  return fail(error, RR_TOO_BIG, index, "event %zu: body: %zu bytes, and a record is at most %u on the ring (an eighth of it)",
              index, e.body.size, max_claim);
}

rr_status check_body(const rr_event& e, std::size_t index, uint32_t flags, rr_error* error) {
  if (e.body.data == nullptr || (flags & RR_EMIT_BODY_TRUSTED) != 0) return RR_OK;
  const auto problem = ringroute::ingest::check_json_object({e.body.data, e.body.size});
  if (!problem) return RR_OK;
  // Not the body's fault: an out-of-memory failure is RR_IO_ERROR, as
  // producer.h says, so a good event is not thrown away as a bad one.
  if (problem->out_of_memory) return fail(error, RR_IO_ERROR, index, "event %zu: body: %s", index, problem->reason);
  const rr_status status = fail(error, RR_BAD_ARGUMENT, index, "event %zu: body: byte %zu: %s", index,
                                problem->byte_offset, problem->reason);
  if (error != nullptr) error->byte_offset = problem->byte_offset;
  return status;
}

// The decimal digits of a batch's consecutive sequence numbers: formatting
// each with to_chars was a fifth of an emit; counting up in place is a few
// instructions, and a carry past the first digit is one in ten events at most.
class DecimalSequence {
 public:
  explicit DecimalSequence(std::uint64_t first) noexcept {
    start_ = static_cast<std::size_t>(std::to_chars(digits_.data(), digits_.data() + digits_.size(), first).ptr -
                                      digits_.data());
    // Right-aligned, so a carry grows the number to the left.
    std::memmove(digits_.data() + digits_.size() - start_, digits_.data(), start_);
    start_ = digits_.size() - start_;
  }
  [[nodiscard]] std::string_view digits() const noexcept {
    return {digits_.data() + start_, digits_.size() - start_};
  }
  void next() noexcept {
    std::size_t i = digits_.size();
    while (i > start_ && digits_[i - 1] == '9') digits_[--i] = '0';
    if (i > start_) {
      ++digits_[i - 1];
    } else {
      digits_[--start_] = '1';  // 20 digits hold any u64, and the sequence never wraps
    }
  }

 private:
  std::array<char, 21> digits_{};
  std::size_t start_ = 0;
};

// Everything encode() needs for one event, with its id written into `id_buffer`.
// Returns the payload's size, or 0 when check_event() must look at the event
// before it is trusted: a cheap test on the way that almost every event
// passes (an empty or over-long string, a level out of range, a tree; an
// empty optional string is allowed by the detailed check).
std::size_t prepare(const rr_producer& p, const rr_event& e, std::int64_t now, const DecimalSequence& sequence,
                    char* id_buffer, ev::EventInput& in) {
  // Only present strings are read by encode(), so absent ones are left as
  // they are: zeroing the whole input per event cost a fifth of an emit.
  // The record's size is summed on the way, not by a second pass
  // (event::encoded_size), for every event that is not suspect.
  in.present = 0;
  std::size_t strings_bytes = 0;
  const int severity = raw_enum(e.severity), verbosity = raw_enum(e.verbosity);
  bool suspect = (severity < RR_SEVERITY_DEFAULT) | (severity > RR_SEVERITY_CRITICAL) |
                 (verbosity < RR_VERBOSITY_DEFAULT) | (verbosity > RR_VERBOSITY_FATAL) |
                 (e.account_tree_len != 0);
  // Each field named, not looped over through member pointers: GCC kept
  // that loop and its table, several times the instructions of this.
  static_assert(ev::kStringFieldCount == 9, "name every string field here");
  auto take = [&](ev::StringField f, const rr_str& s) {
    if (s.data != nullptr) {
      in.set(f, {s.data, s.size});
      strings_bytes += 2 + s.size;
      // size - 1 wraps for 0, so one compare catches empty and too long.
      suspect |= s.size - 1 >= ev::kMaxFieldBytes;
    } else {
      suspect |= s.size != 0;
    }
  };
  take(ev::StringField::id, e.id);
  take(ev::StringField::account_id, e.account_id);
  take(ev::StringField::app_name, e.app_name);
  take(ev::StringField::app_version, e.app_version);
  take(ev::StringField::node, e.node);
  take(ev::StringField::topic, e.topic);
  take(ev::StringField::stream_name, e.stream_name);
  take(ev::StringField::event_type, e.event_type);
  take(ev::StringField::tag, e.tag);
  if (e.id.data == nullptr) {
    const std::string_view digits = sequence.digits();
    ev::detail::copy_small(id_buffer, p.name.data(), p.name.size());
    ev::detail::copy_small(id_buffer + p.name.size(), digits.data(), digits.size());
    in.set(ev::StringField::id, {id_buffer, p.name.size() + digits.size()});
    strings_bytes += 2 + p.name.size() + digits.size();
  }
  if (e.node.data == nullptr) {
    in.set(ev::StringField::node, p.node);
    strings_bytes += 2 + p.node.size();
  }
  // From the raw ints: this runs before check_event() has ruled out a value
  // no enumerator names (a suspect event is not encoded before it has).
  // (Minus one in unsigned arithmetic: an INT_MIN from C must not overflow.)
  in.severity = severity == RR_SEVERITY_DEFAULT
                    ? ev::Severity::ok
                    : static_cast<ev::Severity>(static_cast<unsigned>(severity) - 1u);
  in.verbosity = verbosity == RR_VERBOSITY_DEFAULT
                     ? ev::Verbosity::info
                     : static_cast<ev::Verbosity>(static_cast<unsigned>(verbosity) - 1u);
  in.timestamp_ns = e.timestamp_ns != 0 ? e.timestamp_ns : now;
  in.body = e.body.data != nullptr ? ringroute::ingest::without_surrounding_whitespace({e.body.data, e.body.size})
                                    : std::string_view{"{}"};
  suspect |= (e.body.data == nullptr) & (e.body.size != 0);
  if (suspect) [[unlikely]] return 0;
  return ev::kFixedBytes + strings_bytes + in.body.size();
}

std::string default_name() {
  // pid alone repeats across boots and pid reuse; the open time makes the
  // prefix unique on this host, base 36 keeps it short. Two handles opened
  // by one process in the same microsecond (two threads) would still share
  // it: the process's count of opens so far, after a dot, tells them apart.
  static std::atomic<std::uint64_t> opened{0};
  // Relaxed: only the value's uniqueness matters, and fetch_add gives that.
  const std::uint64_t count = opened.fetch_add(1, std::memory_order_relaxed);
  auto base36 = [](unsigned long long value) {
    char digits[16];  // 13 base-36 digits hold any 64-bit value
    return std::string(digits, std::to_chars(digits, digits + sizeof digits, value, 36).ptr);
  };
  std::string name = std::to_string(::getpid()) + "." + base36(static_cast<unsigned long long>(now_ns() / 1000));
  if (count != 0) name += "." + base36(count);
  return name;
}

std::string host_name() {
  char buf[256] = {};
  if (::gethostname(buf, sizeof buf - 1) != 0) return "localhost";
  return buf;
}

}  // namespace

extern "C" {

const char* rr_status_message(rr_status status) {
  // As an int: a C caller may pass any (see raw_enum).
  switch (raw_enum(status)) {
    case RR_OK: return "ok";
    case RR_FULL: return "full";
    case RR_TOO_BIG: return "too big";
    case RR_BAD_ARGUMENT: return "bad argument";
    case RR_NOT_READY: return "not ready";
    case RR_VERSION_MISMATCH: return "version mismatch";
    case RR_IO_ERROR: return "I/O error";
    case RR_CORRUPT: return "corrupt segment";
    default: return "unknown status";
  }
}

rr_status rr_producer_open(const char* ring_name, const rr_producer_options* options, rr_producer** out,
                           rr_error* error) {
  // Null on every failure, this one too: a caller may close what it got.
  if (out != nullptr) *out = nullptr;
  if (out == nullptr || ring_name == nullptr) {
    return fail(error, RR_BAD_ARGUMENT, 0, "rr_producer_open: ring name and out must be given");
  }
  if (*ring_name == '\0') return fail(error, RR_BAD_ARGUMENT, 0, "rr_producer_open: the ring name is empty");
  // A ring is a file of /dev/shm by its name: a path (`a/b`, `..`) or a
  // name past the file system's limit is the caller's mistake, not an I/O
  // error (shm_open's "Invalid argument"). One leading '/' is shm_open's
  // own form of the name, taken as it takes it.
  if (ring_name[0] == '/' && ring_name[1] != '\0') ++ring_name;
  if (const std::size_t length = ::strnlen(ring_name, NAME_MAX + 1);
      length > NAME_MAX || std::strchr(ring_name, '/') != nullptr || std::strcmp(ring_name, ".") == 0 ||
      std::strcmp(ring_name, "..") == 0) {
    return fail(error, RR_BAD_ARGUMENT, 0,
                "rr_producer_open: a ring name is a file name of /dev/shm: 1 to %d bytes, no '/', not . or ..",
                NAME_MAX);
  }
  const rr_producer_options defaults{};
  if (options == nullptr) options = &defaults;
  if (options->name != nullptr &&
      (options->name[0] == '\0' || ::strnlen(options->name, kMaxNameBytes + 1) > kMaxNameBytes)) {
    return fail(error, RR_BAD_ARGUMENT, 0, "rr_producer_open: name must be 1 to %zu bytes", kMaxNameBytes);
  }
  // Empty, it would stamp every event left without one with a node that
  // names no host, which an event's own empty node is refused as.
  if (options->node != nullptr &&
      (options->node[0] == '\0' || ::strnlen(options->node, ev::kMaxFieldBytes + 1) > ev::kMaxFieldBytes)) {
    return fail(error, RR_BAD_ARGUMENT, 0, "rr_producer_open: node must be 1 to %zu bytes", ev::kMaxFieldBytes);
  }
  if (options->wait_timeout_ns < 0) {
    return fail(error, RR_BAD_ARGUMENT, 0, "rr_producer_open: wait_timeout_ns is negative");
  }
  try {
    ring::Segment segment;
    std::string why;
    const ring::Status s = ring::Segment::attach(ring_name, segment, &why);
    if (s != ring::Status::ok) return fail(error, to_rr(s), 0, "%s", why.c_str());
    auto producer = std::make_unique<rr_producer>();
    producer->ring = std::make_unique<ring::Producer>(std::move(segment));
    producer->name = (options->name != nullptr ? std::string(options->name) : default_name()) + "-";
    producer->node = options->node != nullptr ? std::string(options->node) : host_name();
    producer->wait_timeout = std::chrono::nanoseconds(options->wait_timeout_ns);
    producer->ring_path = std::string("/dev/shm/") + ring_name;
    *out = producer.release();
    return RR_OK;
  } catch (const std::bad_alloc&) {
    return fail(error, RR_IO_ERROR, 0, "rr_producer_open: out of memory");
  } catch (const std::exception& e) {
    return fail(error, RR_IO_ERROR, 0, "rr_producer_open: %s", e.what());
  }
}

void rr_producer_close(rr_producer* producer) { delete producer; }

rr_status rr_producer_prefault(rr_producer* producer) {
  if (producer == nullptr) return RR_BAD_ARGUMENT;
  producer->ring->prefault();
  return RR_OK;
}

rr_status rr_emit(rr_producer* producer, const rr_event* event, uint32_t flags, rr_error* error) {
  return rr_emit_batch(producer, event, 1, flags, nullptr, error);
}

namespace {
rr_status emit_batch(rr_producer* p, const rr_event* events, size_t count, uint32_t flags, size_t* accepted,
                     rr_error* error) {
  if (accepted != nullptr) *accepted = 0;
  if (p == nullptr || (events == nullptr && count != 0)) {
    return fail(error, RR_BAD_ARGUMENT, 0, "rr_emit: producer and events must be given");
  }
  if ((flags & ~RR_EMIT_BODY_TRUSTED) != 0) {
    return fail(error, RR_BAD_ARGUMENT, 0, "rr_emit: unknown flags 0x%x", flags & ~RR_EMIT_BODY_TRUSTED);
  }
  if (p->ring->forked()) [[unlikely]] {
    return fail(error, RR_BAD_ARGUMENT, 0,
                "rr_emit: this producer was opened before fork(); open one in the child (the parent's stays usable)");
  }
  // A bad event must leave the ring untouched. A batch of one window is
  // checked while it is prepared, before anything is claimed; a longer one
  // is checked whole first.
  ring::Producer& rp = *p->ring;
  const std::uint32_t max_claim = rp.max_claim_bytes();
  const bool checked_first = count > kWindow;
  for (std::size_t i = 0; checked_first && i < count; ++i) {
    if (rr_status s = check_event(events[i], i, error); s != RR_OK) return s;
    if (rr_status s = check_body_size(events[i], i, max_claim, error); s != RR_OK) return s;
    if (rr_status s = check_body(events[i], i, flags, error); s != RR_OK) return s;
  }
  const std::int64_t now = now_ns();
  if (ring_refused(*p, now)) [[unlikely]] {
    return fail(error, RR_NOT_READY, 0, "rr_emit: ring %s %s", rp.segment().name().c_str(),
                refusal(state_of(*p), false));
  }
  const std::uint64_t first_sequence = p->next_sequence.fetch_add(count, std::memory_order_relaxed);

  Scratch* scratch_address = thread_scratch();
  if (scratch_address == nullptr) [[unlikely]] {
    return fail(error, RR_IO_ERROR, 0, "out of memory for this thread's %zu bytes of scratch", sizeof(Scratch));
  }
  auto& inputs = scratch_address->inputs;
  auto& lengths = scratch_address->lengths;
  auto& ids = scratch_address->ids;
  DecimalSequence sequence(first_sequence);
  std::int64_t wait_deadline_ns = 0;  // the call's, set by its first claim that waits
  std::size_t done = 0;
  while (done < count) {
    const std::size_t window = std::min(kWindow, count - done);
    for (std::size_t i = 0; i < window; ++i) {
      const std::size_t index = done + i;
      if (!checked_first) {
        if (rr_status s = check_body_size(events[index], index, max_claim, error); s != RR_OK) {
          if (accepted != nullptr) *accepted = done;
          return s;
        }
      }
      std::size_t payload = prepare(*p, events[index], now, sequence, &ids[i * kMaxIdBytes], inputs[i]);
      if (payload == 0) [[unlikely]] {
        if (!checked_first) {
          if (rr_status s = check_event(events[index], index, error); s != RR_OK) return s;
        }
        // Good after all (an empty optional string, a tree): sized the long way.
        payload = ev::encoded_size(inputs[i], TreeOfRrStr{events[index].account_tree, events[index].account_tree_len});
      }
      if (!checked_first) {
        if (rr_status s = check_body(events[index], index, flags, error); s != RR_OK) return s;
      }
      sequence.next();
      const std::uint64_t bytes = ring::record_bytes(payload);
      if (payload == 0 || bytes > max_claim) {
        if (accepted != nullptr) *accepted = done;
        return fail(error, RR_TOO_BIG, index, "event %zu: %llu bytes on the ring, at most %u (an eighth of it)",
                    index, static_cast<unsigned long long>(bytes), max_claim);
      }
      lengths[i] = static_cast<std::uint32_t>(ring::kRecordHeaderBytes + payload);
    }
    // Runs of events that fit one claim: one CAS each.
    std::size_t i = 0;
    while (i < window) {
      std::uint64_t run_bytes = 0;
      std::size_t j = i;
      while (j < window && run_bytes + ring::align_record(lengths[j]) <= max_claim) {
        run_bytes += ring::align_record(lengths[j]);
        ++j;
      }
      ring::Claim claim;
      const ring::Status s =
          rp.claim(static_cast<std::uint32_t>(run_bytes), claim, p->wait_timeout, wait_deadline_ns,
                   {[](void* producer) noexcept { return ring_refused(*static_cast<rr_producer*>(producer), now_ns()); },
                    p});
      if (s == ring::Status::not_ready) {
        if (accepted != nullptr) *accepted = done + i;
        return fail(error, RR_NOT_READY, done + i, "event %zu: ring %s %s", done + i, rp.segment().name().c_str(),
                    refusal(state_of(*p), true));
      }
      if (s != ring::Status::ok) {
        if (accepted != nullptr) *accepted = done + i;
        // A claim's only corrupt ring is a tail off a record's boundary.
        const char* why = s == ring::Status::corrupt
                              ? "its producers' tail is not on a record boundary (no producer moves it so: something "
                                "else wrote the ring's header); nothing was written"
                              : ring::to_string(s);
        return fail(error, to_rr(s), done + i, "event %zu: ring %s: %s", done + i, rp.segment().name().c_str(), why);
      }
      std::byte* at = claim.first;
      // A lap earlier the consumer zeroed these lines, so each sits in its
      // cache (or in memory); asked for together, the transfers overlap
      // instead of each first store waiting out its own.
      ring::detail::prefetch_for_write(claim.first, run_bytes);
      for (std::size_t k = i; k < j; ++k) {
        ev::encode(inputs[k], TreeOfRrStr{events[done + k].account_tree, events[done + k].account_tree_len},
                   events[done + k].account_tree != nullptr, at + ring::kRecordHeaderBytes);
        at += ring::align_record(lengths[k]);
      }
      rp.commit(claim, &lengths[i], j - i);
      i = j;
    }
    done += window;
  }
  // A ring cut short while this call wrote (rr_guard_truncated_rings()):
  // some or all of its events went into the zeros that replaced the
  // mapping, not RR_OK. Which, nobody can tell (runs committed before the
  // cut may have been read; a cut met by another thread sharing the handle
  // is found here too): *accepted says none, so a caller that sends them
  // again loses none, at the price of some twice, as a restart may.
  if (rp.segment().cut_short()) [[unlikely]] {
    worsen(*p, RingState::cut_under_guard);  // every later call is refused too
    if (accepted != nullptr) *accepted = 0;
    return fail(error, RR_NOT_READY, 0,
                "rr_emit: ring %s was cut short while this call wrote into it: its events may be lost, some may "
                "have been read (accepted says 0); open the ring again",
                rp.segment().name().c_str());
  }
  if (accepted != nullptr) *accepted = count;
  return RR_OK;
}
}  // namespace

rr_status rr_guard_truncated_rings(rr_error* error) {
  try {
    ring::install_truncation_guard();
  } catch (const std::system_error& e) {
    return fail(error, RR_IO_ERROR, 0, "rr_guard_truncated_rings: %s", e.what());
  }
  return RR_OK;
}

rr_status rr_emit_batch(rr_producer* p, const rr_event* events, size_t count, uint32_t flags, size_t* accepted,
                        rr_error* error) {
  const rr_status status = emit_batch(p, events, count, flags, accepted, error);
  if (status == RR_TOO_BIG && p != nullptr && !p->ring->forked()) [[unlikely]] {
    // The library sizes every event before it claims (no claim is ever
    // over the ring's limit), so the ring's count of emits refused for
    // size, which `stat` shows, is kept here. Relaxed: a count, read apart.
    p->ring->slot().too_big.fetch_add(1, std::memory_order_relaxed);
  }
  return status;
}

}  // extern "C"
