#pragma once

// KeyTable: a task's state per key, found by the key's bytes.
//
// Entries live in a slab of fixed-size chunks: an entry keeps its address
// until it is erased (so timers may point at it), and an erased entry's slot — with the capacity of
// its key string and of whatever its State holds — goes to the next new key,
// so keys that come and go do not allocate. The index is an open-addressing
// table with linear probing (deletion by backward shift, no tombstones) of
// slot numbers and 32 bits of each key's hash.
//
// State must be default-constructible and have Reset(), which empties it and
// may keep its capacity. Single thread; header-only because it is a template
// over the state.

#include <xxhash.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace sluice::engine {

template <typename State>
class KeyTable {
 public:
  struct Entry {
    std::string key;
    State state;

   private:
    friend class KeyTable;
    uint64_t hash = 0;
    uint32_t slot = 0;
    bool live = false;
  };

  KeyTable() : index_(kMinCapacity) {}

  size_t size() const { return size_; }

  // A lookup waits for two loads from memory: the index bucket, then the
  // entry. A caller that knows its next keys can start both early:
  // PrefetchBucket(Hash(key)) some time before, PrefetchEntry(Hash(key))
  // once the bucket has arrived.
  static uint64_t Hash(std::string_view key) { return XXH3_64bits(key.data(), key.size()); }
  void PrefetchBucket(uint64_t hash) const { __builtin_prefetch(&index_[Home(hash)]); }
  void PrefetchEntry(uint64_t hash) const {
    const Bucket b = index_[Home(hash)];
    if (b.slot != kEmpty) __builtin_prefetch(&At(b.slot));
  }

  // The entry of `key`, or nullptr.
  Entry* Find(std::string_view key) {
    const uint64_t h = Hash(key);
    for (size_t i = Home(h);; i = Next(i)) {
      const Bucket b = index_[i];
      if (b.slot == kEmpty) return nullptr;
      if (b.tag == Tag(h) && At(b.slot).key == key) return &At(b.slot);
    }
  }

  // The entry of `key`, added with a Reset() state if it was missing
  // (`*added` says which).
  Entry& FindOrAdd(std::string_view key, bool* added = nullptr) {
    const uint64_t h = Hash(key);
    size_t i = Home(h);
    for (;; i = Next(i)) {
      const Bucket b = index_[i];
      if (b.slot == kEmpty) break;
      if (b.tag == Tag(h) && At(b.slot).key == key) {
        if (added != nullptr) *added = false;
        return At(b.slot);
      }
    }
    if (added != nullptr) *added = true;
    uint32_t slot;
    if (!free_.empty()) {
      slot = free_.back();
      free_.pop_back();
      At(slot).state.Reset();
    } else {
      if (used_ % kChunk == 0) chunks_.push_back(std::make_unique<Entry[]>(kChunk));
      slot = static_cast<uint32_t>(used_++);
    }
    Entry& e = At(slot);
    e.key.assign(key);
    e.hash = h;
    e.slot = slot;
    e.live = true;
    ++size_;
    if (2 * size_ > index_.size()) {  // at most half full: probes stay short
      Grow();
    } else {
      index_[i] = Bucket{Tag(h), slot};
    }
    return e;
  }

  // Removes `entry` (which must be live); its slot goes to a later key.
  void Erase(Entry& entry) {
    const uint32_t slot = entry.slot;
    size_t i = Home(entry.hash);
    while (index_[i].slot != slot) i = Next(i);
    // Backward shift: move later entries of the probe run into the hole when
    // their home allows, so lookups never need tombstones.
    for (size_t j = Next(i);; j = Next(j)) {
      const Bucket b = index_[j];
      if (b.slot == kEmpty) break;
      const size_t home = Home(At(b.slot).hash);
      // Is `home` cyclically outside (i, j]? Then b may move to i.
      const bool movable = i <= j ? (home <= i || home > j) : (home <= i && home > j);
      if (movable) {
        index_[i] = b;
        i = j;
      }
    }
    index_[i] = Bucket{0, kEmpty};
    entry.live = false;
    --size_;
    free_.push_back(slot);
  }

  // Slots handed out so far (live or free), and the live entry in one of
  // them or nullptr: for a caller that walks the table a piece at a time.
  size_t slots() const { return used_; }
  Entry* LiveAt(size_t slot) {
    Entry& e = At(static_cast<uint32_t>(slot));
    return e.live ? &e : nullptr;
  }

  // Calls f(Entry&) for every live entry, in slot order. `f` may Erase the
  // entry it is given.
  template <typename F>
  void ForEach(F&& f) {
    for (uint32_t slot = 0; slot < used_; ++slot) {
      if (At(slot).live) f(At(slot));
    }
  }
  template <typename F>
  void ForEach(F&& f) const {
    for (uint32_t slot = 0; slot < used_; ++slot) {
      if (At(slot).live) f(At(slot));
    }
  }

 private:
  static constexpr uint32_t kEmpty = UINT32_MAX;
  static constexpr size_t kMinCapacity = 64;
  // Entries per chunk: the chunk table stays small enough to stay in cache.
  static constexpr size_t kChunk = 256;

  struct Bucket {
    uint32_t tag = 0;  // the hash's high 32 bits
    uint32_t slot = kEmpty;
  };

  static uint32_t Tag(uint64_t h) { return static_cast<uint32_t>(h >> 32); }
  size_t Home(uint64_t h) const { return static_cast<size_t>(h) & (index_.size() - 1); }
  size_t Next(size_t i) const { return (i + 1) & (index_.size() - 1); }
  Entry& At(uint32_t slot) { return chunks_[slot / kChunk][slot % kChunk]; }
  const Entry& At(uint32_t slot) const { return chunks_[slot / kChunk][slot % kChunk]; }

  void Grow() {
    std::vector<Bucket> bigger(2 * index_.size());
    index_.swap(bigger);
    for (uint32_t slot = 0; slot < used_; ++slot) {
      const Entry& e = At(slot);
      if (!e.live) continue;
      size_t i = Home(e.hash);
      while (index_[i].slot != kEmpty) i = Next(i);
      index_[i] = Bucket{Tag(e.hash), slot};
    }
  }

  std::vector<std::unique_ptr<Entry[]>> chunks_;
  size_t used_ = 0;             // slots handed out so far
  std::vector<uint32_t> free_;  // slots of erased entries
  std::vector<Bucket> index_;   // a power of two in size
  size_t size_ = 0;
};

}  // namespace sluice::engine
