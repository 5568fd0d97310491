#pragma once

// The topic handles of one librdkafka producer, each created on first use
// and valid until DestroyAll, which the producer calls before it destroys its
// client. Thread-safe.

#include <functional>
#include <map>
#include <mutex>
#include <string>

struct rd_kafka_s;
struct rd_kafka_topic_s;

namespace sluice::kafka {

class TopicHandles {
 public:
  rd_kafka_topic_s* Get(rd_kafka_s* rk, const std::string& name);
  void DestroyAll();

 private:
  std::mutex mu_;
  std::map<std::string, rd_kafka_topic_s*, std::less<>> topics_;
};

}  // namespace sluice::kafka
