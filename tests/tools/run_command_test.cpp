// `ringroute run` end to end: the real binary, producer processes using the
// library, files read back and checked by id.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <simdjson.h>

#include "http_receiver.hpp"
#include "peers.hpp"
#include "ringroute/ingest/testing.h"
#include "ringroute/perf/block.hpp"
#include "ringroute/producer.hpp"
#include "ringroute/ring/ring.hpp"
#include "ringroute/ring/segment.hpp"
#include "shell_quote.hpp"

namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

class Dir {
 public:
  Dir() : path_("/tmp/rr-run-" + std::to_string(::getpid()) + "-" + std::to_string(counter_++)) {
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  // With the rings and perf blocks of the instances it named: a test that
  // an ASSERT ended left them in /dev/shm.
  ~Dir() {
    fs::remove_all(path_);
    std::error_code ec;
    for (const auto& entry : fs::directory_iterator("/dev/shm", ec)) {
      const std::string name = entry.path().filename().string();
      for (const std::string& instance : instances_) {
        // Its rings (INSTANCE, INSTANCE-b, ...) and its block (INSTANCE.perf),
        // not a later Dir's (INSTANCE0).
        if (name == instance || name.starts_with(instance + "-") || name.starts_with(instance + ".")) {
          fs::remove(entry.path(), ec);
        }
      }
    }
  }
  [[nodiscard]] std::string operator/(const std::string& name) const { return path_ + "/" + name; }
  [[nodiscard]] const std::string& path() const { return path_; }
  [[nodiscard]] std::string unique(const std::string& what) const {
    instances_.push_back("rr-t-" + what + "-" + std::to_string(::getpid()) + "-" + std::to_string(counter_));
    return instances_.back();
  }

 private:
  static inline int counter_ = 0;
  std::string path_;
  mutable std::vector<std::string> instances_;
};

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// A router process: `ringroute run --config FILE`, stderr to a file.
class RouterProcess {
 public:
  // `file_size_limit`: RLIMIT_FSIZE for the router (0: as this process has
  // it); `descriptors`, RLIMIT_NOFILE (its hard limit 0: as this process has it).
  // `log` empty: the router starts with standard input, output and error closed.
  RouterProcess(const std::string& config, const std::string& log, const char* drain_ms = "2000",
                rlim_t file_size_limit = 0, rlimit descriptors = {0, 0})
      : log_(log) {
    std::error_code ec;
    const auto size = fs::file_size(log, ec);  // the log may hold an earlier router's lines
    log_start_ = ec ? 0 : static_cast<std::size_t>(size);
    pid_ = ::fork();
    if (pid_ == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // a test binary killed by its timeout takes its router with it
      if (log.empty()) {
        for (int fd = 0; fd <= 2; ++fd) ::close(fd);
      } else {
        std::freopen(log.c_str(), "a", stderr);
      }
      if (file_size_limit != 0) {
        const rlimit limit{file_size_limit, file_size_limit};
        ::setrlimit(RLIMIT_FSIZE, &limit);
      }
      if (descriptors.rlim_max != 0) ::setrlimit(RLIMIT_NOFILE, &descriptors);
      ::execl(RINGROUTE_BINARY, RINGROUTE_BINARY, "run", "--config", config.c_str(), "--drain-ms", drain_ms,
              static_cast<char*>(nullptr));
      ::_exit(127);
    }
  }
  ~RouterProcess() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }
  // Nothing once the router was reaped: kill(-1, sig) signals every
  // process this user may signal (in CI, root: all of them).
  void signal(int sig) const {
    if (pid_ <= 0) return;
    wait_running();
    ::kill(pid_, sig);
  }
  [[nodiscard]] pid_t pid() const { return pid_; }
  // Exit status after SIGTERM (or -1 when it did not exit in time).
  int stop() {
    if (pid_ <= 0) return -1;
    wait_running();
    ::kill(pid_, SIGTERM);
    return wait_exit(8s);  // a 2 s drain that runs out, then an ASan build's exit
  }
  void kill9() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }
  // Until the router says it runs (up to 5 s): before it has blocked its
  // signals, a SIGTERM or SIGHUP is their default, death. A router started
  // on a ring that exists already is "ready" for a test at once, and an
  // ASan build took more than the 100 ms such a test waited to start.
  // With no log, the caller waits as it can (stat_once_running()).
  void wait_running() const {
    if (log_.empty()) return;
    const auto deadline = std::chrono::steady_clock::now() + 5s;
    while (std::chrono::steady_clock::now() < deadline) {
      if (read_text(log_).find("ringroute: running:", log_start_) != std::string::npos) return;
      std::this_thread::sleep_for(2ms);
    }
  }
  int wait_exit(std::chrono::milliseconds limit) {
    if (pid_ <= 0) return -1;  // waitpid(-1) would reap any child, a producer's too
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < deadline) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
      }
      std::this_thread::sleep_for(5ms);
    }
    return -1;
  }

 private:
  std::string log_;
  std::size_t log_start_ = 0;
  pid_t pid_ = -1;
};

void wait_for_ring(const std::string& ring) {
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  while (std::chrono::steady_clock::now() < deadline) {
    ringroute::EventProducer p;
    if (p.open(ring) == RR_OK) return;
    std::this_thread::sleep_for(5ms);
  }
  FAIL() << "ring " << ring << " never became ready";
}

// Producer k emits `count` events with ids "p{k}-{i}" (severity i%3,
// verbosity i%6, account acct-{i%7}), `per_emit` a call with `pause` after
// each; waits for room when the ring is full. `in_child`, when given, runs in
// the child first.
pid_t spawn_producer(const std::string& ring, int k, int count, void (*in_child)() = nullptr, int per_emit = 64,
                     std::chrono::microseconds pause = 0us) {
  const pid_t pid = ::fork();
  // A failed fork's -1 passed on to kill() would signal every process.
  if (pid < 0) {
    std::perror("fork");
    std::abort();
  }
  if (pid != 0) return pid;
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (in_child != nullptr) in_child();
  ringroute::EventProducer p;
  rr_producer_options options{};
  options.wait_timeout_ns = 2'000'000'000;
  if (p.open(ring, &options) != RR_OK) ::_exit(3);
  std::vector<std::string> ids(64), accounts(64), bodies(64);
  std::vector<rr_event> batch(64);
  for (int i = 0; i < count;) {
    if (i != 0 && pause.count() != 0) std::this_thread::sleep_for(pause);
    const int n = std::min(per_emit, count - i);
    for (int j = 0; j < n; ++j) {
      const int e = i + j;
      ids[j] = "p" + std::to_string(k) + "-" + std::to_string(e);
      accounts[j] = "acct-" + std::to_string(e % 7);
      bodies[j] = "{\"k\":" + std::to_string(k) + ",\"i\":" + std::to_string(e) + "}";
      rr_event ev{};
      ev.id = ringroute::to_rr_str(ids[j]);
      ev.account_id = ringroute::to_rr_str(accounts[j]);
      ev.severity = static_cast<rr_severity>(1 + e % 3);
      ev.verbosity = static_cast<rr_verbosity>(1 + e % 6);
      ev.body = ringroute::to_rr_str(bodies[j]);
      batch[j] = ev;
    }
    std::size_t accepted = 0;
    const rr_status s = p.emit_batch(std::span<const rr_event>(batch.data(), static_cast<std::size_t>(n)), 0, &accepted);
    if (s != RR_OK && s != RR_FULL) ::_exit(4);
    i += static_cast<int>(accepted);
  }
  ::_exit(0);
}

// SIGTERM stops the router taking new records, so a test first waits until
// it has released everything producers committed (all written).
void wait_drained(const std::string& ring) {
  ringroute::ring::Segment segment;
  std::string error;
  ASSERT_EQ(ringroute::ring::Segment::attach(ring, segment, &error), ringroute::ring::Status::ok) << error;
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (!ringroute::ring::all_released(segment.header())) {
    ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "router did not drain " << ring;
    std::this_thread::sleep_for(1ms);
  }
}

// Until the router has read `records` records from the ring (read, not
// written: the sinks may be retrying them).
void wait_read(const std::string& ring, std::uint64_t records) {
  ringroute::ring::Segment segment;
  std::string error;
  ASSERT_EQ(ringroute::ring::Segment::attach(ring, segment, &error), ringroute::ring::Status::ok) << error;
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (segment.header().read.read() < records) {
    ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "router did not read " << records << " records of " << ring;
    std::this_thread::sleep_for(1ms);
  }
}

int wait_child(pid_t pid) {
  int status = 0;
  ::waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

// (producer, index) of every line of the files, in file order: from the
// metadata id, or from a body-only line's k and i.
std::vector<std::pair<int, int>> read_events(const std::vector<std::string>& paths) {
  std::vector<std::pair<int, int>> out;
  simdjson::dom::parser parser;
  for (const auto& path : paths) {
    std::ifstream in(path);
    std::string line;
    while (std::getline(in, line)) {
      // A last line without its newline is one the router is still writing
      // (callers poll while it runs): not an event yet. A line that never
      // gets its newline shows up as a missing event in the counts.
      if (in.eof()) break;
      simdjson::dom::element doc;
      if (parser.parse(line).get(doc) != simdjson::SUCCESS) {
        ADD_FAILURE() << path << ": not JSON: " << line;
        continue;
      }
      simdjson::dom::element body = doc;
      if (doc["body"].get(body) != simdjson::SUCCESS) body = doc;
      int64_t k = -1, i = -1;
      EXPECT_EQ(body["k"].get(k), simdjson::SUCCESS) << line;
      EXPECT_EQ(body["i"].get(i), simdjson::SUCCESS) << line;
      std::string_view id;
      if (doc["id"].get(id) == simdjson::SUCCESS) {
        EXPECT_EQ(id, "p" + std::to_string(k) + "-" + std::to_string(i));
      }
      out.emplace_back(static_cast<int>(k), static_cast<int>(i));
    }
  }
  return out;
}

std::string file_backend(const std::string& name, const std::string& path, const std::string& bindings,
                         const std::string& extra = "") {
  return R"({"name": ")" + name + R"(", "type": "file", "options": {"path": ")" + path + "\"" + extra +
         R"(}, "bindings": )" + bindings + "}";
}

// `router`: the router object's members, if any.
std::string config_text(const Dir& dir, const std::string& ring, std::size_t ring_bytes,
                        const std::vector<std::string>& backends, const std::string& router = "") {
  std::string text = R"({"instance": ")" + ring + R"(", "rings": [{"name": ")" + ring + R"(", "size_bytes": )" +
                     std::to_string(ring_bytes) + R"(, "mode": "0600"}], "router": {)" + router + R"(}, "backends": [)";
  for (std::size_t i = 0; i < backends.size(); ++i) text += (i ? "," : "") + backends[i];
  (void)dir;
  return text + "]}";
}

void write_file(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

// Instance `ring`'s config: its one ring of 1 MiB, and backend "all"
// writing every event to all.ndjson.
void write_all_to_one_file(const Dir& dir, const std::string& ring) {
  write_file(dir / "edr.json",
             config_text(dir, ring, 1 << 20, {file_backend("all", dir / "all.ndjson", R"([{"verbosity": "trace"}])")}));
}

// Waits until the router's log holds `text` (a reload is done when it says so).
void wait_for_log(const std::string& path, const std::string& text,
                  std::chrono::milliseconds within = std::chrono::seconds(5)) {
  const auto deadline = std::chrono::steady_clock::now() + within;
  for (;;) {
    const std::string all = read_text(path);
    if (all.find(text) != std::string::npos) return;
    ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "no \"" << text << "\" in " << path << ":\n" << all;
    std::this_thread::sleep_for(2ms);
  }
}

void cleanup(const std::string& ring) {
  fs::remove("/dev/shm/" + ring);
  fs::remove("/dev/shm/" + ring + ".perf");
}

// A fresh instance named after `name` (nothing of an earlier run left in
// /dev/shm) whose config is write_all_to_one_file's; returns its name.
std::string one_file_instance(const Dir& dir, const std::string& name) {
  const std::string ring = dir.unique(name);
  cleanup(ring);
  write_all_to_one_file(dir, ring);
  return ring;
}

std::string run_capture_shell(const std::string& command) {
  std::string out;
  FILE* pipe = ::popen(command.c_str(), "r");
  char buffer[4096];
  while (std::size_t n = std::fread(buffer, 1, sizeof buffer, pipe)) out.append(buffer, n);
  ::pclose(pipe);
  return out;
}

// `as` goes before the binary (a command that runs it as another user).
std::string run_capture(const std::string& args, const std::string& as = "") {
  return run_capture_shell(as + ringroute::testing::shell_quoted(RINGROUTE_BINARY) + " " + args);
}

// From `stat --json`: backend `index` is `name`, never reached its
// destination (nothing sent, failed connects counted), and dropped events
// for a full queue or not, as its policy says.
void expect_never_connected(const std::string& stat_json, std::size_t index, std::string_view name,
                            bool dropped) {
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  ASSERT_EQ(parser.parse(stat_json).get(doc), simdjson::SUCCESS) << stat_json;
  const auto backend = doc["backends"].at(index);
  EXPECT_EQ(std::string_view(backend["name"]), name);
  EXPECT_EQ(uint64_t(backend["sent"]), 0u);
  EXPECT_GT(uint64_t(backend["connect_failures"]), 0u);
  EXPECT_EQ(uint64_t(backend["dropped"]["queue_full"]) > 0, dropped);
  // And why, which the log alone said.
  EXPECT_TRUE(bool(backend["retrying"])) << stat_json;
  const std::string_view said = backend["last_said"]["line"];
  EXPECT_NE(said.find("Connection refused (retrying)"), std::string_view::npos) << stat_json;
  EXPECT_GT(int64_t(backend["last_said"]["at_unix_ns"]), 0) << stat_json;
}

// Waits up to `within` for `stat --json` to give backend `name` of
// `instance` a backlog (`pending`) of `expected`: a batch is counted sent
// just after its write, which a reader of the file may see first.
void expect_pending(const std::string& instance, std::string_view name, std::uint64_t expected,
                    std::chrono::milliseconds within = 2s) {
  const auto deadline = std::chrono::steady_clock::now() + within;
  simdjson::dom::parser parser;
  for (;;) {
    const std::string json = run_capture("stat --json --instance " + instance);
    simdjson::dom::element doc;
    ASSERT_EQ(parser.parse(json).get(doc), simdjson::SUCCESS) << json;
    std::optional<std::uint64_t> pending;
    for (simdjson::dom::element backend : doc["backends"].get_array()) {
      if (std::string_view(backend["name"]) == name) pending = uint64_t(backend["pending"]);
    }
    ASSERT_TRUE(pending.has_value()) << name << " not in " << json;
    if (*pending == expected) return;
    ASSERT_LT(std::chrono::steady_clock::now(), deadline) << name << ": pending " << *pending << ", not " << expected
                                                           << "\n" << json;
    std::this_thread::sleep_for(10ms);
  }
}

// `stat --json` of `instance` once it says the router runs, or as it is
// `within` from now.
std::string stat_once_running(const std::string& instance, std::chrono::milliseconds within) {
  const auto deadline = std::chrono::steady_clock::now() + within;
  simdjson::dom::parser parser;
  for (;;) {
    const std::string json = run_capture("stat --json --instance " + instance);
    simdjson::dom::element doc;
    if (parser.parse(json).get(doc) != simdjson::SUCCESS) {
      ADD_FAILURE() << "not JSON: " << json;
      return json;
    }
    if (std::string_view(doc["router_state"]) == "running" || std::chrono::steady_clock::now() > deadline) return json;
    std::this_thread::sleep_for(5ms);
  }
}

// An http backend "late" on 127.0.0.1:`port`, one connection, batches of
// 200, a queue of 1000 events under `block`.
std::string late_http_backend(std::uint16_t port, const std::string& bindings = R"([{"verbosity": "trace"}])") {
  return R"({"name": "late", "type": "http", "options": {"url": "http://127.0.0.1:)" + std::to_string(port) +
         R"(/late", "max_connections": 1, "batch": {"max_events": 200},
             "queue": {"max_events": 1000, "when_full": "block"}},
           "bindings": )" + bindings + "}";
}

// Waits (up to 10 s) until the files hold `count` events; returns them.
std::vector<std::pair<int, int>> wait_for_events(const std::vector<std::string>& paths, std::size_t count) {
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  auto events = read_events(paths);
  while (events.size() < count && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(10ms);
    events = read_events(paths);
  }
  return events;
}

// The events in the bodies the receiver got, in the order it got them.
std::vector<std::pair<int, int>> received_events(const ringroute::testing::HttpReceiver& http, const Dir& dir) {
  const std::string path = dir / "received.ndjson";
  {
    std::ofstream bodies(path);
    for (const auto& request : http.requests()) bodies << request.body;
  }
  return read_events({path});
}

// Producer `k`'s events 0 .. count-1, in order.
std::vector<std::pair<int, int>> in_order(int k, int count) {
  std::vector<std::pair<int, int>> out;
  for (int i = 0; i < count; ++i) out.emplace_back(k, i);
  return out;
}

// A router with "late" (http, `block`, its destination down at first) and
// "ok" (a file) taking every event; producer 0's first events routed.
class LateBackendRun {
 public:
  explicit LateBackendRun(const std::string& name) : ring(dir.unique(name)), port(ringroute::testing::free_port()) {
    cleanup(ring);
  }
  ~LateBackendRun() { cleanup(ring); }
  [[nodiscard]] std::string config(const std::string& late_bindings = R"([{"verbosity": "trace"}])",
                                   std::uint16_t late_port = 0) const {
    return config_text(dir, ring, ring_bytes,
                       {late_http_backend(late_port != 0 ? late_port : port, late_bindings),
                        file_backend("ok", dir / "ok.ndjson", R"([{"verbosity": "trace"}])")});
  }
  // Starts the router and has producer 0 emit `count` events; returns once
  // "ok" has them all (so every one was read and routed).
  void start_and_route(int count) {
    write_file(dir / "edr.json", config());
    router = std::make_unique<RouterProcess>(dir / "edr.json", dir / "router.log");
    wait_for_ring(ring);
    ASSERT_EQ(wait_child(spawn_producer(ring, 0, count)), 0);
    ASSERT_EQ(wait_for_events({dir / "ok.ndjson"}, static_cast<std::size_t>(count)), in_order(0, count))
        << read_text(dir / "router.log");
  }

  // A reload removes "late"; returns once its 500 ms to write are over and
  // what it did not write is dropped.
  void remove_late_and_wait_out_its_while() {
    write_file(dir / "edr.json",
               config_text(dir, ring, ring_bytes, {file_backend("ok", dir / "ok.ndjson", R"([{"verbosity": "trace"}])")},
                           R"("removed_backend_drain_ms": 500)"));
    router->signal(SIGHUP);
    ASSERT_NO_FATAL_FAILURE(wait_for_log(dir / "router.log", "removed backend(s) late have up to 500 ms"));
    ASSERT_NO_FATAL_FAILURE(wait_for_log(dir / "router.log", "events it was handed and did not write are dropped", 2s));
  }

