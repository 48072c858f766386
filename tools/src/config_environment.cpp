#include "config_environment.hpp"

#include <simdjson.h>

namespace ringroute::tools {
namespace {

bool name_start(char c) { return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_'; }
bool name_char(char c) { return name_start(c) || (c >= '0' && c <= '9'); }

// The inside of one string value, as written (escapes and all), expanded
// into `out`; false with `why` set when a reference can't be expanded: each
// variable unset or not UTF-8 is said (joined by "; "), and a reference
// written wrong ends the reading there, since what follows it is unclear.
// `escape`: values go in JSON-escaped (inside a string), or as they are (a
// bare reference's, which must be a JSON literal itself).
bool expand_value(std::string_view raw, const Lookup& lookup, std::string& out, std::string& why, bool escape = true) {
  const std::size_t n = raw.size();
  why.clear();
  const auto add_problem = [&](const std::string& problem) {
    if (!why.empty()) why += "; ";
    why += problem;
  };
  for (std::size_t i = 0; i < n;) {
    const char c = raw[i];
    if (c == '\\') {  // an escape is copied whole: `\\${X}` is a backslash, then a reference
      out.append(raw.substr(i, 2));
      i += 2;
      continue;
    }
    if (c != '$') {
      out += c;
      ++i;
      continue;
    }
    if (raw.substr(i, 3) == "$${") {
      out += "${";
      i += 3;
      continue;
    }
    if (raw.substr(i, 2) != "${") {
      out += c;
      ++i;
      continue;
    }
    std::size_t j = i + 2;
    if (j >= n || !name_start(raw[j])) {
      add_problem(
          "\"${\" must start a variable name (a letter or _, then letters, digits or _); write \"$${\" for a "
          "literal \"${\"");
      return false;
    }
    const std::size_t name_begin = j;
    while (j < n && name_char(raw[j])) ++j;
    const std::string name(raw.substr(name_begin, j - name_begin));
    // What follows the name: "}", ":-default}" or "-default}".
    bool has_default = false, empty_takes_default = false;
    std::string_view fallback;
    if (raw.substr(j, 2) == ":-" || raw.substr(j, 1) == "-") {
      has_default = true;
      empty_takes_default = raw[j] == ':';
      j += empty_takes_default ? 2 : 1;
      const std::size_t begin = j;
      // The default as written, up to the first "}" (one inside it is
      // written \u007d); its escapes are skipped whole, so it ends on an
      // escape's boundary and goes in as the file has it.
      while (j < n && raw[j] != '}') j += raw[j] == '\\' ? 2 : 1;
      fallback = raw.substr(begin, std::min(j, n) - begin);
      // Not expanded: a reference there would go in as its own text.
      if (fallback.find("${") != std::string_view::npos) {
        add_problem("the default of ${" + name + "} holds \"${\": a default is taken as written, not expanded");
        return false;
      }
    }
    if (j >= n || raw[j] != '}') {
      add_problem("\"${" + name + "\" is not closed by \"}\"");
      return false;
    }
    i = j + 1;
    const std::optional<std::string_view> value = lookup(name);
    if (has_default && (!value || (empty_takes_default && value->empty()))) {
      out.append(fallback);
      continue;
    }
    if (!value) {
      add_problem("environment variable " + name + " is not set (give a default with ${" + name +
                  ":-default}, or write $${ for a literal ${)");
      continue;
    }
    if (!simdjson::validate_utf8(value->data(), value->size())) {
      add_problem("environment variable " + name + " is not valid UTF-8");
      continue;
    }
    if (escape) {
      matcher::append_escaped(out, *value);
    } else {
      out.append(*value);
    }
  }
  return why.empty();
}

bool json_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

// Just past the "}" of the bare reference at `at` (outside any string:
// `"max_events": ${QUEUE}`), or npos when nothing closes it or it is not a
// whole value (after ':', '[' or ',', before ',', '}', ']' or the end):
// joined to more (`1${N}`, `-${N}`) the blanked text was a number while
// the expanded one did not parse, an error with no place that hid every
// other. Left as written, such a reference is a syntax error where it is.
std::size_t bare_reference_end(std::string_view json, std::size_t at) {
  const std::size_t close = json.find('}', at + 2);
  if (close == std::string_view::npos) return close;
  std::size_t before = at;
  while (before > 0 && json_space(json[before - 1])) --before;
  std::size_t after = close + 1;
  while (after < json.size() && json_space(json[after])) ++after;
  const bool starts_value = before > 0 && std::string_view(":[,").find(json[before - 1]) != std::string_view::npos;
  const bool ends_value = after == json.size() || std::string_view(",}]").find(json[after]) != std::string_view::npos;
  return starts_value && ends_value ? close + 1 : std::string_view::npos;
}

// Whether `text` is one JSON number, true, false or null.
// Why a bare reference's value can't stand where it is written; empty when
// it can (a number, true, false, null).
std::string bare_value_problem(std::string_view reference, const std::string& value) {
  simdjson::dom::parser parser;
  simdjson::dom::element element;
  const auto error = parser.parse(simdjson::padded_string(value)).get(element);
  if (error == simdjson::SUCCESS && (element.is_number() || element.is_bool() || element.is_null())) return {};
  // Twenty digits or more simdjson can't read (no leading zero, which JSON
  // refuses whatever the size: 0600, a mode) are an integer past 64 bits:
  // a number all the same, said as the same number written in the file is.
  const std::string_view digits = std::string_view(value).substr(value.starts_with('-') ? 1 : 0);
  if (error != simdjson::SUCCESS && digits.size() >= 20 && digits[0] != '0' &&
      digits.find_first_not_of("0123456789") == std::string_view::npos) {
    return std::string(reference) + " is an integer past 64 bits, and no number in a config goes that far";
  }
  return std::string(reference) +
         " is written bare, so its value must be a number, true, false or null, and it is not (quote it for a "
         "string)";
}

// Where the scan is: a container and, for an object, the key of the
// member being read; for an array, the element's index.
struct Frame {
  bool object;
  bool expect_key = true;
  std::string key;
  std::size_t index = 0;
};

// A key as written, unescaped (the document parsed, so it is whole).
std::string unescaped_key(std::string_view raw) {
  if (raw.find('\\') == std::string_view::npos) return std::string(raw);
  simdjson::dom::parser parser;
  std::string_view key;
  if (parser.parse(simdjson::padded_string("\"" + std::string(raw) + "\"")).get(key) != simdjson::SUCCESS) {
    return std::string(raw);
  }
  return std::string(key);
}

// The path as the config's other errors name it.
std::string path_of(const std::vector<Frame>& frames) {
  std::string path;
  for (const Frame& f : frames) {
    if (f.object) {
      path = matcher::member_path(path, f.key);
    } else {
      path += '[' + std::to_string(f.index) + ']';
    }
  }
  return path;
}

}  // namespace

Expanded expand_environment(std::string_view json, const Lookup& lookup) {
  Expanded result;
  // Most configs hold no reference: nothing to copy.
  if (json.find("${") == std::string_view::npos) {
    result.text = std::string(json);
    return result;
  }
  std::string& out = result.text;
  out.reserve(json.size());
  std::vector<Frame> frames;
  const std::size_t n = json.size();
  for (std::size_t i = 0; i < n;) {
    const char c = json[i];
    switch (c) {
      case '{':
      case '[':
        frames.push_back({c == '{'});
        break;
      case '}':
      case ']':
        if (!frames.empty()) frames.pop_back();
        break;
      case ',':
        if (!frames.empty()) {
          if (frames.back().object) {
            frames.back().expect_key = true;
          } else {
            ++frames.back().index;
          }
        }
        break;
      case ':':
        if (!frames.empty()) frames.back().expect_key = false;
        break;
      case '"': {
        std::size_t end = i + 1;
        while (end < n && json[end] != '"') end += json[end] == '\\' ? 2 : 1;
        const std::string_view inside = json.substr(i + 1, std::min(end, n) - (i + 1));
        out += '"';
        if (!frames.empty() && frames.back().object && frames.back().expect_key) {
          frames.back().key = unescaped_key(inside);
          out.append(inside);
        } else if (inside.find('$') == std::string_view::npos) {
          out.append(inside);
        } else {
          std::string why;
          const std::size_t before = out.size();
          if (!expand_value(inside, lookup, out, why)) {
            result.errors.push_back({path_of(frames), why});
            out.resize(before);
            out.append(inside);
          } else if (std::string_view(out).substr(before) != inside) {
            result.changed = true;
          }
        }
        if (end < n) out += '"';
        i = end + 1;
        continue;
      }
      case '$': {
        // Outside any string: a bare reference, whose value goes in as it
        // is, so a number or a boolean can come from the environment too.
        const std::size_t end = json.substr(i, 2) == "${" ? bare_reference_end(json, i) : std::string_view::npos;
        if (end == std::string_view::npos) break;
        const std::string_view reference = json.substr(i, end - i);
        std::string value, why;
        if (!expand_value(reference, lookup, value, why, false)) {
          result.errors.push_back({path_of(frames), why});
          value = "null";  // so the rest parses; its checks are left to this error
        } else if (std::string problem = bare_value_problem(reference, value); !problem.empty()) {
          result.errors.push_back({path_of(frames), std::move(problem)});
          value = "null";
        }
        out += value;
        result.changed = true;
        i = end;
        continue;
      }
      default:
        break;
    }
    out += c;
    ++i;
  }
  return result;
}

namespace {

// Calls on_reference(at, end) for each "${" outside any string that a "}"
// closes: `end` just past it (bare_reference_end), or npos where it is not
// a whole value. A whole one is stepped over, so what it holds is not read
// as the text's (a default's quotes, a "${" inside it).
template <class OnReference>
void for_each_bare_reference(std::string_view json, OnReference&& on_reference) {
  for (std::size_t i = 0; i < json.size(); ++i) {
    if (json[i] == '"') {  // a string: its references are its own
      for (++i; i < json.size() && json[i] != '"'; i += json[i] == '\\' ? 2 : 1) {
      }
      continue;
    }
    if (json.substr(i, 2) != "${" || json.find('}', i + 2) == std::string_view::npos) continue;
    const std::size_t end = bare_reference_end(json, i);
    on_reference(i, end);
    if (end != std::string_view::npos) i = end - 1;
  }
}

}  // namespace

std::vector<std::size_t> misplaced_bare_references(std::string_view json) {
  std::vector<std::size_t> misplaced;
  for_each_bare_reference(json, [&](std::size_t at, std::size_t end) {
    if (end == std::string_view::npos) misplaced.push_back(at);
  });
  return misplaced;
}

std::string with_bare_references_blanked(std::string_view json) {
  std::string out(json);
  // One not a whole value stays as written: the syntax check says where.
  for_each_bare_reference(json, [&](std::size_t at, std::size_t end) {
    if (end != std::string_view::npos) out.replace(at, end - at, "0" + std::string(end - at - 1, ' '));
  });
  return out;
}

}  // namespace ringroute::tools
