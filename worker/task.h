#pragma once

// Task: one job on one Kafka partition, as run by a worker. It owns the
// engine's TaskProcessor, the task's sink (TaskSink), its state and
// checkpoints (a CheckpointTarget), under exactly_once its Transaction, and
// its Checkpointer, which takes checkpoints phase by phase (checkpointer.h).
// What it reads, writes and persists comes from a WorkerIo (io.h).
//
// Thread safety: a Task is used by the one task thread that owns it; a
// checkpoint's commit runs on the background executor (checkpointer.h).

#include <algorithm>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>

#include "common/clock.h"
#include "common/status.h"
#include "kafka/kafka_client.h"
#include "worker/checkpointer.h"
#include "worker/engine/job_plan.h"
#include "worker/engine/record.h"
#include "worker/engine/task_processor.h"
#include "worker/exactly_once.h"
#include "worker/io.h"
#include "worker/task_sink.h"

namespace sluice::worker {

// What a task needs from its worker.
struct JobContext {
  std::shared_ptr<const engine::JobPlan> plan;
  const Clock* clock = nullptr;
  WorkerIo* io = nullptr;
  // Where checkpoint commits run; empty: on the task thread, synchronously.
  BackgroundExecutor background;
  // exactly_once: for reading the last marker, and each commit.
  int transaction_timeout_ms = 30'000;
  // The task's share of the worker's state memory budget; 0: none.
  size_t state_memory_bytes = 0;
};

class Task {
 public:
  // Opens the task's state: the newest checkpoint in the checkpoint store if
  // there is one (the local state is replaced by it), else empty state.
  // `epoch` fences stale owners: a checkpoint store refuses a checkpoint older
  // than its newest one's epoch.
  // `start_offset`: where a task without a checkpoint starts (the
  // coordinator's Assignment.start_offset); < 0: the partition's beginning.
  static Result<std::unique_ptr<Task>> Open(const JobContext& job, int32_t partition, int64_t epoch,
                                            TaskDeliveries* deliveries, int64_t start_offset = -1);
  ~Task();

  int32_t partition() const { return partition_; }
  int64_t epoch() const { return epoch_; }
  const std::string& job_name() const { return job_.plan->name(); }
  const std::shared_ptr<const engine::JobPlan>& plan() const { return job_.plan; }
  int64_t last_checkpoint_id() const { return last_checkpoint_id_; }
  TaskDeliveries* deliveries() const { return deliveries_; }
  // Records produced and not yet acknowledged, in both generations.
  int64_t in_flight() const;
  const std::string& name() const { return name_; }
  // The offset after the last record processed (or after the checkpoint), or
  // -1 if there is none.
  int64_t next_offset() const { return processor_->next_offset(); }
  // Where consumption continues: next_offset(), but never below the start
  // offset of a task without a checkpoint, nor below the log start the task
  // skipped to after a loss. -1: the beginning of the partition.
  int64_t fetch_offset() const { return std::max(processor_->next_offset(), floor_); }

  // The partition's log start has passed fetch_offset(): records
  // [fetch_offset(), log_start) were deleted before they were read. Counts
  // them as lost (those not counted already: a restart may run into the same
  // gap again), logs it, and moves fetch_offset() to `log_start`. A task
  // reading from the beginning (fetch_offset() -1) loses nothing: the
  // beginning is wherever the log starts. Returns how many were newly
  // counted.
  int64_t SkipLost(int64_t log_start);
  const LostRecords& lost() const { return carry_.lost; }
  int64_t refused_outputs() const { return carry_.refused_outputs; }
  const TaskCarry& carry() const { return carry_; }
  // Carried over from the run before a restart.
  void set_carry(const TaskCarry& c) { carry_ = c; }
  const engine::TaskProcessor& processor() const { return *processor_; }
  bool exactly_once() const { return txn_ != nullptr; }
  // exactly_once: a newer owner has fenced this task's producer.
  bool fenced() const {
    return txn_ != nullptr && txn_->error().failure == kafka::TxnFailure::kFenced;
  }
  const TransactionCounters& transactions() const { return txn_counters_; }
  // Carried over from the run before a restart.
  void set_transactions(const TransactionCounters& c) { txn_counters_ = c; }

