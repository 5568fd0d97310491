#include "worker/task_sink.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>

#include "worker/engine/base64.h"
#include "worker/engine/json_writer.h"
#include "worker/engine/task_processor.h"

namespace sluice::worker {

namespace {

constexpr int64_t kDefaultPrefixBytes = 64 << 10;

// Whether `s` is well-formed UTF-8 (no overlong forms, no surrogates).
bool IsUtf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<uint8_t>(s[i]);
    size_t n = 0;                  // continuation bytes
    uint8_t lo = 0x80, hi = 0xBF;  // the range of the first continuation byte
    if (c < 0x80) {
      n = 0;
    } else if (c >= 0xC2 && c <= 0xDF) {
      n = 1;
    } else if (c >= 0xE0 && c <= 0xEF) {
      n = 2;
      if (c == 0xE0) lo = 0xA0;
      if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      n = 3;
      if (c == 0xF0) lo = 0x90;
      if (c == 0xF4) hi = 0x8F;
    } else {
      return false;
    }
    if (s.size() - i - 1 < n) return false;
    for (size_t k = 1; k <= n; ++k) {
      const auto b = static_cast<uint8_t>(s[i + k]);
      if (k == 1 ? (b < lo || b > hi) : (b & 0xC0) != 0x80) return false;
    }
    i += n + 1;
  }
  return true;
}

// Where a refused record came from: the source offset being processed when
// it was emitted, or, for a refusal in a delivery report, the offsets the
// task processed in that checkpoint interval, [from, to).
struct RefusalSource {
  const std::string& topic;
  int32_t partition;
  int64_t offset;  // -1: unknown, see from/to
  int64_t from;    // -1: a single offset
  int64_t to = -1;
};

// Writes into *out the dead letter that replaces a refused record: the
// reason, the sink topic, the source position and a prefix of `value` (the
// refused record, or its first bytes, of `value_bytes` in all) of at most
// `prefix_bytes`, cut at a UTF-8 boundary, shrunk until key and dead letter
// fit in `max_payload` (escaping may grow the text up to six times).
void WriteRefusal(std::string* out, const std::string& job, const std::string& why,
                  std::string_view sink, std::string_view stream, const RefusalSource& src,
                  std::string_view key, std::string_view value, int64_t value_bytes,
                  size_t prefix_bytes, int64_t max_payload) {
  size_t prefix = std::min(value.size(), prefix_bytes);
  while (true) {
    size_t cut = prefix;
    while (cut > 0 && cut < value.size() && (static_cast<uint8_t>(value[cut]) & 0xC0) == 0x80) {
      --cut;
    }
    const std::string_view raw = value.substr(0, cut);
    out->clear();
    engine::JsonWriter w(out);
    w.BeginObject();
    w.SafeKey("job");
    w.String(job);
    w.SafeKey("reason");
    w.String("output refused by the sink: " + why);
    w.SafeKey("sink");
    w.String(sink);
    w.SafeKey("stream");
    w.SafeString(stream);
    w.SafeKey("source");
    w.BeginObject();
    w.SafeKey("topic");
    w.String(src.topic);
    w.SafeKey("partition");
    w.Int(src.partition);
    w.SafeKey("offset");
    if (src.offset >= 0) {
      w.Int(src.offset);
    } else {
      w.Null();
    }
    if (src.from >= 0) {
      w.SafeKey("from_offset");
      w.Int(src.from);
      w.SafeKey("to_offset");
      w.Int(src.to);
    }
    w.EndObject();
    w.SafeKey("key");
    w.String(IsUtf8(key) ? key : std::string_view());
    w.SafeKey("record_bytes");
    w.Int(value_bytes);
    w.SafeKey("truncated");
    w.Bool(static_cast<int64_t>(cut) < value_bytes);
    if (IsUtf8(raw)) {
      w.SafeKey("raw");
      w.String(raw);
    } else {
      std::string b64;
      engine::AppendBase64(&b64, raw);
      w.SafeKey("raw_base64");
      w.SafeString(b64);
    }
    w.EndObject();
    if (static_cast<int64_t>(key.size() + out->size()) <= max_payload || prefix == 0) return;
    prefix /= 2;
  }
}

}  // namespace

TaskSink::TaskSink(const engine::JobPlan& plan, int32_t partition, std::string task_name,
                   const Clock& clock, OutputSink& out, kafka::DeliveryTracker* generation,
                   TaskCarry* carry)
    : job_(plan.name()),
      source_topic_(plan.spec().source().topic()),
      partition_(partition),
      task_name_(std::move(task_name)),
      clock_(clock),
      out_(out),
      generation_(generation),
      carry_(carry) {
  const proto::SinkSpec& sinks = plan.spec().sinks();
  topics_[static_cast<int>(engine::OutputStream::kOutput)] = out_.Topic(sinks.output());
  topics_[static_cast<int>(engine::OutputStream::kLate)] = out_.Topic(sinks.late());
  topics_[static_cast<int>(engine::OutputStream::kDeadLetter)] = out_.Topic(sinks.dead_letter());
  const int64_t limit = plan.spec().source().max_record_bytes();
  prefix_bytes_ = limit > 0 ? limit : kDefaultPrefixBytes;
  max_payload_ = kafka::MaxRecordPayload(out_.max_message_bytes());
}

void TaskSink::set_transactional(Transaction* txn) {
  txn_ = txn;
  max_payload_ = kafka::MaxRecordPayload(txn->max_message_bytes());
}

Status TaskSink::Send(engine::OutputStream stream, std::string_view key, std::string_view value) {
  if (txn_ != nullptr) {
    txn_->Emit(stream, key, value);
    return Status::Ok();
  }
  return out_.Produce(topics_[static_cast<int>(stream)], key, value, generation_);
}

