#include "ringroute/matcher/topic.hpp"

#include "ringroute/matcher/config.hpp"

namespace ringroute::matcher::topic {

std::optional<std::string> check_pattern(std::string_view pattern) {
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
