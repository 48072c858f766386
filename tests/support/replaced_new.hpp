#pragma once
// Every form of operator new and delete in a test binary, replaced: include
// from exactly one file of the binary, which defines replaced_new_hook().
// Each allocation (router threads included) goes through the hook; nullptr
// is out of memory, which the throwing forms turn into std::bad_alloc. All
// forms are replaced together, so each new meets its own delete (ASan
// checks).

#include <cstddef>
#include <cstdlib>
#include <new>

// `alignment` 0: the default. Returns memory free() can release, or nullptr.
void* replaced_new_hook(std::size_t size, std::size_t alignment) noexcept;

namespace ringroute::testing {
inline void* replaced_new_malloc(std::size_t size, std::size_t alignment) noexcept {
  if (alignment == 0) return std::malloc(size == 0 ? 1 : size);
  return std::aligned_alloc(alignment, (size + alignment - 1) / alignment * alignment);
}
}  // namespace ringroute::testing

// GCC can't see that these replacements pair malloc with free on purpose.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
void* operator new(std::size_t size) {
  if (void* p = replaced_new_hook(size, 0)) return p;
  throw std::bad_alloc();
}
void* operator new[](std::size_t size) {
  if (void* p = replaced_new_hook(size, 0)) return p;
  throw std::bad_alloc();
}
void* operator new(std::size_t size, const std::nothrow_t&) noexcept { return replaced_new_hook(size, 0); }
void* operator new[](std::size_t size, const std::nothrow_t&) noexcept { return replaced_new_hook(size, 0); }
void* operator new(std::size_t size, std::align_val_t align) {
  if (void* p = replaced_new_hook(size, static_cast<std::size_t>(align))) return p;
  throw std::bad_alloc();
}
void* operator new[](std::size_t size, std::align_val_t align) {
  if (void* p = replaced_new_hook(size, static_cast<std::size_t>(align))) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
#pragma GCC diagnostic pop
