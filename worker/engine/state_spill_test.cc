// The state memory budget: keys moved out of memory and read back never
// change a task's output or its checkpoints.

#include "worker/engine/state_spill.h"

#include <algorithm>
#include <catch2/catch.hpp>
#include <initializer_list>
#include <map>
#include <random>
#include <span>

#include "worker/engine/key_filter.h"
#include "worker/engine/state_store.h"
#include "worker/engine/testing.h"
#include "worker/engine/time_util.h"

namespace sluice::engine {
namespace {

using testing::Agg;
using testing::BaseSpec;
using testing::MustCompile;
using testing::RandomEvents;

TEST_CASE("spilled timer names sort as the timer queue takes timers out") {
  std::mt19937_64 rng(3);
  const std::vector<std::string> keys = {
      "", "a", "ab", "abc", std::string("a\0", 2), std::string("a\0b", 3), "a\x01", "\xff", "b"};
  struct T {
    int64_t time;
    std::string key;
    int64_t start;
    TimerKind kind;
  };
  std::vector<T> timers;
  for (int i = 0; i < 400; ++i) {
    const int64_t times[] = {kMinTime, -5, 0, 7, kMaxTime};
    timers.push_back(T{times[rng() % 5], keys[rng() % keys.size()],
                       static_cast<int64_t>(rng() % 5) - 2, static_cast<TimerKind>(rng() % 3)});
  }
  auto before = [](const T& a, const T& b) {
    if (a.time != b.time) return a.time < b.time;
    if (const int c = a.key.compare(b.key); c != 0) return c < 0;
    if (a.start != b.start) return a.start < b.start;
    return a.kind < b.kind;
  };
  for (const T& a : timers) {
    const std::string name = SpilledTimerName(a.time, a.key, a.start, a.kind);
    SpilledTimer back;
    REQUIRE(ParseSpilledTimerName(name, &back));
    REQUIRE(back.time == a.time);
    REQUIRE(back.key == a.key);
    REQUIRE(back.start == a.start);
    REQUIRE(back.kind == a.kind);
    for (const T& b : timers) {
      INFO(a.key.size() << " " << b.key.size());
      REQUIRE(before(a, b) == (name < SpilledTimerName(b.time, b.key, b.start, b.kind)));
    }
  }
  SpilledTimer t;
  REQUIRE_FALSE(ParseSpilledTimerName("k/abc", &t));
  REQUIRE_FALSE(ParseSpilledTimerName(SpilledTimerName(1, "a", 2, TimerKind::kFire) + "x", &t));
}

TEST_CASE("the key filter never loses a key and rarely holds one it was not given") {
  KeyFilter filter(10'000);
  std::mt19937_64 rng(1);
  std::vector<uint64_t> added;
  for (int i = 0; i < 10'000; ++i) added.push_back(rng());
  for (uint64_t h : added) filter.Add(h);
  for (uint64_t h : added) REQUIRE(filter.MayContain(h));
  int false_positives = 0;
  for (int i = 0; i < 10'000; ++i) false_positives += filter.MayContain(rng()) ? 1 : 0;
  REQUIRE(false_positives < 300);  // ~1% expected
  filter.Clear(10'000);
  REQUIRE_FALSE(filter.MayContain(added[0]));
}

// One task driven by a script: batches, steps of snapshots between them, and
// idle advances. With `budget` > 0 it holds its state to that many bytes
// through a spill store.
class Run {
 public:
  Run(const proto::JobSpec& spec, size_t budget)
      : plan_(MustCompile(spec)), task_(std::make_unique<TaskProcessor>(plan_, clock_, sink_)) {
    if (budget > 0) task_->SetStateSpill(&spill_, budget);
    budget_ = budget;
  }

  // Restores from `store` into a new task (and a new spill store).
  void Restore(const StateStore& store) {
    sink_.Clear();
    spill_ = InMemoryStateStore();
    task_ = std::make_unique<TaskProcessor>(plan_, clock_, sink_);
    if (budget_ > 0) task_->SetStateSpill(&spill_, budget_);
    REQUIRE(task_->Restore(store).ok());
  }

  void Feed(std::span<const std::string> payloads, int64_t first_offset) {
    std::vector<SourceRecord> batch;
    int64_t offset = first_offset;
    for (const std::string& p : payloads) {
      batch.push_back(SourceRecord{p, "", SourcePosition{"events", 0, offset++}});
    }
    task_->ProcessBatch(batch);
    REQUIRE(task_->status().ok());
  }

  ManualClock& clock() { return clock_; }
  TaskProcessor& task() { return *task_; }
  const CollectingSink& sink() const { return sink_; }
  InMemoryStateStore& checkpoints() { return checkpoints_; }
  const InMemoryStateStore& spill() const { return spill_; }

 private:
  ManualClock clock_{1'700'000'000'000};
  CollectingSink sink_;
  std::shared_ptr<const JobPlan> plan_;
  InMemoryStateStore spill_;
  InMemoryStateStore checkpoints_;
  std::unique_ptr<TaskProcessor> task_;
  size_t budget_ = 0;
};

std::vector<proto::JobSpec> Jobs() {
  using F = proto::AggregateSpec;
  std::vector<proto::JobSpec> jobs;
  proto::JobSpec tumbling = BaseSpec("tumbling");
  tumbling.mutable_source()->set_max_out_of_orderness_ms(30'000);
  tumbling.mutable_window()->set_tumbling_ms(60'000);
  tumbling.mutable_window()->set_allowed_lateness_ms(90'000);
  tumbling.set_filter("amount % 9 != 0");
  tumbling.mutable_source()->set_idle_timeout_ms(4'000);
  *tumbling.add_aggregates() = Agg("n", F::COUNT);
  jobs.push_back(tumbling);

  proto::JobSpec sliding = BaseSpec("sliding");
  sliding.mutable_source()->set_max_out_of_orderness_ms(30'000);
  sliding.mutable_window()->mutable_sliding()->set_size_ms(120'000);
  sliding.mutable_window()->mutable_sliding()->set_every_ms(40'000);
  *sliding.add_aggregates() = Agg("n", F::COUNT);
  *sliding.add_aggregates() = Agg("total", F::SUM, "amount");
  jobs.push_back(sliding);

  jobs.push_back(testing::SessionJob());

  proto::JobSpec dedup = testing::TumblingCountSpec("dedup");
  dedup.mutable_source()->set_max_out_of_orderness_ms(30'000);
  dedup.mutable_window()->set_tumbling_ms(300'000);
  dedup.mutable_dedup()->set_field("amount");
  dedup.mutable_dedup()->set_within_ms(200'000);
  jobs.push_back(dedup);

  // Rolling-rule keys leave memory once a snapshot has written them.
  jobs.push_back(testing::RuleJob());

  proto::JobSpec rules = testing::RuleJob();
  rules.set_name("rules-dedup");
  rules.mutable_dedup()->set_field("amount");
  rules.mutable_dedup()->set_within_ms(100'000);
  jobs.push_back(rules);
  return jobs;
}

// Runs one script on an unbounded task and on bounded ones, and compares
// every record and every checkpoint.
TEST_CASE("a state memory budget changes neither output nor checkpoints") {
  const std::vector<std::string> events = RandomEvents(7, 4000, 300);
  for (const proto::JobSpec& spec : Jobs()) {
    for (size_t budget : {size_t{1}, size_t{20'000}}) {
      INFO(spec.name() << ", budget " << budget);
      Run plain(spec, 0);
      Run bounded(spec, budget);
      std::mt19937_64 rng(budget + spec.name().size());
      const std::span<const std::string> all(events);
      size_t fed = 0;
      int checkpoints = 0;
      int64_t restore_offset = -1;
      std::map<std::string, std::string> restore_point;
      while (fed < all.size()) {
        const size_t n = std::min(all.size() - fed, 1 + rng() % 60);
        for (Run* r : {&plain, &bounded}) r->Feed(all.subspan(fed, n), static_cast<int64_t>(fed));
        fed += n;
        const uint64_t what = rng() % 10;
        if (what == 0) {
          // A snapshot in steps, with batches between them.
          for (Run* r : {&plain, &bounded}) {
            REQUIRE(r->task().BeginSnapshot(r->checkpoints()).ok());
          }
          while (!plain.task().SnapshotStep(3)) {
            REQUIRE_FALSE(bounded.task().SnapshotStep(3));
            if (fed < all.size() && rng() % 2 == 0) {
              const size_t m = std::min(all.size() - fed, 1 + rng() % 10);
              for (Run* r : {&plain, &bounded}) {
                r->Feed(all.subspan(fed, m), static_cast<int64_t>(fed));
              }
              fed += m;
            }
          }
          while (!bounded.task().SnapshotStep(3)) {
          }
          for (Run* r : {&plain, &bounded}) {
            WriteBatch batch;
            r->task().TakeSnapshot(&batch);
            REQUIRE(r->checkpoints().Write(batch).ok());
          }
          REQUIRE(testing::ReadAll(bounded.checkpoints()) == testing::ReadAll(plain.checkpoints()));
          if (++checkpoints == 3) {
            restore_point = testing::ReadAll(plain.checkpoints());
            restore_offset = plain.task().next_offset();
          }
        } else if (what == 1) {
          for (Run* r : {&plain, &bounded}) {
            r->clock().Advance(5'000);
            r->task().OnProcessingTime();
          }
        }
      }
      for (Run* r : {&plain, &bounded}) r->task().Drain();
      REQUIRE(bounded.task().status().ok());
      REQUIRE(plain.sink().records().size() > 100);
      {
        const auto& a = bounded.sink().records();
        const auto& b = plain.sink().records();
        for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) {
          if (!(a[i] == b[i])) {
            FAIL("record " << i << " of " << a.size() << "/" << b.size() << ": bounded "
                           << a[i].value << " plain " << b[i].value);
          }
        }
      }
      REQUIRE(bounded.sink().records() == plain.sink().records());
      const StateMemoryStats m = bounded.task().state_memory();
      REQUIRE(m.evicted > 0);
      REQUIRE(m.loaded > 0);

      // Restored with the same budget from the third checkpoint (keys leave
      // memory as they are read), the rest of the stream gives the same
      // records as an unbounded task restored from it.
      REQUIRE(restore_offset > 0);
      InMemoryStateStore point;
      WriteBatch b;
      for (const auto& [k, v] : restore_point) b.Put(k, v);
      REQUIRE(point.Write(b).ok());
      for (Run* r : {&plain, &bounded}) {
        r->Restore(point);
        r->Feed(all.subspan(static_cast<size_t>(restore_offset)), restore_offset);
        r->task().Drain();
      }
      REQUIRE(bounded.task().status().ok());
      REQUIRE(bounded.sink().records() == plain.sink().records());
      if (budget == 1) REQUIRE(bounded.task().state_memory().evicted > 0);
    }
  }
}

// Feeds each run the same 100 events of 100 new keys, the `round`th
// hundred, at offsets from *offset on.
void FeedNewKeys(std::initializer_list<Run*> runs, int round, int64_t* offset) {
  std::vector<std::string> batch;
  for (int i = 0; i < 100; ++i) {
    batch.push_back(
        testing::Event("user-" + std::to_string(round * 100 + i), 1'700'000'000'000 + round));
  }
  for (Run* r : runs) r->Feed(batch, *offset);
  *offset += static_cast<int64_t>(batch.size());
}

TEST_CASE("the budget holds the estimate near it while keys stream in") {
  proto::JobSpec spec = testing::TumblingCountSpec("many");
  spec.mutable_window()->set_tumbling_ms(3'600'000);
  Run plain(spec, 0);
  const size_t budget = 200'000;
  Run bounded(spec, budget);
  size_t peak = 0;
  int64_t offset = 0;
  for (int round = 0; round < 100; ++round) {
    FeedNewKeys({&plain, &bounded}, round, &offset);
    peak = std::max(peak, bounded.task().state_memory().resident_bytes);
  }
  const StateMemoryStats m = bounded.task().state_memory();
  REQUIRE(plain.task().state_memory().resident_bytes > 5 * budget);
  // A batch may go over before the pass that follows it.
  REQUIRE(peak <= budget + 100 * 300);
  REQUIRE(m.resident_bytes <= budget);
  REQUIRE(m.spilled_keys + m.resident_keys == 10'000);
  for (Run* r : {&plain, &bounded}) r->task().Drain();
  REQUIRE(bounded.sink().records() == plain.sink().records());
  REQUIRE(plain.sink().records().size() == 10'000);
  // Every key was read back to fire, and nothing is left out of memory.
  REQUIRE(bounded.task().state_memory().loaded >= 9'000);
  REQUIRE(testing::ReadAll(bounded.spill()).empty());
}

TEST_CASE("the budget keeps room in memory for a checkpoint's batch") {
  // Two tasks under one budget see the same keys; one takes checkpoints.
  // Its estimate counts the batch (while it is built, and as much again for
  // the next), so it holds fewer keys in memory, within the same budget.
  proto::JobSpec spec = testing::TumblingCountSpec("many");
  spec.mutable_window()->set_tumbling_ms(3'600'000);
  const size_t budget = 200'000;
  Run checkpointed(spec, budget);
  Run plain(spec, budget);
  int64_t offset = 0;
  size_t largest_batch = 0;
  for (int round = 0; round < 30; ++round) {
    FeedNewKeys({&checkpointed, &plain}, round, &offset);
    if (round % 10 == 9) {
      WriteBatch changes;
      REQUIRE(checkpointed.task().Snapshot(checkpointed.checkpoints(), &changes).ok());
      largest_batch = std::max(largest_batch, changes.bytes());
      REQUIRE(checkpointed.checkpoints().Write(changes).ok());
    }
  }
  REQUIRE(largest_batch > 10'000);
  const StateMemoryStats with = checkpointed.task().state_memory();
  const StateMemoryStats without = plain.task().state_memory();
  REQUIRE(with.resident_bytes <= budget);
  REQUIRE(without.resident_bytes <= budget);
  REQUIRE(with.resident_keys + 30 < without.resident_keys);
  for (Run* r : {&checkpointed, &plain}) r->task().Drain();
  REQUIRE(checkpointed.sink().records() == plain.sink().records());
}

}  // namespace
}  // namespace sluice::engine
