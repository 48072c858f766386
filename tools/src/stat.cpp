// `ringroute stat`: the router's counters, read from shared memory (the perf
// block and the rings' own headers) without asking the router.
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <simdjson.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "ringroute/perf/block.hpp"
#include "ringroute/ring/segment.hpp"
#include "ringroute/ring/truncation_guard.hpp"
#include "ringroute/tools/commands.hpp"
#include "ringroute/tools/config.hpp"
#include "ringroute/tools/json_text.hpp"
#include "stat_views.hpp"

namespace ringroute::tools {
namespace {

struct StatArgs {
  std::string instance = "ringroute";
  std::string config;
  bool json = false;
  unsigned interval_ms = 1000;
  unsigned count = 0;  // 0: until interrupted
};

struct RingFigures {
  std::string name;
  bool in_config = true;  // named by the config of the router that last started (perf::RingSlot::not_in_config)
  bool attached = false;
  std::string error;  // why not, when it is there but could not be read
  std::uint64_t written = 0, bytes = 0, read = 0, full = 0, skipped = 0, corrupt = 0, replayed = 0, producers = 0;
  std::uint64_t too_big = 0, read_bytes = 0, skipped_bytes = 0, consumer_sleeps = 0;
  std::uint64_t capacity = 0, used = 0;
  std::int64_t created_ns = 0;  // which segment: a ring made again starts its counters over
};

struct BackendFigures {
  std::string name, type;
  bool in_config = false;  // enabled in the router's config (perf::BackendSlot::in_config)
  std::uint64_t matched = 0, sent = 0, bytes = 0, batches = 0, retries = 0, failures = 0;
  std::uint64_t dropped_queue_full = 0, dropped_rejected = 0, dropped_shutdown = 0, dropped_removed = 0,
                skipped_written = 0, rotations = 0, reopens = 0;
  std::uint64_t connects = 0, connect_failures = 0, timeouts = 0, truncated = 0, body_bytes_sent = 0;
  std::array<std::uint64_t, perf::kHistogramBuckets> latency{};
  // Routed to it and not settled yet (perf::pending_of); nullopt from a
  // router of an earlier build.
  std::optional<std::uint64_t> pending;
  bool retrying = false;                // a batch's try failed and it is not written yet
  std::optional<perf::SaidSeen> said;  // the last line its log said (perf::SaidLine)
};

struct Snapshot {
  std::chrono::steady_clock::time_point at;
  std::int64_t unix_ns = 0;  // when it was taken, for a scraper's rates
  std::uint32_t boot_s = 0;  // and on CLOCK_BOOTTIME, for how long ago a line was said
  std::int32_t router_pid = 0;
  std::int64_t router_started_unix_ns = 0;
  std::int64_t block_created_unix_ns = 0;  // 0: a block of an earlier build, which did not say
  bool router_running = false;
  bool router_stopped = false;  // perf::BlockHeader::router_stopped
  bool router_pid_alive = false;  // a process of router_pid is there (maybe another, its pid reused)
  // Known only through a ring this reader may read: none, while one is
  // there and can't be read (its rings 0600, the block readable), and
  // whether the router runs is not known.
  bool router_known = false;
  bool ring_unreadable = false;
  std::vector<RingFigures> rings;
  std::vector<BackendFigures> backends;
};

// A name from the block, which anyone who can write it may have left
// without its terminating zero, or with terminal escapes in it: bounded by
// its field, and every byte that is not printable ASCII shown as '?' (a
// config's names are ASCII; UTF-8's C1 controls, "\xC2\x9B" a CSI, are
// escapes to some terminals too).
template <std::size_t N>
std::string block_text(const char (&field)[N]) {
  std::string text(field, ::strnlen(field, N));
  for (char& c : text) {
    if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) >= 0x7f) c = '?';
  }
  return text;
}

