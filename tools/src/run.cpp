// `ringroute run --config FILE`: the router's main job, until SIGTERM/SIGINT.
// SIGHUP reopens every file (logrotate) and reloads the config; a bad file
// keeps the old config.
#include <dirent.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <exception>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <system_error>
#include <thread>

#include "ringroute/ingest/router.hpp"
#include "ringroute/sinks/backend.hpp"
#include "ringroute/tools/commands.hpp"
#include "ringroute/tools/config.hpp"

namespace ringroute::tools {

ingest::RouterConfig router_config(const Config& config) {
  return {config.instance, config.rings, config.backends, config.matching,
          std::chrono::milliseconds(config.removed_backend_drain_ms)};
}

namespace {

struct RunArgs {
  std::string config;
  unsigned drain_ms = 5000;
};

void log_line(const std::string& text) { std::fprintf(stderr, "ringroute: %s\n", text.c_str()); }

// The log goes through a pipe of the router's own to a thread that writes
// it to the stderr the router was given. Every thread writes its lines
// (fprintf to stderr, wherever it is) into that pipe without ever waiting:
// its write end is non-blocking, and a line that finds it full (1 MiB where
// the kernel allows, else 64 KiB) is lost, not waited for, or cut where it
// is longer than 4 KiB. A log reader that stops reading (a stuck pipe to
// journald or `logger`, a terminal on hold) then holds only the relay: a
// worker or a sink thread waiting in fprintf held its ring's delivery, and
// the main thread a reload and the stop, for as long as the reader did.
// Not in a sanitizer's build: its report, written to descriptor 2 just
// before the process ends, would be lost in the pipe.
class LogRelay {
 public:
  LogRelay() {
#if !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
    int ends[2];
    if (::pipe2(ends, O_CLOEXEC) != 0) return;  // the log goes straight to stderr, as it did
    const int given = ::fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, 3);
    const int flags = ::fcntl(ends[1], F_GETFL);
    if (given < 0 || flags < 0 || ::fcntl(ends[1], F_SETFL, flags | O_NONBLOCK) != 0) {
      if (given >= 0) ::close(given);
      ::close(ends[0]);
      ::close(ends[1]);
      return;
    }
    (void)::fcntl(ends[0], F_SETPIPE_SZ, 1 << 20);  // room for a burst; the default 64 KiB where refused
    auto state = std::make_shared<State>();
    // Started before stderr is moved onto the pipe: a thread that can't
    // start (a task limit) leaves stderr as it was, to say so. It holds
    // what it reads from by value: one left writing to a stuck stderr at
    // the end (see finish()) outlives this object.
    try {
      std::thread([state, from = ends[0], to = given] {
        char buffer[16 * 1024];
        for (;;) {
          const ssize_t got = ::read(from, buffer, sizeof buffer);
          if (got < 0 && errno == EINTR) continue;
          if (got <= 0) break;  // every write end closed: the log has ended
          for (ssize_t put = 0; put < got;) {
            const ssize_t n = ::write(to, buffer + put, static_cast<std::size_t>(got - put));
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) break;  // a stderr that takes nothing (EPIPE, a full disk): the line goes
            put += n;
          }
        }
        ::close(from);
        ::close(to);
        std::lock_guard lock(state->mutex);
        state->ended = true;
        state->ended_changed.notify_all();
      }).detach();
    } catch (const std::system_error&) {
      ::close(given);
      ::close(ends[0]);
      ::close(ends[1]);
      return;
    }
    // Moved: stderr is the pipe's only write end, whose close at finish()
    // ends the relay. (A failed dup2 leaves stderr as it was; the relay
    // then ends at the close below, having nothing to read.)
    if (::dup2(ends[1], STDERR_FILENO) == STDERR_FILENO) given_ = ::fcntl(given, F_DUPFD_CLOEXEC, 3);
    ::close(ends[1]);
    if (given_ >= 0) state_ = std::move(state);
#endif
  }
  LogRelay(const LogRelay&) = delete;
  LogRelay& operator=(const LogRelay&) = delete;
  ~LogRelay() { finish(); }

