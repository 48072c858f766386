#include "ringroute/matcher/config.hpp"

#include <algorithm>

#include <array>
#include <cstdio>

#include "ringroute/event/excerpt.hpp"
#include "ringroute/matcher/topic.hpp"

namespace ringroute::matcher {
namespace {

using simdjson::dom::element;
using simdjson::dom::element_type;

constexpr std::array<std::string_view, 9> kBindingKeys{
    "account_id", "include_descendants", "app_name", "severity", "exact_severity",
    "verbosity",  "exact_verbosity",     "topic",    "filter"};

std::string join_names(auto names) {
  std::string out;
  for (std::size_t i = 0; i < names.size(); ++i) {
    if (i != 0) out += i + 1 == names.size() ? " or " : ", ";
    out += names[i];
  }
  return out;
}

std::string expected_levels(event::Severity) {
  return "expected " + join_names(std::array<std::string_view, 3>{"ok", "warning", "critical"});
}
std::string expected_levels(event::Verbosity) {
  return "expected " + join_names(std::array<std::string_view, 6>{"trace", "debug", "info", "warn",
                                                                  "error", "fatal"});
}
std::optional<event::Severity> parse_level(std::string_view s, event::Severity) {
  return event::parse_severity(s);
}
std::optional<event::Verbosity> parse_level(std::string_view s, event::Verbosity) {
  return event::parse_verbosity(s);
}

std::string wrong_type(std::string_view expected, element value) {
  return "expected " + std::string(expected) + ", got " + std::string(json_type_name(value.type()));
}

// The keys Kazoo takes as one value or an array of them: `one` checks a
// string or an array's every item (each error at its own index).
template <class One>
bool one_or_many(element value, const std::string& path, ConfigErrors& errors, std::string_view expected,
                 One&& one) {
  if (value.is_string()) return one(value, path);
  if (!value.is_array()) {
    errors.add(path, wrong_type(expected, value));
    return false;
  }
  bool good = true;
  std::size_t index = 0;
  const simdjson::dom::array items = value.get_array().value_unsafe();
  for (element item : items) {
    good = one(item, path + "[" + std::to_string(index++) + "]") && good;
  }
  return good;
}

// A string or an array of non-empty strings (account_id, app_name).
bool read_names(element value, const std::string& path, ConfigErrors& errors,
                std::vector<std::string>& out) {
  out.clear();
  auto one = [&](element item, const std::string& item_path) {
    if (!item.is_string()) {
      errors.add(item_path, wrong_type("a string", item));
      return false;
    }
    std::string_view text = item.get_string().value_unsafe();
    if (text.empty()) {
      errors.add(item_path, "must not be empty");
      return false;
    }
    // No event field is longer: such a name matches nothing, and a binding
    // that silently matches nothing is what validation is for.
    if (text.size() > event::kMaxFieldBytes) {
      errors.add(item_path, std::to_string(text.size()) + " bytes; no event field holds more than " +
                                std::to_string(event::kMaxFieldBytes) + ", so it would match nothing");
      return false;
    }
    out.emplace_back(text);
    return true;
  };
  return one_or_many(value, path, errors, "a string or an array of strings", one);
}

template <class Level>
bool read_levels(element value, const std::string& path, ConfigErrors& errors,
                 LevelSpec<Level>& out) {
  out.levels.clear();
  auto one = [&](element item, const std::string& item_path) {
    if (!item.is_string()) {
      errors.add(item_path, wrong_type("a level name", item));
      return false;
    }
    std::string_view text = item.get_string().value_unsafe();
    auto level = parse_level(text, Level{});
    if (!level) {
      errors.add(item_path, "unknown level " + quoted(text) + " (" + expected_levels(Level{}) + ")");
      return false;
    }
    out.levels.push_back(*level);
    return true;
  };
  out.is_array = value.is_array();
  return one_or_many(value, path, errors, "a level name or an array of them", one);
}

bool read_bool(element value, const std::string& path, ConfigErrors& errors, bool& out) {
  if (!value.is_bool()) {
    errors.add(path, wrong_type("true or false", value));
    return false;
  }
  out = value.get_bool().value_unsafe();
  return true;
}

}  // namespace

std::string_view json_type_name(element_type type) noexcept {
  switch (type) {
    case element_type::ARRAY: return "an array";
    case element_type::OBJECT: return "an object";
    case element_type::INT64:
    case element_type::UINT64:
    case element_type::DOUBLE: return "a number";
    case element_type::STRING: return "a string";
    case element_type::BOOL: return "a boolean";
    case element_type::NULL_VALUE: return "null";
  }
  return "a value";
}

std::string member_path(std::string_view path, std::string_view key) {
  const bool plain = !key.empty() && std::all_of(key.begin(), key.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
  });
  std::string out(path);
  if (plain) return out.append(out.empty() ? "" : ".").append(key);
  // Whole, not quoted(): an error is placed in the text by its path.
  out.append("[\"");
  append_escaped(out, key, true);
  return out.append("\"]");
}

