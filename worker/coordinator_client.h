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

#include "common/clock.h"
#include "proto/sluice.pb.h"
#include "worker/task_host.h"

namespace sluice {
struct ClientSecurity;  // common/grpc_security.h
}  // namespace sluice

namespace sluice::worker {

class CoordinatorClient {
 public:
  // `instance` names this process's data directory (see RegisterRequest).
  // `security`: TLS credentials and the bearer token; null: plaintext
  // without a token.
  CoordinatorClient(std::string address, std::string worker_id, int threads, TaskHost& host,
                    const Clock& clock, std::string instance = "",
                    std::shared_ptr<const ClientSecurity> security = nullptr);
  ~CoordinatorClient();

  // Runs until `stop`.
  void Run(const std::atomic<bool>& stop);

  // After the host has shut down (final checkpoints taken): tells the
  // coordinator this worker is leaving, with the final reports, so its tasks
  // move at once instead of after the lease.
  void Leave();

  // Applies one heartbeat reply (public for tests).
  void Reconcile(const proto::HeartbeatResponse& reply);

 private:
  std::shared_ptr<const engine::JobPlan> PlanFor(const proto::JobInfo& job);
  // (Re)creates the channel to the coordinator.
  void Connect();

  struct Rpc;
  std::string address_;
  std::string worker_id_;
  std::string instance_;
  int threads_;
  TaskHost& host_;
  const Clock& clock_;
  std::shared_ptr<const ClientSecurity> security_;
  std::unique_ptr<Rpc> rpc_;
  std::map<std::string, std::pair<int64_t, std::shared_ptr<const engine::JobPlan>>> plans_;
};

}  // namespace sluice::worker
