// The coordinator's logic with fakes: an in-memory metadata store (that fails
// on demand), fake Kafka metadata and a manual clock.

#include "coordinator/coordinator.h"

#include <spdlog/spdlog.h>

#include <catch2/catch.hpp>
#include <functional>
#include <utility>

#include "coordinator/metadata_store.h"
#include "jobspec/job_loader.h"

namespace sluice::coordinator {
namespace {

class FakeTopics final : public TopicMetadata {
 public:
  Result<int32_t> PartitionCount(const std::string&, const std::string& topic, int) override {
    ++lookups;
    if (!reachable) return Status::Unavailable("broker down");
    auto it = partitions.find(topic);
    Result<int32_t> answer = it == partitions.end()
                                 ? Result<int32_t>(Status::NotFound("no topic " + topic))
                                 : Result<int32_t>(it->second);
    // Runs once, after the answer is read and before it arrives.
    if (auto hook = std::exchange(during_lookup, nullptr)) hook();
    return answer;
  }
  Result<std::vector<int64_t>> EndOffsets(const std::string&, const std::string& topic, int32_t n,
                                          int) override {
    if (!reachable || !offsets_reachable) return Status::Unavailable("broker down");
    std::vector<int64_t> out;
    for (int32_t p = 0; p < n; ++p) out.push_back(ends[topic][p]);
    return out;
  }
  Result<std::vector<int64_t>> OffsetsForTime(const std::string&, const std::string& topic,
                                              int32_t n, int64_t time_ms, int) override {
    if (!reachable || !offsets_reachable) return Status::Unavailable("broker down");
    // Records at times[topic][p][offset]: the first at or after time_ms.
    std::vector<int64_t> out;
    for (int32_t p = 0; p < n; ++p) {
      int64_t found = -1;
      const std::vector<int64_t>& ts = times[topic][p];
      for (size_t o = 0; o < ts.size(); ++o) {
        if (ts[o] >= time_ms) {
          found = static_cast<int64_t>(o);
          break;
        }
      }
      out.push_back(found);
    }
    return out;
  }
  Status CheckTransactions(const std::string&) override { return transactions; }
  std::map<std::string, int32_t> partitions = {{"payments", 8}, {"clicks", 3}};
  std::map<std::string, std::map<int32_t, int64_t>> ends;
  std::map<std::string, std::map<int32_t, std::vector<int64_t>>> times;
  Status transactions;
  bool reachable = true;
  bool offsets_reachable = true;  // end offsets and offsets for times
  int lookups = 0;
  std::function<void()> during_lookup;
};

std::string FraudYaml(const std::string& name = "fraud", const std::string& threshold = "5000",
                      const std::string& topic = "payments") {
  return "name: " + name + "\nsource:\n  topic: " + topic +
         "\n  key: user_id\n  event_time: ts\nsinks:\n  output: alerts\nrules:\n"
         "  - name: large_amount\n    when: amount > " +
         threshold +
         "\n  - name: velocity\n    window: { rolling: 5m }\n    aggregate: { n: count() }\n"
         "    when: n > 3\n";
}

struct Fixture {
  ManualClock clock{1'000'000};
  InMemoryMetadataStore store;
  FakeTopics topics;
  std::unique_ptr<Coordinator> c;

