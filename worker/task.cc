#include "worker/task.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdint>

#include "common/fault_point.h"

namespace sluice::worker {

Task::Task(const JobContext& job, int32_t partition, int64_t epoch, TaskDeliveries* deliveries)
    : job_(job),
      partition_(partition),
      epoch_(epoch),
      name_(job.plan->name() + "-" + std::to_string(partition)),
      deliveries_(deliveries),
      sink_(*job.plan, partition, name_, *job.clock, job.io->sink(), &(*deliveries)[0], &carry_) {
  for (kafka::DeliveryTracker& t : *deliveries_) t.refused_prefix_bytes = sink_.prefix_bytes();
}

Task::~Task() = default;

Result<std::unique_ptr<Task>> Task::Open(const JobContext& job, int32_t partition, int64_t epoch,
                                         TaskDeliveries* deliveries, int64_t start_offset) {
  std::unique_ptr<Task> task(new Task(job, partition, epoch, deliveries));
  SLUICE_ASSIGN_OR_RETURN(task->checkpoints_,
                          job.io->OpenCheckpoints(job.plan->name(), partition, task->name_));
  std::optional<CheckpointMeta> restored;
  if (job.plan->spec().delivery() == proto::JobSpec::EXACTLY_ONCE) {
    // Fences every earlier owner before anything is read.
    SLUICE_ASSIGN_OR_RETURN(task->txn_, job.io->OpenTransaction(*job.plan, partition, task->name_));
    task->sink_.set_transactional(task->txn_.get());
    task->txn_->set_refused_prefix_bytes(task->sink_.prefix_bytes());
    SLUICE_RETURN_IF_ERROR(task->RestoreCommitted(&restored));
  } else {
    SLUICE_ASSIGN_OR_RETURN(std::vector<CheckpointMeta> all, task->checkpoints_->List());
    if (!all.empty()) {
      // The newest that restores (an older one if its checksums fail).
      SLUICE_ASSIGN_OR_RETURN(restored, task->checkpoints_->Restore(std::nullopt));
    }
  }
  task->started_empty_ = !restored.has_value();
  if (restored) {
    task->last_checkpoint_id_ = restored->checkpoint_id;
    task->committed_offset_ = restored->next_offset;
    task->last_completed_ms_ = restored->created_ms;
  }
  SLUICE_ASSIGN_OR_RETURN(task->store_,
                          task->checkpoints_->OpenState(/*wipe=*/!restored.has_value()));
  task->processor_ = std::make_unique<engine::TaskProcessor>(job.plan, *job.clock, task->sink_);
  task->sink_.set_processor(task->processor_.get());
  SLUICE_RETURN_IF_ERROR(task->OpenSpill(*task->processor_));
  SLUICE_RETURN_IF_ERROR(task->processor_->Restore(*task->store_));
  if (task->txn_) {
    kafka::TxnStatus begun = task->txn_->Begin();
    if (!begun.ok()) return begun.status;
  }
  task->checkpointer_ = std::make_unique<Checkpointer>(Checkpointer::Parts{
      .task_name = task->name_,
      .target = task->checkpoints_.get(),
      .state = task->store_,
      .sink = &task->sink_,
      .deliveries = deliveries,
      .txn = task->txn_.get(),
      .background = job.background,
      .transaction_timeout_ms = job.transaction_timeout_ms,
  });
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
        "), which is not in the checkpoint store " + checkpoints_->where() +
        "; restoring another one would repeat or lose output");
  }
  // Newer checkpoints were saved, but their transactions never committed.
  SLUICE_RETURN_IF_ERROR(checkpoints_->DeleteNewerThan(chosen ? chosen->checkpoint_id : 0));
  if (chosen == nullptr) return Status::Ok();
  SLUICE_ASSIGN_OR_RETURN(CheckpointMeta meta, checkpoints_->Restore(chosen->checkpoint_id));
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
  if (txn_->held_bytes() > TransactionalOutput::kMaxHeldBytes && checkpointer_->in_flight() &&
      !waited_) {
    waited_ = WaitInFlight();
  }
}

