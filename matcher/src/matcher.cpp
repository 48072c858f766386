#include "ringroute/matcher/matcher.hpp"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <map>
#include <stdexcept>
#include <string>
#include <tuple>
#include <type_traits>
#include <unordered_map>
#include <unordered_set>

#include <re2/re2.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "ringroute/matcher/topic.hpp"

namespace ringroute::matcher {

// A probe and a leaf cost one cache line each only at these sizes.
static_assert(sizeof(Matcher::Edge) == 32 && alignof(Matcher::Edge) == 32);
static_assert(sizeof(Matcher::Node) == 64 && alignof(Matcher::Node) == 64);
static_assert(sizeof(Matcher::AccountSlot) == 64 && alignof(Matcher::AccountSlot) == 64);

namespace {

using event::EventView;
using event::StringField;

[[gnu::always_inline]] inline std::uint64_t mix(std::uint64_t a, std::uint64_t b) noexcept {
#if defined(__x86_64__)
  // The full 64x64 product in rdx:rax, said outright: written as an
  // unsigned __int128, GCC 12 parks the product in a stack slot inside
  // match_group (a store and a reload on every hash's dependency chain).
  std::uint64_t low = a, high;
  asm("mulq %2" : "+a"(low), "=d"(high) : "rm"(b) : "cc");
  return low ^ high;
#else
  __extension__ typedef unsigned __int128 Uint128;  // the full 64x64 product
  const Uint128 product = static_cast<Uint128>(a) * b;
  return static_cast<std::uint64_t>(product) ^ static_cast<std::uint64_t>(product >> 64);
#endif
}

inline std::uint64_t load64(const char* p) noexcept {
  std::uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}
inline std::uint64_t load32(const char* p) noexcept {
  std::uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

// The label's first 16 bytes, zero-padded, read with fixed-size loads that
// stay inside the label (no variable-length copy).
[[gnu::always_inline]] inline void load_head(const char* p, std::size_t n, std::uint64_t head[2]) noexcept {
  if (n >= 16) {
    head[0] = load64(p);
    head[1] = load64(p + 8);
  } else if (n >= 8) {
    head[0] = load64(p);
    // Bytes 8..n-1 are the top n-8 bytes of the last eight.
    head[1] = n == 8 ? 0 : load64(p + n - 8) >> (8 * (16 - n));
  } else if (n >= 4) {
    head[0] = load32(p) | ((load32(p + n - 4) >> (8 * (8 - n))) << 32);
    head[1] = 0;
  } else {
    std::uint64_t v = 0;
    for (std::size_t i = 0; i < n; ++i) v |= static_cast<std::uint64_t>(static_cast<unsigned char>(p[i])) << (8 * i);
    head[0] = v;
    head[1] = 0;
  }
}

// A wyhash-style hash of a label: labels up to 16 bytes hash their head
// words (one multiply); longer ones 16 bytes per multiply.
[[gnu::always_inline]] inline std::uint64_t hash_label(std::string_view text, const std::uint64_t head[2]) noexcept {
  const char* p = text.data();
  const std::size_t n = text.size();
  std::uint64_t seed = 0xA0761D6478BD642Full ^ n;
  if (n <= 16) return mix(head[0] ^ 0xE7037ED1A0B428DBull, head[1] ^ seed);
  std::size_t i = 0;
  for (; n - i > 16; i += 16) seed = mix(load64(p + i) ^ 0xE7037ED1A0B428DBull, load64(p + i + 8) ^ seed);
  return mix(load64(p + n - 16) ^ 0xE7037ED1A0B428DBull, load64(p + n - 8) ^ seed);
}

// Whether a label holds a '.': labels up to 16 bytes test their head words
// (a byte equal to '.' XORs to zero; the zero padding never does).
[[gnu::always_inline]] inline bool has_dot(const LabelKey& key) noexcept {
  if (key.text.size() > 16) return key.text.find('.') != std::string_view::npos;
  constexpr std::uint64_t kDots = 0x2e2e2e2e2e2e2e2eull, kLow = 0x0101010101010101ull, kHigh = 0x8080808080808080ull;
  const std::uint64_t a = key.head[0] ^ kDots, b = key.head[1] ^ kDots;
  return (((a - kLow) & ~a & kHigh) | ((b - kLow) & ~b & kHigh)) != 0;
}

[[gnu::always_inline]] inline LabelKey key_of(std::string_view text) noexcept {
  LabelKey key;
  key.text = text;
  load_head(text.data(), text.size(), key.head);
  key.hash = hash_label(text, key.head);
  return key;
}

// The probe hash of (parent, label): cheap, since the label's hash is mixed.
inline std::uint64_t edge_hash(std::uint32_t parent, std::uint64_t label_hash) noexcept {
  std::uint64_t h = (label_hash ^ parent) * 0x9E3779B97F4A7C15ull;
  return h ^ (h >> 29);
}

// Accepted (severity, verbosity) pairs of one binding, bit severity*6+verbosity.
std::uint32_t accepted_pairs(const BindingSpec& binding) {
  std::uint32_t severities = 0;
  if (binding.severity.is_array || binding.severity.exact) {
    for (auto s : binding.severity.levels) severities |= 1u << static_cast<unsigned>(s);
  } else {
    // One level, not exact: that level or more severe (higher).
    for (unsigned s = static_cast<unsigned>(binding.severity.levels.front()); s < event::kSeverityCount; ++s) {
      severities |= 1u << s;
    }
  }
  std::uint32_t verbosities = 0;
  if (binding.verbosity.is_array || binding.verbosity.exact) {
    for (auto v : binding.verbosity.levels) verbosities |= 1u << static_cast<unsigned>(v);
  } else {
    // One level, not exact: that level or less verbose (higher).
    for (unsigned v = static_cast<unsigned>(binding.verbosity.levels.front()); v < event::kVerbosityCount; ++v) {
      verbosities |= 1u << v;
    }
  }
  std::uint32_t pairs = 0;
  for (unsigned s = 0; s < event::kSeverityCount; ++s) {
    if ((severities >> s) & 1u) pairs |= verbosities << (s * event::kVerbosityCount);
  }
  return pairs;
}

std::atomic<std::uint64_t> next_generation{1};

}  // namespace

// Builds with growable per-node lists, then flattens into the Matcher's arrays.
class MatcherBuilder {
 public:
  MatcherBuilder(Matcher& m, const CompileOptions& options) : m_(m), options_(options) {
    for (int i = 0; i < 3; ++i) new_node();  // kAnyAccount, kExactRoot, kDescendantRoot
  }

  void add_backend(std::uint32_t backend, const BackendSpec& spec) {
    if (!spec.enabled) return;
    for (const BindingSpec& binding : spec.bindings) add_binding(backend, binding);
  }

  void finish() {
    build_topic_words();
    build_topic_dfas();
    flatten_entries();
    build_any_results();
    build_edge_table();
  }

 private:
  struct Pending {
    std::vector<Matcher::PlainEntry> plain;
    std::vector<Matcher::FilteredEntry> filtered;
  };

  std::uint32_t new_node() {
    m_.nodes_.emplace_back();
    pending_.emplace_back();
    return static_cast<std::uint32_t>(m_.nodes_.size() - 1);
  }

  std::uint32_t child(std::uint32_t parent, std::string_view label) {
    std::string key(reinterpret_cast<const char*>(&parent), sizeof parent);
    key.append(label);
    auto [it, inserted] = edges_.try_emplace(std::move(key), 0);
    if (inserted) {
      it->second = new_node();
      ++m_.nodes_[parent].labelled_children;
    }
    return it->second;
  }

  std::uint32_t any_child(std::uint32_t parent) {
    if (m_.nodes_[parent].any_child == Matcher::kNone) {
      const std::uint32_t made = new_node();
      m_.nodes_[parent].any_child = made;
    }
    return m_.nodes_[parent].any_child;
  }

