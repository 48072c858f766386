#include "ringroute/matcher/matcher.hpp"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <unordered_map>

#include <re2/re2.h>

#include "ringroute/matcher/topic.hpp"

namespace ringroute::matcher {
namespace {

using event::EventView;
using event::StringField;

inline std::uint64_t mix(std::uint64_t a, std::uint64_t b) noexcept {
  __extension__ typedef unsigned __int128 Uint128;  // the full 64x64 product
  const Uint128 product = static_cast<Uint128>(a) * b;
  return static_cast<std::uint64_t>(product) ^ static_cast<std::uint64_t>(product >> 64);
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

// A wyhash-style hash of a label's bytes: fixed-size (overlapping) loads, no
// variable-length copy, 16 bytes per multiply.
std::uint64_t hash_bytes(std::string_view text) noexcept {
  const char* p = text.data();
  const std::size_t n = text.size();
  std::uint64_t seed = 0xA0761D6478BD642Full ^ n;
  std::uint64_t a, b;
  if (n <= 16) {
    if (n >= 8) {
      a = load64(p);
      b = load64(p + n - 8);
    } else if (n >= 4) {
      a = load32(p);
      b = load32(p + n - 4);
    } else if (n > 0) {
      a = (static_cast<std::uint64_t>(static_cast<unsigned char>(p[0])) << 16) |
          (static_cast<std::uint64_t>(static_cast<unsigned char>(p[n >> 1])) << 8) |
          static_cast<unsigned char>(p[n - 1]);
      b = 0;
    } else {
      a = b = 0;
    }
  } else {
    std::size_t i = 0;
    for (; n - i > 16; i += 16) seed = mix(load64(p + i) ^ 0xE7037ED1A0B428DBull, load64(p + i + 8) ^ seed);
    a = load64(p + n - 16);
    b = load64(p + n - 8);
  }
  return mix(a ^ 0xE7037ED1A0B428DBull, b ^ seed);
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

bool contains_any(const std::vector<std::string>& names) {
  return std::find(names.begin(), names.end(), "*") != names.end();
}

std::atomic<std::uint64_t> next_generation{1};

}  // namespace

// Builds with growable per-node lists, then flattens into the Matcher's arrays.
class MatcherBuilder {
 public:
  explicit MatcherBuilder(Matcher& m) : m_(m) {
    for (int i = 0; i < 3; ++i) new_node();  // kAnyAccount, kExactRoot, kDescendantRoot
  }

  void add_backend(std::uint32_t backend, const BackendSpec& spec) {
    if (!spec.enabled) return;
    for (const BindingSpec& binding : spec.bindings) add_binding(backend, binding);
  }

  void finish() {
    flatten_entries();
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
    }
    return m_.nodes_[parent].hash_child;
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
      node = word == "*" ? any_child(node) : child(node, word);
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
        for (const std::string& app : binding.apps) add_to_leaf(child(account_node, app));
      }
    }
  }

  void flatten_entries() {
    for (std::size_t n = 0; n < pending_.size(); ++n) {
      auto& plain = pending_[n].plain;
      // One entry per backend: the union of its bindings' pairs.
      std::sort(plain.begin(), plain.end(),
                [](const auto& a, const auto& b) { return a.backend < b.backend; });
      Matcher::Node& node = m_.nodes_[n];
      node.plain_begin = static_cast<std::uint32_t>(m_.plain_.size());
      for (const auto& entry : plain) {
        if (m_.plain_.size() > node.plain_begin && m_.plain_.back().backend == entry.backend) {
          m_.plain_.back().pairs |= entry.pairs;
        } else {
          m_.plain_.push_back(entry);
        }
      }
      node.plain_end = static_cast<std::uint32_t>(m_.plain_.size());
      node.filtered_begin = static_cast<std::uint32_t>(m_.filtered_.size());
      m_.filtered_.insert(m_.filtered_.end(), pending_[n].filtered.begin(), pending_[n].filtered.end());
      node.filtered_end = static_cast<std::uint32_t>(m_.filtered_.size());
      std::vector<Matcher::PlainEntry>().swap(plain);
      std::vector<Matcher::FilteredEntry>().swap(pending_[n].filtered);
    }
  }

