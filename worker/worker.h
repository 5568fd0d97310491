#pragma once

// Worker: the sluice-worker daemon's data plane in standalone mode. Runs the
// tasks of one job for a set of partitions on task threads; each thread owns
// one Kafka consumer (manual assignment) for its tasks, so a task is only ever
// touched by one thread and the hot path takes no locks. The producer is
// shared.
//
// Per thread, in a loop: poll a batch, hand each partition's run of records to
// its task, tick idle watermarks every second, checkpoint tasks whose interval
// is due (then commit their offsets to Kafka), and pause the thread's
// partitions while the producer is backed up.

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "common/clock.h"
#include "common/status.h"
#include "proto/sluice.pb.h"
#include "worker/state/rocksdb_state_store.h"

namespace sluice::worker {

struct WorkerOptions {
  proto::JobSpec job;
  std::string brokers;
  std::vector<int32_t> partitions;  // empty: every partition of the topic
  std::string data_dir;
  std::string checkpoint_uri;
  int threads = 1;
  int keep_checkpoints = 3;
  StateOptions state;
  // On stop, move every task's watermark to the end of time first (emit all
  // open windows), for bounded replays.
  bool drain_on_exit = false;
  int flush_timeout_ms = 60'000;
  // Records waiting in the producer above which partitions are paused.
  int64_t max_pending_records = 200'000;
  std::map<std::string, std::string> kafka_settings;
  // If set, per-task status (offsets, watermark, counters) is written here as
  // JSON every second, replaced atomically.
  std::string status_file;
};

class Worker {
 public:
  Worker(WorkerOptions options, const Clock& clock);
  ~Worker();

  // Runs until `stop` becomes true, then checkpoints every task and returns.
  // Returns an error if the worker could not start or a task failed for good.
  Status Run(const std::atomic<bool>& stop);

 private:
  struct Shared;
  void RunThread(std::vector<int32_t> partitions, const std::atomic<bool>& stop);
  void Fail(const Status& s);
  struct TaskStatus {
    int64_t next_offset = -1;
    int64_t watermark = 0;
    int64_t last_checkpoint_ms = 0;
    int64_t open_windows = 0;
    int64_t queued_rule_events = 0;
    int64_t counters[7] = {};
  };
  void Publish(int32_t partition, const class Task& task);
  void WriteStatus();

  WorkerOptions options_;
  const Clock& clock_;
  std::unique_ptr<Shared> shared_;
  std::mutex error_mu_;
  Status error_;
  std::atomic<bool> failed_{false};
  std::mutex status_mu_;
  std::map<int32_t, TaskStatus> status_;
};

// Parses "0-3,5,7" into partition numbers.
Result<std::vector<int32_t>> ParsePartitions(const std::string& text);

}  // namespace sluice::worker
