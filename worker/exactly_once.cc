#include "worker/exactly_once.h"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "common/fault_point.h"

namespace sluice::worker {

Result<MarkerTopic> ResolveMarkerTopic(const std::string& brokers, const proto::JobSpec& spec,
                                       int32_t source_partitions,
                                       const std::map<std::string, std::string>& kafka_settings) {
  MarkerTopic out;
  out.name = spec.sinks().markers();
  // Compaction keeps the last marker of each task; a segment rolls every 10
  // minutes so that it can run.
  SLUICE_ASSIGN_OR_RETURN(
      kafka::TopicInfo info,
      kafka::EnsureTopic(brokers, out.name, source_partitions,
                         {{"cleanup.policy", "compact"}, {"segment.ms", "600000"}}, kafka_settings,
                         30'000));
  out.partitions = info.partitions;
  out.dedicated = info.created_by_admin;
  if (out.dedicated && out.partitions < source_partitions) {
    return Status::FailedPrecondition(
        "marker topic " + out.name + " has " + std::to_string(out.partitions) +
        " partitions; exactly_once needs one per partition of " + spec.source().topic() + " (" +
        std::to_string(source_partitions) + "): add partitions to it");
  }
  return out;
}

std::string TransactionalOutput::TransactionalId(const std::string& job, int32_t partition) {
  return "sluice-" + job + "-" + std::to_string(partition);
}

Result<std::unique_ptr<TransactionalOutput>> TransactionalOutput::Open(
    const std::string& brokers, const std::map<std::string, std::string>& kafka_settings,
    const proto::JobSpec& spec, const MarkerTopic& markers, int32_t partition,
    const std::string& task_name, int timeout_ms) {
  if (markers.partitions <= 0) {
    return Status::FailedPrecondition("marker topic " + markers.name + " is not resolved");
  }
  if (markers.dedicated && partition >= markers.partitions) {
    return Status::FailedPrecondition("marker topic " + markers.name + " has no partition " +
                                      std::to_string(partition) + ": add partitions to it");
  }
  std::unique_ptr<TransactionalOutput> out(new TransactionalOutput());
  // A transaction stays open for a checkpoint interval and its commit.
  std::map<std::string, std::string> settings = kafka_settings;
  const int64_t txn_timeout =
      std::clamp<int64_t>(3 * spec.checkpoint_interval_ms() + timeout_ms, 60'000, 900'000);
  settings.emplace("transaction.timeout.ms", std::to_string(txn_timeout));
  SLUICE_ASSIGN_OR_RETURN(
      out->producer_, kafka::TransactionalProducer::Create(
                          brokers, TransactionalId(spec.name(), partition), settings, timeout_ms));
  out->brokers_ = brokers;
  out->kafka_settings_ = kafka_settings;
  out->task_name_ = task_name;
  out->marker_topic_name_ = markers.name;
  out->marker_partition_ = markers.dedicated ? partition : partition % markers.partitions;
  const proto::SinkSpec& sinks = spec.sinks();
  out->topics_[static_cast<int>(engine::OutputStream::kOutput)] =
      out->producer_->Topic(sinks.output());
  out->topics_[static_cast<int>(engine::OutputStream::kLate)] = out->producer_->Topic(sinks.late());
  out->topics_[static_cast<int>(engine::OutputStream::kDeadLetter)] =
      out->producer_->Topic(sinks.dead_letter());
  out->marker_topic_ = out->producer_->Topic(markers.name);
  return out;
}

Result<std::optional<CheckpointMeta>> TransactionalOutput::LastCommitted(int timeout_ms) {
  SLUICE_ASSIGN_OR_RETURN(std::optional<std::string> value,
                          kafka::ReadLastRecord(brokers_, marker_topic_name_, marker_partition_,
                                                task_name_, kafka_settings_, timeout_ms));
  if (!value) return std::optional<CheckpointMeta>();
  Result<CheckpointMeta> meta = DecodeCheckpointMeta(*value);
  if (!meta.ok()) {
    return Status::Corruption("the last marker of " + task_name_ + " in " + marker_topic_name_ +
                              " does not decode: " + meta.status().message());
  }
  if (meta->checkpoint_id <= 0) {
    return Status::Corruption("the last marker of " + task_name_ + " in " + marker_topic_name_ +
                              " names no checkpoint");
  }
  return std::optional<CheckpointMeta>(std::move(meta).value());
}

kafka::TxnStatus TransactionalOutput::Begin() { return producer_->Begin(); }

void TransactionalOutput::Send(engine::OutputStream stream, std::string_view key,
                               std::string_view value) {
  kafka::TxnStatus s = producer_->Produce(topics_[static_cast<int>(stream)], -1, key, value);
  produced_ = true;
  if (!s.ok() && error_.ok()) error_ = std::move(s);
}

void TransactionalOutput::Emit(engine::OutputStream stream, std::string_view key,
                               std::string_view value) {
  if (!sealed_) {
    Send(stream, key, value);
    return;
  }
  held_records_.push_back(
      Held{stream, static_cast<uint32_t>(key.size()), static_cast<uint32_t>(value.size())});
  held_.append(key);
  held_.append(value);
}

kafka::TxnStatus TransactionalOutput::Commit(const CheckpointMeta& saved, int timeout_ms) {
  if (!error_.ok()) {
    kafka::TxnStatus failed = error_;
    if (failed.failure != kafka::TxnFailure::kFenced) Abort(timeout_ms);
    return failed;
  }
  const std::string marker = EncodeCheckpointMeta(saved);
  kafka::TxnStatus s = producer_->Produce(marker_topic_, marker_partition_, task_name_, marker);
  if (!s.ok()) {
    if (s.failure != kafka::TxnFailure::kFenced) Abort(timeout_ms);
    return s;
  }
  FaultPoint("after_marker");
  s = producer_->Commit(timeout_ms);
  if (!s.ok() && s.failure == kafka::TxnFailure::kAbort) {
    kafka::TxnStatus aborted = Abort(timeout_ms);
    if (!aborted.ok()) return aborted;
  }
  return s;
}

kafka::TxnStatus TransactionalOutput::Flush(int timeout_ms) {
  if (!error_.ok()) return error_;
  return producer_->Flush(timeout_ms);
}

kafka::TxnStatus TransactionalOutput::Abort(int timeout_ms) { return producer_->Abort(timeout_ms); }

kafka::TxnStatus TransactionalOutput::Resume() {
  kafka::TxnStatus s = producer_->Begin();
  if (!s.ok()) return s;
  sealed_ = false;
  produced_ = false;
  size_t at = 0;
  for (const Held& h : held_records_) {
    std::string_view key(held_.data() + at, h.key_size);
    std::string_view value(held_.data() + at + h.key_size, h.value_size);
    at += h.key_size + h.value_size;
    Send(h.stream, key, value);
  }
  held_records_.clear();
  held_.clear();
  return error_;
}

}  // namespace sluice::worker
