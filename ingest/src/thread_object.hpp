#pragma once
// A per-thread object that code run from any destructor may use.
//
// A thread_local object of a class type is destroyed at its thread's end
// before what runs after it: for the main thread, before atexit handlers
// and static destructors, so a log flushed there (an emit at exit) would
// use a destroyed object. Here the object lives on the heap behind a
// trivially destructible thread_local pointer: a pthread key frees it when
// its thread ends (after the thread's C++ thread_local destructors, which
// may still use it), and the main thread's is left to the process's end.
// Allocated on the thread's first use, not carved out of every thread's
// static TLS.
#include <pthread.h>

#include <new>

namespace ringroute::ingest::detail {

template <class T>
inline thread_local T* thread_object_ = nullptr;

template <class T>
void free_thread_object(void* object) {
  delete static_cast<T*>(object);
  thread_object_<T> = nullptr;  // a use after this, in a later key's destructor, makes another
}

// This thread's T, made on first use; null when out of memory.
template <class T>
T* thread_object() noexcept {
  if (thread_object_<T> != nullptr) [[likely]] return thread_object_<T>;
  static pthread_key_t key;
  // Without a key (none left) a thread's object is never freed.
  static const bool key_made = ::pthread_key_create(&key, free_thread_object<T>) == 0;
  thread_object_<T> = new (std::nothrow) T;
  if (thread_object_<T> != nullptr && key_made) ::pthread_setspecific(key, thread_object_<T>);
  return thread_object_<T>;
}

}  // namespace ringroute::ingest::detail
