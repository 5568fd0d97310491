#include "worker/task_host.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <boost/asio/post.hpp>
#include <boost/asio/thread_pool.hpp>
#include <chrono>
#include <deque>
#include <latch>
#include <set>

#include "common/memory.h"
#include "kafka/kafka_client.h"
#include "worker/adapters.h"
#include "worker/engine/record.h"
#include "worker/task.h"

namespace sluice::worker {

struct TaskHost::Command {
  enum class Kind { kStart, kStop, kUpdate };
  Kind kind = Kind::kStart;
  TaskRef task;
  std::shared_ptr<const engine::JobPlan> plan;
  int64_t version = 0;
  int64_t epoch = 0;
  int64_t start_offset = -1;  // kStart: where a task without a checkpoint starts
  StopMode mode = StopMode::kRelease;
};

struct TaskHost::Shared {
  std::mutex deliveries_mu;
  // Stable addresses; they outlive every record (declared before `io`, so
  // the producer is closed first).
  std::deque<TaskDeliveries> deliveries;
  // Checkpoint commits of every task (HostOptions::commit_threads, at most
  // one per task at a time). Joined after the task threads.
  std::unique_ptr<boost::asio::thread_pool> background;
  std::unique_ptr<WorkerIo> io;

  TaskDeliveries* NewDeliveries() {
    std::lock_guard<std::mutex> lock(deliveries_mu);
    return &deliveries.emplace_back();
  }
};

// One task thread: its tasks, one consumer per job, and an inbox of commands.
class TaskHost::Thread {
 public:
  Thread(TaskHost& host, size_t index) : host_(host), index_(index) {
    last_tick_ = last_trim_ = last_publish_ = last_report_log_ = host_.clock_.NowMillis();
  }

  void Post(Command c) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      inbox_.push_back(std::move(c));
    }
    cv_.notify_one();
  }

  void RequestStop(bool drain) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
      drain_ = drain;
    }
    cv_.notify_one();
  }

  void Run();
  // One pass of the loop (Run, or TaskHost::Step); false once stopping.
  bool RunOnce(bool wait);

  std::thread thread;

 private:
  struct Entry {
    std::unique_ptr<Task> task;
    int64_t version = 0;
    int64_t start_offset = -1;  // kept for restarts
    // stop --drain: the partition's end offset when the drain was asked for;
    // the task drains once it has consumed up to there (-1: no drain asked).
    int64_t drain_at = -1;
    // Health: failed checkpoints and restarts, the last one's error, and
    // since when the task has been failing (0: its last checkpoint succeeded).
    int64_t failures = 0;
    std::string last_error;
    int64_t failing_since_ms = 0;
    // Times the thread paused the task's partition for back-pressure.
    int64_t paused = 0;
    // The Kafka timestamp of the last record handed to the task (-1: none
    // since it started), for lag_ms.
    int64_t last_record_ms = -1;
    // When to assign the partition again after its offset was out of range
    // and the log start could not be used yet (0: not waiting).
    int64_t retry_assign_ms = 0;
  };
  struct JobConsumer {
    std::unique_ptr<Source> consumer;
    std::string topic;
    std::vector<int32_t> partitions;
    bool paused = false;
  };

  void Apply(Command& c);
  Status Open(const TaskRef& ref, std::shared_ptr<const engine::JobPlan> plan, int64_t version,
              int64_t epoch, int64_t start_offset);
  // The consumer found the partition's fetch offset out of range (`asked`):
  // counts what retention deleted as lost and points the task at the log
  // start; the job's consumer is then assigned again.
  void OnOutOfRange(JobConsumer& jc, const TaskRef& ref, Entry& entry, int64_t asked);
  void Remove(const TaskRef& ref);
  Status Reassign(const std::string& job);
  // Reassigns each job whose tasks changed, once; runs before the next Poll,
  // so no record of an old assignment reaches a task that restarted.
  void FlushReassign();
  // The final checkpoint of a release or drain; then the task is removed.
  void Stop(const TaskRef& ref, StopMode mode);
  // The partition's end offset now (0 if it cannot be read).
  int64_t EndOffset(const TaskRef& ref, const Task& task);
  bool Drained(const Entry& entry) const;
  void Poll();
  // The work between polls, in steps: idle watermarks (processing time),
  // checkpoints (encoding steps, finished commits, the next barrier), tasks
  // drained or fenced, assignments to retry, back-pressure, reports.
  void Housekeeping(int64_t now);
  void IdleWatermarks(int64_t now);
  void FreeMemory(int64_t now);
  // Returns the tasks found fenced (exactly_once), to be stopped for good.
  std::vector<std::pair<TaskRef, std::string>> Checkpoints(int64_t now);
  void StopDrained();
  void StopFenced(const std::vector<std::pair<TaskRef, std::string>>& fenced);
  void RetryAssignments(int64_t now);
  void BackPressure();
  void Reports(int64_t now);
  void CommitOffset(const Task& task);
  // Reopens a task from its last checkpoint (after a failed one). Returns
  // false if it could not be reopened (it is then removed and reported).
  bool Restart(const TaskRef& ref);
  void PublishTask(const TaskRef& ref, proto::TaskReport::State state, const std::string& error) {
    if (tasks_.count(ref)) host_.Publish(ref, Report(ref, state, error));
  }
  // The report of a task this thread runs.
  proto::TaskReport Report(const TaskRef& ref, proto::TaskReport::State state,
                           const std::string& error) const;
  // The report of a task that is not running (it could not start or
  // restart): FAILED with `error`.
  void PublishFailed(const TaskRef& ref, int64_t epoch, int64_t version, const std::string& error,
                     int64_t failures, int64_t failing_since_ms) {
    proto::TaskReport r;
    r.set_job(ref.job);
    r.set_partition(ref.partition);
    r.set_epoch(epoch);
    r.set_version(version);
    r.set_state(proto::TaskReport::FAILED);
    r.set_error(error);
    r.set_failures(failures);
    r.set_failing_since_ms(failing_since_ms);
    host_.Publish(ref, std::move(r));
  }
  static void NoteFailure(Entry& entry, const std::string& error, int64_t now_ms) {
    ++entry.failures;
    entry.last_error = error;
    if (entry.failing_since_ms == 0) entry.failing_since_ms = now_ms;
  }
  void FinalCheckpoints(bool drain);

  TaskHost& host_;
  const size_t index_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Command> inbox_;
  bool stop_ = false;
  bool drain_ = false;

  std::map<TaskRef, Entry> tasks_;
  std::map<std::string, JobConsumer> consumers_;
  std::vector<engine::SourceRecord> records_;
  int64_t last_tick_ = 0;
  int64_t last_trim_ = 0;  // ReleaseFreeMemory
  int64_t last_publish_ = 0;
  int64_t last_report_log_ = 0;
  bool checkpoint_warned_ = false;
  bool snapshotting_ = false;  // a task of this thread is encoding a snapshot
  // How long a task encodes its snapshot per pass of the loop: the longest
  // stall a checkpoint adds to a batch, after the barrier.
  static constexpr int64_t kSnapshotBudgetUs = 1'000;
  std::set<std::string> reassign_;  // jobs whose consumer must be reassigned
};

