// Checkpoint and restore: a task restored from a checkpoint continues with
// output identical to a task that never stopped.

#include "worker/engine/task_processor.h"

#include <catch2/catch.hpp>
#include <map>
#include <random>

#include "worker/engine/codec.h"
#include "worker/engine/state_store.h"
#include "worker/engine/testing.h"

namespace sluice::engine {
namespace {

using testing::Agg;
using testing::BaseSpec;
using testing::Event;
using testing::Harness;
using testing::RandomEvents;
using testing::RuleJob;
using testing::SessionJob;

constexpr int64_t T = 1'700'000'000'000;

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
  REQUIRE(h.task().open_windows() == 0);  // the count kept along the way
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

proto::JobSpec LateTumblingJob() {
  proto::JobSpec spec = BaseSpec("late-tumbling");
  spec.mutable_source()->set_max_out_of_orderness_ms(5'000);
  spec.mutable_window()->set_tumbling_ms(60'000);
  spec.mutable_window()->set_allowed_lateness_ms(120'000);
  *spec.add_aggregates() = Agg("events", proto::AggregateSpec::COUNT);
  return spec;
}

TEST_CASE("a snapshot taken in steps while the task goes on is the state at its barrier") {
  for (const proto::JobSpec& spec : {SessionJob(), RuleJob(), SlidingJob(), LateTumblingJob()}) {
    INFO(spec.name());
    const auto events = RandomEvents(11, 3000, 40);
    const auto expected = RunStraight(spec, events);
    REQUIRE(expected.size() > 20);
    for (size_t step : {size_t{1}, size_t{7}}) {
      for (size_t barrier : {size_t{900}, size_t{2000}}) {
        INFO("barrier at " << barrier << ", " << step << " keys per step");
        Harness h(spec);
        InMemoryStateStore store;
        // A first checkpoint, so that the snapshot also has keys to delete.
        for (size_t i = 0; i < barrier / 2; ++i) h.Feed(events[i]);
        REQUIRE(h.task().Checkpoint(store).ok());
        for (size_t i = barrier / 2; i < barrier; ++i) h.Feed(events[i]);
        REQUIRE(h.task().BeginSnapshot(store).ok());
        const size_t emitted_at_barrier = h.sink().records().size();
        const size_t windows_at_barrier = h.task().open_windows();
        // Processing goes on between the steps and changes keys of the
        // snapshot before it has written them.
        size_t i = barrier;
        bool done = false;
        for (; i < events.size() && !done; ++i) {
          h.Feed(events[i]);
          done = h.task().SnapshotStep(step);
        }
        REQUIRE(done);
        REQUIRE(i >= barrier + 5);  // the steps were interleaved with processing
        WriteBatch batch;
        h.task().TakeSnapshot(&batch);
        REQUIRE_FALSE(h.task().snapshot_open());
        REQUIRE(store.Write(batch).ok());
        // A task restored from it and fed the records after the barrier
        // continues as the uninterrupted run.
        std::vector<CollectingSink::Record> out(
            h.sink().records().begin(),
            h.sink().records().begin() + static_cast<ptrdiff_t>(emitted_at_barrier));
        const size_t restored_from = h.sink().records().size();
        h.RestoreFrom(store);
        REQUIRE(h.task().next_offset() == static_cast<int64_t>(barrier));
        REQUIRE(h.task().open_windows() == windows_at_barrier);
        h.set_next_offset(static_cast<int64_t>(barrier));
        for (size_t j = barrier; j < events.size(); ++j) h.Feed(events[j]);
        h.task().Drain();
        out.insert(out.end(), h.sink().records().begin() + static_cast<ptrdiff_t>(restored_from),
                   h.sink().records().end());
        REQUIRE(out == expected);
      }
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

namespace sluice::engine {
namespace {

TEST_CASE("a record at an offset already processed is skipped") {
  Harness h(testing::SessionJob());
  h.Feed({Event("u1", 1'700'000'000'000), Event("u2", 1'700'000'001'000)});
  h.set_next_offset(1);  // the consumer delivers offset 1 again
  h.Feed(Event("u2", 1'700'000'001'000));
  REQUIRE(h.task().counters().consumed == 2);
  REQUIRE(h.task().counters().redelivered == 1);
  REQUIRE(h.task().next_offset() == 2);
}

TEST_CASE("keys created and emptied between checkpoints cost the store nothing") {
  proto::JobSpec spec = BaseSpec("tumbling");
  spec.mutable_window()->set_tumbling_ms(1'000);
  *spec.add_aggregates() = Agg("n", proto::AggregateSpec::COUNT);
  Harness h(spec);
  InMemoryStateStore store;
  REQUIRE(h.task().Checkpoint(store).ok());
  // 500 keys, each with one window that fires and is purged before the next checkpoint.
  for (int u = 0; u < 500; ++u) h.Feed(Event("u" + std::to_string(u), 1'700'000'000'000 + u));
  h.Feed(Event("last", 1'700'000'100'000));
  REQUIRE(h.Output().size() == 500);
  REQUIRE(h.task().Checkpoint(store).ok());
  REQUIRE(store.last_batch_size() == 3);  // "last" + meta + queued events; no deletes
  REQUIRE(store.size() == 3);
}

TEST_CASE("keys swept from the table between checkpoints are left out of the next one") {
  // More emptied keys than the sweep threshold (100K): the sweep erases them
  // from the table while the list of changed keys still refers to their
  // entries, and new keys take those entries over.
  proto::JobSpec spec = BaseSpec("tumbling");
  spec.mutable_window()->set_tumbling_ms(1'000);
  *spec.add_aggregates() = Agg("n", proto::AggregateSpec::COUNT);
  std::vector<std::string> events;
  for (int u = 0; u < 100'200; ++u) events.push_back(Event("u" + std::to_string(u), T + 2'000 * u));
  const size_t cut = events.size() - 50;
  for (int u = 0; u < 100; ++u)
    events.push_back(Event("v" + std::to_string(u), T + 2'000 * (100'200 + u)));
  const auto expected = RunStraight(spec, events);

  Harness h(spec);
  InMemoryStateStore store;
  REQUIRE(h.task().Checkpoint(store).ok());
  for (size_t i = 0; i < cut; ++i) h.Feed(events[i]);
  REQUIRE(h.task().Checkpoint(store).ok());
  REQUIRE(store.size() == 3);  // meta, queued events and the one open window's key
  for (size_t i = cut; i < cut + 25; ++i) h.Feed(events[i]);
  REQUIRE(h.task().Checkpoint(store).ok());
  REQUIRE(store.size() == 3);
  const size_t before = h.sink().records().size();
  std::vector<CollectingSink::Record> out(
      h.sink().records().begin(), h.sink().records().begin() + static_cast<ptrdiff_t>(before));
  h.RestoreFrom(store);
  h.set_next_offset(static_cast<int64_t>(cut + 25));
  for (size_t i = cut + 25; i < events.size(); ++i) h.Feed(events[i]);
  h.task().Drain();
  out.insert(out.end(), h.sink().records().begin() + static_cast<ptrdiff_t>(before),
             h.sink().records().end());
  REQUIRE(out == expected);
}

// ---- Rolling-rule events in chunks ----------------------------------------

proto::JobSpec VelocityJob() {
  proto::JobSpec spec = BaseSpec("velocity");
  proto::RuleSpec* velocity = spec.add_rules();
  velocity->set_name("velocity");
  velocity->mutable_window()->set_rolling_ms(60'000);
  *velocity->add_aggregates() = Agg("n", proto::AggregateSpec::COUNT);
  velocity->set_when("n > 3");
  return spec;
}

// The store's chunks of rolling events: name -> value size.
std::map<std::string, size_t> Chunks(const InMemoryStateStore& store) {
  std::map<std::string, size_t> out;
  REQUIRE(store
              .Scan("r/",
                    [&](std::string_view k, std::string_view v) {
                      out.emplace(std::string(k), v.size());
                      return Status::Ok();
                    })
              .ok());
  return out;
}

TEST_CASE("a checkpoint writes a key's new rolling events, not its whole list") {
  Harness h(VelocityJob());
  InMemoryStateStore store;
  for (int i = 0; i < 100; ++i) h.Feed(Event("u1", T + i * 100));
  REQUIRE(h.task().Checkpoint(store).ok());
  const auto first = Chunks(store);
  REQUIRE(first.size() == 1);
  // The 100th event is still queued (the watermark has not reached it).
  const size_t first_size = first.begin()->second;
  REQUIRE(first_size > 99 * 4);

  h.Feed(Event("u1", T + 10'000));
  REQUIRE(h.task().Checkpoint(store).ok());
  // meta, queued events, the key's entry and one new chunk of one event.
  REQUIRE(store.last_batch_size() == 4);
  const auto second = Chunks(store);
  REQUIRE(second.size() == 2);
  for (const auto& [name, size] : second) {
    if (first.count(name) == 0) REQUIRE(size * 20 < first_size);
  }
}

TEST_CASE("a chunk is deleted once its last rolling event has expired") {
  Harness h(VelocityJob());
  InMemoryStateStore store;
  // One event every 10 s for 10 minutes, a checkpoint after each: with a
  // 60 s window, the store keeps a handful of chunks, not 60.
  size_t most = 0;
  for (int i = 0; i < 60; ++i) {
    h.Feed(Event("u1", T + i * 10'000));
    REQUIRE(h.task().Checkpoint(store).ok());
    most = std::max(most, Chunks(store).size());
  }
  REQUIRE(most >= 5);
  REQUIRE(most <= 8);
  REQUIRE(Chunks(store).size() <= 8);
}

TEST_CASE("a restore drops the expired events of a partly expired chunk") {
  std::vector<std::string> events;
  for (int i = 0; i < 30; ++i) events.push_back(Event("u1", T + i * 1'000));   // one chunk
  for (int i = 70; i < 76; ++i) events.push_back(Event("u1", T + i * 1'000));  // expire half
  const size_t cut = events.size();
  for (int i = 76; i < 100; ++i) events.push_back(Event("u1", T + i * 1'000));
  const auto expected = RunStraight(VelocityJob(), events);
  REQUIRE(expected.size() > 20);

  Harness h(VelocityJob());
  InMemoryStateStore store;
  for (size_t i = 0; i < 30; ++i) h.Feed(events[i]);
  REQUIRE(h.task().Checkpoint(store).ok());
  for (size_t i = 30; i < cut; ++i) h.Feed(events[i]);
  REQUIRE(h.task().Checkpoint(store).ok());
  REQUIRE(Chunks(store).size() == 2);  // the first, partly expired, and the new one
  const size_t before = h.sink().records().size();
  std::vector<CollectingSink::Record> out(
      h.sink().records().begin(), h.sink().records().begin() + static_cast<ptrdiff_t>(before));
  h.RestoreFrom(store);
  h.set_next_offset(static_cast<int64_t>(cut));
  for (size_t i = cut; i < events.size(); ++i) h.Feed(events[i]);
  h.task().Drain();
  out.insert(out.end(), h.sink().records().begin() + static_cast<ptrdiff_t>(before),
             h.sink().records().end());
  REQUIRE(out == expected);
}

TEST_CASE("state of the version that kept rolling events inline is restored and rewritten") {
  // Version 1: the key's entry held its rolling events inline. The job keeps
  // no event fields (count() only), so an event is its time and offset.
  InMemoryStateStore store;
  {
    WriteBatch b;
    std::string meta;
    Encoder e(&meta);
    e.U64(1);
    e.Bytes("velocity");
    e.Bytes("events");
    e.I64(0);                                          // partition
    e.I64(3);                                          // next offset
    e.I64(T + 2'000);                                  // max event time
    e.I64(T + 1'000);                                  // watermark
    e.Bool(true);                                      // seen an event
    e.I64(0);                                          // processing time of the last event
    for (int64_t c : {3, 3, 0, 0, 0, 0, 0}) e.I64(c);  // counters
    b.Put("m", meta);
    std::string key;
    Encoder k(&key);
    k.U64(0);  // windows
    k.U64(2);  // rolling events
    for (int64_t i : {0, 1}) {
      k.I64(T + i * 1'000);
      k.I64(i);
    }
    b.Put("k/u1", key);
    std::string pending;
    Encoder p(&pending);
    p.U64(1);
    p.I64(T + 2'000);
    p.I64(2);
    p.Bytes("u1");
    p.Bytes(Event("u1", T + 2'000));
    b.Put("p", pending);
    REQUIRE(store.Write(b).ok());
  }
  Harness h(VelocityJob());
  h.RestoreFrom(store);
  h.set_next_offset(3);
  // The 4th and 5th events in the window alert, counting the restored three.
  h.Feed(Event("u1", T + 3'000));
  h.Feed(Event("u1", T + 4'000));
  REQUIRE(h.task().Checkpoint(store).ok());
  REQUIRE(Chunks(store).size() == 1);
  REQUIRE(store.Get("m")->value()[0] == 2);  // rewritten as the current version
  h.RestoreFrom(store);
  h.set_next_offset(5);
  h.Feed(Event("u1", T + 5'000));
  h.task().Drain();
  std::vector<int64_t> counts;
  for (const std::string& a : h.Output()) counts.push_back(testing::IntField(a, "n"));
  REQUIRE(counts == std::vector<int64_t>{4, 5, 6});
}

}  // namespace
}  // namespace sluice::engine