  // Gives stderr back, with what the relay holds written first, waiting up
  // to `limit` for a stderr that takes nothing: what it still holds then
  // is lost with the process, which is not held by its log.
  void finish(std::chrono::milliseconds limit = std::chrono::seconds(2)) {
    if (!state_) return;
    std::fflush(stderr);
    ::dup2(given_, STDERR_FILENO);  // the pipe's last write end closed: the relay reads to its end
    ::close(given_);
    given_ = -1;
    std::unique_lock lock(state_->mutex);
    state_->ended_changed.wait_for(lock, limit, [&] { return state_->ended; });
    state_.reset();
  }

 private:
  struct State {
    std::mutex mutex;
    std::condition_variable ended_changed;
    bool ended = false;
  };
  int given_ = -1;  // the stderr the router was given, to put back at finish()
  std::shared_ptr<State> state_;
};

// The running router's relay: the watchdog's last line before _exit, and
// an exception that ends the process (std::terminate) said where it shows.
LogRelay* log_relay_of_run = nullptr;
std::terminate_handler terminate_as_before = nullptr;
[[noreturn]] void terminate_with_the_log_out() {
  if (log_relay_of_run != nullptr) log_relay_of_run->finish(std::chrono::milliseconds(500));
  if (terminate_as_before != nullptr) terminate_as_before();  // the runtime's: says what was thrown, aborts
  std::abort();
}

// Whether a SIGTERM or SIGINT waits (blocked, so pending) to be taken.
bool stop_pending() {
  sigset_t pending;
  return sigpending(&pending) == 0 && (sigismember(&pending, SIGTERM) == 1 || sigismember(&pending, SIGINT) == 1);
}

bool reload_pending() {
  sigset_t pending;
  return sigpending(&pending) == 0 && sigismember(&pending, SIGHUP) == 1;
}

// After the drain the sinks are told to stop at once: a network write ends
// within a second or so, but a file write can't be cut short, and one stuck
// on a hung mount (hard NFS, a dead FUSE server) held the stop for good,
// until a supervisor's SIGKILL. Past `kStopGrace` after the drain, or at a
// second SIGTERM or SIGINT, the process exits without waiting further: what
// was not written stays in the ring (the next start writes it), as after a
// crash, and a `drop` backend's open batches are gone, as at any stop.
constexpr std::chrono::seconds kStopGrace{2};

class StopWatchdog {
 public:
  explicit StopWatchdog(std::chrono::steady_clock::time_point give_up)
      : thread_([this, give_up] {
          std::unique_lock lock(mutex_);
          while (!done_) {
            const auto now = std::chrono::steady_clock::now();
            if (now >= give_up || stop_pending()) {
              log_line(now >= give_up ? "the stop has not ended " + std::to_string(kStopGrace.count()) +
                                            " s after its drain: a sink thread is stuck (a file on a hung mount?); "
                                            "exiting without it, and what was not written stays in the ring for "
                                            "the next start"
                                      : "stopping again: exiting now, and what was not written stays in the ring "
                                        "for the next start");
              // Its line out first, if the log's reader takes it soon.
              if (log_relay_of_run != nullptr) log_relay_of_run->finish(std::chrono::milliseconds(500));
              ::_exit(1);
            }
            done_changed_.wait_for(lock, std::chrono::milliseconds(50));
          }
        }) {}
  StopWatchdog(const StopWatchdog&) = delete;
  StopWatchdog& operator=(const StopWatchdog&) = delete;
  ~StopWatchdog() {
    {
      std::lock_guard lock(mutex_);
      done_ = true;
    }
    done_changed_.notify_all();
    thread_.join();
  }

 private:
  std::mutex mutex_;
  std::condition_variable done_changed_;
  bool done_ = false;
  std::thread thread_;  // last: started once the members it reads are made
};

// Descriptors open now: those the router started with, and its log's.
std::size_t open_descriptors() {
  std::size_t count = 0;
  if (DIR* dir = ::opendir("/proc/self/fd")) {
    while (const dirent* entry = ::readdir(dir)) count += entry->d_name[0] != '.' ? 1 : 0;
    ::closedir(dir);
    return count - 1;  // the listing's own
  }
  return 3;
}

// The most descriptors one backend has the router hold: its file, or its
// connections under load; none where it runs no sink.
std::size_t most_descriptors(const BackendConfig& backend) {
  if (!backend.enabled || !sinks::missing_sink(backend.type).empty()) return 0;
  return sinks::most_descriptors(backend.type, backend.options_json);
}

