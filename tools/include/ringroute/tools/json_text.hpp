// JSON string output for the command line's own messages.
#pragma once

#include <string>
#include <string_view>

namespace ringroute::tools {

// `s` as a JSON string literal: quotes, backslashes and control characters
// escaped, invalid UTF-8 replaced by U+FFFD so every line printed parses.
[[nodiscard]] std::string json_quote(std::string_view s);

}  // namespace ringroute::tools