  std::uint32_t hash_child(std::uint32_t parent) {
    if (m_.nodes_[parent].hash_child == Matcher::kNone) {
      const std::uint32_t made = new_node();
      m_.nodes_[parent].hash_child = made;
      hash_nodes_.insert(made);
    }
    return m_.nodes_[parent].hash_child;
  }

  // A topic word's id in the alphabet of all topic patterns, kept in a
  // table of its own: it is small, so it stays in cache for every event.
  std::uint32_t word_id(std::string_view word) {
    auto [it, inserted] = word_ids_.try_emplace(std::string(word), static_cast<std::uint32_t>(word_ids_.size()));
    return it->second;
  }

  std::uint32_t topic_node(std::uint32_t leaf, std::string_view pattern) {
    if (m_.nodes_[leaf].topic_root == Matcher::kNone) {
      const std::uint32_t made = new_node();
      m_.nodes_[leaf].topic_root = made;
    }
    std::uint32_t node = m_.nodes_[leaf].topic_root;
    bool previous_was_hash = false;
    topic::for_each_word(pattern, [&](std::string_view word) {
      if (word == "#") {
        // "#.#" matches what "#" matches; collapsing bounds the walk's branching.
        if (!previous_was_hash) node = hash_child(node);
        previous_was_hash = true;
        return;
      }
      previous_was_hash = false;
      if (word == "*") {
        node = any_child(node);
        return;
      }
      const std::uint32_t id = word_id(word);
      const std::uint32_t next = child(node, word);
      topic_children_[node].emplace(id, next);
      node = next;
    });
    return node;
  }

  std::uint32_t filter_index(const std::shared_ptr<const filter::Expression>& expression) {
    auto [it, inserted] = filter_ids_.try_emplace(expression.get(), 0);
    if (inserted) {
      it->second = static_cast<std::uint32_t>(m_.filters_.size());
      m_.filters_.push_back(expression);
      std::vector<std::uint32_t> regexes(expression->comparisons.size(), Matcher::kNone);
      for (std::size_t c = 0; c < expression->comparisons.size(); ++c) {
        if (expression->comparisons[c].op == filter::Op::regex) {
          regexes[c] = static_cast<std::uint32_t>(m_.regex_patterns_.size());
          m_.regex_patterns_.push_back(expression->comparisons[c].literal.text);
        }
      }
      m_.filter_regexes_.push_back(std::move(regexes));
    }
    return it->second;
  }

  void add_binding(std::uint32_t backend, const BindingSpec& binding) {
    const std::uint32_t pairs = accepted_pairs(binding);
    if (pairs == 0 || binding.accounts.empty() || binding.apps.empty()) return;  // matches nothing
    std::vector<std::uint32_t> account_nodes;
    if (contains_any(binding.accounts)) {
      account_nodes.push_back(Matcher::kAnyAccount);
    } else {
      for (const std::string& account : binding.accounts) {
        account_nodes.push_back(child(Matcher::kExactRoot, account));
        if (binding.include_descendants) {
          account_nodes.push_back(child(Matcher::kDescendantRoot, account));
          m_.has_descendant_bindings_ = true;
        }
      }
    }
    const std::uint32_t filter =
        binding.filter ? filter_index(binding.filter) : Matcher::kNone;
    const bool any_app = contains_any(binding.apps);
    for (std::uint32_t account_node : account_nodes) {
      auto add_to_leaf = [&](std::uint32_t leaf) {
        const std::uint32_t target = binding.topic ? topic_node(leaf, *binding.topic) : leaf;
        if (filter == Matcher::kNone) {
          pending_[target].plain.push_back({backend, pairs});
        } else {
          pending_[target].filtered.push_back({backend, pairs, filter});
        }
      };
      if (any_app) {
        add_to_leaf(any_child(account_node));
      } else {
        for (const std::string& app : binding.apps) {
          app_tags_.emplace_back(account_node, Matcher::app_tag(make_label_key(app).hash));
          add_to_leaf(child(account_node, app));
        }
      }
    }
  }

  // One entry per backend: the union of its bindings' pairs.
  static void merge_plain(std::vector<Matcher::PlainEntry>& plain) {
    std::sort(plain.begin(), plain.end(), [](const auto& a, const auto& b) { return a.backend < b.backend; });
    std::size_t kept = 0;
    for (const auto& entry : plain) {
      if (kept > 0 && plain[kept - 1].backend == entry.backend) {
        plain[kept - 1].pairs |= entry.pairs;
      } else {
        plain[kept++] = entry;
      }
    }
    plain.resize(kept);
  }

  // --- topic DFAs ---------------------------------------------------------------
  // A leaf's topic trie is an NFA over words: a node steps to its child
  // labelled with the word and to its `*` child; a `#` node also stays where
  // it is on any word, and every node reaches its `#` child on no word. The
  // subset construction over the words its patterns name (plus "any other
  // word") gives a DFA whose states carry the union of their nodes' entries,
  // so a match costs one step per topic word, with no backtracking.

  void close(std::vector<std::uint32_t>& set) const {
    // Membership by a hash set: a search of the set for each node made a
    // close cost its size squared, which the work budget (a unit a node)
    // did not bound.
    std::unordered_set<std::uint32_t> members(set.begin(), set.end());
    for (std::size_t i = 0; i < set.size(); ++i) {
      const std::uint32_t hash = m_.nodes_[set[i]].hash_child;
      if (hash != Matcher::kNone && members.insert(hash).second) set.push_back(hash);
    }
    std::sort(set.begin(), set.end());
  }

  std::vector<std::uint32_t> step(const std::vector<std::uint32_t>& from, std::uint32_t word) const {
    std::vector<std::uint32_t> to;
    for (std::uint32_t n : from) {
      if (word != Matcher::kNone) {
        auto children = topic_children_.find(n);
        if (children != topic_children_.end()) {
          auto c = children->second.find(word);
          if (c != children->second.end()) to.push_back(c->second);
        }
      }
      if (m_.nodes_[n].any_child != Matcher::kNone) to.push_back(m_.nodes_[n].any_child);
      if (hash_nodes_.count(n) != 0) to.push_back(n);
    }
    std::sort(to.begin(), to.end());
    to.erase(std::unique(to.begin(), to.end()), to.end());
    close(to);
    return to;
  }

  void build_topic_dfas() {
    const std::size_t nodes = m_.nodes_.size();
    for (std::size_t leaf = 0; leaf < nodes; ++leaf) {
      const std::uint32_t root = m_.nodes_[leaf].topic_root;
      if (root == Matcher::kNone) continue;
      if (!build_topic_dfa(static_cast<std::uint32_t>(leaf), root)) ++m_.topic_walks_;
    }
  }

