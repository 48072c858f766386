#pragma once
// Environment variables in a config's string values, as Vector and Fluent
// Bit users write them: `${NAME}`, `${NAME:-default}` (unset or empty),
// `${NAME-default}` (unset only); `$${` is a literal `${`. Secrets (an
// Authorization header, a key's passphrase) and per-host paths then stay out
// of the file. Internal to ringroute::tools.

#include <cstdlib>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ringroute/matcher/config.hpp"

namespace ringroute::tools {

// Where a name's value comes from: std::getenv, or a table in tests.
using Lookup = std::function<std::optional<std::string_view>(const std::string& name)>;

[[nodiscard]] inline std::optional<std::string_view> from_environment(const std::string& name) {
  const char* value = std::getenv(name.c_str());
  if (value == nullptr) return std::nullopt;
  return std::string_view(value);
}

struct Expanded {
  std::string text;  // `text` as given when nothing was expanded (changed false)
  bool changed = false;
  std::vector<matcher::ConfigError> errors;  // each at the string value's JSON path; values never echoed
};

// Expands the references in every string value (not in keys) of `json`,
// which must already parse (with_bare_references_blanked): the result is
// the same document with the values in place, JSON-escaped, so it parses
// too and numbers keep the text they were written with. Works on the text
// as written: `\u0024{` is not a reference. A reference written bare, as
// a value outside any string (`"max_events": ${QUEUE:-1000}`), goes in as
// its value is, which must be a JSON number, true, false or null: numbers
// and switches can come from the environment too.
[[nodiscard]] Expanded expand_environment(std::string_view json, const Lookup& lookup = from_environment);

// Where each bare reference (outside any string) that is not a whole value
// is (`1${N}`, `-${N}`, `${N}x`): one stands for a whole number, true,
// false or null.
[[nodiscard]] std::vector<std::size_t> misplaced_bare_references(std::string_view json);

// `json` with each bare reference replaced by a 0 padded with spaces to its
// length, for the syntax check: a syntax error elsewhere keeps the file's
// line and column.
[[nodiscard]] std::string with_bare_references_blanked(std::string_view json);

}  // namespace ringroute::tools