Snapshot take(const perf::Block& block) {
  Snapshot s;
  s.at = std::chrono::steady_clock::now();
  s.boot_s = perf::boot_seconds();
  s.unix_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch())
                  .count();
  s.router_pid = block.header.router_pid.load(std::memory_order_relaxed);
  s.router_stopped = block.header.router_stopped.load(std::memory_order_relaxed) != 0;  // a label: see the block
  s.router_pid_alive = s.router_pid > 0 && ring::process_alive(s.router_pid, 0);
  s.router_started_unix_ns = block.header.router_started_ns.load(std::memory_order_relaxed);
  s.block_created_unix_ns = block.header.created_ns.load(std::memory_order_relaxed);
  for (const perf::RingSlot& slot : block.rings) {
    if (slot.name[0] == 0) continue;
    RingFigures r;
    r.name = block_text(slot.name);
    r.in_config = slot.not_in_config.load(std::memory_order_relaxed) == 0;
    r.replayed = slot.replayed.read();
    ring::Segment segment;
    std::string error;
    // By the name as stored, not as shown: a byte shown as '?' would name
    // another ring, or none.
    const ring::Status attached = ring::Segment::attach(std::string(perf::slot_name(slot.name)), segment, &error,
                                                        ring::Segment::Access::read_only);
    if (attached == ring::Status::not_ready) {
      // Gone (or being made): no consumer to say anything.
    } else if (attached != ring::Status::ok) {
      r.error = std::move(error);
      // Whether the router runs is told by the rings it consumes only: one
      // an earlier config named says nothing of it.
      if (r.in_config) s.ring_unreadable = true;
    } else {
      if (r.in_config) s.router_known = true;
      const ring::SegmentHeader& h = segment.header();
      const ring::ProducerTotals totals = ring::sum_producer_slots(h);
      r.attached = true;
      r.written = totals.written;
      r.bytes = totals.bytes;
      r.full = totals.full;
      r.too_big = totals.too_big;
      r.read_bytes = h.read_bytes.read();
      r.skipped_bytes = h.skipped_bytes.read();
      r.consumer_sleeps = h.consumer_sleeps.read();
      // Alive now, not slots taken: a producer killed keeps its slot taken.
      r.producers = ring::live_producers(segment);
      r.read = h.read.read();
      r.skipped = h.skipped.read();
      r.corrupt = h.corrupt.read();
      r.capacity = segment.capacity();
      r.created_ns = h.created_unix_ns;
      // Head first: the tail read after it is at least as far, so the
      // difference never wraps (acquire orders the two loads).
      const std::uint64_t head = h.head.load(std::memory_order_acquire);
      // At most the ring: producers may write these two positions too, and
      // a used share past 100% is none any router made.
      r.used = std::min(h.tail.load(std::memory_order_acquire) - head, r.capacity);
      // The router runs when it is this ring's consumer, checked with its
      // start time, so a pid reused since it died does not count; a router
      // refused the ring (another one holds it) does not either.
      // Acquire pairs with take_owner()'s release of the pid, which the
      // start ticks were written before.
      const std::int32_t consumer = h.consumer_pid.load(std::memory_order_acquire);
      if (consumer > 0 && consumer == s.router_pid &&
          ring::process_alive(consumer, h.consumer_start_ticks.load(std::memory_order_relaxed))) {
        s.router_running = true;
      }
      // Or by the consumer's lock, which the kernel drops with its holder:
      // the pid sits in the ring's header, which every producer may write,
      // and one zeroed there made a running router "not running". Only
      // where the header names no other consumer, and the block's router
      // lives: the lock says that someone consumes the ring, not who (a
      // router of another instance on a ring of the same name).
      if (r.in_config && (consumer == 0 || consumer == s.router_pid) && s.router_pid > 0 &&
          ring::process_alive(s.router_pid, 0) &&
          ring::slot_lock_state(segment.fd(), ring::kConsumerLockByte) == ring::SlotLock::held) {
        s.router_running = true;
      }
      // Cut short while we read it: those were the guard's zeros, not figures.
      if (segment.cut_short()) {
        RingFigures unread;
        unread.name = std::move(r.name);
        unread.in_config = r.in_config;
        unread.replayed = r.replayed;
        r = std::move(unread);
      }
    }
    s.rings.push_back(std::move(r));
  }
  for (const perf::BackendSlot& slot : block.backends) {
    if (slot.name[0] == 0) continue;
    BackendFigures b;
    b.name = block_text(slot.name);
    b.type = block_text(slot.type);
    b.in_config = slot.in_config.load(std::memory_order_relaxed) != 0;
    b.pending = perf::pending_of(slot);
    for (const auto& shard : slot.worker) {
      b.matched += shard.matched.read();
      b.dropped_queue_full += shard.dropped_queue_full.read();
      b.dropped_removed += shard.dropped_removed.read();
      b.skipped_written += shard.skipped_written.read();
    }
    b.sent = slot.sink.sent.read();
    b.bytes = slot.sink.bytes.read();
    b.batches = slot.sink.batches.read();
    b.retries = slot.sink.retries.read();
    b.failures = slot.sink.failures.read();
    b.dropped_rejected = slot.sink.dropped_failed.read();
    b.dropped_shutdown = slot.sink.dropped_shutdown.read();
    b.dropped_removed += slot.sink.dropped_removed.read();
    b.rotations = slot.sink.rotations.read();
    b.reopens = slot.sink.reopens.read();
    b.connects = slot.sink.connects.read();
    b.connect_failures = slot.sink.connect_failures.read();
    b.timeouts = slot.sink.timeouts.read();
    b.truncated = slot.sink.truncated.read();
    b.body_bytes_sent = slot.sink.body_bytes_sent.read();
    for (std::size_t i = 0; i < perf::kHistogramBuckets; ++i) b.latency[i] = slot.latency.buckets[i].read();
    // Relaxed: a label, ordered with nothing (see BackendRunner).
    b.retrying = slot.said.retrying.load(std::memory_order_relaxed) != 0;
    b.said = perf::read_said(slot.said);
    if (b.said) {
      // A destination's words (an HTTP body's start), and the block is
      // anyone's who may write it: control bytes shown as '?', C1 controls
      // (U+0080-U+009F, escapes to some terminals) too, and every byte
      // past ASCII where the line is not UTF-8.
      std::string& text = b.said->text;
      const bool utf8 = simdjson::validate_utf8(text.data(), text.size());
      for (std::size_t i = 0; i < text.size(); ++i) {
        const auto c = static_cast<unsigned char>(text[i]);
        if (c < 0x20 || c == 0x7f || (!utf8 && c >= 0x80)) {
          text[i] = '?';
        } else if (c == 0xC2 && i + 1 < text.size() && static_cast<unsigned char>(text[i + 1]) < 0xA0) {
          text.replace(i, 2, "?");
        }
      }
    }
    s.backends.push_back(std::move(b));
  }
  return s;
}

