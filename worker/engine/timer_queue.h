#pragma once

// TimerQueue: a task's window timers, taken out in (time, key, start, kind)
// order — the order windows fire and purge in, which is part of the output.
//
// Timers are grouped by fire time: a push goes to a bucket of its time (all
// windows of a tumbling job that end together share one), and a bucket is
// sorted by (key, start, kind) only once it is due. So keys are compared only
// between timers of the same time, and mostly by their first 8 bytes.
//
// A timer refers to its key by pointer, without a copy: the key string and
// the owner (the caller's state for the key) must outlive the timer.
// Identical timers may be pushed more than once; each is popped. Single
// thread; header-only because it is a template over the owner type.

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

namespace sluice::engine {

// kExpireDedup: the key's dedup values older than the timer's time - within
// are forgotten (start and end are 0).
enum class TimerKind : uint8_t { kFire = 0, kPurge = 1, kExpireDedup = 2 };

template <typename Owner>
struct Timer {
  int64_t time = 0;
  const std::string* key = nullptr;
  Owner* owner = nullptr;
  int64_t start = 0;
  int64_t end = 0;
  TimerKind kind = TimerKind::kFire;
};

template <typename Owner>
class TimerQueue {
 public:
  using Entry = Timer<Owner>;

  bool empty() const { return ready_.empty() && heap_.empty(); }
  size_t size() const { return ready_.size() + pending_; }

  // The time of the next timer. Not for an empty queue.
  int64_t next_time() const {
    return !ready_.empty() ? ready_.back().timer.time : heap_.front().time;
  }

  void Push(const Entry& timer) {
    const Slot slot{timer, Prefix(*timer.key)};
    if (!ready_.empty() && timer.time <= ready_.front().timer.time) {
      // Due with (or before) the timers being taken out: into their order,
      // after equal ones. (Every bucket's time is later than all of theirs.)
      // Timers pushed while due ones are taken out mostly come next, at the
      // back, where an insert moves nothing.
      auto at = std::partition_point(ready_.begin(), ready_.end(),
                                     [&](const Slot& s) { return Before(slot, s); });
      ready_.insert(at, slot);
      return;
    }
    ++pending_;
    for (const CacheEntry& c : cache_) {
      if (c.bucket != kNone && c.time == timer.time) {
        Bucket& bucket = buckets_[c.bucket];
        if (bucket.size++ == 0) {
          bucket.first = slot;
        } else {
          bucket.more.push_back(slot);
        }
        return;
      }
    }
    // A new bucket (there may be another of the same time that fell out of
    // the cache; Refill merges them).
    uint32_t b;
    if (!free_.empty()) {
      b = free_.back();
      free_.pop_back();
    } else {
      b = static_cast<uint32_t>(buckets_.size());
      buckets_.emplace_back();
    }
    buckets_[b].size = 1;
    buckets_[b].first = slot;
    heap_.push_back(HeapEntry{timer.time, b});
    std::push_heap(heap_.begin(), heap_.end(), Later);
    cache_[cache_next_] = CacheEntry{timer.time, b};
    cache_next_ = (cache_next_ + 1) % cache_.size();
  }

  // The owner of the timer `ahead` places after the next one, if it is known
  // already (among the due timers taken out of their buckets), else nullptr:
  // for prefetching the state the coming timers will touch.
  Owner* OwnerAhead(size_t ahead) const {
    return ahead < ready_.size() ? ready_[ready_.size() - 1 - ahead].timer.owner : nullptr;
  }

  // The next timer, left in the queue. Not for an empty queue.
  const Entry& Peek() {
    if (ready_.empty()) Refill();
    return ready_.back().timer;
  }

  // Takes out the next timer. Not for an empty queue.
  Entry Pop() {
    if (ready_.empty()) Refill();
    const Entry next = ready_.back().timer;
    ready_.pop_back();
    // A large due list shrinks as it is taken out (the next time's timers
    // are meanwhile pushed into buckets of their own): down to a quarter,
    // the rest is moved to a buffer of its size.
    if (ready_.capacity() > kKeepCapacity && ready_.size() < ready_.capacity() / 4) {
      std::vector<Slot>(ready_.begin(), ready_.end()).swap(ready_);
    }
    return next;
  }