  Dir dir;
  const std::string ring;
  const std::uint16_t port;  // where "late" sends
  std::size_t ring_bytes = 8 << 20;
  std::unique_ptr<RouterProcess> router;
};


TEST(RunCommand, EveryEventReachesExactlyTheBackendsItsBindingsName) {
  Dir dir;
  const std::string ring = dir.unique("e2e");
  cleanup(ring);
  write_file(dir / "edr.json",
             config_text(dir, ring, 1 << 20,
                         {file_backend("warn", dir / "warn.ndjson", R"([{"severity": "warning", "verbosity": "trace"}])"),
                          file_backend("acct3", dir / "acct3.ndjson",
                                       R"([{"account_id": "acct-3", "verbosity": "trace"}, {"account_id": ["acct-3"], "verbosity": "trace"}])",
                                       R"(, "formatter": {"type": "json", "options": {"include_metadata": false}})"),
                          file_backend("info", dir / "info.ndjson", "[{}]"),
                          R"({"name": "off", "type": "file", "enabled": false, "options": {"path": ")" +
                              dir / "off.ndjson" + R"("}, "bindings": [{"verbosity": "trace"}]})"}));
  RouterProcess router(dir / "edr.json", dir / "router.log");
  wait_for_ring(ring);
  constexpr int kEvents = 20000;
  const pid_t a = spawn_producer(ring, 0, kEvents), b = spawn_producer(ring, 1, kEvents);
  ASSERT_EQ(wait_child(a), 0);
  ASSERT_EQ(wait_child(b), 0);
  ASSERT_NO_FATAL_FAILURE(wait_drained(ring));
  ASSERT_EQ(router.stop(), 0);

  struct Expect {
    std::string file;
    bool (*wants)(int i);
  };
  const Expect expects[] = {{"warn.ndjson", [](int i) { return i % 3 >= 1; }},
                            {"acct3.ndjson", [](int i) { return i % 7 == 3; }},
                            {"info.ndjson", [](int i) { return i % 6 >= 2; }}};
  for (const Expect& expect : expects) {
    const auto events = read_events({dir / expect.file});
    std::map<int, int> last{{0, -1}, {1, -1}};
    std::size_t expected = 0;
    for (int i = 0; i < kEvents; ++i) expected += expect.wants(i) ? 2 : 0;
    EXPECT_EQ(events.size(), expected) << expect.file;
    for (auto [k, i] : events) {
      ASSERT_TRUE(expect.wants(i)) << expect.file << " got p" << k << "-" << i;
      ASSERT_GT(i, last[k]) << expect.file << ": out of order for producer " << k;  // in order, once
      last[k] = i;
    }
  }
  EXPECT_FALSE(fs::exists(dir / "off.ndjson"));
  cleanup(ring);
}

TEST(RunCommand, SigkillUnderLoadThenRestartLosesNothingCommitted) {
  Dir dir;
  const std::string ring = one_file_instance(dir, "kill");
  auto router = std::make_unique<RouterProcess>(dir / "edr.json", dir / "router.log");
  wait_for_ring(ring);
  constexpr int kEvents = 200000;
  const pid_t producer = spawn_producer(ring, 0, kEvents);
  // Let it get going, then kill the router mid-stream; the producer waits
  // (up to 2 s per batch) for room while no router runs.
  const auto going = std::chrono::steady_clock::now() + 10s;
  while (!fs::exists(dir / "all.ndjson") || fs::file_size(dir / "all.ndjson") < 2'000'000) {
    ASSERT_LT(std::chrono::steady_clock::now(), going) << "2 MB not written in 10 s: " << read_text(dir / "router.log");
    std::this_thread::sleep_for(1ms);
  }
  router->kill9();
  std::this_thread::sleep_for(100ms);
  // `stat` tells the death from a stop: the figures are as it left them
  // either way, and it said "not running" for both.
  const std::string died = run_capture("stat --count 1 --instance " + ring);
  EXPECT_NE(died.find(": died without finishing its stop (killed, crashed or stuck; "), std::string::npos) << died;
  EXPECT_NE(run_capture("stat --json --instance " + ring).find("\"router_state\":\"died\""), std::string::npos);
  router = std::make_unique<RouterProcess>(dir / "edr.json", dir / "router.log");
  ASSERT_EQ(wait_child(producer), 0);
  ASSERT_NO_FATAL_FAILURE(wait_drained(ring));
  ASSERT_EQ(router->stop(), 0);
  const auto events = read_events({dir / "all.ndjson"});
  std::vector<int> seen(kEvents, 0);
  for (auto [k, i] : events) seen[static_cast<std::size_t>(i)]++;
  std::size_t duplicates = 0;
  for (int i = 0; i < kEvents; ++i) {
    ASSERT_GE(seen[static_cast<std::size_t>(i)], 1) << "event " << i << " lost";
    duplicates += static_cast<std::size_t>(seen[static_cast<std::size_t>(i)] - 1);
  }
  EXPECT_LE(duplicates, 1000u) << "more than one batch written twice";
  // Every duplicate is counted: each went out again as `replayed` (which
  // also counts those the killed router had not written after all).
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  const std::string json = run_capture("stat --json --instance " + ring);
  ASSERT_EQ(parser.parse(json).get(doc), simdjson::SUCCESS) << json;
  EXPECT_GE(uint64_t(doc["rings"].at(0)["replayed"]), duplicates) << json;
  EXPECT_EQ(std::string_view(doc["router_state"]), "stopped") << json;
  // The killed router's backlog was routed again by the restart, and is
  // not owed twice: nothing is pending.
  EXPECT_EQ(uint64_t(doc["backends"].at(0)["pending"]), 0u) << json;
  // Mostly the kill leaves some unsettled (592, 954, 6,544 in three
  // release runs), and without the base this run's pending is that; a
  // kill that left none (seen under ASan, the producer slower) shows it
  // nothing, said rather than failed.
  if (uint64_t(doc["backends"].at(0)["matched"]) ==
      uint64_t(doc["backends"].at(0)["sent"]) + uint64_t(doc["backends"].at(0)["skipped_written"])) {
    std::fprintf(stderr, "note: the kill left nothing unsettled; the backlog's base was 0 this run\n");
  }
  cleanup(ring);
}

// A producer (or anyone who may write a ring's file) can truncate it under
// the router. The router used to die of the SIGBUS: no drain, every batch
// in flight written again by the next start. Now it says which ring, drains
// what it holds of every ring, and exits 1; the next start (a supervisor's)
// makes the ring cut to nothing anew, and both rings route again.
TEST(RunCommand, ARingCutShortUnderTheRouterIsSaidDrainedAndMadeAnewByTheNextStart) {
  Dir dir;
  const std::string cut = dir.unique("cut"), kept = dir.unique("kept");
  struct Cleanup {
    std::string a, b;
    ~Cleanup() {
      cleanup(a);
      cleanup(b);
    }
  } leave_nothing{cut, kept};
  cleanup(cut);
  cleanup(kept);
  auto ring_entry = [](const std::string& name) {
    return R"({"name": ")" + name + R"(", "size_bytes": 1048576, "mode": "0600"})";
  };
  write_file(dir / "edr.json", R"({"instance": ")" + cut + R"(", "rings": [)" + ring_entry(cut) + "," +
                                   ring_entry(kept) + R"(], "backends": [)" +
                                   file_backend("all", dir / "all.ndjson", R"([{"verbosity": "trace"}])") + "]}");
  constexpr int kEvents = 1000;
  // Producers `first` into the cut ring and `first + 1` into the other, all
  // of it read and written before this returns.
  auto produce_into_both = [&](int first) {
    wait_for_ring(cut);
    wait_for_ring(kept);
    ASSERT_EQ(wait_child(spawn_producer(cut, first, kEvents)), 0);
    ASSERT_EQ(wait_child(spawn_producer(kept, first + 1, kEvents)), 0);
    ASSERT_NO_FATAL_FAILURE(wait_drained(cut));
    ASSERT_NO_FATAL_FAILURE(wait_drained(kept));
  };
  {
    RouterProcess router(dir / "edr.json", dir / "router.log");
    produce_into_both(0);

    const int fd = ::shm_open(cut.c_str(), O_RDWR, 0);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::ftruncate(fd, 0), 0);
    ::close(fd);
    EXPECT_EQ(router.wait_exit(6s), 1) << read_text(dir / "router.log");  // an ASan build's exit and leak check
    const std::string log = read_text(dir / "router.log");
    EXPECT_NE(log.find("the worker of ring " + cut + " stopped: /dev/shm/" + cut + " was cut short under the router"),
              std::string::npos)
        << log;
    EXPECT_NE(log.find("stopped, everything read was written"), std::string::npos) << log;
  }
  RouterProcess router(dir / "edr.json", dir / "router.log");
  produce_into_both(2);
  ASSERT_EQ(router.stop(), 0) << read_text(dir / "router.log");
  std::map<int, std::vector<int>> seen;
  for (auto [k, i] : read_events({dir / "all.ndjson"})) seen[k].push_back(i);
  for (int k = 0; k < 4; ++k) {
    ASSERT_EQ(seen[k].size(), static_cast<std::size_t>(kEvents)) << "producer " << k;
    for (int i = 0; i < kEvents; ++i) ASSERT_EQ(seen[k][static_cast<std::size_t>(i)], i) << "producer " << k;
  }
}

// A ring cut during the stop's drain fails its worker then. stop() used to
// forget the workers' failures with the workers, so `run` exited 0 without
// a word of the cut and promised the cut ring's unwritten events to the
// next start.
TEST(RunCommand, ARingCutShortDuringTheDrainIsSaidAndNotPromisedToTheNextStart) {
  Dir dir;
  const std::string ring = dir.unique("cutdrain");
  cleanup(ring);
  struct Cleanup {
    std::string name;
    ~Cleanup() { cleanup(name); }
  } leave_nothing{ring};
  // Nothing listens on "late"'s port: it holds what it was handed.
  write_file(dir / "edr.json",
             config_text(dir, ring, 1 << 20,
                         {late_http_backend(ringroute::testing::free_port()),
                          file_backend("ok", dir / "ok.ndjson", R"([{"verbosity": "trace"}])")}));
  RouterProcess router(dir / "edr.json", dir / "router.log", "1500");
  wait_for_ring(ring);
  constexpr int kEvents = 100;
  ASSERT_EQ(wait_child(spawn_producer(ring, 0, kEvents)), 0);
  ASSERT_EQ(wait_for_events({dir / "ok.ndjson"}, kEvents), in_order(0, kEvents)) << read_text(dir / "router.log");
  router.signal(SIGTERM);
  ASSERT_NO_FATAL_FAILURE(wait_for_log(dir / "router.log", "stopping (SIGTERM): draining"));
  const int fd = ::shm_open(ring.c_str(), O_RDWR, 0);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::ftruncate(fd, 0), 0);
  ::close(fd);
  // The drain waits out its 1.5 s for "late"; then an ASan build's exit
  // and leak check.
  EXPECT_EQ(router.wait_exit(6s), 1);
  const std::string log = read_text(dir / "router.log");
  EXPECT_NE(log.find("during the drain, the worker of ring " + ring + " stopped: /dev/shm/" + ring +
                     " was cut short under the router"),
            std::string::npos)
      << log;
  EXPECT_NE(log.find("stopped; what was not written stays in the ring for the next start, except what came from " +
                     ring + ": cut short, that is lost"),
            std::string::npos)
      << log;
}

// Under a file size limit (systemd's LimitFSIZE=, ulimit -f) a write past
// it fails with EFBIG, which the file sink retries and says. SIGXFSZ's
// default killed the router with a core instead, and its next start died
// the same way at its first write.
TEST(RunCommand, AFileSizeLimitIsARetriedWriteNotADeath) {
  Dir dir;
  const std::string ring = one_file_instance(dir, "fsize");
  // Room for the ring and the perf block, not for what the producer sends.
  constexpr rlim_t kLimit = 8 << 20;
  RouterProcess router(dir / "edr.json", dir / "router.log", "200", kLimit);
  wait_for_ring(ring);
  const pid_t producer = spawn_producer(ring, 0, 60000);
  ASSERT_NO_FATAL_FAILURE(wait_for_log(dir / "router.log", "File too large"));
  ::kill(producer, SIGKILL);
  wait_child(producer);
  // Stopped first: a read between a retry's partial write and its cut back
  // would see the torn tail the cut removes.
  EXPECT_EQ(router.stop(), 0) << read_text(dir / "router.log");
  const std::string written = read_text(dir / "all.ndjson");
  EXPECT_LE(written.size(), kLimit);
  ASSERT_FALSE(written.empty());
  EXPECT_EQ(written.back(), '\n') << "the batch that crossed the limit was cut back to whole lines";
  cleanup(ring);
}

// A file write can't be cut short: one stuck for good (here a terminal
// nobody reads, as a hung NFS mount would hold it; a FIFO is refused as
// no file) held the stop past its drain, until a supervisor's SIGKILL.
// The stop now ends its grace after the drain with a word and exit 1,
// what was not written left in the ring.
TEST(RunCommand, AStopStuckOnAFileWriteEndsAfterItsGrace) {
  Dir dir;
  const std::string ring = dir.unique("stuck");
  cleanup(ring);
  // A pseudo-terminal's writer waits once its few KiB are queued and the
  // other side reads nothing.
  const int terminal = ::posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
  ASSERT_GE(terminal, 0) << std::strerror(errno);
  ASSERT_EQ(::grantpt(terminal), 0);
  ASSERT_EQ(::unlockpt(terminal), 0);
  ASSERT_EQ(::symlink(::ptsname(terminal), (dir / "all.ndjson").c_str()), 0);
  write_all_to_one_file(dir, ring);
  RouterProcess router(dir / "edr.json", dir / "router.log", "100");
  wait_for_ring(ring);
  ASSERT_EQ(wait_child(spawn_producer(ring, 0, 2000)), 0);  // far more than a pipe's 64 KiB
  // A stop takes no new records: these are read, more than the pipe holds,
  // so the drain's writes stick.
  ASSERT_NO_FATAL_FAILURE(wait_read(ring, 2000));
  router.signal(SIGTERM);
  const auto stopping = std::chrono::steady_clock::now();
  EXPECT_EQ(router.wait_exit(5s), 1) << read_text(dir / "router.log");
  EXPECT_LT(std::chrono::steady_clock::now() - stopping, 4s);
  EXPECT_NE(read_text(dir / "router.log").find("a sink thread is stuck"), std::string::npos)
      << read_text(dir / "router.log");
  ::close(terminal);
  cleanup(ring);
}

// A second SIGTERM or SIGINT during a stop ends it at once (a drain of a
// minute to a dead destination, here).
TEST(RunCommand, ASecondStopSignalEndsTheDrainAtOnce) {
  Dir dir;
  const std::string ring = dir.unique("twice");
  cleanup(ring);
  const std::uint16_t port = ringroute::testing::free_port();
  write_file(dir / "edr.json", config_text(dir, ring, 1 << 20, {late_http_backend(port)}));
  RouterProcess router(dir / "edr.json", dir / "router.log", "60000");
  wait_for_ring(ring);
  ASSERT_EQ(wait_child(spawn_producer(ring, 0, 10)), 0);
  // A stop takes no new records, so the router must hold these first (CI once
  // sent the SIGTERM before it read them, and the drain had nothing to wait on).
  ASSERT_NO_FATAL_FAILURE(wait_read(ring, 10));
  router.signal(SIGTERM);
  ASSERT_NO_FATAL_FAILURE(wait_for_log(dir / "router.log", "stopping (SIGTERM): draining"));
  std::this_thread::sleep_for(100ms);
  const auto again = std::chrono::steady_clock::now();
  router.signal(SIGINT);
  EXPECT_EQ(router.wait_exit(5s), 1) << read_text(dir / "router.log");
  EXPECT_LT(std::chrono::steady_clock::now() - again, 2s);
  EXPECT_NE(read_text(dir / "router.log").find("stopping again: exiting now"), std::string::npos)
      << read_text(dir / "router.log");
  cleanup(ring);
}

// A backend's written-through position in the perf block decides what a
// restart skips. One past the ring's tail was not written by a sink: it is
// ignored (and said), where it used to make the backend skip every event
// for good while the router reported everything written. The block is also
// the router's alone to write (0640).
TEST(RunCommand, AWrittenThroughPositionPastTheRingsTailIsIgnored) {
  Dir dir;
  const std::string ring = one_file_instance(dir, "tamper");
  {
    RouterProcess router(dir / "edr.json", dir / "router.log");
    wait_for_ring(ring);
    ASSERT_EQ(wait_child(spawn_producer(ring, 0, 100)), 0);
    ASSERT_NO_FATAL_FAILURE(wait_drained(ring));
    ASSERT_EQ(router.stop(), 0);
  }
  struct stat st {};
  ASSERT_EQ(::stat(("/dev/shm/" + ring + ".perf").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0640u);
  {
    ringroute::perf::BlockMapping block = ringroute::perf::BlockMapping::create_or_open(ring, 0640);
    block.block().backends[block.backend_slot("all", "file")].written_through[0].store(1ull << 62);
  }
  RouterProcess router(dir / "edr.json", dir / "router.log");
  wait_for_ring(ring);
  ASSERT_EQ(wait_child(spawn_producer(ring, 1, 100)), 0);
  std::vector<std::pair<int, int>> expected = in_order(0, 100);
  for (const auto& event : in_order(1, 100)) expected.push_back(event);
  EXPECT_EQ(wait_for_events({dir / "all.ndjson"}, 200), expected) << read_text(dir / "router.log");
  ASSERT_EQ(router.stop(), 0);
  EXPECT_NE(read_text(dir / "router.log").find("past the ring's tail"), std::string::npos);
  cleanup(ring);
}

// A file whose last line has no end is cut back at the first write only
// where the perf block says a write of the backend's began and did not
// end. A path pointed at another program's file (one that ends without a
// newline and begins its last line with "{") was cut back, even to
// nothing, by a router that had never written it.
TEST(RunCommand, AFileThatEndsWithoutANewlineIsKeptWhereNoWriteOfItsBackendWasCutShort) {
  Dir dir;
  const std::string ring = one_file_instance(dir, "foreign");
  const std::string foreign = R"({"users": ["alice", "bob"], "admin": "alice"})";
  write_file(dir / "all.ndjson", foreign);
  {
    RouterProcess router(dir / "edr.json", dir / "router.log");
    wait_for_ring(ring);
    ASSERT_EQ(wait_child(spawn_producer(ring, 0, 100)), 0);
    ASSERT_NO_FATAL_FAILURE(wait_drained(ring));
    ASSERT_EQ(router.stop(), 0);
  }
  EXPECT_NE(read_text(dir / "router.log").find("no write of this backend's was cut short; kept"), std::string::npos)
      << read_text(dir / "router.log");
  // As a crash mid-write leaves it: a fragment of a line, and the slot's
  // position of a write begun past the one ended.
  std::ofstream(dir / "all.ndjson", std::ios::app) << R"({"id": "p0-10)";
  {
    ringroute::perf::BlockMapping block = ringroute::perf::BlockMapping::create_or_open(ring, 0640);
    auto& slot = block.block().backends[block.backend_slot("all", "file")];
    slot.written_through[0].store(slot.writing_through[0].load() - 8);
  }
  RouterProcess router(dir / "edr.json", dir / "router.log");
  wait_for_ring(ring);
  ASSERT_EQ(wait_child(spawn_producer(ring, 1, 100)), 0);
  ASSERT_NO_FATAL_FAILURE(wait_drained(ring));
  ASSERT_EQ(router.stop(), 0);
  // Named by its backend, as every other line about one is.
  EXPECT_NE(read_text(dir / "router.log").find("ringroute: backend all: " + dir / "all.ndjson" +
                                               " ended in a cut-off line (the router stopped mid-write); removed its "
                                               "13 bytes"),
            std::string::npos)
      << read_text(dir / "router.log");
  const std::string text = read_text(dir / "all.ndjson");
  ASSERT_EQ(text.substr(0, foreign.size() + 1), foreign + "\n");
  write_file(dir / "events.ndjson", text.substr(foreign.size() + 1));
  std::vector<std::pair<int, int>> expected = in_order(0, 100);
  for (const auto& event : in_order(1, 100)) expected.push_back(event);
  EXPECT_EQ(read_events({dir / "events.ndjson"}), expected);
  cleanup(ring);
}