double micros(std::uint64_t ns) { return static_cast<double>(ns) / 1000.0; }

// The latency at `quantile` in microseconds, or nullopt when no event was
// written (histogram_quantile's 0 would read as a perfect latency, and a
// destination down writes nothing).
std::optional<double> quantile_us(const std::array<std::uint64_t, perf::kHistogramBuckets>& counts, double quantile) {
  for (std::uint64_t count : counts) {
    if (count != 0) return micros(perf::histogram_quantile(counts, quantile));
  }
  return std::nullopt;
}

const char* router_state(const Snapshot& s) {
  if (s.router_running) return "running";
  if (!s.router_known && s.ring_unreadable) return "unknown";
  if (s.router_pid > 0 && !s.router_stopped) {
    // Not consuming a ring we could read, yet its process is there (its
    // rings removed from /dev/shm under it, or still tearing its stop
    // down): it did not die, and whether it routes is not known.
    return s.router_pid_alive ? "unknown" : "died";
  }
  return "stopped";
}

// Whether a backend retries now, as far as `stat` can tell: not once its
// router stopped or died (a stop in the middle of a retry leaves the flag).
bool retrying_now(const BackendFigures& b, const Snapshot& s) {
  const std::string_view state = router_state(s);
  return b.retrying && state != "stopped" && state != "died";
}

