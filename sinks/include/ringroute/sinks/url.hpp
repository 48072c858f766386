#pragma once
// The URL check the sinks make when they start, for `ringroute validate`
// and config loading: a config that validates must not be refused at start
// for its URL.

#include <string>
#include <string_view>

namespace ringroute::sinks {

// Why `url` can't name a destination ("bad port ...", "the URL has no
// host", a unix socket path too long), or empty when it can. The scheme
// itself is the caller's to check.
[[nodiscard]] std::string url_problem(std::string_view url);

}  // namespace ringroute::sinks
