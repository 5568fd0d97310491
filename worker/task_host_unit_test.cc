// TaskHost on fakes (worker/testing.h), driven pass by pass with Step() and
// a ManualClock: what a task reads, when it checkpoints, how a failed
// checkpoint restarts it, drains, fences, losses and back-pressure. No
// broker, no disk, no threads, no sleeps.

#include <catch2/catch.hpp>
#include <memory>
#include <string>

#include "worker/engine/testing.h"
#include "worker/task_host.h"
#include "worker/testing.h"

namespace sluice::worker {
namespace {

constexpr int64_t kT0 = 1'700'000'000'000;
constexpr int64_t kInterval = 10'000;

// A tumbling count whose every event closes the window before it.
std::shared_ptr<const engine::JobPlan> CountPlan() {
  proto::JobSpec spec = engine::testing::TumblingCountSpec("host");
  spec.set_checkpoint_interval_ms(kInterval);
  return engine::testing::MustCompile(spec);
}

const TaskRef kTask{"host", 0};

struct Rig {
  explicit Rig(bool fenced = false, int64_t max_pending = 200'000, size_t state_memory = 0) {
    options.threads = 0;  // the test runs the loop
    options.state_memory_bytes = state_memory;
    options.commit_threads = 0;
    options.fenced = fenced;
    options.max_pending_records = max_pending;
    auto owned = std::make_unique<testing::FakeWorkerIo>();
    io = owned.get();
    host = std::make_unique<TaskHost>(options, clock, std::move(owned));
    REQUIRE(host->Start().ok());
  }

  // Appends events at the next offsets of partition 0, a second apart, of
  // `users` users in turn.
  void Append(int n, int users = 1) {
    for (int i = 0; i < n; ++i) {
      const std::string user = "u" + std::to_string(1 + next_event_ % users);
      io->log().Append("events", 0, user, engine::testing::Event(user, kT0 + 1000 * next_event_),
                       kT0);
      ++next_event_;
    }
  }

  void Start(int64_t epoch = 1, std::optional<int64_t> start_offset = std::nullopt) {
    host->StartTask(plan, 1, 0, epoch, start_offset);
  }

  // The checkpoint interval passes; the next pass takes the barrier and the
  // one after it encodes and commits (inline).
  void Checkpoint() {
    clock.Advance(kInterval);
    host->Step();
    host->Step();
  }

  // A quarter second passes: the next pass publishes fresh reports.
  void Sync() {
    clock.Advance(250);
    host->Step();
  }

  std::optional<proto::TaskReport> Report() const {
    for (const proto::TaskReport& r : host->Reports()) {
      if (r.job() == kTask.job && r.partition() == kTask.partition) return r;
    }
    return std::nullopt;
  }

  testing::FakeDisk& disk() { return io->disk("host-0"); }
  std::vector<std::string> Output() const { return io->fake_sink().Values("host-out"); }