std::string json_snapshot(const std::string& instance, const Snapshot& s) {
  std::string out = "{\"instance\":" + json_quote(instance) + ",\"time_unix_ns\":" + std::to_string(s.unix_ns) +
                    ",\"block_created_unix_ns\":" +
                    (s.block_created_unix_ns > 0 ? std::to_string(s.block_created_unix_ns) : std::string("null")) +
                    ",\"router_pid\":" + std::to_string(s.router_pid) + ",\"router_started_unix_ns\":" +
                    (s.router_started_unix_ns > 0 ? std::to_string(s.router_started_unix_ns) : std::string("null")) +
                    ",\"router_running\":" + (s.router_running ? "true" : "false") +
                    ",\"router_state\":\"" + router_state(s) + "\",\"rings\":[";
  char buffer[64];
  for (std::size_t i = 0; i < s.rings.size(); ++i) {
    const RingFigures& r = s.rings[i];
    out += (i ? "," : "") + std::string("{\"name\":") + json_quote(r.name) +
           ",\"in_config\":" + (r.in_config ? "true" : "false") + ",\"attached\":" + (r.attached ? "true" : "false") + ",\"written\":" + std::to_string(r.written) +
           ",\"bytes\":" + std::to_string(r.bytes) + ",\"read\":" + std::to_string(r.read) +
           ",\"full\":" + std::to_string(r.full) + ",\"too_big\":" + std::to_string(r.too_big) +
           ",\"read_bytes\":" + std::to_string(r.read_bytes) + ",\"skipped\":" + std::to_string(r.skipped) +
           ",\"skipped_bytes\":" + std::to_string(r.skipped_bytes) +
           ",\"consumer_sleeps\":" + std::to_string(r.consumer_sleeps) +
           ",\"corrupt\":" + std::to_string(r.corrupt) + ",\"replayed\":" + std::to_string(r.replayed) +
           ",\"producers\":" + std::to_string(r.producers) + ",\"capacity\":" + std::to_string(r.capacity) +
           ",\"used\":" + std::to_string(r.used) + ",\"created_unix_ns\":" +
           (r.attached ? std::to_string(r.created_ns) : std::string("null")) +
           (r.error.empty() ? "" : ",\"error\":" + json_quote(r.error)) + "}";
  }
  out += "],\"backends\":[";
  for (std::size_t i = 0; i < s.backends.size(); ++i) {
    const BackendFigures& b = s.backends[i];
    out += (i ? "," : "") + std::string("{\"name\":") + json_quote(b.name) + ",\"type\":" + json_quote(b.type) +
           ",\"in_config\":" + (b.in_config ? "true" : "false") + ",\"matched\":" + std::to_string(b.matched) +
           ",\"pending\":" + (b.pending ? std::to_string(*b.pending) : std::string("null")) +
           ",\"sent\":" + std::to_string(b.sent) +
           ",\"bytes\":" + std::to_string(b.bytes) + ",\"batches\":" + std::to_string(b.batches) +
           ",\"retries\":" + std::to_string(b.retries) + ",\"failures\":" + std::to_string(b.failures) +
           ",\"dropped\":{\"queue_full\":" + std::to_string(b.dropped_queue_full) +
           ",\"rejected\":" + std::to_string(b.dropped_rejected) +
           ",\"shutdown\":" + std::to_string(b.dropped_shutdown) +
           ",\"removed\":" + std::to_string(b.dropped_removed) + "}" +
           ",\"skipped_written\":" + std::to_string(b.skipped_written) +
           ",\"rotations\":" + std::to_string(b.rotations) + ",\"reopens\":" + std::to_string(b.reopens) +
           ",\"connects\":" + std::to_string(b.connects) +
           ",\"connect_failures\":" + std::to_string(b.connect_failures) +
           ",\"timeouts\":" + std::to_string(b.timeouts) + ",\"truncated\":" + std::to_string(b.truncated) +
           ",\"body_bytes_sent\":" + std::to_string(b.body_bytes_sent) +
           ",\"retrying\":" + (retrying_now(b, s) ? "true" : "false") + ",\"last_said\":" +
           (b.said ? "{\"line\":" + json_quote(b.said->text) + ",\"at_unix_ns\":" + std::to_string(b.said->at_unix_ns) +
                         "}"
                   : std::string("null"));
    for (auto [label, q] : {std::pair{"p50_us", 0.5}, std::pair{"p99_us", 0.99}, std::pair{"p999_us", 0.999}}) {
      if (const std::optional<double> us = quantile_us(b.latency, q)) {
        std::snprintf(buffer, sizeof buffer, ",\"%s\":%.1f", label, *us);
      } else {
        std::snprintf(buffer, sizeof buffer, ",\"%s\":null", label);
      }
      out += buffer;
    }
    // The histogram's buckets that hold events, so a scraper can take the
    // difference of two snapshots and read a window's percentiles (those
    // above are since the block was made).
    out += ",\"latency_buckets\":[";
    bool first_bucket = true;
    for (std::size_t k = 0; k < perf::kHistogramBuckets; ++k) {
      if (b.latency[k] == 0) continue;
      out += (first_bucket ? "" : ",") + std::string("{\"from_ns\":") +
             std::to_string(perf::Histogram::lower_bound(k)) + ",\"to_ns\":" +
             std::to_string(perf::Histogram::upper_bound(k)) +
             ",\"count\":" + std::to_string(b.latency[k]) + "}";
      first_bucket = false;
    }
    out += "]}";
  }
  return out + "]}";
}

