#include "ringroute/matcher/topic.hpp"

#include "ringroute/matcher/config.hpp"

namespace ringroute::matcher::topic {

std::optional<std::string> check_pattern(std::string_view pattern) {
  // An AMQP binding key is a short string (RabbitMQ refuses a longer one),
  // and each word is a node under every leaf the binding reaches: a pattern
  // of thousands of words compiled to gigabytes, or to a walk that cost an
  // event seconds.
  if (pattern.size() > kMaxPatternBytes) {
    return std::to_string(pattern.size()) + " bytes; a topic pattern holds at most " +
           std::to_string(kMaxPatternBytes) + ", as an AMQP binding key does";
  }
  std::optional<std::string> problem;
  std::size_t index = 0;
  for_each_word(pattern, [&](std::string_view word) {
    ++index;
    if (problem || word.size() < 2) return;
    if (word.find_first_of("*#") != std::string_view::npos) {
      problem = "word " + std::to_string(index) + " " + quoted(word) +
                ": '*' and '#' must be whole words (a word of its own between dots)";
    }
  });
  return problem;
}

}  // namespace ringroute::matcher::topic