TEST(RunCommand, RotationByRenameAndHupAndBySizeLosesAndDuplicatesNothing) {
  Dir dir;
  const std::string ring = dir.unique("rot");
  cleanup(ring);
  write_file(dir / "edr.json",
             config_text(dir, ring, 1 << 20,
                         {file_backend("renamed", dir / "renamed.ndjson", R"([{"verbosity": "trace"}])"),
                          file_backend("sized", dir / "sized.ndjson", R"([{"verbosity": "trace"}])",
                                       R"(, "rotate_bytes": 300000, "keep": 1000)")}));
  RouterProcess router(dir / "edr.json", dir / "router.log");
  wait_for_ring(ring);
  constexpr int kEvents = 60000;
  const pid_t producer = spawn_producer(ring, 0, kEvents);
  std::vector<std::string> renamed{dir / "renamed.ndjson"};
  // The sinks open their files after the ring is made.
  const auto opened_by = std::chrono::steady_clock::now() + 5s;
  while (!fs::exists(dir / "renamed.ndjson")) {
    ASSERT_LT(std::chrono::steady_clock::now(), opened_by) << read_text(dir / "router.log");
    std::this_thread::sleep_for(1ms);
  }
  for (int round = 1; round <= 3; ++round) {
    std::this_thread::sleep_for(30ms);
    const std::string to = dir / ("renamed.ndjson.r" + std::to_string(round));
    if (fs::exists(dir / "renamed.ndjson")) fs::rename(dir / "renamed.ndjson", to);
    renamed.push_back(to);
    router.signal(SIGHUP);  // logrotate: rename, then HUP
  }
  ASSERT_EQ(wait_child(producer), 0);
  ASSERT_NO_FATAL_FAILURE(wait_drained(ring));
  ASSERT_EQ(router.stop(), 0);
  std::vector<std::string> sized{dir / "sized.ndjson"};
  for (int i = 1; fs::exists(dir / ("sized.ndjson." + std::to_string(i))); ++i) {
    sized.push_back(dir / ("sized.ndjson." + std::to_string(i)));
  }
  EXPECT_GT(sized.size(), 3u) << "size rotation never happened";
  EXPECT_TRUE(fs::exists(renamed[1])) << "no rename happened";  // the sink makes its file at start
  for (const auto& files : {renamed, sized}) {
    std::vector<int> seen(kEvents, 0);
    for (auto [k, i] : read_events(files)) seen[static_cast<std::size_t>(i)]++;
    for (int i = 0; i < kEvents; ++i) ASSERT_EQ(seen[static_cast<std::size_t>(i)], 1) << files[0] << " event " << i;
  }
  cleanup(ring);
}

// With every one of the perf block's 256 backend slots held, a reload that
// renames a backend is refused (the old one keeps its slot while it
// drains), the old config runs on, and the log says a restart takes the
// new one: it said only that the block had no free slot, of a config
// validate had passed.
TEST(RunCommand, AReloadThatNeedsASlotPastTheBlocksLastIsRefusedAndSaysARestartTakesIt) {
  Dir dir;
  const std::string ring = dir.unique("slots");
  cleanup(ring);
  constexpr int kSlots = 256;  // perf::kMaxBackends
  auto config = [&](const std::string& eighth) {
    std::vector<std::string> backends;
    for (int i = 0; i < kSlots; ++i) {
      const std::string name = i == 7 ? eighth : "b" + std::to_string(i);
      backends.push_back(file_backend(name, dir / (name + ".ndjson"), R"([{"verbosity": "trace"}])"));
    }
    return config_text(dir, ring, 1 << 20, backends);
  };
  write_file(dir / "edr.json", config("b7"));
  RouterProcess router(dir / "edr.json", dir / "router.log");
  wait_for_ring(ring);
  write_file(dir / "edr.json", config("c7"));
  router.signal(SIGHUP);
  ASSERT_NO_FATAL_FAILURE(wait_for_log(dir / "router.log", "no free backend slot for c7"));
  EXPECT_NE(read_text(dir / "router.log").find("a restart takes this config"), std::string::npos)
      << read_text(dir / "router.log");
  ASSERT_EQ(wait_child(spawn_producer(ring, 0, 10)), 0);
  EXPECT_EQ(wait_for_events({dir / "b7.ndjson"}, 10).size(), 10u);  // the old config runs on
  ASSERT_EQ(router.stop(), 0);
  cleanup(ring);
}

// Started with standard input, output and error closed (an init script's
// `<&- >&- 2>&-`), the router's log goes nowhere, not into its files: the
// perf block or the ring took descriptor 2, and each log line was written
// over its header (stat could read no block, producers no ring, and a
// restart refused both).
TEST(RunCommand, ClosedStandardDescriptorsAreNotTakenByTheRingOrTheBlock) {
  Dir dir;
  const std::string ring = dir.unique("closedstd");
  cleanup(ring);
  write_all_to_one_file(dir, ring);
  {
    RouterProcess router(dir / "edr.json", "");
    wait_for_ring(ring);
    // Running, its signals blocked: a SIGHUP is a reload, and a log line.
    const std::string running = stat_once_running(ring, 5s);
    EXPECT_NE(running.find("\"router_state\":\"running\""), std::string::npos) << running;
    router.signal(SIGHUP);
    ASSERT_EQ(wait_child(spawn_producer(ring, 0, 100)), 0);
    EXPECT_EQ(wait_for_events({dir / "all.ndjson"}, 100).size(), 100u);
    const std::string stat = run_capture("stat --json --instance " + ring);
    EXPECT_NE(stat.find("\"router_state\":\"running\""), std::string::npos) << stat;
    ASSERT_EQ(router.stop(), 0);
  }
  // And both are whole for the next start.
  RouterProcess again(dir / "edr.json", dir / "router.log");
  ASSERT_NO_FATAL_FAILURE(wait_for_log(dir / "router.log", "running:"));
  ASSERT_EQ(wait_child(spawn_producer(ring, 1, 100)), 0);
  EXPECT_EQ(wait_for_events({dir / "all.ndjson"}, 200).size(), 200u);
  ASSERT_EQ(again.stop(), 0);
  cleanup(ring);
}

// A stop that came while the config loaded (here a FIFO no one writes to
// yet, as a path on a hung mount) was taken only once the start was done:
// the bindings compiled, the rings made. Nothing starts now.
TEST(RunCommand, AStopDuringTheConfigsLoadIsTakenBeforeTheStart) {
  Dir dir;
  const std::string ring = dir.unique("stopload");
  cleanup(ring);
  write_all_to_one_file(dir, ring);
  const std::string text = read_text(dir / "edr.json");
  const std::string fifo = dir / "fifo.json";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  RouterProcess router(fifo, dir / "router.log");
  // Its signals blocked (SigBlk holds SIGTERM): it waits in the open.
  const std::string status = "/proc/" + std::to_string(router.pid()) + "/status";
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  for (;;) {
    const std::string text_now = read_text(status);
    const std::size_t at = text_now.find("SigBlk:\t");
    if (at != std::string::npos && (std::stoull(text_now.substr(at + 8, 16), nullptr, 16) >> (SIGTERM - 1)) & 1) break;
    ASSERT_LT(std::chrono::steady_clock::now(), deadline) << text_now;
    std::this_thread::sleep_for(2ms);
  }
  ASSERT_EQ(::kill(router.pid(), SIGTERM), 0);
  std::ofstream(fifo) << text;
  EXPECT_EQ(router.wait_exit(5s), 0);
  const std::string log = read_text(dir / "router.log");
  EXPECT_NE(log.find("ringroute: stopped before the start (a stop signal came while the config loaded): nothing was "
                     "read"),
            std::string::npos)
      << log;
  EXPECT_EQ(log.find("running:"), std::string::npos) << log;
  EXPECT_FALSE(fs::exists("/dev/shm/" + ring));
}

// A descriptor limit too small for the config was met only later, as the
// files and connections past it failing with "Too many open files" (the
// default soft limit is 1024). The soft limit is raised to the hard one,
// and what still falls short is said at start.
TEST(RunCommand, TheDescriptorLimitIsRaisedToTheHardOneAndWhatStillFallsShortIsSaid) {
  Dir dir;
  const std::string ring = dir.unique("nofile");
  cleanup(ring);
  // Three syslog backends of up to 40 connections each: 120 under load.
  const std::string url = "syslog+tcp://127.0.0.1:" + std::to_string(ringroute::testing::free_port());
  std::vector<std::string> backends;
  for (int i = 0; i < 3; ++i) {
    backends.push_back(R"({"name": "syslog)" + std::to_string(i) + R"(", "type": "socket", "options": {"url": ")" +
                       url + R"("}, "bindings": [{"verbosity": "trace"}]})");
  }
  write_file(dir / "edr.json", config_text(dir, ring, 1 << 20, backends));
  {
    RouterProcess router(dir / "edr.json", dir / "raised.log", "2000", 0, {64, 4096});
    ASSERT_NO_FATAL_FAILURE(wait_for_log(dir / "raised.log", "running:"));
    rlimit limit{};
    ASSERT_EQ(::prlimit(router.pid(), RLIMIT_NOFILE, nullptr, &limit), 0);
    EXPECT_EQ(limit.rlim_cur, 4096u);
    ASSERT_EQ(router.stop(), 0);
    const std::string log = read_text(dir / "raised.log");
    EXPECT_EQ(log.find("ulimit -n"), std::string::npos) << log;
  }
  RouterProcess router(dir / "edr.json", dir / "short.log", "2000", 0, {100, 100});
  ASSERT_NO_FATAL_FAILURE(wait_for_log(dir / "short.log", "running:"));
  ASSERT_EQ(router.stop(), 0);
  const std::string log = read_text(dir / "short.log");
  EXPECT_NE(log.find("ringroute: ulimit -n is 100 (the hard limit), and this config may hold up to 1"),
            std::string::npos) << log;
  EXPECT_NE(log.find("Raise the hard limit (LimitNOFILE= in a systemd unit"), std::string::npos) << log;
  cleanup(ring);
}

// A reload's peak: the backends it replaces hold their connections while
// they drain, beside their successors'. Each config alone fits the limit;
// the reload between them did not, and was not said.
TEST(RunCommand, AReloadThatMayPassTheDescriptorLimitWhileItsOldBackendsDrainSaysSo) {
  Dir dir;
  const std::string ring = dir.unique("nofilereload");
  cleanup(ring);
  // Two syslog backends of up to 30 connections each: 60, under 100.
  auto config = [&](std::uint16_t port) {
    std::vector<std::string> backends;
    for (int i = 0; i < 2; ++i) {
      backends.push_back(R"({"name": "syslog)" + std::to_string(i) +
                         R"(", "type": "socket", "options": {"max_connections": 30, "url": "syslog+tcp://127.0.0.1:)" +
                         std::to_string(port) + R"("}, "bindings": [{"verbosity": "trace"}]})");
    }
    return config_text(dir, ring, 1 << 20, backends);
  };
  const std::uint16_t port = ringroute::testing::free_port();
  write_file(dir / "edr.json", config(port));
  RouterProcess router(dir / "edr.json", dir / "router.log", "2000", 0, {100, 100});
  ASSERT_NO_FATAL_FAILURE(wait_for_log(dir / "router.log", "running:"));
  // The same config again replaces nothing: no peak.
  router.signal(SIGHUP);
  ASSERT_NO_FATAL_FAILURE(wait_for_log(dir / "router.log", "reloaded"));
  // One the router refuses outright (its instance changed) starts nothing:
  // no peak either.
  std::string other_instance = config(ringroute::testing::free_port());
  other_instance.replace(other_instance.find(ring), ring.size(), ring + "-x");
  write_file(dir / "edr.json", other_instance);
  router.signal(SIGHUP);
  ASSERT_NO_FATAL_FAILURE(wait_for_log(dir / "router.log", "reload refused"));
  EXPECT_EQ(read_text(dir / "router.log").find("ulimit -n"), std::string::npos) << read_text(dir / "router.log");
  // Both sent elsewhere: replaced, the old ones draining beside the new.
  write_file(dir / "edr.json", config(ringroute::testing::free_port()));
  router.signal(SIGHUP);
  ASSERT_NO_FATAL_FAILURE(wait_for_log(dir / "router.log", "descriptors while the backends it replaces or removes"));
  ASSERT_EQ(router.stop(), 0);
  const std::string log = read_text(dir / "router.log");
  EXPECT_NE(log.find("ringroute: ulimit -n is 100 (the hard limit), and this reload may hold up to 1"), std::string::npos)
      << log;
  EXPECT_EQ(log.find("this config may hold"), std::string::npos) << log;
  cleanup(ring);
}

// A log reader that stops reading (a stuck pipe to journald or `logger`):
// the router's threads wrote their lines straight into it and waited there,
// a reload's and the stop's thread among them, so a SIGTERM was never
// taken while the pipe stayed full. Now the log is relayed, and a line
// that finds the relay full is lost rather than waited for.
TEST(RunCommand, ALogReaderThatStopsReadingHoldsNeitherDeliveryNorTheStop) {
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  GTEST_SKIP() << "a sanitizer's build writes its log straight to stderr (run.cpp: LogRelay)";
#endif
  Dir dir;
  const std::string ring = dir.unique("stuckerr");
  cleanup(ring);
  write_all_to_one_file(dir, ring);
  int log[2];
  ASSERT_EQ(::pipe(log), 0);
  ASSERT_EQ(::fcntl(log[1], F_SETPIPE_SZ, 4096), 4096);  // full after a few dozen lines
  const pid_t router = ::fork();
  if (router == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    ::dup2(log[1], STDERR_FILENO);
    ::execl(RINGROUTE_BINARY, RINGROUTE_BINARY, "run", "--config", (dir / "edr.json").c_str(),
            static_cast<char*>(nullptr));
    ::_exit(127);
  }
  ::close(log[1]);
  struct Reaper {
    pid_t pid;
    ~Reaper() {
      if (pid > 0 && ::kill(pid, SIGKILL) == 0) ::waitpid(pid, nullptr, 0);
    }
  } reaper{router};
  wait_for_ring(ring);
  const std::string running = stat_once_running(ring, 5s);
  ASSERT_NE(running.find("\"router_state\":\"running\""), std::string::npos) << running;
  // Reloads, two lines each, until the pipe nothing reads is full.
  int unread = 0;
  for (const auto until = std::chrono::steady_clock::now() + 5s;
       unread < 4096 - 256 && std::chrono::steady_clock::now() < until;) {
    ::kill(router, SIGHUP);
    std::this_thread::sleep_for(10ms);
    ASSERT_EQ(::ioctl(log[0], FIONREAD, &unread), 0);
  }
  ASSERT_GE(unread, 4096 - 256);
  for (int i = 0; i < 5; ++i) {  // and more lines to write into it
    ::kill(router, SIGHUP);
    std::this_thread::sleep_for(10ms);
  }
  ASSERT_EQ(wait_child(spawn_producer(ring, 0, 100)), 0);
  EXPECT_EQ(wait_for_events({dir / "all.ndjson"}, 100).size(), 100u);
  ::kill(router, SIGTERM);
  int status = -1;
  const auto deadline = std::chrono::steady_clock::now() + 6s;
  while (::waitpid(router, &status, WNOHANG) == 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(5ms);
  }
  ASSERT_TRUE(WIFEXITED(status)) << "the router did not stop with its log's reader stuck";
  reaper.pid = -1;
  EXPECT_EQ(WEXITSTATUS(status), 0);
  char first[64] = {};
  ASSERT_GT(::read(log[0], first, sizeof first - 1), 0);
  EXPECT_EQ(std::string(first).rfind("ringroute: running:", 0), 0u) << first;
  ::close(log[0]);
  cleanup(ring);
}

