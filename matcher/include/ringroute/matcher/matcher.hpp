#pragma once
// The compiled matcher: every binding of every enabled backend in one
// immutable structure, so a match costs what the event's key costs (its
// account, its ancestors, its app, its topic words), not what the number of
// bindings costs.
//
// Shape: a hash trie. Level 1 is the account (exact id, ancestor id for
// include_descendants, or any); level 2 the app (exact or any); a leaf holds,
// per backend, an 18-bit set of the (severity, verbosity) pairs its bindings
// accept (the first few inline in the leaf's own cache line), plus filtered
// entries and the leaf's topic patterns, compiled into a DFA over their words
// (a trie walked with backtracking where the DFA would be too big).
//
// An account is one 64-byte slot in an open-addressed table keyed by (root,
// id): the slot holds the account's `*` app leaf when it is small (most are)
// and 16-bit tags of the apps it has leaves for. An event's usual walk is then
// one cache line per account it names: its app's leaf is looked for only when
// its tag is there. App leaves and topic words are edges in a second table
// keyed by (parent node, label). The any-account, which every event
// reaches, is a row of precomputed results per (app, pair) where its slot
// would be heavy. match_batch() issues each step for a group of events
// before reading any, so their cache misses overlap.
//
// Thread-safety: a Matcher is immutable after compile(); any number of threads
// match against it, each with its own MatchScratch.

#include <algorithm>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <simdjson.h>

#include "ringroute/event/event.hpp"
#include "ringroute/matcher/config.hpp"
#include "ringroute/matcher/huge_pages.hpp"

namespace re2 {
class RE2;
}

namespace ringroute::matcher {

// The backends an event matched, by config index. Ascending iteration gives
// config order. Sized once per matcher; clear(), size() and for_each() cost
// a word per 64 backends, set() an OR without a branch.
class BackendSet {
 public:
  void resize(std::size_t backends) { words_.assign((backends + 63) / 64, 0); }
  [[nodiscard]] bool test(std::uint32_t i) const noexcept { return (words_[i >> 6] >> (i & 63)) & 1u; }
  void set(std::uint32_t i) noexcept { words_[i >> 6] |= std::uint64_t{1} << (i & 63); }
  // set(i) on a set's words() when `add`, without a branch on it: the
  // matcher calls this for entries that match at random, holding words()
  // in a register across them.
  static void set_if(std::uint64_t* words, std::uint32_t i, bool add) noexcept {
    words[i >> 6] |= static_cast<std::uint64_t>(add) << (i & 63);
  }
  [[nodiscard]] std::uint64_t* words() noexcept { return words_.data(); }
  void clear() noexcept {
    // Up to 128 backends (most configs), two stores rather than a call to
    // memset: the router clears a set per record.
    const std::size_t n = words_.size();
    if (n <= 2) [[likely]] {
      if (n > 0) words_[0] = 0;
      if (n > 1) words_[1] = 0;
      return;
    }
    std::fill(words_.begin(), words_.end(), 0);
  }
  [[nodiscard]] std::size_t size() const noexcept {
    std::size_t count = 0;
    for (std::uint64_t word : words_) count += static_cast<std::size_t>(__builtin_popcountll(word));
    return count;
  }
  [[nodiscard]] bool empty() const noexcept {
    return std::all_of(words_.begin(), words_.end(), [](std::uint64_t word) { return word == 0; });
  }
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

// How compile() may trade memory for speed.
struct CompileOptions {
  // Topic patterns under one (account, app) leaf become a DFA over their
  // words when its subset construction stays within this many states;
  // past it (pathological sets of `#` patterns) that leaf keeps the
  // backtracking walk. 0 turns the DFAs off (tests compare both).
  std::size_t max_topic_states = 4096;
  // All leaves' DFAs together, bounding compile time and memory (a state
  // costs a step per word its nodes' children name).
  std::size_t max_total_topic_states = 1 << 16;
  // And the work of building them, all leaves together, failed builds
  // included: a node of a state's set stepped on one word is one unit.
  // States alone do not bound it (4,000 patterns "#.w<i>" on one leaf are
  // 4,002 states but 16 million transitions); past it, leaves walk.
  std::size_t max_total_topic_work = std::size_t{1} << 24;
  // And one leaf's share of it, so a leaf whose DFA is huge walks without
  // spending the budget of the leaves after it.
  std::size_t max_topic_work = std::size_t{1} << 20;
  // The any-account's results per (app, pair) (see Matcher::any_results_)
  // are worked out when they take at most this many bytes; 0 turns them off
  // (tests compare both).
  std::size_t max_any_result_bytes = std::size_t{1} << 20;
  // They are only worth it where reading the any-account's slot costs more
  // (its `*` leaf out of line, or more apps than its tags hold); tests set
  // this to have them wherever they fit.
  bool any_results_always = false;
};

// Per-thread working space for match(): the keys of a group of events in
// flight, topic words, the body parser for filters, and this thread's own
// copies of the filters' regexes (RE2 locks its DFA cache; private copies
// keep threads from contending on it). Allocates when it first meets a
// matcher generation, a longer body or topic, or a deeper account tree than
// any before it; never per event after that.
class MatchScratch {
 public:
  MatchScratch();
  ~MatchScratch();
  MatchScratch(const MatchScratch&) = delete;
  MatchScratch& operator=(const MatchScratch&) = delete;