void TaskHost::Thread::Run() {
  while (RunOnce(/*wait=*/true)) {
  }
  FinalCheckpoints(drain_);
}

bool TaskHost::Thread::RunOnce(bool wait) {
  std::vector<Command> commands;
  bool stopping;
  {
    std::unique_lock<std::mutex> lock(mu_);
    if (wait && inbox_.empty() && tasks_.empty() && !stop_) {
      cv_.wait_for(lock, std::chrono::milliseconds(100));
    }
    commands.swap(inbox_);
    stopping = stop_;
  }
  for (Command& c : commands) Apply(c);
  FlushReassign();
  if (stopping) return false;
  if (tasks_.empty()) return true;
  Poll();
  Housekeeping(host_.clock_.NowMillis());
  FlushReassign();
  return true;
}

Status TaskHost::Thread::Open(const TaskRef& ref, std::shared_ptr<const engine::JobPlan> plan,
                              int64_t version, int64_t epoch, int64_t start_offset) {
  JobContext ctx;
  ctx.plan = std::move(plan);
  ctx.clock = &host_.clock_;
  ctx.io = host_.shared_->io.get();
  ctx.transaction_timeout_ms = host_.options_.transaction_timeout_ms;
  if (host_.options_.state_memory_bytes > 0) {
    const size_t threads = static_cast<size_t>(std::max(1, host_.options_.threads));
    ctx.state_memory_bytes =
        std::max<size_t>(host_.options_.state_memory_bytes / threads / (tasks_.size() + 1), 1);
  }
  if (boost::asio::thread_pool* background = host_.shared_->background.get()) {
    ctx.background = [background](std::function<void()> work) {
      boost::asio::post(*background, std::move(work));
    };
  }
  SLUICE_ASSIGN_OR_RETURN(auto task, Task::Open(ctx, ref.partition, epoch,
                                                host_.shared_->NewDeliveries(), start_offset));
  Entry& entry = tasks_[ref];
  entry = Entry{};
  entry.task = std::move(task);
  entry.version = version;
  entry.start_offset = start_offset;
  reassign_.insert(ref.job);
  return Status::Ok();
}

void TaskHost::Thread::Remove(const TaskRef& ref) {
  tasks_.erase(ref);
  reassign_.insert(ref.job);
}

void TaskHost::Thread::FlushReassign() {
  for (auto it = reassign_.begin(); it != reassign_.end();) {
    Status s = Reassign(*it);
    if (!s.ok()) {
      spdlog::warn("thread {}: {}; retrying", index_, s.message());
      ++it;  // kept: retried after the next batch
    } else {
      it = reassign_.erase(it);
    }
  }
}