void append_escaped(std::string& out, std::string_view text, bool quotes) {
  for (unsigned char c : text) {
    if (quotes && (c == '"' || c == '\\')) {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20) {
      char escape[8];
      std::snprintf(escape, sizeof escape, "\\u%04x", c);
      out += escape;
    } else {
      out += static_cast<char>(c);
    }
  }
}

std::string quoted(std::string_view text) {
  const std::string_view excerpt = event::quoted_excerpt(text);
  std::string out = "\"";
  append_escaped(out, excerpt, true);
  out += '"';
  return out + event::excerpt_tail(text);
}

std::string control_escaped(std::string_view text) {
  std::string out;
  append_escaped(out, text, false);
  return out;
}

std::optional<BindingSpec> parse_binding(element binding, const std::string& path,
                                         ConfigErrors& errors) {
  if (!binding.is_object()) {
    errors.add(path, wrong_type("an object", binding));
    return std::nullopt;
  }
  const std::size_t errors_before = errors.size();
  BindingSpec spec;
  std::array<bool, kBindingKeys.size()> seen{};
  const simdjson::dom::object members = binding.get_object().value_unsafe();
  for (auto [key, value] : members) {
    const std::string key_path = member_path(path, key);
    std::size_t index = 0;
    while (index < kBindingKeys.size() && kBindingKeys[index] != key) ++index;
    if (index == kBindingKeys.size()) {
      errors.add_of_key(key_path, "unknown key (expected one of " + join_names(kBindingKeys) + ")");
      continue;
    }
    if (seen[index]) {
      errors.add_of_key(key_path, "duplicate key");
      continue;
    }
    seen[index] = true;
    if (value.is_null()) continue;  // null is the same as absent
    switch (index) {
      case 0: read_names(value, key_path, errors, spec.accounts); break;
      case 1: read_bool(value, key_path, errors, spec.include_descendants); break;
      case 2: read_names(value, key_path, errors, spec.apps); break;
      case 3: read_levels(value, key_path, errors, spec.severity); break;
      case 4: read_bool(value, key_path, errors, spec.severity.exact); break;
      case 5: read_levels(value, key_path, errors, spec.verbosity); break;
      case 6: read_bool(value, key_path, errors, spec.verbosity.exact); break;
      case 7: {
        if (!value.is_string()) {
          errors.add(key_path, wrong_type("a topic pattern string", value));
          break;
        }
        std::string_view pattern = value.get_string().value_unsafe();
        if (auto problem = topic::check_pattern(pattern)) {
          errors.add(key_path, *problem);
          break;
        }
        spec.topic = std::string(pattern);
        break;
      }
      case 8: {
        if (!value.is_string()) {
          errors.add(key_path, wrong_type("a filter expression string", value));
          break;
        }
        auto parsed = filter::parse(value.get_string().value_unsafe());
        if (auto* problem = std::get_if<filter::ParseError>(&parsed)) {
          errors.add(key_path, problem->to_string());
          break;
        }
        spec.filter = std::make_shared<const filter::Expression>(
            std::move(std::get<filter::Expression>(parsed)));
        break;
      }
    }
  }
  // Each (account, app) pair of a binding is a leaf of the compiled form
  // (64 bytes, and a node for each word of its topic pattern): thousands of
  // each in one binding would compile to gigabytes.
  if (const std::uint64_t nodes = compiled_nodes_of(spec); nodes > kMaxLeavesPerBinding) {
    errors.add(path, std::to_string(spec.accounts.size()) + " account ids and " + std::to_string(spec.apps.size()) +
                         " app names" + (spec.topic ? " with a topic" : std::string()) + " compile to " +
                         std::to_string(nodes) +
                         " leaves (an (account, app) pair each, twice with include_descendants, each with a node "
                         "for every word of the topic); at most " +
                         std::to_string(kMaxLeavesPerBinding) + " a binding (split it, or use \"*\")");
  }
  if (errors.size() != errors_before) return std::nullopt;
  return spec;
}

std::vector<BindingSpec> parse_bindings(element bindings, const std::string& path,
                                        ConfigErrors& errors) {
  std::vector<BindingSpec> out;
  if (!bindings.is_array()) {
    errors.add(path, wrong_type("an array of binding objects", bindings));
    return out;
  }
  std::size_t index = 0;
  const simdjson::dom::array items = bindings.get_array().value_unsafe();
  for (element binding : items) {
    if (auto spec = parse_binding(binding, path + "[" + std::to_string(index) + "]", errors)) {
      out.push_back(std::move(*spec));
    }
    ++index;
  }
  return out;
}

}  // namespace ringroute::matcher