  // Events matched together: each step of the walk is issued for all of
  // them (with prefetches) before the next step reads, so their cache
  // misses overlap instead of following one another.
  static constexpr std::size_t kGroup = 16;

  // Filters evaluated with this scratch so far (each at most once an event).
  [[nodiscard]] std::uint64_t filter_evaluations() const noexcept { return filter_evaluations_; }

 private:
  friend class Matcher;
  friend class FilterEvaluator;
  struct Probe {  // an account-level probe: (root, account or ancestor id)
    LabelKey key;
    std::uint64_t hash;  // of (parent, key) in the edge table
    std::uint32_t parent;
  };
  struct Visit {
    std::uint32_t node;   // accounts: the account node; leaves: the leaf
    std::uint32_t event;
    std::uint64_t hash;   // accounts: of (node, the event's app) in the edge table
    std::uint32_t star;   // accounts: their `*` leaf to read out of line, or kNone
    bool probe_app;       // accounts: whether the app's leaf may exist
    // The leaf's plain entries are in the set already (the any-account's
    // results table): only its filtered entries and topics are read.
    bool plain_done = false;
  };
  std::vector<Probe> probes_;
  std::vector<Visit> accounts_;
  std::vector<Visit> leaves_;
  LabelKey apps_[kGroup];
  std::uint32_t pairs_[kGroup];
  const LabelKey* account_key_ = nullptr;  // the current event's account, when the walk hashed it
  const LabelKey* app_key_ = nullptr;      // the current event's app, when it has one
  bool word_ids_ready_ = false;

  std::vector<LabelKey> words_;     // topic words, keyed
  std::vector<std::uint64_t> topic_set_, topic_next_;  // walk_topic()'s node sets
  // Each filter's result for the event whose serial it holds (one evaluation
  // an event, however many visits reach it). 64 bits: never wraps to an
  // old event's serial.
  std::uint64_t event_serial_ = 0;
  std::vector<std::uint64_t> filter_seen_;
  std::vector<bool> filter_result_;
  std::uint64_t filter_evaluations_ = 0;
  std::vector<std::uint32_t> word_ids_;  // their ids in the topic alphabet (kNone: other)
  std::size_t word_count_ = 0;           // of word_ids_ in use
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
  static std::unique_ptr<const Matcher> compile(std::span<const BackendSpec> backends,
                                                const CompileOptions& options = {});

  ~Matcher();
  Matcher(const Matcher&) = delete;
  Matcher& operator=(const Matcher&) = delete;

  // Adds the backends `event` matches to `out` (which must have been
  // resize()d to backend_count(); match() does not clear it).
  void match(const event::EventView& event, MatchScratch& scratch, BackendSet& out) const noexcept;
  // The same for a run of events: outs[i] gets events[i]'s backends. Faster
  // per event than match() once the compiled form outgrows the caches, since
  // the events' memory accesses overlap.
  void match_batch(std::span<const event::EventView> events, MatchScratch& scratch, BackendSet* outs) const noexcept;

