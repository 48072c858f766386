// Where in a config's text each JSON path is, so that an error found after
// parsing (a wrong value, an unknown key) names its line and column as a
// syntax error does, not only its path.
#pragma once

#include <cstddef>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "ringroute/matcher/config.hpp"

namespace ringroute::tools {

// A position in a text: lines and columns count from 1, columns in
// characters (UTF-8 sequences), as an editor shows them.
struct TextPosition {
  std::size_t line = 1, column = 1;
};
[[nodiscard]] TextPosition text_position(std::string_view text, std::size_t byte) noexcept;

// Sets each error's line and column in `text`, JSON that parses (the
// config as written, its bare environment references blanked to the same
// length): an error of a key (unknown, given twice) at the key, the n-th
// "duplicate key" at a path at the key's (n+1)-th occurrence; any other at
// its value. A path the text lacks (a required member left out) is placed
// at the nearest member it is under.
void locate_errors(std::string_view text, std::vector<matcher::ConfigError>& errors);

// For each of `bytes` (ascending) of `text`, JSON that parses, the path of
// the value (in a container: a member's or an item's, not a key) that
// starts there; nullopt where none does. One walk for them all. The
// numbers in the text are not read, so one too large to hold is found all
// the same.
[[nodiscard]] std::vector<std::optional<std::string>> paths_of_values_at(std::string_view text,
                                                                        std::span<const std::size_t> bytes);

}  // namespace ringroute::tools