TEST(RunCommand, HupReloadsBindingsAndABadFileKeepsTheOldConfig) {
  Dir dir;
  const std::string ring = dir.unique("hup");
  cleanup(ring);
  const std::string before = config_text(dir, ring, 1 << 20, {file_backend("a", dir / "a.ndjson", R"([{"verbosity": "trace"}])")});
  write_file(dir / "edr.json", before);
  RouterProcess router(dir / "edr.json", dir / "router.log");
  wait_for_ring(ring);
  // Events match the generation current when the router reads them, so each
  // phase is drained before the config changes.
  ASSERT_EQ(wait_child(spawn_producer(ring, 0, 100)), 0);
  ASSERT_NO_FATAL_FAILURE(wait_drained(ring));
  // Bad file: refused, old config stays.
  write_file(dir / "edr.json", R"({"backends": [{"name": "a"}]})");
  router.signal(SIGHUP);
  ASSERT_NO_FATAL_FAILURE(wait_for_log(dir / "router.log", "reload refused"));
  ASSERT_EQ(wait_child(spawn_producer(ring, 1, 100)), 0);
  ASSERT_NO_FATAL_FAILURE(wait_drained(ring));
  // Good file: "a" now takes only warnings and "b" starts. The ring's new
  // size and mode wait for a restart, and the log says so.
  std::string after =
      config_text(dir, ring, 2 << 20,
                  {file_backend("a", dir / "a.ndjson", R"([{"severity": "warning", "verbosity": "trace"}])"),
                   file_backend("b", dir / "b.ndjson", R"([{"verbosity": "trace"}])")});
  after.replace(after.find(R"("0600")"), 6, R"("0640")");
  write_file(dir / "edr.json", after);
  router.signal(SIGHUP);
  ASSERT_NO_FATAL_FAILURE(wait_for_log(dir / "router.log", "reloaded"));
  ASSERT_EQ(wait_child(spawn_producer(ring, 2, 99)), 0);
  ASSERT_NO_FATAL_FAILURE(wait_drained(ring));
  ASSERT_EQ(router.stop(), 0);
  std::map<int, int> in_a, in_b;
  for (auto [k, i] : read_events({dir / "a.ndjson"})) in_a[k]++;
  for (auto [k, i] : read_events({dir / "b.ndjson"})) in_b[k]++;
  EXPECT_EQ(in_a[0], 100);
  EXPECT_EQ(in_a[1], 100);
  EXPECT_EQ(in_a[2], 66);  // severity warning or critical: i % 3 >= 1
  EXPECT_EQ(in_b[2], 99);
  EXPECT_EQ(in_b[0] + in_b[1], 0);
  const std::string text = read_text(dir / "router.log");
  // Each line of the refusal is the router's, prefixed, the file named.
  EXPECT_NE(text.find("ringroute: reload refused, keeping the running config: " + (dir / "edr.json") + " has 2 errors:\n"
                      "ringroute:   backends[0].type: required at line 1, column 15"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("reload: rings[0].size_bytes 1048576 -> 2097152 takes effect at the next start"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("reload: rings[0].mode 0600 -> 0640 takes effect at the next start"), std::string::npos)
      << text;
  cleanup(ring);
}

// What a shell command line writes on stdout.

// A backend's `dropped` count for `reason` in `stat --json` output.
std::uint64_t dropped_of(const std::string& stat_json, std::string_view backend, const char* reason) {
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  if (parser.parse(stat_json).get(doc) != simdjson::SUCCESS) {
    ADD_FAILURE() << stat_json;
    return 0;
  }
  for (simdjson::dom::element b : doc["backends"].get_array()) {
    if (std::string_view(b["name"]) == backend) return uint64_t(b["dropped"][reason]);
  }
  ADD_FAILURE() << "no backend " << backend << " in " << stat_json;
  return 0;
}

// Instance `ring`'s first ring's unreleased bytes (`stat`'s `used`), once
// they are 0 or `within` has passed.
std::uint64_t ring_used_within(const std::string& ring, std::chrono::milliseconds within) {
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  const auto deadline = std::chrono::steady_clock::now() + within;
  for (;;) {
    const std::string json = run_capture("stat --json --instance " + ring);
    if (parser.parse(json).get(doc) != simdjson::SUCCESS) {
      ADD_FAILURE() << json;
      return 0;
    }
    const std::uint64_t used = uint64_t(doc["rings"].at(0)["used"]);
    if (used == 0 || std::chrono::steady_clock::now() > deadline) return used;
    std::this_thread::sleep_for(10ms);
  }
}

// `stat` reads names from shared memory: one left without its terminating
// zero is read to its field's end, not past it, and control bytes (terminal
// escapes) are shown as '?'.
TEST(StatCommand, NamesInTheBlockAreBoundedAndShowNoControlBytes) {
  const std::string instance = "rr-test-stat-names-" + std::to_string(::getpid());
  ringroute::perf::BlockMapping::remove(instance);
  // A ring that exists under a name with an escape in it: attached by the
  // name as stored (as shown, with '?', it named no ring).
  const std::string ring = "\x1b[31mred-" + std::to_string(::getpid());
  ringroute::ring::SegmentOptions options;
  options.capacity_bytes = 4096;
  options.mode = 0600;
  const ringroute::ring::Segment segment = ringroute::ring::Segment::create_or_attach(ring, options);
  struct Cleanup {
    std::string ring;
    ~Cleanup() { ringroute::ring::Segment::remove(ring); }
  } leave_nothing{ring};
  {
    ringroute::perf::BlockMapping block = ringroute::perf::BlockMapping::create_or_open(instance, 0600);
    ASSERT_EQ(block.backend_slot("x", "file"), 0);
    std::memset(block.block().backends[0].name, 'A', ringroute::perf::kNameBytes);  // no terminating zero
    ASSERT_EQ(block.ring_slot("r"), 0);
    std::strcpy(block.block().rings[0].name, ring.c_str());
    ASSERT_EQ(block.backend_slot("y", "file"), 1);
    std::strcpy(block.block().backends[1].name, "\xC2\x9B" "2J\xFF");
    // A backend's last log line carries a destination's words (an HTTP
    // body's start): an escape, a C1 control (U+009B, CSI to some
    // terminals), and UTF-8 that is text.
    auto& said_by = block.block().backends[1];
    said_by.in_config.store(1);
    said_by.said.retrying.store(1);  // left by a stop in the middle of a retry
    ringroute::perf::write_said(said_by.said, "HTTP 400: \x1b[31m \xC2\x9B" "31m caf\xC3\xA9 (1 events rejected)",
                                std::chrono::duration_cast<std::chrono::nanoseconds>(
                                    std::chrono::system_clock::now().time_since_epoch())
                                    .count());
    // A line stamped an hour ahead, by a router of an earlier build (no
    // boot stamp): said before the wall clock was set back. Not one of the
    // last minute's: it was shown "0 s ago".
    ASSERT_EQ(block.backend_slot("z", "file"), 2);
    block.block().backends[2].in_config.store(1);
    ringroute::perf::write_said(block.block().backends[2].said, "said before the clock went back",
                                std::chrono::duration_cast<std::chrono::nanoseconds>(
                                    (std::chrono::system_clock::now() + std::chrono::hours(1)).time_since_epoch())
                                    .count());
    // Lines with a boot stamp are as old as it says, whatever the wall
    // clock did since: one from 3 s ago stamped an hour ahead, one from 5 s
    // ago stamped two hours behind (the clock stepped forward since; it
    // was hidden as older than a minute).
    const std::uint32_t boot = ringroute::perf::boot_seconds();
    ASSERT_GT(boot, 10u);
    ASSERT_EQ(block.backend_slot("ahead", "file"), 3);
    block.block().backends[3].in_config.store(1);
    ringroute::perf::write_said(block.block().backends[3].said, "said with the wall clock ahead",
                                std::chrono::duration_cast<std::chrono::nanoseconds>(
                                    (std::chrono::system_clock::now() + std::chrono::hours(1)).time_since_epoch())
                                    .count(),
                                boot - 3);
    ASSERT_EQ(block.backend_slot("behind", "file"), 4);
    block.block().backends[4].in_config.store(1);
    ringroute::perf::write_said(block.block().backends[4].said, "said with the wall clock behind",
                                std::chrono::duration_cast<std::chrono::nanoseconds>(
                                    (std::chrono::system_clock::now() - std::chrono::hours(2)).time_since_epoch())
                                    .count(),
                                boot - 5);
  }
  const std::string out = run_capture("stat --json --instance " + instance);
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  ASSERT_EQ(parser.parse(out).get(doc), simdjson::SUCCESS) << out;
  EXPECT_EQ(std::string_view(doc["backends"].at(0)["name"]), std::string(ringroute::perf::kNameBytes, 'A'));
  EXPECT_EQ(std::string_view(doc["rings"].at(0)["name"]), "?[31mred-" + std::to_string(::getpid()));
  EXPECT_TRUE(bool(doc["rings"].at(0)["attached"])) << out;
  EXPECT_EQ(uint64_t(doc["rings"].at(0)["capacity"]), 4096u) << out;
  EXPECT_EQ(std::string_view(doc["backends"].at(1)["name"]), "??2J?");
  EXPECT_EQ(std::string_view(doc["backends"].at(1)["last_said"]["line"]),
            "HTTP 400: ?[31m ?31m caf\xC3\xA9 (1 events rejected)");
  EXPECT_FALSE(bool(doc["backends"].at(1)["retrying"])) << "no router runs";
  const std::string view = run_capture("stat --count 1 --instance " + instance);
  EXPECT_NE(view.find("  ??2J? said, 0 s ago: HTTP 400: ?[31m ?31m caf\xC3\xA9 (1 events rejected)\n"),
            std::string::npos)
      << view;
  EXPECT_EQ(view.find_first_of("\x1b\x9b"), std::string::npos) << view;
  EXPECT_EQ(view.find("said before the clock went back"), std::string::npos) << view;
  // Seconds on the boot clock: 3 and 5, and what the test took since (not
  // hours, and not hidden).
  auto said_ago = [&](const std::string& line) -> long {
    const std::size_t at = view.find(line);
    return at == std::string::npos ? -1 : std::stol(view.substr(at + line.size()));
  };
  const long ahead = said_ago("  ahead said, "), behind = said_ago("  behind said, ");
  EXPECT_TRUE(ahead >= 3 && ahead <= 30) << view;
  EXPECT_TRUE(behind >= 5 && behind <= 30) << view;
  EXPECT_NE(view.find(" s ago: said with the wall clock ahead\n"), std::string::npos) << view;
  EXPECT_NE(view.find(" s ago: said with the wall clock behind\n"), std::string::npos) << view;
  ringroute::perf::BlockMapping::remove(instance);
}

// A FIFO at the block's name, or at a ring's (/dev/shm is anyone's to
// write in), is said to be no block or ring: the open waited for a writer,
// and `stat` hung, for ever. And a view whose output can't be written ends:
// with SIGPIPE ignored (a systemd unit's default) it wrote nothing for ever.
TEST(StatCommand, AFifoIsNoBlockNorRingAndAViewItCannotWriteEnds) {
  const std::string instance = "rr-test-stat-fifo-" + std::to_string(::getpid());
  const std::string fifo = "/dev/shm/" + instance + ".perf";
  ringroute::perf::BlockMapping::remove(instance);
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  const std::string binary = ringroute::testing::shell_quoted(RINGROUTE_BINARY);
  auto shell = [&](const std::string& command) {
    return run_capture_shell("timeout 5 " + command + " 2>&1; echo \"rc=$?\"");
  };
  std::string out = shell(binary + " stat --json --instance " + instance);
  EXPECT_NE(out.find("is not a regular file"), std::string::npos) << out;
  EXPECT_NE(out.find("rc=2"), std::string::npos) << out;
  ::unlink(fifo.c_str());

  const std::string ring = "rr-test-stat-fifo-ring-" + std::to_string(::getpid());
  {
    ringroute::perf::BlockMapping block = ringroute::perf::BlockMapping::create_or_open(instance, 0600);
    ASSERT_EQ(block.ring_slot(ring), 0);
  }
  ASSERT_EQ(::mkfifo(("/dev/shm/" + ring).c_str(), 0600), 0);
  out = shell(binary + " stat --json --instance " + instance);
  EXPECT_NE(out.find("is not a regular file, so no ring"), std::string::npos) << out;
  EXPECT_EQ(out.find("rc=124"), std::string::npos) << out;
  ::unlink(("/dev/shm/" + ring).c_str());

  out = shell("sh -c 'trap \"\" PIPE; " + binary + " stat --instance " + instance + " --interval-ms 10 > /dev/full'");
  EXPECT_NE(out.find("writing the view failed"), std::string::npos) << out;
  EXPECT_NE(out.find("rc=2"), std::string::npos) << out;
  ringroute::perf::BlockMapping::remove(instance);
}

// `ringroute stat ARGS` watching, its output to `out` and its errors to
// `err`; its pid.
pid_t spawn_stat(const std::string& args, const std::string& out, const std::string& err) {
  // Emptied here, before the fork: the child's reopen comes whenever it
  // runs, and a wait for text in `out` meanwhile found an earlier stat's
  // views there and went on before this one had read the block.
  std::ofstream(out, std::ios::trunc);
  std::ofstream(err, std::ios::trunc);
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    std::freopen(out.c_str(), "w", stdout);
    std::freopen(err.c_str(), "w", stderr);
    // exec: the pid is stat's own, which a signal to it then reaches (the
    // shell would have forked it, and lived on as its parent).
    ::execl("/bin/sh", "sh", "-c", ("exec " + ringroute::testing::shell_quoted(RINGROUTE_BINARY) + " stat " + args).c_str(),
            static_cast<char*>(nullptr));
    ::_exit(127);
  }
  return pid;
}

// Until `path` holds `text` `times` times (up to 10 s: a reload that
// replaces a runner gives the old one a second, and ASan builds are slow).
void wait_for_text(const std::string& path, const std::string& text, std::size_t times) {
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  for (;;) {
    const std::string content = read_text(path);
    std::size_t found = 0;
    for (std::size_t at = content.find(text); at != std::string::npos; at = content.find(text, at + 1)) ++found;
    if (found >= times) return;
    ASSERT_LT(std::chrono::steady_clock::now(), deadline) << content;
    std::this_thread::sleep_for(5ms);
  }
}

// A router of another version sizes the block anew or stamps its own
// version in it, under a `stat` that watches. stat used to read on: a read
// past the file's new end killed it (SIGBUS), and a block of another
// layout was shown as figures. It now says what happened and reads the
// block again, which here fails with what is wrong with it: exit 2.
TEST(StatCommand, ABlockCutOrOfAnotherVersionUnderAWatchingStatIsSaidAndNotReadOn) {
  Dir dir;
  const std::string instance = "rr-test-stat-watch-" + std::to_string(::getpid());
  struct Cleanup {
    std::string name;
    ~Cleanup() { ringroute::perf::BlockMapping::remove(name); }
  } leave_nothing{instance};
  const std::string path = ringroute::perf::block_path(instance);
  auto make_block = [&] {
    ringroute::perf::BlockMapping::remove(instance);
    ringroute::perf::BlockMapping block = ringroute::perf::BlockMapping::create_or_open(instance, 0600);
    ASSERT_EQ(block.backend_slot("all", "file"), 0);
  };
  // 20 s of views: far more than a loaded machine takes to reach the change.
  const std::string watch = "--instance " + instance + " --interval-ms 20 --count 1000";

  make_block();
  pid_t stat = spawn_stat(watch, dir / "out", dir / "err");
  ASSERT_NO_FATAL_FAILURE(wait_for_text(dir / "out", "backend ", 2));
  // The table says the figures are a stopped router's.
  EXPECT_NE(read_text(dir / "out").find("router: not running (figures as it left them)"), std::string::npos)
      << read_text(dir / "out");
  const int fd = ::shm_open(("/" + instance + ".perf").c_str(), O_RDWR, 0);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::ftruncate(fd, sizeof(ringroute::perf::Block) / 2), 0);
  ::close(fd);
  EXPECT_EQ(wait_child(stat), 2) << read_text(dir / "err");
  EXPECT_NE(read_text(dir / "err").find(path + " is " + std::to_string(sizeof(ringroute::perf::Block) / 2) +
                                        " bytes, where a counter block of this build is " +
                                        std::to_string(sizeof(ringroute::perf::Block))),
            std::string::npos)
      << read_text(dir / "err");

  make_block();
  stat = spawn_stat(watch, dir / "out", dir / "err");
  ASSERT_NO_FATAL_FAILURE(wait_for_text(dir / "out", "backend ", 2));
  {
    ringroute::perf::BlockMapping block = ringroute::perf::BlockMapping::create_or_open(instance, 0600);
    block.block().header.version.store(ringroute::perf::kBlockVersion + 1);
  }
  EXPECT_EQ(wait_child(stat), 2) << read_text(dir / "err");
  EXPECT_NE(read_text(dir / "err").find(path + " is counter block version " +
                                        std::to_string(ringroute::perf::kBlockVersion + 1) +
                                        "; this build reads version " + std::to_string(ringroute::perf::kBlockVersion)),
            std::string::npos)
      << read_text(dir / "err");

  // Caught half made (a router making it anew has not stamped its version
  // yet): the view waits for it, where it gave up at once.
  make_block();
  stat = spawn_stat(watch, dir / "out", dir / "err");
  ASSERT_NO_FATAL_FAILURE(wait_for_text(dir / "out", "backend ", 2));
  {
    ringroute::perf::BlockMapping block = ringroute::perf::BlockMapping::create_or_open(instance, 0600);
    block.block().header.version.store(0);
    ASSERT_NO_FATAL_FAILURE(wait_for_text(dir / "err", path + " is being made: try again; reading it again", 1));
    block.block().header.version.store(ringroute::perf::kBlockVersion);
  }
  // It reads on: views after the block is whole again (it exited 2 at once).
  const std::string shown = read_text(dir / "out");
  std::size_t views = 0;
  for (std::size_t at = shown.find("backend "); at != std::string::npos; at = shown.find("backend ", at + 1)) ++views;
  ASSERT_NO_FATAL_FAILURE(wait_for_text(dir / "out", "backend ", views + 2));
  ::kill(stat, SIGTERM);
  wait_child(stat);
  EXPECT_EQ(read_text(dir / "err").find("changed under every read"), std::string::npos) << read_text(dir / "err");

  // Opened so, it is said at once, by what is wrong: not "another version".
  {
    const int empty = ::shm_open(("/" + instance + ".perf").c_str(), O_RDWR | O_TRUNC, 0600);
    ASSERT_GE(empty, 0);
    ::close(empty);
  }
  EXPECT_EQ(wait_child(spawn_stat("--json --instance " + instance, dir / "out", dir / "err")), 2);
  EXPECT_NE(read_text(dir / "err").find(path + " is empty: a router is making it now (try again), or it was cut short"),
            std::string::npos)
      << read_text(dir / "err");
}

// `bench --attach` judges the end of its run by what changed during it. An
// instance's counters carry its history: after a restart, events matched
// again and skipped as written (never sent again) leave `matched` above
// `sent` for good, and the bench, comparing totals, waited its 60 s and
// reported nothing delivered.
TEST(BenchCommand, AttachedToARouterWhoseCountersCarryARestartItDrains) {
  Dir dir;
  const std::string ring = one_file_instance(dir, "benchattach");
  {
    RouterProcess router(dir / "edr.json", dir / "router.log");
    wait_for_ring(ring);
    ASSERT_EQ(router.stop(), 0);
  }
  {
    // What a restart leaves: 1,000 events matched (by another worker's
    // shard, as a router of more rings has them) that were skipped as written.
    ringroute::perf::BlockMapping block = ringroute::perf::BlockMapping::create_or_open(ring, 0600);
    const int slot = block.backend_slot("all", "file");
    ASSERT_GE(slot, 0);
    block.block().backends[static_cast<std::size_t>(slot)].worker[1].matched.add(1000);
  }
  RouterProcess router(dir / "edr.json", dir / "router.log");
  wait_for_ring(ring);
  const std::string json = run_capture_shell("timeout 20 " + ringroute::testing::shell_quoted(RINGROUTE_BINARY) +
                                             " bench --attach " + ring + " --seconds 1 --rate 20000 --json --quiet");
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  ASSERT_EQ(parser.parse(json).get(doc), simdjson::SUCCESS) << json;
  EXPECT_TRUE(bool(doc["drained"])) << json;
  EXPECT_GT(uint64_t(doc["delivered"]), 0u) << json;
  EXPECT_EQ(uint64_t(doc["delivered"]), uint64_t(doc["events"])) << json;
  ASSERT_EQ(router.stop(), 0);
  cleanup(ring);
}