  // Removes every timer for which pred(const Entry&) is true: for owners
  // whose state leaves memory. Costs a pass over all timers.
  template <typename Pred>
  void RemoveIf(Pred&& pred) {
    ready_.erase(
        std::remove_if(ready_.begin(), ready_.end(), [&](const Slot& s) { return pred(s.timer); }),
        ready_.end());
    std::vector<HeapEntry> kept;
    kept.reserve(heap_.size());
    for (const HeapEntry& h : heap_) {
      Bucket& bucket = buckets_[h.bucket];
      const size_t before = bucket.size;
      SlotList& more = bucket.more;
      more.EraseIf([&](const Slot& s) { return pred(s.timer); });
      if (pred(bucket.first.timer)) {
        if (more.empty()) {
          bucket.size = 0;
        } else {
          bucket.first = more.back();
          more.pop_back();
        }
      }
      if (bucket.size != 0) bucket.size = 1 + more.size();
      pending_ -= before - bucket.size;
      if (bucket.size == 0) {
        free_.push_back(h.bucket);
      } else {
        kept.push_back(h);
      }
    }
    heap_.swap(kept);
    std::make_heap(heap_.begin(), heap_.end(), Later);
    cache_.fill(CacheEntry{});
  }

 private:
  static constexpr uint32_t kNone = UINT32_MAX;
  // Buffers up to this many timers keep their memory for reuse.
  static constexpr size_t kKeepCapacity = 4096;
  static constexpr uint32_t kPlaced = UINT32_MAX;

  struct Slot {
    Entry timer;
    uint64_t prefix = 0;  // the key's first 8 bytes, big-endian, zero-padded
  };
  // A bucket's timers after its first: one vector while there are few; past
  // kChunk, fixed chunks of kChunk, each full but the last. So the timers of
  // every key's window ending at once are not held with a grown vector's
  // spare half, nor copied as it grows, and Refill gives them back chunk by
  // chunk as it takes them.
  class SlotList {
   public:
    static constexpr size_t kChunk = 4096;

    size_t size() const { return size_; }
    bool empty() const { return size_ == 0; }
    void push_back(const Slot& slot) {
      if (chunks_.empty() || chunks_.back().size() == kChunk) {
        chunks_.emplace_back();
        if (chunks_.size() > 1) chunks_.back().reserve(kChunk);
      }
      chunks_.back().push_back(slot);
      ++size_;
    }
    const Slot& back() const { return chunks_.back().back(); }
    void pop_back() {
      chunks_.back().pop_back();
      --size_;
      if (chunks_.back().empty() && chunks_.size() > 1) chunks_.pop_back();
    }
    // Removes the slots for which pred(const Slot&) is true, keeping the
    // others in order, in place.
    template <typename Pred>
    void EraseIf(Pred&& pred) {
      size_t kept = 0;
      for (size_t i = 0; i < size_; ++i) {
        const Slot& slot = at(i);
        if (pred(slot)) continue;
        if (kept != i) at(kept) = slot;
        ++kept;
      }
      chunks_.resize((kept + kChunk - 1) / kChunk);
      if (!chunks_.empty()) chunks_.back().resize(kept - (chunks_.size() - 1) * kChunk);
      size_ = kept;
    }
    // Appends every slot to `out` and empties the list: a small one keeps
    // its vector for reuse; chunks are given back as they are copied.
    void MoveTo(std::vector<Slot>* out) {
      for (std::vector<Slot>& chunk : chunks_) {
        out->insert(out->end(), chunk.begin(), chunk.end());
        if (chunks_.size() > 1) std::vector<Slot>().swap(chunk);
      }
      if (chunks_.size() > 1) {
        chunks_.clear();
      } else if (!chunks_.empty()) {
        chunks_.front().clear();
      }
      size_ = 0;
    }

   private:
    Slot& at(size_t i) { return chunks_[i / kChunk][i % kChunk]; }

    std::vector<std::vector<Slot>> chunks_;
    size_t size_ = 0;
  };

  // The timers of one time. The first is inline: most times of a session
  // job have one timer, and then a bucket needs no allocation.
  struct Bucket {
    size_t size = 0;
    Slot first;
    SlotList more;
  };
  struct HeapEntry {
    int64_t time;
    uint32_t bucket;
  };
  struct SortKey {
    uint64_t prefix;
    uint32_t index;
  };
  struct CacheEntry {
    int64_t time = 0;
    uint32_t bucket = kNone;
  };
  static bool Later(const HeapEntry& a, const HeapEntry& b) { return a.time > b.time; }

