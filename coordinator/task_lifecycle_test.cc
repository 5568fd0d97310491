// TaskLifecycle: every transition of the diagram in task_lifecycle.h, and
// the invariants (a new owner or a restarted one takes the next epoch; a
// move waits for the release; a done task stays done).

#include "coordinator/task_lifecycle.h"

#include <catch2/catch.hpp>

namespace sluice::coordinator {
namespace {

using Phase = TaskLifecycle::Phase;

TEST_CASE("a new task is unassigned until it is assigned under epoch 1") {
  TaskLifecycle t;
  CHECK(t.phase(proto::RUNNING) == Phase::kUnassigned);
  t.Assign("w1");
  CHECK(t.phase(proto::RUNNING) == Phase::kRunning);
  CHECK(t.owner() == "w1");
  CHECK(t.epoch() == 1);
}

TEST_CASE("a move waits for the owner's release, then takes the next epoch") {
  TaskLifecycle t("w1", 4, "", false);
  t.Plan("w2");
  CHECK(t.phase(proto::RUNNING) == Phase::kMoving);
  CHECK(t.owner() == "w1");  // still the owner until it releases
  CHECK(t.epoch() == 4);
  t.Plan("w2");  // planned again: nothing changes
  CHECK(t == TaskLifecycle("w1", 4, "w2", false));
  t.Released(proto::RUNNING, /*owner_leaving=*/false);
  CHECK(t == TaskLifecycle("w2", 5, "", false));
  CHECK(t.phase(proto::RUNNING) == Phase::kRunning);
}

TEST_CASE("a move is called off when the owner is planned again or the target is gone") {
  TaskLifecycle t("w1", 2, "w2", false);
  t.Plan("w1");
  CHECK(t == TaskLifecycle("w1", 2, "", false));
  t.Plan("w3");
  t.TargetGone();
  CHECK(t == TaskLifecycle("w1", 2, "", false));
  CHECK(t.phase(proto::RUNNING) == Phase::kRunning);
}

TEST_CASE("a task whose owner fails, leaves or dies is unassigned, keeping its epoch") {
  for (int how = 0; how < 3; ++how) {
    TaskLifecycle t("w1", 3, how == 2 ? "w2" : "", false);
    if (how == 0) t.OwnerGone();                                        // failed or lease expired
    if (how == 1) t.Released(proto::RUNNING, /*owner_leaving=*/false);  // released, no move
    if (how == 2) t.Released(proto::RUNNING, /*owner_leaving=*/true);   // leaving mid-move
    CHECK(t.phase(proto::RUNNING) == Phase::kUnassigned);
    CHECK(t.epoch() == 3);
    t.Assign("w3");
    CHECK(t.epoch() == 4);  // the next owner fences the old one
  }
}

TEST_CASE("a restarted owner keeps its task under the next epoch") {
  TaskLifecycle t("w1", 7, "", false);
  t.Fence();
  CHECK(t == TaskLifecycle("w1", 8, "", false));
}

TEST_CASE("stop: a move is called off and the task is done when its owner releases it") {
  TaskLifecycle t("w1", 2, "w2", false);
  t.BeginStop();
  CHECK(t.phase(proto::STOPPING) == Phase::kStopping);
  CHECK(t.moving_to().empty());
  t.Drained(proto::STOPPING);  // not a drain: ignored
  CHECK(t.phase(proto::STOPPING) == Phase::kStopping);
  t.Released(proto::STOPPING, /*owner_leaving=*/false);
  CHECK(t.phase(proto::STOPPING) == Phase::kDone);
  CHECK(t.owner() == "w1");
  t.Retire();
  CHECK(t.phase(proto::STOPPED) == Phase::kDone);
  CHECK(t.owner().empty());
}

TEST_CASE("drain: the task is done when its owner has drained it") {
  TaskLifecycle t("w1", 2, "", false);
  t.BeginStop();
  CHECK(t.phase(proto::DRAINING) == Phase::kStopping);
  t.Drained(proto::DRAINING);
  CHECK(t.phase(proto::DRAINING) == Phase::kDone);
}

TEST_CASE("a stopping task whose owner is gone is given to a worker to finish it") {
  TaskLifecycle t("w1", 5, "", false);
  t.BeginStop();
  t.OwnerGone();
  CHECK(t.phase(proto::DRAINING) == Phase::kUnassigned);
  t.Assign("w2");
  CHECK(t.phase(proto::DRAINING) == Phase::kStopping);
  CHECK(t.epoch() == 6);
}

TEST_CASE("phases have names for logs and status") {
  CHECK(std::string(PhaseName(Phase::kUnassigned)) == "unassigned");
  CHECK(std::string(PhaseName(Phase::kMoving)) == "moving");
  CHECK(std::string(PhaseName(Phase::kDone)) == "done");
}

}  // namespace
}  // namespace sluice::coordinator
