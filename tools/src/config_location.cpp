#include "config_location.hpp"

#include <algorithm>
#include <optional>
#include <span>
#include <unordered_set>
#include <utility>

#include <simdjson.h>

namespace ringroute::tools {
namespace {

namespace ondemand = simdjson::ondemand;

struct Where {
  std::size_t key;    // the key's opening quote; the value's offset for array items and the root
  std::size_t value;  // the value's first byte
};

// Each member and item by path, each occurrence in text order (a key given
// twice has two).
using Locations = std::unordered_map<std::string, std::vector<Where>>;

// Calls member(name, key_at, child) for each member of an object value
// (`key_at` its key's opening quote) and item(index, child) for each item
// of an array; nothing for a scalar. Each says whether to go on. False
// once one says stop, or simdjson reports an error.
template <class Member, class Item>
bool for_each_child(ondemand::value value, Member&& member, Item&& item) {
  ondemand::json_type type;
  if (value.type().get(type) != simdjson::SUCCESS) return false;
  if (type == ondemand::json_type::object) {
    ondemand::object object;
    if (value.get_object().get(object) != simdjson::SUCCESS) return false;
    for (auto entry : object) {
      ondemand::field field;
      std::string_view name;
      if (std::move(entry).get(field) != simdjson::SUCCESS) return false;
      // raw() is just past the key's opening quote; read before
      // unescaped_key(), which consumes the key.
      const char* key_at = field.key().raw() - 1;
      if (field.unescaped_key().get(name) != simdjson::SUCCESS) return false;
      if (!member(name, key_at, field.value())) return false;
    }
  } else if (type == ondemand::json_type::array) {
    ondemand::array array;
    if (value.get_array().get(array) != simdjson::SUCCESS) return false;
    std::size_t index = 0;
    for (auto entry : array) {
      ondemand::value element;
      if (std::move(entry).get(element) != simdjson::SUCCESS) return false;
      if (!item(index++, element)) return false;
    }
  }
  return true;
}

// Walks the values under `value` whose paths (as the config's checks spell
// them: matcher::member_path, "[i]") are in `wanted`, recording where each
// is. Only those: every path of a text, each spelled out whole, is memory
// of its depth squared (a thousand nested keys of 16 KiB took gigabytes).
class PathWalk {
 public:
  PathWalk(const char* base, const std::unordered_set<std::string>& wanted, Locations& paths)
      : base_(base), wanted_(wanted), paths_(paths) {}

  // False once simdjson reports an error: the walk stops, and what it
  // recorded so far stays (the text parsed whole once, so this is not
  // expected).
  bool walk(ondemand::value value, const std::string& path, const char* key) {
    if (!wanted_.contains(path)) return true;
    const char* at = nullptr;
    if (value.current_location().get(at) != simdjson::SUCCESS) return false;
    const auto offset = static_cast<std::size_t>(at - base_);
    paths_[path].push_back({key != nullptr ? static_cast<std::size_t>(key - base_) : offset, offset});
    return for_each_child(
        value,
        [&](std::string_view name, const char* key_at, ondemand::value child) {
          return walk(child, matcher::member_path(path, name), key_at);
        },
        [&](std::size_t index, ondemand::value child) {
          return walk(child, path + "[" + std::to_string(index) + "]", nullptr);
        });
  }

 private:
  const char* base_;
  const std::unordered_set<std::string>& wanted_;
  Locations& paths_;
};

// Finds the values that start at given bytes, in one walk, keeping the
// path to where it is as a stack of keys and indexes (joined for each
// found): a path string made at each level was memory of the depth
// squared.
class ValuesAt {
 public:
  ValuesAt(const char* base, std::span<const std::size_t> bytes)
      : base_(base), bytes_(bytes), found_(bytes.size()) {}

  // False once every byte is passed (the walk stops), or simdjson reports
  // an error.
  bool walk(ondemand::value value) {
    const char* at = nullptr;
    if (value.current_location().get(at) != simdjson::SUCCESS) return false;
    const auto offset = static_cast<std::size_t>(at - base_);
    // Values come in text order: a byte passed starts no value.
    while (next_ < bytes_.size() && bytes_[next_] < offset) ++next_;
    if (next_ < bytes_.size() && bytes_[next_] == offset) found_[next_++] = path();
    if (next_ == bytes_.size()) return false;
    return for_each_child(
        value,
        [&](std::string_view name, const char*, ondemand::value child) {
          steps_.push_back({std::string(name), 0, true});
          const bool go_on = walk(child);
          steps_.pop_back();
          return go_on;
        },
        [&](std::size_t index, ondemand::value child) {
          steps_.push_back({{}, index, false});
          const bool go_on = walk(child);
          steps_.pop_back();
          return go_on;
        });
  }
  [[nodiscard]] std::vector<std::optional<std::string>>& found() { return found_; }

