#pragma once

// TimerQueue: a task's window timers, taken out in (time, key, start, kind)
// order — the order windows fire and purge in, which is part of the output.
//
// Timers are grouped by fire time: a push goes to a bucket of its time (all
// windows of a tumbling job that end together share one, as do the windows
// of a sliding job that end together), and a bucket is sorted by (key,
// start, kind) only once it is due. So keys are compared only between timers
// of the same time, and mostly by their first 8 bytes. A push finds the
// bucket of its time in a small cache of recent times; a time that fell out
// of it gets a second bucket, and the two are merged when they are due.
//
// A timer names its owner (the caller's state for a key) by pointer, and the
// owner its key: Owner has `const std::string* name`. Both must outlive the
// timer. A timer in a bucket is 32 bytes: its time is the bucket's, and its
// window's end is the caller's to derive from the time and kind. Identical
// timers may be pushed more than once; each is popped. Single thread;
// header-only because it is a template over the owner type.

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

namespace sluice::engine {

// kExpireDedup: the key's dedup values older than the timer's time - within
// are forgotten (start is 0).
enum class TimerKind : uint8_t { kFire = 0, kPurge = 1, kExpireDedup = 2 };

template <typename Owner>
struct Timer {
  int64_t time = 0;
  Owner* owner = nullptr;
  int64_t start = 0;  // of the window the timer is for
  TimerKind kind = TimerKind::kFire;

  const std::string& key() const { return *owner->name; }
};

template <typename Owner>
class TimerQueue {
 public:
  using Entry = Timer<Owner>;

  // The memory a timer waiting in its bucket takes.
  static constexpr size_t kBytesPerTimer = 32;

  bool empty() const { return ready_.empty() && heap_.empty(); }
  size_t size() const { return ready_.size() + pending_; }
  // Buckets of timers not yet due: one per time, but for times that fell
  // out of the cache.
  size_t buckets() const { return heap_.size(); }
  // The memory the queue takes, about: its timers, and per time its bucket
  // (with its first timer) and heap entry. Buckets once used are kept for
  // reuse, and counted.
  size_t bytes() const {
    return (pending_ - heap_.size()) * kBytesPerTimer + ready_.size() * sizeof(Due) +
           buckets_.capacity() * sizeof(Bucket) + heap_.capacity() * sizeof(HeapEntry);
  }

  // The time of the next timer. Not for an empty queue.
  int64_t next_time() const { return !ready_.empty() ? ready_.back().time : heap_.front().time; }

  void Push(const Entry& timer) {
    const Slot slot{timer.owner, timer.start, Prefix(timer.key()), timer.kind};
    if (!ready_.empty() && timer.time <= ready_.front().time) {
      // Due with (or before) the timers being taken out: into their order,
      // after equal ones. (Every bucket's time is later than all of theirs.)
      // Timers pushed while due ones are taken out mostly come next, at the
      // back, where an insert moves nothing.
      const Due due{timer.time, slot};
      auto at = std::partition_point(ready_.begin(), ready_.end(),
                                     [&](const Due& d) { return Before(due, d); });
      ready_.insert(at, due);
      return;
    }
    ++pending_;
    // The cache's set of the time holds its two latest times, the latest
    // first.
    CacheEntry* set = &cache_[CacheSet(timer.time)];
    if (set[0].bucket != kNone && set[0].time == timer.time) {
      buckets_[set[0].bucket].Add(slot);
      return;
    }
    if (set[1].bucket != kNone && set[1].time == timer.time) {
      std::swap(set[0], set[1]);
      buckets_[set[0].bucket].Add(slot);
      return;
    }
    uint32_t b;
    if (!free_.empty()) {
      b = free_.back();
      free_.pop_back();
    } else {
      b = static_cast<uint32_t>(buckets_.size());
      buckets_.emplace_back();
    }
    buckets_[b].Add(slot);
    heap_.push_back(HeapEntry{timer.time, b});
    std::push_heap(heap_.begin(), heap_.end(), Later);
    set[1] = set[0];
    set[0] = CacheEntry{timer.time, b};
  }