  bool build_topic_dfa(std::uint32_t leaf, std::uint32_t root) {
    const std::size_t left = options_.max_total_topic_states - std::min(options_.max_total_topic_states,
                                                                         m_.topic_states_.size());
    const std::size_t max_states = std::min(options_.max_topic_states, left);
    if (max_states == 0 || topic_work_ >= options_.max_total_topic_work) return false;
    // One unit a node of a set stepped on a word; charged before the step.
    std::size_t spent = 0;
    auto charge = [&](const std::vector<std::uint32_t>& set) {
      spent += set.size() + 1;
      topic_work_ += set.size() + 1;
      return spent <= options_.max_topic_work && topic_work_ <= options_.max_total_topic_work;
    };

    std::map<std::vector<std::uint32_t>, std::uint32_t> ids;
    std::vector<std::vector<std::uint32_t>> sets;
    auto state_of = [&](std::vector<std::uint32_t> set) -> std::uint32_t {
      if (set.empty()) return Matcher::kNone;
      auto [it, inserted] = ids.try_emplace(set, static_cast<std::uint32_t>(sets.size()));
      if (inserted) sets.push_back(std::move(set));
      return it->second;
    };
    std::vector<std::uint32_t> start{root};
    close(start);
    state_of(std::move(start));
    struct Built {
      std::uint32_t other;
      std::vector<Matcher::TopicTransition> transitions;
    };
    std::vector<Built> built;
    for (std::size_t i = 0; i < sets.size(); ++i) {
      if (sets.size() > max_states) return false;
      Built state;
      // Copies: state_of may grow `sets`.
      const std::vector<std::uint32_t> set = sets[i];
      if (!charge(set)) return false;
      state.other = state_of(step(set, Matcher::kNone));
      // Only a word that labels a child of one of the set's nodes can lead
      // anywhere but `other`: a state costs what its nodes' children cost,
      // not the size of the leaf's whole alphabet.
      std::vector<std::uint32_t> words;
      for (std::uint32_t n : set) {
        if (auto children = topic_children_.find(n); children != topic_children_.end()) {
          for (const auto& [word, next] : children->second) words.push_back(word);
        }
      }
      std::sort(words.begin(), words.end());
      words.erase(std::unique(words.begin(), words.end()), words.end());
      for (std::uint32_t word : words) {  // ascending: run_topic_dfa may binary-search them
        if (!charge(set)) return false;
        const std::uint32_t next = state_of(step(set, word));
        if (next != state.other) state.transitions.push_back({word, next});
      }
      built.push_back(std::move(state));
    }
    if (sets.size() > max_states) return false;
    // Each state keeps its own copy of its nodes' entries, and a node under
    // "#" is in every state: charged too, or a few states over many
    // bindings' entries took gigabytes.
    for (const std::vector<std::uint32_t>& set : sets) {
      std::size_t entries = 0;
      for (std::uint32_t n : set) entries += pending_[n].plain.size() + pending_[n].filtered.size();
      spent += entries;
      topic_work_ += entries;
      if (spent > options_.max_topic_work || topic_work_ > options_.max_total_topic_work) return false;
    }

    const auto base = static_cast<std::uint32_t>(m_.topic_states_.size());
    auto rebase = [&](std::uint32_t s) { return s == Matcher::kNone ? s : base + s; };
    for (std::size_t i = 0; i < sets.size(); ++i) {
      Matcher::TopicState state;
      state.other = rebase(built[i].other);
      state.transitions_begin = static_cast<std::uint32_t>(m_.topic_transitions_.size());
      for (auto t : built[i].transitions) m_.topic_transitions_.push_back({t.word, rebase(t.next)});
      state.transitions_count = static_cast<std::uint32_t>(built[i].transitions.size());
      std::vector<Matcher::PlainEntry> plain;
      std::vector<Matcher::FilteredEntry> filtered;
      for (std::uint32_t n : sets[i]) {
        plain.insert(plain.end(), pending_[n].plain.begin(), pending_[n].plain.end());
        filtered.insert(filtered.end(), pending_[n].filtered.begin(), pending_[n].filtered.end());
      }
      merge_plain(plain);
      std::sort(filtered.begin(), filtered.end(), [](const auto& a, const auto& b) {
        return std::tie(a.backend, a.pairs, a.filter) < std::tie(b.backend, b.pairs, b.filter);
      });
      filtered.erase(std::unique(filtered.begin(), filtered.end(),
                                 [](const auto& a, const auto& b) {
                                   return a.backend == b.backend && a.pairs == b.pairs && a.filter == b.filter;
                                 }),
                     filtered.end());
      state.plain_begin = static_cast<std::uint32_t>(m_.plain_.size());
      state.plain_count = static_cast<std::uint32_t>(plain.size());
      m_.plain_.insert(m_.plain_.end(), plain.begin(), plain.end());
      state.filtered_begin = static_cast<std::uint32_t>(m_.filtered_.size());
      state.filtered_count = static_cast<std::uint32_t>(filtered.size());
      m_.filtered_.insert(m_.filtered_.end(), filtered.begin(), filtered.end());
      m_.topic_states_.push_back(state);
    }
    m_.nodes_[leaf].topic_dfa = base;
    m_.topic_states_[base].derived = static_cast<std::uint32_t>(m_.topic_derived_.size());
    for (std::size_t s = 0; s < event::kSeverityCount; ++s) {
      for (std::size_t v = 0; v < event::kVerbosityCount; ++v) {  // index severity * 6 + verbosity: the pair
        std::uint32_t state = base;
        for (std::uint32_t word : {m_.edr_word_, m_.severity_words_[s], m_.verbosity_words_[v]}) {
          if (state != Matcher::kNone) state = m_.topic_step(state, word);
        }
        m_.topic_derived_.push_back(state);
      }
    }
    ++m_.topic_dfas_;
    return true;
  }

  void build_topic_words() {
    std::size_t slots = 16;
    // An eighth full: most words an event looks up are in no pattern, and
    // with this much room their first slot is empty, a branch that is then
    // predicted (half full, it was one of the most mispredicted).
    while (slots < word_ids_.size() * 8) slots *= 2;
    m_.topic_word_slots_.assign(slots, {0, Matcher::kNone, 0, {0, 0}});
    m_.topic_word_mask_ = slots - 1;
    m_.topic_words_.resize(word_ids_.size());
    for (const auto& [word, id] : word_ids_) {
      m_.topic_words_[id] = word;
      const LabelKey key = make_label_key(word);
      std::uint64_t slot = key.hash & m_.topic_word_mask_;
      while (m_.topic_word_slots_[slot].id != Matcher::kNone) slot = (slot + 1) & m_.topic_word_mask_;
      m_.topic_word_slots_[slot] = {key.hash, id, static_cast<std::uint32_t>(word.size()), {key.head[0], key.head[1]}};
    }
    auto fixed = [&](std::string_view word) {
      auto it = word_ids_.find(std::string(word));
      return it == word_ids_.end() ? Matcher::kNone : it->second;
    };
    m_.edr_word_ = fixed("edr");
    m_.undefined_word_ = fixed("undefined");
    for (std::size_t i = 0; i < event::kSeverityCount; ++i) {
      m_.severity_words_[i] = fixed(event::name(static_cast<event::Severity>(i)));
    }
    for (std::size_t i = 0; i < event::kVerbosityCount; ++i) {
      m_.verbosity_words_[i] = fixed(event::name(static_cast<event::Verbosity>(i)));
    }
  }

  void flatten_entries() {
    for (std::size_t n = 0; n < pending_.size(); ++n) {
      auto& plain = pending_[n].plain;
      merge_plain(plain);
      Matcher::Node& node = m_.nodes_[n];
      node.plain_count = static_cast<std::uint32_t>(plain.size());
      std::size_t i = 0;
      for (; i < plain.size() && i < Matcher::kInlineEntries; ++i) node.plain[i] = plain[i];
      node.plain_rest = static_cast<std::uint32_t>(m_.plain_.size());
      m_.plain_.insert(m_.plain_.end(), plain.begin() + static_cast<std::ptrdiff_t>(i), plain.end());
      node.filtered_begin = static_cast<std::uint32_t>(m_.filtered_.size());
      node.filtered_count = static_cast<std::uint32_t>(pending_[n].filtered.size());
      m_.filtered_.insert(m_.filtered_.end(), pending_[n].filtered.begin(), pending_[n].filtered.end());
      if (node.plain_count > Matcher::kInlineEntries) node.more |= Matcher::kMorePlain;
      if (node.filtered_count != 0 || node.topic_dfa != Matcher::kNone || node.topic_root != Matcher::kNone) {
        node.more |= Matcher::kMoreFilteredOrTopics;
      }
      std::vector<Matcher::PlainEntry>().swap(plain);
      std::vector<Matcher::FilteredEntry>().swap(pending_[n].filtered);
    }
  }

  // Whether an account's `*` leaf is read from the account's slot.
  static bool fits_slot_inline(const Matcher::Node& leaf) {
    return leaf.plain_count <= Matcher::kSlotStarEntries && leaf.filtered_count == 0 &&
           leaf.topic_root == Matcher::kNone;
  }

