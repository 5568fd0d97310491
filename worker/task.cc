#include "worker/task.h"

#include <spdlog/spdlog.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <thread>

#include "common/fault_point.h"
#include "worker/engine/base64.h"
#include "worker/engine/json_writer.h"

namespace sluice::worker {

void LowerThreadPriority() {
  // On Linux, PRIO_PROCESS with a thread id sets that thread's nice value.
  if (setpriority(PRIO_PROCESS, static_cast<id_t>(gettid()), 10) != 0) {
    spdlog::debug("could not lower the priority of the checkpoint thread");
  }
}

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

Task::Sink::Sink(const JobContext& job, Task* task, kafka::DeliveryTracker* tracker)
    : task_(task), producer_(job.producer), tracker_(tracker) {
  const proto::SinkSpec& sinks = job.plan->spec().sinks();
  topic_names_[static_cast<int>(engine::OutputStream::kOutput)] = sinks.output();
  topic_names_[static_cast<int>(engine::OutputStream::kLate)] = sinks.late();
  topic_names_[static_cast<int>(engine::OutputStream::kDeadLetter)] = sinks.dead_letter();
  const int64_t limit = job.plan->spec().source().max_record_bytes();
  prefix_bytes_ = limit > 0 ? limit : kDefaultPrefixBytes;
  if (producer_ != nullptr) {
    for (int i = 0; i < 3; ++i) topics_[i] = producer_->Topic(topic_names_[i]);
    max_payload_ = kafka::MaxRecordPayload(producer_->max_message_bytes());
  }
}

void Task::Sink::set_transactional(TransactionalOutput* txn) {
  txn_ = txn;
  max_payload_ = kafka::MaxRecordPayload(txn->max_message_bytes());
}

Status Task::Sink::Send(engine::OutputStream stream, std::string_view key, std::string_view value) {
  if (txn_ != nullptr) {
    txn_->Emit(stream, key, value);
    return Status::Ok();
  }
  return producer_->Produce(topics_[static_cast<int>(stream)], key, value, tracker_);
}

void Task::Sink::Emit(engine::OutputStream stream, std::string_view key, std::string_view value) {
  if (!task_->carry_.pending_refusals.empty() && RefusedBefore(stream, key, value)) return;
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

bool Task::Sink::RefusedBefore(engine::OutputStream stream, std::string_view key,
                               std::string_view value) {
  std::vector<kafka::RefusedRecord>& pending = task_->carry_.pending_refusals;
  const uint64_t hash = kafka::RecordHash(key, value);
  for (auto it = pending.begin(); it != pending.end(); ++it) {
    if (it->hash != hash || it->topic != topic_names_[static_cast<int>(stream)] ||
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

void Task::Sink::Refuse(engine::OutputStream stream, std::string_view key, std::string_view value,
                        const std::string& why) {
  const engine::TaskProcessor& proc = *task_->processor_;
  // While the engine emits, position() is the record being processed; a
  // record emitted by a timer without any record processed since the restore
  // has only the task's next offset to go by.
  const int64_t offset =
      proc.position().topic.empty() ? proc.next_offset() - 1 : proc.position().offset;
  TaskCarry& carry = task_->carry_;
  if (offset > carry.refused_through || offset < 0) {
    ++carry.refused_outputs;
    carry.refused_through = std::max(carry.refused_through, offset);
  }
  const std::string& sink = topic_names_[static_cast<int>(stream)];
  const int64_t now = task_->job_.clock->NowMillis();
  ++unlogged_;
  if (now - last_warn_ms_ >= 10'000) {
    spdlog::warn(
        "task {}: {} record(s) refused by sink {} ({}), e.g. at source offset {}: {}; replaced "
        "by dead letters",
        task_->name_, unlogged_, sink, engine::OutputStreamName(stream), offset, why);
    last_warn_ms_ = now;
    unlogged_ = 0;
  }
  WriteRefusal(&dead_letter_, task_->job_.plan->name(), why, sink, engine::OutputStreamName(stream),
               {task_->job_.plan->spec().source().topic(), task_->partition_, offset, -1}, key,
               value, static_cast<int64_t>(value.size()), static_cast<size_t>(prefix_bytes_),
               max_payload_);
  Status s = Send(engine::OutputStream::kDeadLetter, key, dead_letter_);
  if (!s.ok() && error_.ok()) {
    // The dead-letter topic refuses it too: the checkpoint fails, and says why.
    error_ = Status::Unavailable("the dead letter of a record refused by " + sink +
                                 " could not be produced: " + s.message());
  }
}

Task::Task(const JobContext& job, int32_t partition, int64_t epoch, TaskDeliveries* deliveries)
    : job_(job),
      partition_(partition),
      epoch_(epoch),
      name_(job.plan->name() + "-" + std::to_string(partition)),
      deliveries_(deliveries),
      sink_(job, this, &(*deliveries)[0]) {
  for (kafka::DeliveryTracker& t : *deliveries_) t.refused_prefix_bytes = sink_.prefix_bytes();
}

Task::~Task() {
  // The commit in flight uses this task's stores: stop it at its next wait
  // and let it finish. A snapshot not yet complete is dropped.
  if (in_flight_ && in_flight_->posted) {
    in_flight_->cancelled.store(true);
    in_flight_->sealed->Wake();
    WaitInFlight();
  }
}

Result<std::unique_ptr<Task>> Task::Open(const JobContext& job, int32_t partition, int64_t epoch,
                                         TaskDeliveries* deliveries, int64_t start_offset) {
  std::unique_ptr<Task> task(new Task(job, partition, epoch, deliveries));
  SLUICE_ASSIGN_OR_RETURN(
      task->checkpoints_,
      CheckpointStore::Open(job.checkpoint_uri, job.plan->name(), partition, job.checkpoints));
  std::optional<CheckpointMeta> restored;
  if (job.plan->spec().delivery() == proto::JobSpec::EXACTLY_ONCE) {
    // Fences every earlier owner before anything is read.
    SLUICE_ASSIGN_OR_RETURN(
        task->txn_,
        TransactionalOutput::Open(job.brokers, job.kafka_settings, job.plan->spec(), job.markers,
                                  partition, task->name_, job.transaction_timeout_ms));
    task->sink_.set_transactional(task->txn_.get());
    task->txn_->set_refused_prefix_bytes(task->sink_.prefix_bytes());
    SLUICE_RETURN_IF_ERROR(task->RestoreCommitted(&restored));
  } else {
    SLUICE_ASSIGN_OR_RETURN(restored, task->checkpoints_->Latest());
    if (restored) {
      SLUICE_RETURN_IF_ERROR(
          task->checkpoints_->RestoreLatest(job.state->TaskDir(task->name_), &*restored));
    }
  }
  task->started_empty_ = !restored.has_value();
  if (restored) {
    task->last_checkpoint_id_ = restored->checkpoint_id;
    task->committed_offset_ = restored->next_offset;
    task->last_completed_ms_ = restored->created_ms;
  }
  SLUICE_ASSIGN_OR_RETURN(task->store_,
                          job.state->OpenTask(task->name_, /*wipe=*/!restored.has_value()));
  task->processor_ = std::make_unique<engine::TaskProcessor>(job.plan, *job.clock, task->sink_);
  SLUICE_RETURN_IF_ERROR(task->processor_->Restore(*task->store_));
  if (task->txn_) {
    kafka::TxnStatus begun = task->txn_->Begin();
    if (!begun.ok()) return begun.status;
  }
  task->last_checkpoint_ms_ = job.clock->NowMillis();
  task->barrier_offset_ = task->fetch_offset();
  if (restored) {
    spdlog::info("task {}: restored checkpoint {} (next offset {}, watermark {})", task->name_,
                 restored->checkpoint_id, task->next_offset(), task->processor_->watermark());
  } else if (start_offset >= 0 && task->next_offset() < 0) {
    task->floor_ = start_offset;
    spdlog::info("task {}: no checkpoint, starting at offset {}", task->name_, start_offset);
  } else {
    spdlog::info("task {}: no checkpoint, starting from the beginning of the partition",
                 task->name_);
  }
  return task;
}

Status Task::RestoreCommitted(std::optional<CheckpointMeta>* restored) {
  SLUICE_ASSIGN_OR_RETURN(std::optional<CheckpointMeta> committed,
                          txn_->LastCommitted(job_.transaction_timeout_ms));
  FaultPoint("during_restore");
  SLUICE_ASSIGN_OR_RETURN(std::vector<CheckpointMeta> all, checkpoints_->List());
  const CheckpointMeta* chosen = nullptr;
  for (const CheckpointMeta& m : all) {  // newest first
    if (committed ? m.checkpoint_id == committed->checkpoint_id : !m.transactional) {
      chosen = &m;
      break;
    }
  }
  if (committed && (chosen == nullptr || chosen->epoch != committed->epoch)) {
    return Status::Corruption(
        "task " + name_ + ": its last committed transaction names checkpoint " +
        std::to_string(committed->checkpoint_id) + " (epoch " + std::to_string(committed->epoch) +
        "), which is not in the checkpoint store " + checkpoints_->dir() +
        "; restoring another one would repeat or lose output");
  }
  // Newer checkpoints were saved, but their transactions never committed.
  SLUICE_RETURN_IF_ERROR(checkpoints_->DeleteNewerThan(chosen ? chosen->checkpoint_id : 0));
  if (chosen == nullptr) return Status::Ok();
  CheckpointMeta meta;
  SLUICE_RETURN_IF_ERROR(
      checkpoints_->Restore(chosen->checkpoint_id, job_.state->TaskDir(name_), &meta));
  txn_counters_.last_committed_checkpoint = meta.checkpoint_id;
  *restored = meta;
  return Status::Ok();
}

int64_t Task::SkipLost(int64_t log_start) {
  const int64_t at = fetch_offset();
  floor_ = std::max(floor_, log_start);
  // A gap counted before (this run, or the run before a restart) is not
  // counted again.
  const int64_t from = std::max(at, carry_.lost.to);
  if (at < 0 || from >= log_start) return 0;
  carry_.lost.count += log_start - from;
  carry_.lost.from = from;
  carry_.lost.to = log_start;
  spdlog::warn(
      "task {}: records [{}, {}) of the partition were deleted (retention) before they were "
      "read: {} lost ({} in all); going on from offset {}",
      name_, from, log_start, log_start - from, carry_.lost.count, log_start);
  return log_start - from;
}

void Task::Process(std::span<const engine::SourceRecord> records) {
  processor_->ProcessBatch(records);
  if (!txn_) return;
  if (txn_->produced()) FaultPoint("after_produce");
  // Output held while a commit runs is bounded: past the bound, wait for it.
  if (txn_->held_bytes() > TransactionalOutput::kMaxHeldBytes && in_flight_ && !waited_) {
    waited_ = WaitInFlight();
  }
}

int64_t Task::in_flight() const {
  return (*deliveries_)[0].in_flight.load() + (*deliveries_)[1].in_flight.load();
}

bool Task::CheckpointDue(int64_t now_ms) const {
  return !in_flight_ && now_ms - last_checkpoint_ms_ >= job_.plan->spec().checkpoint_interval_ms();
}

Result<std::shared_ptr<Task::InFlight>> Task::Barrier(int64_t now_ms, int flush_timeout_ms,
                                                      std::function<bool()> may_commit) {
  last_checkpoint_ms_ = now_ms;
  if (!sink_.error().ok()) return sink_.error();
  if (txn_ && !txn_->error().ok()) return txn_->error().status;
  auto f = std::make_shared<InFlight>();
  SLUICE_RETURN_IF_ERROR(processor_->BeginSnapshot(*store_));
  f->meta.job = job_.plan->name();
  f->meta.partition = partition_;
  f->meta.next_offset = processor_->next_offset();
  f->meta.watermark = processor_->watermark();
  f->meta.epoch = epoch_;
  f->meta.created_ms = now_ms;
  f->meta.transactional = txn_ != nullptr;
  f->flush_timeout_ms = flush_timeout_ms;
  f->may_commit = std::move(may_commit);
  f->protect_id = last_checkpoint_id_;
  f->from_offset = barrier_offset_;
  barrier_offset_ = fetch_offset();
  if (txn_) txn_->Seal();
  // Seal the records produced so far. The other generation is empty: the
  // checkpoint that sealed it has finished, and had it failed, the task
  // would have been restarted with new trackers.
  f->sealed = &(*deliveries_)[generation_];
  generation_ ^= 1;
  sink_.set_tracker(&(*deliveries_)[generation_]);
  FaultPoint("after_barrier");
  return f;
}

CheckpointOutcome Task::Commit(InFlight& f) {
  CheckpointOutcome out;
  out.aborted = txn_ != nullptr;  // until the transaction commits
  if (!txn_) {
    const auto deadline =
        std::chrono::steady_clock::now() + std::chrono::milliseconds(f.flush_timeout_ms);
    if (!f.sealed->WaitDrained(deadline, f.cancelled)) {
      out.status = Status::Unavailable(
          f.cancelled.load() ? std::string("the task stopped")
                             : "sink did not acknowledge " +
                                   std::to_string(f.sealed->in_flight.load()) + " records in time");
      return out;
    }
    if (f.sealed->failed.load() > 0) {
      out.status = Status::Unavailable(f.sealed->last_error);
      return out;
    }
    if (out.status = DeadLetterRefused(f, &out); !out.status.ok()) return out;
  }
  if (f.cancelled.load()) {
    out.status = Status::Unavailable("the task stopped");
    return out;
  }
  const auto t0 = std::chrono::steady_clock::now();
  if (txn_) {
    kafka::TxnStatus flushed = txn_->Flush(job_.transaction_timeout_ms);
    if (!flushed.ok()) {
      out.status = flushed.status;
      out.fenced = flushed.failure == kafka::TxnFailure::kFenced;
      return out;
    }
  }
  const auto t1 = std::chrono::steady_clock::now();
  if (out.status = store_->Write(f.batch); !out.status.ok()) return out;
  if (f.may_commit && !f.may_commit()) {
    out.status = Status::FailedPrecondition("the assignment is no longer confirmed");
    return out;
  }
  // A delta of the changes in `f.batch`, or a full checkpoint when the store
  // cannot tell what the local state builds on.
  Result<CheckpointMeta> saved =
      checkpoints_->SaveChanges(*store_, f.batch, f.meta, f.protect_id, started_empty_);
  if (!saved.ok()) {
    out.status = saved.status();
    return out;
  }
  FaultPoint("after_checkpoint");
  spdlog::debug(
      "task {}: commit: flush {} ms, write and save {} ms", name_,
      std::chrono::duration_cast<std::chrono::milliseconds>(t1 - t0).count(),
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t1)
          .count());
  if (txn_) {
    const auto start = std::chrono::steady_clock::now();
    kafka::TxnStatus committed = txn_->Commit(*saved, job_.transaction_timeout_ms);
    out.commit_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                        std::chrono::steady_clock::now() - start)
                        .count();
    if (!committed.ok()) {
      out.status = committed.status;
      out.fenced = committed.failure == kafka::TxnFailure::kFenced;
      out.aborted = committed.failure == kafka::TxnFailure::kAbort;
      return out;
    }
    out.aborted = false;
    FaultPoint("after_commit");
  }
  out.meta = *saved;
  return out;
}

Status Task::DeadLetterRefused(InFlight& f, CheckpointOutcome* out) {
  std::vector<kafka::RefusedRecord> refused = f.sealed->TakeRefused();
  if (refused.empty()) return Status::Ok();
  using engine::OutputStream;
  const std::string& dlq = sink_.topic_name(OutputStream::kDeadLetter);
  std::string letter;
  for (const kafka::RefusedRecord& r : refused) {
    OutputStream stream = OutputStream::kDeadLetter;
    for (OutputStream s : {OutputStream::kOutput, OutputStream::kLate}) {
      if (r.topic == sink_.topic_name(s)) stream = s;
    }
    // The broker refuses whole batches: the record is one of those the task
    // emitted between the barriers, while it processed these offsets.
    WriteRefusal(&letter, job_.plan->name(), r.error + " (refused by the broker)", r.topic,
                 engine::OutputStreamName(stream),
                 {job_.plan->spec().source().topic(), partition_, -1,
                  std::max<int64_t>(0, f.from_offset), std::max<int64_t>(0, f.meta.next_offset)},
                 r.key, r.value_prefix, r.value_bytes, static_cast<size_t>(sink_.prefix_bytes()),
                 sink_.max_payload());
    Status s =
        job_.producer->Produce(sink_.topic(OutputStream::kDeadLetter), r.key, letter, f.sealed);
    if (!s.ok()) {
      return Status::Unavailable("the dead letter of a record refused by " + r.topic +
                                 " could not be produced to " + dlq + ": " + s.message());
    }
  }
  spdlog::warn(
      "task {}: {} record(s) refused by the broker ({}, e.g. {}) while the task processed offsets "
      "[{}, {}); replaced by dead letters",
      name_, refused.size(), refused[0].topic, refused[0].error, f.from_offset, f.meta.next_offset);
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::milliseconds(f.flush_timeout_ms);
  if (!f.sealed->WaitDrained(deadline, f.cancelled)) {
    return Status::Unavailable(f.cancelled.load() ? std::string("the task stopped")
                                                  : "sink did not acknowledge the dead letters "
                                                    "of refused records in time");
  }
  if (f.sealed->failed.load() > 0) return Status::Unavailable(f.sealed->last_error);
  std::vector<kafka::RefusedRecord> again = f.sealed->TakeRefused();
  if (!again.empty()) {
    return Status::Unavailable(
        dlq + " refused the dead letters of refused records too: " + again[0].error);
  }
  out->refused = static_cast<int64_t>(refused.size());
  return Status::Ok();
}

void Task::Finished(CheckpointOutcome& outcome) {
  if (txn_) {
    if (outcome.aborted) ++txn_counters_.aborted;
    if (outcome.status.ok()) {
      ++txn_counters_.committed;
      txn_counters_.last_commit_ms = outcome.commit_ms;
      txn_counters_.commit_ms_total += outcome.commit_ms;
      txn_counters_.last_committed_checkpoint = outcome.meta.checkpoint_id;
      kafka::TxnStatus resumed = txn_->Resume();
      if (!resumed.ok()) {
        // The checkpoint stands (its transaction committed); the task cannot
        // go on with this producer.
        last_checkpoint_id_ = outcome.meta.checkpoint_id;
        committed_offset_ = outcome.meta.next_offset;
        outcome.status = resumed.status;
        outcome.fenced = resumed.failure == kafka::TxnFailure::kFenced;
        return;
      }
    }
  }
  if (!outcome.status.ok()) {
    if (!outcome.refused_records.empty()) {
      spdlog::warn(
          "task {}: the broker refused {} record(s) for good ({}: {}); the replay replaces them "
          "by dead letters",
          name_, outcome.refused_records.size(), outcome.refused_records[0].topic,
          outcome.refused_records[0].error);
      for (kafka::RefusedRecord& r : outcome.refused_records) {
        carry_.pending_refusals.push_back(std::move(r));
      }
    }
    return;
  }
  // Counted once the checkpoint stands: a failed one replays, and the
  // replay's refusals count then.
  carry_.refused_outputs += outcome.refused;
  last_completed_ms_ = outcome.meta.created_ms;
  last_checkpoint_id_ = outcome.meta.checkpoint_id;
  committed_offset_ = outcome.meta.next_offset;
  spdlog::debug("task {}: checkpoint {} at offset {}", name_, outcome.meta.checkpoint_id,
                outcome.meta.next_offset);
}

Status Task::BeginCheckpoint(int64_t now_ms, int flush_timeout_ms,
                             std::function<bool()> may_commit) {
  if (in_flight_) return Status::FailedPrecondition("a checkpoint is in flight");
  SLUICE_ASSIGN_OR_RETURN(in_flight_, Barrier(now_ms, flush_timeout_ms, std::move(may_commit)));
  return Status::Ok();
}

void Task::AdvanceCheckpoint(int64_t budget_us) {
  if (!snapshotting()) return;
  constexpr size_t kKeysPerStep = 64;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::microseconds(budget_us);
  while (!processor_->SnapshotStep(kKeysPerStep)) {
    if (std::chrono::steady_clock::now() >= deadline) return;
  }
  Post(/*inline_commit=*/!job_.background);
}

void Task::Post(bool inline_commit) {
  std::shared_ptr<InFlight> f = in_flight_;
  processor_->SnapshotStep(SIZE_MAX);
  processor_->TakeSnapshot(&f->batch);
  f->posted = true;
  auto run = [this, f] {
    CheckpointOutcome outcome = Commit(*f);
    if (txn_ && !outcome.status.ok()) outcome.refused_records = txn_->TakeRefused();
    std::lock_guard<std::mutex> lock(f->mu);
    f->outcome = std::move(outcome);
    f->done = true;
    f->cv.notify_all();
  };
  if (inline_commit) {
    run();
  } else {
    job_.background(std::move(run));
  }
}

std::optional<CheckpointOutcome> Task::PollCheckpoint() {
  if (waited_) {
    std::optional<CheckpointOutcome> out = std::move(waited_);
    waited_.reset();
    return out;
  }
  if (!in_flight_ || !in_flight_->posted) return std::nullopt;
  {
    std::lock_guard<std::mutex> lock(in_flight_->mu);
    if (!in_flight_->done) return std::nullopt;
  }
  return WaitInFlight();
}

std::optional<CheckpointOutcome> Task::WaitInFlight() {
  if (!in_flight_) return std::nullopt;
  if (!in_flight_->posted) Post(/*inline_commit=*/true);
  std::shared_ptr<InFlight> f = std::move(in_flight_);
  std::unique_lock<std::mutex> lock(f->mu);
  f->cv.wait(lock, [&] { return f->done; });
  Finished(f->outcome);
  return std::move(f->outcome);
}

Status Task::Checkpoint(int64_t now_ms, int flush_timeout_ms) {
  std::optional<CheckpointOutcome> earlier = WaitInFlight();
  if (!earlier) earlier = std::exchange(waited_, std::nullopt);
  if (earlier && !earlier->status.ok()) return earlier->status;
  SLUICE_ASSIGN_OR_RETURN(in_flight_, Barrier(now_ms, flush_timeout_ms, /*may_commit=*/{}));
  std::optional<CheckpointOutcome> outcome = WaitInFlight();
  return outcome->status;
}

Status Task::SwapPlan(std::shared_ptr<const engine::JobPlan> plan, int64_t now_ms,
                      int flush_timeout_ms) {
  SLUICE_RETURN_IF_ERROR(Checkpoint(now_ms, flush_timeout_ms));
  auto next = std::make_unique<engine::TaskProcessor>(plan, *job_.clock, sink_);
  SLUICE_RETURN_IF_ERROR(next->Restore(*store_));
  job_.plan = std::move(plan);
  processor_ = std::move(next);
  spdlog::info("task {}: now runs the updated job", name_);
  return Status::Ok();
}

}  // namespace sluice::worker
