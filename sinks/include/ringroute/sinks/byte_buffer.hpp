#pragma once
// A growable byte buffer for batches: formatters reserve a worst case, then
// write through a raw pointer with no per-byte bounds checks. Grows by
// doubling and does not shrink as it is reused, so a reused buffer stops
// allocating once it has seen its largest batch; shrink_to_fit() is for one
// that will not be reused (a batch taken over, written once and freed).

#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string_view>

namespace ringroute::sinks {

class ByteBuffer {
 public:
  ByteBuffer() = default;
  explicit ByteBuffer(std::size_t capacity) { reserve(capacity); }
  ~ByteBuffer() { std::free(data_); }
  ByteBuffer(const ByteBuffer&) = delete;
  ByteBuffer& operator=(const ByteBuffer&) = delete;
  ByteBuffer(ByteBuffer&& other) noexcept
      : data_(other.data_), size_(other.size_), capacity_(other.capacity_) {
    other.data_ = nullptr;
    other.size_ = other.capacity_ = 0;
  }
  ByteBuffer& operator=(ByteBuffer&& other) noexcept {
    if (this != &other) {
      std::free(data_);
      data_ = other.data_;
      size_ = other.size_;
      capacity_ = other.capacity_;
      other.data_ = nullptr;
      other.size_ = other.capacity_ = 0;
    }
    return *this;
  }

  // Makes room for `extra` more bytes; returns where they go.
  char* reserve_more(std::size_t extra) {
    if (size_ + extra > capacity_) grow(size_ + extra);
    return data_ + size_;
  }
  // Exactly `capacity` (a batch's size limit is not rounded up to the next
  // power of two: 1 MiB batches reserved 2 MiB each).
  void reserve(std::size_t capacity) {
    if (capacity > capacity_) resize_capacity(capacity);
  }
  // After writing through reserve_more()'s pointer: `end` is one past the last byte written.
  void commit_to(const char* end) noexcept { size_ = static_cast<std::size_t>(end - data_); }
  void append(std::string_view bytes) {
    char* out = reserve_more(bytes.size());
    std::memcpy(out, bytes.data(), bytes.size());
    size_ += bytes.size();
  }
  void push_back(char c) {
    *reserve_more(1) = c;
    ++size_;
  }
  void clear() noexcept { size_ = 0; }
  // Gives back the room past the bytes held (at least one byte is kept);
  // where the allocator can't, the buffer stays as it was.
  void shrink_to_fit() noexcept {
    const std::size_t keep = size_ == 0 ? 1 : size_;
    if (keep >= capacity_) return;
    if (void* smaller = std::realloc(data_, keep)) {
      data_ = static_cast<char*>(smaller);
      capacity_ = keep;
    }
  }
  void resize_down(std::size_t size) noexcept { size_ = size < size_ ? size : size_; }

  [[nodiscard]] const char* data() const noexcept { return data_; }
  [[nodiscard]] char* data() noexcept { return data_; }
  [[nodiscard]] std::size_t size() const noexcept { return size_; }
  [[nodiscard]] std::size_t capacity() const noexcept { return capacity_; }
  [[nodiscard]] bool empty() const noexcept { return size_ == 0; }
  [[nodiscard]] std::string_view view() const noexcept { return {data_, size_}; }

 private:
  void grow(std::size_t needed) {
    std::size_t capacity = capacity_ == 0 ? 4096 : capacity_;
    while (capacity < needed) capacity *= 2;
    resize_capacity(capacity);
  }
  void resize_capacity(std::size_t capacity) {
    void* grown = std::realloc(data_, capacity);
    if (grown == nullptr) throw std::bad_alloc();
    data_ = static_cast<char*>(grown);
    capacity_ = capacity;
  }

  char* data_ = nullptr;
  std::size_t size_ = 0;
  std::size_t capacity_ = 0;
};

}  // namespace ringroute::sinks
