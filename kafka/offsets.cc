#include "kafka/offsets.h"

#include <librdkafka/rdkafka.h>

#include "kafka/rdkafka_util.h"

namespace sluice::kafka {

Result<std::unique_ptr<OffsetLookup>> OffsetLookup::Create(const std::string& brokers) {
  // A consumer handle that never joins a group or fetches: it only asks.
  SLUICE_ASSIGN_OR_RETURN(rd_kafka_t * rk,
                          NewClient(RD_KAFKA_CONSUMER,
                                    {{"bootstrap.servers", brokers},
                                     {"allow.auto.create.topics", "false"},
                                     // End offsets as a read_committed worker sees them.
                                     {"isolation.level", "read_committed"}},
                                    "kafka offset lookup"));
  std::unique_ptr<OffsetLookup> lookup(new OffsetLookup());
  lookup->rk_ = rk;
  return lookup;
}

OffsetLookup::~OffsetLookup() {
  if (rk_ != nullptr) rd_kafka_destroy(rk_);
}

Result<std::vector<int64_t>> OffsetLookup::ListOffsets(const std::string& topic, int32_t partitions,
                                                       int64_t timestamp, int timeout_ms) {
  if (partitions <= 0) return std::vector<int64_t>();
  rd_kafka_topic_partition_list_t* list = rd_kafka_topic_partition_list_new(partitions);
  for (int32_t p = 0; p < partitions; ++p) {
    rd_kafka_topic_partition_list_add(list, topic.c_str(), p)->offset = timestamp;
  }
  rd_kafka_resp_err_t err = rd_kafka_offsets_for_times(rk_, list, timeout_ms);
  Result<std::vector<int64_t>> result = std::vector<int64_t>(static_cast<size_t>(partitions), -1);
  if (err) {
    result = FromKafka(err, "offsets of " + topic);
  } else {
    for (int i = 0; i < list->cnt; ++i) {
      const rd_kafka_topic_partition_t& tp = list->elems[i];
      if (tp.err) {
        result =
            FromKafka(tp.err, "offsets of " + topic + "[" + std::to_string(tp.partition) + "]");
        break;
      }
      if (tp.partition >= 0 && tp.partition < partitions) {
        result.value()[static_cast<size_t>(tp.partition)] = tp.offset;
      }
    }
  }
  rd_kafka_topic_partition_list_destroy(list);
  return result;
}

Result<std::vector<int64_t>> OffsetLookup::EndOffsets(const std::string& topic, int32_t partitions,
                                                      int timeout_ms) {
  SLUICE_ASSIGN_OR_RETURN(std::vector<int64_t> ends,
                          ListOffsets(topic, partitions, RD_KAFKA_OFFSET_END, timeout_ms));
  for (size_t p = 0; p < ends.size(); ++p) {
    if (ends[p] < 0) {
      return Status::Unavailable("no end offset for " + topic + "[" + std::to_string(p) + "]");
    }
  }
  return ends;
}

Result<std::vector<int64_t>> OffsetLookup::OffsetsForTime(const std::string& topic,
                                                          int32_t partitions, int64_t time_ms,
                                                          int timeout_ms) {
  if (time_ms < 0) return Status::InvalidArgument("a start time before 1970");
  return ListOffsets(topic, partitions, time_ms, timeout_ms);
}

}  // namespace sluice::kafka