  [[nodiscard]] std::size_t backend_count() const noexcept { return backend_names_.size(); }
  [[nodiscard]] const std::string& backend_name(std::uint32_t index) const noexcept {
    return backend_names_[index];
  }
  // Bytes held by the compiled form (tables, nodes, entries, labels, filters).
  [[nodiscard]] std::size_t memory_bytes() const noexcept;
  [[nodiscard]] std::size_t node_count() const noexcept { return nodes_.size(); }
  // Leaves whose topic patterns run as a DFA, and those left to the walk.
  [[nodiscard]] std::size_t topic_dfa_count() const noexcept { return topic_dfas_; }
  [[nodiscard]] std::size_t topic_walk_count() const noexcept { return topic_walks_; }
  // Whether the any-account is read from its per-(app, pair) results
  // (CompileOptions::max_any_result_bytes).
  [[nodiscard]] bool any_account_precomputed() const noexcept { return !any_results_.empty(); }
  // Unique per compile, so scratch spaces notice a new generation.
  [[nodiscard]] std::uint64_t generation() const noexcept { return generation_; }

  static constexpr std::uint32_t kNone = 0xffffffffu;

  // The hash an exact account id is probed with: its slot's tag is the top
  // 16 bits, its first slot the low bits. Tests look for ids that collide.
  [[nodiscard]] static std::uint64_t account_probe_hash(std::string_view id) noexcept;

  struct PlainEntry {
    std::uint32_t backend;
    std::uint32_t pairs;  // bit severity*6+verbosity: accepted (severity, verbosity)
  };
  struct FilteredEntry {
    std::uint32_t backend;
    std::uint32_t pairs;
    std::uint32_t filter;  // index into filters_
  };
  // A node's first plain entries live in the node itself: a leaf costs one
  // cache line, not a line and then its entries.
  static constexpr std::uint32_t kInlineEntries = 3;
  // Leaves' `more`: plain entries past the inline ones; filters or topics.
  static constexpr std::uint32_t kMorePlain = 1, kMoreFilteredOrTopics = 2;
  struct alignas(64) Node {
    std::uint32_t any_child = kNone;   // account nodes: app "*"; topic nodes: word "*"
    std::uint32_t hash_child = kNone;  // topic nodes: word "#"
    std::uint32_t topic_root = kNone;  // leaves: their topic pattern trie (the walk)
    std::uint32_t topic_dfa = kNone;   // leaves: its DFA's start state, when it has one
    std::uint32_t labelled_children = 0;  // 0: skip the edge table
    std::uint32_t plain_count = 0;
    std::uint32_t plain_rest = 0;      // plain_[plain_rest ...] past the inline ones
    std::uint32_t filtered_begin = 0, filtered_count = 0;
    // Leaves: kMore* bits, nonzero when there is anything past the inline
    // entries.
    std::uint32_t more = 0;
    PlainEntry plain[kInlineEntries] = {};
  };
  // A state of a leaf's topic DFA: a set of pattern positions.
  struct TopicState {
    std::uint32_t transitions_begin = 0, transitions_count = 0;
    std::uint32_t other = kNone;  // next state on a word no pattern names; kNone: dead
    std::uint32_t plain_begin = 0, plain_count = 0;
    std::uint32_t filtered_begin = 0, filtered_count = 0;
    // Start states: where "edr.<severity>.<verbosity>", the first three
    // words of every derived topic, lead; topic_derived_[derived + pair].
    std::uint32_t derived = kNone;
  };
  struct TopicTransition {
    std::uint32_t word;  // id in the topic alphabet
    std::uint32_t next;  // kNone: dead
  };
  // 32 bytes: labels up to 16 bytes live in the edge itself, so a probe
  // costs one cache line; longer ones are in labels_.
  struct alignas(32) Edge {
    std::uint16_t tag;           // high bits of the probe hash
    std::uint16_t label_length;  // event fields are at most 65535 bytes, so no longer label can match
    std::uint32_t parent;
    std::uint32_t child;         // with leaf_pairs: the backend of the leaf's one entry
    // An (account, app) edge whose leaf holds one plain entry and nothing
    // else: that entry's pairs (never 0), the leaf itself not read (a
    // per-account binding's leaf is one; at 100,000 bindings the leaf was a
    // cache miss after the edge's). 0 for every other edge.
    std::uint32_t leaf_pairs;
    std::uint64_t label[2];  // inline (zero-padded), or label[0] = offset into labels_
  };
  // An account node as the walk reads it: one cache line holding its id, its
  // `*` app leaf's entries when there are few of them and nothing else, and
  // which apps it has leaves for.
  static constexpr std::uint32_t kSlotStarEntries = 2;
  static constexpr std::uint32_t kSlotAppTags = 8;
  static constexpr std::uint8_t kEveryApp = 0xff;  // app_count: more apps than tags, look for each
  struct alignas(64) AccountSlot {
    std::uint16_t tag;           // high bits of the probe hash
    std::uint16_t label_length;
    std::uint8_t parent;         // kExactRoot or kDescendantRoot
    std::uint8_t app_count;      // app leaves; kEveryApp past kSlotAppTags
    std::uint16_t reserved;
    std::uint32_t node;          // kNone: an empty slot
    std::uint32_t star;          // the `*` app leaf to read out of line (kNone: none, or all inline)
    std::uint64_t label[2];      // as Edge::label
    // app_tag() of each app leaf's label; unused ones repeat the first, so
    // all eight are compared at once without a mask.
    std::uint16_t app_tags[kSlotAppTags];
    PlainEntry star_plain[kSlotStarEntries];  // unused ones zero: they accept no pair
  };
  [[nodiscard]] static std::uint16_t app_tag(std::uint64_t label_hash) noexcept {
    return static_cast<std::uint16_t>(label_hash >> 48);
  }

