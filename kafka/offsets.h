#pragma once

// OffsetLookup: where records of a topic's partitions are, asked of the
// brokers — each partition's end offset (its high watermark; the last stable
// offset under read_committed) and the first offset at or after a time
// (offsets-for-times). The coordinator uses it to resolve a new job's
// `source.start` (partition counts come from KafkaConsumer::PartitionCount).
//
// Every call is one round of requests to the partitions' leaders and gives up
// after `timeout_ms` (Unavailable). Thread safety: every method may be called
// from any thread.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"

struct rd_kafka_s;

namespace sluice::kafka {

class OffsetLookup {
 public:
  static Result<std::unique_ptr<OffsetLookup>> Create(const std::string& brokers);
  ~OffsetLookup();
  OffsetLookup(const OffsetLookup&) = delete;
  OffsetLookup& operator=(const OffsetLookup&) = delete;

  // By partition 0..partitions-1: the offset the next record will get.
  Result<std::vector<int64_t>> EndOffsets(const std::string& topic, int32_t partitions,
                                          int timeout_ms);

  // By partition 0..partitions-1: the offset of the first record whose
  // timestamp is >= time_ms, or -1 where no record is (all are older).
  // librdkafka's mock cluster (sluice-devbroker) answers -1 for every time.
  Result<std::vector<int64_t>> OffsetsForTime(const std::string& topic, int32_t partitions,
                                              int64_t time_ms, int timeout_ms);

 private:
  OffsetLookup() = default;
  // ListOffsets with the same `timestamp` for every partition (-1: the end).
  Result<std::vector<int64_t>> ListOffsets(const std::string& topic, int32_t partitions,
                                           int64_t timestamp, int timeout_ms);

  rd_kafka_s* rk_ = nullptr;
};

}  // namespace sluice::kafka
