#pragma once

// Kafka transactions for exactly-once output (delivery: exactly_once).
//
//   TransactionalProducer  one per task, with a transactional.id derived from
//                          (job, partition): the task's next owner runs
//                          init_transactions with the same id, which aborts
//                          the old owner's open transaction and makes its
//                          later produce and commit fail (fencing).
//   ReadLastRecord         the last committed record of one key in one
//                          partition (read_committed): how a restoring task
//                          finds the marker of its last committed transaction.
//   EnsureTopic            creates a topic through the admin API if missing.
//
// The protocol built on these is in worker/task.h.

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "common/status.h"
#include "kafka/kafka_client.h"
#include "kafka/topic_handles.h"

struct rd_kafka_s;
struct rd_kafka_topic_s;

namespace sluice::kafka {

// How a transactional call failed.
enum class TxnFailure {
  kNone,
  kFenced,  // a newer producer with the same transactional.id exists: stop for good
  kAbort,   // the transaction cannot commit: abort it, retry from the last checkpoint
  // The commit did not finish in time and may still complete: restart; the
  // next producer's init_transactions waits for the outcome, and the last
  // committed marker says what it was.
  kUnknown,
};

struct TxnStatus {
  Status status;
  TxnFailure failure = TxnFailure::kNone;
  bool ok() const { return status.ok(); }
};

class TransactionalProducer {
 public:
  // Creates the producer and runs init_transactions, waiting up to
  // `timeout_ms`: a broker without a usable transaction log (too few brokers
  // for transaction.state.log.replication.factor, say) fails here with
  // Unavailable and says so, instead of hanging.
  static Result<std::unique_ptr<TransactionalProducer>> Create(
      const std::string& brokers, const std::string& transactional_id,
      const std::map<std::string, std::string>& extra, int timeout_ms);
  // Aborts an open transaction (best effort, briefly) and closes.
  ~TransactionalProducer();

  const std::string& transactional_id() const { return id_; }

  TxnStatus Begin();
  // The handle of `name`, created on first use; valid while the producer is.
  rd_kafka_topic_s* Topic(const std::string& name);
  // Queues one record in the open transaction; `partition` < 0: by key (as
  // Kafka's Java clients). Blocks while the queue is full. Fails at once if
  // librdkafka refuses the record (too large; the producer fenced).
  TxnStatus Produce(rd_kafka_topic_s* topic, int32_t partition, std::string_view key,
                    std::string_view value);
  // Flushes and commits the open transaction, retrying what librdkafka calls
  // retriable until `timeout_ms` has passed (then kUnknown). Any record that
  // failed delivery fails the commit (kAbort).
  TxnStatus Commit(int timeout_ms);
  // Waits until every record queued so far is acknowledged, up to
  // `timeout_ms`. kFenced if the broker has fenced this producer meanwhile (a
  // zombie finds out here, before it writes a checkpoint).
  TxnStatus Flush(int timeout_ms);
  TxnStatus Abort(int timeout_ms);
  bool in_transaction() const { return in_transaction_; }

  // Records queued or in flight.
  int64_t OutstandingRecords() const;

  // The producer's message.max.bytes (see KafkaProducer::max_message_bytes).
  int64_t max_message_bytes() const { return max_message_bytes_; }

  // Records the broker refused for good in their delivery reports (which
  // makes the open transaction abort), since the last call; each with at most
  // `prefix_bytes` of its value.
  std::vector<RefusedRecord> TakeRefused();
  void set_refused_prefix_bytes(int64_t n) { refused_prefix_bytes_ = n; }

 private:
  TransactionalProducer() = default;
  // commit_transaction or abort_transaction, retried while retriable.
  TxnStatus End(bool commit, int timeout_ms);

  rd_kafka_s* rk_ = nullptr;
  int64_t max_message_bytes_ = 0;
  std::atomic<int64_t> refused_prefix_bytes_{64 << 10};
  std::mutex refused_mu_;
  std::vector<RefusedRecord> refused_;  // guarded by refused_mu_

  // Delivery reports: notes the records refused for good.
  static void OnDelivery(rd_kafka_s* rk, const rd_kafka_message_s* msg, void* opaque);
  std::string id_;
  bool in_transaction_ = false;
  TopicHandles topics_;
  std::atomic<bool> stop_{false};
  std::thread poller_;  // serves delivery reports
};

// The value of the last committed record with `key` in `topic`/`partition`
// (read_committed, from the start of the partition to its end as of the
// call), or nullopt if there is none. NotFound if the topic does not exist.
// Waits for transactions of other producers that are still open on the
// partition to end, up to `timeout_ms`.
Result<std::optional<std::string>> ReadLastRecord(const std::string& brokers,
                                                  const std::string& topic, int32_t partition,
                                                  std::string_view key,
                                                  const std::map<std::string, std::string>& extra,
                                                  int timeout_ms);

// What EnsureTopic found.
struct TopicInfo {
  int32_t partitions = 0;
  // False for a broker without the admin API (librdkafka's mock, which
  // creates a topic with its default partition count on first use).
  bool created_by_admin = true;
};

// Creates `topic` with `partitions` partitions (the broker's default
// replication) and `configs` if it does not exist, and returns what it has
// (an existing topic's partition count may differ).
Result<TopicInfo> EnsureTopic(const std::string& brokers, const std::string& topic,
                              int32_t partitions, const std::map<std::string, std::string>& configs,
                              const std::map<std::string, std::string>& extra, int timeout_ms);

}  // namespace sluice::kafka