// And a router killed and started again during the run: the records the
// restart read again were matched twice and sent once, so the differences
// never balanced (60 s waited, no rates, exit 1), and the router's CPU
// was the new process's against the old one's (negative). The backlog
// (`pending`) settles it; the router's CPU and memory are said unknown.
TEST(BenchCommand, AttachedToARouterKilledAndRestartedDuringTheRunItDrains) {
  Dir dir;
  const std::string ring = one_file_instance(dir, "benchkill");
  auto router = std::make_unique<RouterProcess>(dir / "edr.json", dir / "router.log");
  wait_for_ring(ring);
  std::string json;
  std::thread bench([&] {
    json = run_capture_shell("timeout 30 " + ringroute::testing::shell_quoted(RINGROUTE_BINARY) + " bench --attach " +
                             ring + " --seconds 2 --rate 100000 --json --quiet");
  });
  std::this_thread::sleep_for(700ms);
  router->kill9();
  router = std::make_unique<RouterProcess>(dir / "edr.json", dir / "router.log");
  bench.join();
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  ASSERT_EQ(parser.parse(json).get(doc), simdjson::SUCCESS) << json;
  EXPECT_TRUE(bool(doc["drained"])) << json;
  EXPECT_GE(uint64_t(doc["delivered"]), uint64_t(doc["events"])) << json;
  EXPECT_GT(uint64_t(doc["events"]), 0u) << json;
  EXPECT_TRUE(doc["router_cpu_s_per_million"].is_null()) << json;
  EXPECT_TRUE(doc["peak_rss_mib"].is_null()) << json;
  ASSERT_EQ(router->stop(), 0);
  cleanup(ring);
}

TEST(StatCommand, ReadsTheCountersWhileTheRouterRunsAndAfter) {
  Dir dir;
  const std::string ring = dir.unique("stat");
  cleanup(ring);
  write_file(dir / "edr.json",
             config_text(dir, ring, 1 << 20,
                         {file_backend("all", dir / "all.ndjson", R"([{"verbosity": "trace"}])"),
                          file_backend("warn", dir / "warn.ndjson", R"([{"severity": "warning", "verbosity": "trace"}])")}));
  RouterProcess router(dir / "edr.json", dir / "router.log");
  wait_for_ring(ring);
  ASSERT_EQ(wait_child(spawn_producer(ring, 0, 3000)), 0);
  ASSERT_NO_FATAL_FAILURE(wait_drained(ring));
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  for (;;) {
    // The last batch is marked sent just after the ring is released.
    const std::string json = run_capture("stat --json --instance " + ring);
    ASSERT_EQ(parser.parse(json).get(doc), simdjson::SUCCESS) << json;
    if (uint64_t(doc["backends"].at(1)["sent"]) == 2000 || std::chrono::steady_clock::now() > deadline) break;
    std::this_thread::sleep_for(5ms);
  }
  EXPECT_TRUE(bool(doc["router_running"]));
  EXPECT_EQ(uint64_t(doc["rings"].at(0)["written"]), 3000u);
  EXPECT_EQ(uint64_t(doc["rings"].at(0)["read"]), 3000u);
  // The ring's other counters the README names are there too.
  EXPECT_EQ(uint64_t(doc["rings"].at(0)["read_bytes"]), uint64_t(doc["rings"].at(0)["bytes"]));
  EXPECT_GT(uint64_t(doc["rings"].at(0)["read_bytes"]), 0u);
  EXPECT_EQ(uint64_t(doc["rings"].at(0)["skipped_bytes"]), 0u);
  EXPECT_EQ(uint64_t(doc["rings"].at(0)["too_big"]), 0u);
  EXPECT_TRUE(doc["rings"].at(0)["consumer_sleeps"].is_uint64());
  EXPECT_EQ(std::string_view(doc["backends"].at(0)["name"]), "all");
  EXPECT_EQ(uint64_t(doc["backends"].at(0)["matched"]), 3000u);
  EXPECT_EQ(uint64_t(doc["backends"].at(0)["sent"]), 3000u);
  EXPECT_EQ(uint64_t(doc["backends"].at(1)["sent"]), 2000u);
  EXPECT_GT(double(doc["backends"].at(0)["p99_us"]), 0.0);
  const std::int64_t router_pid = int64_t(doc["router_pid"]);

  // A second router on the same rings (its config with another mode) is
  // refused the ring, and leaves the ring's mode and the block's header as
  // it found them: stat still names the running one.
  std::string other_mode = read_text(dir / "edr.json");
  other_mode.replace(other_mode.find(R"("mode": "0600")"), 14, R"("mode": "0644")");
  write_file(dir / "second.json", other_mode);
  RouterProcess second(dir / "second.json", dir / "second.log");
  ASSERT_EQ(second.wait_exit(5s), 2) << read_text(dir / "second.log");
  struct stat ring_stat {};
  ASSERT_EQ(::stat(("/dev/shm/" + ring).c_str(), &ring_stat), 0);
  EXPECT_EQ(ring_stat.st_mode & 0777, 0600u);
  const std::string still = run_capture("stat --json --instance " + ring);
  ASSERT_EQ(parser.parse(still).get(doc), simdjson::SUCCESS) << still;
  EXPECT_EQ(int64_t(doc["router_pid"]), router_pid);
  EXPECT_TRUE(bool(doc["router_running"]));
  // One of another instance is refused the ring too, and leaves no block
  // of its instance behind, which it made and never ran with.
  std::string other_instance = read_text(dir / "edr.json");
  const std::string instance_key = R"("instance": ")" + ring + R"(")";
  ASSERT_NE(other_instance.find(instance_key), std::string::npos) << other_instance;
  other_instance.replace(other_instance.find(instance_key), instance_key.size(),
                         R"("instance": ")" + ring + R"(-other")");
  write_file(dir / "third.json", other_instance);
  RouterProcess third(dir / "third.json", dir / "third.log");
  ASSERT_EQ(third.wait_exit(5s), 2) << read_text(dir / "third.log");
  EXPECT_FALSE(fs::exists("/dev/shm/" + ring + "-other.perf")) << read_text(dir / "third.log");
  fs::remove("/dev/shm/" + ring + "-other.perf");
  // A producer may write the ring's header: a consumer pid zeroed there
  // made stat say a running router was not. Its lock says it runs.
  ringroute::ring::Segment segment;
  ASSERT_EQ(ringroute::ring::Segment::attach(ring, segment, nullptr), ringroute::ring::Status::ok);
  auto& header = segment.header();
  const std::int32_t consumer = header.consumer_pid.exchange(0);
  const std::string tampered = run_capture("stat --json --instance " + ring);
  header.consumer_pid.store(consumer);
  ASSERT_EQ(parser.parse(tampered).get(doc), simdjson::SUCCESS) << tampered;
  EXPECT_TRUE(bool(doc["router_running"])) << tampered;

  ASSERT_EQ(router.stop(), 0);
  // The block outlives the router.
  const std::string after = run_capture("stat --json --instance " + ring);
  ASSERT_EQ(parser.parse(after).get(doc), simdjson::SUCCESS) << after;
  EXPECT_EQ(uint64_t(doc["backends"].at(0)["sent"]), 3000u);
  EXPECT_FALSE(bool(doc["router_running"]));
  // A head past the tail (written by no router) is no share past 100%.
  const std::uint64_t head = header.head.load();
  header.head.store(header.tail.load() + 1000);
  const std::string past = run_capture("stat --json --instance " + ring);
  header.head.store(head);
  ASSERT_EQ(parser.parse(past).get(doc), simdjson::SUCCESS) << past;
  EXPECT_EQ(uint64_t(doc["rings"].at(0)["used"]), uint64_t(doc["rings"].at(0)["capacity"])) << past;
  cleanup(ring);
}

// A ring's consumer lock says that someone consumes it, not who: a router
// of another instance on a ring of the same name (the default ring's name
// is every config's that names none) made a stopped router "running".
TEST(StatCommand, ARouterOfAnotherInstanceOnTheSameRingIsNotThisOnesRunning) {
  Dir dir;
  const std::string ring = one_file_instance(dir, "sharedring");
  {
    RouterProcess first(dir / "edr.json", dir / "first.log");
    wait_for_ring(ring);
    ASSERT_EQ(first.stop(), 0);
  }
  std::string other = read_text(dir / "edr.json");
  const std::string instance_key = R"("instance": ")" + ring + R"(")";
  ASSERT_NE(other.find(instance_key), std::string::npos) << other;
  other.replace(other.find(instance_key), instance_key.size(), R"("instance": ")" + ring + R"(-b")");
  write_file(dir / "other.json", other);
  RouterProcess second(dir / "other.json", dir / "second.log");
  ASSERT_NO_FATAL_FAILURE(wait_for_log(dir / "second.log", "running: instance"));
  const std::string json = run_capture("stat --json --instance " + ring);
  ASSERT_EQ(second.stop(), 0);
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  ASSERT_EQ(parser.parse(json).get(doc), simdjson::SUCCESS) << json;
  EXPECT_FALSE(bool(doc["router_running"])) << json;
  fs::remove("/dev/shm/" + ring + "-b.perf");
  cleanup(ring);
}

// The live view and the snapshot say what they can't know: no rate in the
// first view and no percentile for a window or backend with nothing
// written ("-", null; a 0 read as a perfect latency while a destination
// was down), and the live view lists the backends the config runs, not
// one a reload removed (its frozen figures stay in --json, marked).
TEST(StatCommand, SaysWhatItCannotKnowAndListsWhatTheConfigRuns) {
  Dir dir;
  const std::string ring = dir.unique("statview");
  cleanup(ring);
  const auto config = [&](bool with_idle) {
    std::vector<std::string> backends = {file_backend("all", dir / "all.ndjson", R"([{"verbosity": "trace"}])")};
    if (with_idle) backends.push_back(file_backend("idle", dir / "idle.ndjson", R"([{"app_name": "never"}])"));
    return config_text(dir, ring, 1 << 20, backends);
  };
  write_file(dir / "edr.json", config(true));
  RouterProcess router(dir / "edr.json", dir / "router.log");
  wait_for_ring(ring);
  ASSERT_EQ(wait_child(spawn_producer(ring, 0, 100)), 0);
  ASSERT_NO_FATAL_FAILURE(wait_drained(ring));
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  std::string json;
  for (const auto deadline = std::chrono::steady_clock::now() + 5s;;) {
    json = run_capture("stat --json --instance " + ring);
    ASSERT_EQ(parser.parse(json).get(doc), simdjson::SUCCESS) << json;
    if (uint64_t(doc["backends"].at(0)["sent"]) == 100 || std::chrono::steady_clock::now() > deadline) break;
    std::this_thread::sleep_for(5ms);
  }
  EXPECT_GT(int64_t(doc["time_unix_ns"]), int64_t(doc["router_started_unix_ns"])) << json;
  EXPECT_GE(int64_t(doc["router_started_unix_ns"]), int64_t(doc["block_created_unix_ns"])) << json;
  EXPECT_GT(int64_t(doc["block_created_unix_ns"]), 0) << json;
  EXPECT_GT(int64_t(doc["rings"].at(0)["created_unix_ns"]), 0) << json;
  EXPECT_EQ(std::string_view(doc["backends"].at(1)["name"]), "idle") << json;
  EXPECT_TRUE(bool(doc["backends"].at(1)["in_config"])) << json;
  EXPECT_TRUE(doc["backends"].at(1)["p50_us"].is_null()) << json;
  EXPECT_TRUE(doc["backends"].at(1)["p999_us"].is_null()) << json;
  EXPECT_GT(double(doc["backends"].at(0)["p99_us"]), 0.0) << json;
  // The buckets behind the percentiles: one per sent event, in order, none
  // for the idle backend.
  std::uint64_t bucketed = 0;
  std::optional<std::uint64_t> last_to;
  for (simdjson::dom::element bucket : doc["backends"].at(0)["latency_buckets"].get_array()) {
    if (last_to) {
      EXPECT_GT(uint64_t(bucket["from_ns"]), *last_to) << json;
    }
    EXPECT_GE(uint64_t(bucket["to_ns"]), uint64_t(bucket["from_ns"])) << json;
    last_to = uint64_t(bucket["to_ns"]);
    bucketed += uint64_t(bucket["count"]);
  }
  EXPECT_EQ(bucketed, 100u) << json;
  EXPECT_EQ(doc["backends"].at(1)["latency_buckets"].get_array().size(), 0u) << json;

  // Two views: the first has no rates, the second no latency (nothing was
  // written between them); both list the two backends.
  const std::string table = run_capture("stat --count 2 --interval-ms 100 --instance " + ring);
  std::vector<std::string> all_rows;
  std::istringstream lines(table);
  for (std::string line; std::getline(lines, line);) {
    if (line.starts_with("all ")) all_rows.push_back(line);
  }
  ASSERT_EQ(all_rows.size(), 2u) << table;
  auto words = [](const std::string& line) {
    std::vector<std::string> out;
    std::istringstream in(line);
    for (std::string word; in >> word;) out.push_back(word);
    return out;
  };
  // backend sent/s sent pending MB/s retries failures dropped p50 p99 p999
  const std::vector<std::string> first = words(all_rows[0]), second = words(all_rows[1]);
  ASSERT_EQ(first.size(), 11u) << table;
  ASSERT_EQ(second.size(), 11u) << table;
  EXPECT_EQ(first[1], "-") << table;
  EXPECT_EQ(first[2], "100") << table;
  EXPECT_EQ(first[3], "0") << table;  // every event written
  EXPECT_EQ(first[4], "-") << table;
  EXPECT_NE(first[8], "-") << table;  // the first view's window is all the block's history
  EXPECT_EQ(second[1], "0") << table;
  EXPECT_EQ(second[8], "-") << table;
  EXPECT_EQ(second[10], "-") << table;
  EXPECT_NE(table.find("\nidle "), std::string::npos) << table;

  // A reload drops "idle": --json keeps it, marked; the live view leaves it out.
  write_file(dir / "edr.json", config(false));
  router.signal(SIGHUP);
  ASSERT_NO_FATAL_FAILURE(wait_for_log(dir / "router.log", "reloaded"));
  json = run_capture("stat --json --instance " + ring);
  ASSERT_EQ(parser.parse(json).get(doc), simdjson::SUCCESS) << json;
  EXPECT_FALSE(bool(doc["backends"].at(1)["in_config"])) << json;
  EXPECT_TRUE(bool(doc["backends"].at(0)["in_config"])) << json;
  const std::string after = run_capture("stat --count 1 --instance " + ring);
  EXPECT_EQ(after.find("\nidle "), std::string::npos) << after;
  EXPECT_NE(after.find("\nall "), std::string::npos) << after;
  ASSERT_EQ(router.stop(), 0);

  // Started again on another ring of the instance: the ring the earlier
  // config named keeps its slot, marked, and leaves the live view. Events
  // emitted into it meanwhile wait there, said at the start (they waited
  // unseen).
  ASSERT_EQ(wait_child(spawn_producer(ring, 0, 5)), 0);
  const std::string other = ring + "-b";
  std::string next = config(false);
  const std::string named = R"("rings": [{"name": ")" + ring + R"(")";
  ASSERT_NE(next.find(named), std::string::npos) << next;
  next.replace(next.find(named), named.size(), R"("rings": [{"name": ")" + other + R"(")");
  write_file(dir / "edr.json", next);
  RouterProcess again(dir / "edr.json", dir / "router2.log");
  wait_for_ring(other);
  ASSERT_NO_FATAL_FAILURE(wait_for_log(dir / "router2.log", "ring " + ring + ", which this config no longer names, holds "));
  json = stat_once_running(ring, 5s);
  ASSERT_EQ(parser.parse(json).get(doc), simdjson::SUCCESS) << json;
  ASSERT_EQ(doc["rings"].get_array().size(), 2u) << json;
  EXPECT_EQ(std::string_view(doc["rings"].at(0)["name"]), ring) << json;
  EXPECT_FALSE(bool(doc["rings"].at(0)["in_config"])) << json;
  EXPECT_EQ(std::string_view(doc["rings"].at(1)["name"]), other) << json;
  EXPECT_TRUE(bool(doc["rings"].at(1)["in_config"])) << json;
  EXPECT_EQ(std::string_view(doc["router_state"]), "running") << json;
  const std::string view = run_capture("stat --count 1 --instance " + ring);
  EXPECT_EQ(view.find("\n" + ring + " "), std::string::npos) << view;
  EXPECT_NE(view.find("\n" + other + " "), std::string::npos) << view;
  ASSERT_EQ(again.stop(), 0);
  cleanup(other);
  cleanup(ring);
}

