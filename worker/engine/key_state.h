#pragma once

// KeyState: everything a task keeps for one key — its windows (window jobs),
// its rolling-rule events (rule jobs), its dedup values (jobs with `dedup`),
// and the marks the task's snapshots and timers keep on it. The task holds the
// keys in a KeyTable (key_table.h); WindowOperator (window_operator.h) and
// RollingRules (rolling_rules.h) change them; the state codec
// (state_codec.h) writes them to the store and reads them back.
//
// Plain data; single thread, as the task that owns it.

#include <boost/container/small_vector.hpp>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "worker/engine/aggregate.h"
#include "worker/engine/key_table.h"
#include "worker/engine/rolling_rules.h"
#include "worker/engine/timer_queue.h"

namespace sluice::engine {

// One window of one key: 64 bytes with its first accumulator (a count
// window's only one) inline, so that firing or updating it reads no memory
// apart from the key's entry; a job's further aggregates are in one array.
struct WindowState {
  int64_t start = 0;
  int64_t end = 0;
  uint32_t revision = 0;  // updates emitted so far
  bool fired = false;     // emitted at least once
  bool changed = false;   // changed since it was last emitted

  WindowState() = default;
  WindowState(const WindowState& other);
  WindowState& operator=(const WindowState& other);
  // A moved-from window keeps at most its inline accumulator.
  WindowState(WindowState&& other) noexcept;
  WindowState& operator=(WindowState&& other) noexcept;

  // Its accumulators, one per aggregate of the job, in the job's order.
  size_t num_accs() const { return num_accs_; }
  Accumulator& acc(size_t i) { return i == 0 ? first_ : rest_[i - 1]; }
  const Accumulator& acc(size_t i) const { return i == 0 ? first_ : rest_[i - 1]; }
  // Appends an accumulator of `fn` (for a window built one aggregate at a
  // time: a decoder, a test).
  Accumulator& AddAcc(AggFn fn);
  // Sets one empty accumulator per aggregate of `aggs`; those beyond the
  // first in `spare` if it is given (an array of aggs.size() - 1 that
  // ReleaseRest gave), else in a new array.
  void InitAccs(const std::vector<AggregateDef>& aggs,
                std::unique_ptr<Accumulator[]> spare = nullptr);
  // The array of the accumulators beyond the first (null for one), for a
  // later InitAccs.
  std::unique_ptr<Accumulator[]> ReleaseRest() {
    num_accs_ = num_accs_ > 0 ? 1 : 0;
    return std::move(rest_);
  }

 private:
  // All but the accumulators.
  void CopyFields(const WindowState& other);

  uint16_t num_accs_ = 0;
  Accumulator first_;
  std::unique_ptr<Accumulator[]> rest_;  // num_accs_ - 1 of them
};

// The job's `dedup`: the values of the dedup field the key had (as
// DistinctKey bytes) with their event times, kept until the watermark passes
// time + within, when no event that is not late can be a repeat of them.
struct DedupEntry {
  std::string value;
  int64_t time = 0;
};
struct DedupState {
  std::vector<DedupEntry> entries;
};

struct KeyState {
  // Window jobs; sorted by start. The first window is held inline (see
  // Accumulators): over many keys, each dependent load is a cache miss.
  boost::container::small_vector<WindowState, 1> windows;
  std::unique_ptr<RollingState> rolling;  // rule jobs with rolling rules
  std::unique_ptr<DedupState> dedup;      // jobs with `dedup`
  // 0: written. The task's current snapshot generation: changed since the
  // last barrier. Another value: changed before the last barrier and not yet
  // in its snapshot.
  uint32_t dirty_gen = 0;
  bool persisted = false;  // the store holds (or the open snapshot writes) a version of it
  // Used since the state memory budget's last pass over the keys: not the
  // next to leave memory (TaskProcessor, state_spill.h).
  bool hot = false;
  // The table's copy of the key (entries do not move), for timers.
  const std::string* name = nullptr;
  // Timers that refer to this entry: it stays in the table while any does.
  uint32_t timers = 0;

  bool empty() const {
    return windows.empty() && (!rolling || rolling->entries.empty()) &&
           (!dedup || dedup->entries.empty());
  }
  // For a new key in a reused table entry: keeps the windows' capacity.
  void Reset() {
    windows.clear();
    rolling.reset();
    dedup.reset();
    dirty_gen = 0;
    persisted = false;
    hot = false;
    name = nullptr;
    timers = 0;
  }
};

using KeyEntry = KeyTable<KeyState>::Entry;
using KeyTimer = Timer<KeyState>;
using KeyTimers = TimerQueue<KeyState>;

// Adds a timer of `ks` (whose name must be set) to `timers`, counted in
// ks.timers; whoever handles the timer when it fires takes the count back.
inline void PushTimer(KeyTimers& timers, KeyState& ks, int64_t time, int64_t start,
                      TimerKind kind) {
  ++ks.timers;
  timers.Push(KeyTimer{time, &ks, start, kind});
}

}  // namespace sluice::engine