// Points the job's consumer at exactly this thread's partitions of the job,
// each from its task's next offset.
Status TaskHost::Thread::Reassign(const std::string& job) {
  std::vector<kafka::PartitionOffset> offsets;
  std::string topic;
  for (const auto& [ref, entry] : tasks_) {
    if (ref.job != job) continue;
    offsets.push_back({ref.partition, entry.task->fetch_offset()});
    topic = entry.task->plan()->spec().source().topic();
  }
  if (offsets.empty()) {
    consumers_.erase(job);
    return Status::Ok();
  }
  JobConsumer& jc = consumers_[job];
  jc.topic = topic;
  if (!jc.consumer) {
    // A partition whose offset is out of range is reported (OutOfRange): the
    // task counts what it lost (OnOutOfRange).
    SLUICE_ASSIGN_OR_RETURN(jc.consumer, host_.shared_->io->OpenSource(job));
  }
  jc.partitions.clear();
  for (const kafka::PartitionOffset& po : offsets) jc.partitions.push_back(po.partition);
  jc.paused = false;
  return jc.consumer->Assign(jc.topic, offsets);
}

void TaskHost::Thread::Apply(Command& c) {
  const int64_t now = host_.clock_.NowMillis();
  auto it = tasks_.find(c.task);
  switch (c.kind) {
    case Command::Kind::kStart: {
      if (it != tasks_.end()) {
        if (it->second.task->epoch() == c.epoch) return;  // already running
        spdlog::info("task {}: new epoch {}, restarting from its last checkpoint",
                     c.task.ToString(), c.epoch);
        Remove(c.task);
      }
      Status s = Open(c.task, c.plan, c.version, c.epoch, c.start_offset);
      if (!s.ok()) {
        spdlog::error("task {}: cannot start: {}", c.task.ToString(), s.message());
        tasks_.erase(c.task);
        PublishFailed(c.task, c.epoch, c.version, s.message(), 1, now);
        return;
      }
      PublishTask(c.task, proto::TaskReport::RUNNING, "");
      return;
    }
    case Command::Kind::kStop: {
      if (it == tasks_.end()) return;
      Task& task = *it->second.task;
      if (c.mode == StopMode::kFence) {
        spdlog::info("task {}: fenced (epoch {} is stale); stopped without a checkpoint",
                     c.task.ToString(), task.epoch());
        Remove(c.task);
        return;
      }
      if (c.mode == StopMode::kDrain) {
        // Everything in the partition now is processed first, also by a task
        // that has just restarted from an older checkpoint (whose consumer
        // may not exist yet). The coordinator repeats the drain with every
        // heartbeat: a drain under way goes on to where it was set to end
        // (StopDrained stops the task there).
        if (it->second.drain_at < 0) {
          FlushReassign();
          it->second.drain_at = EndOffset(c.task, task);
          if (!Drained(it->second)) {
            spdlog::info("task {}: draining once it has consumed up to offset {} (now at {})",
                         c.task.ToString(), it->second.drain_at, task.next_offset());
          }
        }
        if (!Drained(it->second)) return;
      }
      Stop(c.task, c.mode);
      return;
    }
    case Command::Kind::kUpdate: {
      if (it == tasks_.end() || it->second.version >= c.version) return;
      Status s = it->second.task->SwapPlan(c.plan, now, host_.options_.flush_timeout_ms);
      if (s.ok()) {
        it->second.version = c.version;
        PublishTask(c.task, proto::TaskReport::RUNNING, "");
        return;
      }
      // Could not checkpoint: restart from the last checkpoint under the new plan.
      spdlog::error("task {}: update: {}; restarting from its last checkpoint", c.task.ToString(),
                    s.message());
      int64_t epoch = it->second.task->epoch();
      const int64_t start_offset = it->second.start_offset;
      const TaskCarry carry = it->second.task->carry();
      tasks_.erase(it);
      if (Status o = Open(c.task, c.plan, c.version, epoch, start_offset); o.ok()) {
        tasks_[c.task].task->set_carry(carry);
      } else {
        PublishFailed(c.task, epoch, c.version, o.message(), 1, now);
        Remove(c.task);
      }
      return;
    }
  }
}

