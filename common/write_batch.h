#pragma once

// WriteBatch: puts and deletes applied together or not at all, by a store
// that takes batches (the engine's StateStore, the coordinator's
// MetadataStore).
//
// The operations are kept encoded as a delta checkpoint stores them
// (worker/state/changelog.h), so that a batch of a million keys takes about
// its keys' and values' bytes, and goes to a delta file as it is. For each
// operation: a tag byte ('P' put, 'D' delete), the key's length (4 bytes,
// little-endian), the key, and for a put the value's length and the value.
// The encoding is held in chunks of about kChunkBytes (an operation is never
// split; the first chunk grows up to that size), so a large batch is neither
// copied nor held twice as it grows.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace sluice {

class WriteBatch {
 public:
  struct Op {
    std::string_view key;
    std::string_view value;  // empty for a delete
    bool put = false;
  };

  // Walks the operations in the order they were added.
  class Iterator {
   public:
    const Op& operator*() const { return op_; }
    const Op* operator->() const { return &op_; }
    Iterator& operator++() {
      Decode();
      return *this;
    }
    bool operator==(const Iterator& other) const {
      return chunk_ == other.chunk_ && pos_ == other.pos_;
    }
    bool operator!=(const Iterator& other) const { return !(*this == other); }

   private:
    friend class WriteBatch;
    Iterator(const std::vector<std::string>* chunks, size_t chunk)
        : chunks_(chunks), chunk_(chunk) {
      Decode();
    }
    void Decode();

    const std::vector<std::string>* chunks_;
    size_t chunk_ = 0;  // the chunk op_ is in; chunks_->size() at the end
    size_t pos_ = 0;    // where op_ starts in it
    size_t next_ = 0;   // where the operation after op_ starts
    Op op_;
  };

  static constexpr size_t kChunkBytes = size_t{1} << 20;

  // Reads one operation from the front of `encoded` (the encoding above)
  // into `op` and removes it; false if it is cut or malformed. For reading
  // an encoding from elsewhere (a delta file) as well as a batch's chunks.
  static bool DecodeOp(std::string_view* encoded, Op* op);

  void Put(std::string_view key, std::string_view value) {
    std::string& chunk = Append('P', key, 4 + value.size());
    AppendLength(chunk, value.size());
    chunk.append(value);
  }
  void Delete(std::string_view key) { Append('D', key, 0); }

  bool empty() const { return count_ == 0; }
  size_t count() const { return count_; }
  // The operations, encoded as above, in order: the chunks one after the
  // other.
  std::span<const std::string> chunks() const { return chunks_; }
  size_t bytes() const { return bytes_; }

  Iterator begin() const { return Iterator(&chunks_, 0); }
  Iterator end() const { return Iterator(&chunks_, chunks_.size()); }

  // Orders the operations by key, keeping the order of those on one key (so
  // the last still wins): a store inserts sorted keys faster.
  void SortByKey();

 private:
  // Starts an operation of 5 + key + `more` bytes: its tag and key. Returns
  // the chunk it goes to.
  std::string& Append(char tag, std::string_view key, size_t more) {
    const size_t size = 5 + key.size() + more;
    if (chunks_.empty() ||
        (chunks_.back().size() + size > kChunkBytes && !chunks_.back().empty())) {
      chunks_.emplace_back();
      if (chunks_.size() > 1) chunks_.back().reserve(std::max(kChunkBytes, size));
    }
    std::string& chunk = chunks_.back();
    chunk.push_back(tag);
    AppendLength(chunk, key.size());
    chunk.append(key);
    ++count_;
    bytes_ += size;
    return chunk;
  }
  static void AppendLength(std::string& chunk, size_t n) {
    const auto v = static_cast<uint32_t>(n);
    const char bytes[4] = {static_cast<char>(v & 0xff), static_cast<char>((v >> 8) & 0xff),
                           static_cast<char>((v >> 16) & 0xff), static_cast<char>(v >> 24)};
    chunk.append(bytes, 4);
  }

  std::vector<std::string> chunks_;
  size_t count_ = 0;
  size_t bytes_ = 0;
};

}  // namespace sluice