void TaskSink::Emit(engine::OutputStream stream, std::string_view key, std::string_view value) {
  if (!carry_->pending_refusals.empty() && RefusedBefore(stream, key, value)) return;
  if (static_cast<int64_t>(key.size() + value.size()) > max_payload_) {
    Refuse(stream, key, value,
           "record of " + std::to_string(key.size() + value.size()) +
               " bytes is larger than the producer's message.max.bytes allows (" +
               std::to_string(max_payload_) + " bytes of key and value)");
    return;
  }
  Status s = Send(stream, key, value);
  if (kafka::RecordRefused(s)) {
    Refuse(stream, key, value, s.message());
  } else if (!s.ok() && error_.ok()) {
    error_ = s;
  }
}

bool TaskSink::RefusedBefore(engine::OutputStream stream, std::string_view key,
                             std::string_view value) {
  std::vector<kafka::RefusedRecord>& pending = carry_->pending_refusals;
  const uint64_t hash = kafka::RecordHash(key, value);
  for (auto it = pending.begin(); it != pending.end(); ++it) {
    if (it->hash != hash || it->topic != topic_name(stream) ||
        it->value_bytes != static_cast<int64_t>(value.size())) {
      continue;
    }
    const std::string why = it->error + " (refused by the broker in an aborted transaction)";
    pending.erase(it);
    Refuse(stream, key, value, why);
    return true;
  }
  return false;
}

void TaskSink::Refuse(engine::OutputStream stream, std::string_view key, std::string_view value,
                      const std::string& why) {
  // While the engine emits, position() is the record being processed; a
  // record emitted by a timer without any record processed since the restore
  // has only the task's next offset to go by.
  int64_t offset = -1;
  if (processor_ != nullptr) {
    offset = processor_->position().topic.empty() ? processor_->next_offset() - 1
                                                  : processor_->position().offset;
  }
  if (offset > carry_->refused_through || offset < 0) {
    ++carry_->refused_outputs;
    carry_->refused_through = std::max(carry_->refused_through, offset);
  }
  const std::string& sink = topic_name(stream);
  const int64_t now = clock_.NowMillis();
  ++unlogged_;
  if (now - last_warn_ms_ >= 10'000) {
    spdlog::warn(
        "task {}: {} record(s) refused by sink {} ({}), e.g. at source offset {}: {}; replaced "
        "by dead letters",
        task_name_, unlogged_, sink, engine::OutputStreamName(stream), offset, why);
    last_warn_ms_ = now;
    unlogged_ = 0;
  }
  WriteRefusal(&dead_letter_, job_, why, sink, engine::OutputStreamName(stream),
               {source_topic_, partition_, offset, -1}, key, value,
               static_cast<int64_t>(value.size()), static_cast<size_t>(prefix_bytes_),
               max_payload_);
  Status s = Send(engine::OutputStream::kDeadLetter, key, dead_letter_);
  if (!s.ok() && error_.ok()) {
    // The dead-letter topic refuses it too: the checkpoint fails, and says why.
    error_ = Status::Unavailable("the dead letter of a record refused by " + sink +
                                 " could not be produced: " + s.message());
  }
}

Status TaskSink::DeadLetterRefused(kafka::DeliveryTracker* sealed, int64_t from, int64_t to,
                                   std::chrono::steady_clock::time_point deadline,
                                   const std::atomic<bool>& cancelled, int64_t* refused_count) {
  *refused_count = 0;
  std::vector<kafka::RefusedRecord> refused = sealed->TakeRefused();
  if (refused.empty()) return Status::Ok();
  using engine::OutputStream;
  const std::string& dlq = topic_name(OutputStream::kDeadLetter);
  std::string letter;
  for (const kafka::RefusedRecord& r : refused) {
    OutputStream stream = OutputStream::kDeadLetter;
    for (OutputStream s : {OutputStream::kOutput, OutputStream::kLate}) {
      if (r.topic == topic_name(s)) stream = s;
    }
    // The broker refuses whole batches: the record is one of those the task
    // emitted between the barriers, while it processed these offsets.
    WriteRefusal(
        &letter, job_, r.error + " (refused by the broker)", r.topic,
        engine::OutputStreamName(stream),
        {source_topic_, partition_, -1, std::max<int64_t>(0, from), std::max<int64_t>(0, to)},
        r.key, r.value_prefix, r.value_bytes, static_cast<size_t>(prefix_bytes_), max_payload_);
    Status s =
        out_.Produce(topics_[static_cast<int>(OutputStream::kDeadLetter)], r.key, letter, sealed);
    if (!s.ok()) {
      return Status::Unavailable("the dead letter of a record refused by " + r.topic +
                                 " could not be produced to " + dlq + ": " + s.message());
    }
  }
  spdlog::warn(
      "task {}: {} record(s) refused by the broker ({}, e.g. {}) while the task processed offsets "
      "[{}, {}); replaced by dead letters",
      task_name_, refused.size(), refused[0].topic, refused[0].error, from, to);
  if (!sealed->WaitDrained(deadline, cancelled)) {
    return Status::Unavailable(cancelled.load() ? std::string("the task stopped")
                                                : "sink did not acknowledge the dead letters "
                                                  "of refused records in time");
  }
  if (sealed->failed.load() > 0) return Status::Unavailable(sealed->last_error);
  std::vector<kafka::RefusedRecord> again = sealed->TakeRefused();
  if (!again.empty()) {
    return Status::Unavailable(
        dlq + " refused the dead letters of refused records too: " + again[0].error);
  }
  *refused_count = static_cast<int64_t>(refused.size());
  return Status::Ok();
}

}  // namespace sluice::worker
