#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <new>
#include <string>

#include "ringroute/tools/commands.hpp"

// Out of memory in `new` is std::bad_alloc, which the router handles (a
// worker stops and the router with it, exit 1; a sink outside a write logs
// it and goes on). Debian's libmimalloc exports an operator new of its own
// that, built as C, aborts the process instead, new-handler or not: out of
// memory was a silent SIGABRT. Replaced here, in the executable, over
// malloc, which mimalloc serves all the same. Not in a sanitizer's build,
// whose own operator new checks that each delete matches its new.
#if !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
namespace {
void* allocate(std::size_t size, std::size_t alignment = 0) {
  if (size == 0) size = 1;
  for (;;) {
    void* p = nullptr;
    if (alignment <= alignof(std::max_align_t)) {
      p = std::malloc(size);
    } else if (::posix_memalign(&p, alignment, size) != 0) {
      p = nullptr;
    }
    if (p != nullptr) return p;
    const std::new_handler handler = std::get_new_handler();
    if (handler == nullptr) throw std::bad_alloc();
    handler();
  }
}
template <class F>
void* or_null(F&& allocate_it) noexcept {
  try {
    return allocate_it();
  } catch (const std::bad_alloc&) {
    return nullptr;
  }
}
}  // namespace

void* operator new(std::size_t size) { return allocate(size); }
void* operator new[](std::size_t size) { return allocate(size); }
void* operator new(std::size_t size, std::align_val_t alignment) {
  return allocate(size, static_cast<std::size_t>(alignment));
}
void* operator new[](std::size_t size, std::align_val_t alignment) {
  return allocate(size, static_cast<std::size_t>(alignment));
}
void* operator new(std::size_t size, const std::nothrow_t&) noexcept {
  return or_null([&] { return allocate(size); });
}
void* operator new[](std::size_t size, const std::nothrow_t&) noexcept {
  return or_null([&] { return allocate(size); });
}
void* operator new(std::size_t size, std::align_val_t alignment, const std::nothrow_t&) noexcept {
  return or_null([&] { return allocate(size, static_cast<std::size_t>(alignment)); });
}
void* operator new[](std::size_t size, std::align_val_t alignment, const std::nothrow_t&) noexcept {
  return or_null([&] { return allocate(size, static_cast<std::size_t>(alignment)); });
}
// GCC takes free() of what operator new returned for a mismatch; here
// operator new is malloc.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t, const std::nothrow_t&) noexcept { std::free(p); }
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
#endif

namespace {
// Output that never arrived is an I/O error (exit 2), whatever the command
// judged: `route > results` on a full disk must not look like a clean run.
// errno is left as the failed write set it (a failure inside the command,
// whose buffer stdio then drops, leaves only the error flag).
int flushed(int status) {
  if (std::fflush(stdout) == 0 && std::ferror(stdout) == 0) return status;
  std::fprintf(stderr, "ringroute: writing to stdout failed%s%s\n", errno != 0 ? ": " : "",
               errno != 0 ? std::strerror(errno) : "");
  return 2;
}

// `--help` shows each option's type as CLI11 builds it from the option's
// checks ("UINT:WHOLE:UINT in [10 - 3600000]"): said plainly instead
// ("UINT [10-3600000]", "NAME").
void plain_type_names(CLI::App& app) {
  for (CLI::Option* option : app.get_options()) {
    const std::string type = option->get_type_name();
    if (type.find(':') == std::string::npos) continue;
    std::string plain = type.substr(0, type.find(':'));
    for (const char* noun : {"NAME", "RING"}) {
      if (type.find(std::string(":") + noun) != std::string::npos) plain = noun;
    }
    if (const std::size_t open = type.find(" in ["); open != std::string::npos) {
      std::string range = type.substr(open + 4, type.find(']', open) + 1 - (open + 4));
      std::erase(range, ' ');
      plain += " " + range;
    }
    option->type_name(plain);
    // The checks' own descriptions, which CLI11 appends to the type.
    for (int i = 0;; ++i) {
      try {
        option->get_validator(i)->description("");
      } catch (const CLI::OptionNotFound&) {
        break;
      }
    }
  }
  for (CLI::App* sub : app.get_subcommands([](CLI::App*) { return true; })) plain_type_names(*sub);
}
// Standard input, output and error open, on /dev/null where one was closed
// (an init script's `2>&-`, a daemon wrapper): closed, the next file
// opened took its number, a ring or the perf block, and every log line was
// written over that file's header. Standard output read-only there, so a
// command's output still fails to be written (exit 2, not 0 with nothing
// said).
void open_closed_standard_descriptors() {
  for (int fd = 0; fd <= 2; ++fd) {
    if (::fcntl(fd, F_GETFD) != -1 || errno != EBADF) continue;
    // The lowest free number: this one, the ones below it being open.
    const int opened = ::open("/dev/null", fd == 2 ? O_WRONLY : O_RDONLY);
    if (opened != fd) {
      if (opened >= 0) ::close(opened);
      ::_exit(2);  // no /dev/null: nothing safe to write to, nor a way to say so
    }
  }
}
}  // namespace

int main(int argc, char** argv) {
  open_closed_standard_descriptors();
  CLI::App app{"ringroute: a local event router over shared-memory rings"};
  app.set_version_flag("--version", "ringroute " RINGROUTE_VERSION);
  // At most one: CLI11's "A subcommand is required" would also answer a
  // misspelt one; with none required, a stray word is named as not expected.
  app.require_subcommand(0, 1);
  const auto emit = ringroute::tools::add_emit(app);
  const auto route = ringroute::tools::add_route(app);
  const auto validate = ringroute::tools::add_validate(app);
  const auto run = ringroute::tools::add_run(app);
  const auto stat = ringroute::tools::add_stat(app);
  CLI::App* bench = app.add_subcommand("bench", "measure throughput");
  bench->require_subcommand(0, 1);
  const auto bench_ring = ringroute::tools::add_bench_ring(*bench);
  const auto bench_router = ringroute::tools::add_bench_router(*bench);
  plain_type_names(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    return flushed(code == 0 ? 0 : 2);  // usage errors exit 2, --help and --version 0
  }
  try {
    if (app.got_subcommand("emit")) return flushed(emit());
    if (app.got_subcommand("route")) return flushed(route());
    if (app.got_subcommand("validate")) return flushed(validate());
    if (app.got_subcommand("run")) return flushed(run());
    if (app.got_subcommand("stat")) return flushed(stat());
    if (bench->got_subcommand("ring")) return flushed(bench_ring());
    if (app.got_subcommand("bench")) return flushed(bench_router());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ringroute: %s\n", e.what());
    return 2;
  }
  std::fprintf(stderr, "ringroute: give a command: run, validate, route, emit, stat or bench (--help says more)\n");
  return 2;
}