// A figure for the table, or "-" where there is none.
std::string cell(std::optional<double> value, const char* format) {
  if (!value) return "-";
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, format, *value);
  return buffer;
}

// The row of `name` in the view before, if it had one. Rows are matched by
// name, not place: a slot reclaimed since, or read half zeroed while it was,
// shifts the places of the rows after it.
template <class Row>
const Row* row_named(const std::vector<Row>& rows, const std::string& name) {
  for (const Row& row : rows) {
    if (row.name == name) return &row;
  }
  return nullptr;
}

void print_table(const Snapshot& now, const Snapshot* before) {
  const double seconds =
      before ? std::chrono::duration<double>(now.at - before->at).count() : 0.0;
  // No rate without a view before (the first view, a row new since): "-",
  // not a 0 that reads as a stall. A counter lower than before was started
  // over (a ring made again, a new perf block): its rate counts from zero.
  auto rate = [&](std::uint64_t a, std::optional<std::uint64_t> b) -> std::optional<double> {
    if (!b || seconds <= 0) return std::nullopt;
    return static_cast<double>(a >= *b ? a - *b : a) / seconds;
  };
  // Latency of the events written since the view before (all of them in the
  // first view): a spike now is not hidden by hours of history.
  auto interval = [&](const BackendFigures& b, const BackendFigures* p) {
    std::array<std::uint64_t, perf::kHistogramBuckets> counts = b.latency;
    if (p == nullptr) return counts;
    for (std::size_t k = 0; k < counts.size(); ++k) {
      if (counts[k] < p->latency[k]) return b.latency;  // started over
      counts[k] -= p->latency[k];
    }
    return counts;
  };
  // Whether these figures still move: after a stop or a crash they are
  // what the router left.
  const std::string state = router_state(now);
  if (state == "running") {
    std::printf("router pid %d: running\n", static_cast<int>(now.router_pid));
  } else if (state == "stopped") {
    std::printf("router%s: not running (figures as it left them)\n",
                now.router_pid > 0 ? (" pid " + std::to_string(now.router_pid)).c_str() : "");
  } else if (state == "died") {
    std::printf("router pid %d: died without finishing its stop (killed, crashed or stuck; figures as it left "
                "them, what it had not written waits in its rings for the next start)\n",
                static_cast<int>(now.router_pid));
  } else {
    std::printf("router pid %d: not known (no ring could be read)\n", static_cast<int>(now.router_pid));
  }
  std::printf("%-24s %14s %14s %12s %10s %10s %10s %8s\n", "ring", "written/s", "read/s", "written", "full",
              "skipped", "corrupt", "used%");
  // Rings an earlier config named, as backends below: in `--json` only.
  for (const RingFigures& r : now.rings) {
    if (!r.in_config) continue;
    const RingFigures* p = before != nullptr ? row_named(before->rings, r.name) : nullptr;
    if (p != nullptr && !p->attached) p = nullptr;
    if (!r.attached) {
      std::printf("%-24s %14s %14s %12s %10s %10s %10s %8s%s%s\n", r.name.c_str(), "-", "-", "-", "-", "-", "-",
                  r.error.empty() ? "gone" : "-", r.error.empty() ? "" : "  ", r.error.c_str());
      continue;
    }
    // A ring made again since the view before counts from zero, even past
    // where the old one was.
    const bool same_segment = p != nullptr && p->created_ns == r.created_ns;
    const auto earlier = [&](std::uint64_t RingFigures::*field) -> std::optional<std::uint64_t> {
      if (p == nullptr) return std::nullopt;
      return same_segment ? p->*field : 0;
    };
    std::printf("%-24s %14s %14s %12llu %10llu %10llu %10llu %7.1f%%\n", r.name.c_str(),
                cell(rate(r.written, earlier(&RingFigures::written)), "%.0f").c_str(),
                cell(rate(r.read, earlier(&RingFigures::read)), "%.0f").c_str(),
                static_cast<unsigned long long>(r.written), static_cast<unsigned long long>(r.full),
                static_cast<unsigned long long>(r.skipped), static_cast<unsigned long long>(r.corrupt),
                r.capacity ? 100.0 * static_cast<double>(r.used) / static_cast<double>(r.capacity) : 0.0);
  }
  // Backends the config no longer has (removed, renamed, disabled by a
  // reload) keep their frozen figures in the block, for `--json`; the live
  // view is of what runs.
  std::printf("%-24s %14s %12s %10s %12s %10s %10s %10s %9s %9s %9s\n", "backend", "sent/s", "sent", "pending", "MB/s",
              "retries", "failures", "dropped", "p50 us", "p99 us", "p999 us");
  for (const BackendFigures& b : now.backends) {
    if (!b.in_config) continue;
    const BackendFigures* p = before != nullptr ? row_named(before->backends, b.name) : nullptr;
    const auto latency = interval(b, p);
    const auto earlier = [&](std::uint64_t BackendFigures::*field) -> std::optional<std::uint64_t> {
      if (p == nullptr) return std::nullopt;
      return p->*field;
    };
    const std::optional<double> bytes_rate = rate(b.bytes, earlier(&BackendFigures::bytes));
    std::printf("%-24s %14s %12llu %10s %12s %10llu %10llu %10llu %9s %9s %9s\n", b.name.c_str(),
                cell(rate(b.sent, earlier(&BackendFigures::sent)), "%.0f").c_str(),
                static_cast<unsigned long long>(b.sent),
                cell(b.pending ? std::optional(static_cast<double>(*b.pending)) : std::nullopt, "%.0f").c_str(),
                cell(bytes_rate ? std::optional(*bytes_rate / 1e6) : std::nullopt, "%.1f").c_str(),
                static_cast<unsigned long long>(b.retries), static_cast<unsigned long long>(b.failures),
                static_cast<unsigned long long>(b.dropped_queue_full + b.dropped_rejected + b.dropped_shutdown +
                                                b.dropped_removed),
                cell(quantile_us(latency, 0.5), "%.1f").c_str(), cell(quantile_us(latency, 0.99), "%.1f").c_str(),
                cell(quantile_us(latency, 0.999), "%.1f").c_str());
  }
  // Why, under the figures: what each backend that retries now, or said
  // something in the last minute, said last.
  for (const BackendFigures& b : now.backends) {
    if (!b.in_config || !b.said) continue;
    // On the boot clock where the router stamped it: a wall clock stepped
    // since made a line look hours old (forward) or hid it (back).
    const double ago = b.said->at_boot_s != 0 && now.boot_s != 0
                           ? static_cast<double>(now.boot_s) - static_cast<double>(b.said->at_boot_s)
                           : (static_cast<double>(now.unix_ns) - static_cast<double>(b.said->at_unix_ns)) / 1e9;
    const bool retrying = retrying_now(b, now);
    // A line of a router of an earlier build (no boot stamp) stamped ahead
    // of now was said before the wall clock was set back: how long ago is
    // not known, so it is not taken for one of the last minute ("0 s ago").
    if (!retrying && (ago > 60 || ago < -1)) continue;
    if (ago < -1) {
      std::printf("  %s retrying; said last, before the clock was set back: %s\n", b.name.c_str(),
                  b.said->text.c_str());
      continue;
    }
    std::printf("  %s%s, %.0f s ago: %s\n", b.name.c_str(), retrying ? " retrying; said last" : " said",
                std::max(ago, 0.0), b.said->text.c_str());
  }
  std::printf("\n");
  std::fflush(stdout);
}

