// The phases of a checkpoint on fakes: the barrier seals a generation, the
// commit waits for it, saves the state of the barrier, and ends failed when
// a delivery or the save fails, the fence refuses, or a stop cancels it.
// The background executor is a queue the test runs: no threads, no sleeps.

#include "worker/checkpointer.h"

#include <catch2/catch.hpp>
#include <deque>
#include <functional>
#include <thread>

#include "worker/engine/task_processor.h"
#include "worker/engine/testing.h"
#include "worker/task_sink.h"
#include "worker/testing.h"

namespace sluice::worker {
namespace {

constexpr int64_t kT0 = 1'700'000'000'000;

// A tumbling count whose every event closes the window before it: one
// output record per event after the first.
std::shared_ptr<const engine::JobPlan> CountPlan() {
  proto::JobSpec spec = engine::testing::TumblingCountSpec("ckpt");
  return engine::testing::MustCompile(spec);
}

struct Rig {
  explicit Rig(bool background = true) {
    auto t = io.OpenCheckpoints("ckpt", 0, "ckpt-0");
    REQUIRE(t.ok());
    target = std::move(*t);
    auto s = target->OpenState(/*wipe=*/true);
    REQUIRE(s.ok());
    state = *s;
    processor = std::make_unique<engine::TaskProcessor>(plan, clock, sink);
    sink.set_processor(processor.get());
    Checkpointer::Parts parts;
    parts.task_name = "ckpt-0";
    parts.target = target.get();
    parts.state = state;
    parts.sink = &sink;
    parts.deliveries = &deliveries;
    if (background) {
      parts.background = [this](std::function<void()> work) { queued.push_back(std::move(work)); };
    }
    checkpointer = std::make_unique<Checkpointer>(std::move(parts));
  }
  ~Rig() {
    RunBackground();
    checkpointer.reset();
  }

  // Feeds events at offsets [from, to), one second of event time apart.
  void Feed(int64_t from, int64_t to) {
    std::vector<engine::SourceRecord> records;
    for (int64_t i = from; i < to; ++i) {
      payloads.push_back(engine::testing::Event("u1", kT0 + 1000 * i));
      records.push_back({payloads.back(), "u1", {"events", 0, i}});
    }
    processor->ProcessBatch(records);
  }

  Checkpointer::Barrier At(std::function<bool()> may_commit = {}) {
    Checkpointer::Barrier b;
    b.meta.job = "ckpt";
    b.meta.partition = 0;
    b.meta.epoch = 1;
    b.meta.created_ms = clock.NowMillis();
    b.may_commit = std::move(may_commit);
    b.started_empty = true;
    return b;
  }

  // Runs what was handed to the background executor.
  void RunBackground() {
    while (!queued.empty()) {
      std::function<void()> work = std::move(queued.front());
      queued.pop_front();
      work();
    }
  }

  // Encodes the whole snapshot and runs the commit.
  CheckpointOutcome Finish() {
    checkpointer->Encode(*processor, 1'000'000);
    RunBackground();
    std::optional<CheckpointOutcome> done = checkpointer->Poll();
    REQUIRE(done.has_value());
    return std::move(*done);
  }

  testing::FakeDisk& disk() { return io.disk("ckpt-0"); }