int64_t TaskHost::Thread::EndOffset(const TaskRef& ref, const Task& task) {
  Source* consumer = nullptr;
  if (auto jc = consumers_.find(ref.job); jc != consumers_.end())
    consumer = jc->second.consumer.get();
  const std::string& topic = task.plan()->spec().source().topic();
  Result<int64_t> end = consumer != nullptr ? consumer->QueryEndOffset(topic, ref.partition, 10'000)
                                            : Result<int64_t>(Status::Unavailable("no consumer"));
  if (!end.ok()) {
    spdlog::warn("task {}: drain: cannot read the end of the partition ({}); draining at offset {}",
                 ref.ToString(), end.status().message(), task.next_offset());
    return 0;
  }
  return *end;
}

bool TaskHost::Thread::Drained(const Entry& entry) const {
  return entry.drain_at >= 0 && std::max<int64_t>(0, entry.task->fetch_offset()) >= entry.drain_at;
}

void TaskHost::Thread::Stop(const TaskRef& ref, StopMode mode) {
  Task& task = *tasks_.at(ref).task;
  const int64_t now = host_.clock_.NowMillis();
  if (mode == StopMode::kDrain) task.Drain();
  Status s = task.Checkpoint(now, host_.options_.flush_timeout_ms);
  if (s.ok()) CommitOffset(task);
  auto state = !s.ok()                    ? proto::TaskReport::FAILED
               : mode == StopMode::kDrain ? proto::TaskReport::DRAINED
                                          : proto::TaskReport::RELEASED;
  if (!s.ok()) spdlog::error("task {}: final checkpoint failed: {}", ref.ToString(), s.message());
  spdlog::info("task {}: {} at offset {}", ref.ToString(),
               state == proto::TaskReport::DRAINED    ? "drained"
               : state == proto::TaskReport::RELEASED ? "released"
                                                      : "stopped without a final checkpoint",
               task.next_offset());
  proto::TaskReport report = Report(ref, state, s.ok() ? "" : s.message());
  // The task is closed before the coordinator may hear it is released: its
  // next owner must not find this one's checkpoint store still writing (a
  // full checkpoint in the background).
  Remove(ref);
  host_.Publish(ref, std::move(report));
}

void TaskHost::Thread::Poll() {
  // While a snapshot is being encoded, come back soon to encode more.
  const int timeout = snapshotting_ ? 1 : consumers_.size() == 1 ? 100 : 10;
  for (auto& [job, jc] : consumers_) {
    std::span<const Source::Message> batch = jc.consumer->Poll(timeout, 1000);
    for (size_t i = 0; i < batch.size();) {
      const int32_t p = batch[i].partition;
      records_.clear();
      size_t j = i;
      for (; j < batch.size() && batch[j].partition == p; ++j) {
        records_.push_back({batch[j].payload, batch[j].key, {jc.topic, p, batch[j].offset}});
      }
      auto it = tasks_.find(TaskRef{job, p});
      if (it != tasks_.end()) {
        it->second.task->Process(records_);
        it->second.last_record_ms = batch[j - 1].timestamp_ms;
      }
      i = j;
    }
    for (const kafka::PartitionOffset& po : jc.consumer->OutOfRange()) {
      auto it = tasks_.find(TaskRef{job, po.partition});
      if (it != tasks_.end()) OnOutOfRange(jc, it->first, it->second, po.offset);
    }
  }
}

void TaskHost::Thread::OnOutOfRange(JobConsumer& jc, const TaskRef& ref, Entry& entry,
                                    int64_t asked) {
  Task& task = *entry.task;
  const int64_t now = host_.clock_.NowMillis();
  Result<kafka::LogRange> range = jc.consumer->QueryLogRange(jc.topic, ref.partition, 10'000);
  if (!range.ok()) {
    spdlog::warn("task {}: offset {} is out of range, and {}; retrying in 1 s", ref.ToString(),
                 asked, range.status().message());
    entry.retry_assign_ms = now + 1'000;
    return;
  }
  const int64_t at = task.fetch_offset();
  if (at < range->start) {
    task.SkipLost(range->start);
    reassign_.insert(ref.job);
  } else if (at > range->end) {
    // Not a loss: the partition is shorter than the task's position (the
    // topic was deleted and created again, or truncated). Records below the
    // task's position would count as already processed; wait for the
    // partition to grow past it, and say so.
    spdlog::error(
        "task {}: offset {} is beyond the end of the partition ({}; log start {}): was the topic "
        "recreated? The task waits until the partition reaches its offset; retrying in 10 s",
        ref.ToString(), at, range->end, range->start);
    entry.retry_assign_ms = now + 10'000;
  } else {
    // In range by now (the log moved meanwhile): fetch again.
    reassign_.insert(ref.job);
  }
}

void TaskHost::Thread::CommitOffset(const Task& task) {
  if (task.committed_offset() < 0) return;
  auto it = consumers_.find(task.job_name());
  if (it == consumers_.end()) return;
  kafka::PartitionOffset po{task.partition(), task.committed_offset()};
  Status s = it->second.consumer->Commit(it->second.topic,
                                         std::span<const kafka::PartitionOffset>(&po, 1));
  if (!s.ok()) spdlog::warn("task {}: {}", task.name(), s.message());
}

void TaskHost::Thread::Housekeeping(int64_t now) {
  IdleWatermarks(now);
  const std::vector<std::pair<TaskRef, std::string>> fenced = Checkpoints(now);
  StopDrained();
  StopFenced(fenced);
  RetryAssignments(now);
  BackPressure();
  Reports(now);
  FreeMemory(now);
}

void TaskHost::Thread::IdleWatermarks(int64_t now) {
  if (now - last_tick_ >= 1000) {
    last_tick_ = now;
    for (auto& [ref, entry] : tasks_) entry.task->OnProcessingTime();
  }
}

void TaskHost::Thread::FreeMemory(int64_t now) {
  // Under a state memory budget, keys moved out leave free memory in
  // malloc's heaps: given back every 10 s (a walk of the free lists of all
  // of them, so by one thread for the process).
  if (index_ == 0 && host_.options_.state_memory_bytes > 0 && now - last_trim_ >= 10'000) {
    last_trim_ = now;
    ReleaseFreeMemory();
  }
}

std::vector<std::pair<TaskRef, std::string>> TaskHost::Thread::Checkpoints(int64_t now) {
  bool unconfirmed = false;
  bool barrier_taken = false;
  std::vector<TaskRef> failed;
  std::vector<std::pair<TaskRef, std::string>> fenced;
  snapshotting_ = false;
  for (auto& [ref, entry] : tasks_) {
    Task& task = *entry.task;
    task.AdvanceCheckpoint(kSnapshotBudgetUs);
    snapshotting_ = snapshotting_ || task.snapshotting();
    if (std::optional<CheckpointOutcome> done = task.PollCheckpoint()) {
      if (done->status.ok()) {
        CommitOffset(task);
        entry.last_error.clear();
        entry.failing_since_ms = 0;
      } else if (done->fenced) {
        fenced.emplace_back(ref, done->status.message());
        continue;
      } else {
        spdlog::error("task {}: checkpoint failed: {}; restarting it from its last checkpoint",
                      task.name(), done->status.message());
        NoteFailure(entry, "checkpoint failed: " + done->status.message(), now);
        failed.push_back(ref);
        continue;
      }
    }
    // One barrier per pass: the stalls of tasks due together are spread over
    // several batches instead of adding up in one.
    if (barrier_taken || !task.CheckpointDue(now)) continue;
    if (!host_.MayCheckpoint(ref, task.epoch(), now)) {
      unconfirmed = true;
      continue;
    }
    const CommitFence* fence = &host_;
    Status s = task.BeginCheckpoint(
        now, host_.options_.flush_timeout_ms,
        [fence, ref = ref, epoch = task.epoch()] { return fence->MayCommit(ref, epoch); });
    barrier_taken = true;
    snapshotting_ = snapshotting_ || task.snapshotting();
    if (!s.ok() && task.fenced()) {
      fenced.emplace_back(ref, s.message());
    } else if (!s.ok()) {
      spdlog::error("task {}: checkpoint failed: {}; restarting it from its last checkpoint",
                    task.name(), s.message());
      NoteFailure(entry, "checkpoint failed: " + s.message(), now);
      failed.push_back(ref);
    }
  }
  for (const TaskRef& ref : failed) {
    auto it = tasks_.find(ref);
    if (it != tasks_.end() && it->second.task->exactly_once() &&
        !host_.MayCheckpoint(ref, it->second.task->epoch(), now)) {
      // Reopening runs init_transactions, which fences whoever owns the task
      // now (a worker frozen while its task moved finds its checkpoint
      // failing): without a confirmed assignment it stops instead, and the
      // coordinator assigns it again if it is still this worker's.
      spdlog::error("task {}: checkpoint failed and its assignment is not confirmed; stopped",
                    ref.ToString());
      PublishTask(ref, proto::TaskReport::FAILED,
                  "checkpoint failed and the assignment is not confirmed: stopped, not restarted "
                  "(" +
                      it->second.last_error + ")");
      Remove(ref);
      continue;
    }
    Restart(ref);
  }
  if (unconfirmed && !checkpoint_warned_) {
    spdlog::warn(
        "thread {}: assignment not confirmed by the coordinator lately; processing "
        "continues, checkpoints wait",
        index_);
  }
  checkpoint_warned_ = unconfirmed;
  return fenced;
}

void TaskHost::Thread::StopDrained() {
  std::vector<TaskRef> drained;
  for (auto& [ref, entry] : tasks_) {
    if (Drained(entry)) drained.push_back(ref);
  }
  for (const TaskRef& ref : drained) Stop(ref, StopMode::kDrain);
}

void TaskHost::Thread::StopFenced(const std::vector<std::pair<TaskRef, std::string>>& fenced) {
  for (const auto& [ref, why] : fenced) {
    // Restarting would fence the new owner in turn: stop for good.
    spdlog::error("task {}: fenced by a newer owner of its transactional id; stopped: {}",
                  ref.ToString(), why);
    PublishTask(ref, proto::TaskReport::FAILED, "fenced by a newer owner: " + why);
    Remove(ref);
  }
}

void TaskHost::Thread::RetryAssignments(int64_t now) {
  for (auto& [ref, entry] : tasks_) {
    if (entry.retry_assign_ms > 0 && now >= entry.retry_assign_ms) {
      entry.retry_assign_ms = 0;
      reassign_.insert(ref.job);
    }
  }
}

void TaskHost::Thread::BackPressure() {
  // Back-pressure: stop fetching while the producer is backed up.
  const int64_t pending = host_.shared_->io->sink().Outstanding();
  for (auto& [job, jc] : consumers_) {
    if (!jc.paused && pending > host_.options_.max_pending_records) {
      jc.paused = jc.consumer->Pause(jc.topic, jc.partitions).ok();
      if (jc.paused) {
        for (auto& [ref, entry] : tasks_) {
          if (ref.job == job) ++entry.paused;
        }
      }
    } else if (jc.paused && pending < host_.options_.max_pending_records / 2) {
      jc.paused = !jc.consumer->Resume(jc.topic, jc.partitions).ok();
    }
  }
}

void TaskHost::Thread::Reports(int64_t now) {
  if (now - last_publish_ >= 250) {
    last_publish_ = now;
    for (auto& [ref, entry] : tasks_) PublishTask(ref, proto::TaskReport::RUNNING, "");
  }
  if (now - last_report_log_ >= 10'000) {
    last_report_log_ = now;
    for (auto& [ref, entry] : tasks_) {
      const Task& t = *entry.task;
      const auto& c = t.processor().counters();
      spdlog::info(
          "task {}: offset {} watermark {} consumed {} late {} dead_lettered {} alerts {} "
          "windows {}",
          t.name(), t.next_offset(), t.processor().watermark(), c.consumed, c.late, c.dead_lettered,
          c.alerts, c.window_results);
    }
  }
}

bool TaskHost::Thread::Restart(const TaskRef& ref) {
  auto it = tasks_.find(ref);
  if (it == tasks_.end()) return false;
  auto plan = it->second.task->plan();
  const int64_t version = it->second.version, epoch = it->second.task->epoch();
  const TransactionCounters transactions = it->second.task->transactions();
  const TaskCarry carry = it->second.task->carry();
  const int64_t drain_at = it->second.drain_at;
  const int64_t start_offset = it->second.start_offset;
  Entry health;
  health.failures = it->second.failures;
  health.last_error = it->second.last_error;
  health.failing_since_ms = it->second.failing_since_ms;
  health.paused = it->second.paused;
  // Let the old records settle first, so the replay's come after them.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (it->second.task->in_flight() > 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  tasks_.erase(it);
  if (Status o = Open(ref, plan, version, epoch, start_offset); !o.ok()) {
    spdlog::error("task {}: cannot restart: {}", ref.ToString(), o.message());
    PublishFailed(ref, epoch, version, "cannot restart: " + o.message(), health.failures + 1,
                  health.failing_since_ms > 0 ? health.failing_since_ms : host_.clock_.NowMillis());
    Remove(ref);
    return false;
  }
  TransactionCounters carried = tasks_[ref].task->transactions();
  carried.committed += transactions.committed;
  carried.aborted += transactions.aborted;
  carried.commit_ms_total += transactions.commit_ms_total;
  if (carried.last_commit_ms == 0) carried.last_commit_ms = transactions.last_commit_ms;
  tasks_[ref].task->set_transactions(carried);
  tasks_[ref].task->set_carry(carry);
  tasks_[ref].paused = health.paused;
  tasks_[ref].drain_at = drain_at;
  tasks_[ref].failures = health.failures;
  tasks_[ref].last_error = health.last_error;
  tasks_[ref].failing_since_ms = health.failing_since_ms;
  PublishTask(ref, proto::TaskReport::RUNNING, "");
  return true;
}

proto::TaskReport TaskHost::Thread::Report(const TaskRef& ref, proto::TaskReport::State state,
                                           const std::string& error) const {
  auto it = tasks_.find(ref);
  const Task& t = *it->second.task;
  const engine::TaskProcessor& proc = t.processor();
  const engine::TaskCounters& c = proc.counters();
  proto::TaskReport r;
  r.set_job(ref.job);
  r.set_partition(ref.partition);
  r.set_epoch(t.epoch());
  r.set_version(it->second.version);
  r.set_state(state);
  r.set_next_offset(t.fetch_offset());
  r.set_end_offset(-1);
  auto jc = consumers_.find(ref.job);
  if (jc != consumers_.end() && jc->second.consumer) {
    r.set_end_offset(jc->second.consumer->HighWatermark(jc->second.topic, ref.partition));
  }
  const Entry& entry = it->second;
  // lag_ms: how old the oldest record not yet processed is, 0 when caught up
  // (the end offset as last fetched is not past the task's position). That
  // record is not read yet, so its age is taken from the record before it:
  // now minus the Kafka timestamp of the last record processed, which is at
  // least as old (with timestamps in offset order, as CreateTime from one
  // producer has them). Before the task has processed a record it is 0.
  // With transactional input, a commit marker at the end of the partition
  // counts in the end offset and can show as lag until the next record.
  const int64_t now = host_.clock_.NowMillis();
  if (r.end_offset() > std::max<int64_t>(0, t.fetch_offset()) && entry.last_record_ms >= 0) {
    r.set_lag_ms(std::max<int64_t>(0, now - entry.last_record_ms));
  }
  r.set_watermark(proc.watermark());
  r.set_last_checkpoint_id(t.last_checkpoint_id());
  r.set_last_checkpoint_ms(t.last_completed_checkpoint_ms());
  r.set_consumed(c.consumed);
  r.set_processed(c.processed);
  r.set_filtered(c.filtered);
  r.set_late(c.late);
  r.set_dead_lettered(c.dead_lettered);
  r.set_alerts(c.alerts);
  r.set_window_results(c.window_results);
  r.set_open_windows(static_cast<int64_t>(proc.open_windows()));
  const engine::StateMemoryStats memory = proc.state_memory();
  r.set_state_memory_bytes(static_cast<int64_t>(memory.resident_bytes));
  r.set_state_memory_budget_bytes(static_cast<int64_t>(memory.budget_bytes));
  r.set_keys_in_memory(static_cast<int64_t>(memory.resident_keys));
  r.set_keys_spilled(static_cast<int64_t>(memory.spilled_keys));
  r.set_keys_evicted(memory.evicted);
  r.set_keys_read_back(memory.loaded);
  r.set_deduplicated(c.deduplicated);
  r.set_type_mismatches(c.type_mismatches);
  const LostRecords& lost = t.lost();
  r.set_lost(lost.count);
  if (lost.count > 0) {
    r.set_lost_from_offset(lost.from);
    r.set_lost_to_offset(lost.to);
  }
  r.set_refused_outputs(t.refused_outputs());
  r.set_paused(entry.paused);
  if (state == proto::TaskReport::RUNNING && !entry.last_error.empty()) {
    // Restarted after a failed checkpoint; RUNNING again once one succeeds.
    r.set_state(proto::TaskReport::RESTARTING);
    r.set_error(entry.last_error);
  } else {
    r.set_error(error);
  }
  r.set_failures(entry.failures);
  if (r.state() == proto::TaskReport::FAILED || r.state() == proto::TaskReport::RESTARTING) {
    r.set_failing_since_ms(entry.failing_since_ms > 0 ? entry.failing_since_ms
                                                      : host_.clock_.NowMillis());
  }
  r.set_delivery(t.exactly_once() ? "exactly_once" : "at_least_once");
  if (t.exactly_once()) {
    const TransactionCounters& x = t.transactions();
    r.set_transactions_committed(x.committed);
    r.set_transactions_aborted(x.aborted);
    r.set_last_commit_ms(x.last_commit_ms);
    r.set_commit_ms_total(x.commit_ms_total);
    r.set_last_committed_checkpoint(x.last_committed_checkpoint);
  }
  return r;
}

void TaskHost::Thread::FinalCheckpoints(bool drain) {
  const int64_t now = host_.clock_.NowMillis();
  std::vector<std::pair<TaskRef, proto::TaskReport>> reports;
  for (auto& [ref, entry] : tasks_) {
    Task& task = *entry.task;
    if (drain) task.Drain();
    if (!host_.MayCheckpoint(ref, task.epoch(), now)) {
      spdlog::warn("task {}: no final checkpoint: assignment not confirmed", task.name());
      continue;
    }
    Status s = task.Checkpoint(now, host_.options_.flush_timeout_ms);
    if (s.ok()) {
      CommitOffset(task);
      spdlog::info("task {}: final checkpoint at offset {}", task.name(), task.next_offset());
      reports.emplace_back(ref, Report(ref, proto::TaskReport::RELEASED, ""));
    } else {
      spdlog::error("task {}: final checkpoint failed: {} (a restart replays from the last one)",
                    task.name(), s.message());
      reports.emplace_back(ref, Report(ref, proto::TaskReport::FAILED, s.message()));
    }
  }
  // Closed before they are reported released (as in Stop).
  tasks_.clear();
  consumers_.clear();
  for (auto& [ref, report] : reports) host_.Publish(ref, std::move(report));
}

// ---- TaskHost -------------------------------------------------------------

TaskHost::TaskHost(HostOptions options, const Clock& clock, std::unique_ptr<WorkerIo> io)
    : options_(std::move(options)), clock_(clock), shared_(std::make_unique<Shared>()) {
  shared_->io = std::move(io);
}

TaskHost::~TaskHost() { Shutdown(false); }

Status TaskHost::Start() {
  if (!shared_->io) {
    SLUICE_ASSIGN_OR_RETURN(shared_->io, OpenWorkerIo(options_));
  }
  // Commits mostly wait (for acknowledgements, the disk, the transaction
  // coordinator), so several run at once; each task has at most one.
  if (options_.commit_threads > 0) {
    const int commit_threads = options_.commit_threads;
    shared_->background =
        std::make_unique<boost::asio::thread_pool>(static_cast<size_t>(commit_threads));
    // One job per thread, each held until all have started: every thread is lowered.
    auto started = std::make_shared<std::latch>(commit_threads);
    for (int i = 0; i < commit_threads; ++i) {
      boost::asio::post(*shared_->background, [started] {
        LowerThreadPriority();
        started->arrive_and_wait();
      });
    }
  }
  for (int i = 0; i < std::max(1, options_.threads); ++i) {
    threads_.push_back(std::make_unique<Thread>(*this, static_cast<size_t>(i)));
    if (options_.threads == 0) break;
    Thread* t = threads_.back().get();
    t->thread = std::thread([t] { t->Run(); });
  }
  return Status::Ok();
}

void TaskHost::Step() {
  std::vector<Thread*> threads;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& t : threads_) threads.push_back(t.get());
  }
  for (Thread* t : threads) {
    if (!t->thread.joinable()) t->RunOnce(/*wait=*/false);
  }
}