 private:
  Matcher() = default;
  friend class MatcherBuilder;
  friend class FilterEvaluator;

  [[nodiscard]] std::uint32_t find_child(std::uint32_t parent, const LabelKey& key) const noexcept;
  // A word's id in the topic alphabet; kNone for a word no pattern names.
  [[nodiscard]] std::uint32_t topic_word(const LabelKey& key) const noexcept;
  void match_group(const event::EventView* events, std::size_t count, MatchScratch& scratch,
                   BackendSet* outs) const noexcept;
  void visit_leaf_rest(const Node& node, const event::EventView& event, std::uint32_t pair,
                       MatchScratch& scratch, BackendSet& out, bool plain_done) const noexcept;
  void visit_rest(const Node& node, const event::EventView& event, std::uint32_t pair,
                  MatchScratch& scratch, BackendSet& out) const noexcept;
  void visit_entries(const Node& node, const event::EventView& event, std::uint32_t pair,
                     MatchScratch& scratch, BackendSet& out) const noexcept;
  void visit_filtered(std::uint32_t begin, std::uint32_t count, const event::EventView& event,
                      std::uint32_t pair, MatchScratch& scratch, BackendSet& out) const noexcept;
  // The state after `word`; kNone once no pattern can match.
  [[nodiscard]] std::uint32_t topic_step(std::uint32_t state, std::uint32_t word) const noexcept;
  void run_topic_dfa(std::uint32_t state, std::size_t first_word, const event::EventView& event, std::uint32_t pair,
                     MatchScratch& scratch, BackendSet& out) const noexcept;
  // The DFA `dfa` on a derived topic whose account and app are one word
  // each, keyed already: its plain entries into `out`. False, with nothing
  // added, where the general visit is needed (a word with a dot, or an end
  // state with filters).
  [[nodiscard]] bool run_derived_topic_dfa(std::uint32_t dfa, std::uint32_t pair, const LabelKey& account,
                                           const LabelKey& app, BackendSet& out) const noexcept;
  void walk_topic(std::uint32_t root, const event::EventView& event, std::uint32_t pair, MatchScratch& scratch,
                  BackendSet& out) const noexcept;
  void prepare_words(const event::EventView& event, MatchScratch& scratch) const noexcept;
  void prepare_word_ids(const event::EventView& event, MatchScratch& scratch) const noexcept;
  [[nodiscard]] bool evaluate(std::uint32_t filter, const event::EventView& event,
                              MatchScratch& scratch) const noexcept;

