// The config file as a whole (DESIGN.md "Config file"): the Kazoo
// system_config/edr object extended with rings, router, admin and the
// ringroute backend options. `validate`, `route` and `run` all load it here,
// so a file is judged the same way everywhere.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ringroute/matcher/config.hpp"

namespace ringroute::tools {

struct RingConfig {
  std::string name = "ringroute";
  std::uint64_t size_bytes = 64ull << 20;
  std::uint32_t mode = 0660;
  std::chrono::milliseconds dead_claim_timeout{2000};
};

struct BackendConfig {
  std::string name;
  std::string type;  // file, http, socket, amqp
  bool enabled = true;
  std::string options_json = "{}";  // checked; each sink reads its own
};

struct Config {
  std::string instance = "ringroute";
  std::vector<RingConfig> rings;  // the default ring when the file names none
  unsigned workers = 1;
  std::string admin_listen = "127.0.0.1:5000";
  std::optional<std::string> admin_auth_key;
  std::vector<BackendConfig> backends;
  std::vector<matcher::BackendSpec> matching;  // same order as backends
};

struct ConfigResult {
  std::optional<Config> config;  // set only when there were no errors
  std::vector<matcher::ConfigError> errors;
};

// Checks the whole text and reports every error found, each with its JSON
// path, or for a file that is not JSON, the line, column and byte.
[[nodiscard]] ConfigResult parse_config(std::string_view text);

// Reads and parses `path`; an unreadable file is one error naming it.
[[nodiscard]] ConfigResult load_config_file(const std::string& path);

}  // namespace ringroute::tools