TaskHost::Thread& TaskHost::ThreadFor(const TaskRef& task) {
  // Sticky: a task stays on its thread until forgotten; new tasks go to the
  // thread with the fewest.
  auto it = thread_of_.find(task);
  if (it != thread_of_.end()) return *threads_[it->second];
  std::vector<size_t> load(threads_.size(), 0);
  for (const auto& [t, idx] : thread_of_) ++load[idx];
  size_t best = static_cast<size_t>(std::min_element(load.begin(), load.end()) - load.begin());
  thread_of_[task] = best;
  return *threads_[best];
}

void TaskHost::StartTask(std::shared_ptr<const engine::JobPlan> plan, int64_t version,
                         int32_t partition, int64_t epoch, std::optional<int64_t> start_offset) {
  TaskRef ref{plan->name(), partition};
  Command c;
  c.kind = Command::Kind::kStart;
  c.task = ref;
  c.plan = std::move(plan);
  c.version = version;
  c.epoch = epoch;
  // -2 (the coordinator's "beginning") and unset both mean the beginning.
  c.start_offset = start_offset.value_or(-1) >= 0 ? *start_offset : -1;
  std::lock_guard<std::mutex> lock(mu_);
  if (shut_down_ || threads_.empty()) return;
  proto::TaskReport& r = reports_[ref];
  if (r.state() != proto::TaskReport::RUNNING || r.epoch() != epoch) {
    r.set_job(ref.job);
    r.set_partition(partition);
    r.set_epoch(epoch);
    r.set_version(version);
    r.set_state(proto::TaskReport::STARTING);
  }
  ThreadFor(ref).Post(std::move(c));
}