  // Sets `words` to the backends of `node`'s plain entries that accept `pair`.
  void add_plain_entries(std::uint32_t node, std::uint32_t pair, std::uint64_t* words) const {
    const Matcher::Node& leaf = m_.nodes_[node];
    for (std::uint32_t i = 0; i < leaf.plain_count; ++i) {
      const Matcher::PlainEntry& entry =
          i < Matcher::kInlineEntries ? leaf.plain[i] : m_.plain_[leaf.plain_rest + i - Matcher::kInlineEntries];
      BackendSet::set_if(words, entry.backend, ((entry.pairs >> pair) & 1u) != 0);
    }
  }

  // See Matcher::any_results_. Left empty (the walk reads the any-account
  // as it reads the others) when the table would pass max_any_result_bytes.
  void build_any_results() {
    const std::uint32_t star = m_.nodes_[Matcher::kAnyAccount].any_child;
    std::vector<std::pair<std::string_view, std::uint32_t>> apps;  // (label, leaf)
    for (const auto& [key, node] : edges_) {
      std::uint32_t parent;
      std::memcpy(&parent, key.data(), sizeof parent);
      if (parent == Matcher::kAnyAccount) apps.emplace_back(std::string_view(key).substr(sizeof parent), node);
    }
    if (star == Matcher::kNone && apps.empty()) return;  // no `*` account bindings: nothing to read
    const std::size_t words = (m_.backend_names_.size() + 63) / 64;
    const std::size_t rows = apps.size() + 1;
    if (words == 0 || rows > 0xffff || rows * Matcher::kPairCount * words * 8 > options_.max_any_result_bytes) return;
    // A slot whose `*` entries are inline and whose apps are all among its
    // tags is read with a few instructions, fewer than the table costs
    // (1,000 bindings with one wildcard: 565 instructions per event with
    // the slot, 608 with the table).
    const bool star_inline = star == Matcher::kNone || fits_slot_inline(m_.nodes_[star]);
    if (!options_.any_results_always && star_inline && apps.size() <= Matcher::kSlotAppTags) return;
    m_.set_words_ = static_cast<std::uint32_t>(words);
    auto extras = [&](std::uint32_t leaf) {
      return (m_.nodes_[leaf].more & Matcher::kMoreFilteredOrTopics) != 0 ? leaf : Matcher::kNone;
    };
    if (star != Matcher::kNone) m_.any_star_extras_ = extras(star);
    if (m_.any_star_extras_ != Matcher::kNone) {
      const Matcher::Node& leaf = m_.nodes_[m_.any_star_extras_];
      if (leaf.filtered_count == 0 && leaf.topic_dfa != Matcher::kNone) m_.any_star_topic_dfa_ = leaf.topic_dfa;
    }
    m_.any_results_.assign(rows * Matcher::kPairCount * words, 0);
    for (std::size_t row = 0; row < rows; ++row) {
      for (std::uint32_t pair = 0; pair < Matcher::kPairCount; ++pair) {
        std::uint64_t* out = &m_.any_results_[(row * Matcher::kPairCount + pair) * words];
        if (star != Matcher::kNone) add_plain_entries(star, pair, out);
        if (row > 0) add_plain_entries(apps[row - 1].second, pair, out);
      }
    }
    // An eighth full, as the topic words: most events' apps have no leaf
    // here, and their first slot is then empty.
    std::size_t slots = 16;
    while (slots < apps.size() * 8) slots *= 2;
    m_.any_app_slots_.assign(slots, Matcher::AnyAppSlot{});
    m_.any_app_mask_ = slots - 1;
    for (std::size_t i = 0; i < apps.size(); ++i) {
      const LabelKey key = make_label_key(apps[i].first);
      if (key.text.size() > 0xffff) continue;  // longer than any event field: never looked up
      std::uint64_t slot = key.hash & m_.any_app_mask_;
      while (m_.any_app_slots_[slot].app != 0) slot = (slot + 1) & m_.any_app_mask_;
      Matcher::AnyAppSlot& entry = m_.any_app_slots_[slot];
      entry.hash = key.hash;
      store_label(key, entry.head);
      entry.length = static_cast<std::uint16_t>(key.text.size());
      entry.app = static_cast<std::uint16_t>(i + 1);
      entry.extras = extras(apps[i].second);
    }
  }

  // A label as the tables hold it: up to 16 bytes inline (zero-padded),
  // longer ones in labels_ with their offset in out[0].
  void store_label(const LabelKey& label, std::uint64_t out[2]) {
    out[0] = label.head[0];
    out[1] = label.head[1];
    if (label.text.size() > 16) {
      out[0] = m_.labels_.size();
      m_.labels_.append(label.text);
    }
  }

  // An account node's slot, but for its label: its `*` leaf's entries
  // inline when that is all the leaf holds, and its apps' tags.
  void fill_account_slot(Matcher::AccountSlot& slot, std::uint32_t node) const {
    slot.node = node;
    const std::uint32_t star = m_.nodes_[node].any_child;
    if (star != Matcher::kNone) {
      const Matcher::Node& leaf = m_.nodes_[star];
      if (fits_slot_inline(leaf)) {
        for (std::uint32_t i = 0; i < leaf.plain_count; ++i) slot.star_plain[i] = leaf.plain[i];
      } else {
        slot.star = star;
      }
    }
    const auto [first, last] = std::equal_range(
        app_tags_.begin(), app_tags_.end(), std::pair<std::uint32_t, std::uint16_t>(node, 0),
        [](const auto& a, const auto& b) { return a.first < b.first; });
    const auto tags = static_cast<std::size_t>(last - first);
    if (tags > Matcher::kSlotAppTags) {
      slot.app_count = Matcher::kEveryApp;
    } else {
      slot.app_count = static_cast<std::uint8_t>(tags);
      for (std::size_t i = 0; i < Matcher::kSlotAppTags; ++i) {
        slot.app_tags[i] = tags == 0 ? 0 : first[static_cast<std::ptrdiff_t>(i < tags ? i : 0)].second;
      }
    }
  }

  static Matcher::AccountSlot empty_slot() {
    Matcher::AccountSlot slot{};
    slot.node = Matcher::kNone;
    slot.star = Matcher::kNone;
    return slot;
  }

  // Account nodes (children of the two roots) become slots of their own
  // table; every other labelled edge goes to the edge table.
  void build_edge_table() {
    if (m_.nodes_.size() >= Matcher::kNone) {
      throw std::length_error("the bindings compile to more than " + std::to_string(Matcher::kNone - 1) +
                              " trie nodes");
    }
    std::sort(app_tags_.begin(), app_tags_.end());
    app_tags_.erase(std::unique(app_tags_.begin(), app_tags_.end()), app_tags_.end());
    m_.any_account_ = empty_slot();
    fill_account_slot(m_.any_account_, Matcher::kAnyAccount);

    auto is_account = [](std::uint32_t parent) {
      return parent == Matcher::kExactRoot || parent == Matcher::kDescendantRoot;
    };
    std::size_t accounts = 0;
    // Account nodes: their edges are (account, app) ones, which the walk's
    // app step reads.
    std::vector<bool> account_node(m_.nodes_.size(), false);
    account_node[Matcher::kAnyAccount] = true;
    for (const auto& [key, node] : edges_) {
      std::uint32_t parent;
      std::memcpy(&parent, key.data(), sizeof parent);
      if (is_account(parent)) {
        ++accounts;
        account_node[node] = true;
      }
    }
    auto table_size = [](std::size_t entries) {
      std::size_t slots = 16;
      while (slots < entries * 2) slots *= 2;
      return slots;
    };
    const std::size_t edge_slots = table_size(edges_.size() - accounts);
    m_.edges_.assign(edge_slots, Matcher::Edge{0, 0, 0, Matcher::kNone, 0, {0, 0}});
    m_.edge_mask_ = edge_slots - 1;
    // At most a quarter full, not half: every event probes this table for
    // its account and each ancestor, and a key not in its first slot costs a
    // mispredicted branch and, past the first line, a second miss. 100,000
    // bindings: 8 more MiB (32 -> 40), 96 -> 87 ns per event; 1,000,000:
    // 64 more MiB, 135 -> 112 ns.
    const std::size_t account_slots = table_size(accounts * 2);
    m_.account_slots_.assign(account_slots, empty_slot());
    m_.account_mask_ = account_slots - 1;

    for (const auto& [key, node] : edges_) {
      std::uint32_t parent;
      std::memcpy(&parent, key.data(), sizeof parent);
      const LabelKey label = make_label_key(std::string_view(key).substr(sizeof parent));
      // No event field is longer, so such an edge could never be taken.
      if (label.text.size() > 0xffff) continue;
      const std::uint64_t hash = edge_hash(parent, label.hash);
      const auto tag = static_cast<std::uint16_t>(hash >> 48);
      const auto length = static_cast<std::uint16_t>(label.text.size());
      if (is_account(parent)) {
        std::uint64_t slot = hash & m_.account_mask_;
        while (m_.account_slots_[slot].node != Matcher::kNone) slot = (slot + 1) & m_.account_mask_;
        Matcher::AccountSlot& account = m_.account_slots_[slot];
        account.tag = tag;
        account.label_length = length;
        account.parent = static_cast<std::uint8_t>(parent);
        store_label(label, account.label);
        fill_account_slot(account, node);
        continue;
      }
      std::uint64_t slot = hash & m_.edge_mask_;
      while (m_.edges_[slot].child != Matcher::kNone) slot = (slot + 1) & m_.edge_mask_;
      Matcher::Edge& edge = m_.edges_[slot];
      edge = {tag, length, parent, node, 0, {0, 0}};
      // Only the walk's (account, app) step reads leaf_pairs; topic edges
      // (find_child) keep their child.
      const Matcher::Node& leaf = m_.nodes_[node];
      if (account_node[parent] && leaf.plain_count == 1 && leaf.more == 0) {
        edge.child = leaf.plain[0].backend;
        edge.leaf_pairs = leaf.plain[0].pairs;
      }
      store_label(label, edge.label);
    }
    edges_.clear();
    std::vector<std::pair<std::uint32_t, std::uint16_t>>().swap(app_tags_);
  }