  ManualClock clock{kT0};
  HostOptions options;
  std::shared_ptr<const engine::JobPlan> plan = CountPlan();
  testing::FakeWorkerIo* io = nullptr;  // owned by the host
  std::unique_ptr<TaskHost> host;
  int64_t next_event_ = 0;
};

TEST_CASE("task host: a task reads its partition and checkpoints once its interval passes") {
  Rig rig;
  rig.Append(3);
  rig.Start();
  rig.host->Step();
  rig.Sync();
  std::optional<proto::TaskReport> r = rig.Report();
  REQUIRE(r.has_value());
  REQUIRE(r->state() == proto::TaskReport::RUNNING);
  REQUIRE(r->consumed() == 3);
  REQUIRE(rig.Output().size() == 2);
  REQUIRE(rig.disk().saves == 0);

  rig.Checkpoint();
  REQUIRE(rig.disk().saves == 1);
  REQUIRE(rig.disk().saved.at(1).first.next_offset == 3);
  // The offset is committed where standard tools see lag.
  REQUIRE(rig.io->log().Committed("sluice-host", "events", 0) == 3);
  rig.Sync();
  REQUIRE(rig.Report()->last_checkpoint_id() == 1);
}

TEST_CASE(
    "task host: a state memory budget moves keys to the task's spill store, output unchanged") {
  // 2-second windows of 500 users, an event a second: every window holds
  // two keys and fires; a 1-byte budget moves every key out between batches.
  auto run = [](size_t budget, bool restart) {
    Rig rig(false, 200'000, budget);
    rig.plan = [] {
      proto::JobSpec spec = engine::testing::TumblingCountSpec("host");
      spec.mutable_window()->set_tumbling_ms(2000);
      spec.mutable_window()->set_allowed_lateness_ms(3000);
      spec.set_checkpoint_interval_ms(kInterval);
      return engine::testing::MustCompile(spec);
    }();
    rig.Append(300, 500);
    rig.Start();
    rig.host->Step();
    rig.Checkpoint();
    rig.Append(300, 500);
    rig.host->Step();
    if (restart) {
      rig.disk().fail_saves = 1;
      rig.Checkpoint();  // fails: the task restarts from checkpoint 1 with a fresh spill
      rig.host->Step();
    }
    rig.Checkpoint();
    rig.Sync();
    const proto::TaskReport r = *rig.Report();
    REQUIRE(r.state() == proto::TaskReport::RUNNING);
    REQUIRE(r.consumed() == 600);
    return std::make_pair(rig.Output(), rig.disk().spills_opened);
  };
  const auto [plain, plain_spills] = run(0, false);
  REQUIRE(plain.size() > 250);
  REQUIRE(plain_spills == 0);
  const auto [bounded, spills] = run(1, false);
  REQUIRE(spills == 1);
  REQUIRE(bounded == plain);
  // A restart opens the spill store again, empty; the replay repeats output
  // from the checkpoint on, and the rest equals the unbounded run's.
  const auto [restarted, restarted_spills] = run(1, true);
  REQUIRE(restarted_spills == 2);
  REQUIRE(restarted.size() > plain.size());
  const auto replayed = static_cast<std::ptrdiff_t>(restarted.size() - plain.size());
  REQUIRE(std::vector<std::string>(restarted.begin(), restarted.end() - replayed) == plain);
  REQUIRE(std::vector<std::string>(restarted.end() - replayed, restarted.end()) ==
          std::vector<std::string>(plain.end() - replayed, plain.end()));
}

TEST_CASE("task host: a failed checkpoint restarts the task from its last one") {
  Rig rig;
  rig.Append(3);
  rig.Start();
  rig.host->Step();
  rig.Checkpoint();
  REQUIRE(rig.disk().saves == 1);
  rig.Append(2);  // offsets 3 and 4: two more window results
  rig.host->Step();
  REQUIRE(rig.Output().size() == 4);

  rig.disk().fail_saves = 1;
  rig.Checkpoint();
  std::optional<proto::TaskReport> r = rig.Report();
  REQUIRE(r->state() == proto::TaskReport::RESTARTING);
  REQUIRE(r->failures() == 1);
  REQUIRE(r->error().find("injected") != std::string::npos);
  REQUIRE(r->failing_since_ms() > 0);
  // Restarted from checkpoint 1 (offset 3): the replay produces the same
  // two records again, byte for byte.
  rig.host->Step();
  const std::vector<std::string> out = rig.Output();
  REQUIRE(out.size() == 6);
  REQUIRE(out[4] == out[2]);
  REQUIRE(out[5] == out[3]);

  rig.Checkpoint();
  rig.Sync();
  r = rig.Report();
  REQUIRE(r->state() == proto::TaskReport::RUNNING);
  REQUIRE(r->error().empty());
  REQUIRE(r->failures() == 1);
  REQUIRE(rig.disk().saved.rbegin()->second.first.next_offset == 5);
}

TEST_CASE("task host: a drain emits the open windows once the partition is consumed") {
  Rig rig;
  rig.Append(3);
  rig.Start();
  rig.host->Step();
  REQUIRE(rig.Output().size() == 2);
  rig.host->StopTask(kTask, StopMode::kDrain);
  rig.host->Step();
  std::optional<proto::TaskReport> r = rig.Report();
  REQUIRE(r->state() == proto::TaskReport::DRAINED);
  REQUIRE(rig.Output().size() == 3);  // the last window, drained
  REQUIRE(rig.disk().saves == 1);     // the final checkpoint
}

TEST_CASE("task host: a drain asked for behind the end goes on to that end") {
  Rig rig;
  rig.Start();
  rig.host->Step();  // started, nothing to read yet
  rig.Append(4);
  // Asked before the task has read the four records: it drains at offset 4.
  rig.host->StopTask(kTask, StopMode::kDrain);
  rig.host->StopTask(kTask, StopMode::kDrain);  // repeated, as heartbeats do
  rig.host->Step();
  std::optional<proto::TaskReport> r = rig.Report();
  REQUIRE(r->state() == proto::TaskReport::DRAINED);
  REQUIRE(r->consumed() == 4);
  REQUIRE(rig.Output().size() == 4);
}

TEST_CASE("task host: a release takes a final checkpoint; a fence stops without one") {
  SECTION("release") {
    Rig rig;
    rig.Append(3);
    rig.Start();
    rig.host->Step();
    rig.host->StopTask(kTask, StopMode::kRelease);
    rig.host->Step();
    REQUIRE(rig.Report()->state() == proto::TaskReport::RELEASED);
    REQUIRE(rig.disk().saves == 1);
    REQUIRE(rig.Output().size() == 2);  // nothing drained
  }
  SECTION("fence") {
    Rig rig;
    rig.Append(3);
    rig.Start();
    rig.host->Step();
    rig.host->StopTask(kTask, StopMode::kFence);
    rig.host->Step();
    REQUIRE_FALSE(rig.Report().has_value());
    REQUIRE(rig.disk().saves == 0);
  }
}

TEST_CASE("task host: in cluster mode a task checkpoints only while confirmed") {
  Rig rig(/*fenced=*/true);
  rig.Append(3);
  rig.Start(/*epoch=*/2);
  rig.host->Step();
  rig.Checkpoint();
  REQUIRE(rig.disk().saves == 0);  // never confirmed
  rig.host->Confirm({{kTask, 1}}, rig.clock.NowMillis() + 2 * kInterval);
  rig.Checkpoint();
  REQUIRE(rig.disk().saves == 0);  // confirmed under another epoch
  rig.host->Confirm({{kTask, 2}}, rig.clock.NowMillis() + 2 * kInterval);
  rig.Checkpoint();
  REQUIRE(rig.disk().saves == 1);
  REQUIRE(rig.disk().saved.at(1).first.epoch == 2);
  // The lease runs out: processing goes on, checkpoints wait.
  rig.clock.Advance(2 * kInterval);
  rig.Append(2);
  rig.Checkpoint();
  REQUIRE(rig.disk().saves == 1);
  rig.Sync();
  REQUIRE(rig.Report()->consumed() == 5);
}

TEST_CASE("task host: records deleted before the task read them count as lost") {
  Rig rig;
  rig.Append(10);
  rig.io->log().SetLogStart("events", 0, 6);
  rig.Start(1, /*start_offset=*/2);
  rig.host->Step();  // out of range at 2: skips to 6
  rig.host->Step();  // reads 6..9
  rig.Sync();
  std::optional<proto::TaskReport> r = rig.Report();
  REQUIRE(r->lost() == 4);
  REQUIRE(r->lost_from_offset() == 2);
  REQUIRE(r->lost_to_offset() == 6);
  REQUIRE(r->consumed() == 4);
}

TEST_CASE("task host: the partitions pause while the sink is backed up") {
  Rig rig(/*fenced=*/false, /*max_pending=*/2);
  rig.io->fake_sink().set_auto_ack(false);
  rig.Append(5);
  rig.Start();
  rig.host->Step();  // four window results, none acknowledged
  REQUIRE(rig.io->last_source()->paused(0));
  rig.Sync();
  REQUIRE(rig.Report()->paused() == 1);
  rig.io->fake_sink().Ack();
  rig.host->Step();
  REQUIRE_FALSE(rig.io->last_source()->paused(0));
}

TEST_CASE("task host: an update swaps the plan at a checkpoint") {
  Rig rig;
  rig.Append(3);
  rig.Start();
  rig.host->Step();
  proto::JobSpec spec = rig.plan->spec();
  spec.mutable_sinks()->set_output("host-out");  // same layout, a new version
  auto updated = engine::JobPlan::Compile(spec);
  REQUIRE(updated.ok());
  rig.host->UpdateTask(kTask, *updated, 2);
  rig.host->Step();
  REQUIRE(rig.Report()->version() == 2);
  REQUIRE(rig.disk().saves == 1);
}

TEST_CASE("task host: shutting down takes a final checkpoint of every task") {
  Rig rig;
  rig.Append(3);
  rig.Start();
  rig.host->Step();
  rig.host->Shutdown(/*drain=*/true);
  REQUIRE(rig.disk().saves == 1);
  REQUIRE(rig.Output().size() == 3);
  REQUIRE(rig.Report()->state() == proto::TaskReport::RELEASED);
}

}  // namespace
}  // namespace sluice::worker
