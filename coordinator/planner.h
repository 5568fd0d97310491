#pragma once

// The assignment planner: decides which live worker runs each task (job, Kafka
// partition). Pure: no I/O, no clock, no randomness; the coordinator calls it
// whenever tasks or workers change and ships the result with a new epoch.
//
// Promises of PlanAssignment (tested in planner_test.cc):
//  1. Every task in `tasks` is on exactly one worker of `workers`.
//  2. Per job, the task counts of any two live workers differ by at most one
//     (a worker with none of the job's tasks counts as 0).
//  3. Overall, the task counts of any two live workers differ by at most one.
//  4. Sticky: among all plans meeting 1-3, it returns one that moves the fewest
//     tasks away from their current live worker. So a plan that already meets
//     1-3 is returned unchanged, a leaving worker moves only its own tasks when
//     the rest stays balanced, and a joining worker takes only what it must.
//  5. Deterministic: the output depends only on the sets and the map in the
//     input, not on the order of `workers` or `tasks`.
//
// Thread safety: the functions are pure and may be called from any thread.

#include <compare>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace sluice::coordinator {

// The unit of assignment, state and parallelism: one Kafka partition of a job.
struct TaskKey {
  std::string job;
  int32_t partition = 0;

  auto operator<=>(const TaskKey&) const = default;
  bool operator==(const TaskKey&) const = default;

  // "job/partition", e.g. "fraud/3".
  std::string ToString() const;
};

struct PlanInput {
  // Every task that must run now. Duplicates are ignored.
  std::vector<TaskKey> tasks;
  // Who holds each task now. May name workers that are gone and tasks that are
  // no longer in `tasks`; both are ignored (their tasks are placed afresh).
  std::map<TaskKey, std::string> current;
  // The live workers, in any order; ids unique.
  std::vector<std::string> workers;
};

// Returns task -> live worker for every task in `in.tasks`, meeting promises
// 1-5 above. Empty when there are no live workers.
std::map<TaskKey, std::string> PlanAssignment(const PlanInput& in);

// Number of tasks present in both plans whose worker differs between them.
int CountMoves(const std::map<TaskKey, std::string>& before,
               const std::map<TaskKey, std::string>& after);

}  // namespace sluice::coordinator
