// Checkpoint and restore: a task restored from a checkpoint continues with
// output identical to a task that never stopped.

#include "worker/engine/task_processor.h"

#include <catch2/catch.hpp>
#include <random>

#include "worker/engine/state_store.h"
#include "worker/engine/testing.h"

namespace sluice::engine {
namespace {

using testing::Agg;
using testing::BaseSpec;
using testing::Event;
using testing::Harness;

constexpr int64_t T = 1'700'000'000'000;

std::vector<std::string> RandomEvents(uint64_t seed, int n, int users) {
  std::mt19937_64 rng(seed);
  std::vector<std::string> out;
  int64_t t = T;
  const char* pages[] = {"/home", "/search", "/item", "/cart", "/checkout"};
  const char* countries[] = {"DE", "FR", "US"};
  for (int i = 0; i < n; ++i) {
    t += static_cast<int64_t>(rng() % 20'000);
    // Some out-of-order (within and beyond 30 s) and some malformed records.
    int64_t ts = t - static_cast<int64_t>(rng() % 40'000);
    if (rng() % 40 == 0) ts -= 300'000;  // far behind: late
    std::string user = "u" + std::to_string(rng() % users);
    if (rng() % 50 == 0) {
      out.push_back("{\"user\":\"" + user + "\",\"ts\":");
      continue;
    }
    char extra[160];
    std::snprintf(extra, sizeof(extra), "\"page\":\"%s\",\"amount\":%d,\"country\":\"%s\"",
                  pages[rng() % 5], static_cast<int>(rng() % 8000), countries[rng() % 3]);
    out.push_back(Event(user, ts, extra));
  }
  return out;
}

proto::JobSpec SessionJob() {
  proto::JobSpec spec = BaseSpec("sessions");
  spec.mutable_source()->set_max_out_of_orderness_ms(30'000);
  spec.mutable_window()->set_session_gap_ms(60'000);
  spec.mutable_window()->set_allowed_lateness_ms(20'000);
  using F = proto::AggregateSpec;
  *spec.add_aggregates() = Agg("events", F::COUNT);
  *spec.add_aggregates() = Agg("pages", F::COUNT_DISTINCT, "page");
  *spec.add_aggregates() = Agg("first_page", F::FIRST, "page");
  *spec.add_aggregates() = Agg("last_page", F::LAST, "page");
  *spec.add_aggregates() = Agg("revenue", F::SUM, "amount");
  return spec;
}

proto::JobSpec RuleJob() {
  proto::JobSpec spec = BaseSpec("fraud");
  spec.mutable_source()->set_max_out_of_orderness_ms(30'000);
  proto::RuleSpec* big = spec.add_rules();
  big->set_name("large_amount");
  big->set_when("amount > 7000");
  proto::RuleSpec* velocity = spec.add_rules();
  velocity->set_name("velocity");
  velocity->mutable_window()->set_rolling_ms(300'000);
  *velocity->add_aggregates() = Agg("n", proto::AggregateSpec::COUNT);
  velocity->set_when("n > 3");
  proto::RuleSpec* country = spec.add_rules();
  country->set_name("new_country");
  country->mutable_window()->set_rolling_ms(3'600'000);
  *country->add_aggregates() = Agg("n", proto::AggregateSpec::COUNT);
  country->set_when("n > 1 && new_value(country)");
  return spec;
}

proto::JobSpec SlidingJob() {
  proto::JobSpec spec = BaseSpec("sliding");
  spec.mutable_source()->set_max_out_of_orderness_ms(10'000);
  spec.mutable_window()->mutable_sliding()->set_size_ms(120'000);
  spec.mutable_window()->mutable_sliding()->set_every_ms(30'000);
  *spec.add_aggregates() = Agg("events", proto::AggregateSpec::COUNT);
  *spec.add_aggregates() = Agg("hi", proto::AggregateSpec::MAX, "amount");
  return spec;
}

std::vector<CollectingSink::Record> RunStraight(const proto::JobSpec& spec,
                                                const std::vector<std::string>& events) {
  Harness h(spec);
  h.Feed(events);
  h.task().Drain();
  return h.sink().records();
}

TEST_CASE("snapshot, restore, continue: output identical to an uninterrupted run") {
  for (const proto::JobSpec& spec : {SessionJob(), RuleJob(), SlidingJob()}) {
    INFO(spec.name());
    const auto events = RandomEvents(7, 3000, 40);
    const auto expected = RunStraight(spec, events);
    REQUIRE(expected.size() > 20);

    for (size_t cut : {size_t{1}, size_t{700}, size_t{1500}, size_t{2999}}) {
      INFO("cut at " << cut);
      Harness h(spec);
      InMemoryStateStore store;
      // Two checkpoints: the second writes only what changed.
      size_t first = cut / 2;
      for (size_t i = 0; i < first; ++i) h.Feed(events[i]);
      REQUIRE(h.task().Checkpoint(store).ok());
      for (size_t i = first; i < cut; ++i) h.Feed(events[i]);
      REQUIRE(h.task().Checkpoint(store).ok());
      // Records after the checkpoint would be lost with the process: replay
      // them into a restored task.
      h.RestoreFrom(store);
      REQUIRE(h.task().next_offset() == static_cast<int64_t>(cut));
      for (size_t i = cut; i < events.size(); ++i) h.Feed(events[i]);
      h.task().Drain();
      REQUIRE(h.sink().records() == expected);
    }
  }
}

TEST_CASE("a replay from a checkpoint re-emits byte-identical records") {
  const auto events = RandomEvents(11, 1000, 20);
  Harness h(SessionJob());
  InMemoryStateStore store;
  for (size_t i = 0; i < 400; ++i) h.Feed(events[i]);
  REQUIRE(h.task().Checkpoint(store).ok());
  size_t before = h.sink().records().size();
  for (size_t i = 400; i < 1000; ++i) h.Feed(events[i]);
  std::vector<CollectingSink::Record> first_run(h.sink().records().begin() + before,
                                                h.sink().records().end());
  REQUIRE_FALSE(first_run.empty());
  // "Crash": restore the checkpoint and replay from its offset.
  h.sink().Clear();
  h.RestoreFrom(store);
  h.set_next_offset(h.task().next_offset());
  for (size_t i = 400; i < 1000; ++i) h.Feed(events[i]);
  REQUIRE(h.sink().records() == first_run);
}

TEST_CASE("checkpoints are incremental: only changed keys are written") {
  proto::JobSpec spec = SessionJob();
  Harness h(spec);
  InMemoryStateStore store;
  for (int u = 0; u < 50; ++u) h.Feed(Event("u" + std::to_string(u), T + u));
  REQUIRE(h.task().Checkpoint(store).ok());
  REQUIRE(store.last_batch_size() == 52);  // 50 keys + meta + queued events
  h.Feed(Event("u7", T + 100));
  REQUIRE(h.task().Checkpoint(store).ok());
  REQUIRE(store.last_batch_size() == 3);  // u7 + meta + queued events
  h.task().Drain();
  REQUIRE(h.task().Checkpoint(store).ok());
  REQUIRE(store.last_batch_size() == 52);  // 50 deletes + meta + queued events
  REQUIRE(store.size() == 2);
}

TEST_CASE("restoring another job's state is refused") {
  Harness h(SessionJob());
  h.Feed(Event("u1", T));
  InMemoryStateStore store;
  REQUIRE(h.task().Checkpoint(store).ok());
  auto plan = JobPlan::Compile(RuleJob());
  ManualClock clock;
  CollectingSink sink;
  TaskProcessor other(*plan, clock, sink);
  Status s = other.Restore(store);
  REQUIRE(s.code() == StatusCode::kFailedPrecondition);
}

TEST_CASE("counters reconcile: consumed = processed + late + dead_lettered") {
  for (const proto::JobSpec& spec : {SessionJob(), RuleJob(), SlidingJob()}) {
    Harness h(spec);
    h.Feed(RandomEvents(3, 2000, 30));
    const TaskCounters& c = h.task().counters();
    INFO(spec.name());
    REQUIRE(c.consumed == 2000);
    REQUIRE(c.dead_lettered > 0);
    REQUIRE(c.late > 0);
    REQUIRE(c.consumed == c.processed + c.late + c.dead_lettered);
    REQUIRE(h.DeadLetters().size() == static_cast<size_t>(c.dead_lettered));
    REQUIRE(h.Late().size() == static_cast<size_t>(c.late));
  }
}

}  // namespace
}  // namespace sluice::engine
