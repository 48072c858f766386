// The event record: what a producer writes into a ring record's payload and
// what the router decodes. Header-only (target ringroute::event) so producers,
// the router and tools share one definition.
//
// Layout, version 1 (little-endian, no alignment needed inside a payload):
//
//   0   u8   format version (kEventFormatVersion)
//   1   u8   severity  (Severity)
//   2   u8   verbosity (Verbosity)
//   3   u8   flags     (none defined; must be 0)
//   4   u16  present   bit i set: string field i is present (StringField order);
//                      bit kTreePresentBit: account_tree is present
//   6   u16  tree_count
//   8   i64  timestamp, ns since the epoch
//   16  u32  body_bytes
//   20  u16  length of each present string field, in StringField order,
//            then the length of each account_tree entry
//   ..       the present strings' bytes, the tree entries' bytes, the body
//
// decode() checks every length against the payload before it trusts it, and
// the lengths must add up to the payload exactly: a record that fails any
// check is corrupt, never read out of bounds.
#pragma once

#include <algorithm>
#include <array>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <string_view>

namespace ringroute::event {

inline constexpr std::uint8_t kEventFormatVersion = 1;
inline constexpr std::size_t kFixedBytes = 20;
inline constexpr std::size_t kMaxFieldBytes = 0xffff;
inline constexpr std::size_t kMaxTreeEntries = 0xffff;

// Seconds from 0000-01-01 to 1970-01-01, as Kazoo's gregorian seconds count.
inline constexpr std::int64_t kGregorianToUnix = 62167219200;

// An event's time (ns since the epoch) in seconds since 0000-01-01 as Kazoo
// counts them: Unix seconds floored, not truncated, + kGregorianToUnix.
[[nodiscard]] constexpr std::int64_t gregorian_seconds(std::int64_t ns) noexcept {
  std::int64_t seconds = ns / 1'000'000'000;
  if (ns % 1'000'000'000 < 0) --seconds;
  return seconds + kGregorianToUnix;
}

static_assert(std::endian::native == std::endian::little, "the event record is little-endian");

// Ordered least to most severe; the order is what `severity` bindings use.
enum class Severity : std::uint8_t { ok = 0, warning = 1, critical = 2 };
// Ordered most to least verbose (`trace` is the most verbose).
enum class Verbosity : std::uint8_t { trace = 0, debug = 1, info = 2, warn = 3, error = 4, fatal = 5 };

inline constexpr std::array<std::string_view, 3> kSeverityNames{"ok", "warning", "critical"};
inline constexpr std::array<std::string_view, 6> kVerbosityNames{"trace", "debug", "info",
                                                                  "warn",  "error", "fatal"};
inline constexpr unsigned kSeverityCount = kSeverityNames.size();
inline constexpr unsigned kVerbosityCount = kVerbosityNames.size();

[[nodiscard]] constexpr std::string_view name(Severity s) noexcept {
  return kSeverityNames[static_cast<std::size_t>(s)];
}
[[nodiscard]] constexpr std::string_view name(Verbosity v) noexcept {
  return kVerbosityNames[static_cast<std::size_t>(v)];
}
// Levels are lower-case and compared byte for byte: "Warning" is unknown.
[[nodiscard]] constexpr std::optional<Severity> parse_severity(std::string_view s) noexcept {
  for (std::size_t i = 0; i < kSeverityNames.size(); ++i) {
    if (kSeverityNames[i] == s) return static_cast<Severity>(i);
  }
  return std::nullopt;
}
[[nodiscard]] constexpr std::optional<Verbosity> parse_verbosity(std::string_view s) noexcept {
  for (std::size_t i = 0; i < kVerbosityNames.size(); ++i) {
    if (kVerbosityNames[i] == s) return static_cast<Verbosity>(i);
  }
  return std::nullopt;
}

// The optional string fields, in record order.
enum class StringField : std::uint8_t {
  id = 0,
  account_id,
  app_name,
  app_version,
  node,
  topic,
  stream_name,
  event_type,
  tag,
};
inline constexpr std::size_t kStringFieldCount = 9;
inline constexpr unsigned kTreePresentBit = kStringFieldCount;
inline constexpr std::uint16_t kKnownPresentBits = (1u << (kStringFieldCount + 1)) - 1;

inline constexpr std::array<std::string_view, kStringFieldCount> kStringFieldNames{
    "id", "account_id", "app_name", "app_version", "node", "topic", "stream_name", "event_type", "tag"};

constexpr std::uint16_t bit(StringField f) noexcept {
  return static_cast<std::uint16_t>(1u << static_cast<unsigned>(f));
}

// A decoded account_tree: entries are read in order (root first).
//
// The entries' lengths are read again as the tree is walked, from the ring,
// which producers share: one that rewrites them after decode() checked them
// gets cut entries, never a read past the tree's bytes (`bytes_end`).
class AccountTree {
 public:
  AccountTree() = default;
  AccountTree(const std::byte* lengths, const char* bytes, const char* bytes_end, std::uint16_t count) noexcept
      : lengths_(lengths), bytes_(bytes), bytes_end_(bytes_end), count_(count) {}

  [[nodiscard]] std::size_t size() const noexcept { return count_; }
  [[nodiscard]] bool empty() const noexcept { return count_ == 0; }
  // Bytes every entry lies within, whatever the lengths say when read: the
  // one bound that holds when a producer rewrites them between two walks.
  [[nodiscard]] std::size_t byte_size() const noexcept { return static_cast<std::size_t>(bytes_end_ - bytes_); }

  class iterator {
   public:
    using value_type = std::string_view;
    using difference_type = std::ptrdiff_t;
    iterator() = default;
    iterator(const std::byte* lengths, const char* bytes, const char* bytes_end, std::uint16_t left) noexcept
        : lengths_(lengths), bytes_(bytes), bytes_end_(bytes_end), left_(left) {}
    std::string_view operator*() const noexcept { return {bytes_, length()}; }
    iterator& operator++() noexcept {
      bytes_ += length();
      lengths_ += 2;
      --left_;
      return *this;
    }
    iterator operator++(int) noexcept {
      iterator before = *this;
      ++*this;
      return before;
    }
    bool operator==(const iterator& other) const noexcept { return left_ == other.left_; }

   private:
    std::size_t length() const noexcept {
      std::uint16_t n;
      std::memcpy(&n, lengths_, 2);
      return std::min<std::size_t>(n, static_cast<std::size_t>(bytes_end_ - bytes_));
    }
    const std::byte* lengths_ = nullptr;
    const char* bytes_ = nullptr;
    const char* bytes_end_ = nullptr;
    std::uint16_t left_ = 0;
  };
  [[nodiscard]] iterator begin() const noexcept { return {lengths_, bytes_, bytes_end_, count_}; }
  [[nodiscard]] iterator end() const noexcept { return {nullptr, nullptr, nullptr, 0}; }

 private:
  const std::byte* lengths_ = nullptr;
  const char* bytes_ = nullptr;
  const char* bytes_end_ = nullptr;
  std::uint16_t count_ = 0;
};

// A decoded event: views into the record's bytes, valid while the record is.
struct EventView {
  std::array<std::string_view, kStringFieldCount> strings{};
  std::uint16_t present = 0;
  Severity severity = Severity::ok;
  Verbosity verbosity = Verbosity::info;
  std::int64_t timestamp_ns = 0;
  AccountTree account_tree;
  std::string_view body;

  [[nodiscard]] bool has(StringField f) const noexcept { return (present & bit(f)) != 0; }
  [[nodiscard]] bool has_account_tree() const noexcept { return (present >> kTreePresentBit) & 1u; }
  [[nodiscard]] std::string_view get(StringField f) const noexcept {
    return strings[static_cast<std::size_t>(f)];
  }
};

enum class DecodeError : std::uint8_t {
  none = 0,
  truncated,        // shorter than its own lengths say
  trailing_bytes,   // longer than its lengths say
  bad_version,
  bad_level,
  unknown_bits,
};

[[nodiscard]] constexpr const char* to_string(DecodeError e) noexcept {
  switch (e) {
    case DecodeError::none: return "ok";
    case DecodeError::truncated: return "record shorter than its lengths";
    case DecodeError::trailing_bytes: return "record longer than its lengths";
    case DecodeError::bad_version: return "unknown event format version";
    case DecodeError::bad_level: return "severity or verbosity out of range";
    case DecodeError::unknown_bits: return "unknown flag or presence bits";
  }
  return "unknown error";
}

namespace detail {
inline std::uint16_t load_u16(const std::byte* p) noexcept {
  std::uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}
inline void store_u16(std::byte* p, std::uint16_t v) noexcept { std::memcpy(p, &v, 2); }
// std::popcount compiles to a libgcc call without -mpopcnt, which we don't
// assume; this is a handful of instructions for 16 bits.
// Copies up to a few dozen bytes without a call: metadata strings are short,
// and a libc memcpy call per field was most of encode()'s cost. Reads and
// writes exactly [0, n).
inline void copy_small(char* dst, const char* src, std::size_t n) noexcept {
  if (n >= 8) {
    if (n > 16) {
      std::memcpy(dst, src, n);
      return;
    }
    std::uint64_t head, tail;
    std::memcpy(&head, src, 8);
    std::memcpy(&tail, src + n - 8, 8);
    std::memcpy(dst, &head, 8);
    std::memcpy(dst + n - 8, &tail, 8);
  } else if (n >= 4) {
    std::uint32_t head, tail;
    std::memcpy(&head, src, 4);
    std::memcpy(&tail, src + n - 4, 4);
    std::memcpy(dst, &head, 4);
    std::memcpy(dst + n - 4, &tail, 4);
  } else if (n != 0) {
    dst[0] = src[0];
    dst[n / 2] = src[n / 2];
    dst[n - 1] = src[n - 1];
  }
}
constexpr unsigned count_bits(unsigned v) noexcept {
  v = v - ((v >> 1) & 0x5555u);
  v = (v & 0x3333u) + ((v >> 2) & 0x3333u);
  v = (v + (v >> 4)) & 0x0f0fu;
  return (v + (v >> 8)) & 0x1fu;
}
}  // namespace detail

// Decodes `record` into `out`. No allocation, no exception; on error `out` is
// unspecified. Cost: one pass over the length table.
[[nodiscard]] inline DecodeError decode(std::span<const std::byte> record, EventView& out) noexcept {
  const std::byte* p = record.data();
  const std::size_t size = record.size();
  if (size < kFixedBytes) return DecodeError::truncated;
  if (static_cast<std::uint8_t>(p[0]) != kEventFormatVersion) return DecodeError::bad_version;
  const auto severity = static_cast<std::uint8_t>(p[1]);
  const auto verbosity = static_cast<std::uint8_t>(p[2]);
  if (severity > 2 || verbosity > 5) return DecodeError::bad_level;
  if (static_cast<std::uint8_t>(p[3]) != 0) return DecodeError::unknown_bits;
  const std::uint16_t present = detail::load_u16(p + 4);
  if ((present & ~kKnownPresentBits) != 0) return DecodeError::unknown_bits;
  const std::uint16_t tree_count = detail::load_u16(p + 6);
  if (tree_count != 0 && ((present >> kTreePresentBit) & 1u) == 0) return DecodeError::unknown_bits;
  std::int64_t timestamp;
  std::memcpy(&timestamp, p + 8, 8);
  std::uint32_t body_bytes;
  std::memcpy(&body_bytes, p + 16, 4);

  const unsigned strings_present = detail::count_bits(present & ((1u << kStringFieldCount) - 1));
  const std::size_t table_bytes = 2 * (std::size_t{strings_present} + tree_count);
  if (size - kFixedBytes < table_bytes) return DecodeError::truncated;
  const std::byte* lengths = p + kFixedBytes;
  const char* cursor = reinterpret_cast<const char*>(lengths + table_bytes);
  std::size_t left = size - kFixedBytes - table_bytes;

  out.present = present;
  out.severity = static_cast<Severity>(severity);
  out.verbosity = static_cast<Verbosity>(verbosity);
  out.timestamp_ns = timestamp;
  for (std::size_t f = 0; f < kStringFieldCount; ++f) {
    if ((present >> f) & 1u) {
      const std::size_t n = detail::load_u16(lengths);
      lengths += 2;
      if (n > left) return DecodeError::truncated;
      out.strings[f] = std::string_view(cursor, n);
      cursor += n;
      left -= n;
    } else {
      out.strings[f] = std::string_view();
    }
  }
  const std::byte* tree_lengths = lengths;
  const char* tree_bytes = cursor;
  for (std::size_t i = 0; i < tree_count; ++i) {
    const std::size_t n = detail::load_u16(lengths);
    lengths += 2;
    if (n > left) return DecodeError::truncated;
    cursor += n;
    left -= n;
  }
  out.account_tree = AccountTree(tree_lengths, tree_bytes, cursor, tree_count);
  if (body_bytes > left) return DecodeError::truncated;
  if (body_bytes < left) return DecodeError::trailing_bytes;
  out.body = std::string_view(cursor, body_bytes);
  return DecodeError::none;
}

// What a producer hands to encode(): strings present by bit, and an account
// tree given as any sized range of things convertible to string_view.
struct EventInput {
  std::array<std::string_view, kStringFieldCount> strings{};
  std::uint16_t present = 0;  // string bits only; the tree bit is set by encode()
  Severity severity = Severity::ok;
  Verbosity verbosity = Verbosity::info;
  std::int64_t timestamp_ns = 0;
  std::string_view body = "{}";

  void set(StringField f, std::string_view value) noexcept {
    strings[static_cast<std::size_t>(f)] = value;
    present = static_cast<std::uint16_t>(present | bit(f));
  }
};

// Bytes encode() will write, or 0 when a field is over kMaxFieldBytes, the
// tree has more than kMaxTreeEntries entries, or the body is over 4 GiB.
template <class Tree>
[[nodiscard]] std::size_t encoded_size(const EventInput& in, const Tree& tree) noexcept {
  std::size_t total = kFixedBytes;
  for (std::size_t f = 0; f < kStringFieldCount; ++f) {
    if ((in.present >> f) & 1u) {
      const std::size_t n = in.strings[f].size();
      if (n > kMaxFieldBytes) return 0;
      total += 2 + n;
    }
  }
  if (tree.size() > kMaxTreeEntries) return 0;
  for (std::size_t i = 0; i < tree.size(); ++i) {
    const std::size_t n = std::string_view(tree[i]).size();
    if (n > kMaxFieldBytes) return 0;
    total += 2 + n;
  }
  if (in.body.size() > 0xffff'ffffu) return 0;
  return total + in.body.size();
}

// Writes the record to `out`, which has room for encoded_size() bytes (a
// nonzero one). `tree_present` says whether the tree counts as present when
// empty. No allocation, no exception.
template <class Tree>
void encode(const EventInput& in, const Tree& tree, bool tree_present, std::byte* out) noexcept {
  out[0] = std::byte{kEventFormatVersion};
  out[1] = static_cast<std::byte>(in.severity);
  out[2] = static_cast<std::byte>(in.verbosity);
  out[3] = std::byte{0};
  const auto present = static_cast<std::uint16_t>(
      (in.present & ((1u << kStringFieldCount) - 1)) |
      ((tree_present || tree.size() != 0) ? (1u << kTreePresentBit) : 0u));
  detail::store_u16(out + 4, present);
  detail::store_u16(out + 6, static_cast<std::uint16_t>(tree.size()));
  std::memcpy(out + 8, &in.timestamp_ns, 8);
  const auto body_bytes = static_cast<std::uint32_t>(in.body.size());
  std::memcpy(out + 16, &body_bytes, 4);
  std::byte* lengths = out + kFixedBytes;
  const std::size_t strings_present = detail::count_bits(present & ((1u << kStringFieldCount) - 1));
  char* cursor = reinterpret_cast<char*>(lengths + 2 * (strings_present + tree.size()));
  // Only the present fields, lowest bit first (record order): a typical
  // event has four of the nine, and testing each bit cost more than copying.
  for (unsigned bits = present & ((1u << kStringFieldCount) - 1); bits != 0; bits &= bits - 1) {
    const std::string_view s = in.strings[static_cast<std::size_t>(__builtin_ctz(bits))];
    detail::store_u16(lengths, static_cast<std::uint16_t>(s.size()));
    lengths += 2;
    detail::copy_small(cursor, s.data(), s.size());
    cursor += s.size();
  }
  for (std::size_t i = 0; i < tree.size(); ++i) {
    const std::string_view s(tree[i]);
    detail::store_u16(lengths, static_cast<std::uint16_t>(s.size()));
    lengths += 2;
    detail::copy_small(cursor, s.data(), s.size());
    cursor += s.size();
  }
  if (!in.body.empty()) std::memcpy(cursor, in.body.data(), in.body.size());
}

}  // namespace ringroute::event
