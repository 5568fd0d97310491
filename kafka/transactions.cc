#include "kafka/transactions.h"

#include <librdkafka/rdkafka.h>
#include <spdlog/spdlog.h>

#include <chrono>

#include "kafka/rdkafka_util.h"

namespace sluice::kafka {

namespace {

using Clock = std::chrono::steady_clock;

int RemainingMs(Clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  return static_cast<int>(std::max<int64_t>(0, left.count()));
}

// Classifies a transactional call's error; destroys it.
TxnStatus FromTxnError(rd_kafka_error_t* error, const std::string& what) {
  TxnStatus out;
  if (error == nullptr) return out;
  const std::string message = what + ": " + rd_kafka_error_string(error);
  if (rd_kafka_error_is_fatal(error)) {
    out.failure = TxnFailure::kFenced;
    out.status = Status::FailedPrecondition(message);
  } else {
    out.failure = TxnFailure::kAbort;
    out.status = Status::Unavailable(message);
  }
  rd_kafka_error_destroy(error);
  return out;
}

}  // namespace

// ---- TransactionalProducer -------------------------------------------------

Result<std::unique_ptr<TransactionalProducer>> TransactionalProducer::Create(
    const std::string& brokers, const std::string& transactional_id,
    const std::map<std::string, std::string>& extra, int timeout_ms) {
  SLUICE_ASSIGN_OR_RETURN(rd_kafka_t * rk, NewClient(RD_KAFKA_PRODUCER,
                                                     Merge({{"bootstrap.servers", brokers},
                                                            {"transactional.id", transactional_id},
                                                            {"linger.ms", "5"},
                                                            {"compression.type", "lz4"},
                                                            {"partitioner", "murmur2_random"},
                                                            {"transaction.timeout.ms", "60000"}},
                                                           extra),
                                                     "kafka transactional producer", OnDelivery));
  std::unique_ptr<TransactionalProducer> p(new TransactionalProducer());
  p->rk_ = rk;
  p->id_ = transactional_id;
  p->max_message_bytes_ = MaxMessageBytes(rk);
  if (rd_kafka_error_t* error = rd_kafka_init_transactions(rk, timeout_ms)) {
    std::string message = rd_kafka_error_string(error);
    const bool timed_out = rd_kafka_error_code(error) == RD_KAFKA_RESP_ERR__TIMED_OUT;
    rd_kafka_error_destroy(error);
    return Status::Unavailable(
        "exactly_once: starting transactions as " + transactional_id + " failed: " + message +
        (timed_out ? " (the broker's transaction coordinator did not answer within " +
                         std::to_string(timeout_ms / 1000) +
                         " s: is its transaction log available, with "
                         "transaction.state.log.replication.factor and min.isr no larger than "
                         "the brokers?)"
                   : ""));
  }
  p->poller_ = std::thread([raw = p.get()] {
    while (!raw->stop_.load()) rd_kafka_poll(raw->rk_, 100);
  });
  return p;
}

TransactionalProducer::~TransactionalProducer() {
  if (rk_ == nullptr) return;
  if (in_transaction_) {
    // The next owner's init_transactions would abort it too, but only after
    // waiting for it; a fenced producer fails this at once.
    if (rd_kafka_error_t* error = rd_kafka_abort_transaction(rk_, 5'000)) {
      rd_kafka_error_destroy(error);
    }
  }
  stop_.store(true);
  if (poller_.joinable()) poller_.join();
  topics_.DestroyAll();
  rd_kafka_destroy(rk_);
}

TxnStatus TransactionalProducer::Begin() {
  TxnStatus s = FromTxnError(rd_kafka_begin_transaction(rk_), "begin transaction " + id_);
  if (s.ok()) in_transaction_ = true;
  return s;
}

rd_kafka_topic_t* TransactionalProducer::Topic(const std::string& name) {
  return topics_.Get(rk_, name);
}

TxnStatus TransactionalProducer::Produce(rd_kafka_topic_t* rkt, int32_t partition,
                                         std::string_view key, std::string_view value) {
  while (true) {
    int rc = rd_kafka_produce(rkt, partition < 0 ? RD_KAFKA_PARTITION_UA : partition,
                              RD_KAFKA_MSG_F_COPY, const_cast<char*>(value.data()), value.size(),
                              key.empty() ? nullptr : key.data(), key.size(), this);
    if (rc == 0) return {};
    rd_kafka_resp_err_t err = rd_kafka_last_error();
    if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
      continue;
    }
    TxnStatus out;
    std::string what = std::string("produce to ") + rd_kafka_topic_name(rkt) + ": ";
    if (err == RD_KAFKA_RESP_ERR__FATAL) {
      char reason[512];
      rd_kafka_fatal_error(rk_, reason, sizeof(reason));
      out.failure = TxnFailure::kFenced;
      out.status = Status::FailedPrecondition(what + reason);
    } else {
      out.failure = TxnFailure::kAbort;
      out.status = Status::Unavailable(what + rd_kafka_err2str(err));
    }
    return out;
  }
}

void TransactionalProducer::OnDelivery(rd_kafka_t*, const rd_kafka_message_t* msg, void*) {
  auto* self = static_cast<TransactionalProducer*>(msg->_private);
  if (self == nullptr || !msg->err || !PermanentRecordError(msg->err)) return;
  RefusedRecord r = DescribeRefused(msg, self->refused_prefix_bytes_.load());
  std::lock_guard<std::mutex> lock(self->refused_mu_);
  self->refused_.push_back(std::move(r));
}

std::vector<RefusedRecord> TransactionalProducer::TakeRefused() {
  std::lock_guard<std::mutex> lock(refused_mu_);
  return std::exchange(refused_, {});
}

TxnStatus TransactionalProducer::Commit(int timeout_ms) { return End(/*commit=*/true, timeout_ms); }

TxnStatus TransactionalProducer::End(bool commit, int timeout_ms) {
  const std::string what = std::string(commit ? "commit" : "abort") + " transaction " + id_;
  const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
  while (true) {
    rd_kafka_error_t* error = commit ? rd_kafka_commit_transaction(rk_, RemainingMs(deadline))
                                     : rd_kafka_abort_transaction(rk_, RemainingMs(deadline));
    if (error == nullptr) {
      in_transaction_ = false;
      return {};
    }
    if (!rd_kafka_error_is_retriable(error)) return FromTxnError(error, what);
    if (Clock::now() >= deadline) {
      TxnStatus unknown{
          Status::Unavailable(what + ": not done in " + std::to_string(timeout_ms / 1000) +
                              " s: " + rd_kafka_error_string(error)),
          TxnFailure::kUnknown};
      rd_kafka_error_destroy(error);
      return unknown;
    }
    rd_kafka_error_destroy(error);
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

TxnStatus TransactionalProducer::Flush(int timeout_ms) {
  rd_kafka_resp_err_t err = rd_kafka_flush(rk_, timeout_ms);
  char reason[512];
  if (rd_kafka_fatal_error(rk_, reason, sizeof(reason)) != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return {Status::FailedPrecondition("transaction " + id_ + ": " + reason), TxnFailure::kFenced};
  }
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return {FromKafka(err, "flush of transaction " + id_), TxnFailure::kAbort};
  }
  return {};
}

TxnStatus TransactionalProducer::Abort(int timeout_ms) { return End(/*commit=*/false, timeout_ms); }

int64_t TransactionalProducer::OutstandingRecords() const { return rd_kafka_outq_len(rk_); }

// ---- ReadLastRecord --------------------------------------------------------

Result<std::optional<std::string>> ReadLastRecord(const std::string& brokers,
                                                  const std::string& topic, int32_t partition,
                                                  std::string_view key,
                                                  const std::map<std::string, std::string>& extra,
                                                  int timeout_ms) {
  SLUICE_ASSIGN_OR_RETURN(rd_kafka_t * rk,
                          NewClient(RD_KAFKA_CONSUMER,
                                    Merge(extra, {{"bootstrap.servers", brokers},
                                                  {"group.id", "sluice-marker-reader"},
                                                  {"enable.auto.commit", "false"},
                                                  {"enable.auto.offset.store", "false"},
                                                  {"isolation.level", "read_committed"},
                                                  {"enable.partition.eof", "true"},
                                                  // The end is what it waits for.
                                                  {"fetch.wait.max.ms", "10"}}),
                                    "kafka consumer"));
  rd_kafka_poll_set_consumer(rk);
  const std::string what = "reading " + topic + "[" + std::to_string(partition) + "]";
  rd_kafka_topic_partition_list_t* list = rd_kafka_topic_partition_list_new(1);
  rd_kafka_topic_partition_list_add(list, topic.c_str(), partition)->offset =
      RD_KAFKA_OFFSET_BEGINNING;
  Status error = FromKafka(rd_kafka_assign(rk, list), "assign " + topic);
  rd_kafka_topic_partition_list_destroy(list);

  // Read until the end: with read_committed, the end (and the EOF event) is
  // the last stable offset, past which a transaction may still be open.
  std::optional<std::string> last;
  const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
  bool at_end = false;
  while (error.ok() && !at_end) {
    const int left = RemainingMs(deadline);
    if (left == 0) {
      error = Status::Unavailable(what + ": did not reach its end within " +
                                  std::to_string(timeout_ms / 1000) + " s");
      break;
    }
    rd_kafka_message_t* m = rd_kafka_consumer_poll(rk, std::min(left, 200));
    if (m == nullptr) continue;
    if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
      at_end = true;
    } else if (m->err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART ||
               m->err == RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC ||
               m->err == RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION) {
      error = Status::NotFound(what + ": " + rd_kafka_message_errstr(m));
    } else if (m->err) {
      spdlog::debug("{}: {}", what, rd_kafka_message_errstr(m));  // retried by librdkafka
    } else if (m->key != nullptr &&
               std::string_view(static_cast<const char*>(m->key), m->key_len) == key) {
      last.emplace(static_cast<const char*>(m->payload), m->len);
    }
    rd_kafka_message_destroy(m);
  }
  rd_kafka_consumer_close(rk);
  rd_kafka_destroy(rk);
  if (!error.ok()) return error;
  return last;
}

// ---- EnsureTopic -----------------------------------------------------------

namespace {

// The partition count in `rk`'s metadata of `topic` (asking for it by name,
// which creates it on a broker that creates topics on first use), or 0.
Result<int32_t> MetadataPartitions(rd_kafka_t* rk, const std::string& topic, int timeout_ms) {
  rd_kafka_topic_t* rkt = rd_kafka_topic_new(rk, topic.c_str(), nullptr);
  const rd_kafka_metadata_t* md = nullptr;
  rd_kafka_resp_err_t err = rd_kafka_metadata(rk, 0, rkt, &md, timeout_ms);
  rd_kafka_topic_destroy(rkt);
  if (err) return FromKafka(err, "metadata for topic " + topic);
  int32_t count = 0;
  for (int i = 0; i < md->topic_cnt; ++i) {
    if (topic == md->topics[i].topic && md->topics[i].err == RD_KAFKA_RESP_ERR_NO_ERROR) {
      count = md->topics[i].partition_cnt;
    }
  }
  rd_kafka_metadata_destroy(md);
  return count;
}

}  // namespace

Result<TopicInfo> EnsureTopic(const std::string& brokers, const std::string& topic,
                              int32_t partitions, const std::map<std::string, std::string>& configs,
                              const std::map<std::string, std::string>& extra, int timeout_ms) {
  SLUICE_ASSIGN_OR_RETURN(
      rd_kafka_t * rk, NewClient(RD_KAFKA_PRODUCER, Merge(extra, {{"bootstrap.servers", brokers}}),
                                 "kafka admin client"));
  char errstr[512];
  const std::string what = "creating topic " + topic;
  Result<TopicInfo> result = Status::Internal(what);
  rd_kafka_NewTopic_t* nt =
      rd_kafka_NewTopic_new(topic.c_str(), partitions, -1, errstr, sizeof(errstr));
  if (nt == nullptr) {
    result = Status::InvalidArgument(what + ": " + errstr);
  } else {
    for (const auto& [name, value] : configs) {
      rd_kafka_NewTopic_set_config(nt, name.c_str(), value.c_str());
    }
    rd_kafka_queue_t* queue = rd_kafka_queue_new(rk);
    rd_kafka_AdminOptions_t* options =
        rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_CREATETOPICS);
    rd_kafka_AdminOptions_set_request_timeout(options, timeout_ms, errstr, sizeof(errstr));
    rd_kafka_AdminOptions_set_operation_timeout(options, timeout_ms, errstr, sizeof(errstr));
    rd_kafka_CreateTopics(rk, &nt, 1, options, queue);
    rd_kafka_event_t* ev = rd_kafka_queue_poll(queue, timeout_ms + 5'000);
    rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR__TIMED_OUT;
    std::string err_text = "no answer";
    bool admin = false;
    if (ev != nullptr) {
      err = rd_kafka_event_error(ev);
      err_text = rd_kafka_event_error_string(ev) ? rd_kafka_event_error_string(ev) : "";
      if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        size_t n = 0;
        const rd_kafka_topic_result_t** results =
            rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(ev), &n);
        admin = true;
        if (n == 1) {
          err = rd_kafka_topic_result_error(results[0]);
          const char* text = rd_kafka_topic_result_error_string(results[0]);
          err_text = text ? text : rd_kafka_err2str(err);
        }
      }
      rd_kafka_event_destroy(ev);
    }
    rd_kafka_AdminOptions_destroy(options);
    rd_kafka_queue_destroy(queue);
    rd_kafka_NewTopic_destroy(nt);

    if (admin && err != RD_KAFKA_RESP_ERR_NO_ERROR &&
        err != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
      result = Status::Unavailable(what + ": " + err_text);
    } else {
      // Created, already there, or a broker without the admin API.
      if (!admin) spdlog::debug("{}: no admin API ({}); the broker creates it", what, err_text);
      Result<int32_t> count = Status::Internal(what);
      const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
      // A new topic's metadata may lag behind its creation for a moment.
      do {
        count = MetadataPartitions(rk, topic, std::max(1, RemainingMs(deadline)));
        if (count.ok() && *count > 0) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      } while (Clock::now() < deadline);
      if (!count.ok()) {
        result = count.status();
      } else if (*count <= 0) {
        result = Status::Unavailable(what + ": the topic does not appear in the metadata");
      } else {
        result = TopicInfo{*count, admin};
      }
    }
  }
  rd_kafka_destroy(rk);
  return result;
}

}  // namespace sluice::kafka