// A monitoring user who may read the ring and the block, and write
// neither, sees the ring's figures: `stat` maps rings read-only (it used to
// open them read-write, and showed such a user "attached": false).
TEST(StatCommand, AUserWhoMayOnlyReadTheRingSeesItsFigures) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to run stat as another user";
  const std::string as_nobody = "setpriv --reuid=65534 --regid=65534 --clear-groups ";
  if (std::system((as_nobody + ringroute::testing::shell_quoted(RINGROUTE_BINARY) + " --help >/dev/null 2>&1").c_str()) != 0) {
    GTEST_SKIP() << "user 65534 can't run " << RINGROUTE_BINARY << " here (setpriv missing, or a directory on the way)";
  }
  Dir dir;
  const std::string ring = dir.unique("stat-ro");
  cleanup(ring);
  std::string config = config_text(dir, ring, 1 << 20, {file_backend("all", dir / "all.ndjson", R"([{"verbosity": "trace"}])")});
  config.replace(config.find(R"("mode": "0600")"), 14, R"("mode": "0644")");
  write_file(dir / "edr.json", config);
  RouterProcess router(dir / "edr.json", dir / "router.log");
  wait_for_ring(ring);
  ASSERT_EQ(wait_child(spawn_producer(ring, 0, 100)), 0);
  ASSERT_NO_FATAL_FAILURE(wait_drained(ring));
  ASSERT_EQ(::chmod(("/dev/shm/" + ring + ".perf").c_str(), 0644), 0);
  const std::string json = run_capture("stat --json --instance " + ring, as_nobody);
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  ASSERT_EQ(parser.parse(json).get(doc), simdjson::SUCCESS) << json;
  EXPECT_TRUE(bool(doc["rings"].at(0)["attached"])) << json;
  EXPECT_EQ(uint64_t(doc["rings"].at(0)["written"]), 100u) << json;
  EXPECT_TRUE(bool(doc["router_running"])) << json;
  EXPECT_EQ(std::string_view(doc["router_state"]), "running") << json;

  // One who may read the block and not the ring is told why it has no
  // figures, and that whether the router runs is not known: it used to be
  // "gone" and "not running" while both were there.
  ASSERT_EQ(::chmod(("/dev/shm/" + ring).c_str(), 0600), 0);
  const std::string hidden = run_capture("stat --json --instance " + ring, as_nobody);
  ASSERT_EQ(parser.parse(hidden).get(doc), simdjson::SUCCESS) << hidden;
  EXPECT_FALSE(bool(doc["rings"].at(0)["attached"])) << hidden;
  EXPECT_NE(std::string_view(doc["rings"].at(0)["error"]).find("Permission denied"), std::string_view::npos) << hidden;
  EXPECT_EQ(std::string_view(doc["router_state"]), "unknown") << hidden;
  const std::string table = run_capture("stat --count 1 --instance " + ring, as_nobody);
  EXPECT_NE(table.find("not known (no ring could be read)"), std::string::npos) << table;
  EXPECT_NE(table.find("Permission denied"), std::string::npos) << table;
  ASSERT_EQ(router.stop(), 0);
  cleanup(ring);
}

TEST(RunCommand, AFullDiskUnderDropNeverSlowsTheOtherBackends) {
  Dir dir;
  const std::string ring = dir.unique("full");
  cleanup(ring);
  write_file(dir / "edr.json",
             config_text(dir, ring, 1 << 20,
                         {file_backend("full", "/dev/full", R"([{"verbosity": "trace"}])",
                                       R"(, "queue": {"max_events": 2000, "when_full": "drop"})"),
                          file_backend("ok", dir / "ok.ndjson", R"([{"verbosity": "trace"}])")}));
  RouterProcess router(dir / "edr.json", dir / "router.log");
  wait_for_ring(ring);
  ASSERT_EQ(wait_child(spawn_producer(ring, 0, 20000)), 0);
  ASSERT_NO_FATAL_FAILURE(wait_drained(ring));
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  const std::string json = run_capture("stat --json --instance " + ring);
  ASSERT_EQ(parser.parse(json).get(doc), simdjson::SUCCESS) << json;
  ASSERT_EQ(router.stop(), 0);
  EXPECT_EQ(read_events({dir / "ok.ndjson"}).size(), 20000u);
  const auto full = doc["backends"].at(0);
  EXPECT_EQ(std::string_view(full["name"]), "full");
  EXPECT_EQ(uint64_t(full["sent"]), 0u);
  EXPECT_GT(uint64_t(full["failures"]), 0u);
  EXPECT_GT(uint64_t(full["dropped"]["queue_full"]), 0u);
  const std::string text = read_text(dir / "router.log");
  EXPECT_NE(text.find("backend full: write to /dev/full: No space left on device (retrying)"), std::string::npos)
      << text;
  // The drops are in the log too, every one of them (a line a second at
  // most, the last second's at the stop): they were only counted.
  std::uint64_t said = 0;
  const std::string drop_line = "ringroute: backend full: its queue is full (when_full: drop): ";
  for (std::size_t at = text.find(drop_line); at != std::string::npos; at = text.find(drop_line, at + 1)) {
    said += std::stoull(text.substr(at + drop_line.size()));
    EXPECT_NE(text.find(" events of ring " + ring + " dropped", at), std::string::npos) << text;
  }
  EXPECT_EQ(said, uint64_t(full["dropped"]["queue_full"])) << text;
  cleanup(ring);
}

// A router whose rings were removed from /dev/shm under it (logind's
// RemoveIPC, a cleanup script) still runs: `stat` can't see it consume a
// ring, but its process is there, so it is not said to have died; once it
// has stopped, it is said to have stopped.
TEST(StatCommand, ARouterWhoseRingsWereRemovedIsNotSaidToHaveDied) {
  Dir dir;
  const std::string ring = one_file_instance(dir, "unlinked");
  RouterProcess router(dir / "edr.json", dir / "router.log");
  wait_for_ring(ring);
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  std::string json = stat_once_running(ring, 10s);  // the router has said its pid
  ASSERT_EQ(parser.parse(json).get(doc), simdjson::SUCCESS) << json;
  ASSERT_EQ(std::string_view(doc["router_state"]), "running") << json;
  fs::remove("/dev/shm/" + ring);
  json = run_capture("stat --json --instance " + ring);
  ASSERT_EQ(parser.parse(json).get(doc), simdjson::SUCCESS) << json;
  EXPECT_EQ(std::string_view(doc["router_state"]), "unknown") << json;
  ASSERT_EQ(router.stop(), 0);
  json = run_capture("stat --json --instance " + ring);
  ASSERT_EQ(parser.parse(json).get(doc), simdjson::SUCCESS) << json;
  EXPECT_EQ(std::string_view(doc["router_state"]), "stopped") << json;
  cleanup(ring);
}

// A record whose payload does not decode (a producer that is not the
// library, or a broken one) is counted corrupt, skipped, and said with
// where and why; it was only counted. The records around it are delivered.
TEST(RunCommand, ARecordThatDoesNotDecodeIsSaidWithWhereAndWhy) {
  Dir dir;
  const std::string ring = one_file_instance(dir, "undecodable");
  RouterProcess router(dir / "edr.json", dir / "router.log");
  wait_for_ring(ring);
  ASSERT_EQ(wait_child(spawn_producer(ring, 0, 100)), 0);
  {
    ringroute::ring::Segment segment;
    ASSERT_EQ(ringroute::ring::Segment::attach(ring, segment, nullptr), ringroute::ring::Status::ok);
    ringroute::ring::Producer producer(std::move(segment));
    ringroute::ring::Claim claim;
    const std::uint32_t length = ringroute::ring::kRecordHeaderBytes + 56;
    ASSERT_EQ(producer.try_claim(static_cast<std::uint32_t>(ringroute::ring::align_record(length)), claim),
              ringroute::ring::Status::ok);
    std::memset(claim.first + ringroute::ring::kRecordHeaderBytes, 0xab, 56);
    producer.commit_one(claim, length);
  }
  ASSERT_EQ(wait_child(spawn_producer(ring, 1, 100)), 0);
  ASSERT_NO_FATAL_FAILURE(wait_drained(ring));
  ASSERT_EQ(router.stop(), 0);
  EXPECT_EQ(read_events({dir / "all.ndjson"}).size(), 200u);
  const std::string text = read_text(dir / "router.log");
  EXPECT_NE(text.find("ringroute: ring " + ring + ": 1 records that do not decode counted corrupt and skipped; the "
                      "last (56 bytes, ending at position "),
            std::string::npos)
      << text;
  cleanup(ring);
}

TEST(RunCommand, SyslogAndHttpBackendsDeliverEveryEventOnceAndADeadOneUnderDropSlowsNothing) {
  if (ringroute::testing::Rsyslog::program().empty()) GTEST_SKIP() << "rsyslogd is not installed (scripts/test installs it)";
  Dir dir;
  const std::string ring = dir.unique("net");
  cleanup(ring);
  ringroute::testing::TempDir syslog_dir("run-rsyslog");
  const std::uint16_t syslog_port = ringroute::testing::free_port();
  ringroute::testing::Rsyslog rsyslog(syslog_dir, "module(load=\"imtcp\")\ninput(type=\"imtcp\" address=\"127.0.0.1\" port=\"" +
                                                      std::to_string(syslog_port) + "\" ruleset=\"out\")\n");
  ASSERT_TRUE(rsyslog.wait_tcp(syslog_port)) << rsyslog.log();
  ringroute::testing::HttpReceiver http;
  const std::uint16_t dead_port = ringroute::testing::free_port();
  write_file(dir / "edr.json",
             config_text(dir, ring, 1 << 20,
                         {R"({"name": "syslog", "type": "socket", "options": {"url": "syslog+tcp://127.0.0.1:)" +
                              std::to_string(syslog_port) + R"(", "max_connections": 1}, "bindings": [{"verbosity": "trace"}]})",
                          R"({"name": "http", "type": "http", "options": {"url": ")" + http.url("/edr") +
                              R"(", "batch": {"max_events": 500}}, "bindings": [{"verbosity": "trace"}]})",
                          R"({"name": "dead", "type": "http", "options": {"url": "http://127.0.0.1:)" +
                              std::to_string(dead_port) +
                              R"(/", "queue": {"max_events": 1000, "when_full": "drop"}}, "bindings": [{"verbosity": "trace"}]})"}));
  RouterProcess router(dir / "edr.json", dir / "router.log");
  wait_for_ring(ring);
  constexpr int kEvents = 10000;
  const pid_t a = spawn_producer(ring, 0, kEvents), b = spawn_producer(ring, 1, kEvents);
  ASSERT_EQ(wait_child(a), 0);
  ASSERT_EQ(wait_child(b), 0);
  ASSERT_NO_FATAL_FAILURE(wait_drained(ring));
  const std::string json = run_capture("stat --json --instance " + ring);
  ASSERT_EQ(router.stop(), 0);

  // Syslog: rsyslog's parse of each message; MSG is the json document.
  const auto lines = ringroute::testing::wait_for_lines(rsyslog.output(), 2 * kEvents);
  ASSERT_EQ(lines.size(), 2u * kEvents) << rsyslog.log();
  {
    std::ofstream messages(dir / "syslog-msg.ndjson");
    simdjson::dom::parser parser;
    for (const auto& line : lines) {
      simdjson::dom::element doc = parser.parse(line);
      EXPECT_EQ(std::string_view(doc["version"]), "1");
      messages << std::string_view(doc["msg"]) << "\n";
    }
  }
  std::map<int, int> last{{0, -1}, {1, -1}};
  for (auto [k, i] : read_events({dir / "syslog-msg.ndjson"})) {
    ASSERT_EQ(i, last[k] + 1) << "syslog: producer " << k;  // every event, once, in order
    last[k] = i;
  }
  EXPECT_EQ(last[0], kEvents - 1);
  EXPECT_EQ(last[1], kEvents - 1);

  // HTTP: NDJSON bodies of at most 500 events; every event once.
  {
    std::ofstream bodies(dir / "http-bodies.ndjson");
    for (const auto& request : http.requests()) {
      EXPECT_EQ(request.target, "/edr");
      EXPECT_LE(std::count(request.body.begin(), request.body.end(), '\n'), 500);
      bodies << request.body;
    }
  }
  auto events = read_events({dir / "http-bodies.ndjson"});
  std::sort(events.begin(), events.end());
  ASSERT_EQ(events.size(), 2u * kEvents);
  EXPECT_EQ(std::adjacent_find(events.begin(), events.end()), events.end());

  expect_never_connected(json, 2, "dead", true);
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  ASSERT_EQ(parser.parse(json).get(doc), simdjson::SUCCESS) << json;
  EXPECT_EQ(uint64_t(doc["backends"].at(0)["connects"]), 1u);
  cleanup(ring);
}

TEST(RunCommand, ADeadBackendUnderBlockHoldsOnlyItsOwnEventsAndCatchesUpInOrderWhenItReturns) {
  // The healthy backend gets everything while the other is still down.
  LateBackendRun run("behind");
  constexpr int kEvents = 20000;
  ASSERT_NO_FATAL_FAILURE(run.start_and_route(kEvents));
  expect_never_connected(run_capture("stat --json --instance " + run.ring), 0, "late", false);
  // Its backlog is every event, the healthy one's none.
  ASSERT_NO_FATAL_FAILURE(expect_pending(run.ring, "late", kEvents));
  ASSERT_NO_FATAL_FAILURE(expect_pending(run.ring, "ok", 0));
  // The live view says it under the figures.
  const std::string view = run_capture("stat --count 1 --instance " + run.ring);
  EXPECT_NE(view.find("  late retrying; said last, "), std::string::npos) << view;
  EXPECT_NE(view.find("Connection refused (retrying)"), std::string::npos) << view;
  // The ring still holds the dead backend's events.
  ringroute::ring::Segment segment;
  ASSERT_EQ(ringroute::ring::Segment::attach(run.ring, segment, nullptr), ringroute::ring::Status::ok);
  EXPECT_NE(segment.header().head.load(), segment.header().tail.load());

  // It comes back: it catches up from the ring, every event once, in order.
  ringroute::testing::HttpReceiver http({}, run.port);
  ASSERT_NO_FATAL_FAILURE(wait_drained(run.ring));
  ASSERT_NO_FATAL_FAILURE(expect_pending(run.ring, "late", 0));
  ASSERT_EQ(run.router->stop(), 0);
  for (const auto& request : http.requests()) {
    EXPECT_EQ(request.target, "/late");
    EXPECT_LE(std::count(request.body.begin(), request.body.end(), '\n'), 200);
  }
  EXPECT_EQ(received_events(http, run.dir), in_order(0, kEvents));
}

// `block` end to end: a dead destination's events stay in the ring until
// it is full of them, producers then see `full` (and wait, here), and when
// the destination returns every event reaches it in order, and the
// producer's last ones reach both backends.
TEST(RunCommand, ARingFullOfADeadBlockBackendsEventsMakesProducersWaitUntilItReturns) {
  LateBackendRun run("ringfull");
  run.ring_bytes = 64 << 10;
  constexpr int kEvents = 3000;  // about 300 KB of records: the ring holds a fifth of them
  write_file(run.dir / "edr.json", run.config());
  run.router = std::make_unique<RouterProcess>(run.dir / "edr.json", run.dir / "router.log");
  wait_for_ring(run.ring);
  const pid_t producer = spawn_producer(run.ring, 0, kEvents);
  ringroute::ring::Segment segment;
  ASSERT_EQ(ringroute::ring::Segment::attach(run.ring, segment, nullptr), ringroute::ring::Status::ok);
  const auto deadline = std::chrono::steady_clock::now() + 2s;
  while (ringroute::ring::sum_producer_slots(segment.header()).full == 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(1ms);
  }
  ASSERT_GT(ringroute::ring::sum_producer_slots(segment.header()).full, 0u) << read_text(run.dir / "router.log");
  EXPECT_LT(read_events({run.dir / "ok.ndjson"}).size(), static_cast<std::size_t>(kEvents));  // held back too

  ringroute::testing::HttpReceiver http({}, run.port);
  ASSERT_EQ(wait_child(producer), 0);
  ASSERT_NO_FATAL_FAILURE(wait_drained(run.ring));
  ASSERT_EQ(run.router->stop(), 0);
  EXPECT_EQ(received_events(http, run.dir), in_order(0, kEvents));
  EXPECT_EQ(read_events({run.dir / "ok.ndjson"}), in_order(0, kEvents));
}

// A backend a restart's config no longer runs: what it had not delivered
// is routed to no one of it again, and the ring space goes. Its backlog
// stayed in `stat` for good, counted nowhere; it is dropped.removed now,
// and said, as a reload's removal is.
TEST(RunCommand, ABackendARestartLeavesOutHasItsUndeliveredEventsCountedDropped) {
  LateBackendRun run("leftout");
  constexpr int kEvents = 1500;
  ASSERT_NO_FATAL_FAILURE(run.start_and_route(kEvents));
  ASSERT_NO_FATAL_FAILURE(expect_pending(run.ring, "late", kEvents));
  ASSERT_EQ(run.router->stop(), 0);
  // Held in the ring for it, over the stop.
  ASSERT_NO_FATAL_FAILURE(expect_pending(run.ring, "late", kEvents));

  write_file(run.dir / "edr.json", config_text(run.dir, run.ring, run.ring_bytes,
                                               {file_backend("ok", run.dir / "ok.ndjson", R"([{"verbosity": "trace"}])")}));
  run.router = std::make_unique<RouterProcess>(run.dir / "edr.json", run.dir / "router2.log");
  ASSERT_NO_FATAL_FAILURE(wait_for_log(run.dir / "router2.log", "running:"));
  ASSERT_NO_FATAL_FAILURE(wait_drained(run.ring));
  ASSERT_NO_FATAL_FAILURE(expect_pending(run.ring, "late", 0));
  ASSERT_NO_FATAL_FAILURE(expect_pending(run.ring, "ok", 0));
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  const std::string json = run_capture("stat --json --instance " + run.ring);
  ASSERT_EQ(parser.parse(json).get(doc), simdjson::SUCCESS) << json;
  EXPECT_FALSE(bool(doc["backends"].at(0)["in_config"])) << json;
  EXPECT_EQ(uint64_t(doc["backends"].at(0)["dropped"]["removed"]), static_cast<std::uint64_t>(kEvents)) << json;
  const std::string log = read_text(run.dir / "router2.log");
  EXPECT_NE(log.find("ringroute: backend late, which this config does not run, had " + std::to_string(kEvents) +
                     " events routed to it and not delivered when the last router stopped: they are dropped"),
            std::string::npos)
      << log;
  ASSERT_EQ(run.router->stop(), 0);
  // "ok" had them all once, in the first run.
  EXPECT_EQ(read_events({run.dir / "ok.ndjson"}), in_order(0, kEvents));
}

// A dead `block` backend holds back only the rings that hold its events:
// one that fell behind on the first ring kept every ring from its release
// point on, so the second, which held none of its events, filled up and
// its producers saw `full` though every backend bound there had written
// everything.
TEST(RunCommand, ADeadBlockBackendHoldsOnlyTheRingsWithItsEvents) {
  LateBackendRun run("onering");
  const std::string other = run.ring + "-b";
  cleanup(other);
  struct Cleanup {
    std::string ring;
    ~Cleanup() { cleanup(ring); }
  } leave_nothing{other};
  // "late" takes producer 0's events alone (on the first ring); "ok" all.
  write_file(run.dir / "edr.json",
             R"({"instance": ")" + run.ring + R"(", "rings": [{"name": ")" + run.ring +
                 R"(", "size_bytes": 1048576, "mode": "0600"}, {"name": ")" + other +
                 R"(", "size_bytes": 65536, "mode": "0600"}], "backends": [)" +
                 late_http_backend(run.port, R"([{"verbosity": "trace", "filter": "k = 0"}])") + "," +
                 file_backend("ok", run.dir / "ok.ndjson", R"([{"verbosity": "trace"}])") + "]}");
  run.router = std::make_unique<RouterProcess>(run.dir / "edr.json", run.dir / "router.log");
  wait_for_ring(run.ring);
  wait_for_ring(other);
  // More than "late"'s queue holds (1,000): it falls behind on the first ring.
  ASSERT_EQ(wait_child(spawn_producer(run.ring, 0, 1200)), 0);
  ASSERT_EQ(wait_for_events({run.dir / "ok.ndjson"}, 1200).size(), 1200u) << read_text(run.dir / "router.log");
  // Five times what the second ring holds, none of it for "late".
  const pid_t producer = spawn_producer(other, 1, 3000);
  EXPECT_EQ(wait_for_events({run.dir / "ok.ndjson"}, 4200).size(), 4200u)
      << "the second ring was held for a backend with none of its events";
  ::kill(producer, SIGKILL);  // if it still waits for room
  (void)wait_child(producer);
  // "late"'s destination back: it gets its 1,200, in order.
  ringroute::testing::HttpReceiver http({}, run.port);
  ASSERT_NO_FATAL_FAILURE(wait_drained(run.ring));
  ASSERT_NO_FATAL_FAILURE(wait_drained(other));
  ASSERT_EQ(run.router->stop(), 0);
  EXPECT_EQ(received_events(http, run.dir), in_order(0, 1200));
}