  // Fixed nodes.
  static constexpr std::uint32_t kAnyAccount = 0;
  static constexpr std::uint32_t kExactRoot = 1;  // parent of exact account ids
  static constexpr std::uint32_t kDescendantRoot = 2;  // parent of ancestor ids

  template <class T>
  using Table = std::vector<T, HugePageAllocator<T>>;
  Table<Node> nodes_;
  Table<Edge> edges_;  // app leaves and topic words; open addressing, child == kNone is empty
  std::uint64_t edge_mask_ = 0;
  Table<AccountSlot> account_slots_;  // open addressing; node == kNone is empty
  std::uint64_t account_mask_ = 0;
  AccountSlot any_account_{};  // kAnyAccount as a slot, read by every event (when any_results_ is empty)
  // The any-account's plain entries worked out per (app, pair) at compile
  // time, where that table stays small: every event reaches the any-account,
  // and what its `*` leaf and its app's leaf give depends on nothing but the
  // app and the pair. One probe of a small table and an OR of the set's
  // words replace reading both leaves (and, past eight apps, an edge probe).
  // Words of (app, pair): any_results_[(app * kPairCount + pair) * set_words_],
  // app 0 standing for every app without a leaf of its own.
  static constexpr std::uint32_t kPairCount = event::kSeverityCount * event::kVerbosityCount;
  struct AnyAppSlot {
    std::uint64_t hash;     // the app label's hash (key_of)
    std::uint64_t head[2];  // as Edge::label
    std::uint16_t length;
    std::uint16_t app;      // 0: an empty slot
    std::uint32_t extras;   // its leaf, when it has filtered entries or topics; kNone otherwise
  };
  std::vector<AnyAppSlot> any_app_slots_;  // open addressing over the any-account's apps
  [[nodiscard]] const AnyAppSlot* find_any_app(const LabelKey& key) const noexcept;
  std::uint64_t any_app_mask_ = 0;
  Table<std::uint64_t> any_results_;  // empty: the walk reads any_account_ as any other slot
  std::uint32_t any_star_extras_ = kNone;  // the `*` leaf, when it has filtered entries or topics
  // Its DFA, when that leaf holds no filtered entries and its patterns run
  // as a DFA: then most events (a derived topic, one-word account and app)
  // run it straight from the any-account's step, without a visit.
  std::uint32_t any_star_topic_dfa_ = kNone;
  std::uint32_t set_words_ = 0;            // words of a BackendSet for backend_count()
  std::string labels_;
  Table<PlainEntry> plain_;
  std::vector<FilteredEntry> filtered_;
  std::vector<TopicState> topic_states_;
  std::vector<TopicTransition> topic_transitions_;
  std::vector<std::uint32_t> topic_derived_;  // see TopicState::derived
  struct TopicWordSlot {
    std::uint64_t hash;
    std::uint32_t id;  // kNone: empty
    std::uint32_t length;
    std::uint64_t head[2];
  };
  // Ids of the derived topic's fixed words (kNone: no pattern names it).
  std::uint32_t edr_word_ = kNone, undefined_word_ = kNone;
  std::uint32_t severity_words_[event::kSeverityCount] = {};
  std::uint32_t verbosity_words_[event::kVerbosityCount] = {};
  std::vector<TopicWordSlot> topic_word_slots_;  // open addressing over the alphabet
  std::uint64_t topic_word_mask_ = 0;
  std::vector<std::string> topic_words_;  // by id
  std::size_t topic_dfas_ = 0, topic_walks_ = 0;
  std::vector<std::shared_ptr<const filter::Expression>> filters_;
  std::vector<std::string> regex_patterns_;   // by regex index
  std::vector<std::vector<std::uint32_t>> filter_regexes_;  // filter → comparison → regex index
  std::vector<std::string> backend_names_;
  bool has_descendant_bindings_ = false;
  std::uint64_t generation_ = 0;
};

}  // namespace ringroute::matcher