  // The owner of the timer `ahead` places after the next one, if it is known
  // already (among the due timers taken out of their buckets), else nullptr:
  // for prefetching the state the coming timers will touch.
  Owner* OwnerAhead(size_t ahead) const {
    return ahead < ready_.size() ? ready_[ready_.size() - 1 - ahead].slot.owner : nullptr;
  }

  // The next timer, left in the queue. Not for an empty queue.
  Entry Peek() {
    if (ready_.empty()) Refill();
    return ready_.back().timer();
  }

  // Takes out the next timer. Not for an empty queue.
  Entry Pop() {
    if (ready_.empty()) Refill();
    const Entry next = ready_.back().timer();
    ready_.pop_back();
    // A large due list shrinks as it is taken out (the next time's timers
    // are meanwhile pushed into buckets of their own): down to a quarter,
    // the rest is moved to a buffer of its size.
    if (ready_.capacity() > kKeepCapacity && ready_.size() < ready_.capacity() / 4) {
      std::vector<Due>(ready_.begin(), ready_.end()).swap(ready_);
    }
    return next;
  }

  // Removes every timer for which pred(const Entry&) is true: for owners
  // whose state leaves memory. Costs a pass over all timers.
  template <typename Pred>
  void RemoveIf(Pred&& pred) {
    ready_.erase(
        std::remove_if(ready_.begin(), ready_.end(), [&](const Due& d) { return pred(d.timer()); }),
        ready_.end());
    std::vector<HeapEntry> kept;
    kept.reserve(heap_.size());
    for (const HeapEntry& h : heap_) {
      Bucket& bucket = buckets_[h.bucket];
      const size_t before = bucket.size;
      auto gone = [&](const Slot& s) { return pred(s.timer(h.time)); };
      SlotList& more = bucket.more;
      more.EraseIf(gone);
      if (gone(bucket.first)) {
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

  // A timer in a bucket, whose time is the bucket's.
  struct Slot {
    Owner* owner = nullptr;
    int64_t start = 0;
    uint64_t prefix = 0;  // the key's first 8 bytes, big-endian, zero-padded
    TimerKind kind = TimerKind::kFire;

    Entry timer(int64_t time) const { return Entry{time, owner, start, kind}; }
  };
  static_assert(sizeof(Slot) == kBytesPerTimer);
  // A due timer, taken out of its bucket.
  struct Due {
    int64_t time = 0;
    Slot slot;

    Entry timer() const { return slot.timer(time); }
  };
  // A bucket's timers after its first: one vector while there are few; past
  // kChunk, fixed chunks of kChunk, each full but the last. So the timers of
  // every key's window ending at once are not held with a grown vector's
  // spare half, nor copied as it grows, and Refill gives them back chunk by
  // chunk as it takes them.
  class SlotList {
   public:
    static constexpr size_t kChunk = 4096;

    size_t size() const {
      return chunks_.empty() ? 0 : (chunks_.size() - 1) * kChunk + chunks_.back().size();
    }
    bool empty() const { return size() == 0; }
    void push_back(const Slot& slot) {
      if (chunks_.empty() || chunks_.back().size() == kChunk) {
        chunks_.emplace_back();
        if (chunks_.size() > 1) chunks_.back().reserve(kChunk);
      }
      chunks_.back().push_back(slot);
    }
    const Slot& back() const { return chunks_.back().back(); }
    void pop_back() {
      chunks_.back().pop_back();
      if (chunks_.back().empty() && chunks_.size() > 1) chunks_.pop_back();
    }
    // Removes the slots for which pred(const Slot&) is true, keeping the
    // others in order, in place.
    template <typename Pred>
    void EraseIf(Pred&& pred) {
      const size_t n = size();
      size_t kept = 0;
      for (size_t i = 0; i < n; ++i) {
        const Slot& slot = at(i);
        if (pred(slot)) continue;
        if (kept != i) at(kept) = slot;
        ++kept;
      }
      chunks_.resize((kept + kChunk - 1) / kChunk);
      if (!chunks_.empty()) chunks_.back().resize(kept - (chunks_.size() - 1) * kChunk);
    }
    // Appends every slot, at `time`, to `out` and empties the list: a small
    // one keeps its vector for reuse; chunks are given back as they are
    // copied.
    void MoveTo(int64_t time, std::vector<Due>* out) {
      for (std::vector<Slot>& chunk : chunks_) {
        for (const Slot& s : chunk) out->push_back(Due{time, s});
        if (chunks_.size() > 1) std::vector<Slot>().swap(chunk);
      }
      if (chunks_.size() > 1) {
        chunks_.clear();
      } else if (!chunks_.empty()) {
        chunks_.front().clear();
      }
    }

   private:
    Slot& at(size_t i) { return chunks_[i / kChunk][i % kChunk]; }

    std::vector<std::vector<Slot>> chunks_;
  };

  // The timers of one time. The first is inline: most times of a session
  // job have one timer, and then a bucket needs no allocation.
  struct Bucket {
    size_t size = 0;
    Slot first;
    SlotList more;

    void Add(const Slot& slot) {
      if (size++ == 0) {
        first = slot;
      } else {
        more.push_back(slot);
      }
    }
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
  // Sets of two: the times of a sliding job's windows, a stride apart, fall
  // in different sets (Fibonacci hashing spreads an arithmetic progression).
  static constexpr int kCacheSetBits = 7;
  static size_t CacheSet(int64_t time) {
    return 2 * static_cast<size_t>((static_cast<uint64_t>(time) * 0x9E3779B97F4A7C15ull) >>
                                   (64 - kCacheSetBits));
  }
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

  static bool Before(const Due& a, const Due& b) {
    if (a.time != b.time) return a.time < b.time;
    if (a.slot.prefix != b.slot.prefix) return a.slot.prefix < b.slot.prefix;
    if (a.slot.owner != b.slot.owner) {
      const int c = a.slot.owner->name->compare(*b.slot.owner->name);
      if (c != 0) return c < 0;
    }
    if (a.slot.start != b.slot.start) return a.slot.start < b.slot.start;
    return a.slot.kind < b.slot.kind;
  }

  // Moves every bucket of the earliest time to ready_, sorted.
  void Refill() {
    const int64_t time = heap_.front().time;
    // The cache's buckets of that time are freed here: it forgets them.
    CacheEntry* set = &cache_[CacheSet(time)];
    for (int way = 0; way < 2; ++way) {
      if (set[way].time == time) set[way] = CacheEntry{};
    }
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
      std::vector<Due>().swap(ready_);
    }
    ready_.reserve(total);
    for (const uint32_t b : due_buckets_) {
      Bucket& bucket = buckets_[b];
      pending_ -= bucket.size;
      ready_.push_back(Due{time, bucket.first});
      bucket.more.MoveTo(time, &ready_);
      bucket.size = 0;
      free_.push_back(b);
    }
    // Sorts 16-byte (prefix, position) pairs rather than whole timers; only
    // keys with equal prefixes are compared in full.
    order_.resize(ready_.size());
    for (uint32_t i = 0; i < ready_.size(); ++i) order_[i] = SortKey{ready_[i].slot.prefix, i};
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
      const Due first = ready_[start];
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
  std::vector<HeapEntry> heap_;  // earliest time first; one entry per bucket in use
  std::vector<uint32_t> free_;   // bucket indices to reuse
  size_t pending_ = 0;           // timers in buckets
  // The buckets of recent times, in sets of two by time (CacheSet).
  std::array<CacheEntry, 2 << kCacheSetBits> cache_{};
  // The earliest time's timers not yet taken out, sorted last first: the
  // next is at the back.
  std::vector<Due> ready_;
  std::vector<SortKey> order_;  // for Refill
  std::vector<uint32_t> due_buckets_;
  std::vector<Due> sorted_;
};

}  // namespace sluice::engine
