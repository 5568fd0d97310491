#pragma once

// The output of one task under delivery: exactly_once: a Kafka transaction per
// checkpoint interval, committed only after its checkpoint is durable.
//
// The protocol, for checkpoint n of task (job, partition):
//   - The task's producer has transactional.id "sluice-<job>-<partition>".
//     Opening the task runs init_transactions, which fences every earlier
//     owner: Kafka aborts its open transaction, and its later produce and
//     commit fail (it then stops without a checkpoint).
//   - Transaction n holds every record the task emitted between barriers n-1
//     and n (results, alerts, late records, dead letters).
//   - At barrier n the transaction is sealed: records emitted from then on are
//     held in memory (bounded; past the bound the task waits) until n commits.
//   - In the background: the checkpoint is saved to the checkpoint store; then
//     a marker record naming it (task, epoch, checkpoint id, next offset) is
//     written in the same transaction to partition `partition` of the job's
//     compacted marker topic; then the transaction commits.
//   - Then, on the task thread, transaction n+1 begins and the held records go
//     into it.
//   - Restoring, after init_transactions: the last committed marker of the
//     task (read_committed) names the checkpoint to restore; the checkpoints
//     after it never committed and are deleted. Replay from its offset
//     re-creates the output of any aborted transaction with the same ids.
//
// Neither send_offsets_to_transaction nor resuming another producer's
// transaction is used: the input offset lives in the checkpoint.
//
// On librdkafka's mock (sluice-devbroker) transactions commit but neither
// fence nor abort: aborted records stay visible, so output is at-least-once
// there (with the same ids), and a second owner is not stopped by Kafka.
//
// Thread safety: the task thread calls Emit, Seal and Resume; the
// background executor calls Commit and Abort, between Seal and Resume only.

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "kafka/transactions.h"
#include "proto/sluice.pb.h"
#include "worker/engine/record.h"
#include "worker/io.h"
#include "worker/state/checkpoint_store.h"

namespace sluice::worker {

// Where a job's markers go, resolved once per job by the worker.
struct MarkerTopic {
  std::string name;
  int32_t partitions = 0;
  // False on a broker without the admin API (librdkafka's mock): tasks then
  // share marker partitions (partition % partitions), which is safe there
  // because the mock has no open-transaction bound on reads.
  bool dedicated = true;
};

// Creates the job's marker topic if missing (compacted, one partition per
// source partition) and says how tasks use it.
Result<MarkerTopic> ResolveMarkerTopic(const std::string& brokers, const proto::JobSpec& spec,
                                       int32_t source_partitions,
                                       const std::map<std::string, std::string>& kafka_settings);

// Per task, kept across its restarts by the worker.
struct TransactionCounters {
  int64_t committed = 0;
  int64_t aborted = 0;
  int64_t last_commit_ms = 0;
  int64_t commit_ms_total = 0;
  int64_t last_committed_checkpoint = 0;
};

class TransactionalOutput final : public Transaction {
 public:
  // Records held while the previous transaction commits, at most.
  static constexpr size_t kMaxHeldBytes = 64 << 20;

  // Starts the task's transactional producer (fencing earlier owners).
  static Result<std::unique_ptr<TransactionalOutput>> Open(
      const std::string& brokers, const std::map<std::string, std::string>& kafka_settings,
      const proto::JobSpec& spec, const MarkerTopic& markers, int32_t partition,
      const std::string& task_name, int timeout_ms);

  static std::string TransactionalId(const std::string& job, int32_t partition);

  // The checkpoint named by the task's last committed marker, if any.
  Result<std::optional<CheckpointMeta>> LastCommitted(int timeout_ms) override;

  // Begins the first transaction (after the restore).
  kafka::TxnStatus Begin() override;

  // Into the open transaction, or held while the previous one commits. A
  // failure is kept in error() and fails the next commit.
  void Emit(engine::OutputStream stream, std::string_view key, std::string_view value) override;
  // The barrier: records from now on are held.
  void Seal() override { sealed_ = true; }
  bool sealed() const { return sealed_; }
  size_t held_bytes() const override { return held_.size(); }
  const kafka::TxnStatus& error() const override { return error_; }
  // Whether a record was emitted into the open transaction (for the
  // after_produce fault point).
  bool produced() const override { return produced_; }

  // Background, before the checkpoint is saved: waits for the sealed
  // transaction's records (a fenced producer learns it here).
  kafka::TxnStatus Flush(int timeout_ms) override;
  // Background: writes the marker naming `saved` and commits the sealed
  // transaction. On kAbort the transaction has been aborted.
  kafka::TxnStatus Commit(const CheckpointMeta& saved, int timeout_ms) override;
  // Background: aborts the sealed transaction (its checkpoint failed).
  kafka::TxnStatus Abort(int timeout_ms);

  // Task thread, after Commit succeeded: begins the next transaction and
  // sends the held records into it.
  kafka::TxnStatus Resume() override;

  int32_t marker_partition() const { return marker_partition_; }
  // The transactional producer's message.max.bytes.
  int64_t max_message_bytes() const override { return producer_->max_message_bytes(); }
  // Records the broker refused for good since the last call (any thread):
  // their transaction cannot commit.
  std::vector<kafka::RefusedRecord> TakeRefused() override { return producer_->TakeRefused(); }
  void set_refused_prefix_bytes(int64_t n) override { producer_->set_refused_prefix_bytes(n); }

 private:
  struct Held {
    engine::OutputStream stream;
    uint32_t key_size;
    uint32_t value_size;
  };

  TransactionalOutput() = default;
  void Send(engine::OutputStream stream, std::string_view key, std::string_view value);

  std::unique_ptr<kafka::TransactionalProducer> producer_;
  std::string brokers_;
  std::map<std::string, std::string> kafka_settings_;
  std::string task_name_;
  std::string marker_topic_name_;
  rd_kafka_topic_s* topics_[3] = {};  // by engine::OutputStream
  rd_kafka_topic_s* marker_topic_ = nullptr;
  int32_t marker_partition_ = 0;
  bool sealed_ = false;
  bool produced_ = false;
  std::vector<Held> held_records_;
  std::string held_;  // keys and values of held_records_, back to back
  kafka::TxnStatus error_;
};

}  // namespace sluice::worker
