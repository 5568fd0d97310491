#include "kafka/kafka_client.h"

#include <librdkafka/rdkafka.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>

#include "kafka/rdkafka_util.h"

namespace sluice::kafka {

namespace {

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

void OnDelivery(rd_kafka_t*, const rd_kafka_message_t* msg, void*) {
  auto* tracker = static_cast<DeliveryTracker*>(msg->_private);
  if (tracker == nullptr) return;
  if (msg->err && PermanentRecordError(msg->err)) {
    tracker->AddRefused(DescribeRefused(msg, tracker->refused_prefix_bytes));
  } else if (msg->err) {
    tracker->failed.fetch_add(1);
    if (!tracker->has_error.load()) {
      tracker->last_error = std::string("delivery to ") + rd_kafka_topic_name(msg->rkt) +
                            " failed: " + rd_kafka_err2str(msg->err);
      tracker->has_error.store(true);
    }
  } else {
    tracker->delivered.fetch_add(1);
  }
  tracker->Settled();
}

}  // namespace

uint64_t RecordHash(std::string_view key, std::string_view value) {
  uint64_t h = 14695981039346656037ull;
  for (std::string_view part : {key, std::string_view("\0", 1), value}) {
    for (char c : part) {
      h ^= static_cast<uint8_t>(c);
      h *= 1099511628211ull;
    }
  }
  return h;
}

RefusedRecord DescribeRefused(const void* message, int64_t prefix_bytes) {
  const auto* msg = static_cast<const rd_kafka_message_t*>(message);
  RefusedRecord r;
  r.topic = rd_kafka_topic_name(msg->rkt);
  r.error = rd_kafka_err2str(msg->err);
  std::string_view key, value;
  if (msg->key != nullptr) key = std::string_view(static_cast<const char*>(msg->key), msg->key_len);
  if (msg->payload != nullptr) {
    value = std::string_view(static_cast<const char*>(msg->payload), msg->len);
  }
  r.key.assign(key);
  r.value_bytes = static_cast<int64_t>(value.size());
  r.value_prefix.assign(value.substr(0, static_cast<size_t>(std::max<int64_t>(0, prefix_bytes))));
  r.hash = RecordHash(key, value);
  return r;
}

bool PermanentRecordError(int err) {
  switch (static_cast<rd_kafka_resp_err_t>(err)) {
    case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
    case RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE:
    case RD_KAFKA_RESP_ERR_INVALID_RECORD:
    case RD_KAFKA_RESP_ERR_INVALID_MSG:
      return true;
    default:
      return false;
  }
}

// ---- Producer ---------------------------------------------------------------

Result<std::unique_ptr<KafkaProducer>> KafkaProducer::Create(
    const std::string& brokers, const std::map<std::string, std::string>& extra) {
  SLUICE_ASSIGN_OR_RETURN(rd_kafka_t * rk,
                          NewClient(RD_KAFKA_PRODUCER,
                                    Merge({{"bootstrap.servers", brokers},
                                           {"enable.idempotence", "true"},
                                           {"acks", "all"},
                                           {"linger.ms", "5"},
                                           {"compression.type", "lz4"},
                                           // Same partition for a key as Kafka's Java clients.
                                           {"partitioner", "murmur2_random"},
                                           {"message.timeout.ms", "300000"}},
                                          extra),
                                    "kafka producer", OnDelivery));
  std::unique_ptr<KafkaProducer> p(new KafkaProducer());
  p->rk_ = rk;
  p->max_message_bytes_ = MaxMessageBytes(rk);
  p->poller_ = std::thread([raw = p.get()] {
    while (!raw->stop_.load()) rd_kafka_poll(raw->rk_, 100);
  });
  return p;
}

KafkaProducer::~KafkaProducer() {
  stop_.store(true);
  if (poller_.joinable()) poller_.join();
  if (rk_ != nullptr) {
    rd_kafka_flush(rk_, 10'000);
    topics_.DestroyAll();
    rd_kafka_destroy(rk_);
  }
}

rd_kafka_topic_t* KafkaProducer::Topic(const std::string& name) { return topics_.Get(rk_, name); }

Status KafkaProducer::Produce(const std::string& topic, std::string_view key,
                              std::string_view value, DeliveryTracker* tracker) {
  return Produce(Topic(topic), key, value, tracker);
}

Status KafkaProducer::Produce(rd_kafka_topic_t* rkt, std::string_view key, std::string_view value,
                              DeliveryTracker* tracker) {
  if (tracker != nullptr) tracker->in_flight.fetch_add(1);
  while (true) {
    int rc = rd_kafka_produce(rkt, RD_KAFKA_PARTITION_UA, RD_KAFKA_MSG_F_COPY,
                              const_cast<char*>(value.data()), value.size(),
                              key.empty() ? nullptr : key.data(), key.size(), tracker);
    if (rc == 0) return Status::Ok();
    rd_kafka_resp_err_t err = rd_kafka_last_error();
    if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
      // Back-pressure: the poller thread serves delivery reports meanwhile.
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
      continue;
    }
    if (tracker != nullptr) {
      tracker->failed.fetch_add(1);
      tracker->Settled();
    }
    const std::string what = std::string("produce to ") + rd_kafka_topic_name(rkt);
    if (err == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE) {
      return Status::InvalidArgument(
          what + ": " + rd_kafka_err2str(err) + " (" + std::to_string(key.size() + value.size()) +
          " bytes; message.max.bytes " + std::to_string(max_message_bytes_) + ")");
    }
    return FromKafka(err, what);
  }
}

bool RecordRefused(const Status& s) { return s.code() == StatusCode::kInvalidArgument; }

int64_t KafkaProducer::OutstandingRecords() const { return rd_kafka_outq_len(rk_); }

Status KafkaProducer::Flush(int timeout_ms) {
  return FromKafka(rd_kafka_flush(rk_, timeout_ms), "flush");
}

// ---- Consumer ---------------------------------------------------------------

Result<std::unique_ptr<KafkaConsumer>> KafkaConsumer::Create(
    const std::string& brokers, const std::string& group_id,
    const std::map<std::string, std::string>& extra) {
  SLUICE_ASSIGN_OR_RETURN(rd_kafka_t * rk,
                          NewClient(RD_KAFKA_CONSUMER,
                                    Merge({{"bootstrap.servers", brokers},
                                           {"group.id", group_id},
                                           {"enable.auto.commit", "false"},
                                           {"enable.auto.offset.store", "false"},
                                           {"auto.offset.reset", "earliest"},
                                           {"isolation.level", "read_committed"},
                                           {"enable.partition.eof", "false"},
                                           // librdkafka stops fetching for a while when
                                           // its local queue reaches either limit; the
                                           // defaults capped one task thread near 110K
                                           // events/s (bench/results/e2e.md).
                                           {"queued.max.messages.kbytes", "65536"},
                                           {"queued.min.messages", "1000000"}},
                                          extra),
                                    "kafka consumer"));
  rd_kafka_poll_set_consumer(rk);
  std::unique_ptr<KafkaConsumer> c(new KafkaConsumer());
  c->rk_ = rk;
  c->queue_ = rd_kafka_queue_get_consumer(rk);
  return c;
}

KafkaConsumer::~KafkaConsumer() {
  ReleaseBatch();
  if (queue_ != nullptr) rd_kafka_queue_destroy(queue_);
  if (rk_ != nullptr) {
    rd_kafka_assign(rk_, nullptr);
    rd_kafka_consumer_close(rk_);
    rd_kafka_destroy(rk_);
  }
}

Result<int32_t> KafkaConsumer::PartitionCount(const std::string& topic, int timeout_ms) {
  // Ask for every topic rather than this one by name: a broker with automatic
  // topic creation would otherwise create it.
  const rd_kafka_metadata_t* md = nullptr;
  rd_kafka_resp_err_t err = rd_kafka_metadata(rk_, /*all_topics=*/1, nullptr, &md, timeout_ms);
  if (err) return FromKafka(err, "metadata for topic " + topic);
  Result<int32_t> result = Status::NotFound("topic " + topic + " does not exist");
  for (int i = 0; i < md->topic_cnt; ++i) {
    const rd_kafka_metadata_topic_t& t = md->topics[i];
    if (topic != t.topic) continue;
    if (t.err == RD_KAFKA_RESP_ERR_NO_ERROR && t.partition_cnt > 0) {
      result = t.partition_cnt;
    } else if (t.err != RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART && t.err) {
      result = FromKafka(t.err, "metadata for topic " + topic);
    }
  }
  rd_kafka_metadata_destroy(md);
  return result;
}

Status KafkaConsumer::Assign(const std::string& topic,
                             std::span<const PartitionOffset> partitions) {
  rd_kafka_topic_partition_list_t* list =
      rd_kafka_topic_partition_list_new(static_cast<int>(partitions.size()));
  for (const PartitionOffset& p : partitions) {
    rd_kafka_topic_partition_list_add(list, topic.c_str(), p.partition)->offset =
        p.offset < 0 ? RD_KAFKA_OFFSET_BEGINNING : p.offset;
  }
  rd_kafka_resp_err_t err = rd_kafka_assign(rk_, list);
  rd_kafka_topic_partition_list_destroy(list);
  return FromKafka(err, "assign " + topic);
}

void KafkaConsumer::ReleaseBatch() {
  for (rd_kafka_message_t* m : raw_) rd_kafka_message_destroy(m);
  raw_.clear();
  batch_.clear();
}

std::span<const KafkaConsumer::Message> KafkaConsumer::Poll(int timeout_ms, size_t max) {
  ReleaseBatch();
  out_of_range_.clear();
  raw_.resize(max);
  // Take what is there; only if nothing is, wait for the first message (a
  // batch call with a timeout would wait for `max` messages or the timeout).
  ssize_t n = rd_kafka_consume_batch_queue(queue_, 0, raw_.data(), max);
  if (n == 0 && timeout_ms > 0) {
    if (rd_kafka_message_t* first = rd_kafka_consume_queue(queue_, timeout_ms)) {
      raw_[0] = first;
      ssize_t rest = rd_kafka_consume_batch_queue(queue_, 0, raw_.data() + 1, max - 1);
      n = 1 + (rest > 0 ? rest : 0);
    }
  }
  raw_.resize(n < 0 ? 0 : static_cast<size_t>(n));
  for (rd_kafka_message_t* m : raw_) {
    if (m->err == RD_KAFKA_RESP_ERR__AUTO_OFFSET_RESET) {
      // auto.offset.reset=error: librdkafka has stopped fetching the partition.
      bool seen = false;
      for (const PartitionOffset& po : out_of_range_) seen = seen || po.partition == m->partition;
      if (!seen) out_of_range_.push_back({m->partition, m->offset});
      continue;
    }
    if (m->err) {
      // Transport errors and the like: librdkafka retries by itself.
      int64_t now = NowMs();
      if (now - last_error_log_ms_ > 5000) {
        last_error_log_ms_ = now;
        spdlog::warn("consumer: {}", rd_kafka_message_errstr(m));
      }
      continue;
    }
    batch_.push_back(
        Message{m->partition, m->offset,
                std::string_view(static_cast<const char*>(m->key), m->key ? m->key_len : 0),
                std::string_view(static_cast<const char*>(m->payload), m->payload ? m->len : 0),
                rd_kafka_message_timestamp(m, nullptr)});
  }
  return batch_;
}

int64_t KafkaConsumer::HighWatermark(const std::string& topic, int32_t partition) {
  int64_t low = -1, high = -1;
  if (rd_kafka_get_watermark_offsets(rk_, topic.c_str(), partition, &low, &high) !=
      RD_KAFKA_RESP_ERR_NO_ERROR) {
    return -1;
  }
  return high;
}

Result<int64_t> KafkaConsumer::QueryEndOffset(const std::string& topic, int32_t partition,
                                              int timeout_ms) {
  int64_t low = -1, high = -1;
  rd_kafka_resp_err_t err =
      rd_kafka_query_watermark_offsets(rk_, topic.c_str(), partition, &low, &high, timeout_ms);
  if (err) return FromKafka(err, "end offset of " + topic + "[" + std::to_string(partition) + "]");
  return high;
}

Result<LogRange> KafkaConsumer::QueryLogRange(const std::string& topic, int32_t partition,
                                              int timeout_ms) {
  LogRange range;
  rd_kafka_resp_err_t err = rd_kafka_query_watermark_offsets(rk_, topic.c_str(), partition,
                                                             &range.start, &range.end, timeout_ms);
  if (err) {
    return FromKafka(err, "log start and end of " + topic + "[" + std::to_string(partition) + "]");
  }
  return range;
}

namespace {
rd_kafka_topic_partition_list_t* PartitionList(const std::string& topic,
                                               std::span<const int32_t> partitions) {
  rd_kafka_topic_partition_list_t* list =
      rd_kafka_topic_partition_list_new(static_cast<int>(partitions.size()));
  for (int32_t p : partitions) rd_kafka_topic_partition_list_add(list, topic.c_str(), p);
  return list;
}
}  // namespace

Status KafkaConsumer::Pause(const std::string& topic, std::span<const int32_t> partitions) {
  rd_kafka_topic_partition_list_t* list = PartitionList(topic, partitions);
  rd_kafka_resp_err_t err = rd_kafka_pause_partitions(rk_, list);
  rd_kafka_topic_partition_list_destroy(list);
  return FromKafka(err, "pause");
}

Status KafkaConsumer::Resume(const std::string& topic, std::span<const int32_t> partitions) {
  rd_kafka_topic_partition_list_t* list = PartitionList(topic, partitions);
  rd_kafka_resp_err_t err = rd_kafka_resume_partitions(rk_, list);
  rd_kafka_topic_partition_list_destroy(list);
  return FromKafka(err, "resume");
}

Status KafkaConsumer::Commit(const std::string& topic, std::span<const PartitionOffset> offsets) {
  rd_kafka_topic_partition_list_t* list =
      rd_kafka_topic_partition_list_new(static_cast<int>(offsets.size()));
  for (const PartitionOffset& p : offsets) {
    rd_kafka_topic_partition_list_add(list, topic.c_str(), p.partition)->offset = p.offset;
  }
  rd_kafka_resp_err_t err = rd_kafka_commit(rk_, list, /*async=*/1);
  rd_kafka_topic_partition_list_destroy(list);
  return FromKafka(err, "commit offsets");
}

}  // namespace sluice::kafka