// Voluntary context switches of every thread of process `pid` so far.
std::uint64_t voluntary_switches(pid_t pid) {
  std::uint64_t total = 0;
  for (const auto& task : fs::directory_iterator("/proc/" + std::to_string(pid) + "/task")) {
    std::ifstream status(task.path() / "status");
    for (std::string line; std::getline(status, line);) {
      if (line.rfind("voluntary_ctxt_switches:", 0) == 0) total += std::stoull(line.substr(24));
    }
  }
  return total;
}

// A trickle of events to a dead destination: each event became a batch of
// its own (the idle flush hands over batches 200 us old), each reserving
// its buffers for a full batch, so memory grew by megabytes an event up to
// the queue's bound (1,000 batches here), and the destination, once back,
// got a request an event. While the sink retries, the worker fills the open
// batch instead: 400 events are a few batches of up to 200.
TEST(RunCommand, ATrickleToADeadDestinationFillsBatchesRatherThanMakingOneAnEvent) {
  LateBackendRun run("trickle");
  write_file(run.dir / "edr.json", run.config());
  run.router = std::make_unique<RouterProcess>(run.dir / "edr.json", run.dir / "router.log");
  wait_for_ring(run.ring);
  constexpr int kEvents = 400;
  ASSERT_EQ(wait_child(spawn_producer(run.ring, 0, kEvents, nullptr, 1, 1000us)), 0);
  ASSERT_EQ(wait_for_events({run.dir / "ok.ndjson"}, kEvents), in_order(0, kEvents));  // the healthy one: at once
  // Nor does the router wake every 200 us for the batch it holds open
  // (5,000 times a second, 3% of a core), nor every 1 ms for batches only
  // a retrying sink holds (486 wakes in the half second): its worker's idle
  // rounds are 20 ms apart, and the sink's wait 10 ms (about 80 wakes).
  const std::uint64_t switches = voluntary_switches(run.router->pid());
  std::this_thread::sleep_for(500ms);
  EXPECT_LT(voluntary_switches(run.router->pid()) - switches, 250u);

  ringroute::testing::HttpReceiver http({}, run.port);
  ASSERT_NO_FATAL_FAILURE(wait_drained(run.ring));
  ASSERT_EQ(run.router->stop(), 0);
  EXPECT_EQ(received_events(http, run.dir), in_order(0, kEvents));
  // Events before the sink's first failed connect still leave one a batch,
  // as many as a loaded machine keeps that thread waiting; a request an
  // event was 400.
  EXPECT_LE(http.requests().size(), 40u);
}

// A stop drains what the router read, and that includes what a `block`
// backend fell behind on: its destination is back as the stop comes, so it
// rereads the ring for the rest while the drain lasts, rather than leaving
// it there for the next start.
TEST(RunCommand, AStopLetsABackendThatFellBehindCatchUpWithinTheDrain) {
  LateBackendRun run("behindstop");
  constexpr int kEvents = 3000;  // its queue holds 1,000: behind, and little enough for a drain under ASan
  ASSERT_NO_FATAL_FAILURE(run.start_and_route(kEvents));
  // The destination comes back but holds its first answer until the stop
  // has begun: the catching up is the drain's, not done before it.
  std::atomic<bool> hold{true};
  ringroute::testing::HttpReceiver http(
      [&](const ringroute::testing::HttpRequest&, std::size_t) {
        while (hold.load()) std::this_thread::sleep_for(1ms);
        return ringroute::testing::HttpResponse{};
      },
      run.port);
  struct Release {  // before the receiver goes, however the test ends
    std::atomic<bool>& hold;
    ~Release() { hold = false; }
  } release{hold};
  const auto deadline = std::chrono::steady_clock::now() + 10s;  // its retries back off up to 5 s
  while (http.requests().empty() && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(1ms);
  ASSERT_FALSE(http.requests().empty());
  run.router->signal(SIGTERM);
  ASSERT_NO_FATAL_FAILURE(wait_for_log(run.dir / "router.log", "stopping (SIGTERM): draining"));
  hold = false;
  ASSERT_EQ(run.router->wait_exit(8s), 0);
  EXPECT_EQ(received_events(http, run.dir), in_order(0, kEvents));
  const std::string log = read_text(run.dir / "router.log");
  EXPECT_NE(log.find("everything read was written"), std::string::npos) << log;
}

// `--drain-ms` bounds the whole stop, and that holds for a SIGTERM that
// comes while a reload gives a removed backend (its destination dead) its
// 5 s: the stop cuts that short.
TEST(RunCommand, AStopDuringAReloadIsBoundedByItsDrain) {
  LateBackendRun run("reloadstop");
  write_file(run.dir / "edr.json", run.config());
  RouterProcess router(run.dir / "edr.json", run.dir / "router.log", "300");
  wait_for_ring(run.ring);
  ASSERT_EQ(wait_child(spawn_producer(run.ring, 0, 500)), 0);
  ASSERT_EQ(wait_for_events({run.dir / "ok.ndjson"}, 500).size(), 500u);
  write_file(run.dir / "edr.json",
             config_text(run.dir, run.ring, 8 << 20,
                         {file_backend("ok", run.dir / "ok.ndjson", R"([{"verbosity": "trace"}])")}));
  router.signal(SIGHUP);
  ASSERT_NO_FATAL_FAILURE(wait_for_log(run.dir / "router.log", "have up to 5000 ms to write what they hold"));  // the reload's wait has begun
  const auto start = std::chrono::steady_clock::now();
  router.signal(SIGTERM);
  EXPECT_EQ(router.wait_exit(8s), 0);
  // The 300 ms drain and an exit (an ASan build's leak check is slow), not the reload's 5 s.
  EXPECT_LT(std::chrono::steady_clock::now() - start, 3000ms) << read_text(run.dir / "router.log");
}

// A SIGHUP during a reload's wait for its removed backends is taken when
// that reload ends; it waited without a word, and the new config seemed
// ignored for as long as the drain lasted.
TEST(RunCommand, ASighupDuringAReloadsDrainIsSaidToWaitForIt) {
  LateBackendRun run("hupinreload");
  write_file(run.dir / "edr.json", run.config());
  RouterProcess router(run.dir / "edr.json", run.dir / "router.log");
  wait_for_ring(run.ring);
  ASSERT_EQ(wait_child(spawn_producer(run.ring, 0, 100)), 0);
  ASSERT_EQ(wait_for_events({run.dir / "ok.ndjson"}, 100).size(), 100u);
  write_file(run.dir / "edr.json", config_text(run.dir, run.ring, 8 << 20,
                                               {file_backend("ok", run.dir / "ok.ndjson", R"([{"verbosity": "trace"}])")},
                                               R"("removed_backend_drain_ms": 2000)"));
  router.signal(SIGHUP);
  // Long enough for a loaded machine to send the second SIGHUP within it
  // (the log is looked at every few ms), and no longer: the test waits it out.
  ASSERT_NO_FATAL_FAILURE(wait_for_log(run.dir / "router.log", "have up to 2000 ms to write what they hold"));
  router.signal(SIGHUP);
  ASSERT_NO_FATAL_FAILURE(wait_for_log(run.dir / "router.log", "SIGHUP: taken once the reload in progress ends"));
  // Then taken: a second reload.
  const auto reloads = [&] {
    const std::string log = read_text(run.dir / "router.log");
    std::size_t count = 0;
    for (std::size_t at = log.find("ringroute: reloaded"); at != std::string::npos;
         at = log.find("ringroute: reloaded", at + 1)) {
      ++count;
    }
    return count;
  };
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (reloads() < 2 && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(5ms);
  EXPECT_EQ(reloads(), 2u) << read_text(run.dir / "router.log");
  ASSERT_EQ(router.stop(), 0);
}

// A backend removed by a reload while it is behind loses what it was handed
// and what it had not read back from the ring yet; the log counts both, so
// together they are every event its bindings matched.
TEST(RunCommand, ABackendRemovedWhileBehindHasEveryEventItLosesCounted) {
  LateBackendRun run("removedbehind");
  constexpr int kEvents = 3000;
  ASSERT_NO_FATAL_FAILURE(run.start_and_route(kEvents));
  write_file(run.dir / "edr.json",
             config_text(run.dir, run.ring, 8 << 20,
                         {file_backend("ok", run.dir / "ok.ndjson", R"([{"verbosity": "trace"}])")}));
  run.router->signal(SIGHUP);
  ASSERT_NO_FATAL_FAILURE(wait_for_log(run.dir / "router.log", "removed while behind"));
  ASSERT_EQ(run.router->stop(), 0);
  const std::string log = read_text(run.dir / "router.log");
  auto number_before = [&](const std::string& text) -> unsigned long {
    const std::size_t at = log.find(text);
    if (at == std::string::npos) return 0;
    const std::size_t start = log.rfind(' ', at - 2) + 1;
    return std::stoul(log.substr(start, at - start));
  };
  const unsigned long handed = number_before(" events it was handed and did not write");
  const unsigned long missed = number_before(" events its bindings matched, not yet read back");
  EXPECT_GT(handed, 0u) << log;
  EXPECT_GT(missed, 0u) << log;
  EXPECT_EQ(handed + missed, static_cast<unsigned long>(kEvents)) << log;
  // And counted, not only logged.
  EXPECT_EQ(dropped_of(run_capture("stat --json --instance " + run.ring), "late", "removed"),
            static_cast<std::uint64_t>(kEvents));
}

// A backend a reload removes (here renamed) has a while (5 s by default) to write what it was
// handed, and the ring is held for those events meanwhile: a router killed
// within them finds the events in the ring at its next start, and the
// renamed backend delivers them. The ring used to be released past them at
// the reload, and they were lost without a count. The renamed backend
// writes events after the reload first: its position then covered the
// held events too, and the restart skipped them as written by it (lost, no
// count); it gets the whole ring again instead.
TEST(RunCommand, ARouterKilledWhileARemovedBackendStillHoldsEventsKeepsThemInTheRing) {
  LateBackendRun run("killremoved");
  constexpr int kEvents = 500;  // queued at "late", whose destination is down
  ASSERT_NO_FATAL_FAILURE(run.start_and_route(kEvents));
  write_file(run.dir / "edr.json",
             config_text(run.dir, run.ring, run.ring_bytes,
                         {file_backend("renamed", run.dir / "renamed.ndjson", R"([{"verbosity": "trace"}])"),
                          file_backend("ok", run.dir / "ok.ndjson", R"([{"verbosity": "trace"}])")}));
  run.router->signal(SIGHUP);
  // Said by name: the rename is a removal and an addition.
  ASSERT_NO_FATAL_FAILURE(wait_for_log(run.dir / "router.log", "reload: kept ok; added renamed; removed late"));
  ASSERT_NO_FATAL_FAILURE(wait_for_log(run.dir / "router.log", "removed backend(s) late have up to 5000 ms"));
  std::this_thread::sleep_for(200ms);  // the worker has taken the new plan (the reload waits for it)
  ASSERT_EQ(wait_child(spawn_producer(run.ring, 1, kEvents)), 0);
  ASSERT_EQ(wait_for_events({run.dir / "renamed.ndjson"}, kEvents), in_order(1, kEvents));
  run.router->kill9();
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  const std::string json = run_capture("stat --json --instance " + run.ring);
  ASSERT_EQ(parser.parse(json).get(doc), simdjson::SUCCESS) << json;
  EXPECT_GT(uint64_t(doc["rings"].at(0)["used"]), 0u) << "released past the removed backend's events: " << json;
  run.router = std::make_unique<RouterProcess>(run.dir / "edr.json", run.dir / "router.log");
  auto expected = in_order(1, kEvents);
  for (const auto& event : in_order(0, kEvents)) expected.push_back(event);
  for (const auto& event : in_order(1, kEvents)) expected.push_back(event);
  EXPECT_EQ(wait_for_events({run.dir / "renamed.ndjson"}, expected.size()), expected)
      << read_text(run.dir / "router.log");
  ASSERT_EQ(run.router->stop(), 0);
  EXPECT_NE(read_text(run.dir / "router.log").find("backend renamed started after records still in the ring"),
            std::string::npos);
}

// ... and once its while is over, what it did not write is counted and the
// ring is released: held for good, it would fill for every backend.
TEST(RunCommand, TheRingHeldForARemovedBackendIsReleasedWhenItsWhileIsOver) {
  LateBackendRun run("releaseremoved");
  constexpr int kEvents = 500;
  ASSERT_NO_FATAL_FAILURE(run.start_and_route(kEvents));
  run.remove_late_and_wait_out_its_while();
  EXPECT_EQ(ring_used_within(run.ring, 2s), 0u);
  EXPECT_EQ(dropped_of(run_capture("stat --json --instance " + run.ring), "late", "removed"),
            static_cast<std::uint64_t>(kEvents));
  ASSERT_EQ(run.router->stop(), 0);
}

// The same for a backend replaced by one reload (its new runner retrying
// what the old one left) and removed by the next: the batches it inherited
// are given up too. Only the runner's own were, and the ring stayed held
// for the inherited ones for good.
TEST(RunCommand, TheRingHeldForARemovedBackendsInheritedBatchesIsReleasedToo) {
  LateBackendRun run("releaseinherited");
  constexpr int kEvents = 500;
  ASSERT_NO_FATAL_FAILURE(run.start_and_route(kEvents));
  write_file(run.dir / "edr.json", run.config(R"([{"verbosity": "trace"}])", ringroute::testing::free_port()));
  run.router->signal(SIGHUP);
  ASSERT_NO_FATAL_FAILURE(wait_for_log(run.dir / "router.log", "its previous configuration was handed and did not write"));
  run.remove_late_and_wait_out_its_while();
  EXPECT_EQ(ring_used_within(run.ring, 2s), 0u) << read_text(run.dir / "router.log");
  ASSERT_EQ(run.router->stop(), 0);
}

// A `block` backend behind (its destination dead) that a reload switches to
// `drop` must not go on holding the ring: it waited for room to read back
// what it missed, and the ring filled for every backend. What it had not
// read back is dropped and counted.
TEST(RunCommand, ABackendBehindThatAReloadSwitchesToDropNoLongerHoldsTheRing) {
  LateBackendRun run("todrop");
  run.ring_bytes = 1 << 20;
  constexpr int kFirst = 3000, kMore = 100000;  // kMore: many times what the ring holds
  ASSERT_NO_FATAL_FAILURE(run.start_and_route(kFirst));
  std::string config = run.config();
  config.replace(config.find(R"("when_full": "block")"), 20, R"("when_full": "drop")");
  write_file(run.dir / "edr.json", config);
  run.router->signal(SIGHUP);
  ASSERT_NO_FATAL_FAILURE(wait_for_log(run.dir / "router.log", "reloaded"));
  // A ring still held would leave the producer waiting for room for good.
  const pid_t producer = spawn_producer(run.ring, 1, kMore);
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  int status = 0;
  while (::waitpid(producer, &status, WNOHANG) == 0) {
    if (std::chrono::steady_clock::now() > deadline) {
      ::kill(producer, SIGKILL);
      ::waitpid(producer, &status, 0);
      FAIL() << "the producer could not write its events: the ring is held\n" << read_text(run.dir / "router.log");
    }
    std::this_thread::sleep_for(5ms);
  }
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  EXPECT_EQ(wait_for_events({run.dir / "ok.ndjson"}, kFirst + kMore).size(), static_cast<std::size_t>(kFirst + kMore));
  EXPECT_GT(dropped_of(run_capture("stat --json --instance " + run.ring), "late", "queue_full"), 0u);
  EXPECT_EQ(run.router->stop(), 0);
}

// Switched to `drop` and back to `block` while its destination is dead: the
// batches it was handed under `block` were let go from the ring at the
// first switch, so at a stop they are dropped and counted, not promised to
// the next start. The `block` runner at the end took them for ring-held and
// counted nothing.
TEST(RunCommand, BatchesLetGoFromTheRingByASwitchToDropAreCountedWhenStoppedAfterASwitchBack) {
  LateBackendRun run("dropback");
  ASSERT_NO_FATAL_FAILURE(run.start_and_route(3000));
  const std::string block_config = run.config();
  std::string drop_config = block_config;
  drop_config.replace(drop_config.find(R"("when_full": "block")"), 20, R"("when_full": "drop")");
  write_file(run.dir / "edr.json", drop_config);
  run.router->signal(SIGHUP);
  ASSERT_NO_FATAL_FAILURE(wait_for_text(run.dir / "router.log", "reloaded", 1));
  write_file(run.dir / "edr.json", block_config);
  run.router->signal(SIGHUP);
  ASSERT_NO_FATAL_FAILURE(wait_for_text(run.dir / "router.log", "reloaded", 2));
  ASSERT_EQ(run.router->stop(), 0);
  const std::string log = read_text(run.dir / "router.log");
  // Every event "late" matched is sent or dropped with a reason; it sent none.
  const std::string stat = run_capture("stat --json --instance " + run.ring);
  std::uint64_t dropped = 0;
  for (const char* reason : {"queue_full", "rejected", "shutdown", "removed"}) dropped += dropped_of(stat, "late", reason);
  EXPECT_EQ(dropped, 3000u) << stat << "\n" << log;
}

// A backend whose options change gets a new runner; the old one is handed
// its last batches and may still be writing them. The new one must neither
// interleave with it nor release ring space it has not written, and when the
// old destination is dead (often why the config changed), what it held goes
// to the new one.
TEST(RunCommand, ABackendReplacedOnReloadWhileItsDestinationIsDeadLosesAndReordersNothing) {
  // Everything routed: "late" holds a full queue of batches it keeps
  // retrying and is behind for the rest.
  LateBackendRun run("replace");
  constexpr int kEvents = 5000;
  ASSERT_NO_FATAL_FAILURE(run.start_and_route(kEvents));

  ringroute::testing::HttpReceiver http;
  write_file(run.dir / "edr.json", run.config(R"([{"verbosity": "trace"}])", http.port()));
  run.router->signal(SIGHUP);
  ASSERT_NO_FATAL_FAILURE(wait_for_log(run.dir / "router.log", "reloaded"));
  ASSERT_NO_FATAL_FAILURE(wait_drained(run.ring));
  ASSERT_EQ(run.router->stop(), 0);
  const std::string log = read_text(run.dir / "router.log");
  EXPECT_EQ(received_events(http, run.dir), in_order(0, kEvents)) << log;
  EXPECT_NE(log.find("its previous configuration was handed and did not write"), std::string::npos) << log;
}

// The same with a healthy file backend under load: the old runner drains
// its queue into the file while the new one waits its turn.
TEST(RunCommand, AFileBackendReplacedOnReloadUnderLoadKeepsEveryEventOnceInOrder) {
  Dir dir;
  const std::string ring = dir.unique("refile");
  cleanup(ring);
  auto config = [&](int batch) {
    return config_text(dir, ring, 4 << 20,
                       {file_backend("a", dir / "a.ndjson", R"([{"verbosity": "trace"}])",
                                     R"(, "batch": {"max_events": )" + std::to_string(batch) + "}")});
  };
  write_file(dir / "edr.json", config(1000));
  RouterProcess router(dir / "edr.json", dir / "router.log");
  wait_for_ring(ring);
  // Paced (at most 64,000 a second: 2.3 s at least), so both reloads come
  // while it runs, even on a loaded machine.
  constexpr int kEvents = 150000;
  const pid_t producer = spawn_producer(ring, 0, kEvents, nullptr, 64, 1000us);
  // Reload twice while the producer runs, each taken before the next is
  // sent (two SIGHUPs pending at once are one).
  std::size_t reloads_sent = 0;
  for (int batch : {300, 700}) {
    std::this_thread::sleep_for(20ms);
    ASSERT_EQ(::waitpid(producer, nullptr, WNOHANG), 0) << "the producer ended before this reload";
    write_file(dir / "edr.json.new", config(batch));
    fs::rename(dir / "edr.json.new", dir / "edr.json");  // never read half-written
    router.signal(SIGHUP);
    ASSERT_NO_FATAL_FAILURE(wait_for_text(dir / "router.log", "reloaded", ++reloads_sent));
  }
  ASSERT_EQ(wait_child(producer), 0);
  ASSERT_NO_FATAL_FAILURE(wait_drained(ring));
  ASSERT_EQ(router.stop(), 0);
  const std::string log = read_text(dir / "router.log");
  std::size_t reloads = 0;
  for (std::size_t at = log.find("reloaded"); at != std::string::npos; at = log.find("reloaded", at + 1)) ++reloads;
  EXPECT_EQ(reloads, 2u) << log;
  EXPECT_EQ(read_events({dir / "a.ndjson"}), in_order(0, kEvents)) << log;
  cleanup(ring);
}

// A stop that cannot write everything says so, keeps it in the ring, and
// the next start delivers it.
// A router with one HTTP backend whose destination is down (`port`, with
// `queue` as its queue options) and a 200 ms drain: 300 events are read and
// handed to the sink, which retries, then the router is stopped. Returns
// the router's log.
constexpr int kUnwrittenEvents = 300;
void stop_with_unwritten_events(const Dir& dir, const std::string& ring, std::uint16_t port, const std::string& queue,
                                std::string& log) {
  write_file(dir / "edr.json",
             config_text(dir, ring, 1 << 20,
                         {R"({"name": "web", "type": "http", "options": {"url": "http://127.0.0.1:)" +
                          std::to_string(port) + R"(/in", "batch": {"max_events": 100})" + queue + R"(},
                              "bindings": [{"verbosity": "trace"}]})"}));
  {
    RouterProcess router(dir / "edr.json", dir / "first.log", "200");
    wait_for_ring(ring);
    ASSERT_EQ(wait_child(spawn_producer(ring, 0, kUnwrittenEvents)), 0);
    ASSERT_NO_FATAL_FAILURE(wait_read(ring, kUnwrittenEvents));
    std::this_thread::sleep_for(100ms);  // handed to the sink, which retries
    ASSERT_EQ(router.stop(), 0);
  }
  log = read_text(dir / "first.log");
}

// The destination back, a second router: what it received.
std::vector<std::pair<int, int>> received_after_restart(const Dir& dir, const std::string& ring, std::uint16_t port,
                                                        std::string& log) {
  ringroute::testing::HttpReceiver http({}, port);
  {
    RouterProcess router(dir / "edr.json", dir / "second.log");
    wait_for_ring(ring);
    wait_drained(ring);  // a failure here shows in what was received
    std::this_thread::sleep_for(100ms);
    EXPECT_EQ(router.stop(), 0);
  }
  log = read_text(dir / "second.log");
  return received_events(http, dir);
}

TEST(RunCommand, AStopThatCannotWriteEverythingSaysSoAndTheNextStartDeliversIt) {
  Dir dir;
  const std::string ring = dir.unique("unwritten");
  cleanup(ring);
  const std::uint16_t port = ringroute::testing::free_port();
  std::string first, second;
  ASSERT_NO_FATAL_FAILURE(stop_with_unwritten_events(dir, ring, port, "", first));
  // Which backend, how many.
  EXPECT_NE(first.find("what was not written stays in the ring for the next start (handed over and not written: "
                       "web 300)"),
            std::string::npos)
      << first;
  EXPECT_EQ(first.find("everything read was written"), std::string::npos) << first;

  EXPECT_EQ(received_after_restart(dir, ring, port, second), in_order(0, kUnwrittenEvents));
  EXPECT_NE(second.find("everything read was written"), std::string::npos) << second;
  cleanup(ring);
}

// A `drop` backend's batches never hold the ring: what it was handed and
// did not write by the end of the drain is gone at a stop. It is counted
// (dropped.shutdown), the log says how many, and no later start pretends
// to deliver it.
TEST(RunCommand, AStopCountsWhatADropBackendCouldNotWrite) {
  Dir dir;
  const std::string ring = dir.unique("dropstop");
  cleanup(ring);
  const std::uint16_t port = ringroute::testing::free_port();
  std::string first, second;
  ASSERT_NO_FATAL_FAILURE(
      stop_with_unwritten_events(dir, ring, port, R"(, "queue": {"when_full": "drop"})", first));
  // Named, and no "other backends" where there are none.
  EXPECT_NE(first.find("stopped; 300 events handed to `drop` backends were not written and are dropped (counted as "
                       "dropped.shutdown in stat): web 300\n"),
            std::string::npos)
      << first;
  EXPECT_EQ(first.find("everything read was written"), std::string::npos) << first;
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  const std::string json = run_capture("stat --json --instance " + ring);
  ASSERT_EQ(parser.parse(json).get(doc), simdjson::SUCCESS) << json;
  const auto web = doc["backends"].at(0);
  EXPECT_EQ(uint64_t(web["sent"]), 0u) << json;
  EXPECT_EQ(uint64_t(web["dropped"]["shutdown"]), uint64_t{kUnwrittenEvents}) << json;
  EXPECT_EQ(uint64_t(web["dropped"]["queue_full"]), 0u) << json;

  // They left the ring with the drop: the next start has nothing to send.
  EXPECT_TRUE(received_after_restart(dir, ring, port, second).empty());
  cleanup(ring);
}

// A `drop` backend's open batch fills up while its queue is full. It was
// handed over at each linger (here, every burst of 8 events) and
// dropped for the full queue, or it dropped each new event while it sat
// open: a server taking a request every 200 ms got one small batch each
// time and everything else was dropped.
TEST(RunCommand, ADropBackendWithAFullQueueFillsItsOpenBatch) {
  Dir dir;
  const std::string ring = dir.unique("dropfill");
  cleanup(ring);
  ringroute::testing::HttpReceiver http([](const ringroute::testing::HttpRequest&, std::size_t) {
    std::this_thread::sleep_for(200ms);
    return ringroute::testing::HttpResponse{};
  });
  // Two batches' reservations fill the queue.
  write_file(dir / "edr.json",
             config_text(dir, ring, 1 << 20,
                         {R"({"name": "slow", "type": "http", "options": {"url": ")" + http.url() +
                          R"(", "max_connections": 1, "batch": {"max_events": 100, "max_bytes": 65536},
                              "queue": {"max_bytes": 140000, "when_full": "drop"}},
                              "bindings": [{"verbosity": "trace"}]})"}));
  constexpr int kEvents = 2000;
  std::string json;
  {
    RouterProcess router(dir / "edr.json", dir / "router.log", "0");
    wait_for_ring(ring);
    ASSERT_EQ(wait_child(spawn_producer(ring, 0, kEvents, nullptr, 8, 2000us)), 0);
    // Until every event is sent or dropped: the batch kept open goes once
    // the queue has room.
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    for (;;) {
      json = run_capture("stat --json --instance " + ring);
      simdjson::dom::parser parser;
      simdjson::dom::element doc;
      ASSERT_EQ(parser.parse(json).get(doc), simdjson::SUCCESS) << json;
      const auto slow = doc["backends"].at(0);
      if (uint64_t(slow["sent"]) + uint64_t(slow["dropped"]["queue_full"]) == uint64_t{kEvents}) break;
      ASSERT_LT(std::chrono::steady_clock::now(), deadline) << json;
      std::this_thread::sleep_for(50ms);
    }
    ASSERT_EQ(router.stop(), 0);
  }
  std::size_t most = 0;
  for (const auto& request : http.requests()) {
    most = std::max<std::size_t>(most, std::count(request.body.begin(), request.body.end(), '\n'));
  }
  EXPECT_EQ(most, 100u) << http.requests().size() << " requests";
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  ASSERT_EQ(parser.parse(json).get(doc), simdjson::SUCCESS) << json;
  const auto slow = doc["backends"].at(0);
  // A batch kept full took no more once the queue had room: each is one
  // request (a batch past max_events goes as two).
  EXPECT_EQ(uint64_t(slow["batches"]), http.requests().size()) << json;
  EXPECT_GT(uint64_t(slow["dropped"]["queue_full"]), 0u) << json;
  cleanup(ring);
}

int claim_pipe = -1;
void pause_after_claim() {
  const char byte = 'x';
  (void)!::write(claim_pipe, &byte, 1);
  for (;;) ::pause();  // killed here, holding its claim
}

// A producer killed between claim and commit leaves a claim the router
// skips. When that skip is the last thing in the ring, the router must
// still release it: the ring drains and a stop says everything was written.
TEST(RunCommand, AClaimSkippedLastIsReleasedAndTheStopSaysEverythingWasWritten) {
  Dir dir;
  const std::string ring = one_file_instance(dir, "skiplast");
  RouterProcess router(dir / "edr.json", dir / "router.log");
  wait_for_ring(ring);
  ASSERT_EQ(wait_child(spawn_producer(ring, 0, 100)), 0);
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  claim_pipe = fds[1];
  const pid_t victim = spawn_producer(ring, 1, 1, [] { rr_testing_set_after_claim_hook(&pause_after_claim); });
  char byte;
  ASSERT_EQ(::read(fds[0], &byte, 1), 1);
  ::close(fds[0]);
  ::close(fds[1]);
  ::kill(victim, SIGKILL);
  wait_child(victim);
  ASSERT_NO_FATAL_FAILURE(wait_drained(ring));
  ASSERT_EQ(router.stop(), 0);
  EXPECT_EQ(read_events({dir / "all.ndjson"}).size(), 100u);
  const std::string log = read_text(dir / "router.log");
  EXPECT_NE(log.find("skipped a claim"), std::string::npos) << log;
  EXPECT_NE(log.find("everything read was written"), std::string::npos) << log;
  cleanup(ring);
}

// --drain-ms bounds the whole stop: the workers' wait for the sinks and the
// sink threads' after it share one deadline, and backends whose destinations
// are down are stopped together. Three of them with a 300 ms drain stop in
// about 300 ms (they took 1.2 s: the workers' 300, then 300 each).
TEST(RunCommand, AStopWithSeveralDestinationsDownTakesOneDrain) {
  Dir dir;
  const std::string ring = dir.unique("onedrain");
  cleanup(ring);
  std::vector<std::string> backends;
  for (int i = 0; i < 3; ++i) {
    backends.push_back(R"({"name": "web)" + std::to_string(i) +
                       R"(", "type": "http", "options": {"url": "http://127.0.0.1:)" +
                       std::to_string(ringroute::testing::free_port()) +
                       R"(/in"}, "bindings": [{"verbosity": "trace"}]})");
  }
  write_file(dir / "edr.json", config_text(dir, ring, 1 << 20, backends));
  RouterProcess router(dir / "edr.json", dir / "router.log", "1000");
  wait_for_ring(ring);
  ASSERT_EQ(wait_child(spawn_producer(ring, 0, 50)), 0);
  ASSERT_NO_FATAL_FAILURE(wait_read(ring, 50));
  std::this_thread::sleep_for(100ms);  // handed to the sinks, which retry
  const auto start = std::chrono::steady_clock::now();
  ASSERT_EQ(router.stop(), 0);
  const auto elapsed = std::chrono::steady_clock::now() - start;
  // One drain and an exit (an ASan build's leak check takes a good part of
  // a second on a loaded machine); a drain a destination took 3 or more.
  EXPECT_GE(elapsed, 1000ms);
  EXPECT_LT(elapsed, 2500ms) << read_text(dir / "router.log");
  cleanup(ring);
}

