#include "config_location.hpp"

#include <algorithm>
#include <utility>

#include <simdjson.h>

namespace ringroute::tools {
namespace {

namespace ondemand = simdjson::ondemand;

// Walks every value under `value`, recording each member's and item's path
// as the config's checks spell it (matcher::member_path, "[i]").
class PathWalk {
 public:
  PathWalk(const char* base, std::unordered_map<std::string, std::vector<ConfigLocations::Where>>& paths)
      : base_(base), paths_(paths) {}

  // False once simdjson reports an error: the walk stops, and what it
  // recorded so far stays (the text parsed whole once, so this is not
  // expected).
  bool walk(ondemand::value value, const std::string& path, const char* key) {
    const char* at = nullptr;
    if (value.current_location().get(at) != simdjson::SUCCESS) return false;
    const auto offset = static_cast<std::size_t>(at - base_);
    paths_[path].push_back({key != nullptr ? static_cast<std::size_t>(key - base_) : offset, offset});
    ondemand::json_type type;
    if (value.type().get(type) != simdjson::SUCCESS) return false;
    if (type == ondemand::json_type::object) {
      ondemand::object object;
      if (value.get_object().get(object) != simdjson::SUCCESS) return false;
      for (auto member : object) {
        ondemand::field field;
        std::string_view name;
        if (std::move(member).get(field) != simdjson::SUCCESS) return false;
        // raw() is just past the key's opening quote; read before
        // unescaped_key(), which consumes the key.
        const char* key_at = field.key().raw() - 1;
        if (field.unescaped_key().get(name) != simdjson::SUCCESS) return false;
        if (!walk(field.value(), matcher::member_path(path, name), key_at)) return false;
      }
    } else if (type == ondemand::json_type::array) {
      ondemand::array array;
      if (value.get_array().get(array) != simdjson::SUCCESS) return false;
      std::size_t index = 0;
      for (auto item : array) {
        ondemand::value element;
        if (std::move(item).get(element) != simdjson::SUCCESS) return false;
        if (!walk(element, path + "[" + std::to_string(index++) + "]", nullptr)) return false;
      }
    }
    return true;
  }

 private:
  const char* base_;
  std::unordered_map<std::string, std::vector<ConfigLocations::Where>>& paths_;
};

}  // namespace

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

ConfigLocations::ConfigLocations(std::string_view text) : text_(text) {
  const simdjson::padded_string padded(text);
  ondemand::parser parser;
  ondemand::document document;
  if (parser.iterate(padded).get(document) != simdjson::SUCCESS) return;
  ondemand::value root;
  if (document.get_value().get(root) == simdjson::SUCCESS) {
    PathWalk(padded.data(), paths_).walk(root, "", nullptr);
    return;
  }
  // A scalar document ("8"), which on-demand does not take as a value: the
  // root is all there is, at its first byte.
  const std::size_t first = text.find_first_not_of(" \t\r\n");
  if (first != std::string_view::npos) paths_[""].push_back({first, first});
}

const std::vector<ConfigLocations::Where>* ConfigLocations::find(const std::string& path) const {
  const auto found = paths_.find(path);
  return found != paths_.end() ? &found->second : nullptr;
}

void ConfigLocations::locate(std::vector<matcher::ConfigError>& errors) const {
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
    const TextPosition step = text_position(text_.substr(std::min(at, text_.size())), byte - at);
    position.column = step.line > 1 ? step.column : position.column + step.column - 1;
    position.line += step.line - 1;
    at = byte;
    error->line = position.line;
    error->column = position.column;
  }
}

}  // namespace ringroute::tools
