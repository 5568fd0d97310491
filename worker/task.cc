#include "worker/task.h"

#include <chrono>
#include <thread>

#include <spdlog/spdlog.h>

namespace sluice::worker {

Task::Sink::Sink(const JobContext& job, DeliveryTracker* tracker)
    : producer_(job.producer), tracker_(tracker) {
  const proto::SinkSpec& sinks = job.plan->spec().sinks();
  topics_[static_cast<int>(engine::OutputStream::kOutput)] = sinks.output();
  topics_[static_cast<int>(engine::OutputStream::kLate)] = sinks.late();
  topics_[static_cast<int>(engine::OutputStream::kDeadLetter)] = sinks.dead_letter();
}

void Task::Sink::Emit(engine::OutputStream stream, std::string_view key, std::string_view value) {
  Status s = producer_->Produce(topics_[static_cast<int>(stream)], key, value, tracker_);
  if (!s.ok() && error_.ok()) error_ = s;
}

Task::Task(const JobContext& job, int32_t partition, int64_t epoch, DeliveryTracker* tracker)
    : job_(job),
      partition_(partition),
      epoch_(epoch),
      name_(job.plan->name() + "-" + std::to_string(partition)),
      tracker_(tracker),
      sink_(job, tracker) {}

Task::~Task() = default;

Result<std::unique_ptr<Task>> Task::Open(const JobContext& job, int32_t partition,
                                         int64_t epoch, DeliveryTracker* tracker) {
  std::unique_ptr<Task> task(new Task(job, partition, epoch, tracker));
  SLUICE_ASSIGN_OR_RETURN(task->checkpoints_,
                          CheckpointStore::Open(job.checkpoint_uri, job.plan->name(), partition,
                                                job.keep_checkpoints));
  SLUICE_ASSIGN_OR_RETURN(std::optional<CheckpointMeta> latest, task->checkpoints_->Latest());
  if (latest) {
    CheckpointMeta restored;
    SLUICE_RETURN_IF_ERROR(
        task->checkpoints_->RestoreLatest(job.state->TaskDir(task->name_), &restored));
    latest = restored;
    task->last_checkpoint_id_ = restored.checkpoint_id;
    SLUICE_ASSIGN_OR_RETURN(task->store_, job.state->OpenTask(task->name_, /*wipe=*/false));
  } else {
    SLUICE_ASSIGN_OR_RETURN(task->store_, job.state->OpenTask(task->name_, /*wipe=*/true));
  }
  task->processor_ = std::make_unique<engine::TaskProcessor>(job.plan, *job.clock, task->sink_);
  SLUICE_RETURN_IF_ERROR(task->processor_->Restore(*task->store_));
  task->last_checkpoint_ms_ = job.clock->NowMillis();
  if (latest) {
    spdlog::info("task {}: restored checkpoint {} (next offset {}, watermark {})", task->name_,
                 latest->checkpoint_id, task->next_offset(), task->processor_->watermark());
  } else {
    spdlog::info("task {}: no checkpoint, starting from the beginning of the partition",
                 task->name_);
  }
  return task;
}

bool Task::CheckpointDue(int64_t now_ms) const {
  return now_ms - last_checkpoint_ms_ >= job_.plan->spec().checkpoint_interval_ms();
}

Status Task::Checkpoint(int64_t now_ms, int flush_timeout_ms) {
  last_checkpoint_ms_ = now_ms;
  // Prepare: every record produced so far must be acknowledged.
  if (!sink_.error().ok()) return sink_.error();
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(flush_timeout_ms);
  while (tracker_->in_flight.load() > 0) {
    if (std::chrono::steady_clock::now() > deadline) {
      return Status::Unavailable("sink did not acknowledge " +
                                 std::to_string(tracker_->in_flight.load()) + " records in time");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  if (tracker_->failed.load() > 0) return Status::Unavailable(tracker_->last_error);
  SLUICE_RETURN_IF_ERROR(processor_->Checkpoint(*store_));
  // Commit.
  CheckpointMeta meta;
  meta.job = job_.plan->name();
  meta.partition = partition_;
  meta.next_offset = processor_->next_offset();
  meta.watermark = processor_->watermark();
  meta.epoch = epoch_;
  meta.created_ms = now_ms;
  SLUICE_ASSIGN_OR_RETURN(CheckpointMeta saved, checkpoints_->Save(*store_, meta));
  last_checkpoint_id_ = saved.checkpoint_id;
  spdlog::debug("task {}: checkpoint {} at offset {}", name_, saved.checkpoint_id,
                saved.next_offset);
  return Status::Ok();
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
