// Task checkpoints against a broker in process (librdkafka's mock cluster):
// the barrier returns at once, the commit waits for the sealed records, and
// what it commits is the state and offset of the barrier.

#include "worker/task.h"

#include <boost/asio/post.hpp>
#include <boost/asio/thread_pool.hpp>
#include <catch2/catch.hpp>
#include <chrono>
#include <deque>
#include <thread>

#include "tools/devbroker/mock_cluster.h"
#include "worker/adapters.h"
#include "worker/engine/testing.h"
#include "worker/state/testing_dir.h"

namespace sluice::worker {
namespace {

using engine::testing::BaseSpec;
using engine::testing::Event;

constexpr int64_t kT0 = 1'700'000'000'000;

// A tumbling count whose every event closes the window before it: one
// output record per event.
std::shared_ptr<const engine::JobPlan> CountPlan() {
  proto::JobSpec spec = engine::testing::TumblingCountSpec("ckpt");
  return engine::testing::MustCompile(spec);
}

struct Fixture {
  Fixture() {
    auto c = devbroker::MockCluster::Create(1, "");
    REQUIRE(c.ok());
    cluster = std::move(*c);
    for (const char* t : {"ckpt-out", "ckpt-late", "ckpt-dlq"}) {
      REQUIRE(cluster->CreateTopic(t, 1).ok());
    }
    auto p = kafka::KafkaProducer::Create(cluster->bootstraps(), {{"message.timeout.ms", "60000"}});
    REQUIRE(p.ok());
    producer = std::move(*p);
    auto b = StateBackend::Open((dir.path() / "state").string(), StateOptions{});
    REQUIRE(b.ok());
    backend = std::move(*b);
    ctx.plan = CountPlan();
    ctx.clock = &clock;
    io_config.producer = producer.get();
    io_config.state = backend.get();
    io_config.checkpoint_uri = "file://" + (dir.path() / "checkpoints").string();
    ctx.background = [this](std::function<void()> work) {
      boost::asio::post(pool, std::move(work));
    };
  }
  ~Fixture() { pool.join(); }

  // Opens the task (again) from what the checkpoint store holds.
  // A task without a checkpoint starts at `start_offset`.
  std::unique_ptr<Task> Open(int64_t start_offset = -1) {
    ios.push_back(std::make_unique<KafkaWorkerIo>(io_config));
    ctx.io = ios.back().get();
    auto t = Task::Open(ctx, 0, 1, &deliveries.emplace_back(), start_offset);
    REQUIRE(t.ok());
    return std::move(*t);
  }

  // Feeds events at offsets [from, to), one second of event time apart.
  void Feed(Task& task, int64_t from, int64_t to) {
    for (int64_t i = from; i < to; ++i) {
      payloads.push_back(Event("u1", kT0 + 1000 * i));
    }
    std::vector<engine::SourceRecord> records;
    for (int64_t i = from; i < to; ++i) {
      records.push_back({payloads[static_cast<size_t>(i)], "u1", {"events", 0, i}});
    }
    task.Process(records);
  }

  // Polls until the checkpoint in flight has finished (10 s deadline).
  CheckpointOutcome Await(Task& task) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (std::chrono::steady_clock::now() < deadline) {
      task.AdvanceCheckpoint(1000);
      if (auto done = task.PollCheckpoint()) return *done;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    FAIL("the checkpoint did not finish in 10 s");
    return {};
  }