  void build_edge_table() {
    std::size_t slots = 16;
    while (slots < edges_.size() * 2) slots *= 2;
    m_.edges_.assign(slots, Matcher::Edge{0, 0, Matcher::kNone, 0, {0, 0}});
    m_.edge_mask_ = slots - 1;
    for (const auto& [key, node] : edges_) {
      std::uint32_t parent;
      std::memcpy(&parent, key.data(), sizeof parent);
      const LabelKey label = make_label_key(std::string_view(key).substr(sizeof parent));
      const std::uint64_t hash = edge_hash(parent, label.hash);
      std::uint64_t slot = hash & m_.edge_mask_;
      while (m_.edges_[slot].child != Matcher::kNone) slot = (slot + 1) & m_.edge_mask_;
      Matcher::Edge& edge = m_.edges_[slot];
      edge = {static_cast<std::uint32_t>(hash >> 32), parent, node, static_cast<std::uint32_t>(label.text.size()),
              {label.head[0], label.head[1]}};
      if (label.text.size() > 16) {
        edge.label[0] = m_.labels_.size();
        m_.labels_.append(label.text);
      }
    }
    edges_.clear();
  }

  Matcher& m_;
  std::vector<Pending> pending_;
  std::unordered_map<std::string, std::uint32_t> edges_;
  std::unordered_map<const filter::Expression*, std::uint32_t> filter_ids_;
};

std::unique_ptr<const Matcher> Matcher::compile(std::span<const BackendSpec> backends) {
  std::unique_ptr<Matcher> m(new Matcher());
  m->generation_ = next_generation.fetch_add(1, std::memory_order_relaxed);  // only uniqueness matters
  m->backend_names_.reserve(backends.size());
  MatcherBuilder builder(*m);
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
                      labels_.capacity() + plain_.capacity() * sizeof(PlainEntry) +
                      filtered_.capacity() * sizeof(FilteredEntry);
  for (const auto& f : filters_) bytes += f->source.size() + f->nodes.size() * sizeof(filter::Node) +
                                          f->comparisons.size() * sizeof(filter::Comparison);
  for (const auto& name : backend_names_) bytes += sizeof name + name.capacity();
  return bytes;
}

LabelKey make_label_key(std::string_view text) noexcept {
  LabelKey key;
  key.text = text;
  key.hash = hash_bytes(text);
  std::memcpy(key.head, text.data(), std::min<std::size_t>(text.size(), 16));
  return key;
}

std::uint32_t Matcher::find_child(std::uint32_t parent, const LabelKey& key) const noexcept {
  const std::uint64_t hash = edge_hash(parent, key.hash);
  const auto tag = static_cast<std::uint32_t>(hash >> 32);
  const std::size_t length = key.text.size();
  for (std::uint64_t slot = hash & edge_mask_;; slot = (slot + 1) & edge_mask_) {
    const Edge& edge = edges_[slot];
    if (edge.child == kNone) return kNone;
    if (edge.tag != tag || edge.parent != parent || edge.label_length != length) continue;
    if (length <= 16 ? edge.label[0] == key.head[0] && edge.label[1] == key.head[1]
                     : std::memcmp(labels_.data() + edge.label[0], key.text.data(), length) == 0) {
      return edge.child;
    }
  }
}

void Matcher::match(const EventView& event, MatchScratch& scratch, BackendSet& out) const noexcept {
  scratch.words_ready_ = false;
  scratch.topic_ready_ = false;
  scratch.body_state_ = 0;
  const std::uint32_t pair = static_cast<std::uint32_t>(event.severity) * event::kVerbosityCount +
                             static_cast<std::uint32_t>(event.verbosity);
  // Each string is hashed once here, whatever number of nodes it is probed at.
  if (event.has(StringField::app_name)) scratch.app_ = make_label_key(event.get(StringField::app_name));
  visit_account(kAnyAccount, event, pair, scratch, out);
  if (event.has(StringField::account_id) && nodes_[kExactRoot].labelled_children != 0) {
    const std::uint32_t node = find_child(kExactRoot, make_label_key(event.get(StringField::account_id)));
    if (node != kNone) visit_account(node, event, pair, scratch, out);
  }
  if (has_descendant_bindings_ && event.has_account_tree()) {
    for (std::string_view ancestor : event.account_tree) {
      const std::uint32_t node = find_child(kDescendantRoot, make_label_key(ancestor));
      if (node != kNone) visit_account(node, event, pair, scratch, out);
    }
  }
}

