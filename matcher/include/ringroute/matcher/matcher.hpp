#pragma once
// The compiled matcher: every binding of every enabled backend in one
// immutable structure, so a match costs what the event's key costs (its
// account, its ancestors, its app, its topic words), not what the number of
// bindings costs.
//
// Shape: a hash trie. Level 1 is the account (exact id, ancestor id for
// include_descendants, or any); level 2 the app (exact or any); a leaf holds,
// per backend, an 18-bit set of the (severity, verbosity) pairs its bindings
// accept, plus filtered entries and an optional trie of topic pattern words.
// Every labelled edge lives in one open-addressed table keyed by
// (parent node, label), so a step is one hash probe.
//
// Thread-safety: a Matcher is immutable after compile(); any number of threads
// match against it, each with its own MatchScratch.

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <simdjson.h>

#include "ringroute/event/event.hpp"
#include "ringroute/matcher/config.hpp"

namespace re2 {
class RE2;
}

namespace ringroute::matcher {

// The backends an event matched, by config index. Ascending iteration gives
// config order. Sized once per matcher; clear() costs the matched count.
class BackendSet {
 public:
  void resize(std::size_t backends) {
    words_.assign((backends + 63) / 64, 0);
    members_.clear();
    members_.reserve(backends);
  }
  [[nodiscard]] bool test(std::uint32_t i) const noexcept { return (words_[i >> 6] >> (i & 63)) & 1u; }
  void set(std::uint32_t i) noexcept {
    std::uint64_t& word = words_[i >> 6];
    const std::uint64_t mask = std::uint64_t{1} << (i & 63);
    if ((word & mask) == 0) {
      word |= mask;
      members_.push_back(i);
    }
  }
  void clear() noexcept {
    for (std::uint32_t i : members_) words_[i >> 6] = 0;
    members_.clear();
  }
  [[nodiscard]] std::size_t size() const noexcept { return members_.size(); }
  [[nodiscard]] bool empty() const noexcept { return members_.empty(); }
  [[nodiscard]] std::size_t capacity() const noexcept { return words_.size() * 64; }
  // Calls f(index) in config order.
  template <class F>
  void for_each(F&& f) const {
    for (std::size_t w = 0; w < words_.size(); ++w) {
      for (std::uint64_t bits = words_[w]; bits != 0; bits &= bits - 1) {
        f(static_cast<std::uint32_t>(w * 64 + static_cast<unsigned>(__builtin_ctzll(bits))));
      }
    }
  }

 private:
  std::vector<std::uint64_t> words_;
  std::vector<std::uint32_t> members_;  // reserved to the backend count: push_back never allocates
};

class Matcher;

// A label as the matcher probes for it: hashed once per event (not once per
// trie node), with its first 16 bytes zero-padded for a two-word compare.
struct LabelKey {
  std::string_view text;
  std::uint64_t hash = 0;
  std::uint64_t head[2] = {0, 0};
};
[[nodiscard]] LabelKey make_label_key(std::string_view text) noexcept;

// Per-thread working space for match(): topic words, the body parser for
// filters, and this thread's own copies of the filters' regexes (RE2 locks
// its DFA cache; private copies keep threads from contending on it).
// Allocates when it first meets a matcher generation or a longer body/topic,
// never per event after that.
class MatchScratch {
 public:
  MatchScratch();
  ~MatchScratch();
  MatchScratch(const MatchScratch&) = delete;
  MatchScratch& operator=(const MatchScratch&) = delete;

 private:
  friend class Matcher;
  friend class FilterEvaluator;
  std::vector<LabelKey> words_;     // topic words, keyed
  LabelKey app_;
  bool words_ready_ = false;
  std::string topic_;  // the derived topic, built only for a filter that reads it
  bool topic_ready_ = false;
  simdjson::ondemand::parser parser_;
  std::vector<char> body_;  // the body, copied with simdjson's padding
  simdjson::ondemand::document document_;
  int body_state_ = 0;  // 0 not parsed for this event, 1 parsed, -1 not an object
  std::uint64_t regex_generation_ = 0;
  std::vector<std::unique_ptr<re2::RE2>> regexes_;
};

class Matcher {
 public:
  // Compiles all bindings of the enabled backends. Backend indices are the
  // positions in `backends` (disabled ones included, they just never match).
  static std::unique_ptr<const Matcher> compile(std::span<const BackendSpec> backends);