// The block as `stat` reads it: its mapping guarded (a router of another
// version sizes the file anew, and a read past its end would be a SIGBUS),
// and which file it is, to notice one made in its place.
struct WatchedBlock {
  std::optional<perf::BlockMapping> mapping;
  std::unique_ptr<ring::GuardedMapping> guard;  // declared after: unguarded before the unmap
  struct stat file {};
};

std::unique_ptr<WatchedBlock> open_block(const std::string& instance, std::string& error) {
  auto watched = std::make_unique<WatchedBlock>();
  // Which file before mapping it: one put in its place in between is
  // found at the next view and read again.
  if (::stat(perf::block_path(instance).c_str(), &watched->file) != 0) watched->file = {};
  // Guarded from before its header is read: the file may be cut short
  // between its size checked and that read.
  watched->mapping = perf::BlockMapping::open_read_only(instance, &error, [&](const perf::Block& block) {
    watched->guard = std::make_unique<ring::GuardedMapping>(&block, sizeof(perf::Block), false);
  });
  if (!watched->mapping) return nullptr;
  return watched;
}

// What happened to the block since it was opened (nullopt: nothing): what
// was read from it then may be zeros or another layout's bytes.
std::optional<std::string> block_changed(const std::string& instance, const WatchedBlock& watched) {
  if (watched.guard->cut_short()) return "was cut short";
  struct stat now {};
  if (::stat(perf::block_path(instance).c_str(), &now) != 0) {
    return errno == ENOENT ? std::string("was removed") : std::string("stat: ") + std::strerror(errno);
  }
  if (now.st_dev != watched.file.st_dev || now.st_ino != watched.file.st_ino) return "was made anew";
  if (auto why = perf::unreadable_block_size(static_cast<std::uint64_t>(now.st_size))) return why;
  return perf::unreadable_block(watched.mapping->block());
}

