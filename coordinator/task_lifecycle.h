#pragma once

// TaskLifecycle: the life of one task (job, partition) as the coordinator
// sees it, as an explicit state machine. Pure: no clock, no store, no lock;
// the coordinator owns one per task and persists its four fields.
//
//                 Assign(w)                 Plan(t != owner)
//   kUnassigned ------------> kRunning ------------------------> kMoving
//        ^                    |  ^   <------------------------    |
//        |  Failed, OwnerGone |  |    Plan(owner), TargetGone     |
//        +--------------------+  +--------------------------------+
//                                   Released: Assign(target), epoch + 1
//
//   the job stops or drains (BeginStop):  kRunning, kMoving -> kStopping
//   kStopping --Released (stop) / Drained (drain)--> kDone
//   kStopping without an owner --Assign(w)--> kStopping on w (it restores
//   the task to finish it)
//
// Invariants: an owner holds the task under exactly one epoch; every
// change of owner, and a restart of the owner (Fence), takes the next epoch,
// so a stale owner is fenced; a task never moves to its target before its
// owner released it (a graceful move, no replay, never two owners); a done
// task is never assigned again.

#include <cstdint>
#include <string>

#include "proto/sluice.pb.h"

namespace sluice::coordinator {

class TaskLifecycle {
 public:
  enum class Phase { kUnassigned, kRunning, kMoving, kStopping, kDone };

  TaskLifecycle() = default;
  // As stored.
  TaskLifecycle(std::string owner, int64_t epoch, std::string moving_to, bool done)
      : owner_(std::move(owner)), epoch_(epoch), moving_to_(std::move(moving_to)), done_(done) {}

  // The phase, given the state of the task's job.
  Phase phase(proto::JobState job) const;
  const std::string& owner() const { return owner_; }
  int64_t epoch() const { return epoch_; }
  const std::string& moving_to() const { return moving_to_; }
  bool done() const { return done_; }

  // Hands the task to `worker` under the next epoch; calls off a move.
  void Assign(const std::string& worker);
  // The owner registered again, so it is a new process: the next epoch,
  // which fences the old one.
  void Fence() { ++epoch_; }
  // The planner's placement for a task of a running job that has an owner:
  // its owner (a move in progress is called off) or another worker (the
  // owner is asked to release it for that one).
  void Plan(const std::string& target);
  // The job stops or drains: a move in progress is called off and the owner
  // finishes the task.
  void BeginStop();

  // What the owner reported under the current epoch. Released: a stopping
  // job's task is done; a moving task goes to its target under the next
  // epoch (not when the owner is leaving: then it is unassigned); otherwise
  // it is unassigned.
  void Released(proto::JobState job, bool owner_leaving);
  // Drained: a draining job's task is done.
  void Drained(proto::JobState job);
  // Failed, or the owner is gone (left, or its lease expired): unassigned.
  void OwnerGone() { owner_.clear(); }
  // The move target is gone: the move is called off.
  void TargetGone() { moving_to_.clear(); }
  // The job has stopped: nobody holds its tasks any more.
  void Retire() { owner_.clear(); }

  bool operator==(const TaskLifecycle& o) const {
    return owner_ == o.owner_ && epoch_ == o.epoch_ && moving_to_ == o.moving_to_ &&
           done_ == o.done_;
  }

 private:
  std::string owner_;
  int64_t epoch_ = 0;
  std::string moving_to_;
  bool done_ = false;
};

const char* PhaseName(TaskLifecycle::Phase phase);

}  // namespace sluice::coordinator