// The most descriptors `config` has the router hold: each backend's, each
// ring's two (its shared memory kept open, and the read-only one a
// worker's checks read), the perf block.
std::size_t most_descriptors(const Config& config) {
  constexpr std::size_t kPerRing = 2, kPerfBlock = 1;
  std::size_t most = kPerfBlock + kPerRing * config.rings.size();
  for (const auto& backend : config.backends) most += most_descriptors(backend);
  return most;
}

// What the backends of `running` that a reload to `next` replaces or
// removes hold while they drain (up to router.removed_backend_drain_ms), on
// top of what `next` holds: a reload's peak.
std::size_t most_descriptors_leaving(const std::vector<BackendConfig>& running, const Config& next) {
  std::size_t most = 0;
  for (const BackendConfig& backend : running) {
    const bool kept = std::any_of(next.backends.begin(), next.backends.end(),
                                  [&](const BackendConfig& b) { return ingest::keeps_running(backend, b); });
    if (!kept) most += most_descriptors(backend);
  }
  return most;
}

// A limit on open descriptors too small for the config was met only later,
// as files and connections past it failing with "Too many open files"
// (retried for good, the events of those backends held). The soft limit is
// raised to the hard one first, as systemd's own services do (its default
// soft limit, 1024, is kept low for programs that use select(), which
// ringroute does not); what still falls short is said at start and at each
// reload, with what to raise.
class DescriptorLimit {
 public:
  DescriptorLimit() {
    rlimit limit{};
    if (::getrlimit(RLIMIT_NOFILE, &limit) != 0) return;
    if (limit.rlim_cur < limit.rlim_max) {
      const rlimit raised{limit.rlim_max, limit.rlim_max};
      if (::setrlimit(RLIMIT_NOFILE, &raised) == 0) limit = raised;
    }
    soft_ = limit.rlim_cur;
    hard_ = limit.rlim_max;
    before_router_ = open_descriptors();
  }

  // `running`: the backends of the config a reload to `config` leaves,
  // whose replaced and removed ones still hold theirs while they drain.
  void check(const Config& config, const std::vector<BackendConfig>* running = nullptr) const {
    if (soft_ == RLIM_INFINITY) return;
    const std::size_t leaving = running != nullptr ? most_descriptors_leaving(*running, config) : 0;
    const std::size_t most = before_router_ + most_descriptors(config) + leaving;
    if (most <= soft_) return;
    log_line("ulimit -n is " + std::to_string(soft_) +
             (hard_ == soft_ ? std::string(" (the hard limit)") : " (hard limit " + std::to_string(hard_) + ")") +
             (leaving != 0 ? ", and this reload may hold up to " + std::to_string(most) +
                                 " descriptors while the backends it replaces or removes drain (" +
                                 std::to_string(most - leaving) + " after)"
                           : ", and this config may hold up to " + std::to_string(most) + " descriptors") +
             " (files, rings, and max_connections a network backend under load): past the limit a file "
             "or connection fails with \"Too many open files\" and is retried while its backend's events wait. "
             "Raise the hard limit (LimitNOFILE= in a systemd unit, ulimit -Hn in a shell)");
  }

 private:
  rlim_t soft_ = RLIM_INFINITY, hard_ = RLIM_INFINITY;
  std::size_t before_router_ = 0;
};

