// CoordinatorClient against a scripted coordinator (FakeCoordinatorRpc) and
// a TaskHost on fakes, beat by beat with a ManualClock: registration, the
// lease a heartbeat grants, reconciling assignments into commands, and what
// the client does when the coordinator is unreachable or refuses it.

#include "worker/coordinator_client.h"

#include <catch2/catch.hpp>
#include <memory>

#include "worker/engine/testing.h"
#include "worker/testing.h"

namespace sluice::worker {
namespace {

constexpr int64_t kT0 = 1'700'000'000'000;
const TaskRef kTask{"cc", 0};

struct Rig {
  Rig() {
    HostOptions options;
    options.threads = 0;
    options.commit_threads = 0;
    options.fenced = true;
    auto owned_io = std::make_unique<testing::FakeWorkerIo>();
    io = owned_io.get();
    host = std::make_unique<TaskHost>(options, clock, std::move(owned_io));
    REQUIRE(host->Start().ok());
    auto owned_rpc = std::make_unique<testing::FakeCoordinatorRpc>();
    rpc = owned_rpc.get();
    rpc->register_response.set_heartbeat_ms(1'000);
    rpc->register_response.set_lease_ms(5'000);
    client = std::make_unique<CoordinatorClient>(std::move(owned_rpc), "w1", 1, *host, clock,
                                                 "instance-1");
  }

  // The coordinator assigns task cc-0 under `epoch` (drained or stopped).
  void Assign(int64_t epoch, int64_t version = 1, bool drain = false) {
    proto::HeartbeatResponse& r = rpc->heartbeat_response;
    r.Clear();
    proto::JobInfo* job = r.add_jobs();
    job->set_name("cc");
    job->set_version(version);
    *job->mutable_spec() = engine::testing::TumblingCountSpec("cc");
    proto::Assignment* a = r.add_assignments();
    a->set_job("cc");
    a->set_partition(0);
    a->set_epoch(epoch);
    a->set_drain(drain);
  }

  std::optional<proto::TaskReport> Report() const {
    for (const proto::TaskReport& r : host->Reports()) {
      if (r.job() == kTask.job && r.partition() == kTask.partition) return r;
    }
    return std::nullopt;
  }

  ManualClock clock{kT0};
  testing::FakeWorkerIo* io = nullptr;         // owned by the host
  testing::FakeCoordinatorRpc* rpc = nullptr;  // owned by the client
  std::unique_ptr<TaskHost> host;
  std::unique_ptr<CoordinatorClient> client;
};

TEST_CASE("coordinator client: registers, then runs and confirms what a heartbeat assigns") {
  Rig rig;
  rig.Assign(3);
  REQUIRE(rig.client->Beat() == 0);  // registered: the first heartbeat goes at once
  REQUIRE(rig.client->registered());
  REQUIRE(rig.rpc->registers == 1);
  const int64_t sent = rig.clock.NowMillis();
  REQUIRE(rig.client->Beat() == 1'000);
  rig.host->Step();
  REQUIRE(rig.Report()->state() == proto::TaskReport::RUNNING);
  REQUIRE(rig.Report()->epoch() == 3);
  // Confirmed for a lease less a heartbeat from when the heartbeat was sent,
  // under the assigned epoch only.
  REQUIRE(rig.host->MayCheckpoint(kTask, 3, sent + 3'999));
  REQUIRE_FALSE(rig.host->MayCheckpoint(kTask, 3, sent + 4'001));
  REQUIRE_FALSE(rig.host->MayCheckpoint(kTask, 2, sent));
  // The next heartbeat carries the task's report.
  rig.client->Beat();
  REQUIRE(rig.rpc->heartbeats.back().worker_id() == "w1");
  REQUIRE(rig.rpc->heartbeats.back().instance() == "instance-1");
  REQUIRE(rig.rpc->heartbeats.back().tasks_size() == 1);
}

TEST_CASE("coordinator client: an unreachable coordinator: reconnect, tasks run, no lease") {
  Rig rig;
  rig.Assign(1);
  rig.client->Beat();
  rig.client->Beat();
  rig.host->Step();
  rig.rpc->status = {RpcStatus::Code::kUnreachable, "connection refused"};
  rig.clock.Advance(5'000);
  rig.client->Beat();
  REQUIRE(rig.rpc->reconnects == 1);
  REQUIRE_FALSE(rig.host->MayCheckpoint(kTask, 1, rig.clock.NowMillis()));
  rig.host->Step();
  REQUIRE(rig.Report()->state() == proto::TaskReport::RUNNING);
  // Reachable again: the lease is back.
  rig.rpc->status = {};
  rig.client->Beat();
  REQUIRE(rig.host->MayCheckpoint(kTask, 1, rig.clock.NowMillis()));
}

TEST_CASE("coordinator client: a task no longer assigned is fenced") {
  Rig rig;
  rig.Assign(1);
  rig.client->Beat();
  rig.client->Beat();
  rig.host->Step();
  REQUIRE(rig.Report().has_value());
  rig.rpc->heartbeat_response.Clear();
  rig.client->Beat();
  rig.host->Step();
  REQUIRE_FALSE(rig.Report().has_value());
  REQUIRE(rig.io->disk("cc-0").saves == 0);  // stopped without a checkpoint
}

TEST_CASE("coordinator client: a new epoch restarts the task; a drain drains it") {
  Rig rig;
  rig.Assign(1);
  rig.client->Beat();
  rig.client->Beat();
  rig.host->Step();
  rig.Assign(2);
  rig.client->Beat();
  rig.host->Step();
  REQUIRE(rig.Report()->epoch() == 2);
  rig.Assign(2, 1, /*drain=*/true);
  rig.client->Beat();
  rig.host->Step();
  REQUIRE(rig.Report()->state() == proto::TaskReport::DRAINED);
  REQUIRE(rig.io->disk("cc-0").saves == 1);
}

TEST_CASE("coordinator client: another live process with this id: nothing runs") {
  Rig rig;
  rig.Assign(1);
  rig.client->Beat();
  rig.client->Beat();
  rig.host->Step();
  // The coordinator restarted and forgot this worker: register again ...
  rig.rpc->heartbeat_response.set_reregister(true);
  rig.client->Beat();
  REQUIRE_FALSE(rig.client->registered());
  // ... but another process registered under the id meanwhile.
  rig.rpc->status = {RpcStatus::Code::kDuplicate, "worker w1 is alive elsewhere"};
  rig.client->Beat();
  REQUIRE(rig.rpc->registers == 2);
  rig.host->Step();
  REQUIRE_FALSE(rig.Report().has_value());
  REQUIRE_FALSE(rig.host->MayCheckpoint(kTask, 1, rig.clock.NowMillis()));
}

}  // namespace
}  // namespace sluice::worker