  ManualClock clock{kT0};
  testing::FakeWorkerIo io;
  TaskDeliveries deliveries;
  TaskCarry carry;
  std::shared_ptr<const engine::JobPlan> plan = CountPlan();
  TaskSink sink{*plan, 0, "ckpt-0", clock, io.sink(), &deliveries[0], &carry};
  std::unique_ptr<CheckpointTarget> target;
  engine::StateStore* state = nullptr;
  std::deque<std::string> payloads;
  std::unique_ptr<engine::TaskProcessor> processor;
  std::deque<std::function<void()>> queued;
  std::unique_ptr<Checkpointer> checkpointer;  // last: destroyed first
};

TEST_CASE("checkpointer: the barrier seals the records so far; later ones count apart") {
  Rig rig;
  rig.io.fake_sink().set_auto_ack(false);
  rig.Feed(0, 3);  // two windows fire
  REQUIRE(rig.deliveries[0].in_flight.load() == 2);
  REQUIRE(rig.checkpointer->Begin(*rig.processor, rig.At()).ok());
  REQUIRE(rig.checkpointer->in_flight());
  REQUIRE(rig.checkpointer->encoding());
  rig.Feed(3, 5);  // two more, after the barrier
  REQUIRE(rig.deliveries[0].in_flight.load() == 2);
  REQUIRE(rig.deliveries[1].in_flight.load() == 2);
  // A second barrier waits for the first checkpoint to end.
  REQUIRE(rig.checkpointer->Begin(*rig.processor, rig.At()).code() ==
          StatusCode::kFailedPrecondition);

  rig.checkpointer->Encode(*rig.processor, 1'000'000);
  REQUIRE_FALSE(rig.checkpointer->encoding());
  REQUIRE(rig.queued.size() == 1);  // the commit, handed over
  // The commit waits for the sealed generation: acknowledge it from another
  // thread once the commit runs.
  std::thread commit([&] { rig.RunBackground(); });
  REQUIRE_FALSE(rig.checkpointer->Poll().has_value());
  rig.io.fake_sink().Ack();
  commit.join();
  std::optional<CheckpointOutcome> done = rig.checkpointer->Poll();
  REQUIRE(done.has_value());
  REQUIRE(done->status.ok());
  REQUIRE(done->meta.checkpoint_id == 1);
  REQUIRE(done->meta.next_offset == 3);  // the barrier's position, not the task's now
  REQUIRE_FALSE(rig.checkpointer->in_flight());
  REQUIRE_FALSE(rig.checkpointer->Poll().has_value());  // reported once
}

TEST_CASE("checkpointer: the saved state is the barrier's, whatever changed after it") {
  Rig rig;
  rig.Feed(0, 3);
  REQUIRE(rig.checkpointer->Begin(*rig.processor, rig.At()).ok());
  rig.Feed(3, 6);  // changes the key between the barrier and the encoding
  CheckpointOutcome done = rig.Finish();
  REQUIRE(done.status.ok());
  // The checkpoint restores to offset 3, with the window the barrier saw.
  engine::CollectingSink out;
  engine::TaskProcessor restored(rig.plan, rig.clock, out);
  REQUIRE(restored.Restore(rig.disk().saved.at(1).second).ok());
  REQUIRE(restored.next_offset() == 3);
  REQUIRE(restored.open_windows() == 1);
  REQUIRE(restored.counters().window_results == 2);
}

TEST_CASE("checkpointer: a save that fails fails the checkpoint, and nothing is saved") {
  Rig rig;
  rig.Feed(0, 3);
  rig.disk().fail_saves = 1;
  REQUIRE(rig.checkpointer->Begin(*rig.processor, rig.At()).ok());
  CheckpointOutcome done = rig.Finish();
  REQUIRE(done.status.code() == StatusCode::kIoError);
  REQUIRE(done.status.message().find("injected") != std::string::npos);
  REQUIRE(rig.disk().saved.empty());
  // The next checkpoint can begin.
  REQUIRE(rig.checkpointer->Begin(*rig.processor, rig.At()).ok());
  REQUIRE(rig.Finish().status.ok());
  REQUIRE(rig.disk().saves == 1);
}

TEST_CASE("checkpointer: a commit the fence refuses saves nothing") {
  Rig rig;
  rig.Feed(0, 3);
  REQUIRE(rig.checkpointer->Begin(*rig.processor, rig.At([] { return false; })).ok());
  CheckpointOutcome done = rig.Finish();
  REQUIRE(done.status.code() == StatusCode::kFailedPrecondition);
  REQUIRE(rig.disk().saved.empty());
}

TEST_CASE("checkpointer: a record whose delivery failed fails the checkpoint") {
  Rig rig;
  rig.io.fake_sink().set_auto_ack(false);
  rig.Feed(0, 3);
  REQUIRE(rig.checkpointer->Begin(*rig.processor, rig.At()).ok());
  rig.io.fake_sink().Fail("Local: Message timed out");
  CheckpointOutcome done = rig.Finish();
  REQUIRE(done.status.code() == StatusCode::kUnavailable);
  REQUIRE(done.status.message() == "Local: Message timed out");
  REQUIRE(rig.disk().saved.empty());
}

TEST_CASE("checkpointer: a commit cancelled by a stop ends failed and saves nothing") {
  Rig rig;
  rig.io.fake_sink().set_auto_ack(false);
  rig.Feed(0, 3);
  REQUIRE(rig.checkpointer->Begin(*rig.processor, rig.At()).ok());
  rig.checkpointer->Encode(*rig.processor, 1'000'000);  // handed over, not run yet
  rig.checkpointer->Cancel();
  rig.RunBackground();  // the records were never acknowledged: it would wait
  std::optional<CheckpointOutcome> done = rig.checkpointer->Poll();
  REQUIRE(done.has_value());
  REQUIRE(done->status.code() == StatusCode::kUnavailable);
  REQUIRE(done->status.message() == "the task stopped");
  REQUIRE(rig.disk().saved.empty());
}

TEST_CASE("checkpointer: a cancel before the snapshot is complete drops it") {
  Rig rig;
  rig.Feed(0, 3);
  REQUIRE(rig.checkpointer->Begin(*rig.processor, rig.At()).ok());
  rig.checkpointer->Cancel();
  REQUIRE_FALSE(rig.checkpointer->in_flight());
  REQUIRE(rig.queued.empty());
  REQUIRE_FALSE(rig.checkpointer->Poll().has_value());
}

TEST_CASE("checkpointer: records refused in delivery reports become dead letters first") {
  Rig rig;
  rig.io.fake_sink().RefuseNext(1);
  rig.Feed(0, 3);  // the first of the two window results is refused
  REQUIRE(rig.checkpointer->Begin(*rig.processor, rig.At()).ok());
  CheckpointOutcome done = rig.Finish();
  REQUIRE(done.status.ok());
  REQUIRE(done.refused == 1);
  std::vector<std::string> dlq = rig.io.fake_sink().Values("ckpt-dlq");
  REQUIRE(dlq.size() == 1);
  using engine::testing::Field;
  REQUIRE(Field(dlq[0], "reason").find("refused by the broker") != std::string::npos);
  REQUIRE(Field(dlq[0], "sink") == "ckpt-out");
  REQUIRE(Field(dlq[0], "source") ==
          R"({"topic":"events","partition":0,"offset":null,"from_offset":0,"to_offset":3})");
  REQUIRE(rig.io.fake_sink().Values("ckpt-out").size() == 1);
}

TEST_CASE("checkpointer: without a background executor the commit runs when encoded") {
  Rig rig(/*background=*/false);
  rig.Feed(0, 3);
  REQUIRE(rig.checkpointer->Begin(*rig.processor, rig.At()).ok());
  rig.checkpointer->Encode(*rig.processor, 1'000'000);
  std::optional<CheckpointOutcome> done = rig.checkpointer->Poll();
  REQUIRE(done.has_value());
  REQUIRE(done->status.ok());
  // Wait completes an open snapshot itself.
  rig.Feed(3, 4);
  REQUIRE(rig.checkpointer->Begin(*rig.processor, rig.At()).ok());
  std::optional<CheckpointOutcome> waited = rig.checkpointer->Wait(*rig.processor);
  REQUIRE(waited.has_value());
  REQUIRE(waited->status.ok());
  REQUIRE(waited->meta.next_offset == 4);
  REQUIRE(rig.disk().saves == 2);
}

}  // namespace
}  // namespace sluice::worker
