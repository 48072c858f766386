#pragma once
// An event from fuzz input, as the sink fuzz targets build it: byte 0 is
// theirs (option flags), bytes 1-3 pick severity, verbosity and a timestamp
// across the whole int64 range; the rest is split at 0xff bytes into the
// string fields in record order, then account-tree entries, then the body
// (any bytes: invalid UTF-8, control characters, not JSON).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>
#include <vector>

#include "ringroute/event/event.hpp"

namespace ringroute::fuzzing {

struct FuzzEvent {
  event::EventInput input;
  std::vector<std::string_view> tree;
  std::vector<std::byte> record;
  event::EventView view;

  // False when the input is too short or makes no record.
  bool build(const std::uint8_t* data, std::size_t size, bool with_tree) {
    if (size < 4) return false;
    input.severity = static_cast<event::Severity>(data[1] % 3);
    input.verbosity = static_cast<event::Verbosity>(data[2] % 6);
    input.timestamp_ns = static_cast<std::int64_t>(data[3]) * 7'919'000'000'123LL - 1'000'000'000'000'000'000LL;
    std::string_view rest(reinterpret_cast<const char*>(data + 4), size - 4);
    std::vector<std::string_view> parts;
    const std::size_t most = with_tree ? 12 : event::kStringFieldCount;
    for (std::size_t at; (at = rest.find('\xff')) != std::string_view::npos && parts.size() < most;) {
      parts.push_back(rest.substr(0, at));
      rest.remove_prefix(at + 1);
    }
    input.body = rest;
    for (std::size_t i = 0; i < parts.size(); ++i) {
      if (i < event::kStringFieldCount) {
        if (!parts[i].empty()) input.set(static_cast<event::StringField>(i), parts[i]);
      } else {
        tree.push_back(parts[i]);
      }
    }
    const std::size_t bytes = event::encoded_size(input, tree);
    if (bytes == 0) return false;
    record.resize(bytes);
    event::encode(input, tree, !tree.empty(), record.data());
    if (event::decode(record, view) != event::DecodeError::none) std::abort();
    return true;
  }
};

}  // namespace ringroute::fuzzing
