#pragma once

// KeyFilter: a Bloom filter of key hashes — "surely not added" or "maybe
// added". A task with a state memory budget keeps one of the keys it has
// moved out of memory (state_spill.h), so that the first event of a new key,
// or of a key that is in memory anyway, does not pay a read of the spill
// store. Keys are never removed: the owner rebuilds the filter from what it
// holds once too many have left (Clear, then Add each).
//
// 10 bits and 7 probes per key: about 1% false positives at capacity.
// Single thread; header-only, as small as it is.

#include <cstddef>
#include <cstdint>
#include <vector>

namespace sluice::engine {

class KeyFilter {
 public:
  // Empty, sized for `capacity` keys (at least 1024).
  explicit KeyFilter(size_t capacity = 0) { Clear(capacity); }

  void Clear(size_t capacity) {
    capacity_ = capacity < 1024 ? 1024 : capacity;
    bits_.assign((capacity_ * kBitsPerKey + 63) / 64, 0);
    added_ = 0;
  }

  // `hash` is the key's 64-bit hash (KeyTable::Hash).
  void Add(uint64_t hash) {
    ForEachProbe(hash, [&](size_t bit) { bits_[bit / 64] |= uint64_t{1} << (bit % 64); });
    ++added_;
  }

  bool MayContain(uint64_t hash) const {
    bool all = true;
    ForEachProbe(hash, [&](size_t bit) { all = all && (bits_[bit / 64] >> (bit % 64) & 1) != 0; });
    return all;
  }

  // Adds since the last Clear, and the number the filter was sized for.
  size_t added() const { return added_; }
  size_t capacity() const { return capacity_; }
  size_t bytes() const { return bits_.size() * sizeof(uint64_t); }

 private:
  static constexpr size_t kBitsPerKey = 10;
  static constexpr int kProbes = 7;

  // Double hashing: probe i is h1 + i * h2, over the filter's bits.
  template <typename F>
  void ForEachProbe(uint64_t hash, F&& f) const {
    const size_t nbits = bits_.size() * 64;
    const uint64_t h1 = hash;
    const uint64_t h2 = (hash >> 33 | hash << 31) | 1;
    for (int i = 0; i < kProbes; ++i) f(static_cast<size_t>((h1 + i * h2) % nbits));
  }

  std::vector<uint64_t> bits_;
  size_t capacity_ = 0;
  size_t added_ = 0;
};

}  // namespace sluice::engine
