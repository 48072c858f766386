// The config file as a whole (DESIGN.md "Config file"): the Kazoo
// system_config/edr object extended with rings, router, admin and the
// ringroute backend options. `validate`, `route` and `run` all load it here,
// so a file is judged the same way everywhere.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ringroute/ingest/router.hpp"
#include "ringroute/matcher/config.hpp"
#include "ringroute/perf/block.hpp"

namespace ringroute::tools {

// A ring and a backend as the router takes them: the config is read straight
// into the router's own types.
using RingConfig = ingest::RouterRing;
using BackendConfig = ingest::RouterBackend;

struct Config {
  std::string instance = "ringroute";
  std::vector<RingConfig> rings;  // the default ring when the file names none
  unsigned workers = 1;
  std::uint32_t removed_backend_drain_ms = 5000;
  std::string admin_listen = "127.0.0.1:5000";
  std::optional<std::string> admin_auth_key;
  std::vector<BackendConfig> backends;
  std::vector<matcher::BackendSpec> matching;  // same order as backends
};

struct ConfigResult {
  std::optional<Config> config;  // set only when there were no errors
  std::vector<matcher::ConfigError> errors;
  // Each enabled backend with a TLS url, its options as read, for
  // tls_file_errors(); listed whatever the errors.
  struct TlsBackend {
    std::string options_path;  // "backends[2].options"
    std::string options_json;
  };
  std::vector<TlsBackend> tls_backends;
  // The text parsed, for placing errors found later (tls_file_errors()) at
  // their lines; empty when it was not JSON.
  std::string source;
};

// Checks the whole text and reports every error found, each with its JSON
// path and where the text has it (ConfigError::line, column), or for a file
// that is not JSON, the line, column and byte in the message.
[[nodiscard]] ConfigResult parse_config(std::string_view text);

// The look past the text: the TLS files of enabled backends, loaded as
// their sinks will load them at start, each that would not load named with
// its JSON path; every file at fault, and whatever else `result` found
// wrong. Apart from parse_config(), so that commands which only read a
// config for its names (stat, emit) do not depend on them.
[[nodiscard]] std::vector<matcher::ConfigError> tls_file_errors(const ConfigResult& result);

// Prints every error of `result` on stderr, one a line after `indent`;
// true when there were some.
bool report_config_errors(const ConfigResult& result, const char* indent = "");

// What validate, route and run check before they go on (DESIGN.md: they
// check the whole file the same way): every error of `result` and of its
// TLS files, printed as above; true when there were some.
bool report_config_and_tls_file_errors(const ConfigResult& result);

// What a valid config asks for that this build does not do, one note
// each (validate and run print them): DESIGN.md's admin API, which listens
// when a key is set (`admin.auth_key` or the AUTH_KEY environment
// variable) and is not built yet; `router.workers` past one a ring.
[[nodiscard]] std::vector<std::string> config_notes(const Config& config);

// The longest instance name (a perf block's file, /dev/shm/NAME.perf).
inline constexpr std::size_t kMaxInstanceBytes = 200;
// Ring and backend names are keys of the perf block's slots, which hold
// this many bytes (a name that fills one has no terminating zero): a longer
// name would be cut there, and two names alike up to the cut would share
// one slot (its counters, batches and ring position).
inline constexpr std::size_t kMaxNameBytes = perf::kNameBytes;

// Why `name` is not a valid instance, ring or backend name (1 to `max`
// characters of A-Z a-z 0-9 _ - ., and with `file_name` not . or ..), or
// empty: the config's rule, which `stat` and `emit` hold --instance and
// --ring to as well.
[[nodiscard]] std::string name_problem(std::string_view name, std::size_t max, bool file_name = false);

// The largest config file read: far past a million bindings written out,
// and bounded, so a path to something without end is an error, not memory
// taken until the process is killed.
inline constexpr std::size_t kMostConfigBytes = std::size_t{64} << 20;

// Reads and parses `path`; an unreadable file (or one past kMostConfigBytes)
// is one error naming it.
[[nodiscard]] ConfigResult load_config_file(const std::string& path);

}  // namespace ringroute::tools
