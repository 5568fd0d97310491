#pragma once

// The seams of the worker: what a task reads, writes and persists, as small
// interfaces. The Kafka and RocksDB implementations are constructed in one
// place (adapters.h); worker/testing.h has in-memory fakes, so TaskHost, the
// checkpointer and the coordinator client are tested without a broker or a
// disk.
//
//   Source            one job's partitions on one task thread: assign (which
//                     is also seek), poll, pause, commit offsets, ends
//   OutputSink        where at_least_once output goes, with a delivery
//                     barrier: each record counts in a generation
//                     (kafka::DeliveryTracker) that a checkpoint seals and
//                     waits for until the broker has acknowledged it
//   Transaction       exactly_once output: one transaction per checkpoint
//                     interval, committed with a marker naming the checkpoint
//   CheckpointTarget  one task's local state and its durable checkpoints:
//                     restore, list, write, save
//   CommitFence       may this task (under this epoch) still commit?
//   WorkerIo          opens the above for the tasks of one worker
//
// Thread safety: a Source is used by its task thread; an OutputSink by every
// task thread and the checkpoint commits at once; a Transaction and a
// CheckpointTarget by their task's thread and, while a checkpoint commits,
// by the commit (the task does not touch them meanwhile, see
// checkpointer.h); a CommitFence from any thread.

#include <compare>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "common/write_batch.h"
#include "kafka/kafka_client.h"
#include "kafka/transactions.h"
#include "worker/engine/record.h"
#include "worker/engine/state_store.h"
#include "worker/state/checkpoint_meta.h"

namespace sluice::engine {
class JobPlan;
}  // namespace sluice::engine

namespace sluice::worker {

// A task: one job on one partition of its source topic.
struct TaskRef {
  std::string job;
  int32_t partition = 0;
  auto operator<=>(const TaskRef&) const = default;
  bool operator==(const TaskRef&) const = default;
  std::string ToString() const { return job + "-" + std::to_string(partition); }
};

class Source {
 public:
  using Message = kafka::KafkaConsumer::Message;
  virtual ~Source() = default;

  // Replaces the assignment: exactly these partitions of `topic`, each read
  // from its offset (< 0: the beginning). Assigning again is how a partition
  // is moved (seek).
  virtual Status Assign(const std::string& topic,
                        std::span<const kafka::PartitionOffset> partitions) = 0;
  // Waits up to `timeout_ms` and returns up to `max` records, in offset order
  // per partition, valid until the next Poll.
  virtual std::span<const Message> Poll(int timeout_ms, size_t max) = 0;
  // Partitions whose offset was out of range in the last Poll (the records
  // were deleted, or the partition is shorter): they are not read again
  // until assigned again.
  virtual std::span<const kafka::PartitionOffset> OutOfRange() const = 0;
  virtual Status Pause(const std::string& topic, std::span<const int32_t> partitions) = 0;
  virtual Status Resume(const std::string& topic, std::span<const int32_t> partitions) = 0;
  // Records `next_offset` per partition where standard tools see it (lag).
  virtual Status Commit(const std::string& topic,
                        std::span<const kafka::PartitionOffset> offsets) = 0;
  // The partition's log start and end, asked now.
  virtual Result<kafka::LogRange> QueryLogRange(const std::string& topic, int32_t partition,
                                                int timeout_ms) = 0;
  // The partition's end, asked now.
  virtual Result<int64_t> QueryEndOffset(const std::string& topic, int32_t partition,
                                         int timeout_ms) = 0;
  // The partition's end as last seen, or -1.
  virtual int64_t HighWatermark(const std::string& topic, int32_t partition) = 0;
};

// A sink topic, resolved once (no lookup per record).
struct SinkTopic {
  std::string name;
  void* handle = nullptr;  // the implementation's
};

class OutputSink {
 public:
  virtual ~OutputSink() = default;

  virtual SinkTopic Topic(const std::string& name) = 0;
  // Queues one record; it counts in `generation` until acknowledged or
  // failed (or refused for good, which the generation keeps: TakeRefused).
  // An error here is one known at once: InvalidArgument when the record
  // itself is refused (kafka::RecordRefused), else Unavailable.
  virtual Status Produce(const SinkTopic& topic, std::string_view key, std::string_view value,
                         kafka::DeliveryTracker* generation) = 0;
  // How many bytes a record may have at most, framing included.
  virtual int64_t max_message_bytes() const = 0;
  // Records queued and not yet acknowledged, of every generation (back-pressure).
  virtual int64_t Outstanding() const = 0;
  // Waits until every record is acknowledged or failed, up to `timeout_ms`.
  virtual Status Flush(int timeout_ms) = 0;
};

// The output of one exactly_once task (see exactly_once.h for the protocol).
class Transaction {
 public:
  virtual ~Transaction() = default;

