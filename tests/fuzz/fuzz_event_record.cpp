// decode() on arbitrary bytes: never reads out of bounds, and whatever it
// accepts re-encodes to the same bytes.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "ringroute/event/event.hpp"

namespace {
struct TreeView {
  std::vector<std::string_view> entries;
  std::size_t size() const { return entries.size(); }
  std::string_view operator[](std::size_t i) const { return entries[i]; }
};
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace ringroute::event;
  EventView v;
  const auto* bytes = reinterpret_cast<const std::byte*>(data);
  if (decode({bytes, size}, v) != DecodeError::none) return 0;
  EventInput in;
  in.strings = v.strings;
  in.present = static_cast<std::uint16_t>(v.present & ((1u << kStringFieldCount) - 1));
  in.severity = v.severity;
  in.verbosity = v.verbosity;
  in.timestamp_ns = v.timestamp_ns;
  in.body = v.body;
  TreeView tree;
  for (auto s : v.account_tree) tree.entries.push_back(s);
  const std::size_t n = encoded_size(in, tree);
  if (n != size) std::abort();
  std::vector<std::byte> again(n);
  encode(in, tree, v.has_account_tree(), again.data());
  if (std::memcmp(again.data(), data, size) != 0) std::abort();
  return 0;
}