int64_t Task::in_flight() const {
  return (*deliveries_)[0].in_flight.load() + (*deliveries_)[1].in_flight.load();
}

Status Task::OpenSpill(engine::TaskProcessor& processor) {
  if (job_.state_memory_bytes == 0) return Status::Ok();
  SLUICE_ASSIGN_OR_RETURN(engine::StateStore * spill, checkpoints_->OpenSpill());
  if (spill != nullptr) processor.SetStateSpill(spill, job_.state_memory_bytes);
  return Status::Ok();
}

bool Task::CheckpointDue(int64_t now_ms) const {
  // A task whose spill store failed restarts (through a failing checkpoint).
  if (!processor_->status().ok()) return !checkpointer_->in_flight();
  return !checkpointer_->in_flight() &&
         now_ms - last_checkpoint_ms_ >= job_.plan->spec().checkpoint_interval_ms();
}

Status Task::BeginCheckpoint(int64_t now_ms, int flush_timeout_ms,
                             std::function<bool()> may_commit) {
  if (checkpointer_->in_flight()) return Status::FailedPrecondition("a checkpoint is in flight");
  if (!processor_->status().ok()) {
    return Status(processor_->status().code(),
                  "state beyond the memory budget: " + processor_->status().message());
  }
  last_checkpoint_ms_ = now_ms;
  Checkpointer::Barrier b;
  b.meta.job = job_.plan->name();
  b.meta.partition = partition_;
  b.meta.epoch = epoch_;
  b.meta.created_ms = now_ms;
  b.flush_timeout_ms = flush_timeout_ms;
  b.may_commit = std::move(may_commit);
  b.protect_id = last_checkpoint_id_;
  b.from_offset = barrier_offset_;
  b.started_empty = started_empty_;
  SLUICE_RETURN_IF_ERROR(checkpointer_->Begin(*processor_, std::move(b)));
  barrier_offset_ = fetch_offset();
  return Status::Ok();
}

void Task::AdvanceCheckpoint(int64_t budget_us) { checkpointer_->Encode(*processor_, budget_us); }

std::optional<CheckpointOutcome> Task::PollCheckpoint() {
  if (waited_) {
    std::optional<CheckpointOutcome> out = std::move(waited_);
    waited_.reset();
    return out;
  }
  std::optional<CheckpointOutcome> done = checkpointer_->Poll();
  if (done) Finished(*done);
  return done;
}

std::optional<CheckpointOutcome> Task::WaitInFlight() {
  std::optional<CheckpointOutcome> done = checkpointer_->Wait(*processor_);
  if (done) Finished(*done);
  return done;
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

Status Task::Checkpoint(int64_t now_ms, int flush_timeout_ms) {
  std::optional<CheckpointOutcome> earlier = WaitInFlight();
  if (!earlier) earlier = std::exchange(waited_, std::nullopt);
  if (earlier && !earlier->status.ok()) return earlier->status;
  SLUICE_RETURN_IF_ERROR(BeginCheckpoint(now_ms, flush_timeout_ms));
  std::optional<CheckpointOutcome> outcome = WaitInFlight();
  return outcome->status;
}

Status Task::SwapPlan(std::shared_ptr<const engine::JobPlan> plan, int64_t now_ms,
                      int flush_timeout_ms) {
  SLUICE_RETURN_IF_ERROR(Checkpoint(now_ms, flush_timeout_ms));
  auto next = std::make_unique<engine::TaskProcessor>(plan, *job_.clock, sink_);
  SLUICE_RETURN_IF_ERROR(OpenSpill(*next));
  SLUICE_RETURN_IF_ERROR(next->Restore(*store_));
  job_.plan = std::move(plan);
  processor_ = std::move(next);
  sink_.set_processor(processor_.get());
  spdlog::info("task {}: now runs the updated job", name_);
  return Status::Ok();
}

}  // namespace sluice::worker
