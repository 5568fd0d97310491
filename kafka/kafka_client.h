#pragma once

// Kafka clients of Sluice (worker, coordinator, tools), over librdkafka. Sluice owns partition
// assignment (the coordinator, or --partitions), so consumers use manual
// assignment and never join a rebalancing group; the group id is used only
// to commit offsets, so lag is visible to standard tools.
//
//   KafkaProducer  one per worker, shared by all task threads: idempotent,
//                  delivery reports counted per task (DeliveryTracker).
//   KafkaConsumer  one per task thread, for the partitions of its tasks.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "common/status.h"
#include "kafka/topic_handles.h"

struct rd_kafka_s;
struct rd_kafka_topic_s;
struct rd_kafka_queue_s;
struct rd_kafka_message_s;

namespace sluice::kafka {

// A record the broker refused for good in its delivery report (larger than
// the topic's max.message.bytes, an invalid record): producing it again can
// never succeed. The whole batch it travelled in is refused with it.
struct RefusedRecord {
  std::string topic;
  std::string error;
  std::string key;
  std::string value_prefix;  // at most DeliveryTracker::refused_prefix_bytes
  int64_t value_bytes = 0;
  uint64_t hash = 0;  // RecordHash of the whole key and value
};

// A hash of a record's key and value (FNV-1a, 64 bits): how a replay that
// emits the same bytes again recognizes a record refused before.
uint64_t RecordHash(std::string_view key, std::string_view value);

// A RefusedRecord of the message `msg` (a const rd_kafka_message_t*), keeping
// at most `prefix_bytes` of its value.
RefusedRecord DescribeRefused(const void* msg, int64_t prefix_bytes);

// Per task: records handed to the producer and not yet acknowledged, and
// deliveries that failed. A checkpoint waits for in_flight to reach 0
// (WaitDrained) and fails if failed > 0; records refused for good (see
// RefusedRecord) are settled without failing, kept for the task to replace
// by dead letters (TakeRefused).
struct DeliveryTracker {
  std::atomic<int64_t> in_flight{0};
  std::atomic<int64_t> delivered{0};
  std::atomic<int64_t> failed{0};
  std::atomic<bool> has_error{false};
  std::string last_error;  // written by the delivery thread before has_error
  // How much of a refused record's value is kept (set before producing).
  std::atomic<int64_t> refused_prefix_bytes{64 << 10};

  void AddRefused(RefusedRecord r) {
    std::lock_guard<std::mutex> lock(mu_);
    refused_.push_back(std::move(r));
  }
  std::vector<RefusedRecord> TakeRefused() {
    std::lock_guard<std::mutex> lock(mu_);
    return std::exchange(refused_, {});
  }

  // One record handed over is settled (delivered or failed for good).
  void Settled() {
    if (in_flight.fetch_sub(1) == 1) Wake();
  }
  // Wakes WaitDrained, e.g. after setting its `stop`.
  void Wake() {
    std::lock_guard<std::mutex> lock(mu_);
    drained_.notify_all();
  }
  // Waits until nothing is in flight (true), or until `stop` is set or
  // `deadline` passes (false).
  bool WaitDrained(std::chrono::steady_clock::time_point deadline, const std::atomic<bool>& stop) {
    std::unique_lock<std::mutex> lock(mu_);
    drained_.wait_until(lock, deadline, [&] { return in_flight.load() == 0 || stop.load(); });
    return in_flight.load() == 0;
  }

 private:
  std::mutex mu_;
  std::condition_variable drained_;
  std::vector<RefusedRecord> refused_;  // guarded by mu_
};

// Whether a delivery report's error refuses the record for good
// (MSG_SIZE_TOO_LARGE, RECORD_LIST_TOO_LARGE, INVALID_RECORD, INVALID_MSG).
bool PermanentRecordError(int err);

class KafkaProducer {
 public:
  // `extra` are librdkafka settings that override the defaults.
  static Result<std::unique_ptr<KafkaProducer>> Create(
      const std::string& brokers, const std::map<std::string, std::string>& extra = {});
  ~KafkaProducer();

