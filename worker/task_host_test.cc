// TaskHost against a broker in process (librdkafka's mock cluster): where a
// task starts, and records deleted before a task read them counted as lost.
//
// The mock keeps about 5 MB per partition: older batches are deleted, and its
// log start moves, as retention does on a real broker.

#include "worker/task_host.h"

#include <catch2/catch.hpp>
#include <chrono>
#include <string>
#include <thread>

#include "kafka/kafka_client.h"
#include "tools/devbroker/mock_cluster.h"
#include "worker/engine/testing.h"
#include "worker/state/testing_dir.h"

namespace sluice::worker {
namespace {

constexpr int64_t kT0 = 1'700'000'000'000;

std::shared_ptr<const engine::JobPlan> CountPlan() {
  proto::JobSpec spec = engine::testing::TumblingCountSpec("lost");
  spec.mutable_source()->set_max_record_bytes(1 << 20);
  return engine::testing::MustCompile(spec);
}

struct HostFixture {
  HostFixture() {
    auto c = devbroker::MockCluster::Create(1, "");
    REQUIRE(c.ok());
    cluster = std::move(*c);
    for (const char* t : {"events", "lost-out", "lost-late", "lost-dlq"}) {
      REQUIRE(cluster->CreateTopic(t, 1).ok());
    }
    options.brokers = cluster->bootstraps();
    options.data_dir = (dir.path() / "data").string();
    options.checkpoint_uri = "file://" + (dir.path() / "checkpoints").string();
    options.threads = 1;
    options.commit_threads = 1;
  }

  // Produces `n` events of about 900 KB each, one batch each, uncompressed.
  void ProduceLarge(int n) {
    auto p = kafka::KafkaProducer::Create(cluster->bootstraps(), {{"compression.type", "none"}});
    REQUIRE(p.ok());
    const std::string pad(900'000, 'x');
    for (int i = 0; i < n; ++i) {
      const std::string event =
          engine::testing::Event("u1", kT0 + 1000 * i, "\"pad\":\"" + pad + "\"");
      REQUIRE((*p)->Produce("events", "u1", event, nullptr).ok());
      REQUIRE((*p)->Flush(10'000).ok());
    }
  }

  kafka::LogRange Range() {
    auto c = kafka::KafkaConsumer::Create(cluster->bootstraps(), "probe", {});
    REQUIRE(c.ok());
    auto r = (*c)->QueryLogRange("events", 0, 10'000);
    REQUIRE(r.ok());
    return *r;
  }

  // Polls the host's report of task lost-0 until `done` holds (30 s).
  proto::TaskReport WaitReport(TaskHost& host,
                               const std::function<bool(const proto::TaskReport&)>& done) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    proto::TaskReport last;
    while (std::chrono::steady_clock::now() < deadline) {
      for (const proto::TaskReport& r : host.Reports()) {
        if (r.job() == "lost" && r.partition() == 0) last = r;
      }
      if (done(last)) return last;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    FAIL("the task's report did not get there in 30 s: " << last.ShortDebugString());
    return last;
  }

  testing::TempDir dir;
  std::unique_ptr<devbroker::MockCluster> cluster;
  HostOptions options;
  SystemClock clock;
};

TEST_CASE("a start offset below the log start counts the records deleted before it as lost") {
  HostFixture f;
  f.ProduceLarge(10);
  const kafka::LogRange range = f.Range();
  REQUIRE(range.end == 10);
  REQUIRE(range.start > 0);  // the mock deleted the oldest batches

  TaskHost host(f.options, f.clock);
  REQUIRE(host.Start().ok());
  host.StartTask(CountPlan(), 1, 0, 0, /*start_offset=*/0);
  proto::TaskReport r =
      f.WaitReport(host, [&](const proto::TaskReport& r) { return r.next_offset() == range.end; });
  REQUIRE(r.lost() == range.start);
  REQUIRE(r.lost_from_offset() == 0);
  REQUIRE(r.lost_to_offset() == range.start);
  REQUIRE(r.consumed() == range.end - range.start);
  REQUIRE(r.consumed() == r.processed() + r.late() + r.dead_lettered());
  host.Shutdown(false);
}

TEST_CASE("a task without a start offset starts at the log start and loses nothing") {
  HostFixture f;
  f.ProduceLarge(10);
  const kafka::LogRange range = f.Range();
  REQUIRE(range.start > 0);

  TaskHost host(f.options, f.clock);
  REQUIRE(host.Start().ok());
  host.StartTask(CountPlan(), 1, 0, 0, /*start_offset=*/-2);
  proto::TaskReport r =
      f.WaitReport(host, [&](const proto::TaskReport& r) { return r.next_offset() == range.end; });
  REQUIRE(r.lost() == 0);
  REQUIRE(r.consumed() == range.end - range.start);
  REQUIRE(r.lag_ms() == 0);  // caught up
  REQUIRE(r.paused() == 0);
  host.Shutdown(false);
}

TEST_CASE("a start offset in the log is where a new task starts") {
  HostFixture f;
  f.ProduceLarge(3);
  TaskHost host(f.options, f.clock);
  REQUIRE(host.Start().ok());
  host.StartTask(CountPlan(), 1, 0, 0, /*start_offset=*/2);
  proto::TaskReport r =
      f.WaitReport(host, [&](const proto::TaskReport& r) { return r.next_offset() == 3; });
  REQUIRE(r.lost() == 0);
  REQUIRE(r.consumed() == 1);
  host.Shutdown(false);
}

TEST_CASE("a partition paused for back-pressure is counted once per pause") {
  HostFixture f;
  f.ProduceLarge(3);
  // Any record waiting in the producer pauses the partition, and it is
  // resumed only once the producer has fewer than none: paused for good.
  f.options.max_pending_records = -1;
  TaskHost host(f.options, f.clock);
  REQUIRE(host.Start().ok());
  host.StartTask(CountPlan(), 1, 0, 0);
  f.WaitReport(host, [](const proto::TaskReport& r) { return r.paused() >= 1; });
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // more passes of the loop
  proto::TaskReport r = f.WaitReport(host, [](const proto::TaskReport&) { return true; });
  REQUIRE(r.paused() == 1);
  host.Shutdown(false);
}

TEST_CASE("a drain asked for again goes on to the end it was given, not where the task is") {
  HostFixture f;
  f.ProduceLarge(3);
  // Paused for good after its first fetch (as above): the task cannot reach
  // the end of the partition.
  f.options.max_pending_records = -1;
  TaskHost host(f.options, f.clock);
  REQUIRE(host.Start().ok());
  host.StartTask(CountPlan(), 1, 0, 0);
  const proto::TaskReport paused =
      f.WaitReport(host, [](const proto::TaskReport& r) { return r.paused() >= 1; });
  REQUIRE(paused.next_offset() < 3);
  const TaskRef ref{"lost", 0};
  // The coordinator repeats a drain with every heartbeat.
  host.StopTask(ref, StopMode::kDrain);
  host.StopTask(ref, StopMode::kDrain);
  host.StopTask(ref, StopMode::kDrain);
  // Commands run in order: once the update is in, the drains were handled.
  host.UpdateTask(ref, CountPlan(), 2);
  const proto::TaskReport r =
      f.WaitReport(host, [](const proto::TaskReport& r) { return r.version() == 2; });
  REQUIRE(r.state() == proto::TaskReport::RUNNING);
  REQUIRE(r.next_offset() == paused.next_offset());
  host.Shutdown(false);
}

}  // namespace
}  // namespace sluice::worker