// A view of the block, taken again from the block as it is now when the
// block changed under the take (a few times at most); nullopt, said, when
// it can't be read. `reopened`: the view is of another block than before.
std::optional<Snapshot> take_view(const std::string& instance, std::unique_ptr<WatchedBlock>& watched,
                                  bool& reopened) {
  reopened = false;
  for (int attempt = 0; attempt < 3; ++attempt) {
    Snapshot snapshot = take(watched->mapping->block());
    // The figures were read (relaxed) before the block is judged unchanged:
    // pairs with the release fence create_or_open() puts between a
    // restarted block's version and its zeroing.
    std::atomic_thread_fence(std::memory_order_acquire);
    const auto why = block_changed(instance, *watched);
    if (!why) return snapshot;
    // A router restarted on it (another version's) or one removed it: its
    // figures start over, read from the block as it is now.
    std::fprintf(stderr, "ringroute stat: %s %s; reading it again\n", perf::block_path(instance).c_str(), why->c_str());
    reopened = true;
    watched.reset();
    // Caught while a router makes the block anew (its size or version not
    // yet set), the open fails for a moment: tried for two seconds before
    // the view gives up, which it did at once.
    std::string error;
    const auto give_up_at = std::chrono::steady_clock::now() + std::chrono::seconds(2);
    while (!(watched = open_block(instance, error)) && std::chrono::steady_clock::now() < give_up_at) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    if (!watched) {
      std::fprintf(stderr, "ringroute stat: %s\n", error.c_str());
      return std::nullopt;
    }
  }
  std::fprintf(stderr, "ringroute stat: %s changed under every read\n", perf::block_path(instance).c_str());
  return std::nullopt;
}

