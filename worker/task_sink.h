#pragma once

// TaskSink: where a task's engine emits, sending each record to the job's
// sink topics: through the worker's OutputSink (at_least_once, counted in
// the current delivery generation) or into the task's Transaction
// (exactly_once).
//
// A record the sink refuses for good is not produced: a dead letter takes
// its place on the job's dead-letter topic, naming the reason, the sink
// topic and the source position of the record being processed, with a
// bounded prefix of the refused record (source.max_record_bytes, 0: 64 KiB,
// less if the dead letter would not fit). The task goes on. Refused at once:
// larger than the producer's message.max.bytes (checked here, in both
// delivery modes). Refused later, in a delivery report: at_least_once, the
// checkpoint replaces those by dead letters (DeadLetterRefused) before it
// saves; exactly_once, the transaction aborts and the replay after the
// restart dead-letters them (TaskCarry::pending_refusals).
//
// Thread safety: Emit runs on the task thread; DeadLetterRefused on the
// checkpoint's commit (it reads only what does not change after
// construction).

#include <atomic>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/clock.h"
#include "common/status.h"
#include "kafka/kafka_client.h"
#include "worker/engine/job_plan.h"
#include "worker/engine/record.h"
#include "worker/io.h"

namespace sluice::engine {
class TaskProcessor;
}  // namespace sluice::engine

namespace sluice::worker {

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

class TaskSink final : public engine::RecordSink {
 public:
  // `carry` counts refusals; `generation` is where records count first.
  TaskSink(const engine::JobPlan& plan, int32_t partition, std::string task_name,
           const Clock& clock, OutputSink& out, kafka::DeliveryTracker* generation,
           TaskCarry* carry);

  void Emit(engine::OutputStream stream, std::string_view key, std::string_view value) override;

  // The processor whose position a refusal names (set once it exists).
  void set_processor(const engine::TaskProcessor* processor) { processor_ = processor; }
  // Later records count in `generation` (the barrier of a checkpoint).
  void set_generation(kafka::DeliveryTracker* generation) { generation_ = generation; }
  // exactly_once: records go into `txn` instead.
  void set_transactional(Transaction* txn);

  // The first error of a produce that was not a refusal (it fails the next
  // checkpoint).
  const Status& error() const { return error_; }
  int64_t prefix_bytes() const { return prefix_bytes_; }

  // at_least_once, in a checkpoint's commit: replaces the records of the
  // sealed generation that the broker refused for good by dead letters
  // (the task emitted them while it processed offsets [from, to)), and
  // waits until those are acknowledged, until `deadline` or `cancelled`.
  // Sets *refused to how many there were.
  Status DeadLetterRefused(kafka::DeliveryTracker* sealed, int64_t from, int64_t to,
                           std::chrono::steady_clock::time_point deadline,
                           const std::atomic<bool>& cancelled, int64_t* refused);

 private:
  // Produces (or puts into the transaction) one record.
  Status Send(engine::OutputStream stream, std::string_view key, std::string_view value);
  // Replaces a refused record by its dead letter.
  void Refuse(engine::OutputStream stream, std::string_view key, std::string_view value,
              const std::string& why);
  // exactly_once: whether the record is one the broker refused in an aborted
  // transaction (then it is dead-lettered now).
  bool RefusedBefore(engine::OutputStream stream, std::string_view key, std::string_view value);
  const std::string& topic_name(engine::OutputStream stream) const {
    return topics_[static_cast<int>(stream)].name;
  }

  const std::string job_;
  const std::string source_topic_;
  const int32_t partition_;
  const std::string task_name_;
  const Clock& clock_;
  OutputSink& out_;
  kafka::DeliveryTracker* generation_;
  TaskCarry* carry_;
  const engine::TaskProcessor* processor_ = nullptr;
  Transaction* txn_ = nullptr;
  SinkTopic topics_[3];       // by engine::OutputStream
  int64_t max_payload_ = 0;   // key + value, below message.max.bytes
  int64_t prefix_bytes_ = 0;  // of a refused record, in its dead letter
  int64_t last_warn_ms_ = 0;  // refusals are logged at most every 10 s
  int64_t unlogged_ = 0;      // refusals since the last log line
  std::string dead_letter_;   // scratch, reused
  Status error_;
};

}  // namespace sluice::worker
