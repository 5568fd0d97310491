#pragma once

// Task: one job on one Kafka partition, as run by a worker. It owns the
// engine's TaskProcessor, the task's RocksDB state and its checkpoint store,
// and sends what the processor emits to the job's sink topics.
//
// A checkpoint has a barrier and a commit (ARCHITECTURE.md, invariant 4):
//   barrier: on the task thread, between two batches: the processor takes
//            the position and the set of keys changed since the last
//            checkpoint, and the records produced so far are sealed (one
//            delivery generation; under exactly_once, one transaction). Then,
//            in steps between batches (AdvanceCheckpoint), those keys are
//            encoded into a WriteBatch; a key about to change is encoded first
//            (copy on write). The task thread stalls only for the barrier and
//            the steps.
//   commit:  in the background (JobContext::background), while the task goes
//            on processing: at_least_once waits until the sealed generation
//            is acknowledged (records the broker refused for good are
//            replaced by dead letters, which it waits for too; any other
//            delivery failure fails the checkpoint);
//            then the batch is written to RocksDB and the state backed up to
//            the checkpoint store with the manifest (next offset, watermark,
//            epoch). exactly_once then writes the marker and commits the
//            transaction (worker/exactly_once.h). The checkpoint exists
//            only once this succeeds; the worker then commits the offset.
// At most one checkpoint of a task is in flight. A task whose checkpoint
// failed is restarted from its last checkpoint, so records whose delivery
// failed are produced again (with the same ids).
//
// Thread safety: a Task is used by the one task thread that owns it; the
// commit runs on the background executor and touches only the state store,
// the checkpoint store, the transaction and its own copy of the barrier's
// data.

#include <algorithm>
#include <array>
#include <atomic>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "common/clock.h"
#include "common/status.h"
#include "kafka/kafka_client.h"
#include "worker/engine/job_plan.h"
#include "worker/engine/record.h"
#include "worker/engine/task_processor.h"
#include "worker/exactly_once.h"
#include "worker/state/checkpoint_store.h"
#include "worker/state/rocksdb_state_store.h"

namespace sluice::worker {

// Runs a piece of work on another thread (in order with the other pieces).
using BackgroundExecutor = std::function<void(std::function<void()>)>;

// What a task needs from its worker.
struct JobContext {
  std::shared_ptr<const engine::JobPlan> plan;
  const Clock* clock = nullptr;
  kafka::KafkaProducer* producer = nullptr;
  StateBackend* state = nullptr;
  std::string checkpoint_uri;
  CheckpointStoreOptions checkpoints;
  // Where checkpoint commits run; empty: on the task thread, synchronously.
  BackgroundExecutor background;

  // delivery: exactly_once (the producer above is not used then).
  std::string brokers;
  std::map<std::string, std::string> kafka_settings;
  MarkerTopic markers;
  // For init_transactions, reading the last marker, and each commit.
  int transaction_timeout_ms = 30'000;
};

// Lowers the calling thread's CPU priority (nice +10). For the thread that
// runs checkpoint commits: when it and a task thread both want a core, the
// task thread gets it, so a commit does not show up as a pause in processing.
void LowerThreadPriority();

// The delivery reports of one task's records, in two generations: records
// produced since the last barrier count in the current one; a checkpoint waits
// for the generation its barrier sealed. Owned by the worker, because
// librdkafka reports deliveries after a task is gone.
using TaskDeliveries = std::array<kafka::DeliveryTracker, 2>;

// Records deleted (by retention) before the task read them. Counted beside
// `consumed = processed + late + dead_lettered`, never in it.
struct LostRecords {
  int64_t count = 0;
  int64_t from = -1;  // the last gap, [from, to)
  int64_t to = -1;
};

// What a task counts outside its engine state, kept by the worker across the
// task's restarts (a restart replays from the last checkpoint, which does not
// hold these).
struct TaskCarry {
  LostRecords lost;
  // Output records the sink refused for good, replaced by dead letters.
  int64_t refused_outputs = 0;
  // The source offset of the last refusal counted: a replay after a restart
  // refuses the same records again without counting them twice.
  int64_t refused_through = -1;
  // exactly_once: records the broker refused for good in a transaction that
  // then aborted. The replay emits them again, byte for byte: the sink
  // dead-letters them then, instead of aborting again.
  std::vector<kafka::RefusedRecord> pending_refusals;
};

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
  bool snapshotting() const { return in_flight_ && !in_flight_->posted; }
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
  // Sends the processor's records to the job's sink topics.
  //
  // A record the sink refuses for good (larger than the producer's
  // message.max.bytes, which librdkafka would refuse at produce time) is
  // not produced: a dead letter takes its place on the job's dead-letter
  // topic, naming the reason, the sink topic and the source position of the
  // record being processed, with a bounded prefix of the refused record
  // (source.max_record_bytes, 0: 64 KiB, less if the dead letter would not
  // fit). The task goes on. Both delivery modes check the size here, before
  // the record is produced or held for the next transaction. (Records the
  // broker refuses later, in delivery reports, are dead-lettered by the
  // checkpoint: Task::DeadLetterRefused.)
  class Sink final : public engine::RecordSink {
   public:
    Sink(const JobContext& job, Task* task, kafka::DeliveryTracker* tracker);
    void Emit(engine::OutputStream stream, std::string_view key, std::string_view value) override;
    const Status& error() const { return error_; }
    // Later records count in `tracker`.
    void set_tracker(kafka::DeliveryTracker* tracker) { tracker_ = tracker; }
    // exactly_once: records go into `txn` instead.
    void set_transactional(TransactionalOutput* txn);
    rd_kafka_topic_s* topic(engine::OutputStream stream) const {
      return topics_[static_cast<int>(stream)];
    }
    const std::string& topic_name(engine::OutputStream stream) const {
      return topic_names_[static_cast<int>(stream)];
    }
    int64_t prefix_bytes() const { return prefix_bytes_; }
    int64_t max_payload() const { return max_payload_; }

