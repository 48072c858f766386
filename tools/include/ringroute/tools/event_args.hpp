// Turning a parsed NDJSON event into the producer library's rr_event.
#pragma once

#include <vector>

#include "ringroute/ingest/event_json.hpp"
#include "ringroute/producer.h"

namespace ringroute::tools {

// `tree` holds the account_tree entries the returned event points at; both
// views stay valid while `parsed` and `tree` are.
[[nodiscard]] rr_event to_rr_event(const ingest::ParsedEvent& parsed, std::vector<rr_str>& tree);

}  // namespace ringroute::tools
