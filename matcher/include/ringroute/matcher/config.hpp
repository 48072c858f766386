#pragma once
// Bindings as the config file states them (SEMANTICS.md section 2), checked
// and kept raw: the compiler resolves them into its own form, and the
// differential test's plain loop reads these same fields with its own rules.

#include <algorithm>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <simdjson.h>

#include "ringroute/event/excerpt.hpp"
#include "ringroute/event/event.hpp"
#include "ringroute/matcher/filter.hpp"

namespace ringroute::matcher {

// One problem in a config, named by its JSON path
// (`backends[2].bindings[0].severity`) and the reason.
struct ConfigError {
  std::string path;
  std::string message;
  // Said of the key at `path` or of the members beside it (unknown, given
  // twice, a header's name, a TLS option on a url in the clear), not of
  // its value: it holds whatever the value turns out to be, one that
  // could not be expanded from the environment too.
  bool of_key = false;
  // Where the config's text has it (tools::ConfigLocations); 0: not known.
  std::size_t line = 0, column = 0;
  [[nodiscard]] std::string to_string() const {
    if (path.empty()) return message;
    // A path holds its keys whole (the error is placed in the text by it):
    // one of a 10 MB key is shortened here, where it is printed.
    if (path.size() > 2 * event::kMostQuotedBytes) {
      std::size_t tail = path.size() - event::kMostQuotedBytes / 2;
      while (tail < path.size() && (static_cast<unsigned char>(path[tail]) & 0xC0) == 0x80) ++tail;  // whole sequences
      return std::string(event::quoted_excerpt(path)) + "..." + path.substr(tail) + " (a path of " +
             std::to_string(path.size()) + " bytes): " + message;
    }
    return path + ": " + message;
  }
  // As printed for the operator: with the line and column when known,
  // after the reason, so a line still starts `PATH: ` (DESIGN.md's form,
  // which scripts split on).
  [[nodiscard]] std::string located() const {
    if (line == 0) return to_string();
    return to_string() + " at line " + std::to_string(line) + ", column " + std::to_string(column);
  }
};

// Collects every error found, so a user fixes a config in one pass.
class ConfigErrors {
 public:
  void add(std::string path, std::string message) {
    list_.push_back({std::move(path), std::move(message)});
  }
  // An error of the key itself (see ConfigError::of_key).
  void add_of_key(std::string path, std::string message) {
    list_.push_back({std::move(path), std::move(message), true});
  }
  [[nodiscard]] bool empty() const noexcept { return list_.empty(); }
  [[nodiscard]] std::size_t size() const noexcept { return list_.size(); }
  [[nodiscard]] const std::vector<ConfigError>& list() const noexcept { return list_; }

 private:
  std::vector<ConfigError> list_;
};

// A level key: one level, or an array of them (the exact flag applies only
// to a single level, as in Kazoo).
template <class Level>
struct LevelSpec {
  std::vector<Level> levels;
  bool is_array = false;
  bool exact = false;
};

struct BindingSpec {
  std::vector<std::string> accounts{"*"};  // "*" anywhere matches every event
  bool include_descendants = false;
  std::vector<std::string> apps{"*"};
  LevelSpec<event::Severity> severity{{event::Severity::ok}, false, false};
  LevelSpec<event::Verbosity> verbosity{{event::Verbosity::info}, false, false};
  std::optional<std::string> topic;  // AMQP topic pattern, checked
  std::shared_ptr<const filter::Expression> filter;  // null: no filter
};

struct BackendSpec {
  std::string name;
  bool enabled = true;
  std::vector<BindingSpec> bindings;
};

// Whether a binding's account or app list names "*" (then it is every one).
[[nodiscard]] inline bool contains_any(const std::vector<std::string>& names) noexcept {
  return std::find(names.begin(), names.end(), "*") != names.end();
}

// A binding's accounts times its apps: each (account, app) pair is compiled
// on its own. Past these, a config is refused (a binding, and the config's
// bindings together), before compiling it would take gigabytes.
inline constexpr std::uint64_t kMaxLeavesPerBinding = 1'000'000;
inline constexpr std::uint64_t kMaxLeaves = 16'000'000;
// As compiled: a "*" in a list makes it one any-node, and with
// include_descendants an account is both an exact and an ancestor node.
[[nodiscard]] inline std::uint64_t leaves_of(const BindingSpec& binding) noexcept {
  // An empty list compiles to no leaf at all: counted as one, an upper bound.
  auto any = [](const std::vector<std::string>& names) { return names.empty() || contains_any(names); };
  const std::uint64_t accounts =
      any(binding.accounts) ? 1 : std::uint64_t{binding.accounts.size()} * (binding.include_descendants ? 2 : 1);
  const std::uint64_t apps = any(binding.apps) ? 1 : binding.apps.size();
  return accounts * apps;
}
// What the limits above count: a binding's leaves, each with a copy of its
// topic pattern, a node a word (counted by leaves alone, a 20 KB config of
// 1,000 accounts, 1,000 apps and a 100-word topic passed, and would have
// compiled to tens of gigabytes).
[[nodiscard]] inline std::uint64_t compiled_nodes_of(const BindingSpec& binding) noexcept {
  const std::uint64_t words =
      binding.topic ? 1 + static_cast<std::uint64_t>(std::count(binding.topic->begin(), binding.topic->end(), '.'))
                    : 0;
  return leaves_of(binding) * (1 + words);
}

// Reads `bindings` (an array of binding objects) at `path`, adding every
// problem to `errors`. Returns the bindings that were valid.
std::vector<BindingSpec> parse_bindings(simdjson::dom::element bindings, const std::string& path,
                                        ConfigErrors& errors);

// One binding object at `path`; nullopt when it had errors.
std::optional<BindingSpec> parse_binding(simdjson::dom::element binding, const std::string& path,
                                         ConfigErrors& errors);

// The JSON type's name as errors write it ("string", "array", ...).
[[nodiscard]] std::string_view json_type_name(simdjson::dom::element_type type) noexcept;

// `text` onto `out` with bytes below 0x20 as \u00XX and, with `quotes`,
// '"' and '\\' after a backslash: the inside of a JSON string literal.
void append_escaped(std::string& out, std::string_view text, bool quotes = true);
// `"text"` with quotes and escapes, for quoting user input in messages.
[[nodiscard]] std::string quoted(std::string_view text);
// `text` with its bytes below 0x20 as \u00XX, unquoted: a message quoting
// text as another library wrote it (RE2's) stays on its line.
[[nodiscard]] std::string control_escaped(std::string_view text);
// `path.key` for a key of letters, digits, '_' and '-'; `path["k\ey"]`
// (quoted, escaped) for any other, so an error's path stays on its line and
// names the key whatever bytes it holds.
[[nodiscard]] std::string member_path(std::string_view path, std::string_view key);

}  // namespace ringroute::matcher
