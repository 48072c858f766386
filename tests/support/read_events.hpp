// Reading decoded events back out of a test ring.
#pragma once

#include <string>
#include <vector>

#include "ringroute/event/event.hpp"
#include "ringroute/ring/ring.hpp"

namespace ringroute::testing {

struct OwnedEvent {
  std::string id, account_id, app_name, node, topic, body;
  bool has_topic = false;
  event::Severity severity{};
  event::Verbosity verbosity{};
  std::int64_t timestamp_ns = 0;
  std::vector<std::string> account_tree;
};

// Everything committed now, decoded and released. Fails the test on a
// record that does not decode.
inline std::vector<OwnedEvent> drain(ring::Consumer& consumer) {
  std::vector<OwnedEvent> out;
  consumer.poll(
      [&](std::span<const std::byte> payload, std::uint64_t) {
        event::EventView v;
        if (event::decode(payload, v) != event::DecodeError::none) {
          ADD_FAILURE() << "record does not decode";
          return;
        }
        OwnedEvent e;
        e.id = v.get(event::StringField::id);
        e.account_id = v.get(event::StringField::account_id);
        e.app_name = v.get(event::StringField::app_name);
        e.node = v.get(event::StringField::node);
        e.topic = v.get(event::StringField::topic);
        e.has_topic = v.has(event::StringField::topic);
        e.body = v.body;
        e.severity = v.severity;
        e.verbosity = v.verbosity;
        e.timestamp_ns = v.timestamp_ns;
        for (auto s : v.account_tree) e.account_tree.emplace_back(s);
        out.push_back(std::move(e));
      },
      SIZE_MAX);
  consumer.release(consumer.read_position());
  return out;
}

}  // namespace ringroute::testing
