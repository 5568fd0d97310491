#pragma once

// StateSpill: where a task with a state memory budget keeps the keys it has
// moved out of memory (as Flink's RocksDB state backend keeps every key, and
// Kafka Streams' caching store the ones it has flushed). A spill store is
// scratch: it is not part of any checkpoint, the worker wipes it when the
// task opens, and nothing in it survives the task. What a checkpoint holds
// still comes only from the task's snapshots (task_processor.h), which read
// the keys they need from here.
//
// Layout of the spill store:
//   k/<key>   the key's state, encoded as a checkpoint holds it
//             (StateCodec::EncodeKey); absent for a key with no state left
//   d/<key>   the key changed since the last barrier: the next snapshot
//             writes it. The value is one byte: 1 if the checkpoint store
//             holds a version of it (so that no state left means a delete).
//   r/<key>   the key's rolling-rule events (StateCodec::EncodeSpilledRolling),
//             for a key that has any; a barrier writes those no chunk holds
//             yet in a chunk, as for a key in memory
//   t/<time><key><start><kind>
//             a timer of an evicted key, ordered as the task's TimerQueue
//             orders timers (time, key, start, kind): times and starts
//             big-endian with the sign bit flipped, the key with each 0x00
//             byte written 0x00 0xff and ended by 0x00 0x01, so that a key
//             sorts before every longer key it begins. A due timer reads
//             its key back, whose timers then fire from memory in order.
//
// Thread safety: the task's thread only, as its StateStore.

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "worker/engine/state_store.h"
#include "worker/engine/timer_queue.h"

namespace sluice::engine {

// One timer as the spill store names it.
struct SpilledTimer {
  int64_t time = 0;
  std::string key;
  int64_t start = 0;
  TimerKind kind = TimerKind::kFire;
};

// The name of a spilled timer, and its parts back (false if `name` is not one).
std::string SpilledTimerName(int64_t time, std::string_view key, int64_t start, TimerKind kind);
bool ParseSpilledTimerName(std::string_view name, SpilledTimer* timer);

class StateSpill {
 public:
  explicit StateSpill(StateStore& store) : store_(store) {}

  // ---- Moving keys out (in batches: Evict..., then Flush) ----

  // Adds a key to the batch: its encoded state (nullptr: none left), whether
  // it changed since the last barrier and whether the checkpoint store holds
  // a version of it, and its timers' (time, start, kind).
  void Evict(std::string_view key, const std::string* state, bool dirty, bool persisted);
  void EvictTimer(std::string_view key, int64_t time, int64_t start, TimerKind kind);
  // Writes the batch in pieces (StateStore::WriteInPieces), not atomically:
  // a spill store that fails restarts the task, which wipes it.
  Status Flush();

  // ---- Reading a key back ----

  struct Loaded {
    std::optional<std::string> state;  // none: no state left
    bool dirty = false;
    bool persisted = true;
  };
  // The key's spilled state, or nullopt if the spill store does not hold it.
  Result<std::optional<Loaded>> Load(std::string_view key);
  // Deletes what the spill store holds of a key read back, and the timers
  // listed (the ones its state gives).
  void Forget(std::string_view key, bool dirty);
  void ForgetTimer(std::string_view key, int64_t time, int64_t start, TimerKind kind);
  // A key's rolling-rule events: with Evict, read back with the key's state,
  // and forgotten with it.
  void EvictRolling(std::string_view key, const std::string& events);
  Result<std::optional<std::string>> LoadRolling(std::string_view key);
  void ForgetRolling(std::string_view key);
  // (Forget and ForgetTimer are batched too: Flush writes them.)
  //
  // Load reads the store, not the batch: a key must not be loaded while the
  // batch holds a write of it. The task loads only keys out of memory, and a
  // key leaves memory by Evict (whose pass ends with Flush) or, with no
  // state, after a Flush. Every other read below flushes first.

  // ---- Barrier ----

  // Calls fn(key, state or nullptr, persisted) for every key changed since the
  // last barrier, then marks them unchanged; a key with no state left is
  // forgotten. Flushes.
  Status TakeChanged(const std::function<void(std::string_view key, const std::string* state,
                                              bool persisted)>& fn);
  // Calls fn(key, state) for every key with state.
  Status ForEachKey(const std::function<Status(std::string_view key, std::string_view state)>& fn);
  // Calls fn(key) once for every key the spill store holds anything of.
  Status ForEachSpilledKey(const std::function<void(std::string_view key)>& fn);

  // ---- Timers ----

  // Appends to `out` up to `max` spilled timers at or before `upto`, in
  // order, from the first one after the timer named `after` on (empty: from
  // the first). With fewer than `max`, *next is the time of the first timer
  // after `upto` (kMaxTime if none); with `max`, it is `upto`: there may be
  // more.
  Status DueTimers(int64_t upto, std::string_view after, size_t max, std::vector<SpilledTimer>* out,
                   int64_t* next);

 private:
  StateStore& store_;
  WriteBatch batch_;
};

}  // namespace sluice::engine
