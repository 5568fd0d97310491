#pragma once

// CoordinatorClient: the worker's side of the control plane in cluster mode.
// Registers with the coordinator, then heartbeats: each heartbeat carries the
// reports of the worker's tasks, and each reply the full set of tasks the
// worker should hold, with epochs. Reconcile turns the difference into
// TaskHost commands:
//   assigned, not running            -> start (restores the last checkpoint)
//   running with another epoch       -> restart under the new epoch
//   assigned with stop / drain       -> release / drain (final checkpoint)
//   newer job version                -> update at a batch boundary
//   running, no longer assigned      -> fence: stop without a checkpoint
// Every successful heartbeat extends the time the host may checkpoint to
// lease - heartbeat from now; while the coordinator is unreachable the tasks
// keep processing and checkpoints wait.

#include <atomic>
#include <map>
#include <memory>
#include <string>
#include <utility>

#include "common/clock.h"
#include "proto/sluice.pb.h"
#include "worker/task_host.h"

namespace sluice::worker {

// How a call to the coordinator ended.
struct RpcStatus {
  enum class Code {
    kOk,
    kUnreachable,   // unavailable or timed out: the next call connects afresh
    kDuplicate,     // another live process holds this worker id
    kUnauthorized,  // the token is refused
    kFailed,        // anything else
  };
  Code code = Code::kOk;
  std::string message;
  bool ok() const { return code == Code::kOk; }
};

// The coordinator's worker service, as the client calls it (the gRPC one is
// made in adapters.h; tests use a fake).
class CoordinatorRpc {
 public:
  virtual ~CoordinatorRpc() = default;
  virtual RpcStatus Register(const proto::RegisterRequest& request,
                             proto::RegisterResponse* response) = 0;
  virtual RpcStatus Heartbeat(const proto::HeartbeatRequest& request,
                              proto::HeartbeatResponse* response) = 0;
  // Drops the connection; the next call makes a new one.
  virtual void Reconnect() = 0;
  // Where the coordinator is, for messages.
  virtual std::string address() const = 0;
};

class CoordinatorClient {
 public:
  // `instance` names this process's data directory (see RegisterRequest).
  CoordinatorClient(std::unique_ptr<CoordinatorRpc> rpc, std::string worker_id, int threads,
                    TaskHost& host, const Clock& clock, std::string instance = "");
  ~CoordinatorClient();

  // Runs Beat until `stop`, waiting between beats.
  void Run(const std::atomic<bool>& stop);

  // One round: registers if this worker is not registered, else sends a
  // heartbeat and applies its reply (Reconcile, then Confirm). Returns how
  // long to wait before the next round.
  int64_t Beat();

  // After the host has shut down (final checkpoints taken): tells the
  // coordinator this worker is leaving, with the final reports, so its tasks
  // move at once instead of after the lease.
  void Leave();

  // Applies one heartbeat reply (public for tests).
  void Reconcile(const proto::HeartbeatResponse& reply);

  bool registered() const { return registered_; }

 private:
  std::shared_ptr<const engine::JobPlan> PlanFor(const proto::JobInfo& job);
  // Logs a failed call, at most every 10 s.
  void Warn(const RpcStatus& st);

  std::unique_ptr<CoordinatorRpc> rpc_;
  std::string worker_id_;
  std::string instance_;
  std::string hostname_;
  int threads_;
  TaskHost& host_;
  const Clock& clock_;
  bool registered_ = false;
  int64_t heartbeat_ms_ = 1000;
  int64_t lease_ms_ = 5000;
  int64_t last_warning_ = 0;
  std::map<std::string, std::pair<int64_t, std::shared_ptr<const engine::JobPlan>>> plans_;
};

}  // namespace sluice::worker
