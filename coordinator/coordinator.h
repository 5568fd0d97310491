#pragma once

// Coordinator: the single source of truth for who runs what. Holds the jobs,
// the workers and their leases, and the assignment of every task (job,
// partition) to a worker under an epoch. The gRPC services (service.h) are
// thin adapters over it; its jobs and assignments persist in a MetadataStore
// (metadata_store.h; RocksDB with synced writes in the daemon) and survive
// restarts.
//
// Durability: every request and every Tick changes the in-memory state, then
// commits what it changed as one batch before it answers. If the commit
// fails, the in-memory state is put back as it was and the request fails
// (workers retry), so nothing is handed out (an epoch, an assignment, a job)
// that a restarted coordinator would not know.
//
// Assignment: PlanAssignment (planner.h) over the live workers; a task whose
// owner is gone is assigned at once under epoch + 1; a task on a live worker
// that should move is first released by its owner (final checkpoint, report
// RELEASED) and only then given to the new worker under epoch + 1, so a task
// never runs on two workers and moves without replay.
//
// Leases: a worker is alive while it heartbeats within `lease_ms`. After a
// coordinator restart every owner named in the stored assignments gets a
// fresh lease, so running tasks are not moved while workers re-register.
//
// Thread safety: every public method may be called from any thread.

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "common/clock.h"
#include "common/status.h"
#include "coordinator/metadata_store.h"
#include "coordinator/planner.h"
#include "coordinator/task_lifecycle.h"
#include "proto/sluice.pb.h"

namespace sluice::coordinator {

// Reads topic metadata from Kafka.
class TopicMetadata {
 public:
  virtual ~TopicMetadata() = default;
  // The partition count of `topic`: NotFound if it does not exist,
  // Unavailable if Kafka cannot be reached.
  virtual Result<int32_t> PartitionCount(const std::string& brokers, const std::string& topic) = 0;
  // Whether `brokers` can run Kafka transactions (delivery: exactly_once):
  // Unavailable, with the reason, if its transaction coordinator does not
  // answer in time.
  virtual Status CheckTransactions(const std::string& brokers) = 0;
};

struct CoordinatorOptions {
  int64_t heartbeat_ms = 1'000;
  int64_t lease_ms = 5'000;
  std::string default_brokers = "127.0.0.1:9092";
};

class Coordinator {
 public:
  Coordinator(CoordinatorOptions options, const Clock& clock, MetadataStore& store,
              TopicMetadata& topics);

  // Loads jobs and assignments from the store.
  Status Load();

  // JobService.
  Result<proto::JobInfo> SubmitJob(const proto::SubmitJobRequest& request);
  Result<proto::JobInfo> UpdateJob(const proto::UpdateJobRequest& request);
  Result<proto::JobInfo> StopJob(const std::string& name, bool drain);
  Result<proto::JobInfo> CancelJob(const std::string& name);
  std::vector<proto::JobInfo> ListJobs() const;
  Result<proto::JobStatus> GetJob(const std::string& name) const;
  std::vector<proto::WorkerInfo> ListWorkers() const;

  // WorkerService. Fail only when the metadata cannot be written.
  Result<proto::RegisterResponse> Register(const proto::RegisterRequest& request);
  Result<proto::HeartbeatResponse> Heartbeat(const proto::HeartbeatRequest& request);

  // Expires leases, rebalances, completes stops. Call every ~100 ms. Fails
  // (changing nothing) when the metadata cannot be written.
  Status Tick();

  // Metadata commits that failed (each undid its request's changes).
  int64_t failed_commits() const;

 private:
  struct TaskRecord {
    TaskLifecycle life;        // owner, epoch, move, done (persisted)
    proto::TaskReport report;  // the owner's latest, under the current epoch
  };
  struct WorkerRecord {
    std::string host;
    std::string instance;  // RegisterRequest::instance of the process holding the id
    int32_t threads = 0;
    int64_t last_heartbeat_ms = 0;
    bool alive = false;
    bool placeholder = false;  // named by stored assignments, not yet re-registered
  };

  // The state a request starts from, to commit what it changed or to put it
  // back if that commit fails.
  struct Saved {
    std::map<std::string, proto::JobInfo> jobs;
    std::map<TaskKey, TaskRecord> tasks;
    std::map<std::string, WorkerRecord> workers;
  };
  Saved Save() const;
  // Commits the jobs and tasks that differ from `before` as one batch; if
  // that fails, restores `before` and returns the error.
  Status CommitSince(Saved before);

  Result<proto::JobSpec> ParseSpec(const std::string& yaml, const std::string& filename,
                                   const proto::JobSpec& spec) const;
  void Assign(const TaskKey& key, TaskRecord& task, const std::string& worker);
  void Rebalance();
  void CompleteStops();
  void ExpireLeases(int64_t now);
  std::vector<std::string> LiveWorkers() const;

  const CoordinatorOptions options_;
  const Clock& clock_;
  MetadataStore& store_;
  TopicMetadata& topics_;

  mutable std::mutex mu_;
  std::map<std::string, proto::JobInfo> jobs_;
  std::map<TaskKey, TaskRecord> tasks_;
  std::map<std::string, WorkerRecord> workers_;
  int64_t failed_commits_ = 0;
};

}  // namespace sluice::coordinator