  Fixture() {
    spdlog::set_level(spdlog::level::warn);
    Restart();
  }
  void Restart() {
    c = std::make_unique<Coordinator>(CoordinatorOptions{1000, 5000, "kafka:9092"}, clock, store,
                                      topics);
    REQUIRE(c->Load().ok());
  }
  void Register(const std::string& id) {
    proto::RegisterRequest r;
    r.set_worker_id(id);
    r.set_threads(2);
    REQUIRE(c->Register(r).ok());
  }
  Result<proto::JobInfo> Submit(const std::string& yaml) {
    proto::SubmitJobRequest r;
    r.set_yaml(yaml);
    r.set_filename("job.yaml");
    return c->SubmitJob(r);
  }
  // A heartbeat that reports every assigned task RUNNING, or in `state`.
  const proto::HeartbeatResponse& Beat(const std::string& id,
                                       proto::TaskReport::State state = proto::TaskReport::RUNNING,
                                       bool leaving = false) {
    proto::HeartbeatRequest req;
    req.set_worker_id(id);
    req.set_leaving(leaving);
    for (const proto::Assignment& a : last[id].assignments()) {
      proto::TaskReport* r = req.add_tasks();
      r->set_job(a.job());
      r->set_partition(a.partition());
      r->set_epoch(a.epoch());
      r->set_state((a.stop() || a.drain()) ? state : proto::TaskReport::RUNNING);
    }
    auto response = c->Heartbeat(req);
    INFO(response.status().ToString());
    REQUIRE(response.ok());
    last[id] = *response;
    return last[id];
  }
  std::map<std::string, int> Placement(const std::string& job) {
    std::map<std::string, int> count;
    auto status = c->GetJob(job);
    for (const proto::TaskStatus& t : status->tasks()) ++count[t.worker_id()];
    return count;
  }
  std::map<int32_t, std::pair<std::string, int64_t>> Owners(const std::string& job) {
    std::map<int32_t, std::pair<std::string, int64_t>> out;
    auto status = c->GetJob(job);
    if (!status.ok()) return out;  // no such job (yet)
    for (const proto::TaskStatus& t : status->tasks()) {
      out[t.report().partition()] = {t.worker_id(), t.report().epoch()};
    }
    return out;
  }
  std::map<std::string, proto::HeartbeatResponse> last;
};

TEST_CASE("a submitted job's tasks are spread over the workers, each under an epoch") {
  Fixture f;
  for (const char* w : {"w1", "w2", "w3"}) f.Register(w);
  auto job = f.Submit(FraudYaml());
  REQUIRE(job.ok());
  REQUIRE(job->partitions() == 8);
  REQUIRE(job->state() == proto::RUNNING);
  REQUIRE(f.Placement("fraud") == std::map<std::string, int>{{"w1", 3}, {"w2", 3}, {"w3", 2}});
  auto beat = f.Beat("w1");
  REQUIRE(beat.assignments_size() == 3);
  REQUIRE(beat.jobs_size() == 1);
  REQUIRE(beat.jobs(0).version() == 1);
  for (const auto& a : beat.assignments()) {
    REQUIRE(a.epoch() == 1);
    REQUIRE_FALSE(a.stop());
  }
}

TEST_CASE("bad submissions are refused with a clear error and change nothing") {
  Fixture f;
  f.Register("w1");
  REQUIRE(f.Submit(FraudYaml()).ok());
  auto dup = f.Submit(FraudYaml());
  REQUIRE(dup.status().code() == StatusCode::kAlreadyExists);
  auto missing = f.Submit(FraudYaml("other", "1", "nosuchtopic"));
  REQUIRE(missing.status().code() == StatusCode::kFailedPrecondition);
  REQUIRE(missing.status().message() == "source topic nosuchtopic does not exist on kafka:9092");
  auto bad = f.Submit(
      "name: x\nsource:\n  topic: payments\n  key: k\n  event_time: ts\n"
      "  max_out_of_orderness: five\n");
  REQUIRE(bad.status().code() == StatusCode::kInvalidArgument);
  REQUIRE(bad.status().message().rfind("job.yaml:6:", 0) == 0);
  REQUIRE(f.c->ListJobs().size() == 1);
  REQUIRE(f.c->GetJob("nosuch").status().code() == StatusCode::kNotFound);

  // exactly_once on brokers without working transactions: refused at submit.
  f.topics.transactions = Status::Unavailable("the transaction coordinator did not answer");
  auto eos = f.Submit(FraudYaml("eos") + "delivery: exactly_once\n");
  REQUIRE(eos.status().code() == StatusCode::kFailedPrecondition);
  REQUIRE(eos.status().message() ==
          "delivery: exactly_once needs Kafka transactions on kafka:9092: the transaction "
          "coordinator did not answer");
  REQUIRE(f.Submit(FraudYaml("alo")).ok());  // at_least_once does not need them
  f.topics.transactions = Status::Ok();
  REQUIRE(f.Submit(FraudYaml("eos") + "delivery: exactly_once\n").ok());
  REQUIRE(f.c->ListJobs().size() == 3);
}

TEST_CASE("a worker that stops heartbeating loses its tasks after the lease") {
  Fixture f;
  for (const char* w : {"w1", "w2", "w3"}) f.Register(w);
  REQUIRE(f.Submit(FraudYaml()).ok());
  auto before = f.Owners("fraud");
  f.clock.Advance(3000);
  f.Beat("w1");
  f.Beat("w2");
  REQUIRE(f.c->Tick().ok());
  REQUIRE(f.Placement("fraud").count("w3"));  // within the lease
  f.clock.Advance(2500);
  f.Beat("w1");
  f.Beat("w2");
  REQUIRE(f.c->Tick().ok());  // w3 silent for 5.5 s
  REQUIRE(f.Placement("fraud") == std::map<std::string, int>{{"w1", 4}, {"w2", 4}});
  auto after = f.Owners("fraud");
  for (const auto& [p, owner] : before) {
    if (owner.first == "w3") {
      REQUIRE(after[p].second == owner.second + 1);  // new epoch
    } else {
      REQUIRE(after[p] == owner);  // untouched
    }
  }
  // w3 comes back: it is told to hold nothing, so it fences its stale tasks.
  REQUIRE(f.Beat("w3").assignments_size() == 0);
}

TEST_CASE("a joining worker takes tasks by graceful moves: release first, then a new epoch") {
  Fixture f;
  for (const char* w : {"w1", "w2", "w3"}) f.Register(w);
  REQUIRE(f.Submit(FraudYaml()).ok());
  for (const char* w : {"w1", "w2", "w3"}) f.Beat(w);
  auto before = f.Owners("fraud");
  f.Register("w4");
  // Nothing runs on w4 yet: the two moving tasks are still with their owners, marked stop.
  REQUIRE(f.Beat("w4").assignments_size() == 0);
  int stops = 0;
  for (const char* w : {"w1", "w2", "w3"}) {
    for (const auto& a : f.Beat(w).assignments()) stops += a.stop() ? 1 : 0;
  }
  REQUIRE(stops == 2);
  // The owners release them (final checkpoint), and w4 gets them under epoch + 1.
  for (const char* w : {"w1", "w2", "w3"}) f.Beat(w, proto::TaskReport::RELEASED);
  REQUIRE(f.Placement("fraud") ==
          std::map<std::string, int>{{"w1", 2}, {"w2", 2}, {"w3", 2}, {"w4", 2}});
  auto after = f.Owners("fraud");
  int moved = 0;
  for (const auto& [p, owner] : before) {
    if (after[p].first != owner.first) {
      ++moved;
      REQUIRE(after[p].first == "w4");
      REQUIRE(after[p].second == owner.second + 1);
    }
  }
  REQUIRE(moved == 2);
  REQUIRE(f.Beat("w4").assignments_size() == 2);
}

TEST_CASE("a leaving worker's tasks move at once") {
  Fixture f;
  for (const char* w : {"w1", "w2"}) f.Register(w);
  REQUIRE(f.Submit(FraudYaml()).ok());
  f.Beat("w1");
  f.Beat("w2");
  proto::HeartbeatRequest leave;
  leave.set_worker_id("w2");
  leave.set_leaving(true);
  REQUIRE(f.c->Heartbeat(leave).ok());
  REQUIRE(f.Placement("fraud") == std::map<std::string, int>{{"w1", 8}});
}

TEST_CASE("stop --drain: tasks drain, then the job is stopped") {
  Fixture f;
  for (const char* w : {"w1", "w2"}) f.Register(w);
  REQUIRE(f.Submit(FraudYaml()).ok());
  f.Beat("w1");
  f.Beat("w2");
  auto job = f.c->StopJob("fraud", /*drain=*/true);
  REQUIRE(job->state() == proto::DRAINING);
  auto beat = f.Beat("w1");
  REQUIRE(beat.assignments_size() == 4);
  for (const auto& a : beat.assignments()) REQUIRE(a.drain());
  f.Beat("w1", proto::TaskReport::DRAINED);
  REQUIRE(f.c->GetJob("fraud")->job().state() == proto::DRAINING);  // w2 still draining
  f.Beat("w2");
  f.Beat("w2", proto::TaskReport::DRAINED);
  REQUIRE(f.c->GetJob("fraud")->job().state() == proto::STOPPED);
  REQUIRE(f.Beat("w1").assignments_size() == 0);
}

TEST_CASE("a restarted coordinator keeps jobs, owners and epochs; workers re-register") {
  Fixture f;
  for (const char* w : {"w1", "w2", "w3"}) f.Register(w);
  REQUIRE(f.Submit(FraudYaml()).ok());
  for (const char* w : {"w1", "w2", "w3"}) f.Beat(w);
  auto before = f.Owners("fraud");
  f.Restart();
  REQUIRE(f.c->ListJobs().size() == 1);
  REQUIRE(f.Owners("fraud") == before);
  // Workers are unknown until they register again; that keeps their epochs.
  REQUIRE(f.c->Heartbeat([] {
               proto::HeartbeatRequest r;
               r.set_worker_id("w1");
               return r;
             }())
              ->reregister());
  for (const char* w : {"w1", "w2", "w3"}) f.Register(w);
  REQUIRE(f.c->Tick().ok());
  REQUIRE(f.Owners("fraud") == before);
  // A worker that never comes back loses its tasks after the lease.
  f.clock.Advance(6000);
  f.Beat("w1");
  f.Beat("w2");
  REQUIRE(f.c->Tick().ok());
  REQUIRE(f.Placement("fraud").count("w3") == 0);
}

TEST_CASE("a worker registering again while alive was restarted: its tasks get new epochs") {
  Fixture f;
  f.Register("w1");
  REQUIRE(f.Submit(FraudYaml()).ok());
  auto before = f.Owners("fraud");
  f.Register("w1");
  auto after = f.Owners("fraud");
  for (const auto& [p, owner] : before) REQUIRE(after[p].second == owner.second + 1);
}

TEST_CASE("one id, two live processes: the second is refused until the first's lease runs out") {
  Fixture f;
  auto reg = [&](const std::string& instance) {
    proto::RegisterRequest r;
    r.set_worker_id("w1");
    r.set_host("h-" + instance);
    r.set_threads(2);
    r.set_instance(instance);
    return f.c->Register(r);
  };
  auto beat = [&](const std::string& instance) {
    proto::HeartbeatRequest r;
    r.set_worker_id("w1");
    r.set_instance(instance);
    auto response = f.c->Heartbeat(r);
    REQUIRE(response.ok());
    return *response;
  };
  REQUIRE(reg("aaa").ok());
  REQUIRE(f.Submit(FraudYaml()).ok());
  auto before = f.Owners("fraud");

  // Another data directory under the same id: refused, nothing changes.
  auto dup = reg("bbb");
  REQUIRE(dup.status().code() == StatusCode::kAlreadyExists);
  REQUIRE(dup.status().message().find("worker id w1 is held by a live worker on host h-aaa") == 0);
  REQUIRE(f.Owners("fraud") == before);
  REQUIRE_FALSE(beat("aaa").reregister());

  // The same instance again is a restart: new epochs.
  REQUIRE(reg("aaa").ok());
  for (const auto& [p, owner] : f.Owners("fraud")) REQUIRE(owner.second == before[p].second + 1);

  // Once the first's lease has run out, the other takes the id; the first is
  // told to register again (and is refused from then on).
  f.clock.Advance(6000);
  REQUIRE(f.c->Tick().ok());
  REQUIRE(reg("bbb").ok());
  REQUIRE_FALSE(beat("bbb").reregister());
  REQUIRE(beat("aaa").reregister());
  REQUIRE(reg("aaa").status().code() == StatusCode::kAlreadyExists);
}

TEST_CASE("update changes rules without touching the state layout; other changes are refused") {
  Fixture f;
  f.Register("w1");
  REQUIRE(f.Submit(FraudYaml()).ok());
  proto::UpdateJobRequest u;
  u.set_name("fraud");
  u.set_yaml(FraudYaml("fraud", "200"));
  u.set_filename("new.yaml");
  auto updated = f.c->UpdateJob(u);
  REQUIRE(updated.ok());
  REQUIRE(updated->version() == 2);
  REQUIRE(f.Beat("w1").jobs(0).version() == 2);
  u.set_yaml(FraudYaml("fraud", "200", "clicks"));
  REQUIRE(f.c->UpdateJob(u).status().code() == StatusCode::kFailedPrecondition);
  u.set_yaml(FraudYaml("other"));
  REQUIRE(f.c->UpdateJob(u).status().code() == StatusCode::kInvalidArgument);
  u.set_name("nosuch");
  REQUIRE(f.c->UpdateJob(u).status().code() == StatusCode::kNotFound);
  REQUIRE(f.c->ListJobs()[0].version() == 2);
}

TEST_CASE("cancel removes a job and its tasks") {
  Fixture f;
  f.Register("w1");
  REQUIRE(f.Submit(FraudYaml()).ok());
  REQUIRE(f.c->CancelJob("fraud").ok());
  REQUIRE(f.c->ListJobs().empty());
  REQUIRE(f.Beat("w1").assignments_size() == 0);
  f.Restart();
  REQUIRE(f.c->ListJobs().empty());
  REQUIRE(f.store.data().empty());
}

}  // namespace
}  // namespace sluice::coordinator