int run_stat(const StatArgs& args) {
  // A ring truncated while we read its header reads zeros, not SIGBUS.
  ring::install_truncation_guard();
  std::string instance = args.instance;
  if (!args.config.empty()) {
    const ConfigResult loaded = load_config_file(args.config);
    if (report_config_errors(loaded)) return 2;
    instance = loaded.config->instance;
  }
  std::string error;
  std::unique_ptr<WatchedBlock> watched = open_block(instance, error);
  if (!watched) {
    std::fprintf(stderr, "ringroute stat: %s\n", error.c_str());
    return 2;
  }
  bool reopened = false;
  std::optional<Snapshot> first = take_view(instance, watched, reopened);
  if (!first) return 2;
  if (args.json) {
    std::printf("%s\n", json_snapshot(instance, *first).c_str());
    return 0;
  }
  Snapshot before = std::move(*first);
  print_table(before, nullptr);
  for (unsigned shown = 1; args.count == 0 || shown < args.count; ++shown) {
    std::this_thread::sleep_for(std::chrono::milliseconds(args.interval_ms));
    std::optional<Snapshot> now = take_view(instance, watched, reopened);
    if (!now) return 2;
    print_table(*now, reopened ? nullptr : &before);  // another block's figures count from zero
    // Output that can't be written ends the view: with SIGPIPE ignored (a
    // systemd unit's default) `stat | head` went on writing nothing for ever.
    if (std::ferror(stdout)) {
      std::fprintf(stderr, "ringroute stat: writing the view failed: %s\n", std::strerror(errno));
      return 2;
    }
    before = std::move(*now);
  }
  return 0;
}

}  // namespace

void stat_views_of_blocks(const perf::Block& earlier, const perf::Block& later, std::string& json) {
  const Snapshot before = take(earlier);
  Snapshot now = take(later);
  now.at = before.at + std::chrono::seconds(1);  // a second between the views, whatever the clock did
  json = json_snapshot("fuzz", now);
  print_table(before, nullptr);
  print_table(now, &before);
}

Run add_stat(CLI::App& app) {
  auto args = std::make_shared<StatArgs>();
  CLI::App* cmd = app.add_subcommand("stat", "show the router's counters (live, or one --json snapshot)");
  cmd->add_option("--instance", args->instance, "the router's instance name")
      ->capture_default_str()
      ->check(instance_name());
  cmd->add_option("--config", args->config, "take the instance name from this config file")->excludes("--instance");
  cmd->add_flag("--json", args->json, "print one JSON snapshot and exit");
  cmd->add_option("--interval-ms", args->interval_ms, "refresh interval")
      ->capture_default_str()
      ->check(whole_number())
      ->check(CLI::Range(10u, 3600000u));
  cmd->add_option("--count", args->count, "stop after this many views (0: until interrupted)")
      ->capture_default_str()
      ->check(whole_number());
  return [args] { return run_stat(*args); };
}

}  // namespace ringroute::tools
