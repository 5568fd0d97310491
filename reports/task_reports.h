#pragma once

// Task reports for people and machines: the worker's --status-file (JSON,
// replaced atomically: {"worker":..,"updated_ms":..,"tasks":[{"job":..,
// "partition":..,"state":..,"next_offset":..,"consumed":..,...}]}) and the
// Prometheus text that /metrics serves (worker and coordinator).

#include <string>
#include <vector>

#include "common/status.h"
#include "proto/sluice.pb.h"

namespace sluice::reports {

void WriteStatusFile(const std::string& path, const std::string& worker_id, int64_t now_ms,
                     const std::vector<proto::TaskReport>& reports);

// Prometheus samples of each task (counters, lag, watermark, checkpoint age),
// labeled job, partition and worker. `workers[i]` is the worker of
// `reports[i]`.
std::string TaskMetrics(const std::vector<proto::TaskReport>& reports,
                        const std::vector<std::string>& workers, int64_t now_ms);

// Whether a worker's tasks are healthy, for /healthz: not ready (Unavailable,
// naming the task and its last error) once a task has been FAILED or
// RESTARTING (its checkpoints failing) for longer than `grace_ms`.
constexpr int64_t kUnhealthyAfterMs = 30'000;
Status TaskHealth(const std::vector<proto::TaskReport>& reports, int64_t now_ms,
                  int64_t grace_ms = kUnhealthyAfterMs);

}  // namespace sluice::reports
