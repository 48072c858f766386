#include "ringroute/tools/event_args.hpp"

namespace ringroute::tools {

rr_event to_rr_event(const ingest::ParsedEvent& parsed, std::vector<rr_str>& tree) {
  rr_event e{};
  const auto& in = parsed.input;
  rr_str* fields[event::kStringFieldCount] = {&e.id,   &e.account_id,  &e.app_name,   &e.app_version, &e.node,
                                              &e.topic, &e.stream_name, &e.event_type, &e.tag};
  for (std::size_t f = 0; f < event::kStringFieldCount; ++f) {
    if ((in.present >> f) & 1u) {
      // A present empty string must stay present: give it a non-null pointer.
      *fields[f] = rr_str{in.strings[f].data() != nullptr ? in.strings[f].data() : "", in.strings[f].size()};
    }
  }
  tree.clear();
  for (auto s : parsed.account_tree) tree.push_back(rr_str{s.data(), s.size()});
  if (parsed.has_account_tree) {
    static const rr_str kNone{};
    e.account_tree = tree.empty() ? &kNone : tree.data();
    e.account_tree_len = tree.size();
  }
  if (parsed.has_severity) e.severity = static_cast<rr_severity>(static_cast<int>(in.severity) + 1);
  if (parsed.has_verbosity) e.verbosity = static_cast<rr_verbosity>(static_cast<int>(in.verbosity) + 1);
  if (parsed.has_timestamp) e.timestamp_ns = in.timestamp_ns;
  if (parsed.has_body) e.body = rr_str{in.body.data(), in.body.size()};
  return e;
}

}  // namespace ringroute::tools
