#include "reports/task_reports.h"

#include <catch2/catch.hpp>

namespace sluice::reports {
namespace {

constexpr int64_t kNow = 1'700'000'000'000;

proto::TaskReport Task(int32_t partition, proto::TaskReport::State state, int64_t since_ms,
                       const std::string& error = "") {
  proto::TaskReport r;
  r.set_job("fraud");
  r.set_partition(partition);
  r.set_state(state);
  r.set_failing_since_ms(since_ms);
  r.set_error(error);
  return r;
}

TEST_CASE("health: not ready once a task has failed for longer than the grace") {
  std::vector<proto::TaskReport> reports = {Task(0, proto::TaskReport::RUNNING, 0)};
  CHECK(TaskHealth(reports, kNow).ok());
  // Failing, but not for long: still ready (a restart usually fixes it).
  reports.push_back(Task(1, proto::TaskReport::RESTARTING, kNow - 10'000, "checkpoint failed: x"));
  CHECK(TaskHealth(reports, kNow).ok());
  Status s = TaskHealth(reports, kNow + 25'000);
  REQUIRE(s.code() == StatusCode::kUnavailable);
  CHECK(s.message() == "task fraud-1 RESTARTING for 35 s: checkpoint failed: x");
  reports[1] = Task(1, proto::TaskReport::FAILED, kNow - 31'000, "cannot restart: disk full");
  CHECK(TaskHealth(reports, kNow).message() ==
        "task fraud-1 FAILED for 31 s: cannot restart: "
        "disk full");
  reports[1] = Task(1, proto::TaskReport::RUNNING, 0);
  CHECK(TaskHealth(reports, kNow + 3'600'000).ok());
}

TEST_CASE("metrics: failures, failing and transactions per task") {
  proto::TaskReport r = Task(2, proto::TaskReport::RESTARTING, kNow - 1'000, "x");
  r.set_failures(3);
  r.set_delivery("exactly_once");
  r.set_transactions_committed(40);
  r.set_transactions_aborted(2);
  r.set_commit_ms_total(1'500);
  const std::string text = TaskMetrics({r}, {"w1"}, kNow);
  const std::string labels = "{job=\"fraud\",partition=\"2\",worker=\"w1\"}";
  CHECK(text.find("sluice_task_failures_total" + labels + " 3\n") != std::string::npos);
  CHECK(text.find("sluice_task_failing" + labels + " 1\n") != std::string::npos);
  CHECK(text.find("sluice_task_exactly_once" + labels + " 1\n") != std::string::npos);
  CHECK(text.find("sluice_task_transactions_committed_total" + labels + " 40\n") !=
        std::string::npos);
  CHECK(text.find("sluice_task_transactions_aborted_total" + labels + " 2\n") != std::string::npos);
  CHECK(text.find("sluice_task_commit_seconds_total" + labels + " 1.5\n") != std::string::npos);
}

TEST_CASE("metrics: every outcome of an event, and lag in seconds") {
  proto::TaskReport r = Task(0, proto::TaskReport::RUNNING, 0);
  r.set_filtered(7);
  r.set_deduplicated(2);
  r.set_type_mismatches(5);
  r.set_lost(120);
  r.set_refused_outputs(1);
  r.set_paused(4);
  r.set_lag_ms(2'500);
  const std::string text = TaskMetrics({r}, {"w1"}, kNow);
  const std::string labels = "{job=\"fraud\",partition=\"0\",worker=\"w1\"}";
  for (const std::string& line : {"sluice_task_filtered_total" + labels + " 7\n",
                                  "sluice_task_deduplicated_total" + labels + " 2\n",
                                  "sluice_task_type_mismatches_total" + labels + " 5\n",
                                  "sluice_task_lost_total" + labels + " 120\n",
                                  "sluice_task_refused_outputs_total" + labels + " 1\n",
                                  "sluice_task_paused_total" + labels + " 4\n",
                                  "sluice_task_lag_seconds" + labels + " 2.5\n"}) {
    INFO(line);
    CHECK(text.find(line) != std::string::npos);
  }
}

TEST_CASE("metrics: the state memory budget") {
  proto::TaskReport r = Task(0, proto::TaskReport::RUNNING, 0);
  r.set_state_memory_bytes(900);
  r.set_state_memory_budget_bytes(1'000);
  r.set_keys_in_memory(3);
  r.set_keys_spilled(40);
  r.set_keys_evicted(50);
  r.set_keys_read_back(10);
  const std::string text = TaskMetrics({r}, {"w1"}, kNow);
  const std::string labels = "{job=\"fraud\",partition=\"0\",worker=\"w1\"}";
  for (const std::string& line : {"sluice_task_state_memory_bytes" + labels + " 900\n",
                                  "sluice_task_state_memory_budget_bytes" + labels + " 1000\n",
                                  "sluice_task_keys_in_memory" + labels + " 3\n",
                                  "sluice_task_keys_spilled" + labels + " 40\n",
                                  "sluice_task_keys_evicted_total" + labels + " 50\n",
                                  "sluice_task_keys_read_back_total" + labels + " 10\n"}) {
    INFO(line);
    CHECK(text.find(line) != std::string::npos);
  }
}

}  // namespace
}  // namespace sluice::reports