  // Orders keys as std::string::compare does (bytes as unsigned, then
  // length): a prefix difference decides, else the whole keys do.
  static uint64_t Prefix(const std::string& key) {
    unsigned char bytes[8] = {};
    std::memcpy(bytes, key.data(), std::min<size_t>(key.size(), 8));
    uint64_t p = 0;
    for (unsigned char b : bytes) p = (p << 8) | b;
    return p;
  }

  static bool Before(const Slot& a, const Slot& b) {
    if (a.timer.time != b.timer.time) return a.timer.time < b.timer.time;
    if (a.prefix != b.prefix) return a.prefix < b.prefix;
    if (a.timer.key != b.timer.key) {
      const int c = a.timer.key->compare(*b.timer.key);
      if (c != 0) return c < 0;
    }
    if (a.timer.start != b.timer.start) return a.timer.start < b.timer.start;
    return a.timer.kind < b.timer.kind;
  }

  // Moves every bucket of the earliest time to ready_, sorted.
  void Refill() {
    cache_.fill(CacheEntry{});
    const int64_t time = heap_.front().time;
    size_t total = 0;
    due_buckets_.clear();
    while (!heap_.empty() && heap_.front().time == time) {
      std::pop_heap(heap_.begin(), heap_.end(), Later);
      due_buckets_.push_back(heap_.back().bucket);
      total += buckets_[heap_.back().bucket].size;
      heap_.pop_back();
    }
    // ready_ is allocated once, to size: a buffer of another size is given
    // back first, unless it is small.
    ready_.clear();
    if (ready_.capacity() < total ||
        (ready_.capacity() > kKeepCapacity && ready_.capacity() > 2 * total)) {
      std::vector<Slot>().swap(ready_);
    }
    ready_.reserve(total);
    for (const uint32_t b : due_buckets_) {
      Bucket& bucket = buckets_[b];
      pending_ -= bucket.size;
      ready_.push_back(bucket.first);
      bucket.more.MoveTo(&ready_);
      bucket.size = 0;
      free_.push_back(b);
    }
    // Sorts 16-byte (prefix, position) pairs rather than whole timers; only
    // keys with equal prefixes are compared in full.
    order_.resize(ready_.size());
    for (uint32_t i = 0; i < ready_.size(); ++i) order_[i] = SortKey{ready_[i].prefix, i};
    std::sort(order_.begin(), order_.end(), [this](const SortKey& a, const SortKey& b) {
      if (a.prefix != b.prefix) return a.prefix < b.prefix;
      return Before(ready_[a.index], ready_[b.index]);
    });
    const size_t n = order_.size();
    if (n <= kKeepCapacity) {
      sorted_.resize(n);
      for (size_t i = 0; i < n; ++i) sorted_[n - 1 - i] = ready_[order_[i].index];
      ready_.swap(sorted_);
      return;
    }
    // As many timers as keys (every window ending at once): moved into
    // place along the permutation's cycles rather than into a second
    // buffer, and the order given back.
    for (size_t start = 0; start < n; ++start) {
      if (order_[n - 1 - start].index == kPlaced) continue;
      const Slot first = ready_[start];
      size_t at = start;
      for (;;) {
        SortKey& from = order_[n - 1 - at];  // ready_[at] takes ready_[from.index]
        const uint32_t source = from.index;
        from.index = kPlaced;
        if (source == start) {
          ready_[at] = first;
          break;
        }
        ready_[at] = ready_[source];
        at = source;
      }
    }
    std::vector<SortKey>().swap(order_);
  }

  std::vector<Bucket> buckets_;
  std::vector<HeapEntry> heap_;  // earliest time first
  std::vector<uint32_t> free_;   // bucket indices to reuse
  size_t pending_ = 0;           // timers in buckets
  // The buckets pushes went to last: pushes come in runs of few times.
  std::array<CacheEntry, 4> cache_{};
  size_t cache_next_ = 0;
  // The earliest time's timers not yet taken out, sorted last first: the
  // next is at the back.
  std::vector<Slot> ready_;
  std::vector<SortKey> order_;  // for Refill
  std::vector<uint32_t> due_buckets_;
  std::vector<Slot> sorted_;
};

}  // namespace sluice::engine