  void Process(std::span<const engine::SourceRecord> records);
  void OnProcessingTime() { processor_->OnProcessingTime(); }
  void Drain() { processor_->Drain(); }

  // Whether the checkpoint interval has passed and no checkpoint is in flight.
  bool CheckpointDue(int64_t now_ms) const;
  // The barrier of a checkpoint; its commit runs on the background executor.
  // `may_commit` is asked just before the backup (fencing: the task may have
  // moved meanwhile). An error here means no checkpoint was started.
  Status BeginCheckpoint(int64_t now_ms, int flush_timeout_ms,
                         std::function<bool()> may_commit = {});
  // Encodes more of the open snapshot, for up to `budget_us` (at least one
  // step); once it is complete, hands the commit to the background executor.
  void AdvanceCheckpoint(int64_t budget_us);
  // Whether a snapshot is being encoded (AdvanceCheckpoint has work to do).
  bool snapshotting() const { return checkpointer_->encoding(); }
  // The outcome of the checkpoint in flight, once it has finished (once).
  std::optional<CheckpointOutcome> PollCheckpoint();
  // A whole checkpoint, synchronously (after the one in flight, if any). On
  // error nothing was committed.
  Status Checkpoint(int64_t now_ms, int flush_timeout_ms);
  int64_t last_checkpoint_ms() const { return last_checkpoint_ms_; }
  // When the last checkpoint that completed (or the one restored) was taken;
  // 0 if none.
  int64_t last_completed_checkpoint_ms() const { return last_completed_ms_; }
  // The offset of the last committed checkpoint (what the worker commits to
  // Kafka), or -1.
  int64_t committed_offset() const { return committed_offset_; }

  // Switches to an updated plan of the same job (rules, thresholds, filters
  // changed; the state layout the same): checkpoints, then continues from that
  // state under the new plan.
  Status SwapPlan(std::shared_ptr<const engine::JobPlan> plan, int64_t now_ms,
                  int flush_timeout_ms);

 private:
  // Gives `processor` a fresh spill store and the task's state memory budget,
  // if it has one.
  Status OpenSpill(engine::TaskProcessor& processor);
  Task(const JobContext& job, int32_t partition, int64_t epoch, TaskDeliveries* deliveries);
  // On the task thread, once a commit has ended; exactly_once begins the next
  // transaction here (a failure to do so fails `outcome`).
  void Finished(CheckpointOutcome& outcome);
  // exactly_once: restores the checkpoint the last committed marker names.
  Status RestoreCommitted(std::optional<CheckpointMeta>* restored);
  // Waits for the checkpoint in flight, if any, and returns its outcome.
  std::optional<CheckpointOutcome> WaitInFlight();

  JobContext job_;
  int32_t partition_;
  int64_t epoch_;
  // fetch_offset() never goes below this (-1: no floor).
  int64_t floor_ = -1;
  TaskCarry carry_;
  // The position at the last barrier (the start of the sealed generation's
  // source offsets).
  int64_t barrier_offset_ = -1;
  std::string name_;
  TaskDeliveries* deliveries_;
  std::unique_ptr<CheckpointTarget> checkpoints_;
  engine::StateStore* store_ = nullptr;  // checkpoints_'s local state
  std::unique_ptr<Transaction> txn_;     // exactly_once only
  TaskSink sink_;
  std::unique_ptr<engine::TaskProcessor> processor_;
  TransactionCounters txn_counters_;
  // A commit waited for because too much output was held (exactly_once),
  // for the next PollCheckpoint.
  std::optional<CheckpointOutcome> waited_;
  int64_t last_checkpoint_ms_ = 0;  // of the last barrier
  int64_t last_completed_ms_ = 0;
  int64_t last_checkpoint_id_ = 0;
  // Opened without a checkpoint: the local state started empty (wiped).
  bool started_empty_ = false;
  int64_t committed_offset_ = -1;
  // Last: destroyed first, it cancels and waits for a commit in flight,
  // which uses the members above.
  std::unique_ptr<Checkpointer> checkpointer_;
};

}  // namespace sluice::worker
