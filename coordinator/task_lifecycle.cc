#include "coordinator/task_lifecycle.h"

namespace sluice::coordinator {

TaskLifecycle::Phase TaskLifecycle::phase(proto::JobState job) const {
  if (done_) return Phase::kDone;
  if (owner_.empty()) return Phase::kUnassigned;
  if (job == proto::STOPPING || job == proto::DRAINING) return Phase::kStopping;
  if (!moving_to_.empty()) return Phase::kMoving;
  return Phase::kRunning;
}

void TaskLifecycle::Assign(const std::string& worker) {
  owner_ = worker;
  moving_to_.clear();
  ++epoch_;
}

void TaskLifecycle::Plan(const std::string& target) {
  if (target == owner_) {
    moving_to_.clear();
  } else {
    moving_to_ = target;  // the owner releases it first
  }
}

void TaskLifecycle::BeginStop() {
  moving_to_.clear();
  done_ = false;
}

void TaskLifecycle::Released(proto::JobState job, bool owner_leaving) {
  if (job == proto::STOPPING) {
    done_ = true;
  } else if (!moving_to_.empty() && !owner_leaving) {
    // A graceful move: the owner has checkpointed and let go.
    const std::string target = moving_to_;
    Assign(target);
  } else {
    owner_.clear();  // reassigned by the next plan
  }
}

void TaskLifecycle::Drained(proto::JobState job) {
  if (job == proto::DRAINING) done_ = true;
}

const char* PhaseName(TaskLifecycle::Phase phase) {
  switch (phase) {
    case TaskLifecycle::Phase::kUnassigned:
      return "unassigned";
    case TaskLifecycle::Phase::kRunning:
      return "running";
    case TaskLifecycle::Phase::kMoving:
      return "moving";
    case TaskLifecycle::Phase::kStopping:
      return "stopping";
    case TaskLifecycle::Phase::kDone:
      return "done";
  }
  return "?";
}

}  // namespace sluice::coordinator