  Matcher& m_;
  const CompileOptions& options_;
  std::vector<Pending> pending_;
  std::unordered_map<std::string, std::uint32_t> edges_;
  std::unordered_map<const filter::Expression*, std::uint32_t> filter_ids_;
  std::unordered_map<std::uint32_t, std::map<std::uint32_t, std::uint32_t>> topic_children_;  // node → word id → child
  std::unordered_set<std::uint32_t> hash_nodes_;
  std::size_t topic_work_ = 0;  // spent of CompileOptions::max_total_topic_work
  std::unordered_map<std::string, std::uint32_t> word_ids_;
  std::vector<std::pair<std::uint32_t, std::uint16_t>> app_tags_;  // (account node, tag of one of its apps)
};

std::unique_ptr<const Matcher> Matcher::compile(std::span<const BackendSpec> backends, const CompileOptions& options) {
  std::unique_ptr<Matcher> m(new Matcher());
  m->generation_ = next_generation.fetch_add(1, std::memory_order_relaxed);  // only uniqueness matters
  m->backend_names_.reserve(backends.size());
  MatcherBuilder builder(*m, options);
  for (std::size_t i = 0; i < backends.size(); ++i) {
    m->backend_names_.push_back(backends[i].name);
    builder.add_backend(static_cast<std::uint32_t>(i), backends[i]);
  }
  builder.finish();
  return m;
}

Matcher::~Matcher() = default;

std::size_t Matcher::memory_bytes() const noexcept {
  std::size_t bytes = sizeof(*this) + nodes_.capacity() * sizeof(Node) + edges_.capacity() * sizeof(Edge) +
                      account_slots_.capacity() * sizeof(AccountSlot) +
                      labels_.capacity() + plain_.capacity() * sizeof(PlainEntry) +
                      filtered_.capacity() * sizeof(FilteredEntry) + topic_states_.capacity() * sizeof(TopicState) +
                      topic_transitions_.capacity() * sizeof(TopicTransition) +
                      topic_derived_.capacity() * sizeof(std::uint32_t) +
                      topic_word_slots_.capacity() * sizeof(TopicWordSlot) +
                      any_app_slots_.capacity() * sizeof(AnyAppSlot) + any_results_.capacity() * sizeof(std::uint64_t);
  for (const auto& word : topic_words_) bytes += sizeof word + word.capacity();
  for (const auto& f : filters_) bytes += f->source.size() + f->nodes.size() * sizeof(filter::Node) +
                                          f->comparisons.size() * sizeof(filter::Comparison);
  for (const auto& name : backend_names_) bytes += sizeof name + name.capacity();
  return bytes;
}

LabelKey make_label_key(std::string_view text) noexcept { return key_of(text); }

std::uint64_t Matcher::account_probe_hash(std::string_view id) noexcept {
  return edge_hash(kExactRoot, key_of(id).hash);
}

namespace {
inline bool is_empty(const Matcher::Edge& edge) noexcept { return edge.child == Matcher::kNone; }
inline bool is_empty(const Matcher::AccountSlot& slot) noexcept { return slot.node == Matcher::kNone; }

// Whether a label stored by store_label(), of the key's length, is the key.
[[gnu::always_inline]] inline bool label_matches(const std::uint64_t (&label)[2], const char* labels,
                                                 const LabelKey& key) noexcept {
  const std::size_t length = key.text.size();
  return length <= 16 ? label[0] == key.head[0] && label[1] == key.head[1]
                      : std::memcmp(labels + label[0], key.text.data(), length) == 0;
}

// One probe of the edge or account table for (parent, key) whose edge_hash
// is `hash`. Free of `this`, so the caller's loops keep the table's address
// in a register (stores into the scratch arrays could alias a member load).
// Null when there is no such entry.
template <class Slot>
[[gnu::always_inline]] inline const Slot* find_slot(const Slot* slots, std::uint64_t mask, const char* labels,
                                                    std::uint32_t parent, const LabelKey& key,
                                                    std::uint64_t hash) noexcept {
  const auto tag = static_cast<std::uint16_t>(hash >> 48);
  const std::size_t length = key.text.size();
  for (std::uint64_t index = hash & mask;; index = (index + 1) & mask) {
    const Slot& slot = slots[index];
    if (is_empty(slot)) return nullptr;
    if (slot.tag != tag || slot.parent != parent || slot.label_length != length) continue;
    if (label_matches(slot.label, labels, key)) return &slot;
  }
}

// Whether one of eight 16-bit tags is `tag`: one vector compare, or two
// words at a time where there is no SSE2.
[[gnu::always_inline]] inline bool has_tag(const std::uint16_t (&tags)[8], std::uint16_t tag) noexcept {
#if defined(__SSE2__)
  const __m128i lanes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(tags));
  return _mm_movemask_epi8(_mm_cmpeq_epi16(lanes, _mm_set1_epi16(static_cast<short>(tag)))) != 0;
#else
  constexpr std::uint64_t kLanes = 0x0001000100010001ull, kLow = 0x7fff7fff7fff7fffull;
  std::uint64_t words[2];
  std::memcpy(words, tags, sizeof words);
  // A lane's top bit ends up set exactly when the lane is zero (no carry
  // crosses lanes: the sum of two 15-bit halves fits in 16 bits).
  auto zero_lanes = [](std::uint64_t x) { return ~(((x & kLow) + kLow) | x | kLow); };
  const std::uint64_t broadcast = kLanes * tag;
  return (zero_lanes(words[0] ^ broadcast) | zero_lanes(words[1] ^ broadcast)) != 0;
#endif
}

// Sets the backends of `count` plain entries that accept the event's
// (severity, verbosity) pair, without a branch on whether each does (as
// good as random), the set's words held in a register. Inline entries are
// read all `count` of them, unused ones zero: they accept no pair.
[[gnu::always_inline]] inline void visit_plain(const Matcher::PlainEntry* entries, std::uint32_t count,
                                               std::uint32_t pair, BackendSet& out) noexcept {
  std::uint64_t* const words = out.words();
  for (std::uint32_t i = 0; i < count; ++i) {
    BackendSet::set_if(words, entries[i].backend, ((entries[i].pairs >> pair) & 1u) != 0);
  }
}

}  // namespace

inline std::uint32_t Matcher::find_child(std::uint32_t parent, const LabelKey& key) const noexcept {
  const Edge* edge = find_slot(edges_.data(), edge_mask_, labels_.data(), parent, key, edge_hash(parent, key.hash));
  return edge != nullptr ? edge->child : kNone;
}

inline const Matcher::AnyAppSlot* Matcher::find_any_app(const LabelKey& key) const noexcept {
  for (std::uint64_t index = key.hash & any_app_mask_;; index = (index + 1) & any_app_mask_) {
    const AnyAppSlot& slot = any_app_slots_[index];
    if (slot.app == 0) return nullptr;
    if (slot.hash != key.hash || slot.length != key.text.size()) continue;
    if (label_matches(slot.head, labels_.data(), key)) return &slot;
  }
}

std::uint32_t Matcher::topic_word(const LabelKey& key) const noexcept {
  for (std::uint64_t slot = key.hash & topic_word_mask_;; slot = (slot + 1) & topic_word_mask_) {
    const TopicWordSlot& entry = topic_word_slots_[slot];
    if (entry.id == kNone) return kNone;
    if (entry.hash != key.hash || entry.length != key.text.size()) continue;
    if (entry.length <= 16 ? entry.head[0] == key.head[0] && entry.head[1] == key.head[1]
                           : topic_words_[entry.id] == key.text) {
      return entry.id;
    }
  }
}

void Matcher::match(const EventView& event, MatchScratch& scratch, BackendSet& out) const noexcept {
  match_group(&event, 1, scratch, &out);
}

void Matcher::match_batch(std::span<const EventView> events, MatchScratch& scratch, BackendSet* outs) const noexcept {
  for (std::size_t i = 0; i < events.size(); i += MatchScratch::kGroup) {
    match_group(events.data() + i, std::min(MatchScratch::kGroup, events.size() - i), scratch, outs + i);
  }
}

// The walk in steps, each over the whole group before the next: (1) hash
// the keys and prefetch the account slots; (2) read the slots: their inline
// `*` entries, and for an app among their tags, prefetch the (account, app)
// edge; (3) resolve those edges to leaves and prefetch the leaves; (4) read
// the leaves' entries. An event's misses at one step overlap with the other
// events' instead of each waiting for the one before.
void Matcher::match_group(const EventView* events, std::size_t count, MatchScratch& scratch,
                          BackendSet* outs) const noexcept {
  // Sized for the group's worst case up front, so the steps below write
  // through plain pointers; this allocates only when a group has more
  // ancestors than any before it on this scratch.
  std::size_t most_probes = 0;
  for (std::size_t e = 0; e < count; ++e) {
    most_probes += 1 + (has_descendant_bindings_ ? events[e].account_tree.size() : 0);
  }
  if (scratch.probes_.size() < most_probes) scratch.probes_.resize(most_probes);
  // An event's any-account may add two visits (its leaves with filters or
  // topics), any other account one; each visit reads up to two leaves.
  const std::size_t most_accounts = 2 * count + most_probes;
  if (scratch.accounts_.size() < most_accounts) scratch.accounts_.resize(most_accounts);
  if (scratch.leaves_.size() < 2 * most_accounts) scratch.leaves_.resize(2 * most_accounts);
  MatchScratch::Probe* const probes = scratch.probes_.data();
  MatchScratch::Visit* const accounts = scratch.accounts_.data();
  MatchScratch::Visit* const leaves = scratch.leaves_.data();
  std::size_t probe_count = 0, account_count = 0, leaf_count = 0;

  const Edge* const edges = edges_.data();
  const std::uint64_t mask = edge_mask_;
  const AccountSlot* const slots = account_slots_.data();
  const std::uint64_t slot_mask = account_mask_;
  const Node* const nodes = nodes_.data();
  const char* const labels = labels_.data();
  LabelKey* const apps = scratch.apps_;
  std::uint32_t* const pairs = scratch.pairs_;

  const bool exact = nodes[kExactRoot].labelled_children != 0;
  const bool descendants = has_descendant_bindings_;
  std::uint32_t has_app = 0;  // bit per event
  std::uint32_t has_account_key = 0;
  // Event e's probes are probes[probe_ends[e - 1] .. probe_ends[e]).
  std::uint32_t probe_ends[MatchScratch::kGroup];
  for (std::size_t e = 0; e < count; ++e) {
    const EventView& event = events[e];
    pairs[e] = static_cast<std::uint32_t>(event.severity) * event::kVerbosityCount +
               static_cast<std::uint32_t>(event.verbosity);
    // Each string is hashed once here, whatever number of nodes it is probed at.
    if (event.has(StringField::app_name)) {
      apps[e] = key_of(event.get(StringField::app_name));
      has_app |= 1u << e;
    }
    if (exact && event.has(StringField::account_id)) {
      // The event's first probe: its key is the event's account key for
      // the steps below (account_key()). Copied out here, the key's 16-byte
      // loads met its 8-byte stores still in flight (a failed store forward
      // each: a fifth of the walk's time in the hot benchmark).
      MatchScratch::Probe& probe = probes[probe_count++];
      probe.key = key_of(event.get(StringField::account_id));
      has_account_key |= 1u << e;
      probe.parent = kExactRoot;
      probe.hash = edge_hash(kExactRoot, probe.key.hash);
      __builtin_prefetch(&slots[probe.hash & slot_mask]);
    }
    if (descendants && event.has_account_tree()) {
      for (std::string_view ancestor : event.account_tree) {
        MatchScratch::Probe& probe = probes[probe_count++];
        probe.key = key_of(ancestor);
        probe.parent = kDescendantRoot;
        probe.hash = edge_hash(kDescendantRoot, probe.key.hash);
        __builtin_prefetch(&slots[probe.hash & slot_mask]);
      }
    }
    probe_ends[e] = static_cast<std::uint32_t>(probe_count);
  }
  // The account key of event e, which has one (has_account_key).
  auto account_key = [&](std::uint32_t e) -> const LabelKey& { return probes[e == 0 ? 0 : probe_ends[e - 1]].key; };
  // An account reached: its inline `*` entries now; its `*` leaf (when not
  // inline) and its app's leaf (when the app's tag is among its own) later.
  // `star_inline`: false when the slot has no inline `*` entries; known
  // for the any-account slot, which every event reaches, and taken as true
  // for the others (reading their zero entries costs less than a branch).
  auto reach = [&](const AccountSlot& slot, std::uint32_t e, bool star_inline) {
    if (star_inline) visit_plain(slot.star_plain, kSlotStarEntries, pairs[e], outs[e]);
    // Branch-free: which apps an account has is as good as random too.
    const bool probe_app =
        ((has_tag(slot.app_tags, app_tag(apps[e].hash)) & (slot.app_count != 0)) | (slot.app_count == kEveryApp)) &
        (((has_app >> e) & 1u) != 0);
    if (!probe_app && slot.star == kNone) return;
    MatchScratch::Visit& visit = accounts[account_count++];
    visit = {slot.node, e, edge_hash(slot.node, apps[e].hash), slot.star, probe_app};
    if (probe_app) __builtin_prefetch(&edges[visit.hash & mask]);
    if (slot.star != kNone) __builtin_prefetch(&nodes[slot.star]);
  };
  const bool any_star_inline = any_account_.star_plain[0].pairs != 0;  // entries are packed, none accepts no pair
  const std::uint64_t* const any_results = any_results_.empty() ? nullptr : any_results_.data();
  const std::uint32_t set_words = set_words_;
  // The any-account from its table: the (app, pair) row, and a visit for
  // each of its two leaves holding filters or topics, in event order with
  // the other accounts' visits.
  auto reach_any = [&](std::uint32_t e) {
    std::uint32_t app = 0, extras = kNone;
    if (((has_app >> e) & 1u) != 0) {
      if (const AnyAppSlot* slot = find_any_app(apps[e]); slot != nullptr) {
        app = slot->app;
        extras = slot->extras;
      }
    }
    const std::uint64_t* row = any_results + (std::size_t{app} * kPairCount + pairs[e]) * set_words;
    std::uint64_t* const words = outs[e].words();
    // Two words (128 backends) unrolled: the loop alone, versioned for the
    // arrays' overlap, cost 15 instructions an event.
    words[0] |= row[0];
    if (set_words > 1) {
      words[1] |= row[1];
      for (std::uint32_t w = 2; w < set_words; ++w) words[w] |= row[w];
    }
    if (any_star_extras_ != kNone) [[unlikely]] {
      const bool topics_done = any_star_topic_dfa_ != kNone && (((has_account_key & has_app) >> e) & 1u) != 0 &&
                               !events[e].has(StringField::topic) &&
                               run_derived_topic_dfa(any_star_topic_dfa_, pairs[e], account_key(e),
                                                     apps[e], outs[e]);
      if (!topics_done) accounts[account_count++] = {kAnyAccount, e, 0, any_star_extras_, false, true};
    }
    if (extras != kNone) [[unlikely]] {
      accounts[account_count++] = {kAnyAccount, e, 0, extras, false, true};
      __builtin_prefetch(&nodes[extras]);
    }
  };
  // One loop per way of reading the any-account, so neither pays for the
  // other's code.
  auto reach_accounts = [&](auto any_from_table) {
    std::size_t p = 0;
    for (std::size_t e = 0; e < count; ++e) {
      const auto event = static_cast<std::uint32_t>(e);
      if constexpr (decltype(any_from_table)::value) {
        reach_any(event);
      } else {
        reach(any_account_, event, any_star_inline);
      }
      for (; p < probe_ends[e]; ++p) {
        const MatchScratch::Probe& probe = probes[p];
        const AccountSlot* const slot = find_slot(slots, slot_mask, labels, probe.parent, probe.key, probe.hash);
        if (slot != nullptr) reach(*slot, event, true);
      }
    }
  };
  if (any_results != nullptr) {
    reach_accounts(std::true_type{});
  } else {
    reach_accounts(std::false_type{});
  }
  for (std::size_t a = 0; a < account_count; ++a) {
    const MatchScratch::Visit& account = accounts[a];
    if (account.star != kNone) {
      leaves[leaf_count++] = {account.star, account.event, 0, kNone, false, account.plain_done};
    }
    if (!account.probe_app) continue;
    const Edge* const leaf = find_slot(edges, mask, labels, account.node, apps[account.event], account.hash);
    if (leaf == nullptr) continue;
    if (leaf->leaf_pairs != 0) {
      const bool accepts = ((leaf->leaf_pairs >> pairs[account.event]) & 1u) != 0;
      BackendSet::set_if(outs[account.event].words(), leaf->child, accepts);
      continue;
    }
    leaves[leaf_count++] = {leaf->child, account.event, 0, kNone, false};
    __builtin_prefetch(&nodes[leaf->child]);
  }
  // Most leaves hold a few plain entries and nothing else: those are read
  // here; the rest (more entries, filters, topics) goes out of line.
  std::uint32_t prepared = kNone;  // the event the scratch's per-event state is for
  for (std::size_t l = 0; l < leaf_count; ++l) {
    const MatchScratch::Visit& leaf = leaves[l];
    const Node& node = nodes[leaf.node];
    const std::uint32_t pair = pairs[leaf.event];
    BackendSet& out = outs[leaf.event];
    visit_plain(node.plain, kInlineEntries, pair, out);
    if (node.more == 0) [[likely]] continue;
    if (node.more == kMorePlain) {
      // Only more plain entries: read here, not through the out-of-line visit.
      visit_plain(plain_.data() + node.plain_rest, node.plain_count - kInlineEntries, pair, out);
      continue;
    }
    if (leaf.event != prepared) {
      prepared = leaf.event;
      ++scratch.event_serial_;
      scratch.words_ready_ = false;
      scratch.word_ids_ready_ = false;
      scratch.topic_ready_ = false;
      scratch.account_key_ = ((has_account_key >> prepared) & 1u) != 0 ? &account_key(prepared) : nullptr;
      scratch.body_state_ = 0;
      scratch.app_key_ = ((has_app >> prepared) & 1u) != 0 ? &scratch.apps_[prepared] : nullptr;
    }
    visit_leaf_rest(node, events[prepared], pair, scratch, out, leaf.plain_done);
  }
}

inline void Matcher::visit_filtered(std::uint32_t begin, std::uint32_t count, const EventView& event,
                                    std::uint32_t pair, MatchScratch& scratch, BackendSet& out) const noexcept {
  // A filter runs at most once an event: an event reaches the same leaf
  // once for each ancestor naming its account (a producer may repeat one
  // thousands of times), and several leaves may hold one filter.
  if (scratch.filter_seen_.size() < filters_.size()) {
    scratch.filter_seen_.resize(filters_.size(), 0);
    scratch.filter_result_.resize(filters_.size(), false);
  }
  for (std::uint32_t i = begin; i < begin + count; ++i) {
    const FilteredEntry& entry = filtered_[i];
    // Nor for a backend matched already.
    if (((entry.pairs >> pair) & 1u) == 0 || out.test(entry.backend)) continue;
    if (scratch.filter_seen_[entry.filter] != scratch.event_serial_) {
      scratch.filter_seen_[entry.filter] = scratch.event_serial_;
      scratch.filter_result_[entry.filter] = evaluate(entry.filter, event, scratch);
      ++scratch.filter_evaluations_;
    }
    if (scratch.filter_result_[entry.filter]) out.set(entry.backend);
  }
}

// The entries past the inline ones, and the filtered ones.
inline void Matcher::visit_rest(const Node& node, const EventView& event, std::uint32_t pair,
                                MatchScratch& scratch, BackendSet& out) const noexcept {
  const std::uint32_t inline_count = std::min(node.plain_count, kInlineEntries);
  visit_plain(plain_.data() + node.plain_rest, node.plain_count - inline_count, pair, out);
  if (node.filtered_count != 0) visit_filtered(node.filtered_begin, node.filtered_count, event, pair, scratch, out);
}

inline void Matcher::visit_entries(const Node& node, const EventView& event, std::uint32_t pair,
                                   MatchScratch& scratch, BackendSet& out) const noexcept {
  visit_plain(node.plain, std::min(node.plain_count, kInlineEntries), pair, out);
  visit_rest(node, event, pair, scratch, out);
}

void Matcher::visit_leaf_rest(const Node& node, const EventView& event, std::uint32_t pair,
                              MatchScratch& scratch, BackendSet& out, bool plain_done) const noexcept {
  if (plain_done) {
    if (node.filtered_count != 0) visit_filtered(node.filtered_begin, node.filtered_count, event, pair, scratch, out);
  } else {
    visit_rest(node, event, pair, scratch, out);
  }
  if (node.topic_dfa != kNone) {
    if (event.has(StringField::topic)) {
      prepare_word_ids(event, scratch);
      run_topic_dfa(node.topic_dfa, 0, event, pair, scratch, out);
      return;
    }
    // A derived topic's first three words are the pair's: its state after
    // them was worked out at compile time.
    const std::uint32_t state = topic_derived_[topic_states_[node.topic_dfa].derived + pair];
    if (state == kNone) return;
    prepare_word_ids(event, scratch);
    run_topic_dfa(state, 3, event, pair, scratch, out);
  } else if (node.topic_root != kNone) {
    prepare_words(event, scratch);
    walk_topic(node.topic_root, event, pair, scratch, out);
  }
}

std::uint32_t Matcher::topic_step(std::uint32_t state, std::uint32_t word) const noexcept {
  const TopicState& s = topic_states_[state];
  if (word == kNone) return s.other;
  const TopicTransition* first = topic_transitions_.data() + s.transitions_begin;
  const TopicTransition* last = first + s.transitions_count;
  if (s.transitions_count > 8) {  // sorted by word
    first = std::lower_bound(first, last, word, [](const TopicTransition& t, std::uint32_t id) { return t.word < id; });
    return first != last && first->word == word ? first->next : s.other;
  }
  for (; first != last; ++first) {
    if (first->word == word) return first->next;
  }
  return s.other;
}

void Matcher::run_topic_dfa(std::uint32_t state, std::size_t first_word, const EventView& event, std::uint32_t pair,
                            MatchScratch& scratch, BackendSet& out) const noexcept {
  for (std::size_t w = first_word; w < scratch.word_count_; ++w) {
    state = topic_step(state, scratch.word_ids_[w]);
    if (state == kNone) return;  // no pattern can match any more
  }
  const TopicState& s = topic_states_[state];
  visit_plain(plain_.data() + s.plain_begin, s.plain_count, pair, out);
  if (s.filtered_count != 0) visit_filtered(s.filtered_begin, s.filtered_count, event, pair, scratch, out);
}

// The common case of prepare_word_ids() and run_topic_dfa() in one, without
// the scratch's per-event state: the derived topic's first three words are
// the pair's (topic_derived_), the other two the account's and the app's.
inline bool Matcher::run_derived_topic_dfa(std::uint32_t dfa, std::uint32_t pair, const LabelKey& account,
                                           const LabelKey& app, BackendSet& out) const noexcept {
  if (has_dot(account) || has_dot(app)) return false;
  std::uint32_t state = topic_derived_[topic_states_[dfa].derived + pair];
  if (state == kNone) return true;
  state = topic_step(state, topic_word(account));
  if (state == kNone) return true;
  state = topic_step(state, topic_word(app));
  if (state == kNone) return true;
  const TopicState& end = topic_states_[state];
  if (end.filtered_count != 0) return false;
  visit_plain(plain_.data() + end.plain_begin, end.plain_count, pair, out);
  return true;
}

// The walk, for leaves whose patterns' DFA would be too large: the
// patterns' trie run as an NFA, a word at a time, over the set of nodes the
// words so far can have led to. A node after "#" stays in the set as the
// words go by ("#" takes zero or more). Each node is in a step's set once,
// so an event costs at most its words times the trie's nodes, and each end
// node's entries (filters included) are read once; backtracking through
// several "#" grew as a power of the topic's length, which a producer picks.
void Matcher::walk_topic(std::uint32_t root, const EventView& event, std::uint32_t pair, MatchScratch& scratch,
                         BackendSet& out) const noexcept {
  // Entries are (node << 1) | 1 for a node after "#", which takes the next
  // word too.
  std::vector<std::uint64_t>& current = scratch.topic_set_;
  std::vector<std::uint64_t>& next = scratch.topic_next_;
  auto add = [&](std::vector<std::uint64_t>& set, std::uint32_t node, bool after_hash) {
    for (;;) {  // and the "#" after it, reached with no word
      set.push_back((std::uint64_t{node} << 1) | static_cast<std::uint64_t>(after_hash));
      node = nodes_[node].hash_child;
      if (node == kNone) return;
      after_hash = true;
    }
  };
  auto dedupe = [](std::vector<std::uint64_t>& set) {
    std::sort(set.begin(), set.end());
    set.erase(std::unique(set.begin(), set.end()), set.end());
  };
  current.clear();
  add(current, root, false);
  dedupe(current);
  for (std::size_t w = 0; w < scratch.words_.size() && !current.empty(); ++w) {
    next.clear();
    for (const std::uint64_t entry : current) {
      const auto index = static_cast<std::uint32_t>(entry >> 1);
      const Node& node = nodes_[index];
      if ((entry & 1) != 0) add(next, index, true);
      if (node.labelled_children != 0) {
        const std::uint32_t child = find_child(index, scratch.words_[w]);
        if (child != kNone) add(next, child, false);
      }
      if (node.any_child != kNone) add(next, node.any_child, false);
    }
    dedupe(next);
    current.swap(next);
  }
  for (const std::uint64_t entry : current) {
    visit_entries(nodes_[static_cast<std::uint32_t>(entry >> 1)], event, pair, scratch, out);
  }
}

namespace {
// The derived topic (SEMANTICS.md section 4): edr.<severity>.<verbosity>.<account>.<app>.
template <class OnWord>
void for_each_derived_word(const EventView& event, OnWord&& on_word) {
  on_word(std::string_view("edr"));
  on_word(event::name(event.severity));
  on_word(event::name(event.verbosity));
  // An empty account or app is one empty word of the derived topic
  // ("edr.ok.info..cf"), though an empty topic has no words at all.
  auto whole = [&](StringField field) {
    const std::string_view text = event.has(field) ? event.get(field) : std::string_view("undefined");
    if (text.empty()) {
      on_word(text);
    } else {
      topic::for_each_word(text, on_word);
    }
  };
  whole(StringField::account_id);
  whole(StringField::app_name);
}
}  // namespace

// The topic's words as ids in the alphabet, for the DFAs. A derived topic's
// first three words have ids fixed at compile time, and an account or app
// without dots reuses the key the walk already hashed.
void Matcher::prepare_word_ids(const EventView& event, MatchScratch& scratch) const noexcept {
  if (scratch.word_ids_ready_) return;
  scratch.word_ids_ready_ = true;
  auto& ids = scratch.word_ids_;
  std::size_t count = 0;
  // Grows (allocates) only when a topic has more words than any before it
  // on this scratch.
  auto push = [&](std::uint32_t id) {
    if (count == ids.size()) [[unlikely]] ids.resize(2 * count + 8);
    ids[count++] = id;
  };
  auto add = [&](std::string_view w) { push(topic_word(key_of(w))); };
  if (event.has(StringField::topic)) {
    topic::for_each_word(event.get(StringField::topic), add);
    scratch.word_count_ = count;
    return;
  }
  // The common case, inline: five words (the scratch holds at least 64),
  // account and app already keyed by the walk and free of dots.
  const LabelKey* account = scratch.account_key_;
  const LabelKey* app = scratch.app_key_;
  if (account != nullptr && app != nullptr && !has_dot(*account) && !has_dot(*app)) [[likely]] {
    ids[0] = edr_word_;
    ids[1] = severity_words_[static_cast<std::size_t>(event.severity)];
    ids[2] = verbosity_words_[static_cast<std::size_t>(event.verbosity)];
    ids[3] = topic_word(*account);
    ids[4] = topic_word(*app);
    scratch.word_count_ = 5;
    return;
  }
  push(edr_word_);
  push(severity_words_[static_cast<std::size_t>(event.severity)]);
  push(verbosity_words_[static_cast<std::size_t>(event.verbosity)]);
  auto add_whole = [&](StringField field, const LabelKey* key) {
    if (!event.has(field)) {
      push(undefined_word_);
      return;
    }
    const std::string_view text = event.get(field);
    const LabelKey whole = key != nullptr ? *key : key_of(text);
    if (has_dot(whole)) {
      topic::for_each_word(text, add);
    } else {
      push(topic_word(whole));
    }
  };
  add_whole(StringField::account_id, account);
  add_whole(StringField::app_name, app);
  scratch.word_count_ = count;
}

// The topic's words keyed for the edge table, for the backtracking walk.
void Matcher::prepare_words(const EventView& event, MatchScratch& scratch) const noexcept {
  if (scratch.words_ready_) return;
  scratch.words_ready_ = true;
  auto& words = scratch.words_;
  words.clear();
  auto add = [&](std::string_view w) { words.push_back(key_of(w)); };
  if (event.has(StringField::topic)) {
    topic::for_each_word(event.get(StringField::topic), add);
    return;
  }
  for_each_derived_word(event, add);
}

MatchScratch::MatchScratch() {
  words_.reserve(64);
  word_ids_.resize(64);
  probes_.resize(kGroup * 4);
  accounts_.resize(kGroup * 5);
  leaves_.resize(kGroup * 10);
}
MatchScratch::~MatchScratch() = default;

}  // namespace ringroute::matcher