 private:
  struct Step {
    std::string key;
    std::size_t index;
    bool member;
  };
  [[nodiscard]] std::string path() const {
    // Appended in place: a copy of the path so far at each step was the
    // depth times the path's length.
    std::string path;
    for (const Step& step : steps_) {
      if (!step.member) {
        path.append("[").append(std::to_string(step.index)).append("]");
        continue;
      }
      const std::string piece = matcher::member_path("", step.key);  // `key`, or `["k.e.y"]`
      if (!path.empty() && piece[0] != '[') path += '.';
      path += piece;
    }
    return path;
  }
  const char* base_;
  std::span<const std::size_t> bytes_;
  std::size_t next_ = 0;  // the first of bytes_ not passed yet
  std::vector<Step> steps_;
  std::vector<std::optional<std::string>> found_;
};

Locations locations_of(std::string_view text, const std::unordered_set<std::string>& wanted) {
  Locations paths;
  const simdjson::padded_string padded(text);
  ondemand::parser parser;
  ondemand::document document;
  if (parser.iterate(padded).get(document) != simdjson::SUCCESS) return paths;
  ondemand::value root;
  if (document.get_value().get(root) == simdjson::SUCCESS) {
    PathWalk(padded.data(), wanted, paths).walk(root, "", nullptr);
    return paths;
  }
  // A scalar document ("8"), which on-demand does not take as a value: the
  // root is all there is, at its first byte.
  const std::size_t first = text.find_first_not_of(" \t\r\n");
  if (first != std::string_view::npos) paths[""].push_back({first, first});
  return paths;
}

}  // namespace

std::vector<std::optional<std::string>> paths_of_values_at(std::string_view text,
                                                           std::span<const std::size_t> bytes) {
  std::vector<std::optional<std::string>> found(bytes.size());
  const simdjson::padded_string padded(text);
  ondemand::parser parser;
  ondemand::document document;
  if (parser.iterate(padded).get(document) != simdjson::SUCCESS) return found;
  ondemand::value root;
  if (document.get_value().get(root) != simdjson::SUCCESS) {
    // A scalar document, which on-demand does not take as a value: the
    // root, at its first byte.
    for (std::size_t i = 0; i < bytes.size(); ++i) {
      if (bytes[i] == text.find_first_not_of(" \t\r\n")) found[i] = "";
    }
    return found;
  }
  ValuesAt finder(padded.data(), bytes);
  finder.walk(root);
  return std::move(finder.found());
}

TextPosition text_position(std::string_view text, std::size_t byte) noexcept {
  TextPosition position;
  for (std::size_t i = 0; i < byte && i < text.size(); ++i) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c == '\n') {
      ++position.line;
      position.column = 1;
    } else if ((c & 0xc0) != 0x80) {  // a continuation byte is the same character
      ++position.column;
    }
  }
  return position;
}

void locate_errors(std::string_view text, std::vector<matcher::ConfigError>& errors) {
  // The paths the errors name and every path they are under (a path
  // missing from the text is placed at the nearest of those it has): a
  // child's path is its parent's with ".name" or "[...]" after it, so
  // cutting before each '.' and '[' gives them all, and a few that are no
  // path, which nothing matches.
  std::unordered_set<std::string> wanted{""};
  for (const matcher::ConfigError& error : errors) {
    if (error.line != 0) continue;
    for (std::size_t i = 0; i < error.path.size(); ++i) {
      if (error.path[i] == '.' || error.path[i] == '[') wanted.insert(error.path.substr(0, i));
    }
    wanted.insert(error.path);
  }
  const Locations paths = locations_of(text, wanted);
  auto find = [&](const std::string& path) -> const std::vector<Where>* {
    const auto found = paths.find(path);
    return found != paths.end() ? &found->second : nullptr;
  };
  // The errors of a key at a path that occurs more than once take its last
  // occurrences, in order: the first of a known key given twice is read
  // and the second is the "duplicate key"; an unknown key given twice has
  // an error at each.
  std::unordered_map<std::string, std::size_t> key_errors, key_errors_seen;
  for (const matcher::ConfigError& error : errors) {
    if (error.of_key && error.line == 0) ++key_errors[error.path];
  }
  // Each error's byte, then every line and column in one pass over the
  // text (a placement per error, each from the text's start, was quadratic
  // in a big generated config).
  std::vector<std::pair<std::size_t, matcher::ConfigError*>> placed;
  for (matcher::ConfigError& error : errors) {
    if (error.line != 0) continue;  // placed already (a syntax error names its byte in the message)
    const std::vector<Where>* where = find(error.path);
    bool at_key = error.of_key;
    std::size_t occurrence = 0;
    if (where == nullptr) {
      // Not in the text: under the nearest member that is. A '.' or '['
      // inside a quoted key only tries a shorter path than it need.
      for (std::size_t end = error.path.size(); where == nullptr && end-- > 0;) {
        if (error.path[end] == '.' || error.path[end] == '[') where = find(error.path.substr(0, end));
      }
      if (where == nullptr) where = find("");
      at_key = false;
    } else if (at_key) {
      const std::size_t errors_here = key_errors[error.path];
      const std::size_t nth = key_errors_seen[error.path]++;
      occurrence = where->size() >= errors_here ? where->size() - errors_here + nth : nth;
    }
    if (where == nullptr || where->empty()) continue;
    const Where& chosen = (*where)[std::min(occurrence, where->size() - 1)];
    placed.emplace_back(at_key ? chosen.key : chosen.value, &error);
  }
  std::sort(placed.begin(), placed.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });
  TextPosition position;
  std::size_t at = 0;
  for (const auto& [byte, error] : placed) {
    const TextPosition step = text_position(text.substr(std::min(at, text.size())), byte - at);
    position.column = step.line > 1 ? step.column : position.column + step.column - 1;
    position.line += step.line - 1;
    at = byte;
    error->line = position.line;
    error->column = position.column;
  }
}

}  // namespace ringroute::tools
