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
// Partitions: a job's tasks are its source topic's partitions. The count is
// read at submit and again every `partition_check_ms` (CheckPartitionsIfDue,
// from a thread of its own in the daemon) and whenever a client asks for the
// job's status (GetJob). New partitions get tasks at once, starting at their
// beginning. A topic that disappeared or has fewer partitions, seen so by two
// checks at least kConfirmTopicLossMs apart, fails the job (FAILED, with the
// reason in JobInfo.error): its tasks are stopped. Kafka is only ever asked
// without holding the lock, so a slow broker never blocks the services.
//
// Start positions: a job's `source.start` is resolved per partition at
// submit (JobInfo.start_offsets) and sent with every assignment
// (Assignment.start_offset) for a task without a checkpoint.
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

// Reads topic metadata from Kafka. Every call gives up after `timeout_ms`.
class TopicMetadata {
 public:
  virtual ~TopicMetadata() = default;
  // The partition count of `topic`: NotFound if it does not exist,
  // Unavailable if Kafka cannot be reached.
  virtual Result<int32_t> PartitionCount(const std::string& brokers, const std::string& topic,
                                         int timeout_ms) = 0;
  // By partition 0..partitions-1: the offset the next record will get.
  virtual Result<std::vector<int64_t>> EndOffsets(const std::string& brokers,
                                                  const std::string& topic, int32_t partitions,
                                                  int timeout_ms) = 0;
  // By partition 0..partitions-1: the first offset whose record's timestamp
  // is >= time_ms, or -1 where there is none.
  virtual Result<std::vector<int64_t>> OffsetsForTime(const std::string& brokers,
                                                      const std::string& topic, int32_t partitions,
                                                      int64_t time_ms, int timeout_ms) = 0;
  // Whether `brokers` can run Kafka transactions (delivery: exactly_once):
  // Unavailable, with the reason, if its transaction coordinator does not
  // answer in time.
  virtual Status CheckTransactions(const std::string& brokers) = 0;
};

struct CoordinatorOptions {
  int64_t heartbeat_ms = 1'000;
  int64_t lease_ms = 5'000;
  std::string default_brokers = "127.0.0.1:9092";
  // How often the partition count of every running job's source topic is
  // read again (CheckPartitionsIfDue).
  int64_t partition_check_ms = 30'000;
};

// What one task of a job starts from when it has no checkpoint: -2, the
// partition's beginning, unless the job resolved its source.start otherwise.
inline constexpr int64_t kStartAtBeginning = -2;

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
  // The job's status after its partition count was read again (a lookup of
  // at most kStatusLookupMs; when Kafka does not answer, the status as known).
  Result<proto::JobStatus> GetJob(const std::string& name);
  // The job's status as known, without asking Kafka (for /metrics).
  Result<proto::JobStatus> JobStatusOf(const std::string& name) const;
  std::vector<proto::WorkerInfo> ListWorkers() const;

  // WorkerService. Fail only when the metadata cannot be written.
  Result<proto::RegisterResponse> Register(const proto::RegisterRequest& request);
  Result<proto::HeartbeatResponse> Heartbeat(const proto::HeartbeatRequest& request);

  // Expires leases, rebalances, completes stops. Call every ~100 ms. Fails
  // (changing nothing) when the metadata cannot be written.
  Status Tick();

  // Partitions of the running jobs' source topics. CheckPartitions reads the
  // partition count of `job`'s topic (of every running job's when `job` is
  // empty) and applies what it finds (see the class comment); Kafka
  // unreachable changes nothing. CheckPartitionsIfDue does so for every
  // running job when `partition_check_ms` has passed since it last did. Both
  // block for the lookups (up to `timeout_ms` each) without holding the
  // lock, and fail only when the metadata cannot be written.
  Status CheckPartitions(const std::string& job, int timeout_ms);
  Status CheckPartitionsIfDue();

  // Lookup budgets: at submit and in the background; for `status`.
  static constexpr int kLookupMs = 5'000;
  static constexpr int kStatusLookupMs = 1'000;
  // A topic seen missing or shrunk is only believed when a check at least this
  // much later sees it so again: metadata can be briefly incomplete (a broker
  // that restarts), and `status` may ask many times a second.
  static constexpr int64_t kConfirmTopicLossMs = 10'000;

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

  // Where each of `partitions` partitions starts for `source.start`.
  Result<std::vector<int64_t>> ResolveStart(const std::string& brokers,
                                            const proto::SourceSpec& source, int32_t partitions);
  // Applies one partition count read for a running job (CheckPartitions);
  // true when tasks were added or the job failed.
  bool ApplyPartitionCount(proto::JobInfo& job, const Result<int32_t>& count, int64_t now);
  void FailJob(proto::JobInfo& job, const std::string& error);
  std::string BrokersOf(const proto::JobSpec& spec) const;

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

  // Partition checks (not persisted). A check's lookups are numbered when they
  // start; one that ends after a later-started one for the same job is stale.
  struct TopicLoss {
    int64_t first_seen_ms = 0;  // when a check first saw the topic gone or shrunk
  };
  int64_t last_partition_check_ms_ = 0;
  uint64_t next_check_ticket_ = 0;
  std::map<std::string, uint64_t> applied_check_ticket_;
  std::map<std::string, TopicLoss> topic_loss_;
};

}  // namespace sluice::coordinator