namespace sluice::coordinator {
namespace {

TEST_CASE("after a restart, stored owners get three leases to re-register") {
  Fixture f;
  for (const char* w : {"w1", "w2"}) f.Register(w);
  REQUIRE(f.Submit(FraudYaml()).ok());
  auto before = f.Owners("fraud");
  f.Restart();
  f.clock.Advance(8'000);  // 1.6 leases, nobody back yet
  REQUIRE(f.c->Tick().ok());
  REQUIRE(f.Owners("fraud") == before);
  f.Register("w1");  // w1 is back; w2 never returns
  f.clock.Advance(7'500);
  f.Beat("w1");
  REQUIRE(f.c->Tick().ok());
  REQUIRE(f.Placement("fraud") == std::map<std::string, int>{{"w1", 8}});
}

}  // namespace
}  // namespace sluice::coordinator

namespace sluice::coordinator {
namespace {

// What a restarted coordinator would know: jobs, owners and epochs as stored.
struct Durable {
  std::vector<proto::JobInfo> jobs;
  std::map<int32_t, std::pair<std::string, int64_t>> owners;
  bool operator==(const Durable& o) const {
    if (jobs.size() != o.jobs.size() || owners != o.owners) return false;
    for (size_t i = 0; i < jobs.size(); ++i) {
      if (jobs[i].SerializeAsString() != o.jobs[i].SerializeAsString()) return false;
    }
    return true;
  }
};

// A coordinator brought up on a copy of the store, as after a kill -9 of the
// process (or a crash of its host: commits are durable when they return).
Durable AfterCrash(Fixture& f) {
  InMemoryMetadataStore copy = f.store;
  Coordinator restarted(CoordinatorOptions{1000, 5000, "kafka:9092"}, f.clock, copy, f.topics);
  REQUIRE(restarted.Load().ok());
  Durable d;
  d.jobs = restarted.ListJobs();
  if (auto status = restarted.GetJob("fraud"); status.ok()) {
    for (const proto::TaskStatus& t : status->tasks()) {
      d.owners[t.report().partition()] = {t.worker_id(), t.report().epoch()};
    }
  }
  return d;
}

TEST_CASE("a metadata write that fails fails the request and changes nothing") {
  Fixture f;
  for (const char* w : {"w1", "w2"}) f.Register(w);
  // Each request below fails once (nothing changes, in memory or stored),
  // then succeeds when retried.
  auto refused = [&](const auto& request) {
    const auto jobs = f.c->ListJobs();
    const auto owners = f.Owners("fraud");
    const auto stored = f.store.data();
    f.store.FailCommits(1);
    auto result = request();
    REQUIRE(result.status().code() == StatusCode::kUnavailable);
    CHECK_THAT(result.status().message(), Catch::Contains("cannot write its metadata"));
    CHECK(f.c->ListJobs().size() == jobs.size());
    for (size_t i = 0; i < jobs.size(); ++i) {
      CHECK(f.c->ListJobs()[i].SerializeAsString() == jobs[i].SerializeAsString());
    }
    CHECK(f.Owners("fraud") == owners);
    CHECK(f.store.data() == stored);
    auto retried = request();
    INFO(retried.status().ToString());
    REQUIRE(retried.ok());
  };
  auto submit = [&] { return f.Submit(FraudYaml()); };
  refused(submit);
  REQUIRE(f.c->failed_commits() == 1);
  REQUIRE(f.c->ListJobs().size() == 1);
  f.Beat("w1");
  f.Beat("w2");

  // A restarted worker's epoch bump is not handed out until it is stored.
  const auto before = f.Owners("fraud");
  proto::RegisterRequest again;
  again.set_worker_id("w1");
  again.set_threads(2);
  refused([&] { return f.c->Register(again); });
  for (const auto& [p, owner] : f.Owners("fraud")) {
    CHECK(owner.second == before.at(p).second + (owner.first == "w1" ? 1 : 0));
  }
  CHECK(AfterCrash(f).owners == f.Owners("fraud"));

  proto::UpdateJobRequest update;
  update.set_name("fraud");
  update.set_yaml(FraudYaml("fraud", "200"));
  refused([&] { return f.c->UpdateJob(update); });
  REQUIRE(f.c->ListJobs()[0].version() == 2);

  // A lease that expires in a Tick whose write fails expires again next Tick.
  f.clock.Advance(6000);
  f.Beat("w2");
  f.store.FailCommits(1);
  REQUIRE(f.c->Tick().code() == StatusCode::kUnavailable);
  REQUIRE(f.Placement("fraud").count("w1") == 1);
  REQUIRE(f.c->Tick().ok());
  REQUIRE(f.Placement("fraud") == std::map<std::string, int>{{"w2", 8}});

  refused([&] { return f.c->StopJob("fraud", /*drain=*/true); });
  REQUIRE(f.c->ListJobs()[0].state() == proto::DRAINING);
  refused([&] { return f.c->CancelJob("fraud"); });
  REQUIRE(f.c->ListJobs().empty());
  REQUIRE(f.store.data().empty());
}

TEST_CASE("no epoch is handed out that a restarted coordinator would not know") {
  // Workers join, restart, leave and die, with some metadata writes failing;
  // after every step a coordinator restarted from the store (a kill -9 right
  // then) knows every epoch handed out so far, and no task's epoch is ever
  // given to two workers.
  Fixture f;
  for (const char* w : {"w1", "w2"}) f.Register(w);
  REQUIRE(f.Submit(FraudYaml()).ok());
  std::map<std::pair<int32_t, int64_t>, std::string> handed_out;  // (partition, epoch) -> worker
  std::map<int32_t, int64_t> highest;
  uint64_t rng = 42;
  auto next = [&](uint64_t n) {
    rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
    return (rng >> 33) % n;
  };
  const std::vector<std::string> ids = {"w1", "w2", "w3"};
  for (int step = 0; step < 300; ++step) {
    if (next(5) == 0) f.store.FailCommits(1);
    const std::string& id = ids[next(ids.size())];
    proto::HeartbeatRequest req;
    req.set_worker_id(id);
    switch (next(6)) {
      case 0: {  // (re)start: a new process registers
        proto::RegisterRequest r;
        r.set_worker_id(id);
        r.set_threads(2);
        (void)f.c->Register(r);
        f.last.erase(id);
        break;
      }
      case 1:  // silence: time passes, leases may expire
        f.clock.Advance(1500);
        (void)f.c->Tick();
        break;
      case 2:  // leaves
        req.set_leaving(true);
        (void)f.c->Heartbeat(req);
        f.last.erase(id);
        break;
      default: {  // heartbeats, releasing what it was told to stop
        for (const proto::Assignment& a : f.last[id].assignments()) {
          proto::TaskReport* t = req.add_tasks();
          t->set_job(a.job());
          t->set_partition(a.partition());
          t->set_epoch(a.epoch());
          t->set_state(a.stop() ? proto::TaskReport::RELEASED : proto::TaskReport::RUNNING);
        }
        auto response = f.c->Heartbeat(req);
        if (!response.ok()) break;
        if (response->reregister()) {
          f.last.erase(id);
          break;
        }
        f.last[id] = *response;
        for (const proto::Assignment& a : response->assignments()) {
          auto [it, fresh] = handed_out.emplace(std::make_pair(a.partition(), a.epoch()), id);
          INFO("step " << step << ": partition " << a.partition() << " epoch " << a.epoch());
          REQUIRE(it->second == id);  // never the same epoch to two workers
          highest[a.partition()] = std::max(highest[a.partition()], a.epoch());
        }
      }
    }
    f.store.FailCommits(0);
    const Durable crashed = AfterCrash(f);
    for (const auto& [p, epoch] : highest) {
      INFO("step " << step << ": partition " << p);
      REQUIRE(crashed.owners.at(p).second >= epoch);
    }
  }
  REQUIRE(handed_out.size() > 8);  // tasks did move around
}

// ---- Start positions and partitions -----------------------------------------

// Submits FraudYaml(name, ..., topic) with its source.start set as given.
Result<proto::JobInfo> SubmitStartingAt(Fixture& f, const std::string& name,
                                        const std::string& topic, proto::SourceSpec::Start start,
                                        int64_t time_ms = 0) {
  auto spec = jobspec::ParseJobYaml(FraudYaml(name, "5000", topic), "job.yaml");
  REQUIRE(spec.ok());
  spec->mutable_source()->set_start(start);
  spec->mutable_source()->set_start_time_ms(time_ms);
  proto::SubmitJobRequest r;
  *r.mutable_spec() = *spec;
  return f.c->SubmitJob(r);
}

// {partition: start_offset} of the assignments in a heartbeat's answer.
std::map<int32_t, int64_t> StartOffsets(const proto::HeartbeatResponse& beat,
                                        const std::string& job) {
  std::map<int32_t, int64_t> out;
  for (const proto::Assignment& a : beat.assignments()) {
    if (a.job() != job) continue;
    REQUIRE(a.has_start_offset());
    out[a.partition()] = a.start_offset();
  }
  return out;
}

TEST_CASE("source.start is resolved per partition at submit and sent with every assignment") {
  Fixture f;
  f.Register("w1");
  f.topics.ends["clicks"] = {{0, 100}, {1, 250}, {2, 0}};
  // Record timestamps by offset: partition 1 has nothing at or after 5000.
  f.topics.times["clicks"] = {{0, {1000, 4000, 6000, 9000}}, {1, {1000, 2000}}, {2, {}}};

  auto earliest = SubmitStartingAt(f, "a", "clicks", proto::SourceSpec::EARLIEST);
  REQUIRE(earliest.ok());
  CHECK(earliest->initial_partitions() == 3);
  CHECK(std::vector<int64_t>(earliest->start_offsets().begin(), earliest->start_offsets().end()) ==
        std::vector<int64_t>{-2, -2, -2});

  auto latest = SubmitStartingAt(f, "b", "clicks", proto::SourceSpec::LATEST);
  REQUIRE(latest.ok());
  CHECK(std::vector<int64_t>(latest->start_offsets().begin(), latest->start_offsets().end()) ==
        std::vector<int64_t>{100, 250, 0});

  // The first record at or after the time; the end where there is none.
  auto at = SubmitStartingAt(f, "c", "clicks", proto::SourceSpec::AT_TIME, 5000);
  REQUIRE(at.ok());
  CHECK(std::vector<int64_t>(at->start_offsets().begin(), at->start_offsets().end()) ==
        std::vector<int64_t>{2, 250, 0});

  // The worker is told where each task starts; stored, so a restart keeps it.
  const auto& beat = f.Beat("w1");
  CHECK(StartOffsets(beat, "a") == std::map<int32_t, int64_t>{{0, -2}, {1, -2}, {2, -2}});
  CHECK(StartOffsets(beat, "b") == std::map<int32_t, int64_t>{{0, 100}, {1, 250}, {2, 0}});
  CHECK(StartOffsets(beat, "c") == std::map<int32_t, int64_t>{{0, 2}, {1, 250}, {2, 0}});
  f.Restart();
  f.Register("w1");
  f.last.clear();
  CHECK(StartOffsets(f.Beat("w1"), "c") == std::map<int32_t, int64_t>{{0, 2}, {1, 250}, {2, 0}});

  // Kafka cannot say where to start: refused, nothing stored.
  f.topics.offsets_reachable = false;
  auto refused = SubmitStartingAt(f, "d", "clicks", proto::SourceSpec::LATEST);
  REQUIRE(refused.status().code() == StatusCode::kUnavailable);
  CHECK(refused.status().message() ==
        "cannot find where clicks on kafka:9092 starts for source.start: broker down");
  CHECK(f.c->ListJobs().size() == 3);
}

TEST_CASE("partitions added to a running job's topic get tasks that start at their beginning") {
  Fixture f;
  for (const char* w : {"w1", "w2"}) f.Register(w);
  auto job = SubmitStartingAt(f, "fraud", "payments", proto::SourceSpec::LATEST);
  REQUIRE(job.ok());
  REQUIRE(f.c->CheckPartitionsIfDue().ok());  // the first check runs at once
  const int lookups = f.topics.lookups;
  f.topics.partitions["payments"] = 10;

  // Nothing changes before the interval has passed ...
  f.clock.Advance(29'000);
  REQUIRE(f.c->CheckPartitionsIfDue().ok());
  CHECK(f.topics.lookups == lookups);
  CHECK(f.c->ListJobs()[0].partitions() == 8);
  // ... then the two new partitions get tasks, assigned at once.
  f.clock.Advance(1'000);
  REQUIRE(f.c->CheckPartitionsIfDue().ok());
  CHECK(f.topics.lookups == lookups + 1);
  proto::JobInfo info = f.c->ListJobs()[0];
  CHECK(info.state() == proto::RUNNING);
  CHECK(info.partitions() == 10);
  CHECK(info.initial_partitions() == 8);
  REQUIRE(info.start_offsets_size() == 10);
  CHECK(info.start_offsets(8) == -2);
  CHECK(info.start_offsets(9) == -2);
  CHECK(f.Placement("fraud") == std::map<std::string, int>{{"w1", 5}, {"w2", 5}});
  std::map<int32_t, int64_t> starts;
  for (const char* w : {"w1", "w2"}) {
    for (const auto& [p, offset] : StartOffsets(f.Beat(w), "fraud")) starts[p] = offset;
  }
  REQUIRE(starts.size() == 10);
  CHECK(starts[8] == -2);
  CHECK(starts[9] == -2);

  // `status` (GetJob) reads the count again at once, and it is stored.
  f.topics.partitions["payments"] = 12;
  auto status = f.c->GetJob("fraud");
  REQUIRE(status.ok());
  CHECK(status->job().partitions() == 12);
  CHECK(status->tasks_size() == 12);
  f.Restart();
  CHECK(f.c->ListJobs()[0].partitions() == 12);
  CHECK(f.c->ListJobs()[0].initial_partitions() == 8);
  CHECK(f.Owners("fraud").size() == 12);
}

TEST_CASE("a topic that disappears or shrinks fails its job, once seen so twice") {
  Fixture f;
  f.Register("w1");
  REQUIRE(f.Submit(FraudYaml("fraud")).ok());
  REQUIRE(f.Submit(FraudYaml("views", "5000", "clicks")).ok());
  REQUIRE(f.Beat("w1").assignments_size() == 11);

  // Kafka unreachable: nothing is known, nothing changes.
  f.topics.reachable = false;
  REQUIRE(f.c->CheckPartitions("", 100).ok());
  f.topics.reachable = true;

  f.topics.partitions.erase("payments");
  f.topics.partitions["clicks"] = 2;
  REQUIRE(f.c->CheckPartitions("", 100).ok());
  f.clock.Advance(Coordinator::kConfirmTopicLossMs / 2);
  REQUIRE(f.c->CheckPartitions("", 100).ok());
  for (const proto::JobInfo& job : f.c->ListJobs()) CHECK(job.state() == proto::RUNNING);

  // A topic that is back at the next check was a glitch.
  f.topics.partitions["clicks"] = 3;
  f.clock.Advance(Coordinator::kConfirmTopicLossMs);
  REQUIRE(f.c->CheckPartitions("", 100).ok());
  CHECK(f.c->ListJobs()[0].state() == proto::FAILED);
  CHECK(f.c->ListJobs()[0].error() == "source topic payments no longer exists on kafka:9092");
  CHECK(f.c->ListJobs()[1].state() == proto::RUNNING);
  // The failed job's tasks are stopped: its worker no longer holds them.
  CHECK(f.Beat("w1").assignments_size() == 3);
  CHECK(f.Placement("fraud") == std::map<std::string, int>{{"", 8}});

  f.topics.partitions["clicks"] = 2;
  REQUIRE(f.c->CheckPartitions("views", 100).ok());
  f.clock.Advance(Coordinator::kConfirmTopicLossMs);
  REQUIRE(f.c->CheckPartitions("views", 100).ok());
  CHECK(f.c->ListJobs()[1].state() == proto::FAILED);
  CHECK(f.c->ListJobs()[1].error() == "source topic clicks shrank from 3 to 2 partitions");
  CHECK(f.Beat("w1").assignments_size() == 0);

  // Stored; a failed job is not checked or rebalanced again, and can be cancelled.
  f.Restart();
  f.Register("w1");
  REQUIRE(f.c->Tick().ok());
  CHECK(f.c->ListJobs()[0].state() == proto::FAILED);
  CHECK(f.c->ListJobs()[0].error() == "source topic payments no longer exists on kafka:9092");
  f.topics.partitions["payments"] = 8;
  REQUIRE(f.c->CheckPartitions("", 100).ok());
  CHECK(f.c->ListJobs()[0].state() == proto::FAILED);
  f.last.clear();
  CHECK(f.Beat("w1").assignments_size() == 0);
  REQUIRE(f.c->CancelJob("fraud").ok());
  REQUIRE(f.Submit(FraudYaml("fraud")).ok());
  CHECK(f.c->ListJobs()[0].state() == proto::RUNNING);
}

TEST_CASE("a partition check that ends after a later-started one is stale and ignored") {
  Fixture f;
  f.Register("w1");
  REQUIRE(f.Submit(FraudYaml()).ok());
  // A slow check reads 8 partitions; while its answer is on the way, partitions
  // are added and a later check reads 10 and applies them.
  f.topics.during_lookup = [&] {
    f.topics.partitions["payments"] = 10;
    REQUIRE(f.c->CheckPartitions("fraud", 100).ok());
  };
  REQUIRE(f.c->CheckPartitions("fraud", 100).ok());
  CHECK(f.c->ListJobs()[0].partitions() == 10);
  // The slow answer did not count as a first sighting of the topic shrinking:
  // a real shrink now is only believed when seen again.
  f.clock.Advance(2'000);
  f.topics.partitions["payments"] = 4;
  REQUIRE(f.c->CheckPartitions("fraud", 100).ok());
  CHECK(f.c->ListJobs()[0].state() == proto::RUNNING);
  f.clock.Advance(Coordinator::kConfirmTopicLossMs);
  REQUIRE(f.c->CheckPartitions("fraud", 100).ok());
  CHECK(f.c->ListJobs()[0].state() == proto::FAILED);
  CHECK(f.c->ListJobs()[0].error() == "source topic payments shrank from 10 to 4 partitions");
}

TEST_CASE("a partition check of a cancelled job never applies to a new job of the same name") {
  Fixture f;
  f.Register("w1");
  REQUIRE(f.Submit(FraudYaml()).ok());  // on payments, 8 partitions
  // While a check's answer (8) is on the way, the job is cancelled and
  // submitted again on clicks (3 partitions).
  f.topics.during_lookup = [&] {
    REQUIRE(f.c->CancelJob("fraud").ok());
    REQUIRE(f.Submit(FraudYaml("fraud", "5000", "clicks")).ok());
  };
  REQUIRE(f.c->CheckPartitions("fraud", 100).ok());
  CHECK(f.c->ListJobs()[0].partitions() == 3);
  CHECK(f.Owners("fraud").size() == 3);
}

}  // namespace
}  // namespace sluice::coordinator