  testing::TempDir dir;
  ManualClock clock{kT0};
  std::deque<TaskDeliveries> deliveries;  // outlive the producer's delivery reports
  std::unique_ptr<devbroker::MockCluster> cluster;
  std::unique_ptr<kafka::KafkaProducer> producer;
  std::unique_ptr<StateBackend> backend;
  boost::asio::thread_pool pool{1};
  KafkaIoConfig io_config;
  std::deque<std::unique_ptr<KafkaWorkerIo>> ios;
  JobContext ctx;
  std::deque<std::string> payloads;
};

TEST_CASE("a checkpoint commits the barrier's state and offset while the task goes on") {
  Fixture f;
  auto task = f.Open();
  // With the broker down, the sealed records cannot be acknowledged: the
  // barrier returns, the commit waits, and processing continues.
  REQUIRE(f.cluster->SetBrokerDown(1).ok());
  f.Feed(*task, 0, 10);
  REQUIRE(task->BeginCheckpoint(f.clock.NowMillis(), 60'000).ok());
  REQUIRE_FALSE(task->CheckpointDue(f.clock.NowMillis() + 3'600'000));  // one at a time
  f.Feed(*task, 10, 20);
  REQUIRE(task->snapshotting());
  task->AdvanceCheckpoint(1'000'000);  // completes the snapshot: the commit starts
  REQUIRE_FALSE(task->snapshotting());
  f.Feed(*task, 20, 25);
  REQUIRE(task->next_offset() == 25);
  REQUIRE_FALSE(task->PollCheckpoint().has_value());
  REQUIRE(task->committed_offset() == -1);

  REQUIRE(f.cluster->SetBrokerUp(1).ok());
  CheckpointOutcome done = f.Await(*task);
  REQUIRE(done.status.ok());
  REQUIRE(done.meta.next_offset == 10);
  REQUIRE(task->committed_offset() == 10);
  REQUIRE(task->last_checkpoint_id() == done.meta.checkpoint_id);
  REQUIRE_FALSE(task->PollCheckpoint().has_value());  // reported once

  // A restart resumes from the barrier: offset 10 with the state of 10 events
  // (9 windows fired, the tenth open).
  task.reset();
  auto again = f.Open();
  REQUIRE(again->next_offset() == 10);
  REQUIRE(again->processor().counters().window_results == 9);
  REQUIRE(again->processor().open_windows() == 1);
}

TEST_CASE("a commit the coordinator no longer confirms is not saved") {
  Fixture f;
  auto task = f.Open();
  f.Feed(*task, 0, 5);
  REQUIRE(task->BeginCheckpoint(f.clock.NowMillis(), 60'000, [] { return false; }).ok());
  CheckpointOutcome done = f.Await(*task);
  REQUIRE(done.status.code() == StatusCode::kFailedPrecondition);
  REQUIRE(task->committed_offset() == -1);
  task.reset();
  REQUIRE(f.Open()->next_offset() == -1);  // nothing was saved
}

TEST_CASE("a synchronous checkpoint waits for the one in flight and then takes its own") {
  Fixture f;
  auto task = f.Open();
  f.Feed(*task, 0, 5);
  REQUIRE(task->BeginCheckpoint(f.clock.NowMillis(), 60'000).ok());
  f.Feed(*task, 5, 8);
  REQUIRE(task->Checkpoint(f.clock.NowMillis(), 60'000).ok());
  REQUIRE(task->committed_offset() == 8);
  REQUIRE(task->in_flight() == 0);
}

TEST_CASE("a task stopped with a commit waiting for the broker stops promptly") {
  Fixture f;
  auto task = f.Open();
  REQUIRE(f.cluster->SetBrokerDown(1).ok());
  f.Feed(*task, 0, 5);
  REQUIRE(task->BeginCheckpoint(f.clock.NowMillis(), 60'000).ok());
  task->AdvanceCheckpoint(1'000'000);
  REQUIRE_FALSE(task->snapshotting());
  const auto t0 = std::chrono::steady_clock::now();
  task.reset();  // cancels the commit's wait (else it would wait 60 s)
  REQUIRE(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(30));
  REQUIRE(f.cluster->SetBrokerUp(1).ok());
  REQUIRE(f.Open()->next_offset() == -1);
}

// ---- delivery: exactly_once (on the mock: transactions commit, nothing fences)

std::shared_ptr<const engine::JobPlan> ExactlyOncePlan() {
  proto::JobSpec spec = CountPlan()->spec();
  spec.set_delivery(proto::JobSpec::EXACTLY_ONCE);
  spec.mutable_sinks()->set_markers("ckpt-markers");
  auto plan = engine::JobPlan::Compile(spec);
  REQUIRE(plan.ok());
  return std::move(*plan);
}

struct ExactlyOnceFixture : Fixture {
  ExactlyOnceFixture() {
    REQUIRE(cluster->CreateTopic("ckpt-markers", 1).ok());
    REQUIRE(cluster->CreateTopic("ckpt-markers-2", 1).ok());
    ctx.plan = ExactlyOncePlan();
    io_config.brokers = cluster->bootstraps();
    io_config.markers["ckpt"] = MarkerTopic{"ckpt-markers", 1, true};
    io_config.transaction_timeout_ms = 20'000;
    ctx.transaction_timeout_ms = 20'000;
  }

  std::optional<CheckpointMeta> LastMarker(const std::string& topic = "ckpt-markers") {
    auto value = kafka::ReadLastRecord(cluster->bootstraps(), topic, 0, "ckpt-0", {}, 20'000);
    REQUIRE(value.ok());
    if (!*value) return std::nullopt;
    auto meta = DecodeCheckpointMeta(**value);
    REQUIRE(meta.ok());
    return *meta;
  }
};

TEST_CASE("exactly_once: each checkpoint commits a transaction whose marker names it") {
  ExactlyOnceFixture f;
  auto task = f.Open();
  REQUIRE(task->exactly_once());
  REQUIRE_FALSE(f.LastMarker().has_value());
  f.Feed(*task, 0, 10);
  REQUIRE(task->BeginCheckpoint(f.clock.NowMillis(), 60'000).ok());
  f.Feed(*task, 10, 14);  // held until the commit, then in the next transaction
  CheckpointOutcome done = f.Await(*task);
  REQUIRE(done.status.ok());
  REQUIRE(done.commit_ms >= 0);
  REQUIRE_FALSE(done.aborted);
  REQUIRE(task->transactions().committed == 1);
  REQUIRE(task->transactions().last_committed_checkpoint == done.meta.checkpoint_id);
  std::optional<CheckpointMeta> marker = f.LastMarker();
  REQUIRE(marker.has_value());
  REQUIRE(marker->checkpoint_id == done.meta.checkpoint_id);
  REQUIRE(marker->next_offset == 10);
  REQUIRE(marker->transactional);

  REQUIRE(task->Checkpoint(f.clock.NowMillis(), 60'000).ok());
  REQUIRE(task->transactions().committed == 2);
  REQUIRE(f.LastMarker()->next_offset == 14);
  // Every output record reached the topic: 13 windows fired by 14 events.
  auto out = kafka::ReadLastRecord(f.cluster->bootstraps(), "ckpt-out", 0, "u1", {}, 20'000);
  REQUIRE(out.ok());
  REQUIRE(out->has_value());
  REQUIRE((*out)->find("\"n\":1") != std::string::npos);
}

TEST_CASE("exactly_once: a restore follows the last committed marker, not the newest checkpoint") {
  ExactlyOnceFixture f;
  auto task = f.Open();
  f.Feed(*task, 0, 10);
  REQUIRE(task->Checkpoint(f.clock.NowMillis(), 60'000).ok());
  const int64_t committed = task->last_checkpoint_id();
  task.reset();

  // A newer checkpoint whose transaction never committed (written here by an
  // at_least_once run of the same task, which writes no marker).
  JobContext eos = f.ctx;
  f.ctx.plan = CountPlan();
  auto other = f.Open();
  REQUIRE(other->next_offset() == 10);
  f.Feed(*other, 10, 20);
  REQUIRE(other->Checkpoint(f.clock.NowMillis(), 60'000).ok());
  REQUIRE(other->last_checkpoint_id() > committed);
  other.reset();

  f.ctx = eos;
  auto again = f.Open();
  REQUIRE(again->last_checkpoint_id() == committed);
  REQUIRE(again->next_offset() == 10);
  REQUIRE(again->processor().counters().window_results == 9);
  again.reset();
  // The uncommitted checkpoint is gone from the store.
  auto store = CheckpointStore::Open(f.io_config.checkpoint_uri, "ckpt", 0, 3);
  REQUIRE(store.ok());
  auto latest = (*store)->Latest();
  REQUIRE(latest.ok());
  REQUIRE((*latest)->checkpoint_id == committed);
}

TEST_CASE("exactly_once: without a committed marker, transactional checkpoints are dropped") {
  ExactlyOnceFixture f;
  auto task = f.Open();
  f.Feed(*task, 0, 10);
  REQUIRE(task->Checkpoint(f.clock.NowMillis(), 60'000).ok());
  task.reset();
  // As if the transaction of that checkpoint had never committed: a marker
  // topic without its marker.
  f.io_config.markers["ckpt"].name = "ckpt-markers-2";
  proto::JobSpec spec = f.ctx.plan->spec();
  spec.mutable_sinks()->set_markers("ckpt-markers-2");
  f.ctx.plan = std::move(*engine::JobPlan::Compile(spec));
  auto again = f.Open();
  REQUIRE(again->next_offset() == -1);
  REQUIRE(again->last_checkpoint_id() == 0);
}

TEST_CASE("exactly_once: a checkpoint the coordinator no longer confirms aborts its transaction") {
  ExactlyOnceFixture f;
  auto task = f.Open();
  f.Feed(*task, 0, 5);
  REQUIRE(task->BeginCheckpoint(f.clock.NowMillis(), 60'000, [] { return false; }).ok());
  CheckpointOutcome done = f.Await(*task);
  REQUIRE(done.status.code() == StatusCode::kFailedPrecondition);
  REQUIRE(done.aborted);
  REQUIRE(task->transactions().aborted == 1);
  REQUIRE_FALSE(f.LastMarker().has_value());
}

// ---- output records the sink refuses for good

// A rule that alerts on every event with a `note`, copying the note four
// times into the alert: an event with a 3000-byte note makes an alert of
// more than 12 KB.
std::shared_ptr<const engine::JobPlan> CopyingRulePlan(proto::JobSpec spec) {
  spec.clear_window();
  spec.clear_aggregates();
  proto::RuleSpec* rule = spec.add_rules();
  rule->set_name("big");
  rule->set_when("exists(note)");
  for (const char* name : {"c1", "c2", "c3", "c4"}) {
    proto::SelectSpec* select = rule->add_select();
    select->set_name(name);
    select->set_expr("note");
  }
  auto plan = engine::JobPlan::Compile(spec);
  REQUIRE(plan.ok());
  return std::move(*plan);
}

// The producers refuse records over 10000 bytes.
constexpr const char* kSmallLimit = "10000";

void FeedNotes(Fixture& f, Task& task, int64_t from, const std::vector<size_t>& note_sizes) {
  std::vector<engine::SourceRecord> records;
  for (size_t i = 0; i < note_sizes.size(); ++i) {
    f.payloads.push_back(Event("u1", kT0 + 1000 * (from + static_cast<int64_t>(i)),
                               "\"note\":\"" + std::string(note_sizes[i], 'x') + "\""));
  }
  for (size_t i = 0; i < note_sizes.size(); ++i) {
    records.push_back({f.payloads[f.payloads.size() - note_sizes.size() + i],
                       "u1",
                       {"events", 0, from + static_cast<int64_t>(i)}});
  }
  task.Process(records);
}

// Reads every record of `topic` partition 0 (at most 10 s).
std::vector<std::string> ReadAll(const std::string& bootstraps, const std::string& topic) {
  auto c = kafka::KafkaConsumer::Create(bootstraps, "reader", {});
  REQUIRE(c.ok());
  auto range = (*c)->QueryLogRange(topic, 0, 10'000);
  REQUIRE(range.ok());
  const kafka::PartitionOffset from{0, -1};
  REQUIRE((*c)->Assign(topic, std::span<const kafka::PartitionOffset>(&from, 1)).ok());
  std::vector<std::string> out;
  int64_t next = range->start;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (next < range->end && std::chrono::steady_clock::now() < deadline) {
    for (const auto& m : (*c)->Poll(100, 100)) {
      out.emplace_back(m.payload);
      next = m.offset + 1;
    }
  }
  return out;
}

void CheckRefusal(Fixture& f, Task& task) {
  REQUIRE(task.refused_outputs() == 1);
  std::vector<std::string> dlq = ReadAll(f.cluster->bootstraps(), "ckpt-dlq");
  REQUIRE(dlq.size() == 1);
  const std::string& dead = dlq[0];
  using engine::testing::Field;
  REQUIRE(Field(dead, "reason").find("output refused by the sink") != std::string::npos);
  REQUIRE(Field(dead, "reason").find("message.max.bytes") != std::string::npos);
  REQUIRE(Field(dead, "sink") == "ckpt-out");
  REQUIRE(Field(dead, "stream") == "output");
  REQUIRE(Field(dead, "source") == R"({"topic":"events","partition":0,"offset":1})");
  REQUIRE(Field(dead, "truncated") == "true");
  REQUIRE(engine::testing::IntField(dead, "record_bytes") > 12'000);
  REQUIRE(dead.size() <= 10'000);
  // The prefix is the start of the refused alert.
  REQUIRE(Field(dead, "raw").rfind("{\"id\":", 0) == 0);
  // The alerts before and after it were produced.
  std::vector<std::string> out = ReadAll(f.cluster->bootstraps(), "ckpt-out");
  REQUIRE(out.size() == 2);
  REQUIRE(out[1].find("\"offset\":2") != std::string::npos);
}

TEST_CASE("an output record larger than message.max.bytes is dead-lettered and the task goes on") {
  Fixture f;
  f.producer.reset();
  auto p =
      kafka::KafkaProducer::Create(f.cluster->bootstraps(), {{"message.max.bytes", kSmallLimit}});
  REQUIRE(p.ok());
  f.producer = std::move(*p);
  f.io_config.producer = f.producer.get();
  f.ctx.plan = CopyingRulePlan(f.ctx.plan->spec());
  auto task = f.Open();
  FeedNotes(f, *task, 0, {10, 3000, 10});
  // The checkpoint succeeds: nothing failed delivery.
  REQUIRE(task->Checkpoint(f.clock.NowMillis(), 60'000).ok());
  REQUIRE(task->committed_offset() == 3);
  REQUIRE(task->processor().counters().consumed == 3);
  CheckRefusal(f, *task);
}

TEST_CASE("exactly_once: an output record larger than message.max.bytes is dead-lettered") {
  ExactlyOnceFixture f;
  f.io_config.kafka_settings["message.max.bytes"] = kSmallLimit;
  f.ctx.plan = CopyingRulePlan(f.ctx.plan->spec());
  auto task = f.Open();
  FeedNotes(f, *task, 0, {10, 3000, 10});
  REQUIRE(task->Checkpoint(f.clock.NowMillis(), 60'000).ok());
  REQUIRE(task->transactions().committed == 1);
  CheckRefusal(f, *task);
}

TEST_CASE("a refusal replayed after a restart is dead-lettered again but counted once") {
  Fixture f;
  f.producer.reset();
  auto p =
      kafka::KafkaProducer::Create(f.cluster->bootstraps(), {{"message.max.bytes", kSmallLimit}});
  REQUIRE(p.ok());
  f.producer = std::move(*p);
  f.io_config.producer = f.producer.get();
  f.ctx.plan = CopyingRulePlan(f.ctx.plan->spec());
  auto task = f.Open();
  FeedNotes(f, *task, 0, {3000});
  REQUIRE(task->refused_outputs() == 1);
  const TaskCarry carry = task->carry();
  task.reset();  // no checkpoint: the restart replays offset 0
  auto again = f.Open();
  again->set_carry(carry);
  f.payloads.clear();
  FeedNotes(f, *again, 0, {3000, 3000});
  REQUIRE(again->refused_outputs() == 2);
}

TEST_CASE("a record the broker refuses in its delivery report is dead-lettered at the checkpoint") {
  Fixture f;
  auto task = f.Open();
  f.Feed(*task, 0, 3);  // two windows fire: two output records
  REQUIRE(task->Checkpoint(f.clock.NowMillis(), 60'000).ok());
  // The next produce request is refused as the topic's max.message.bytes would.
  REQUIRE(f.cluster->PushRequestErrors(0 /* Produce */, 10 /* MSG_SIZE_TOO_LARGE */, 1).ok());
  f.Feed(*task, 3, 4);  // one more window fires
  REQUIRE(task->Checkpoint(f.clock.NowMillis(), 60'000).ok());
  REQUIRE(task->refused_outputs() == 1);
  REQUIRE(task->committed_offset() == 4);
  std::vector<std::string> dlq = ReadAll(f.cluster->bootstraps(), "ckpt-dlq");
  REQUIRE(dlq.size() == 1);
  using engine::testing::Field;
  REQUIRE(Field(dlq[0], "reason").find("refused by the broker") != std::string::npos);
  REQUIRE(Field(dlq[0], "sink") == "ckpt-out");
  REQUIRE(Field(dlq[0], "stream") == "output");
  REQUIRE(Field(dlq[0], "source") ==
          R"({"topic":"events","partition":0,"offset":null,"from_offset":3,"to_offset":4})");
  REQUIRE(Field(dlq[0], "truncated") == "false");
  REQUIRE(Field(Field(dlq[0], "raw"), "window_start") == std::to_string(kT0 + 2000));
  REQUIRE(ReadAll(f.cluster->bootstraps(), "ckpt-out").size() == 2);
}

TEST_CASE("exactly_once: a record the broker refuses aborts once; the replay dead-letters it") {
  ExactlyOnceFixture f;
  auto task = f.Open();
  f.Feed(*task, 0, 2);  // one window fires
  REQUIRE(task->Checkpoint(f.clock.NowMillis(), 60'000).ok());
  REQUIRE(f.cluster->PushRequestErrors(0 /* Produce */, 10 /* MSG_SIZE_TOO_LARGE */, 1).ok());
  f.Feed(*task, 2, 3);  // one more, refused by the broker
  REQUIRE_FALSE(task->Checkpoint(f.clock.NowMillis(), 60'000).ok());
  REQUIRE(task->carry().pending_refusals.size() == 1);
  const TaskCarry carry = task->carry();
  task.reset();

  // The restart (as TaskHost::Restart does it) replays offset 2.
  auto again = f.Open();
  again->set_carry(carry);
  REQUIRE(again->next_offset() == 2);
  f.Feed(*again, 2, 3);
  REQUIRE(again->carry().pending_refusals.empty());
  REQUIRE(again->Checkpoint(f.clock.NowMillis(), 60'000).ok());
  REQUIRE(again->refused_outputs() == 1);
  std::vector<std::string> dlq = ReadAll(f.cluster->bootstraps(), "ckpt-dlq");
  REQUIRE(dlq.size() == 1);
  using engine::testing::Field;
  REQUIRE(Field(dlq[0], "reason").find("aborted transaction") != std::string::npos);
  REQUIRE(Field(dlq[0], "source") == R"({"topic":"events","partition":0,"offset":2})");
  REQUIRE(Field(Field(dlq[0], "raw"), "window_start") == std::to_string(kT0 + 1000));
}

// ---- records lost before they were read

TEST_CASE("a gap below the log start is counted once, and moves the fetch offset") {
  Fixture f;
  auto task = f.Open();
  REQUIRE(task->fetch_offset() == -1);
  REQUIRE(task->SkipLost(3) == 0);  // from the beginning: nothing is lost
  REQUIRE(task->fetch_offset() == 3);
  f.Feed(*task, 0, 5);
  REQUIRE(task->Checkpoint(f.clock.NowMillis(), 60'000).ok());
  REQUIRE(task->SkipLost(12) == 7);
  REQUIRE(task->fetch_offset() == 12);
  REQUIRE(task->next_offset() == 5);
  REQUIRE(task->lost().count == 7);
  REQUIRE(task->lost().from == 5);
  REQUIRE(task->lost().to == 12);
  // The same gap again (a restart from the checkpoint at 5) adds only what is new.
  const TaskCarry carry = task->carry();
  task.reset();
  auto again = f.Open();
  REQUIRE(again->fetch_offset() == 5);
  again->set_carry(carry);
  REQUIRE(again->SkipLost(15) == 3);
  REQUIRE(again->lost().count == 10);
  REQUIRE(again->lost().from == 12);
  REQUIRE(again->lost().to == 15);
  REQUIRE(again->SkipLost(15) == 0);
}

TEST_CASE("a task without a checkpoint starts at its start offset") {
  Fixture f;
  auto task = f.Open(40);
  REQUIRE(task->fetch_offset() == 40);
  REQUIRE(task->next_offset() == -1);
  REQUIRE(task->SkipLost(50) == 10);
  REQUIRE(task->lost().from == 40);
  f.Feed(*task, 0, 3);  // a checkpoint's offset wins over the start offset
  REQUIRE(task->Checkpoint(f.clock.NowMillis(), 60'000).ok());
  task.reset();
  auto again = f.Open(40);
  REQUIRE(again->fetch_offset() == 3);
}

}  // namespace
}  // namespace sluice::worker
