// Where in a config's text each JSON path is, so that an error found after
// parsing (a wrong value, an unknown key) names its line and column as a
// syntax error does, not only its path.
#pragma once

#include <cstddef>
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

class ConfigLocations {
 public:
  // `text` must be JSON that parses (the config as written, its bare
  // environment references blanked to the same length): offsets are its.
  explicit ConfigLocations(std::string_view text);

  // Sets each error's line and column: an error of a key (unknown, given
  // twice) at the key, the n-th "duplicate key" at a path at the key's
  // (n+1)-th occurrence; any other at its value. A path the text lacks (a
  // required member left out) is placed at the nearest member it is under.
  void locate(std::vector<matcher::ConfigError>& errors) const;

  struct Where {
    std::size_t key;    // the key's opening quote; the value's offset for array items and the root
    std::size_t value;  // the value's first byte
  };

 private:
  [[nodiscard]] const std::vector<Where>* find(const std::string& path) const;
  std::string_view text_;
  // Every member and item by path, each occurrence in text order (a key
  // given twice has two).
  std::unordered_map<std::string, std::vector<Where>> paths_;
};

}  // namespace ringroute::tools