// Events are matched by the generation current when they were read. A
// backend behind at a reload rereads those events later: it must match them
// by the bindings it had then (as every other backend did), not the new ones.
TEST(RunCommand, ABackendBehindAtAReloadGetsWhatItsOldBindingsMatchedBeforeIt) {
  LateBackendRun run("generation");
  constexpr int kBefore = 5000, kAfter = 300;
  ASSERT_NO_FATAL_FAILURE(run.start_and_route(kBefore));
  // "late" (down, queue full, behind) now takes only critical events.
  write_file(run.dir / "edr.json",
             run.config(R"([{"severity": "critical", "exact_severity": true, "verbosity": "trace"}])"));
  run.router->signal(SIGHUP);
  ASSERT_NO_FATAL_FAILURE(wait_for_log(run.dir / "router.log", "reloaded"));
  ASSERT_EQ(wait_child(spawn_producer(run.ring, 1, kAfter)), 0);
  ringroute::testing::HttpReceiver http({}, run.port);
  ASSERT_NO_FATAL_FAILURE(wait_drained(run.ring));
  ASSERT_EQ(run.router->stop(), 0);
  std::vector<std::pair<int, int>> expected = in_order(0, kBefore);
  for (int i = 2; i < kAfter; i += 3) expected.emplace_back(1, i);  // severity 1 + i % 3: critical is i % 3 == 2
  EXPECT_EQ(received_events(http, run.dir), expected);
}

TEST(RunCommand, EnabledBackendWithoutASinkRefusesToStart) {
  Dir dir;
  const std::string ring = dir.unique("amqp");
  write_file(dir / "edr.json", config_text(dir, ring, 1 << 20, {R"({"name": "q", "type": "amqp", "bindings": [{}]})"}));
  RouterProcess router(dir / "edr.json", dir / "router.log");
  EXPECT_EQ(router.wait_exit(5s), 2);
  const std::string text = read_text(dir / "router.log");
  EXPECT_NE(text.find("backend q: backend type \"amqp\" has no sink"), std::string::npos) << text;
  // Refused before anything was made: no ring or block left behind.
  EXPECT_FALSE(fs::exists("/dev/shm/" + ring));
  EXPECT_FALSE(fs::exists("/dev/shm/" + ring + ".perf"));
  cleanup(ring);
}

// A reload whose config run would refuse at start (an enabled backend of a
// type without a sink, a TLS file that would not load) is refused before
// anything of it starts. It was found by that backend's start: those before
// it in the config had opened their files and named perf slots, which stat
// then listed, and the TLS error came without its JSON path.
TEST(RunCommand, AReloadRunWouldRefuseAtStartLeavesNoTrace) {
  Dir dir;
  const std::string ring = one_file_instance(dir, "refused");
  RouterProcess router(dir / "edr.json", dir / "router.log");
  wait_for_ring(ring);
  const std::string missing_ca = dir / "no-such-ca.pem";
  write_file(dir / "edr.json",
             config_text(dir, ring, 1 << 20,
                         {file_backend("all", dir / "moved.ndjson", R"([{"verbosity": "trace"}])"),
                          R"({"name": "q", "type": "amqp", "bindings": [{}]})",
                          R"({"name": "t", "type": "http", "options": {"url": "https://127.0.0.1:1/x", "ca_file": ")" +
                              missing_ca + R"("}, "bindings": [{}]})"}));
  router.signal(SIGHUP);
  ASSERT_NO_FATAL_FAILURE(wait_for_log(dir / "router.log", "reload refused"));
  ASSERT_EQ(wait_child(spawn_producer(ring, 0, 10)), 0);
  ASSERT_NO_FATAL_FAILURE(wait_drained(ring));
  const std::string json = run_capture("stat --json --instance " + ring);
  ASSERT_EQ(router.stop(), 0);
  const std::string log = read_text(dir / "router.log");
  EXPECT_NE(log.find("backends[1].type: backend type \"amqp\" has no sink"), std::string::npos) << log;
  EXPECT_NE(log.find("backends[2].options.ca_file"), std::string::npos) << log;
  EXPECT_FALSE(fs::exists(dir / "moved.ndjson")) << log;
  EXPECT_EQ(read_events({dir / "all.ndjson"}).size(), 10u) << "the running config routes on";
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  ASSERT_EQ(parser.parse(json).get(doc), simdjson::SUCCESS) << json;
  EXPECT_EQ(simdjson::dom::array(doc["backends"]).size(), 1u) << json;
  cleanup(ring);
}

TEST(RunCommand, ATlsFileThatWouldNotLoadIsNamedWithItsPathAndNothingStarts) {
  Dir dir;
  const std::string ring = dir.unique("tls");
  write_file(dir / "edr.json",
             config_text(dir, ring, 1 << 20,
                         {R"({"name": "h", "type": "http", "options": {"url": "https://127.0.0.1:1/",
                              "ca_file": "/nonexistent/ca.pem"}, "bindings": [{}]})"}));
  RouterProcess router(dir / "edr.json", dir / "router.log");
  EXPECT_EQ(router.wait_exit(5s), 2);
  const std::string text = read_text(dir / "router.log");
  EXPECT_NE(text.find("backends[0].options.ca_file: "), std::string::npos) << text;
  EXPECT_FALSE(fs::exists("/dev/shm/" + ring));
  EXPECT_FALSE(fs::exists("/dev/shm/" + ring + ".perf"));
  cleanup(ring);
}

}  // namespace