  // The checkpoint named by the task's last committed marker, if any.
  virtual Result<std::optional<CheckpointMeta>> LastCommitted(int timeout_ms) = 0;
  // Begins the first transaction (after the restore).
  virtual kafka::TxnStatus Begin() = 0;
  // Into the open transaction, or held while the sealed one commits. A
  // failure is kept in error() and fails the next commit.
  virtual void Emit(engine::OutputStream stream, std::string_view key, std::string_view value) = 0;
  // The barrier: records from now on are held until Resume.
  virtual void Seal() = 0;
  virtual size_t held_bytes() const = 0;
  virtual const kafka::TxnStatus& error() const = 0;
  // Whether a record went into the open transaction.
  virtual bool produced() const = 0;
  // The commit, before the checkpoint is saved: waits until the sealed
  // transaction's records are acknowledged (a fenced owner learns it here).
  virtual kafka::TxnStatus Flush(int timeout_ms) = 0;
  // The commit, after the checkpoint is saved: the marker naming `saved`,
  // then the transaction's commit. On kAbort it has been aborted.
  virtual kafka::TxnStatus Commit(const CheckpointMeta& saved, int timeout_ms) = 0;
  // Task thread, after a commit: begins the next transaction with the held
  // records.
  virtual kafka::TxnStatus Resume() = 0;
  virtual int64_t max_message_bytes() const = 0;
  // Records the broker refused for good since the last call: their
  // transaction cannot commit.
  virtual std::vector<kafka::RefusedRecord> TakeRefused() = 0;
  virtual void set_refused_prefix_bytes(int64_t n) = 0;
};

class CheckpointTarget {
 public:
  virtual ~CheckpointTarget() = default;

  // Every checkpoint that restores, newest first.
  virtual Result<std::vector<CheckpointMeta>> List() = 0;
  // Replaces the local state (which must not be open) by checkpoint `id`,
  // or by the newest that restores when nullopt (falling back to older ones
  // when a newer one fails its checksums). Returns the one restored;
  // NotFound if there is none.
  virtual Result<CheckpointMeta> Restore(std::optional<int64_t> id) = 0;
  // Deletes the checkpoints newer than `id` (exactly_once: those whose
  // transaction never committed).
  virtual Status DeleteNewerThan(int64_t id) = 0;
  // Opens the local state the engine reads and writes: as restored, or empty
  // when `wipe`. Valid while this target is.
  virtual Result<engine::StateStore*> OpenState(bool wipe) = 0;
  // Opens, empty, the scratch store where the engine keeps keys beyond its
  // state memory budget (engine/state_spill.h); nullptr if this target has
  // none. Valid while this target is; opening it again empties it.
  virtual Result<engine::StateStore*> OpenSpill() {
    return static_cast<engine::StateStore*>(nullptr);
  }
  // The commit: saves the checkpoint whose changes since the last one are
  // `changes`, already written to the local state; `meta` gets its id.
  // `protect_id` (> 0) is never purged; `started_empty`: the local state
  // started empty (no checkpoint before), so a delta builds on nothing.
  virtual Result<CheckpointMeta> Save(const WriteBatch& changes, const CheckpointMeta& meta,
                                      int64_t protect_id, bool started_empty) = 0;
  // Where the checkpoints are, for messages.
  virtual std::string where() const = 0;
};

class CommitFence {
 public:
  virtual ~CommitFence() = default;
  // Whether `task` under `epoch` may still write a checkpoint now.
  virtual bool MayCommit(const TaskRef& task, int64_t epoch) const = 0;
};

class WorkerIo {
 public:
  virtual ~WorkerIo() = default;

  // The source of one job's partitions on one task thread (committing to
  // the group "sluice-<job>"). A partition whose offset is out of range is
  // reported, never moved silently.
  virtual Result<std::unique_ptr<Source>> OpenSource(const std::string& job) = 0;
  // The at_least_once output of every task.
  virtual OutputSink& sink() = 0;
  // One task's state and checkpoints; `task_name` names its local state.
  virtual Result<std::unique_ptr<CheckpointTarget>> OpenCheckpoints(
      const std::string& job, int32_t partition, const std::string& task_name) = 0;
  // An exactly_once task's transactional output; fences every earlier owner
  // of (job, partition).
  virtual Result<std::unique_ptr<Transaction>> OpenTransaction(const engine::JobPlan& plan,
                                                               int32_t partition,
                                                               const std::string& task_name) = 0;
};

}  // namespace sluice::worker
