#pragma once
// AMQP topic words and patterns (SEMANTICS.md section 4).

#include <optional>
#include <string>
#include <string_view>

namespace ringroute::matcher::topic {

// Calls on_word(std::string_view) for each `.`-separated word. The empty
// topic has no words; "a..b" has three, the middle one empty (as RabbitMQ).
template <class OnWord>
void for_each_word(std::string_view text, OnWord&& on_word) {
  if (text.empty()) return;
  std::size_t start = 0;
  for (;;) {
    const std::size_t dot = text.find('.', start);
    if (dot == std::string_view::npos) {
      on_word(text.substr(start));
      return;
    }
    on_word(text.substr(start, dot - start));
    start = dot + 1;
  }
}

// The longest pattern a binding takes: an AMQP short string's.
inline constexpr std::size_t kMaxPatternBytes = 255;

// nullopt when `pattern` is a valid pattern; otherwise why not (longer than
// kMaxPatternBytes, or `*` or `#` inside a longer word).
[[nodiscard]] std::optional<std::string> check_pattern(std::string_view pattern);

}  // namespace ringroute::matcher::topic
