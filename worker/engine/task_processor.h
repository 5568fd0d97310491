#pragma once

// TaskProcessor: runs one job on one Kafka partition (a task). It is the data
// path of Sluice, free of I/O: records come in through ProcessBatch, results
// leave through a RecordSink, time comes from a Clock, and state is written to
// and restored from a StateStore at checkpoints.
//
// The path of one event:
//   decode (EventDecoder) ─ bad ──────────────────────────► dead letter
//     │ judge lateness against the watermark left by the events before it
//     ├─ filter (false: counted, no state change)
//     ├─ rule job:   rules without a window alert now; rolling rules queue the
//     │              event until the watermark reaches its time, then see it
//     │              in (time, offset) order                 ► output (alerts)
//     └─ window job: add to its tumbling / sliding / session windows; a window
//                    fires when the watermark reaches end - 1 ► output (results)
//     late events ──────────────────────────────────────────► late
//   then: watermark = max event time - max_out_of_orderness - 1 ms, and
//   everything due at the new watermark fires, in (time, key, window) order.
//
// TaskProcessor is the driver; the parts it drives have files of their own:
// window assignment (window_assigner.h), the windows per key
// (window_operator.h), rolling rules and the queue of rule events
// (rolling_rules.h), what it keeps per key (key_state.h), the store layout
// and encoding (state_codec.h), late records and dead letters
// (side_output_writer.h), window results and alerts (result_writer.h).
//
// Invariants:
//   - counters: consumed = processed + late + dead_lettered.
//   - Output depends only on the records and their order (and, for idle
//     advance and max_future/max_past, on the Clock): a task restored from a
//     checkpoint and fed the records after it emits the same bytes as one that
//     never stopped.
//
// Thread safety: one thread owns a TaskProcessor.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "common/clock.h"
#include "common/status.h"
#include "worker/engine/job_plan.h"
#include "worker/engine/record.h"
#include "worker/engine/state_store.h"

namespace sluice::engine {

// A task's state in memory against its budget (SetStateMemoryBudget).
struct StateMemoryStats {
  size_t budget_bytes = 0;  // 0: none
  // The estimate the budget is held to: the state in memory, and the
  // checkpoint's batch being built or room for the next (as large as the
  // last, up to half the budget).
  size_t resident_bytes = 0;
  size_t resident_keys = 0;
  size_t spilled_keys = 0;  // keys the spill store holds
  int64_t evicted = 0;      // keys moved out of memory, in all
  int64_t loaded = 0;       // keys read back, in all
};

struct TaskCounters {
  int64_t consumed = 0;
  int64_t processed = 0;  // includes filtered and deduplicated
  int64_t filtered = 0;
  int64_t deduplicated = 0;  // dropped by the job's `dedup` as a repeat
  // Comparisons in the filter, rules or having that met a value of another
  // type (a number compared with a string): false, and counted, so that a
  // producer's type drift shows in /metrics. Zero when source.fields is
  // declared (such an event is a dead letter instead).
  int64_t type_mismatches = 0;
  int64_t late = 0;
  int64_t dead_lettered = 0;
  int64_t window_results = 0;  // emitted window records (final + update)
  int64_t alerts = 0;
  // Records at an offset already processed (a redelivery), skipped; not part
  // of `consumed`.
  int64_t redelivered = 0;
};

class TaskProcessor {
 public:
  TaskProcessor(std::shared_ptr<const JobPlan> plan, const Clock& clock, RecordSink& sink);
  ~TaskProcessor();
  TaskProcessor(const TaskProcessor&) = delete;
  TaskProcessor& operator=(const TaskProcessor&) = delete;

  // Processes records of this task's partition, in offset order. Reads the
  // clock once per batch.
  void ProcessBatch(std::span<const SourceRecord> records);

  // Lets the watermark advance with processing time when the task has seen no
  // event for idle_timeout. Call periodically (the worker: every second).
  void OnProcessingTime();

  // Moves the watermark to the end of time: every open window and queued rule
  // evaluation fires. For `stop --drain` and bounded replays.
  void Drain();

  // Writes what changed since the last checkpoint (or everything, the first
  // time) to `store` in one atomic batch: Snapshot, then store.Write.
  Status Checkpoint(StateStore& store);
  // The first half of Checkpoint: puts into `batch` what changed since the
  // last snapshot (the first time: everything, and deletes of whatever else
  // `store` holds). The state counts as written once this returns: the caller
  // must apply `batch` to `store` (possibly on another thread; the task may
  // go on processing meanwhile) before the next snapshot or Restore. If that
  // fails, the task must restart from its last checkpoint.
  Status Snapshot(const StateStore& store, WriteBatch* batch);

  // The same in steps, so that a large snapshot does not stall the task:
  // BeginSnapshot is the barrier (the position, the watermark and the set of
  // changed keys are taken there); SnapshotStep writes up to `max_keys` of
  // those keys and returns true once all are written; TakeSnapshot hands the
  // batch over. Between the calls the task may go on processing: a key of the
  // snapshot that is about to change is written first, as it was at the
  // barrier (copy on write), so the batch is the state at the barrier.
  Status BeginSnapshot(const StateStore& store);
  bool SnapshotStep(size_t max_keys);
  void TakeSnapshot(WriteBatch* batch);
  bool snapshot_open() const;
  // Loads the task's state from `store`. Call before the first ProcessBatch.
  Status Restore(const StateStore& store);

  // Holds the task's state in memory to about `budget_bytes` (0: no bound):
  // beyond it, keys that were not used lately move to `spill` with their
  // timers, and are read back at their next event or due timer
  // (state_spill.h). `spill` must be empty and outlive the processor; the
  // estimate counts keys, windows, timers, dedup values and rolling-rule
  // events, not the values of count_distinct or new_value, and the
  // checkpoint's batch (StateMemoryStats::resident_bytes).
  // Call before Restore and the first batch; SetStateMemoryBudget may
  // change the budget later. Output does not depend on the budget.
  void SetStateSpill(StateStore* spill, size_t budget_bytes);
  void SetStateMemoryBudget(size_t budget_bytes);
  StateMemoryStats state_memory() const;
  // OK, or the first error of the spill store: the task's output from then
  // on is not to be trusted, and it must restart from its last checkpoint.
  const Status& status() const;

  int64_t watermark() const;
  // The position of the record being processed: while a RecordSink::Emit
  // runs, the record whose processing emitted (for timers, the record that
  // moved the watermark; for OnProcessingTime and Drain, the last one
  // processed). Its topic view is valid only during ProcessBatch.
  SourcePosition position() const;
  // The offset of the next record to process (last processed + 1), or -1.
  int64_t next_offset() const;
  const TaskCounters& counters() const;
  // Open windows and queued rule evaluations, for metrics.
  size_t open_windows() const;
  size_t queued_rule_events() const;

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace sluice::engine