  ~Matcher();
  Matcher(const Matcher&) = delete;
  Matcher& operator=(const Matcher&) = delete;

  // Adds the backends `event` matches to `out` (which must have been
  // resize()d to backend_count(); match() does not clear it).
  void match(const event::EventView& event, MatchScratch& scratch, BackendSet& out) const noexcept;

  [[nodiscard]] std::size_t backend_count() const noexcept { return backend_names_.size(); }
  [[nodiscard]] const std::string& backend_name(std::uint32_t index) const noexcept {
    return backend_names_[index];
  }
  // Bytes held by the compiled form (tables, nodes, entries, labels, filters).
  [[nodiscard]] std::size_t memory_bytes() const noexcept;
  [[nodiscard]] std::size_t node_count() const noexcept { return nodes_.size(); }
  // Unique per compile, so scratch spaces notice a new generation.
  [[nodiscard]] std::uint64_t generation() const noexcept { return generation_; }

  static constexpr std::uint32_t kNone = 0xffffffffu;

  struct Node {
    std::uint32_t any_child = kNone;   // account nodes: app "*"; topic nodes: word "*"
    std::uint32_t hash_child = kNone;  // topic nodes: word "#"
    std::uint32_t topic_root = kNone;  // leaves: their topic pattern trie
    std::uint32_t labelled_children = 0;  // 0: skip the edge table
    std::uint32_t plain_begin = 0, plain_end = 0;
    std::uint32_t filtered_begin = 0, filtered_end = 0;
  };
  struct PlainEntry {
    std::uint32_t backend;
    std::uint32_t pairs;  // bit severity*6+verbosity: accepted (severity, verbosity)
  };
  struct FilteredEntry {
    std::uint32_t backend;
    std::uint32_t pairs;
    std::uint32_t filter;  // index into filters_
  };
  // 32 bytes: labels up to 16 bytes live in the edge itself, so a probe
  // costs one cache line; longer ones are in labels_.
  struct Edge {
    std::uint32_t tag;  // high bits of the probe hash
    std::uint32_t parent;
    std::uint32_t child;
    std::uint32_t label_length;
    std::uint64_t label[2];  // inline (zero-padded), or label[0] = offset into labels_
  };

 private:
  Matcher() = default;
  friend class MatcherBuilder;
  friend class FilterEvaluator;

  [[nodiscard]] std::uint32_t find_child(std::uint32_t parent, const LabelKey& key) const noexcept;
  void visit_account(std::uint32_t node, const event::EventView& event, std::uint32_t pair,
                     MatchScratch& scratch, BackendSet& out) const noexcept;
  void visit_leaf(std::uint32_t node, const event::EventView& event, std::uint32_t pair,
                  MatchScratch& scratch, BackendSet& out) const noexcept;
  void visit_entries(const Node& node, const event::EventView& event, std::uint32_t pair,
                     MatchScratch& scratch, BackendSet& out) const noexcept;
  void walk_topic(std::uint32_t node, std::size_t word, const event::EventView& event,
                  std::uint32_t pair, MatchScratch& scratch, BackendSet& out) const noexcept;
  void prepare_words(const event::EventView& event, MatchScratch& scratch) const noexcept;
  [[nodiscard]] bool evaluate(std::uint32_t filter, const event::EventView& event,
                              MatchScratch& scratch) const noexcept;

  // Fixed nodes.
  static constexpr std::uint32_t kAnyAccount = 0;
  static constexpr std::uint32_t kExactRoot = 1;  // parent of exact account ids
  static constexpr std::uint32_t kDescendantRoot = 2;  // parent of ancestor ids

  std::vector<Node> nodes_;
  std::vector<Edge> edges_;  // open addressing; child == kNone is empty
  std::uint64_t edge_mask_ = 0;
  std::string labels_;
  std::vector<PlainEntry> plain_;
  std::vector<FilteredEntry> filtered_;
  std::vector<std::shared_ptr<const filter::Expression>> filters_;
  std::vector<std::string> regex_patterns_;   // by regex index
  std::vector<std::vector<std::uint32_t>> filter_regexes_;  // filter → comparison → regex index
  std::vector<std::string> backend_names_;
  bool has_descendant_bindings_ = false;
  std::uint64_t generation_ = 0;
};

}  // namespace ringroute::matcher