void Matcher::visit_account(std::uint32_t index, const EventView& event, std::uint32_t pair,
                            MatchScratch& scratch, BackendSet& out) const noexcept {
  const Node& node = nodes_[index];
  if (node.any_child != kNone) visit_leaf(node.any_child, event, pair, scratch, out);
  if (node.labelled_children != 0 && event.has(StringField::app_name)) {
    const std::uint32_t leaf = find_child(index, scratch.app_);
    if (leaf != kNone) visit_leaf(leaf, event, pair, scratch, out);
  }
}

void Matcher::visit_leaf(std::uint32_t index, const EventView& event, std::uint32_t pair,
                         MatchScratch& scratch, BackendSet& out) const noexcept {
  const Node& node = nodes_[index];
  visit_entries(node, event, pair, scratch, out);
  if (node.topic_root != kNone) {
    prepare_words(event, scratch);
    walk_topic(node.topic_root, 0, event, pair, scratch, out);
  }
}

void Matcher::visit_entries(const Node& node, const EventView& event, std::uint32_t pair,
                            MatchScratch& scratch, BackendSet& out) const noexcept {
  for (std::uint32_t i = node.plain_begin; i < node.plain_end; ++i) {
    if ((plain_[i].pairs >> pair) & 1u) out.set(plain_[i].backend);
  }
  for (std::uint32_t i = node.filtered_begin; i < node.filtered_end; ++i) {
    const FilteredEntry& entry = filtered_[i];
    // A filter runs only for a backend not matched yet: its cost is paid once.
    if (((entry.pairs >> pair) & 1u) && !out.test(entry.backend) &&
        evaluate(entry.filter, event, scratch)) {
      out.set(entry.backend);
    }
  }
}

void Matcher::walk_topic(std::uint32_t index, std::size_t word, const EventView& event,
                         std::uint32_t pair, MatchScratch& scratch, BackendSet& out) const noexcept {
  const Node& node = nodes_[index];
  const std::size_t words = scratch.words_.size();
  if (word == words) {
    visit_entries(node, event, pair, scratch, out);
  } else {
    if (node.labelled_children != 0) {
      const std::uint32_t next = find_child(index, scratch.words_[word]);
      if (next != kNone) walk_topic(next, word + 1, event, pair, scratch, out);
    }
    if (node.any_child != kNone) walk_topic(node.any_child, word + 1, event, pair, scratch, out);
  }
  if (node.hash_child != kNone) {
    // "#" takes zero or more words.
    for (std::size_t rest = word; rest <= words; ++rest) {
      walk_topic(node.hash_child, rest, event, pair, scratch, out);
    }
  }
}

void Matcher::prepare_words(const EventView& event, MatchScratch& scratch) const noexcept {
  if (scratch.words_ready_) return;
  scratch.words_ready_ = true;
  auto& words = scratch.words_;
  words.clear();
  // push_back may allocate when a topic has more words than any before it on
  // this scratch; capacity then stays.
  auto add = [&](std::string_view w) { words.push_back(make_label_key(w)); };
  if (event.has(StringField::topic)) {
    topic::for_each_word(event.get(StringField::topic), add);
    return;
  }
  add("edr");
  add(event::name(event.severity));
  add(event::name(event.verbosity));
  topic::for_each_word(event.has(StringField::account_id) ? event.get(StringField::account_id)
                                                          : std::string_view("undefined"),
                       add);
  topic::for_each_word(
      event.has(StringField::app_name) ? event.get(StringField::app_name) : std::string_view("undefined"),
      add);
}

MatchScratch::MatchScratch() { words_.reserve(64); }
MatchScratch::~MatchScratch() = default;

}  // namespace ringroute::matcher