   private:
    // Produces (or holds, exactly_once) one record.
    Status Send(engine::OutputStream stream, std::string_view key, std::string_view value);
    // Replaces a refused record by its dead letter.
    void Refuse(engine::OutputStream stream, std::string_view key, std::string_view value,
                const std::string& why);
    // exactly_once: whether the record is one the broker refused in an aborted
    // transaction (then it is dead-lettered now).
    bool RefusedBefore(engine::OutputStream stream, std::string_view key, std::string_view value);

    Task* task_;
    TransactionalOutput* txn_ = nullptr;
    kafka::KafkaProducer* producer_;
    kafka::DeliveryTracker* tracker_;
    rd_kafka_topic_s* topics_[3];  // by engine::OutputStream
    std::string topic_names_[3];
    int64_t max_payload_ = 0;   // key + value, below message.max.bytes
    int64_t prefix_bytes_ = 0;  // of a refused record, in its dead letter
    int64_t last_warn_ms_ = 0;  // refusals are logged at most every 10 s
    int64_t unlogged_ = 0;      // refusals since the last log line
    std::string dead_letter_;   // scratch, reused
    Status error_;
  };

  // A checkpoint between its barrier and the end of its commit. Shared by the
  // task thread and the background executor.
  struct InFlight {
    engine::WriteBatch batch;
    CheckpointMeta meta;
    kafka::DeliveryTracker* sealed = nullptr;  // the generation to wait for
    int flush_timeout_ms = 0;
    std::function<bool()> may_commit;
    int64_t protect_id = 0;    // exactly_once: the last committed checkpoint
    int64_t from_offset = -1;  // the task's position at the barrier before
    bool posted = false;       // the snapshot is complete and its commit handed over
    std::atomic<bool> cancelled{false};

    std::mutex mu;
    std::condition_variable cv;
    bool done = false;  // guarded by mu
    CheckpointOutcome outcome;
  };

  Task(const JobContext& job, int32_t partition, int64_t epoch, TaskDeliveries* deliveries);
  // The barrier: open a snapshot and seal. Returns the checkpoint to commit.
  Result<std::shared_ptr<InFlight>> Barrier(int64_t now_ms, int flush_timeout_ms,
                                            std::function<bool()> may_commit);
  // Completes the snapshot and hands the commit over (inline: runs it here).
  void Post(bool inline_commit);
  // The commit (any thread).
  CheckpointOutcome Commit(InFlight& f);
  // at_least_once, in the commit: replaces the records of the sealed
  // generation that the broker refused for good by dead letters, and waits
  // for those. Sets out->refused.
  Status DeadLetterRefused(InFlight& f, CheckpointOutcome* out);
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
  int generation_ = 0;  // index of the current generation in *deliveries_
  Sink sink_;
  std::unique_ptr<RocksDbStateStore> store_;
  std::unique_ptr<CheckpointStore> checkpoints_;
  std::unique_ptr<engine::TaskProcessor> processor_;
  std::shared_ptr<InFlight> in_flight_;
  std::unique_ptr<TransactionalOutput> txn_;  // exactly_once only
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
};

}  // namespace sluice::worker