void TaskHost::StopTask(const TaskRef& task, StopMode mode) {
  Command c;
  c.kind = Command::Kind::kStop;
  c.task = task;
  c.mode = mode;
  std::lock_guard<std::mutex> lock(mu_);
  auto it = thread_of_.find(task);
  if (it == thread_of_.end()) return;
  if (mode == StopMode::kFence) reports_.erase(task);
  threads_[it->second]->Post(std::move(c));
}

void TaskHost::UpdateTask(const TaskRef& task, std::shared_ptr<const engine::JobPlan> plan,
                          int64_t version) {
  Command c;
  c.kind = Command::Kind::kUpdate;
  c.task = task;
  c.plan = std::move(plan);
  c.version = version;
  std::lock_guard<std::mutex> lock(mu_);
  auto it = thread_of_.find(task);
  if (it == thread_of_.end()) return;
  threads_[it->second]->Post(std::move(c));
}

void TaskHost::Confirm(const std::map<TaskRef, int64_t>& epochs, int64_t until_ms) {
  std::lock_guard<std::mutex> lock(mu_);
  confirmed_epochs_ = epochs;
  confirmed_until_ = until_ms;
}

bool TaskHost::MayCheckpoint(const TaskRef& task, int64_t epoch, int64_t now_ms) const {
  if (!options_.fenced) return true;
  std::lock_guard<std::mutex> lock(mu_);
  if (now_ms > confirmed_until_) return false;
  auto it = confirmed_epochs_.find(task);
  return it != confirmed_epochs_.end() && it->second == epoch;
}

