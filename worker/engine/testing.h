#pragma once

// Test helpers shipped with the engine: a job spec to start from and a
// harness that drives one TaskProcessor with a ManualClock and a
// CollectingSink, so window and rule tests never sleep and need no broker.

#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "common/clock.h"
#include "worker/engine/job_plan.h"
#include "worker/engine/record.h"
#include "worker/engine/state_store.h"
#include "worker/engine/task_processor.h"

namespace sluice::engine::testing {

// A job over topic "events", keyed by "user", event time "ts", with no
// out-of-orderness, no idle advance and no time bounds. Add rules or a window.
proto::JobSpec BaseSpec(const std::string& name = "test");

proto::AggregateSpec Agg(const std::string& name, proto::AggregateSpec::Function fn,
                         const std::string& field = "");

// BaseSpec(name) with a tumbling count over 1 s windows: fed events a second
// apart, every event closes the window before it (one result per event after
// the first).
proto::JobSpec TumblingCountSpec(const std::string& name);

// Every entry of `store`, which must scan.
std::map<std::string, std::string> ReadAll(const StateStore& store);

// Compiles `spec`, which must compile.
std::shared_ptr<const JobPlan> MustCompile(const proto::JobSpec& spec);

// {"user":"<user>","ts":<ts>} plus `extra` (already JSON, e.g. "\"amount\":5").
std::string Event(const std::string& user, int64_t ts, const std::string& extra = "");

class Harness {
 public:
  explicit Harness(const proto::JobSpec& spec, int64_t now_ms = 1'700'000'000'000);

  // Feeds records one at a time, with consecutive offsets from 0.
  void Feed(const std::string& payload);
  void Feed(const std::vector<std::string>& payloads);
  // Feeds `payloads` in one ProcessBatch call, with consecutive offsets.
  void FeedBatch(std::span<const std::string> payloads);

  std::vector<std::string> Output() const { return Values(OutputStream::kOutput); }
  std::vector<std::string> Late() const { return Values(OutputStream::kLate); }
  std::vector<std::string> DeadLetters() const { return Values(OutputStream::kDeadLetter); }
  std::vector<std::string> Values(OutputStream stream) const;

  ManualClock& clock() { return clock_; }
  CollectingSink& sink() { return sink_; }
  TaskProcessor& task() { return *task_; }
  // Replaces the task by a new one restored from `store`.
  void RestoreFrom(const class StateStore& store);
  int64_t next_offset() const { return next_offset_; }
  void set_next_offset(int64_t offset) { next_offset_ = offset; }

 private:
  ManualClock clock_;
  CollectingSink sink_;
  std::shared_ptr<const JobPlan> plan_;
  std::unique_ptr<TaskProcessor> task_;
  int64_t next_offset_ = 0;
};

// A deterministic stream of `n` records for `users` users (field "user"),
// with pages, amounts and countries, some out of order (within 40 s), some far
// behind (late for most jobs) and some malformed (dead letters).
std::vector<std::string> RandomEvents(uint64_t seed, int n, int users);

// Jobs over such streams: sessions (count, count_distinct, last, sum; 60 s gap,
// 20 s lateness) and fraud-like rules (a plain rule and two rolling ones).
proto::JobSpec SessionJob();
proto::JobSpec RuleJob();

// Reads one top-level field of a JSON object: strings without quotes, other
// values as JSON text; "<missing>" if absent.
std::string Field(const std::string& json, const std::string& key);
int64_t IntField(const std::string& json, const std::string& key);

}  // namespace sluice::engine::testing