  // Queues one record. Blocks (serving delivery reports) while the producer's
  // queue is full. Only an error librdkafka gives at once is returned; later
  // failures are counted in `tracker`. InvalidArgument: librdkafka refused
  // this record for good (RecordRefused: larger than message.max.bytes); any
  // other error is Unavailable.
  Status Produce(const std::string& topic, std::string_view key, std::string_view value,
                 DeliveryTracker* tracker);
  // The same to a topic resolved once with Topic() (no lookup per record).
  Status Produce(rd_kafka_topic_s* topic, std::string_view key, std::string_view value,
                 DeliveryTracker* tracker);
  // The handle of `name`, created on first use; valid while the producer is.
  rd_kafka_topic_s* Topic(const std::string& name);

  // Records queued or in flight, for back-pressure.
  int64_t OutstandingRecords() const;

  // The producer's message.max.bytes: librdkafka refuses a record whose key,
  // value and framing exceed it.
  int64_t max_message_bytes() const { return max_message_bytes_; }

  // Waits until every record is delivered or failed, up to `timeout_ms`.
  Status Flush(int timeout_ms);

 private:
  KafkaProducer() = default;

  rd_kafka_s* rk_ = nullptr;
  int64_t max_message_bytes_ = 0;
  TopicHandles topics_;
  std::atomic<bool> stop_{false};
  std::thread poller_;  // serves delivery reports
};

struct PartitionOffset {
  int32_t partition;
  int64_t offset;  // the next offset to read; < 0: from the beginning
};

// Whether `s` (from a Produce) means the record itself was refused for good:
// producing it again can never succeed.
bool RecordRefused(const Status& s);

// The bytes a record may take, key and value together, below a producer's
// message.max.bytes: librdkafka counts the record's framing (at most about 40
// bytes, headers aside) against the limit too.
inline int64_t MaxRecordPayload(int64_t max_message_bytes) { return max_message_bytes - 128; }

// A partition's log start (the first offset not deleted by retention) and
// end (the high watermark).
struct LogRange {
  int64_t start = -1;
  int64_t end = -1;
};

class KafkaConsumer {
 public:
  static Result<std::unique_ptr<KafkaConsumer>> Create(
      const std::string& brokers, const std::string& group_id,
      const std::map<std::string, std::string>& extra = {});
  ~KafkaConsumer();

  // Reads the number of partitions of `topic`, waiting up to timeout_ms.
  Result<int32_t> PartitionCount(const std::string& topic, int timeout_ms);

  // Replaces the assignment: exactly these partitions, from these offsets.
  Status Assign(const std::string& topic, std::span<const PartitionOffset> partitions);

  // One consumed message, valid until the next Poll.
  struct Message {
    int32_t partition;
    int64_t offset;
    std::string_view key;
    std::string_view payload;
    int64_t timestamp_ms;  // the record's Kafka timestamp; -1 if it has none
  };
  // Waits up to timeout_ms for messages and returns up to `max` of them, in
  // offset order per partition. Errors that librdkafka recovers from by itself
  // (a broker down, for instance) are logged, not returned.
  std::span<const Message> Poll(int timeout_ms, size_t max);

  // The partitions whose fetch offset was out of range during the last Poll
  // (with the offset asked for), once each. Only a consumer created with
  // auto.offset.reset=error reports them: librdkafka then stops fetching such
  // a partition, and the caller decides where it goes on (Assign again).
  // Typically the records were deleted by retention before they were read.
  std::span<const PartitionOffset> OutOfRange() const { return out_of_range_; }

  // The partition's log start and end, asked of its leader now.
  Result<LogRange> QueryLogRange(const std::string& topic, int32_t partition, int timeout_ms);

  // The partition's end offset as last seen by this consumer, or -1.
  int64_t HighWatermark(const std::string& topic, int32_t partition);
  // The partition's end offset, asked of its leader now (read_committed: the
  // last stable offset).
  Result<int64_t> QueryEndOffset(const std::string& topic, int32_t partition, int timeout_ms);

  Status Pause(const std::string& topic, std::span<const int32_t> partitions);
  Status Resume(const std::string& topic, std::span<const int32_t> partitions);
  // Commits `next_offset` per partition to the group, asynchronously.
  Status Commit(const std::string& topic, std::span<const PartitionOffset> offsets);

 private:
  KafkaConsumer() = default;
  void ReleaseBatch();

  rd_kafka_s* rk_ = nullptr;
  rd_kafka_queue_s* queue_ = nullptr;
  std::vector<rd_kafka_message_s*> raw_;
  std::vector<Message> batch_;
  std::vector<PartitionOffset> out_of_range_;
  int64_t last_error_log_ms_ = 0;
};

}  // namespace sluice::kafka
