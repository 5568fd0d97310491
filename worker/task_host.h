#pragma once

// TaskHost: the data plane of a worker. Runs any set of tasks (job,
// partition) on a fixed number of task threads. A task belongs to one thread
// for its whole life, so the hot path takes no locks; the control plane
// (standalone main, or the coordinator client) sends it commands that the
// thread applies between batches: start, stop (release / drain / fence) and
// update.
//
// Per thread, in a loop: apply commands; poll each job's consumer (one per
// job per thread, manual assignment, group "sluice-<job>" for committed
// offsets); hand each partition's run of records to its task; tick idle
// watermarks every second; checkpoint tasks whose interval is due and commit
// their offsets; pause the thread's partitions while the producer is backed
// up; publish task reports.
//
// Records lost to retention: consumers run with auto.offset.reset=error, so
// a task whose next offset is below its partition's log start (at start,
// from a checkpoint or a start offset, or while running, when retention
// deleted records it had not read yet) is never moved silently: the thread
// reads the log start, the task counts the gap as lost (Task::SkipLost) and
// goes on from there.
//
// Fencing (cluster mode): a task only checkpoints while the coordinator has
// confirmed that this worker holds it under the task's epoch (Confirm), and
// only until that confirmation's lease runs out: a worker cut off from the
// coordinator keeps processing, but never writes a checkpoint for a task that
// may have moved.

#include <atomic>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "common/clock.h"
#include "common/status.h"
#include "proto/sluice.pb.h"
#include "worker/engine/job_plan.h"
#include "worker/io.h"
#include "worker/state/checkpoint_store.h"
#include "worker/state/rocksdb_state_store.h"

namespace sluice::worker {

struct HostOptions {
  std::string brokers;
  std::string data_dir;
  std::string checkpoint_uri;
  // Task threads; 0: none, the caller runs the loop with Step() (tests).
  int threads = 1;
  // Checkpoints kept per task, and how often a full one is taken.
  CheckpointStoreOptions checkpoints;
  StateOptions state;
  int flush_timeout_ms = 60'000;
  // Records waiting in the producer above which partitions are paused.
  int64_t max_pending_records = 200'000;
  std::map<std::string, std::string> kafka_settings;
  // Cluster mode: checkpoints need the coordinator's confirmation (Confirm).
  bool fenced = false;
  // Threads that run checkpoint commits (of all tasks; one per task at a
  // time); 0: a task's commit runs on its task thread once its snapshot is
  // complete.
  int commit_threads = 4;
  // exactly_once: for init_transactions, reading the last marker, each commit.
  int transaction_timeout_ms = 30'000;
  // State held in memory by all tasks (engine/state_spill.h); 0: no bound.
  // Split evenly over the task threads, and a thread's share over its tasks
  // as they open (a task gets share / (tasks the thread holds + 1)).
  size_t state_memory_bytes = 0;
};

// Whether a task in `state` is held by its worker (starting, running, or
// restarting after a failed checkpoint).
inline bool Active(proto::TaskReport::State state) {
  return state == proto::TaskReport::RUNNING || state == proto::TaskReport::STARTING ||
         state == proto::TaskReport::RESTARTING;
}

enum class StopMode {
  kRelease,  // final checkpoint, then report RELEASED (a move, or stop)
  kDrain,    // emit every open window, final checkpoint, report DRAINED
  kFence,    // stop at once, no checkpoint: someone else owns the task now
};

class TaskHost final : public CommitFence {
 public:
  // `io`: what tasks read, write and persist; null: Start opens the Kafka
  // and RocksDB one for `options` (OpenWorkerIo).
  TaskHost(HostOptions options, const Clock& clock, std::unique_ptr<WorkerIo> io = nullptr);
  ~TaskHost() override;

  // Opens the io if none was given, and starts the task threads.
  Status Start();

  // With options.threads == 0: one pass of every task thread's loop, on the
  // calling thread (apply commands, poll, the steps between polls).
  void Step();

  // Commands: applied asynchronously, in order per task. `start_offset`:
  // where the task starts if it has no checkpoint (Assignment.start_offset;
  // unset or < 0: the partition's beginning).
  void StartTask(std::shared_ptr<const engine::JobPlan> plan, int64_t version, int32_t partition,
                 int64_t epoch, std::optional<int64_t> start_offset = std::nullopt);
  void StopTask(const TaskRef& task, StopMode mode);
  void UpdateTask(const TaskRef& task, std::shared_ptr<const engine::JobPlan> plan,
                  int64_t version);
  // Drops the report of a task that is no longer running.
  void Forget(const TaskRef& task);

  // The latest report of every task started and not forgotten.
  std::vector<proto::TaskReport> Reports() const;

  // Cluster mode: the tasks (with their epochs) the coordinator confirmed this
  // worker holds; each may checkpoint until `until_ms` (host clock). Replaces
  // the previous confirmation: a task not named here may not checkpoint.
  void Confirm(const std::map<TaskRef, int64_t>& epochs, int64_t until_ms);
  // Whether `task` under `epoch` may write a checkpoint at `now_ms`.
  bool MayCheckpoint(const TaskRef& task, int64_t epoch, int64_t now_ms) const;
  // CommitFence: MayCheckpoint now.
  bool MayCommit(const TaskRef& task, int64_t epoch) const override {
    return MayCheckpoint(task, epoch, clock_.NowMillis());
  }

  // Stops the threads; running tasks take a final checkpoint (after a drain
  // when `drain`). Idempotent.
  void Shutdown(bool drain);

  // A fatal error (a task thread could not continue), if any.
  Status error() const;

 private:
  struct Command;
  class Thread;
  struct Shared;

  Thread& ThreadFor(const TaskRef& task);
  void Publish(const TaskRef& task, proto::TaskReport report);
  void Fail(const Status& s);

  HostOptions options_;
  const Clock& clock_;
  std::unique_ptr<Shared> shared_;
  std::vector<std::unique_ptr<Thread>> threads_;

  mutable std::mutex mu_;
  std::map<TaskRef, size_t> thread_of_;
  std::map<TaskRef, proto::TaskReport> reports_;
  std::map<TaskRef, int64_t> confirmed_epochs_;
  int64_t confirmed_until_ = 0;
  Status error_;
  bool shut_down_ = false;
};

}  // namespace sluice::worker
