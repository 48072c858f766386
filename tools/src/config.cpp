#include "ringroute/tools/config.hpp"

#include <sys/stat.h>

#include <algorithm>
#include <charconv>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <initializer_list>
#include <map>
#include <set>
#include <unordered_map>

#include <simdjson.h>

#include "ringroute/ingest/body_check.hpp"
#include "ringroute/perf/block.hpp"
#include "ringroute/sinks/backend.hpp"
#include "ringroute/sinks/file_sink.hpp"
#include "ringroute/sinks/url.hpp"
#include "ringroute/tools/json_text.hpp"
#include "config_environment.hpp"
#include "config_location.hpp"

namespace ringroute::tools {
namespace {

// A URL whose sink speaks TLS, and so takes the TLS options.
bool tls_url(std::string_view url) {
  const std::string scheme = sinks::url_scheme(url);
  return scheme == "https" || scheme == "syslog+tls";
}
// Each is found by parsing the text again: past this many, the next is
// said alone, without its path, as any other text that does not parse.
constexpr std::size_t kMostUnreadableNumbers = 64;
constexpr const char* kTlsOptions[] = {"ca_file", "ca_path", "server_name", "cert_file", "key_file", "key_passphrase"};

using matcher::ConfigErrors;
using matcher::json_type_name;

using simdjson::dom::element;

// A member's check: reads `value` at `path`, adding what is wrong to errors.
using Check = std::function<void(element value, const std::string& path, ConfigErrors& errors)>;

struct Member {
  std::string_view name;
  Check check;
  bool required = false;
};

std::string got(element value) { return "got " + std::string(json_type_name(value.type())); }

std::string join(std::initializer_list<std::string_view> names) {
  std::string out;
  std::size_t i = 0;
  for (std::string_view n : names) {
    if (i++ != 0) out += i == names.size() ? " or " : ", ";
    out += n;
  }
  return out;
}

// Checks an object's members against `members`: unknown keys, duplicates,
// required ones; null counts as absent.
void check_object(element value, const std::string& path, ConfigErrors& errors,
                  const std::vector<Member>& members) {
  if (!value.is_object()) {
    errors.add(path, "expected an object, " + got(value));
    return;
  }
  std::set<std::string_view> seen;
  const simdjson::dom::object object = value.get_object().value_unsafe();
  for (auto [key, member] : object) {
    const std::string member_path = matcher::member_path(path, key);
    const Member* known = nullptr;
    for (const Member& m : members) {
      if (m.name == key) known = &m;
    }
    if (known == nullptr) {
      std::string names;
      for (const Member& m : members) names += (names.empty() ? "" : ", ") + std::string(m.name);
      errors.add_of_key(member_path, "unknown key (expected one of " + names + ")");
      continue;
    }
    if (!seen.insert(known->name).second) {
      errors.add_of_key(member_path, "duplicate key");
      continue;
    }
    if (!member.is_null()) known->check(member, member_path, errors);
  }
  for (const Member& m : members) {
    if (!m.required) continue;
    element member;
    if (object[m.name].get(member) != simdjson::SUCCESS || member.is_null()) {
      errors.add(path + "." + std::string(m.name), "required");
    }
  }
}

Check object_of(std::vector<Member> members) {
  return [members = std::move(members)](element v, const std::string& p, ConfigErrors& e) {
    check_object(v, p, e, members);
  };
}

Check string_check(bool allow_empty = false) {
  return [allow_empty](element v, const std::string& p, ConfigErrors& e) {
    if (!v.is_string()) return e.add(p, "expected a string, " + got(v));
    if (!allow_empty && v.get_string().value_unsafe().empty()) e.add(p, "must not be empty");
  };
}

// A file's name, as the sink or OpenSSL opens it: a NUL would cut it there
// (another file opened than the one checked and compared with the other
// backends' paths), and other control characters are no file a user
// meant.
Check file_name_check() {
  return [](element v, const std::string& p, ConfigErrors& e) {
    string_check()(v, p, e);
    if (!v.is_string()) return;
    const std::string_view s = v.get_string().value_unsafe();
    for (std::size_t i = 0; i < s.size(); ++i) {
      const auto c = static_cast<unsigned char>(s[i]);
      if (c < 0x20 || c == 0x7f) {
        char code[8];
        std::snprintf(code, sizeof code, "0x%02x", c);
        e.add(p, "a control character (" + std::string(code) + ") at byte " + std::to_string(i) +
                     " of a file's name");
        return;
      }
    }
  };
}

// "host:port" or "[v6 address]:port", a port from 1 to 65535 and a host
// without spaces, slashes or (unbracketed) colons.
bool is_host_and_port(std::string_view s) {
  const std::size_t colon = s.rfind(':');
  if (colon == std::string_view::npos) return false;
  std::string_view host = s.substr(0, colon);
  const std::string_view port = s.substr(colon + 1);
  if (port.empty() || port.size() > 5 || port.find_first_not_of("0123456789") != std::string_view::npos) return false;
  const unsigned long number = std::stoul(std::string(port));
  if (number == 0 || number > 65535) return false;
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
    return !host.empty() && host.find_first_not_of("0123456789abcdefABCDEF:.") == std::string_view::npos;
  }
  return !host.empty() && host.find_first_of(" /:[]@\t") == std::string_view::npos;
}

Check uint_check(std::uint64_t min, std::uint64_t max) {
  return [min, max](element v, const std::string& p, ConfigErrors& e) {
    std::uint64_t n = 0;
    if (v.is_uint64()) {
      n = v.get_uint64().value_unsafe();
    } else if (const double d = v.is_double() ? v.get_double().value_unsafe() : -1;
               d >= static_cast<double>(min) && d <= static_cast<double>(max) && std::trunc(d) == d) {
      // 1e3 or 1.0: whole, but written as JSON writes fractions.
      const auto whole = static_cast<std::uint64_t>(d);
      return e.add(p, "expected a whole number from " + std::to_string(min) + " to " + std::to_string(max) +
                          " written without a fraction or exponent (" + std::to_string(whole) + ")");
    } else if (v.is_int64() || v.is_double()) {
      return e.add(p, "expected a whole number from " + std::to_string(min) + " to " + std::to_string(max));
    } else {
      return e.add(p, "expected a number, " + got(v));
    }
    if (n < min || n > max) {
      e.add(p, std::to_string(n) + " is out of range (" + std::to_string(min) + " to " + std::to_string(max) + ")");
    }
  };
}

Check bool_check() {
  return [](element v, const std::string& p, ConfigErrors& e) {
    if (!v.is_bool()) e.add(p, "expected true or false, " + got(v));
  };
}

Check enum_check(std::initializer_list<std::string_view> allowed) {
  std::vector<std::string_view> list(allowed);
  std::string names = join(allowed);
  return [list, names](element v, const std::string& p, ConfigErrors& e) {
    if (!v.is_string()) return e.add(p, "expected one of " + names + ", " + got(v));
    std::string_view s = v.get_string().value_unsafe();
    for (std::string_view a : list) {
      if (a == s) return;
    }
    e.add(p, "unknown value " + matcher::quoted(s) + " (expected " + names + ")");
  };
}

// `message` about `url` with the URL's credentials (what comes between
// the scheme and its last '@') shown as ***: error messages end up in logs and
// terminals. The pieces of a password are hidden too, since a URL that does
// not parse (a '/', '?' or '#' in a password) may be quoted in parts ("bad port").
std::string without_credentials(std::string_view url, std::string message) {
  // After the scheme's ':' and however many '/' (a URL missing one is
  // quoted whole in its error).
  std::size_t start = url.find(':');
  const std::size_t at = url.rfind('@');
  if (start == std::string_view::npos || at == std::string_view::npos || at < start) return message;
  while (start + 1 < at && url[start + 1] == '/') ++start;
  const std::string_view secret = url.substr(start + 1, at - start - 1);
  auto hide = [&](std::string_view text) {
    if (text.size() < 2) return;
    for (std::size_t i = message.find(text); i != std::string::npos; i = message.find(text, i + 3)) {
      message.replace(i, text.size(), "***");
    }
  };
  hide(secret);
  for (std::size_t begin = 0; begin < secret.size();) {
    // Where a URL parser ends the userinfo or the authority (RFC 3986).
    const std::size_t end = std::min(secret.find_first_of(":/?#", begin), secret.size());
    hide(secret.substr(begin, end - begin));
    begin = end + 1;
  }
  return message;
}

Check url_check(std::initializer_list<std::string_view> schemes) {
  std::vector<std::string_view> list(schemes);
  std::string names = join(schemes);
  return [list, names](element v, const std::string& p, ConfigErrors& e) {
    if (!v.is_string()) return e.add(p, "expected a URL string, " + got(v));
    std::string_view url = v.get_string().value_unsafe();
    auto add = [&](std::string message) { e.add(p, without_credentials(url, std::move(message))); };
    const std::size_t colon = url.find("://");
    if (colon == std::string_view::npos) return add(matcher::quoted(url) + " is not a URL (scheme://...)");
    const std::string scheme = sinks::url_scheme(url);
    for (std::string_view s : list) {
      if (s == scheme) {
        if (url.size() == colon + 3) return add(matcher::quoted(url) + " has nothing after the scheme");
        // What the sink would refuse at start is refused here.
        if (std::string why = sinks::url_problem(url); !why.empty()) add(std::move(why));
        return;
      }
    }
    add("unsupported scheme " + matcher::quoted(url.substr(0, colon)) + " (expected " + names + ")");
  };
}

// HTTP headers: strings, each one the sink can send (the sink's own check).
Check http_headers_check() {
  return [](element v, const std::string& p, ConfigErrors& e) {
    if (!v.is_object()) return e.add(p, "expected an object of strings, " + got(v));
    const simdjson::dom::object object = v.get_object().value_unsafe();
    std::set<std::string> seen;  // lowercased: header names are case-insensitive
    for (auto [key, value] : object) {
      const std::string path = matcher::member_path(p, key);
      std::string lower(key);
      std::transform(lower.begin(), lower.end(), lower.begin(),
                     [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
      if (!seen.insert(lower).second) {
        e.add_of_key(path, "header " + std::string(key) + " is given twice (names are case-insensitive)");
      } else if (std::string of_name = sinks::http_header_problem(key, ""); !of_name.empty()) {
        e.add_of_key(path, std::move(of_name));  // the name's fault, whatever the value
      } else if (!value.is_string()) {
        e.add(path, "expected a string, " + got(value));
      } else if (std::string why = sinks::http_header_problem(key, value.get_string().value_unsafe()); !why.empty()) {
        e.add(path, std::move(why));
      }
    }
  };
}

bool valid_name(std::string_view name, std::size_t max) {
  if (name.empty() || name.size() > max) return false;
  for (char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '_' || c == '-' || c == '.';
    if (!ok) return false;
  }
  return true;
}

// Whether `path`'s text names a directory (it ends in "/", "." or "..").
bool ends_in_a_directory(std::string_view path) {
  const std::string last = std::filesystem::path(path).filename().string();
  return last.empty() || last == "." || last == "..";
}

constexpr const char* kLongerThanTheFileSystemTakes =
    "is longer than the file system takes (a name at most NAME_MAX bytes, 255 on most, a path at most PATH_MAX, 4096)";

// Why a file sink could never open `path` (resolved) as the file system
// stands, from its stat (`stat_error` 0, or the errno it failed with): a
// directory there, or a part of the way that is not one (a file named as a
// directory). Empty where it may open it, or where what is missing the
// sink makes.
std::string never_a_file(const std::string& path, int stat_error, const struct stat& found) {
  if (stat_error == 0) {
    return S_ISDIR(found.st_mode) ? "is a directory, not a file" : sinks::unwritable_file_type(found.st_mode);
  }
  if (stat_error == ENAMETOOLONG) return kLongerThanTheFileSystemTakes;
  if (stat_error != ENOTDIR) return "";
  // Some part of the way is not a directory: named, the nearest that exists.
  struct stat st {};
  for (std::filesystem::path up = std::filesystem::path(path).parent_path(); up.has_relative_path();
       up = up.parent_path()) {
    if (::stat(up.c_str(), &st) == 0) {
      if (!S_ISDIR(st.st_mode)) return "goes through " + matcher::quoted(up.string()) + ", which is not a directory";
      break;
    }
  }
  return "";
}

}  // namespace

std::string name_problem(std::string_view name, std::size_t max, bool file_name) {
  if (valid_name(name, max) && !(file_name && (name == "." || name == ".."))) return {};
  return matcher::quoted(name) + " is not a valid name (1 to " + std::to_string(max) +
         " characters of A-Z a-z 0-9 _ - ." + (file_name ? ", not . or .." : "") + ")";
}

namespace {

// `file_name`: the name is a file's under /dev/shm (a ring), where "."
// and ".." name none of their own.
Check name_check(std::size_t max, bool file_name = false) {
  return [max, file_name](element v, const std::string& p, ConfigErrors& e) {
    if (!v.is_string()) return e.add(p, "expected a string, " + got(v));
    if (std::string why = name_problem(v.get_string().value_unsafe(), max, file_name); !why.empty()) {
      e.add(p, std::move(why));
    }
  };
}

std::vector<Member> formatter_members() {
  return {{"type", enum_check({"json"})},
          {"options", object_of({{"include_metadata", bool_check()},
                                 {"normalize", bool_check()},
                                 {"normalize_body", bool_check()},
                                 {"pretty", bool_check()}})}};
}

Member queue_member() {
  return {"queue", object_of({{"max_events", uint_check(1, 1ull << 32)},
                              {"max_bytes", uint_check(1024, 1ull << 40)},
                              {"when_full", enum_check({"block", "drop"})}})};
}

// `format`: how a batch's events are joined, none for a sink whose framing
// is an option of its own (socket).
enum class BatchFormats { ndjson_or_array, ndjson, none };
Member batch_member(BatchFormats formats) {
  std::vector<Member> members{{"max_events", uint_check(1, 1'000'000)},
                              {"max_bytes", uint_check(1, 1ull << 30)},
                              {"linger_ms", uint_check(0, 60'000)}};
  // A file writes one line an event: DESIGN.md's batch object, with its
  // "format": "ndjson", is taken as it is, and only that.
  if (formats == BatchFormats::ndjson) members.push_back({"format", enum_check({"ndjson"})});
  if (formats == BatchFormats::ndjson_or_array) members.push_back({"format", enum_check({"ndjson", "array"})});
  return {"batch", object_of(std::move(members))};
}

// The options each backend type takes (DESIGN.md "Sinks"), nested objects
// only, never dotted keys.
std::vector<Member> options_for(std::string_view type) {
  std::vector<Member> members{{"formatter", object_of(formatter_members())}, queue_member()};
  // Deadlines: there is no "none". 0 left sends, receives and TLS
  // handshakes without a deadline, and a peer that stops reading then held
  // the sink thread, and with it stop and reload, for good.
  const Check millis = uint_check(1, 3'600'000);
  std::vector<Member> tls_members;
  for (const char* option : kTlsOptions) {
    const std::string_view name = option;
    if (name == "key_passphrase") {
      tls_members.push_back({option, string_check()});
      continue;
    }
    if (name != "server_name") {
      tls_members.push_back({option, file_name_check()});
      continue;
    }
    // A DNS name or an IP address, as the certificate names it: a NUL
    // would cut the name checked, and past 253 bytes SNI can't carry it.
    tls_members.push_back({option, [](element v, const std::string& p, ConfigErrors& e) {
                             if (!v.is_string()) return e.add(p, "expected a string, " + got(v));
                             const std::string_view s = v.get_string().value_unsafe();
                             const bool ip = sinks::is_ip_address(s);
                             const std::size_t length = s.size() - (s.ends_with('.') ? 1 : 0);  // the root's dot
                             if (!ip && (s.empty() || length > 253 || s.front() == '.' || s.front() == '-' ||
                                         s.find("..") != std::string_view::npos ||
                                         s.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                                             "0123456789.-_") != std::string_view::npos)) {
                               e.add(p, matcher::quoted(s) + " is neither a host name (letters, digits, '-', '_' "
                                                             "and dots, at most 253) nor an IP address");
                             }
                           }});
  }
  if (type == "file") {
    members.insert(members.end(),
                   {{"path",
                     [](element v, const std::string& p, ConfigErrors& e) {
                       const std::size_t errors = e.size();
                       file_name_check()(v, p, e);
                       if (!v.is_string() || e.size() != errors) return;
                       const std::string_view path = v.get_string().value_unsafe();
                       if (!path.empty() && ends_in_a_directory(path)) {
                         e.add(p, matcher::quoted(path) + " names a directory, not a file");
                       }
                     },
                     true},
                    {"rotate_bytes", uint_check(0, 1ull << 50)},
                    {"rotate_seconds", uint_check(0, 1ull << 32)},
                    {"keep", uint_check(0, 100'000)},
                    {"fsync", enum_check({"never", "batch", "interval"})},
                    {"fsync_interval_ms", uint_check(1, 3'600'000)},
                    {"io", enum_check({"uring", "write"})},
                    batch_member(BatchFormats::ndjson)});
  } else if (type == "http") {
    members.insert(members.end(),
                   {{"url", url_check({"http", "https"}), true},
                    {"method", enum_check({"post", "put", "patch"})},
                    {"headers", http_headers_check()},
                    {"connect_timeout", millis},
                    {"timeout", millis},
                    {"async",
                     [](element v, const std::string& p, ConfigErrors& e) {
                       if (!v.is_bool()) return e.add(p, "expected false, " + got(v));
                       if (v.get_bool().value_unsafe()) e.add(p, "only false is supported (ringroute always delivers in the background)");
                     }},
                    {"max_connections", uint_check(1, 1024)},
                    {"gzip", bool_check()},
                    batch_member(BatchFormats::ndjson_or_array)});
    members.insert(members.end(), tls_members.begin(), tls_members.end());
  } else if (type == "socket") {
    members.insert(members.end(),
                   {{"url", url_check({"syslog", "syslog+tcp", "syslog+udp", "syslog+tls", "unix", "unixgram"}), true},
                    {"format", enum_check({"syslog", "ndjson"})},
                    {"framing", enum_check({"octet-counting", "newline"})},
                    {"syslog_format", enum_check({"rfc5424", "rfc3164"})},
                    {"facility", enum_check({"kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news",
                                             "uucp", "cron", "authpriv", "ftp", "ntp", "security", "console",
                                             "solaris-cron", "local0", "local1", "local2", "local3", "local4",
                                             "local5", "local6", "local7"})},
                    {"max_connections", uint_check(1, 1024)},
                    {"max_datagram_bytes", uint_check(64, 65'507)},
                    {"structured_data", bool_check()},
                    // PRI's severity per verbosity, and the cap per event severity (0-7 each).
                    {"syslog_severity", object_of({{"trace", uint_check(0, 7)},
                                                   {"debug", uint_check(0, 7)},
                                                   {"info", uint_check(0, 7)},
                                                   {"warn", uint_check(0, 7)},
                                                   {"error", uint_check(0, 7)},
                                                   {"fatal", uint_check(0, 7)},
                                                   {"ok", uint_check(0, 7)},
                                                   {"warning", uint_check(0, 7)},
                                                   {"critical", uint_check(0, 7)}})},
                    {"connect_timeout", millis},
                    {"timeout", millis},
                    batch_member(BatchFormats::none)});
    members.insert(members.end(), tls_members.begin(), tls_members.end());
  } else if (type == "amqp") {
    members.insert(members.end(), {{"url", url_check({"amqp", "amqps"})},
                                   {"exchange", string_check(true)},
                                   {"routing_key", string_check(true)}});
  }
  return members;
}

std::string line_column(std::string_view text, std::size_t byte) {
  const TextPosition position = text_position(text, byte);
  return "line " + std::to_string(position.line) + ", column " + std::to_string(position.column) + " (byte " +
         std::to_string(byte) + ")";
}

// An options object as JSON text with its null members left out, at every
// level: what `validate` judged as absent must be absent to the sink.
std::string without_nulls(element value) {
  if (!value.is_object()) return simdjson::minify(value);
  std::string text = "{";
  const simdjson::dom::object object = value.get_object().value_unsafe();
  for (auto [key, member] : object) {
    if (member.is_null()) continue;
    if (text.size() > 1) text += ',';
    text += json_quote(key) + ":" + without_nulls(member);
  }
  return text + "}";
}

void parse_ring(element ring, const std::string& path, ConfigErrors& errors, RingConfig& out) {
  const std::size_t before = errors.size();
  check_object(ring, path, errors,
               {{"name", name_check(kMaxNameBytes, true)},
                {"size_bytes",
                 [](element v, const std::string& p, ConfigErrors& e) {
                   uint_check(1024, 1ull << 30)(v, p, e);
                   if (v.is_uint64()) {
                     const std::uint64_t n = v.get_uint64().value_unsafe();
                     if ((n & (n - 1)) != 0) e.add(p, std::to_string(n) + " is not a power of two");
                   }
                 }},
                {"mode",
                 [](element v, const std::string& p, ConfigErrors& e) {
                   if (!v.is_string()) return e.add(p, "expected an octal string such as \"0660\", " + got(v));
                   std::string_view s = v.get_string().value_unsafe();
                   const bool ok = (s.size() == 3 || s.size() == 4) &&
                                   s.find_first_not_of("01234567") == std::string_view::npos;
                   if (!ok) return e.add(p, matcher::quoted(s) + " is not an octal mode such as \"0660\"");
                   const auto mode = std::stoul(std::string(s), nullptr, 8);
                   // setuid, setgid and sticky mean nothing on a shared memory
                   // file; a ring its owner can't read and write is one the
                   // router's next start could not attach.
                   if (mode > 0777) {
                     e.add(p, matcher::quoted(s) + " sets setuid, setgid or sticky bits, which a ring has no use for "
                                                   "(at most \"0777\")");
                   } else if ((mode & 0600) != 0600) {
                     e.add(p, matcher::quoted(s) + " does not let the owner (the router) read and write the ring");
                   }
                 }},
                {"dead_claim_timeout_ms", uint_check(1, 3'600'000)}});
  if (!ring.is_object()) return;
  // The name is read even when other members are wrong, for the duplicate check.
  if (std::string_view s; ring["name"].get(s) == simdjson::SUCCESS) out.name = std::string(s);
  if (errors.size() != before) return;
  if (std::uint64_t n; ring["size_bytes"].get(n) == simdjson::SUCCESS) out.size_bytes = n;
  if (std::string_view s; ring["mode"].get(s) == simdjson::SUCCESS) {
    out.mode = static_cast<std::uint32_t>(std::stoul(std::string(s), nullptr, 8));
  }
  if (std::uint64_t n; ring["dead_claim_timeout_ms"].get(n) == simdjson::SUCCESS) {
    out.dead_claim_timeout = std::chrono::milliseconds(n);
  }
}

// References parse_config() could not expand, each at its string's path;
// those strings stay as written. Set for the parse (a thread's own), so the
// checks across members below can leave alone what reads such a string.
thread_local const std::vector<matcher::ConfigError>* t_unexpanded = nullptr;
struct UnexpandedScope {
  explicit UnexpandedScope(const std::vector<matcher::ConfigError>& errors) { t_unexpanded = &errors; }
  ~UnexpandedScope() { t_unexpanded = nullptr; }
  UnexpandedScope(const UnexpandedScope&) = delete;
  UnexpandedScope& operator=(const UnexpandedScope&) = delete;
};
// Whether `inner` is `outer` or a member or element of it.
bool path_under(std::string_view inner, std::string_view outer) {
  return inner.starts_with(outer) &&
         (inner.size() == outer.size() || inner[outer.size()] == '.' || inner[outer.size()] == '[');
}
// A string that could not be expanded at or under `path`: a check reading
// `path` would judge a value that isn't there.
bool unexpanded_under(std::string_view path) {
  return t_unexpanded != nullptr && std::any_of(t_unexpanded->begin(), t_unexpanded->end(),
                                                [&](const matcher::ConfigError& e) { return path_under(e.path, path); });
}
// `path` at or under a string that could not be expanded: an error there
// judged the string as written.
bool in_unexpanded(std::string_view path) {
  return t_unexpanded != nullptr && std::any_of(t_unexpanded->begin(), t_unexpanded->end(),
                                                [&](const matcher::ConfigError& e) { return path_under(path, e.path); });
}

void parse_backend(element backend, const std::string& path, ConfigErrors& errors, Config& config) {
  BackendConfig out;
  matcher::BackendSpec spec;
  const std::size_t before = errors.size();
  std::string_view type;
  if (backend.is_object() && backend["type"].get(type) != simdjson::SUCCESS) type = {};
  const bool known_type = type == "file" || type == "http" || type == "socket" || type == "amqp";
  check_object(backend, path, errors,
               {{"name", name_check(kMaxNameBytes), true},
                {"type", enum_check({"file", "http", "socket", "amqp"}), true},
                {"enabled", bool_check()},
                {"options",
                 [&](element v, const std::string& p, ConfigErrors& e) {
                   // Options are judged by the type's table; an unknown type
                   // is already an error of its own.
                   if (known_type) check_object(v, p, e, options_for(type));
                 }},
                {"bindings",
                 [&](element v, const std::string& p, ConfigErrors& e) {
                   spec.bindings = matcher::parse_bindings(v, p, e);
                 },
                 true}});
  if (!backend.is_object()) return;
  // A file backend needs options.path, http and socket options.url: reported
  // even when `options` is missing altogether.
  element options;
  const bool has_options = backend["options"].get(options) == simdjson::SUCCESS && !options.is_null();
  if (!has_options && known_type && type != "amqp") {
    errors.add(path + ".options." + (type == "file" ? "path" : "url"),
               "required for a " + std::string(type) + " backend");
  }
  // Pretty output spans lines: wherever the receiver takes each line as an
  // event (newline framing, NDJSON on a stream, NDJSON HTTP bodies), every
  // event would arrive cut into pieces.
  if (bool pretty; has_options && options.is_object() && !unexpanded_under(path + ".options.url") &&
                   !unexpanded_under(path + ".options.format") && !unexpanded_under(path + ".options.framing") &&
                   options.at_pointer("/formatter/options/pretty").get(pretty) == simdjson::SUCCESS && pretty) {
    auto option = [&](const char* pointer, std::string_view fallback) {
      std::string_view value;
      return options.at_pointer(pointer).get(value) == simdjson::SUCCESS ? value : fallback;
    };
    std::string why;
    if (type == "socket") {
      const std::string_view url = option("/url", "");
      const std::string scheme = sinks::url_scheme(url);
      const bool datagrams = sinks::is_datagram_scheme(scheme);
      if (option("/format", "syslog") == "ndjson" && !datagrams) {
        why = "with \"format\": \"ndjson\" on a stream each line would arrive as an event of its own (use datagrams, "
              "the syslog format, or leave pretty off)";
      } else if (option("/format", "syslog") == "syslog" && option("/framing", "octet-counting") == "newline" &&
                 !datagrams) {  // a datagram carries its message whole, whatever the framing says
        why = "with \"framing\": \"newline\" each line would arrive as a message of its own (use octet-counting "
              "framing, or leave pretty off)";
      }
    } else if (type == "http" && options["batch"].is_object() && option("/batch/format", "ndjson") == "ndjson") {
      why = "an NDJSON body is one event a line, and each line would be read as an event of its own (use "
            "\"batch\": {\"format\": \"array\"}, or leave pretty off)";
    }
    if (!why.empty()) errors.add(path + ".options.formatter.options.pretty", "pretty output spans lines, and " + why);
  }
  // RFC 3164 has no STRUCTURED-DATA: the ids asked for would be nowhere.
  if (std::string_view format; type == "socket" && has_options && options.is_object() &&
                               options["syslog_format"].get(format) == simdjson::SUCCESS && format == "rfc3164" &&
                               options["structured_data"].is_bool() && options["structured_data"].get_bool().value_unsafe()) {
    errors.add(path + ".options.structured_data",
               "RFC 3164 (syslog_format) has no STRUCTURED-DATA; leave structured_data out, or use rfc5424");
  }
  // NDJSON lines carry no syslog header: what shapes one would be read and
  // never used, and the operator would not get what was asked for.
  if (std::string_view format; type == "socket" && has_options && options.is_object() &&
                               options["format"].get(format) == simdjson::SUCCESS && format == "ndjson" &&
                               !unexpanded_under(path + ".options.format")) {
    for (const char* syslog_only : {"framing", "syslog_format", "facility", "structured_data", "syslog_severity"}) {
      if (element given; options[syslog_only].get(given) == simdjson::SUCCESS) {
        errors.add(path + ".options." + syslog_only,
                   "read only with \"format\": \"syslog\" (NDJSON lines carry no syslog header or framing): "
                   "leave it out");
      }
    }
  }
  // Options of streams on datagrams and the other way about: read and never
  // used, as those of the syslog header on NDJSON lines above.
  if (std::string_view url; type == "socket" && has_options && options.is_object() &&
                            options["url"].get(url) == simdjson::SUCCESS && !unexpanded_under(path + ".options.url")) {
    const std::string scheme = sinks::url_scheme(url);
    const bool datagrams = sinks::is_datagram_scheme(scheme);
    if (element given; datagrams && options["framing"].get(given) == simdjson::SUCCESS) {
      errors.add(path + ".options.framing",
                 "a datagram carries one message whole, unframed (" + scheme + "): leave framing out");
    }
    if (element given; !datagrams && options["max_datagram_bytes"].get(given) == simdjson::SUCCESS) {
      errors.add(path + ".options.max_datagram_bytes",
                 "read only for datagrams (syslog+udp, unixgram), and " + scheme + " is a stream: leave it out");
    }
  }
  // RFC 5425 section 4.3 frames syslog over TLS by octet counting alone.
  if (std::string_view framing, url; type == "socket" && has_options && options.is_object() &&
                                     options["framing"].get(framing) == simdjson::SUCCESS && framing == "newline" &&
                                     options["url"].get(url) == simdjson::SUCCESS &&
                                     !unexpanded_under(path + ".options.url") &&
                                     sinks::url_scheme(url) == "syslog+tls") {
    errors.add(path + ".options.framing",
               "syslog over TLS is framed by octet counting only (RFC 5425 section 4.3); leave framing out");
  }
  // An interval with no interval syncs would be read and never used: the
  // operator meant syncs, and would get none (`never`) or one a batch.
  if (std::uint64_t interval; type == "file" && has_options && options.is_object() &&
                              options["fsync_interval_ms"].get(interval) == simdjson::SUCCESS &&
                              !unexpanded_under(path + ".options.fsync")) {
    std::string_view fsync = "never";  // absent or null; another type is an error of its own
    element given;
    const bool fsync_given = options["fsync"].get(given) == simdjson::SUCCESS && !given.is_null();
    if (fsync_given && given.is_string()) fsync = given.get_string().value_unsafe();
    if ((!fsync_given || given.is_string()) && fsync != "interval") {
      errors.add(path + ".options.fsync_interval_ms",
                 "read only with \"fsync\": \"interval\" (fsync is " + matcher::quoted(fsync) + ")");
    }
  }
  if (errors.size() != before) {
    // Still count the name for uniqueness checks, and whether it is enabled
    // for the counts of enabled backends and their leaves.
    if (std::string_view name; backend["name"].get(name) == simdjson::SUCCESS) out.name = std::string(name);
    if (bool enabled; backend["enabled"].get(enabled) == simdjson::SUCCESS) out.enabled = enabled;
    spec.enabled = out.enabled;
    config.backends.push_back(std::move(out));
    config.matching.push_back(std::move(spec));
    return;
  }
  out.name = std::string(backend["name"].get_string().value_unsafe());
  out.type = std::string(type);
  if (bool enabled; backend["enabled"].get(enabled) == simdjson::SUCCESS) out.enabled = enabled;
  // Null is absent (README) to the sinks too, which read this text.
  if (has_options) out.options_json = without_nulls(options);
  spec.name = out.name;
  spec.enabled = out.enabled;
  config.backends.push_back(std::move(out));
  config.matching.push_back(std::move(spec));
}

}  // namespace

ConfigResult parse_config(std::string_view text) {
  ConfigResult result;
  simdjson::dom::parser parser;
  // Bare references (a number from the environment) are blanked to a 0 of
  // their length: the syntax is checked as written, positions and all.
  std::string blanked = with_bare_references_blanked(text);
  // A number too large to read (past 64 bits, past a double) is JSON all
  // the same: it is said at its path, as a value that isn't there (below),
  // and the rest is checked. Blanked to a 0 of its length, here and in the
  // text the environment is expanded in, so positions stay the file's.
  std::string readable(text);
  std::vector<std::pair<std::size_t, std::string>> unreadable_numbers;  // byte, why
  simdjson::padded_string padded(blanked);
  element root;
  // The body checker's advice for an integer past 64 bits (send it as a
  // string) fits events, not options: none takes one that large.
  const auto unreadable_why = [](const ingest::JsonProblem& unreadable) -> std::string {
    return std::string_view(unreadable.reason).starts_with("an integer past 64 bits")
               ? "an integer past 64 bits, and no number in a config goes that far"
               : unreadable.reason;
  };
  auto parse_error = parser.parse(padded).get(root);
  std::optional<ingest::JsonProblem> problem;
  for (; parse_error != simdjson::SUCCESS; parse_error = parser.parse(padded).get(root)) {
    // simdjson says what, not where; the body checker finds the byte.
    problem = ingest::check_json_object(blanked);
    if (!problem || !problem->unsupported || unreadable_numbers.size() == kMostUnreadableNumbers) break;
    const std::size_t at = problem->byte_offset;
    const std::size_t end = std::min(blanked.find_first_of(" \t\r\n,:[]{}\"", at), blanked.size());
    if (end <= at) break;
    unreadable_numbers.emplace_back(at, unreadable_why(*problem));
    const std::string zero = "0" + std::string(end - at - 1, ' ');
    blanked.replace(at, end - at, zero);
    readable.replace(at, end - at, zero);
    padded = simdjson::padded_string(blanked);
  }
  // Each at its path (one walk finds them all: they were found in text
  // order), placed at its byte (the text may not parse, and a path's first
  // value is not always this one).
  std::vector<matcher::ConfigError> number_errors;
  if (!unreadable_numbers.empty()) {
    std::vector<std::size_t> bytes;
    for (const auto& [at, why] : unreadable_numbers) bytes.push_back(at);
    const std::vector<std::optional<std::string>> paths = paths_of_values_at(blanked, bytes);
    for (std::size_t i = 0; i < bytes.size(); ++i) {
      const TextPosition position = text_position(text, bytes[i]);
      number_errors.push_back(
          {paths[i].value_or(""), unreadable_numbers[i].second, false, position.line, position.column});
    }
  }
  if (parse_error != simdjson::SUCCESS) {
    // Those found before the fault, or before the most that are looked
    // for, are said all the same.
    result.errors = number_errors;
    // A reference written bare where no whole value goes is not JSON, and
    // is said as such when the text stops being JSON in its token (`1${N}`
    // stops at the 1). Only then: the scan that finds them counts quotes,
    // and a stray one earlier had a reference inside a string reported for
    // a fault before it.
    const std::vector<std::size_t> misplaced = misplaced_bare_references(text);
    const bool at_misplaced = std::any_of(misplaced.begin(), misplaced.end(), [&](std::size_t at) {
      if (!problem) return true;
      const std::size_t fault = problem->byte_offset;
      if (fault >= at) return fault <= text.find('}', at);
      return text.substr(fault, at - fault).find_first_of(" \t\r\n,:[]{}\"") == std::string_view::npos;
    });
    if (at_misplaced) {
      for (const std::size_t at : misplaced) {
        const std::string_view reference = text.substr(at, text.find('}', at) + 1 - at);
        result.errors.push_back({"", std::string(reference) + " at " + line_column(text, at) +
                                         " is written bare, so it stands for a whole value (after ':', '[' or ',', "
                                         "before ',', '}' or ']'): put the whole number in the variable, or quote "
                                         "it for a string"});
      }
    } else if (problem) {
      result.errors.push_back(
          {"", problem->unsupported ? "cannot read the value at " + line_column(text, problem->byte_offset) + ": " +
                                          unreadable_why(*problem) +
                                          (unreadable_numbers.size() == kMostUnreadableNumbers
                                               ? " (past " + std::to_string(kMostUnreadableNumbers) +
                                                     " numbers too large to read, the rest of the file is checked "
                                                     "once these are fixed)"
                                               : "")
                                    : "not valid JSON at " + line_column(text, problem->byte_offset) + ": " +
                                          problem->reason});
    } else {
      result.errors.push_back({"", std::string("not valid JSON: ") + simdjson::error_message(parse_error)});
    }
    return result;
  }
  // References to the environment are expanded in the text, so every check
  // below, and the sinks, see the values; the text parsed as written first,
  // so a syntax error's line and column are the file's.
  const Expanded expanded = expand_environment(readable);
  // A reference that can't be expanded is an error at its string, which
  // stays as written. The rest is still checked (expanded), so every other
  // error is said too; but none at or under such a string, nor a check
  // across members that reads it: those would judge a value that isn't
  // there. A number too large to read is such a value too.
  std::vector<matcher::ConfigError> unexpanded = expanded.errors;
  unexpanded.insert(unexpanded.end(), number_errors.begin(), number_errors.end());
  const UnexpandedScope scope(unexpanded);
  if (expanded.changed) {
    padded = simdjson::padded_string(expanded.text);
    if (auto error = parser.parse(padded).get(root); error != simdjson::SUCCESS) {  // values went in escaped
      result.errors.push_back({"", std::string("not valid JSON once environment variables were expanded: ") +
                                       simdjson::error_message(error)});
      return result;
    }
  }
  ConfigErrors errors;
  Config config;
  bool couch_document = false;
  element inner_default;
  if (!root.is_object()) {
    errors.add("", "the config must be a JSON object, " + got(root));
  } else {
    check_object(
        root, "", errors,
        {{"instance", name_check(kMaxInstanceBytes)},
         {"rings",
          [&](element v, const std::string& p, ConfigErrors& e) {
            if (!v.is_array()) return e.add(p, "expected an array of rings, " + got(v));
            // Taken for the default ring, an empty list would run a ring
            // the operator did not name: said instead.
            if (v.get_array().value_unsafe().size() == 0) {
              return e.add(p, "empty: leave \"rings\" out for the one default ring (\"ringroute\"), or name a ring");
            }
            std::size_t i = 0;
            std::unordered_map<std::string, std::size_t> first_with_name;  // linear in the rings, whatever their number
            const simdjson::dom::array rings = v.get_array().value_unsafe();
            for (element ring : rings) {
              const std::size_t index = i++;
              const std::string ring_path = p + "[" + std::to_string(index) + "]";
              RingConfig parsed;
              parse_ring(ring, ring_path, e, parsed);
              // A ring that is not an object has an error of its own, not
              // the default name's duplicate.
              // A name that is not a string has its own error too.
              const bool named = ring.is_object() && ring["name"].error() == simdjson::SUCCESS && !ring["name"].is_null();
              if (ring.is_object() && (!named || ring["name"].is_string())) {
                const auto [first, fresh] = first_with_name.try_emplace(parsed.name, index);
                if (!fresh) {
                  // A ring without a name has the default one: said at the
                  // ring, since its path has no name to point at.
                  e.add(named ? ring_path + ".name" : ring_path,
                        (named ? "duplicate ring name " : "no name, so the default name ") +
                            matcher::quoted(parsed.name) + " (also rings[" + std::to_string(first->second) + "])");
                }
              }
              config.rings.push_back(parsed);
            }
          }},
         {"router", object_of({{"workers", uint_check(1, 64)}, {"removed_backend_drain_ms", uint_check(0, 600'000)}})},
         {"admin", object_of({{"listen",
                               [](element v, const std::string& p, ConfigErrors& e) {
                                 if (!v.is_string()) return e.add(p, "expected a string, " + got(v));
                                 const std::string_view s = v.get_string().value_unsafe();
                                 if (!is_host_and_port(s)) {
                                   e.add(p, matcher::quoted(s) + " is not HOST:PORT (\"127.0.0.1:5000\", "
                                                                 "\"[::1]:5000\"; port 1 to 65535)");
                                 }
                               }},
                              {"auth_key", string_check()}})},
         {"backends", [&](element v, const std::string& p, ConfigErrors& e) {
            if (!v.is_array()) return e.add(p, "expected an array of backends, " + got(v));
            std::size_t i = 0;
            const simdjson::dom::array backends = v.get_array().value_unsafe();
            for (element backend : backends) parse_backend(backend, p + "[" + std::to_string(i++) + "]", e, config);
          }}});
    // Kazoo keeps this object in CouchDB (system_config/edr) under "default".
    couch_document = root["default"].get(inner_default) == simdjson::SUCCESS && inner_default.is_object() &&
                     inner_default["backends"].error() == simdjson::SUCCESS &&
                     root["backends"].error() != simdjson::SUCCESS;
  }
  // Paths start at the root: drop the leading '.' the member walk adds.
  std::vector<matcher::ConfigError> list = errors.list();
  for (auto& e : list) {
    if (!e.path.empty() && e.path[0] == '.') e.path.erase(0, 1);
  }
  if (couch_document) {
    // One mistake, said once and first: the document's own keys, each an
    // unknown key here, came before the one error that says what to do.
    std::erase_if(list, [](const matcher::ConfigError& e) {
      return e.of_key && (e.path == "_id" || e.path == "_rev" || e.path == "default" || e.path.starts_with("pvt_"));
    });
    list.insert(list.begin(), {"default", "this looks like Kazoo's system_config/edr document: the config is the "
                                          "object under \"default\" (without _id, _rev and the pvt_ keys)"});
  }
  // Backend names are unique, case-sensitive; disabled ones count.
  std::unordered_map<std::string_view, std::size_t> first_with_name;  // linear, as above
  for (std::size_t i = 0; i < config.backends.size(); ++i) {
    if (config.backends[i].name.empty()) continue;
    const auto [first, fresh] = first_with_name.try_emplace(config.backends[i].name, i);
    if (!fresh) {
      list.push_back({"backends[" + std::to_string(i) + "].name",
                      "duplicate backend name " + matcher::quoted(config.backends[i].name) + " (also backends[" +
                          std::to_string(first->second) + "])"});
    }
  }
  // A ring named as a perf block (/dev/shm/INSTANCE.perf) would be that
  // file, this instance's or another's: each would take the other's for
  // its own, and the block wipes a file of the wrong size (under a running
  // ring's producers and router, a SIGBUS).
  for (std::size_t i = 0; i < config.rings.size(); ++i) {
    const std::string& name = config.rings[i].name;
    if (!name.ends_with(".perf")) continue;
    const std::string instance = name.substr(0, name.size() - 5);
    list.push_back({"rings[" + std::to_string(i) + "].name",
                    matcher::quoted(name) + " is the file of instance " + matcher::quoted(instance) +
                        "'s perf block (/dev/shm/" + name + "): a ring's name may not end in \".perf\""});
  }
  // What the perf block has slots for (a router refused to start past them,
  // after validate had said the file was good).
  if (config.rings.size() > perf::kMaxRings) {
    list.push_back({"rings", std::to_string(config.rings.size()) + " rings; at most " +
                                 std::to_string(perf::kMaxRings) + " (the perf block's slots)"});
  }
  const auto enabled_backends = static_cast<std::size_t>(
      std::count_if(config.backends.begin(), config.backends.end(), [](const auto& b) { return b.enabled; }));
  if (enabled_backends > perf::kMaxBackends) {
    list.push_back({"backends", std::to_string(enabled_backends) + " enabled backends; at most " +
                                    std::to_string(perf::kMaxBackends) + " (the perf block's slots)"});
  }
  // Leaves of all bindings together (each binding is bounded on its own).
  std::uint64_t leaves = 0;
  for (const auto& backend : config.matching) {
    if (!backend.enabled) continue;  // not compiled
    for (const auto& binding : backend.bindings) leaves += matcher::compiled_nodes_of(binding);
  }
  if (leaves > matcher::kMaxLeaves) {
    list.push_back({"backends", "the bindings compile to " + std::to_string(leaves) +
                                    " leaves in all (an (account, app) pair each, with a node for every word of "
                                    "its topic); at most " +
                                    std::to_string(matcher::kMaxLeaves) + " (use \"*\" or fewer names)"});
  }
  // Checks across a backend's members, read from the document itself:
  // - one file, one backend: two would interleave their batches, and each
  //   cuts back its own failed writes and rotates the file under the other
  //   (disabled backends write nothing, so they may share a path);
  // - TLS options on a URL that is not TLS: the operator meant encryption
  //   and would get plaintext (with Basic credentials, for HTTP).
  std::unordered_map<std::string, std::size_t> first_with_path;
  // And a file that exists, by its inode: two names of one file (a hard
  // link) are not told apart by their paths.
  std::map<std::pair<dev_t, ino_t>, std::size_t> first_with_inode;
  struct FileBackend {
    std::size_t index;
    std::string identity, path;
    bool rotates;
    std::uint64_t keep;
    // The name a rotation renames: the path as written in its directory
    // (resolved). A rotation renames path.N themselves, not what a link at
    // the path points to.
    std::string renamed;
  };
  std::vector<FileBackend> file_backends;
  if (simdjson::dom::array backends; root.is_object() && root["backends"].get(backends) == simdjson::SUCCESS) {
    std::size_t i = 0;
    for (element backend : backends) {
      const std::size_t index = i++;
      std::string_view type;
      if (!backend.is_object() || backend["type"].get(type) != simdjson::SUCCESS) continue;
      std::string_view path, url;
      bool enabled = true;
      if (backend["enabled"].get(enabled) != simdjson::SUCCESS) enabled = true;
      const std::string options_path = "backends[" + std::to_string(index) + "].options";
      if (type == "file" && backend["options"]["path"].get(path) == simdjson::SUCCESS && !path.empty() && enabled &&
          !unexpanded_under(options_path + ".path")) {
        const std::string identity = sinks::file_identity(std::string(path));
        // The router's own files: appended to, a ring of this config is no
        // ring at the next start, and a perf block (this instance's or
        // another's) is taken for another version's and made anew, the
        // positions that spare a restart's duplicates lost with it.
        // Resolved as the path is: /dev/shm may be a link (to /run/shm).
        static const std::string shm = sinks::file_identity("/dev/shm") + "/";
        if (identity.starts_with(shm)) {
          const std::string_view file = std::string_view(identity).substr(shm.size());
          // No rings named: the default one (added once the checks are done).
          const std::vector<RingConfig> rings = config.rings.empty() ? std::vector<RingConfig>(1) : config.rings;
          const auto ring =
              std::find_if(rings.begin(), rings.end(), [&](const RingConfig& r) { return r.name == file; });
          std::string whose;
          if (ring != rings.end()) {
            whose = config.rings.empty() ? "the file of the default ring"
                                         : "the file of rings[" + std::to_string(ring - rings.begin()) + "]";
          } else if (file.ends_with(".perf")) {
            whose = "a perf block's file";
          }
          if (!whose.empty()) {
            list.push_back({options_path + ".path",
                            matcher::quoted(path) + " is " + whose + ", which the router itself writes"});
          }
        }
        const auto [first, fresh] = first_with_path.try_emplace(identity, index);
        struct stat file {};
        const int stat_error = ::stat(identity.c_str(), &file) == 0 ? 0 : errno;
        if (!fresh) {
          list.push_back({"backends[" + std::to_string(index) + "].options.path",
                          matcher::quoted(path) + " is also the file of backends[" + std::to_string(first->second) +
                              "] (one file, one backend)"});
        } else if (stat_error == 0 && S_ISREG(file.st_mode)) {
          const auto [same, new_inode] = first_with_inode.try_emplace({file.st_dev, file.st_ino}, index);
          if (!new_inode) {
            list.push_back({"backends[" + std::to_string(index) + "].options.path",
                            matcher::quoted(path) + " is another name (a hard link) of the file of backends[" +
                                std::to_string(same->second) + "] (one file, one backend)"});
          }
        } else if (const std::string why =
                       ends_in_a_directory(path) ? std::string() : never_a_file(identity, stat_error, file);
                   !why.empty()) {
          // What no write will ever open, as the file system stands: the
          // sink would retry it for good, its events held in the ring. (A
          // path ending in "/", "." or ".." is said to name a directory
          // already.)
          list.push_back({options_path + ".path", matcher::quoted(path) + " " + why});
        }
        auto number = [&](const char* option, std::uint64_t absent) {  // a wrong one has its own error
          std::uint64_t n = 0;
          return backend["options"][option].get(n) == simdjson::SUCCESS ? n : absent;
        };
        const std::filesystem::path written(path);
        const std::string directory = written.has_parent_path() ? written.parent_path().string() : ".";
        // The rotation check reads these three: not where one isn't there
        // (a number too large to read, blanked to 0, read "keeps none").
        const bool rotation_known = !unexpanded_under(options_path + ".rotate_bytes") &&
                                    !unexpanded_under(options_path + ".rotate_seconds") &&
                                    !unexpanded_under(options_path + ".keep");
        file_backends.push_back({index, identity, std::string(path),
                                 rotation_known && (number("rotate_bytes", 0) != 0 || number("rotate_seconds", 0) != 0),
                                 number("keep", sinks::FileSinkOptions{}.keep),
                                 sinks::file_identity(directory) + "/" + written.filename().string()});
      }
      auto given = [&](const char* option) {  // null is absent
        element value;
        return backend["options"][option].get(value) == simdjson::SUCCESS && !value.is_null();
      };
      if ((type == "http" || type == "socket") && backend["options"]["url"].get(url) == simdjson::SUCCESS &&
          !unexpanded_under(options_path + ".url")) {
        const bool tls = tls_url(url);
        // validate loads its TLS files (tls_file_errors), whatever else is wrong.
        // Files named by a string that could not be expanded are left to
        // that string's error (tls_file_errors skips paths with one).
        if (element options; tls && enabled && backend["options"].get(options) == simdjson::SUCCESS) {
          result.tls_backends.push_back({options_path, simdjson::minify(options)});
        }
        for (const char* option : kTlsOptions) {
          if (tls || !given(option)) continue;
          list.push_back({"backends[" + std::to_string(index) + "].options." + option,
                          std::string("a TLS option, but the url is not ") +
                              (type == "http" ? "https://" : "syslog+tls://") + ": events would go in the clear",
                      true});
        }
        // The sink refuses half a client certificate at start.
        if (tls && given("cert_file") != given("key_file")) {
          const char* missing = given("cert_file") ? "key_file" : "cert_file";
          list.push_back({"backends[" + std::to_string(index) + "].options." + missing,
                          std::string("required with ") + (given("cert_file") ? "cert_file" : "key_file") +
                              " (a client certificate needs both)", true});
        }
        if (tls && given("key_passphrase") && !given("key_file")) {
          list.push_back({"backends[" + std::to_string(index) + "].options.key_passphrase",
                          "the passphrase of key_file, which is not given", true});
        }
      }
    }
  }
  // Nor a file another backend's rotation renames or drops: its path.1 ..
  // path.keep, and the numbers past keep, which a rotation drops as files a
  // larger keep left (B on a.log.1 beside A on a.log: A's rotation moved
  // B's file to a.log.2 and its own into B's name, and B went on in A's
  // archive). Whether `name` is `base`.N for any N from 1.
  auto is_rotated_name = [](std::string_view name, const std::string& base) {
    if (!name.starts_with(base) || name.size() <= base.size() + 1 || name[base.size()] != '.') return false;
    const std::string_view suffix = name.substr(base.size() + 1);
    std::uint64_t number = 0;
    const auto [end, error] = std::from_chars(suffix.data(), suffix.data() + suffix.size(), number);
    return error == std::errc{} && end == suffix.data() + suffix.size() && !suffix.starts_with('0') && number != 0;
  };
  for (const FileBackend& rotated : file_backends) {
    if (!rotated.rotates) continue;
    // Its rotated names are longer than its own: the longest, .<keep>, must
    // be a name the file system takes, or every rotation fails (counted and
    // logged, the lines going on into the one file).
    const auto too_long = [](const std::string& name) {
      struct stat unused {};
      return ::stat(name.c_str(), &unused) != 0 && errno == ENAMETOOLONG;
    };
    const std::string suffix = "." + std::to_string(std::max<std::uint64_t>(rotated.keep, 1));
    if (too_long(rotated.renamed + suffix) && !too_long(rotated.renamed)) {  // the path's own error said, if it has one
      list.push_back({"backends[" + std::to_string(rotated.index) + "].options.path",
                      matcher::quoted(rotated.path) + " rotates to names up to its own and \"" + suffix +
                          "\", a name that " + kLongerThanTheFileSystemTakes});
    }
    for (const FileBackend& other : file_backends) {
      // The other's file as it is reached, or its own name (a link there).
      if (other.index == rotated.index || (!is_rotated_name(other.identity, rotated.renamed) &&
                                           !is_rotated_name(other.renamed, rotated.renamed))) {
        continue;
      }
      list.push_back({"backends[" + std::to_string(other.index) + "].options.path",
                      matcher::quoted(other.path) + " is a rotated file of backends[" + std::to_string(rotated.index) +
                          "] (" + matcher::quoted(rotated.path) +
                          (rotated.keep == 0 ? std::string(" keeps none")
                                             : " keeps .1 to ." + std::to_string(rotated.keep)) +
                          " and drops the numbers past it): its rotations would rename or remove this backend's "
                          "file"});
    }
  }
  // An error that judges its member's value (which, for a string that
  // could not be expanded, is not there) goes; one of its key or its
  // siblings stays: an unknown or repeated key, a header's name, a TLS
  // option beside a url in the clear, half a client certificate are errors
  // whatever the value (ConfigError::of_key, said where each is found).
  std::erase_if(list, [&](const matcher::ConfigError& e) { return in_unexpanded(e.path) && !e.of_key; });
  list.insert(list.begin(), unexpanded.begin(), unexpanded.end());
  result.errors = std::move(list);
  // Paths are the same in the text as written; its positions are blanked's.
  result.source = blanked;
  if (!result.errors.empty()) {
    locate_errors(result.source, result.errors);
    return result;
  }
  if (root.is_object()) {
    if (std::string_view s; root["instance"].get(s) == simdjson::SUCCESS) config.instance = std::string(s);
    if (std::uint64_t n; root["router"]["workers"].get(n) == simdjson::SUCCESS) config.workers = static_cast<unsigned>(n);
    if (std::uint64_t n; root["router"]["removed_backend_drain_ms"].get(n) == simdjson::SUCCESS) {
      config.removed_backend_drain_ms = static_cast<std::uint32_t>(n);
    }
    if (std::string_view s; root["admin"]["listen"].get(s) == simdjson::SUCCESS) config.admin_listen = std::string(s);
    if (std::string_view s; root["admin"]["auth_key"].get(s) == simdjson::SUCCESS) config.admin_auth_key = std::string(s);
  }
  if (config.rings.empty()) config.rings.emplace_back();
  result.config = std::move(config);
  return result;
}

std::vector<matcher::ConfigError> tls_file_errors(const ConfigResult& result) {
  std::vector<matcher::ConfigError> errors;
  for (const ConfigResult::TlsBackend& backend : result.tls_backends) {
    for (const auto& problem : sinks::tls_files_problems(backend.options_json)) {
      std::string path = backend.options_path + "." + problem.option;
      // An option with an error of its own (a variable not set) names no file.
      const auto already = std::find_if(result.errors.begin(), result.errors.end(),
                                        [&](const matcher::ConfigError& e) { return e.path == path; });
      if (already == result.errors.end()) errors.push_back({std::move(path), problem.why});
    }
  }
  if (!errors.empty()) locate_errors(result.source, errors);
  return errors;
}

std::vector<std::string> config_notes(const Config& config) {
  std::vector<std::string> notes;
  const char* environment = std::getenv("AUTH_KEY");
  const bool from_environment = environment != nullptr && *environment != '\0';
  if (from_environment || (config.admin_auth_key && !config.admin_auth_key->empty())) {
    notes.push_back(std::string("admin: a key is set (") + (from_environment ? "AUTH_KEY" : "admin.auth_key") +
                    "), but this build has no admin API yet: nothing listens on " + config.admin_listen);
  }
  // Asked for more workers than there are rings: the rest would not come.
  if (config.workers > config.rings.size()) {
    notes.push_back("router.workers is " + std::to_string(config.workers) + ", but the router runs one worker per ring " +
                    "(a ring has one consumer): " + std::to_string(config.rings.size()) +
                    " here; more rings spread the load over more workers");
  }
  return notes;
}

bool report_config_errors(const ConfigResult& result, const char* indent) {
  for (const auto& error : result.errors) std::fprintf(stderr, "%s%s\n", indent, error.located().c_str());
  return !result.errors.empty();
}

bool report_config_and_tls_file_errors(const ConfigResult& result) {
  const bool bad_text = report_config_errors(result);
  ConfigResult files;
  files.errors = tls_file_errors(result);
  return report_config_errors(files) || bad_text;
}

ConfigResult load_config_file(const std::string& path) {
  InputFile file(path);
  std::string problem = file.problem();
  std::string text;
  if (problem.empty()) {
    errno = 0;
    std::istream& in = file.stream();
    // Read with a bound: a path to /dev/zero (or a file without end) took
    // memory until the process was killed, and a reload did so on the
    // router's main thread, where it held off every stop signal too.
    char chunk[1 << 16];
    while (in.read(chunk, sizeof chunk) || in.gcount() > 0) {
      if (text.size() + static_cast<std::size_t>(in.gcount()) > kMostConfigBytes) {
        problem = "longer than " + std::to_string(kMostConfigBytes) + " bytes, the most a config may be";
        break;
      }
      text.append(chunk, static_cast<std::size_t>(in.gcount()));
    }
    if (problem.empty() && read_failed(in)) problem = errno != 0 ? std::strerror(errno) : "read error";
  }
  if (!problem.empty()) {
    ConfigResult result;
    result.errors.push_back({"", "cannot read " + path + ": " + problem});
    return result;
  }
  return parse_config(text);
}

}  // namespace ringroute::tools