int run_router(const RunArgs& args) {
  // Signals are taken synchronously by this thread; every thread the router
  // starts inherits the mask, so none of them is interrupted. Blocked first
  // of all: loading the config can take a while (a path on a slow mount),
  // and a SIGHUP then was its default, death.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  // A file past the process's size limit (systemd's LimitFSIZE=, ulimit -f)
  // is then a write that fails with EFBIG, which the file sink retries and
  // says; SIGXFSZ's default is death and a core, and the next start hit the
  // limit again: a crash loop. A log line to a pipe whose reader went away
  // (`run 2>&1 | logger`, logger restarted) is an EPIPE, not a death: the
  // sockets' sends say MSG_NOSIGNAL, stderr can't. Here, not in the Router:
  // a library must not change what the process it is in does with a signal.
  ::signal(SIGXFSZ, SIG_IGN);
  ::signal(SIGPIPE, SIG_IGN);
  LogRelay log_relay;
  log_relay_of_run = &log_relay;
  struct Forgotten {
    ~Forgotten() { log_relay_of_run = nullptr; }
  } forgotten_when_done;
  terminate_as_before = std::set_terminate(terminate_with_the_log_out);
  const DescriptorLimit descriptor_limit;
  ConfigResult loaded = load_config_file(args.config);
  // The TLS files too, so one that would not load is named with its JSON
  // path, as validate names it, not only by the sink that fails to start.
  if (report_config_and_tls_file_errors(loaded)) return 2;
  // A stop that came while the config loaded (a path on a slow mount)
  // is taken before anything starts: the start compiles the bindings and
  // makes the rings, seconds for a large config, and only then took it.
  if (stop_pending()) {
    log_line("stopped before the start (a stop signal came while the config loaded): nothing was read");
    return 0;
  }

  std::unique_ptr<ingest::Router> router;
  try {
    router = std::make_unique<ingest::Router>(router_config(*loaded.config));
  } catch (const std::exception& e) {
    log_line(e.what());
    return 2;
  }
  std::size_t enabled = 0;
  for (const auto& b : loaded.config->backends) enabled += b.enabled ? 1 : 0;
  log_line("running: instance " + loaded.config->instance + ", " + std::to_string(loaded.config->rings.size()) +
           " ring(s) starting with " + loaded.config->rings[0].name + ", " + std::to_string(enabled) +
           " backend(s) enabled; SIGHUP reloads " + args.config + ", SIGTERM stops");
  for (const std::string& note : config_notes(*loaded.config)) log_line(note);
  descriptor_limit.check(*loaded.config);
  std::vector<BackendConfig> running_backends = loaded.config->backends;  // the config running now
  std::optional<std::chrono::steady_clock::time_point> stop_until;  // a stop seen during a reload
  std::optional<std::string> failure;
  for (;;) {
    // Woken now and then to see whether a worker stopped on its own.
    const timespec wake{0, 200'000'000};
    int signal = sigtimedwait(&signals, nullptr, &wake);
    failure = router->failure();  // before a reload too: a failed worker takes no config
    if (signal < 0 && !failure) continue;
    // A stop waiting behind a SIGHUP (sigtimedwait takes the lowest number
    // first) goes first: a reload then started backends only to stop them.
    if (signal == SIGHUP && !failure && stop_pending()) {
      const timespec now{0, 0};
      signal = sigtimedwait(&signals, nullptr, &now);
      if (signal == SIGHUP) signal = sigtimedwait(&signals, nullptr, &now);  // another HUP came between
    }
    if (signal == SIGHUP && !failure) {
      router->reopen();
      ConfigResult next = load_config_file(args.config);
      // What the start checks, checked before anything of the new config
      // starts: a TLS file that would not load, or an enabled backend of a
      // type without a sink, was found only by the backend's start, after
      // the backends before it in the config had opened their files and
      // named their perf slots (a refused reload's traces in `stat`), and
      // said without the JSON path.
      if (next.errors.empty()) {
        next.errors = tls_file_errors(next);
        for (std::size_t i = 0; i < next.config->backends.size(); ++i) {
          const auto& backend = next.config->backends[i];
          if (std::string why = sinks::missing_sink(backend.type); backend.enabled && !why.empty()) {
            next.errors.push_back({"backends[" + std::to_string(i) + "].type", why});
          }
        }
      }
      if (!next.errors.empty()) {
        // Every line of it prefixed, and the file named: the errors went
        // out bare, lines a log reader could not tell as the router's.
        log_line("reload refused, keeping the running config: " + args.config + " has " +
                 std::to_string(next.errors.size()) + (next.errors.size() == 1 ? " error:" : " errors:"));
        report_config_errors(next, "ringroute:   ");
        continue;
      }
      // A SIGTERM or SIGINT that comes while the old backends are given
      // their time stays pending (blocked here). Its drain counts from when
      // it is seen and bounds the whole stop, those waits included.
      // A SIGHUP that comes meanwhile waits for this reload to end, which
      // may be the removed backends' whole drain (up to 10 minutes as
      // configured): said once, or the new config seemed ignored.
      bool said_reload_waits = false;
      auto stop_deadline = [&]() -> std::optional<std::chrono::steady_clock::time_point> {
        if (!stop_until && stop_pending()) {
          stop_until = std::chrono::steady_clock::now() + std::chrono::milliseconds(args.drain_ms);
        }
        if (!said_reload_waits && reload_pending()) {
          said_reload_waits = true;
          log_line("SIGHUP: taken once the reload in progress ends (its removed or replaced backends are given up to "
                   "their drain to write what they hold)");
        }
        return stop_until;
      };
      ingest::RouterConfig next_router = router_config(*next.config);
      // Said before (the peak is while the reload's old backends drain,
      // which the reload waits out), unless the reload is refused outright.
      if (!router->refusal(next_router)) descriptor_limit.check(*next.config, &running_backends);
      if (auto why = router->reload(std::move(next_router), stop_deadline)) {
        log_line("reload refused, keeping the running config: " + *why);
      } else {
        log_line("reloaded " + args.config);
        for (const std::string& note : config_notes(*next.config)) log_line(note);
        running_backends = next.config->backends;
      }
      continue;
    }
    log_line(failure ? "stopping (" + *failure + "): draining"
                     : std::string("stopping (") + (signal == SIGINT ? "SIGINT" : "SIGTERM") + "): draining");
    // A stop seen during a reload has spent part of its drain there.
    const auto now = std::chrono::steady_clock::now();
    const auto drain = stop_until ? std::max(std::chrono::steady_clock::duration::zero(), *stop_until - now)
                                  : std::chrono::steady_clock::duration(std::chrono::milliseconds(args.drain_ms));
    // Through the router's end: its sinks' last syncs and closes are in it.
    StopWatchdog watchdog(now + drain + kStopGrace);
    router->stop(std::chrono::duration_cast<std::chrono::milliseconds>(drain));
    // A worker may fail during the drain too (its ring cut short then).
    if (!failure) {
      failure = router->failure();
      if (failure) log_line("during the drain, " + *failure);
    }
    const bool drained = router->drained();
    const bool ring_released = router->rings_released_at_stop();
    const std::uint64_t dropped = router->dropped_at_stop();
    // Which backends left what: "web 300, archive 12".
    std::string dropped_by, kept_by;
    for (const ingest::Router::LeftAtStop& left : router->left_at_stop()) {
      for (auto [count, list] : {std::pair{left.dropped, &dropped_by}, std::pair{left.in_ring, &kept_by}}) {
        if (count != 0) *list += (list->empty() ? "" : ", ") + left.backend + " " + std::to_string(count);
      }
    }
    if (!kept_by.empty()) kept_by = " (handed over and not written: " + kept_by + ")";
    // A ring cut short keeps nothing for the next start.
    std::string kept = "stays in the ring for the next start";
    for (std::size_t i = 0; i < router->lost_rings().size(); ++i) {
      kept += (i == 0 ? ", except what came from " : ", ") + router->lost_rings()[i];
    }
    if (!router->lost_rings().empty()) kept += ": cut short, that is lost";
    router.reset();
    if (dropped != 0) {
      // The rest of the ring is released when nothing else was left: no
      // "other backends" to speak of then. (A ring cut short with all it
      // had read written lost only what it had not read, which the
      // worker's failure said; as where nothing was dropped.)
      log_line("stopped; " + std::to_string(dropped) +
               " events handed to `drop` backends were not written and are dropped (counted as "
               "dropped.shutdown in stat)" + (dropped_by.empty() ? "" : ": " + dropped_by) +
               (ring_released ? std::string() : "; what other backends did not write " + kept + kept_by));
    } else {
      log_line(drained ? "stopped, everything read was written" : "stopped; what was not written " + kept + kept_by);
    }
    return failure ? 1 : 0;
  }
}

}  // namespace

Run add_run(CLI::App& app) {
  auto args = std::make_shared<RunArgs>();
  CLI::App* cmd = app.add_subcommand("run", "run the router until SIGTERM or SIGINT (SIGHUP reloads)");
  cmd->add_option("--config", args->config, "config file")->required();
  cmd->add_option("--drain-ms", args->drain_ms, "on stop, how long to wait for sinks to write what they hold")
      ->capture_default_str()
      ->check(whole_number())
      ->check(CLI::Range(0u, std::numeric_limits<unsigned>::max()));
  return [args] { return run_router(*args); };
}

}  // namespace ringroute::tools
