#include "ringroute/sinks/backend.hpp"

#include <pthread.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <limits>
#include <stdexcept>

#include <simdjson.h>

#include "ringroute/sinks/file_sink.hpp"
#include "ringroute/sinks/http_sink.hpp"
#include "ringroute/sinks/socket_sink.hpp"
#include "ringroute/sinks/url.hpp"
#include "tls.hpp"

namespace ringroute::sinks {
namespace {

using Clock = std::chrono::steady_clock;

std::int64_t realtime_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

simdjson::dom::element parse_options(simdjson::dom::parser& parser, std::string_view json) {
  simdjson::dom::element root;
  if (parser.parse(json.data(), json.size()).get(root) != simdjson::SUCCESS || !root.is_object()) {
    throw std::runtime_error("backend options are not a JSON object");
  }
  return root;
}

// The members of objects sorted by key (keys length-prefixed, so no key
// can pass for another's end), scalars minified as written.
void append_identity(simdjson::dom::element value, bool keep_order, std::string& out) {
  if (value.is_object()) {
    std::vector<std::pair<std::string_view, simdjson::dom::element>> members;
    const simdjson::dom::object object = value.get_object().value_unsafe();
    for (auto [key, member] : object) members.emplace_back(key, member);
    if (!keep_order) {
      std::stable_sort(members.begin(), members.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
    }
    out += '{';
    for (const auto& [key, member] : members) {
      out += std::to_string(key.size());
      out += ':';
      out += key;
      append_identity(member, key == "headers", out);
      out += ',';
    }
    out += '}';
  } else if (value.is_array()) {
    out += '[';
    const simdjson::dom::array array = value.get_array().value_unsafe();
    for (simdjson::dom::element item : array) {
      append_identity(item, false, out);
      out += ',';
    }
    out += ']';
  } else {
    out += simdjson::minify(value);
  }
}

TlsOptions read_tls_options(simdjson::dom::element root) {
  TlsOptions o;
  for (auto [key, field] : {std::pair{"ca_file", &o.ca_file}, std::pair{"ca_path", &o.ca_path},
                            std::pair{"cert_file", &o.cert_file}, std::pair{"key_file", &o.key_file},
                            std::pair{"key_passphrase", &o.key_passphrase}, std::pair{"server_name", &o.server_name}}) {
    std::string_view text;
    if (root[key].get(text) == simdjson::SUCCESS) *field = std::string(text);
  }
  return o;
}

template <class T>
void read_if(simdjson::dom::element object, const char* key, T& out) {
  T value;
  if (object[key].get(value) == simdjson::SUCCESS) out = value;
}

}  // namespace

void name_this_thread(std::string_view prefix, std::string_view name) noexcept {
  char text[16] = {};  // the kernel's limit, NUL included
  const std::size_t from_prefix = std::min(prefix.size(), sizeof text - 1);
  std::memcpy(text, prefix.data(), from_prefix);
  std::memcpy(text + from_prefix, name.data(), std::min(name.size(), sizeof text - 1 - from_prefix));
  ::pthread_setname_np(::pthread_self(), text);  // a name is a courtesy: failure changes nothing
}

BackendOptions parse_backend_options(std::string_view type, std::string_view options_json) {
  simdjson::dom::parser parser;
  const simdjson::dom::element root = parse_options(parser, options_json);
  BackendOptions out;
  simdjson::dom::element formatter;
  if (root["formatter"]["options"].get(formatter) == simdjson::SUCCESS) {
    read_if(formatter, "include_metadata", out.encoding.json.include_metadata);
    read_if(formatter, "normalize", out.encoding.json.normalize);
    read_if(formatter, "pretty", out.encoding.json.pretty);
    read_if(formatter, "normalize_body", out.encoding.json.normalize_body);
  }
  if (type == "socket") {
    std::string_view text;
    if (root["format"].get(text) != simdjson::SUCCESS || text == "syslog") out.encoding.wrap = Wrap::syslog;
    std::string_view url;
    const std::string scheme = root["url"].get(url) == simdjson::SUCCESS ? url_scheme(url) : std::string();
    if (is_datagram_scheme(scheme)) {
      out.encoding.framing = Framing::none;  // a datagram is its own frame
    } else if (root["framing"].get(text) == simdjson::SUCCESS && text == "newline") {
      out.encoding.framing = Framing::newline;
    }
    if (root["facility"].get(text) == simdjson::SUCCESS && syslog_facility(text) >= 0) {
      out.encoding.facility = static_cast<std::uint8_t>(syslog_facility(text));
    }
    read_if(root, "structured_data", out.encoding.structured_data);
    if (root["syslog_format"].get(text) == simdjson::SUCCESS && text == "rfc3164") {
      out.encoding.syslog_format = SyslogFormat::rfc3164;
      // As syslog(3) on the local socket: no HOSTNAME (its readers take the
      // first word for the TAG). Set with RFC 3164 only: backends whose
      // options are equal share one encoding of each event.
      out.encoding.rfc3164_hostname = scheme != "unix" && scheme != "unixgram";
    }
    simdjson::dom::object map;
    if (root["syslog_severity"].get(map) == simdjson::SUCCESS) {
      for (auto [key, value] : map) {
        std::uint64_t level;
        if (value.get(level) != simdjson::SUCCESS || level > 7) continue;
        for (std::size_t v = 0; v < event::kVerbosityCount; ++v) {
          if (key == event::kVerbosityNames[v]) out.encoding.severity.by_verbosity[v] = static_cast<std::uint8_t>(level);
        }
        for (std::size_t v = 0; v < event::kSeverityCount; ++v) {
          if (key == event::kSeverityNames[v]) out.encoding.severity.cap[v] = static_cast<std::uint8_t>(level);
        }
      }
    }
  }
  simdjson::dom::element batch;
  if (root["batch"].get(batch) == simdjson::SUCCESS) {
    std::uint64_t n;
    if (batch["max_events"].get(n) == simdjson::SUCCESS) out.batch_max_events = static_cast<std::uint32_t>(n);
    if (batch["max_bytes"].get(n) == simdjson::SUCCESS) out.batch_max_bytes = n;
    if (batch["linger_ms"].get(n) == simdjson::SUCCESS) out.linger = std::chrono::milliseconds(n);
  }
  simdjson::dom::element queue;
  if (root["queue"].get(queue) == simdjson::SUCCESS) {
    read_if(queue, "max_events", out.queue_max_events);
    read_if(queue, "max_bytes", out.queue_max_bytes);
    std::string_view when_full;
    if (queue["when_full"].get(when_full) == simdjson::SUCCESS) out.drop_when_full = when_full == "drop";
  }
  return out;
}

std::string missing_sink(std::string_view type) {
  if (type == "file" || type == "http" || type == "socket") return {};
  return "backend type \"" + std::string(type) +
         "\" has no sink in this build yet; disable the backend (\"enabled\": false) to run";
}

std::vector<TlsFilesProblem> tls_files_problems(std::string_view options_json) {
  simdjson::dom::parser parser;
  return tls_files_problems(read_tls_options(parse_options(parser, options_json)));
}

std::string options_identity(std::string_view options_json) {
  simdjson::dom::parser parser;
  std::string out;
  append_identity(parse_options(parser, options_json), false, out);
  return out;
}

std::size_t most_descriptors(std::string_view type, std::string_view options_json) {
  simdjson::dom::parser parser;
  const simdjson::dom::element root = parse_options(parser, options_json);
  constexpr std::size_t kRing = 1;  // the sink thread's io_uring (a file sink's only where it writes through one)
  if (type == "file") return kRing + 2;
  std::uint64_t connections = type == "http" ? HttpSinkOptions{}.max_connections : SocketSinkOptions{}.max_connections;
  if (std::uint64_t n = 0; root["max_connections"].get(n) == simdjson::SUCCESS) connections = n;
  std::string_view url;
  if (type == "socket" && root["url"].get(url) == simdjson::SUCCESS && is_datagram_scheme(url_scheme(url))) {
    connections = 1;  // one socket sends them all
  }
  return kRing + static_cast<std::size_t>(std::max<std::uint64_t>(connections, 1));
}

std::unique_ptr<Sink> make_sink(std::string_view type, std::string_view options_json, bool last_write_may_be_torn) {
  if (std::string why = missing_sink(type); !why.empty()) throw std::runtime_error(why);
  simdjson::dom::parser parser;
  const simdjson::dom::element root = parse_options(parser, options_json);
  if (type == "file") {
    FileSinkOptions o;
    std::string_view text;
    if (root["path"].get(text) == simdjson::SUCCESS) o.path = std::string(text);
    read_if(root, "rotate_bytes", o.rotate_bytes);
    read_if(root, "rotate_seconds", o.rotate_seconds);
    std::uint64_t n;
    if (root["keep"].get(n) == simdjson::SUCCESS) o.keep = static_cast<std::uint32_t>(n);
    if (root["fsync"].get(text) == simdjson::SUCCESS) {
      o.fsync = text == "batch" ? FsyncPolicy::batch : text == "interval" ? FsyncPolicy::interval : FsyncPolicy::never;
    }
    if (root["fsync_interval_ms"].get(n) == simdjson::SUCCESS) o.fsync_interval = std::chrono::milliseconds(n);
    if (root["io"].get(text) == simdjson::SUCCESS) o.io = text == "uring" ? FileIo::uring : FileIo::write;
    if (simdjson::dom::element formatter; root["formatter"]["options"].get(formatter) == simdjson::SUCCESS) {
      read_if(formatter, "pretty", o.pretty);
    }
    o.last_write_may_be_torn = last_write_may_be_torn;
    return std::make_unique<FileSink>(std::move(o));
  }
  if (type == "http") {
    HttpSinkOptions o;
    std::string_view text;
    if (root["url"].get(text) == simdjson::SUCCESS) o.url = std::string(text);
    if (root["method"].get(text) == simdjson::SUCCESS) o.method = std::string(text);
    simdjson::dom::object headers;
    if (root["headers"].get(headers) == simdjson::SUCCESS) {
      for (auto [key, value] : headers) {
        std::string_view v;
        if (value.get(v) == simdjson::SUCCESS) o.headers.emplace_back(std::string(key), std::string(v));
      }
    }
    std::uint64_t n;
    if (root["connect_timeout"].get(n) == simdjson::SUCCESS) o.connect_timeout = std::chrono::milliseconds(n);
    if (root["timeout"].get(n) == simdjson::SUCCESS) o.timeout = std::chrono::milliseconds(n);
    if (root["max_connections"].get(n) == simdjson::SUCCESS) o.max_connections = static_cast<std::uint32_t>(n);
    read_if(root, "gzip", o.gzip);
    o.tls = read_tls_options(root);
    simdjson::dom::element batch;
    if (root["batch"].get(batch) == simdjson::SUCCESS) {
      o.batched = true;
      if (batch["max_events"].get(n) == simdjson::SUCCESS) o.max_events = static_cast<std::uint32_t>(n);
      if (batch["max_bytes"].get(n) == simdjson::SUCCESS) o.max_bytes = n;
      o.json_array = batch["format"].get(text) == simdjson::SUCCESS && text == "array";
    }
    return std::make_unique<HttpSink>(std::move(o));
  }
  if (type == "socket") {
    SocketSinkOptions o;
    std::string_view text;
    if (root["url"].get(text) == simdjson::SUCCESS) o.url = std::string(text);
    std::uint64_t n;
    if (root["max_connections"].get(n) == simdjson::SUCCESS) o.max_connections = static_cast<std::uint32_t>(n);
    if (root["max_datagram_bytes"].get(n) == simdjson::SUCCESS) o.max_datagram_bytes = static_cast<std::uint32_t>(n);
    if (root["connect_timeout"].get(n) == simdjson::SUCCESS) o.connect_timeout = std::chrono::milliseconds(n);
    if (root["timeout"].get(n) == simdjson::SUCCESS) o.timeout = std::chrono::milliseconds(n);
    o.strip_newline = root["format"].get(text) == simdjson::SUCCESS && text == "ndjson";
    o.tls = read_tls_options(root);
    return std::make_unique<SocketSink>(std::move(o));
  }
  throw std::logic_error("missing_sink() knows a type make_sink() does not");
}

BackendRunner::BackendRunner(std::string name, BackendOptions options, std::unique_ptr<Sink> sink,
                             perf::BackendSlot& slot, std::shared_ptr<BackendRunner> predecessor,
                             std::vector<std::shared_ptr<BackendRunner>> after)
    : name_(std::move(name)), options_(options), sink_(std::move(sink)), slot_(slot),
      predecessor_(std::move(predecessor)), after_(std::move(after)) {
  // Relaxed: the thread that reads it starts below (thread start orders it).
  following_.store(predecessor_ != nullptr, std::memory_order_relaxed);
  sink_->attach_counters(&slot_.sink);
  sink_->attach_stop(&stop_now_);
  sink_->attach_notices([](void* runner, std::string_view line, bool trouble) noexcept {
    auto& self = *static_cast<BackendRunner*>(runner);
    // A trouble too (a receiver that reads nothing), from the start of the
    // try it came in (a timeout into it): its end is said.
    if (trouble && !self.in_trouble_) self.trouble_since_ = self.try_started_;
    self.in_trouble_ = self.in_trouble_ || trouble;
    self.log_problem(line);
  }, this);
  // A few batches made and written through now, before any event: a fresh
  // batch's first write to each page faults (and in a VM with shadow page
  // tables exits too), about a millisecond a batch, which at start landed on
  // the worker while the ring filled behind it. No more than the queue may
  // hold (its max_bytes bounds what batches take), and no more than the
  // process's budget: four full ones for each of 256 backends held a GiB,
  // most of it for backends that see few events, and took seconds to fault
  // in at start.
  constexpr std::size_t kWarmBatches = 4;
  const std::size_t reserved = std::min<std::size_t>(options_.batch_max_bytes + 4096, kMostReservedBytes);
  const std::size_t warm = std::clamp<std::size_t>(options_.queue_max_bytes / reserved, 1, kWarmBatches);
  for (std::size_t i = 0; i < warm; ++i) {
    // Relaxed: a budget shared by the runners, which publishes nothing.
    if (warm_bytes_in_process.fetch_add(reserved, std::memory_order_relaxed) + reserved > kWarmBudgetBytes) {
      warm_bytes_in_process.fetch_sub(reserved, std::memory_order_relaxed);
      break;
    }
    warmed_bytes_ += reserved;
    Batch* batch = new_batch();
    std::memset(batch->bytes.data(), 0, batch->bytes.capacity());
    pool_.enqueue(batch);
  }
  thread_ = std::thread([this] {
    name_this_thread("rr-sink:", name_);
    run();
    say_held_back(true);  // at a stop or reload too: the last second's lines
  });
}

BackendRunner::~BackendRunner() {
  warm_bytes_in_process.fetch_sub(warmed_bytes_, std::memory_order_relaxed);  // relaxed: see the constructor
  stop(std::chrono::milliseconds(0));
  // The sink first: a network sink cut short by a stop may still have sends
  // reading batch bytes, which its destructor cancels and waits out; the
  // batches (owned_, declared after it) would otherwise be freed first.
  sink_.reset();
  // What the sink said as it closed (a file's last sync that failed), held
  // back after the thread's last word: said here, the thread joined.
  say_held_back(true);
}

std::size_t BackendRunner::held_batch_bytes() const {
  std::lock_guard lock(owned_mutex_);
  std::size_t bytes = 0;
  for (const auto& batch : owned_) bytes += batch->bytes.capacity();
  return bytes;
}

Batch* BackendRunner::take_batch() {
  Batch* batch = nullptr;
  if (pool_.try_dequeue(batch)) return batch;
  return new_batch();
}

Batch* BackendRunner::new_batch() {
  std::lock_guard lock(owned_mutex_);
  owned_.push_back(std::make_unique<Batch>());
  // Room for a full batch, up to a bound: past it (a config's batches of
  // hundreds of MiB or a million events) a batch grows as it fills, and
  // keeps what it grew to in the pool, rather than every batch, however
  // little it holds, reserving the most any could.
  owned_.back()->bytes.reserve(std::min<std::size_t>(options_.batch_max_bytes + 4096, kMostReservedBytes));
  const std::size_t events = std::min<std::size_t>(options_.batch_max_events + 1, kMostReservedEvents);
  owned_.back()->event_ends.reserve(events);
  owned_.back()->event_ns.reserve(events);
  return owned_.back().get();
}

void BackendRunner::submit(Batch* batch) {
  // Relaxed: the counts are a bound checked by workers, not a publication;
  // the batch itself is published by the queue.
  in_flight_events_.fetch_add(batch->events, std::memory_order_relaxed);
  batch->queued_bytes = batch->memory_bytes();
  in_flight_bytes_.fetch_add(batch->queued_bytes, std::memory_order_relaxed);
  if (!batch->holds_ring) in_flight_outside_ring_.fetch_add(batch->events, std::memory_order_relaxed);
  const bool holds_ring = batch->holds_ring;
  const std::uint32_t ring = batch->ring;
  const std::uint64_t end = batch->end;
  // moodycamel says a queue that could not grow by returning false, not by
  // throwing: ignored, the batch was never written, yet the ring was
  // released past it once a later batch was. Thrown, it stops the worker
  // (Worker::fail), which then releases nothing more.
  if (!queue_.enqueue(batch)) {
    in_flight_events_.fetch_sub(batch->events, std::memory_order_relaxed);
    in_flight_bytes_.fetch_sub(batch->queued_bytes, std::memory_order_relaxed);
    if (!batch->holds_ring) in_flight_outside_ring_.fetch_sub(batch->events, std::memory_order_relaxed);
    throw std::bad_alloc();
  }
  // Once handed over, not before: give_up_unwritten() takes everything up
  // to it as this runner's to write or count. From copies: once queued, the
  // batch is the sink thread's, which may have written and reset it
  // already. Relaxed: read by it after a reload saw this worker take the
  // new plan (its acquire of the worker's plan serial orders it).
  if (holds_ring) handed_through_[ring].store(end, std::memory_order_relaxed);
}

void BackendRunner::stop(std::chrono::milliseconds drain) {
  if (!thread_.joinable()) return;
  const auto deadline = Clock::now() + drain;
  while (!idle() && Clock::now() < deadline) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  // Relaxed: the enqueue below wakes the thread, and join() orders the rest.
  stop_now_.store(true, std::memory_order_relaxed);
  queue_.enqueue(nullptr);  // wakes the thread
  thread_.join();
  // Release pairs with the successor's acquire in take_over().
  finished_.store(true, std::memory_order_release);
}

void BackendRunner::stop_all(std::span<BackendRunner* const> runners, std::chrono::steady_clock::time_point deadline,
                             const std::function<std::optional<std::chrono::steady_clock::time_point>()>& sooner) {
  auto all_idle = [&] {
    return std::all_of(runners.begin(), runners.end(),
                       [](const BackendRunner* r) { return !r->thread_.joinable() || r->idle(); });
  };
  for (;;) {
    if (sooner) {
      if (const auto until = sooner()) deadline = std::min(deadline, *until);
    }
    if (all_idle() || Clock::now() >= deadline) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  for (BackendRunner* runner : runners) {
    if (!runner->thread_.joinable()) continue;
    // Relaxed: as in stop(); the enqueue wakes the thread.
    runner->stop_now_.store(true, std::memory_order_relaxed);
    runner->queue_.enqueue(nullptr);
  }
  for (BackendRunner* runner : runners) runner->stop(std::chrono::milliseconds(0));
}

std::uint64_t BackendRunner::unwritten_events() const {
  // Relaxed: called after stop(), whose join orders the sink thread's writes.
  std::uint64_t events = in_flight_events_.load(std::memory_order_relaxed);
  if (unfinished_ != nullptr) events -= unfinished_->delivered;
  for (const Batch* batch : inherited_) events += batch->events - batch->delivered;
  if (!took_over_ && predecessor_) events += predecessor_->unwritten_events();
  return events;
}

std::uint64_t BackendRunner::unwritten_events_outside_ring() const {
  // Under `drop` the router holds the ring for none of them, not even for
  // batches inherited from a runner under `block` (see the worker's
  // stop_holding_for_drop_slots).
  if (options_.drop_when_full) return unwritten_events();
  // Relaxed: as above.
  std::uint64_t events = in_flight_outside_ring_.load(std::memory_order_relaxed);
  if (unfinished_ != nullptr && !unfinished_->holds_ring) events -= unfinished_->delivered;
  for (const Batch* batch : inherited_) {
    if (!batch->holds_ring) events += batch->events - batch->delivered;
  }
  if (!took_over_ && predecessor_) events += predecessor_->unwritten_events_outside_ring();
  return events;
}

std::uint64_t BackendRunner::handed_end(std::size_t ring) const noexcept {
  // Relaxed: see give_up_unwritten().
  std::uint64_t handed = handed_through_[ring].load(std::memory_order_relaxed);
  // Batches inherited and not written yet, and those of a runner followed
  // (kept until its leftovers are written, a take-over cut short by a stop
  // included), are of the same slot.
  for (const Batch* batch : inherited_) {
    if (batch->holds_ring && batch->ring == ring) handed = std::max(handed, batch->end);
  }
  if (predecessor_) handed = std::max(handed, predecessor_->handed_end(ring));
  return handed;
}

void BackendRunner::give_up_unwritten() noexcept {
  for (std::size_t ring = 0; ring < perf::kMaxRings; ++ring) {
    const std::uint64_t handed = handed_end(ring);
    // Release: pairs with the worker's acquire of written_through, as a
    // write's does.
    if (handed > slot_.written_through[ring].load(std::memory_order_relaxed)) {
      slot_.written_through[ring].store(handed, std::memory_order_release);
    }
  }
}

std::deque<Batch*> BackendRunner::take_leftovers() {
  std::deque<Batch*> out;
  if (took_over_) {
    out.swap(inherited_);
  } else if (predecessor_) {
    out = predecessor_->take_leftovers();
  }
  if (unfinished_ != nullptr) out.push_back(unfinished_);
  unfinished_ = nullptr;
  // Queued after the one cut short; nullptr is stop()'s wake-up.
  Batch* batch = nullptr;
  while (queue_.try_dequeue(batch)) {
    if (batch != nullptr) out.push_back(batch);
  }
  // Under `drop` the worker holds the ring for none of them, not even for
  // those a `block` runner before this one was handed (it let them go when
  // the slot went to `drop`): said in the batches themselves, so a `block`
  // runner after this one counts them dropped at a stop, not kept in the
  // ring. This runner is finished: they are its successor's now.
  if (options_.drop_when_full) {
    for (Batch* left : out) left->holds_ring = false;
  }
  return out;
}

void BackendRunner::give_owned(const std::deque<Batch*>& batches, std::vector<std::unique_ptr<Batch>>& to) {
  {
    std::lock_guard lock(owned_mutex_);
    for (auto& owned : owned_) {
      if (std::find(batches.begin(), batches.end(), owned.get()) != batches.end()) to.push_back(std::move(owned));
    }
    std::erase_if(owned_, [](const std::unique_ptr<Batch>& owned) { return owned == nullptr; });
  }
  if (predecessor_) predecessor_->give_owned(batches, to);
}

bool BackendRunner::take_over() {
  // The predecessor is stopped by whoever replaced it, right after the
  // router's workers have handed it their last batches.
  // Acquire pairs with the release in its stop(): its leftovers are settled.
  while (!predecessor_->finished_.load(std::memory_order_acquire)) {
    if (stop_now_.load(std::memory_order_relaxed)) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  inherited_ = predecessor_->take_leftovers();
  // The leftovers' batches become ours, and the runners before this one go
  // now (their sinks, io_urings, pools): held until the leftovers were
  // written, a chain of them grew by one at each reload while a
  // destination stayed down, and never shrank.
  // Room for every leftover, in `adopted` and in owned_, before any is
  // moved: a push that threw halfway freed the batches moved so far,
  // which inherited_ still names (and a stop then reads).
  std::vector<std::unique_ptr<Batch>> adopted;
  adopted.reserve(inherited_.size());
  {
    std::lock_guard lock(owned_mutex_);
    owned_.reserve(owned_.size() + inherited_.size());
  }
  predecessor_->give_owned(inherited_, adopted);
  {
    std::lock_guard lock(owned_mutex_);
    try {
      for (auto& batch : adopted) owned_.push_back(std::move(batch));
    } catch (...) {
      // Workers' new batches may have taken the room reserved: those not
      // moved are left to leak, not freed under inherited_.
      for (auto& batch : adopted) (void)batch.release();
      throw;
    }
  }
  took_over_ = true;
  predecessor_.reset();
  // Each leftover kept the room it reserved for a full batch (a megabyte or
  // more) however little it held, and no queue bound counts them: a backend
  // replaced at every reload through an outage grew by a batch's room a
  // reload, for as long as the outage lasted. They are written once and
  // freed, so they keep only what they hold. Not one whose write a stop cut
  // short: the predecessor's sink may outlive it here (the router lets go
  // of it later), with a send still reading its bytes. That is one batch a
  // runner; the rest were never begun, or by sinks gone since.
  {
    // Under the lock that guards owned_: held_batch_bytes() reads their room.
    std::lock_guard lock(owned_mutex_);
    for (Batch* batch : inherited_) {
      if (batch->write_cut_short) continue;
      batch->bytes.shrink_to_fit();
      try {
        batch->event_ends.shrink_to_fit();
        batch->event_ns.shrink_to_fit();
      } catch (const std::bad_alloc&) {
        // Kept as they are: smaller is only better.
      }
    }
  }
  // What the destination accepted of them before the predecessor's stop
  // (counted as sent then) is not sent again.
  for (Batch* batch : inherited_) batch->drop_delivered();
  if (!inherited_.empty()) {
    std::uint64_t events = 0;
    for (const Batch* batch : inherited_) events += batch->events;
    char detail[96];
    std::snprintf(detail, sizeof detail, "%llu events its previous configuration was handed and did not write",
                  static_cast<unsigned long long>(events));
    log_problem("writing ", detail);
  }
  while (!inherited_.empty()) {
    // Written, the batch goes back to no pool: it was made for the options
    // before (sizes, formatter), and is freed.
    Batch* const written = inherited_.front();
    if (!write_through(written)) return false;
    inherited_.pop_front();
    std::lock_guard lock(owned_mutex_);
    std::erase_if(owned_, [written](const std::unique_ptr<Batch>& owned) { return owned.get() == written; });
  }
  // Release pairs with idle()'s acquire.
  following_.store(false, std::memory_order_release);
  return true;
}

void Sink::say_line(std::string_view line, bool trouble) const noexcept {
  if (notice_function_ != nullptr) {
    notice_function_(notice_context_, line, trouble);
  } else {
    std::fprintf(stderr, "ringroute: %.*s\n", static_cast<int>(line.size()), line.data());
  }
}

bool BackendRunner::log_problem(std::string_view what, std::string_view detail, std::uint64_t rejected) noexcept {
  // At most one line a second per backend: a dead destination must not
  // flood the log. The lines held back are counted, and the last kept, so
  // the log still says they came (say_held_back()). Nothing allocated: it
  // runs where memory may be out.
  // For `stat`, said or held back: the latest is what it shows. Too long
  // for its field, the cause is cut (at a character's start, marked) and
  // the outcome kept: "(N events rejected, not retried)" said what became
  // of the events, and went first.
  char said[perf::kSaidBytes];
  const std::size_t room = sizeof said - 1 - std::min(detail.size(), sizeof said - 1);
  std::size_t cause = what.size();
  const bool cut = cause > room;
  if (cut) {
    cause = room >= 3 ? room - 3 : 0;
    while (cause > 0 && (static_cast<unsigned char>(what[cause]) & 0xC0) == 0x80) --cause;
  }
  // No room for the mark beside a detail that fills the field: the detail.
  std::snprintf(said, sizeof said, "%.*s%s%.*s", static_cast<int>(cause), what.data(), cut && room >= 3 ? "..." : "",
                static_cast<int>(detail.size()), detail.data());
  perf::write_said(slot_.said, said, realtime_ns(), perf::boot_seconds());
  const auto now = Clock::now();
  if (now - last_log_ < std::chrono::seconds(1)) {
    ++lines_held_back_;
    rejected_held_ += rejected;
    std::snprintf(last_held_back_, sizeof last_held_back_, "%.*s%.*s", static_cast<int>(what.size()), what.data(),
                  static_cast<int>(detail.size()), detail.data());
    return false;
  }
  last_log_ = now;
  char held[160] = "";
  if (lines_held_back_ != 0) {
    std::snprintf(held, sizeof held, " [%s]", held_back_count().data());
  }
  std::fprintf(stderr, "ringroute: backend %s: %.*s%.*s%s\n", name_.c_str(), static_cast<int>(what.size()),
               what.data(), static_cast<int>(detail.size()), detail.data(), held);
  lines_held_back_ = 0;
  rejected_held_ = 0;
  return true;
}

std::array<char, 128> BackendRunner::held_back_count() const noexcept {
  std::array<char, 128> text{};
  if (rejected_held_ != 0) {
    std::snprintf(text.data(), text.size(),
                  "%llu more lines held back since the last (at most one a second), with %llu events rejected and "
                  "not retried in them",
                  static_cast<unsigned long long>(lines_held_back_), static_cast<unsigned long long>(rejected_held_));
  } else {
    std::snprintf(text.data(), text.size(), "%llu more lines held back since the last (at most one a second)",
                  static_cast<unsigned long long>(lines_held_back_));
  }
  return text;
}

void BackendRunner::say_held_back(bool at_end) noexcept {
  if (lines_held_back_ == 0 || (!at_end && Clock::now() - last_log_ < std::chrono::seconds(1))) return;
  last_log_ = Clock::now();
  std::fprintf(stderr, "ringroute: backend %s: %s; the last: %s\n", name_.c_str(), held_back_count().data(),
               last_held_back_);
  lines_held_back_ = 0;
  rejected_held_ = 0;
}

void BackendRunner::tick_sink() noexcept {
  try {
    sink_->tick(Clock::now());
  } catch (const std::exception& e) {
    // Out of memory in a rotation: said, and the thread goes on.
    log_problem(e.what(), " (going on)");
  }
}

void BackendRunner::reopen_if_asked() noexcept {
  if (!reopen_.exchange(false, std::memory_order_relaxed)) return;
  try {
    sink_->reopen();
  } catch (const std::exception& e) {
    // Out of memory: said, and the thread goes on with the file it has.
    log_problem(e.what(), " (reopening; going on)");
  }
}

void BackendRunner::run() {
  // Nothing into the file while another backend's runner still appends to it.
  for (const auto& other : after_) {
    // Acquire pairs with the release in its stop(): its last write is done.
    while (!other->finished_.load(std::memory_order_acquire)) {
      if (stop_now_.load(std::memory_order_relaxed)) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  }
  after_.clear();
  // Nothing of ours before what the runner we replace was handed: the
  // backend's order holds, and its written-through positions only rise.
  try {
    if (predecessor_ && !take_over()) return;
  } catch (const std::exception& e) {
    // Out of memory while gathering what its predecessor left: a batch may
    // be out of that queue and in no other. Nothing more is written for
    // this backend (a later position would release that batch unwritten):
    // the router stops, told by failure(), and the ring keeps the rest.
    std::snprintf(failure_, sizeof failure_, "backend %s could not take over from its previous configuration: %s",
                  name_.c_str(), e.what());
    std::fprintf(stderr, "ringroute: %s\n", failure_);
    // Release pairs with failure()'s acquire: the text is whole.
    failed_.store(true, std::memory_order_release);
    return;
  }
  Batch* batch = nullptr;
  while (!stop_now_.load(std::memory_order_relaxed)) {
    try {
      if (queue_.wait_dequeue_timed(batch, std::chrono::milliseconds(100)) && batch != nullptr) deliver(batch);
      // Not once stopped (woken by the stop's null): a runner thrown away
      // by a refused start or reload has no business with its file.
      if (stop_now_.load(std::memory_order_relaxed)) break;
      reopen_if_asked();
      sink_->tick(Clock::now());
      say_held_back();
    } catch (const std::exception& e) {
      // Out of memory in a rotation: said, and the thread goes on (an
      // exception out of it was std::terminate). deliver() throws nothing:
      // its batch is written, retried or left to a successor.
      log_problem(e.what(), " (going on)");
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  }
}

void BackendRunner::record_latencies(const Batch& batch,
                                     const std::vector<std::pair<std::uint32_t, std::uint32_t>>& rejected) noexcept {
  const std::int64_t now = realtime_ns();
  // Timestamps rise through a batch, so its latencies come in runs that fall
  // in one bucket: one add per run.
  std::size_t run_bucket = perf::kHistogramBuckets;
  std::uint64_t run = 0;
  auto next_rejected = rejected.begin();
  for (std::size_t e = 0; e < batch.event_ns.size(); ++e) {
    while (next_rejected != rejected.end() && e >= next_rejected->second) ++next_rejected;
    if (next_rejected != rejected.end() && e >= next_rejected->first) continue;
    const std::int64_t t = batch.event_ns[e];
    // A timestamp is the producer's to set (a replay keeps its original
    // one): one from far before 1970 would overflow the subtraction.
    std::int64_t latency = 0;
    if (__builtin_sub_overflow(now, t, &latency)) latency = t < 0 ? std::numeric_limits<std::int64_t>::max() : 0;
    const std::size_t bucket = perf::Histogram::bucket_of(latency > 0 ? static_cast<std::uint64_t>(latency) : 0);
    if (bucket != run_bucket) {
      if (run != 0) slot_.latency.buckets[run_bucket].add(run);
      run_bucket = bucket;
      run = 0;
    }
    ++run;
  }
  if (run != 0) slot_.latency.buckets[run_bucket].add(run);
}

void BackendRunner::deliver(Batch* batch) {
  if (!write_through(batch)) {
    unfinished_ = batch;  // a successor writes it (or the ring keeps it for the next start)
    return;
  }
  const std::uint64_t events = batch->events, bytes = batch->queued_bytes;
  const bool holds_ring = batch->holds_ring;
  batch->reset();
  // A pool that can't take it (its queue could not grow: false, not a
  // throw) leaves the batch to owned_, which frees it at the end.
  (void)pool_.enqueue(batch);
  in_flight_bytes_.fetch_sub(bytes, std::memory_order_relaxed);
  if (!holds_ring) in_flight_outside_ring_.fetch_sub(events, std::memory_order_relaxed);
  // Release: pairs with idle()'s acquire in stop() and stop_all() on the
  // control thread, which then sees this batch's work done. Workers read
  // the count relaxed (over_limit()), a bound, not a publication.
  in_flight_events_.fetch_sub(events, std::memory_order_release);
}

RetryBackoff::RetryBackoff(std::string_view backend, std::uint64_t batch_end) noexcept
    // FNV-1a of the name, then the position: a seed per (backend, batch).
    : state_([&] {
        std::uint64_t h = 0xcbf29ce484222325ull;
        for (char c : backend) h = (h ^ static_cast<unsigned char>(c)) * 0x100000001b3ull;
        return h ^ (batch_end * 0x9E3779B97F4A7C15ull);
      }()) {}

std::chrono::milliseconds RetryBackoff::next() noexcept {
  // splitmix64: every seed gives a full-period, well-mixed stream.
  state_ += 0x9E3779B97F4A7C15ull;
  std::uint64_t z = state_;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  const auto half = step_.count() / 2;
  const std::chrono::milliseconds wait(half + static_cast<std::int64_t>(z % static_cast<std::uint64_t>(half + 1)));
  step_ = std::min(step_ * 2, std::chrono::milliseconds(5000));
  return wait;
}

bool BackendRunner::write_through(Batch* batch) {
  const std::uint32_t ring = batch->ring;
  // A restarted router that reads this knows these events may be in the
  // destination already (replayed, possibly duplicated), whether or not the
  // batch held the ring: a `drop` backend's are read again too where
  // another backend held them. The write's system call, not this store's
  // order, keeps it ahead of the bytes: a crash after it is a new process
  // reading the shared page, after this one is gone (so nothing pairs with
  // the release across processes). In this process only start_backend()
  // reads it, as a hint (a write that may have been torn).
  slot_.writing_through[ring].store(batch->end, std::memory_order_release);
  RetryBackoff backoff(name_, batch->end);
  std::uint32_t delivered_before_try = 0;  // of this batch, as the sink counts them
  std::string why;
  // A stop ends the write (cut short, or between two tries): the batch stays
  // unwritten, neither a failure nor a retry. What the destination accepted
  // of it is sent: should nothing write the batch after (a removed backend,
  // `drop` at a stop) it is not dropped; should a successor write it, it
  // leaves them out (take_over(), Batch::drop_delivered()), but where their
  // ranges could not be kept (no memory): then they go twice, and count
  // twice.
  const auto left_unwritten = [&] {
    batch->write_cut_short = true;
    const std::uint32_t delivered = std::min(sink_->delivered_events(), batch->events);
    slot_.sink.sent.add(delivered);
    // An inherited batch came without what a predecessor had delivered of
    // it (take_over()), so what this sink says is all there is.
    batch->delivered = delivered;
    try {
      sink_->delivered_ranges(batch->delivered_ranges);
    } catch (const std::bad_alloc&) {
      batch->delivered_ranges.clear();  // a successor then writes it whole, as before
    }
    // Their bytes with them, so `sent` and `bytes` say the same writes.
    std::uint64_t bytes = 0;
    for (const auto& [first, last] : batch->delivered_ranges) {
      if (last > batch->events || first >= last) continue;  // a sink's slip must not read past the batch
      bytes += batch->events_bytes(first, last).size();
    }
    slot_.sink.bytes.add(bytes);
    return false;
  };
  bool done = false;
  bool went = false;  // some of it was delivered
  while (!done) {
    Outcome outcome = Outcome::retry;
    // A trouble dates from the start of the try that met it (a timeout is
    // seconds into it).
    const auto try_started = try_started_ = Clock::now();
    try {
      outcome = sink_->write(*batch, why);
    } catch (const WriteInterrupted&) {
      return left_unwritten();
    } catch (const std::exception& e) {
      // A sink that can't go on (out of memory, an io_uring that refuses a
      // submission) must not take the router down: the batch is retried.
      try {
        why = std::string("sink error: ") + e.what();
      } catch (const std::bad_alloc&) {
        why.clear();  // the message below says what it can
      }
    }
    // From here on nothing throws (messages are formatted without
    // allocating): an exception would leave the batch neither written nor
    // given back, and a later batch's position would release it from the
    // ring unwritten.
    // Events the destination refused: dropped with the reason, not retried.
    const auto reject = [&](std::uint32_t events) noexcept {
      slot_.sink.failures.add(1);
      slot_.sink.dropped_failed.add(events);
      // Those of lines held back are summed and said with the count of
      // those lines: a log that said one line's count a second undercounted
      // a steady stream of rejections hundreds of times over.
      char detail[64];
      std::snprintf(detail, sizeof detail, " (%u events rejected, not retried)", events);
      log_problem(why, detail, events);
    };
    if (outcome == Outcome::ok) {
      // Some requests of the batch may have been refused (HTTP 4xx), the
      // rest delivered.
      const std::uint32_t rejected = std::min(sink_->rejected_events(), batch->events);
      if (rejected > 0) reject(rejected);
      slot_.sink.sent.add(batch->events - rejected);
      // Bytes and latencies of what was written, as `sent` counts it.
      std::uint64_t rejected_bytes = 0;
      for (const auto& [first, last] : sink_->rejected_ranges()) {
        if (last > batch->events || first >= last) continue;  // a sink's slip must not wrap the count
        rejected_bytes += batch->event_ends[last - 1] - (first == 0 ? 0 : batch->event_ends[first - 1]);
      }
      slot_.sink.bytes.add(batch->bytes.size() - std::min<std::uint64_t>(rejected_bytes, batch->bytes.size()));
      went = rejected < batch->events;
      if (went) slot_.sink.batches.add(1);
      record_latencies(*batch, sink_->rejected_ranges());
      done = true;
    } else if (outcome == Outcome::failed) {
      reject(batch->events);
      done = true;
    } else {
      slot_.sink.failures.add(1);
      // Relaxed: see retrying().
      retrying_.store(true, std::memory_order_relaxed);
      // Relaxed: a label for `stat`, ordered with nothing.
      slot_.said.retrying.store(1, std::memory_order_relaxed);
      if (!in_trouble_) trouble_since_ = try_started;
      in_trouble_ = true;
      ++tries_failed_;
      log_problem(why, " (retrying)");
      if (const std::uint32_t delivered = sink_->delivered_events(); delivered > delivered_before_try) {
        backoff.restart();
        delivered_before_try = delivered;
      }
      // A stop ends the wait (the batch stays unwritten and the ring keeps
      // it for the next start).
      auto wait = backoff.next();
      // A destination that says when to come back (Retry-After) is believed,
      // up to the hour the sink accepts.
      wait = std::max<std::chrono::milliseconds>(wait, sink_->retry_after());
      const auto until = Clock::now() + wait;
      while (Clock::now() < until) {
        if (stop_now_.load(std::memory_order_relaxed)) return left_unwritten();
        reopen_if_asked();
        // The sink's own clock runs on while a batch waits: interval syncs
        // of batches written before it, age rotation, a vanished file.
        tick_sink();
        std::this_thread::sleep_for(std::min<Clock::duration>(until - Clock::now(), std::chrono::milliseconds(10)));
      }
      slot_.sink.retries.add(1);
    }
  }
  retrying_.store(false, std::memory_order_relaxed);
  slot_.said.retrying.store(0, std::memory_order_relaxed);  // as above
  if (in_trouble_ && went) {
    // The log's last word on a backend must not be a trouble that is over.
    // Held back like any line, it is the last one say_held_back() names.
    char line[112];
    const double seconds = std::chrono::duration<double>(Clock::now() - trouble_since_).count();
    if (tries_failed_ != 0) {
      std::snprintf(line, sizeof line, "delivering again, after %llu failed tries over %.1f s",
                    static_cast<unsigned long long>(tries_failed_), seconds);
    } else {
      std::snprintf(line, sizeof line, "delivering again, %.1f s after the trouble said", seconds);
    }
    log_problem(line);
  }
  if (went) {
    in_trouble_ = false;
    tries_failed_ = 0;
  }
  // Release: pairs with the worker's acquire load of this slot's position
  // (Worker::maintain(), router.cpp); the worker may then release the ring
  // space these events used.
  slot_.written_through[ring].store(batch->end, std::memory_order_release);
  return true;
}

}  // namespace ringroute::sinks
