#pragma once

// Task: one job on one Kafka partition, as run by a worker. It owns the
// engine's TaskProcessor, the task's RocksDB state and its checkpoint store,
// and sends what the processor emits to the job's sink topics.
//
// A checkpoint is two-phase (ARCHITECTURE.md, invariant 4):
//   prepare: wait until every record this task produced is acknowledged
//            (any delivery failure fails the checkpoint), then write the
//            changed state to RocksDB;
//   commit:  back the state up to the checkpoint store with the manifest
//            (next offset, watermark, epoch). The checkpoint exists only once
//            this succeeds; the worker then commits the offset to Kafka.
// A task whose checkpoint failed is restarted from its last checkpoint, so
// records whose delivery failed are produced again (with the same ids).
//
// Thread safety: a Task is used by the one task thread that owns it.

#include <memory>
#include <string>

#include "common/clock.h"
#include "common/status.h"
#include "worker/engine/job_plan.h"
#include "worker/engine/record.h"
#include "worker/engine/task_processor.h"
#include "worker/kafka/kafka_client.h"
#include "worker/state/checkpoint_store.h"
#include "worker/state/rocksdb_state_store.h"

namespace sluice::worker {

// What a task needs from its worker.
struct JobContext {
  std::shared_ptr<const engine::JobPlan> plan;
  const Clock* clock = nullptr;
  KafkaProducer* producer = nullptr;
  StateBackend* state = nullptr;
  std::string checkpoint_uri;
  int keep_checkpoints = 3;
};

class Task {
 public:
  // Opens the task's state: the newest checkpoint in the checkpoint store if
  // there is one (the local state is replaced by it), else empty state.
  // `epoch` fences stale owners: a checkpoint store refuses a checkpoint older
  // than its newest one's epoch.
  static Result<std::unique_ptr<Task>> Open(const JobContext& job, int32_t partition,
                                            int64_t epoch, DeliveryTracker* tracker);
  ~Task();

  int32_t partition() const { return partition_; }
  int64_t epoch() const { return epoch_; }
  const std::string& job_name() const { return job_.plan->name(); }
  const std::shared_ptr<const engine::JobPlan>& plan() const { return job_.plan; }
  int64_t last_checkpoint_id() const { return last_checkpoint_id_; }
  DeliveryTracker* tracker() const { return tracker_; }
  const std::string& name() const { return name_; }
  // Where consumption continues: the offset after the checkpoint, or -1 (the
  // beginning of the partition) for a new task.
  int64_t next_offset() const { return processor_->next_offset(); }
  const engine::TaskProcessor& processor() const { return *processor_; }

  void Process(std::span<const engine::SourceRecord> records) { processor_->ProcessBatch(records); }
  void OnProcessingTime() { processor_->OnProcessingTime(); }
  void Drain() { processor_->Drain(); }

  bool CheckpointDue(int64_t now_ms) const;
  // Prepare and commit one checkpoint. On error nothing was committed.
  Status Checkpoint(int64_t now_ms, int flush_timeout_ms);
  int64_t last_checkpoint_ms() const { return last_checkpoint_ms_; }

  // Switches to an updated plan of the same job (rules, thresholds, filters
  // changed; the state layout the same): checkpoints, then continues from that
  // state under the new plan.
  Status SwapPlan(std::shared_ptr<const engine::JobPlan> plan, int64_t now_ms,
                  int flush_timeout_ms);

 private:
  // Sends the processor's records to the job's sink topics.
  class Sink final : public engine::RecordSink {
   public:
    Sink(const JobContext& job, DeliveryTracker* tracker);
    void Emit(engine::OutputStream stream, std::string_view key, std::string_view value) override;
    const Status& error() const { return error_; }

   private:
    KafkaProducer* producer_;
    DeliveryTracker* tracker_;
    std::string topics_[3];
    Status error_;
  };

  Task(const JobContext& job, int32_t partition, int64_t epoch, DeliveryTracker* tracker);

  JobContext job_;
  int32_t partition_;
  int64_t epoch_;
  std::string name_;
  DeliveryTracker* tracker_;
  Sink sink_;
  std::unique_ptr<RocksDbStateStore> store_;
  std::unique_ptr<CheckpointStore> checkpoints_;
  std::unique_ptr<engine::TaskProcessor> processor_;
  int64_t last_checkpoint_ms_ = 0;
  int64_t last_checkpoint_id_ = 0;
};

}  // namespace sluice::worker