void TaskHost::Forget(const TaskRef& task) {
  std::lock_guard<std::mutex> lock(mu_);
  reports_.erase(task);
}

void TaskHost::Publish(const TaskRef& task, proto::TaskReport report) {
  std::lock_guard<std::mutex> lock(mu_);
  // A fenced task's late reports are dropped.
  if (report.state() == proto::TaskReport::RUNNING && reports_.find(task) == reports_.end() &&
      thread_of_.find(task) == thread_of_.end()) {
    return;
  }
  reports_[task] = std::move(report);
}

std::vector<proto::TaskReport> TaskHost::Reports() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<proto::TaskReport> out;
  for (const auto& [ref, r] : reports_) out.push_back(r);
  return out;
}

void TaskHost::Shutdown(bool drain) {
  std::vector<std::unique_ptr<Thread>> threads;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (shut_down_) return;
    shut_down_ = true;
    threads.swap(threads_);
  }
  for (auto& t : threads) t->RequestStop(drain);
  for (auto& t : threads) {
    if (t->thread.joinable()) {
      t->thread.join();
    } else {
      t->Run();  // driven by Step: the final pass (and checkpoints) here
    }
  }
  if (shared_->background) shared_->background->join();
  if (shared_->io) {
    Status s = shared_->io->sink().Flush(options_.flush_timeout_ms);
    if (!s.ok()) spdlog::error("final flush: {}", s.message());
  }
}

void TaskHost::Fail(const Status& s) {
  std::lock_guard<std::mutex> lock(mu_);
  if (error_.ok()) error_ = s;
}

Status TaskHost::error() const {
  std::lock_guard<std::mutex> lock(mu_);
  return error_;
}

}  // namespace sluice::worker
