#pragma once

// Checkpointer: the checkpoints of one task, phase by phase
// (ARCHITECTURE.md, invariant 4). checkpointer.cc reads top to bottom in
// this order:
//
//   1. Begin (the barrier; task thread, between two batches): the processor
//      takes its position and the set of keys changed since the last
//      checkpoint; the records emitted so far are sealed: at_least_once, one
//      delivery generation (the sink counts later records in the other);
//      exactly_once, one transaction (later records are held).
//   2. Encode (steps, task thread, between the next batches): the changed
//      keys are encoded into one WriteBatch, a key about to change first
//      (copy on write), for up to a budget per step. The task thread stalls
//      only for the barrier and the steps. Once complete, the commit is
//      handed to the background executor.
//   3. Commit (background, while the task goes on processing):
//        at_least_once: wait until the sealed generation is acknowledged;
//          records the broker refused for good are replaced by dead letters,
//          which it waits for too; any other delivery failure fails;
//        exactly_once: flush the sealed transaction (a fenced owner fails);
//        write the batch to the local state;
//        ask the fence (the task may have moved meanwhile);
//        save the checkpoint (next offset, watermark, epoch) to the target;
//        exactly_once: the marker and the transaction's commit.
//      The checkpoint exists once the save returns (and, exactly_once, the
//      transaction commits).
//   4. Done or failed (task thread): Poll returns the outcome once. A failed
//      checkpoint restarts the task from its last one (TaskHost), so records
//      whose delivery failed are produced again, with the same ids.
//   Cancel (a stop, as the task closes): the commit stops at its next wait
//      and fails; a snapshot not yet complete is dropped, and the processor
//      is not used again.
//
// At most one checkpoint is in flight. Thread safety: Begin, Encode, Poll,
// Wait and Cancel run on the task thread; the commit touches only the
// target, the transaction, the sealed generation and its own copy of the
// barrier's data.

#include <array>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"
#include "kafka/kafka_client.h"
#include "worker/io.h"
#include "worker/state/checkpoint_meta.h"

namespace sluice::engine {
class TaskProcessor;
}  // namespace sluice::engine

namespace sluice::worker {

class TaskSink;

// Lowers the calling thread's CPU priority (nice +10). For the threads that
// run checkpoint commits: when one and a task thread both want a core, the
// task thread gets it, so a commit does not show up as a pause in processing.
void LowerThreadPriority();

// Runs a piece of work on another thread (in order with the other pieces).
using BackgroundExecutor = std::function<void(std::function<void()>)>;

// The delivery reports of one task's records, in two generations: records
// produced since the last barrier count in the current one; a checkpoint waits
// for the generation its barrier sealed. Owned by the worker, because
// a producer reports deliveries after a task is gone.
using TaskDeliveries = std::array<kafka::DeliveryTracker, 2>;

// How a checkpoint of a task ended.
struct CheckpointOutcome {
  Status status;
  CheckpointMeta meta;  // with checkpoint_id, if status is ok
  // exactly_once:
  bool aborted = false;    // the transaction was aborted
  bool fenced = false;     // a newer owner fenced this task: stop, never restart
  int64_t commit_ms = -1;  // how long the commit took; -1: not reached
  // at_least_once: records the broker refused for good in their delivery
  // reports, replaced by dead letters before the checkpoint was saved.
  int64_t refused = 0;
  // exactly_once, when the checkpoint failed: records the broker refused for
  // good in its transaction (TaskCarry::pending_refusals).
  std::vector<kafka::RefusedRecord> refused_records;
};

class Checkpointer {
 public:
  struct Parts {
    std::string task_name;
    CheckpointTarget* target = nullptr;
    engine::StateStore* state = nullptr;  // the target's local state
    TaskSink* sink = nullptr;
    TaskDeliveries* deliveries = nullptr;
    Transaction* txn = nullptr;  // exactly_once; null: at_least_once
    // Where commits run; empty: on the task thread, when the snapshot is
    // complete.
    BackgroundExecutor background;
    int transaction_timeout_ms = 30'000;
  };
  // What a barrier needs besides the processor.
  struct Barrier {
    CheckpointMeta meta;  // job, partition, epoch, created_ms, transactional
    int flush_timeout_ms = 60'000;
    // Asked just before the save; false fails the checkpoint.
    std::function<bool()> may_commit;
    int64_t protect_id = 0;      // never purged: exactly_once's last committed
    int64_t from_offset = -1;    // the position at the previous barrier
    bool started_empty = false;  // the local state had no checkpoint before
  };

  explicit Checkpointer(Parts parts);
  // Cancels a commit in flight and waits for it.
  ~Checkpointer();
  Checkpointer(const Checkpointer&) = delete;
  Checkpointer& operator=(const Checkpointer&) = delete;

  bool in_flight() const { return in_flight_ != nullptr; }
  // Whether a snapshot is being encoded (Encode has work to do).
  bool encoding() const { return in_flight_ && !in_flight_->posted; }

  // 1. The barrier. An error here means no checkpoint was started.
  Status Begin(engine::TaskProcessor& processor, Barrier barrier);
  // 2. Encodes more of the snapshot, for up to `budget_us` (at least one
  // step); once it is complete, hands the commit over.
  void Encode(engine::TaskProcessor& processor, int64_t budget_us);
  // 4. The outcome of the checkpoint in flight, once it has ended (once).
  std::optional<CheckpointOutcome> Poll();
  // Completes the snapshot if needed and waits for the commit; nullopt if
  // none is in flight.
  std::optional<CheckpointOutcome> Wait(engine::TaskProcessor& processor);
  // Stops the commit in flight at its next wait; it ends failed. A snapshot
  // not complete is dropped (no outcome).
  void Cancel();

 private:
  struct InFlight {
    WriteBatch batch;
    Barrier barrier;
    kafka::DeliveryTracker* sealed = nullptr;  // the generation to wait for
    bool posted = false;  // the snapshot is complete and its commit handed over
    std::atomic<bool> cancelled{false};

    std::mutex mu;
    std::condition_variable cv;
    bool done = false;  // guarded by mu
    CheckpointOutcome outcome;
  };

  // End of 2: the snapshot is complete; hand the commit over (or run it).
  void Post(engine::TaskProcessor& processor, bool inline_commit);
  // 3. The commit (any thread).
  CheckpointOutcome Commit(InFlight& f);
  std::optional<CheckpointOutcome> Take();

  Parts parts_;
  int generation_ = 0;  // the current generation in *parts_.deliveries
  std::shared_ptr<InFlight> in_flight_;
};

}  // namespace sluice::worker
