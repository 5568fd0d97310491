#include "worker/coordinator_client.h"

#include <grpcpp/grpcpp.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <chrono>
#include <optional>
#include <set>
#include <thread>

#include "common/grpc_security.h"
#include "proto/sluice.grpc.pb.h"

namespace sluice::worker {

namespace {
// Where a task without a checkpoint starts: Assignment.start_offset, if set.
std::optional<int64_t> StartOf(const proto::Assignment& a) {
  return a.has_start_offset() ? std::optional<int64_t>(a.start_offset()) : std::nullopt;
}
}  // namespace

struct CoordinatorClient::Rpc {
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<proto::WorkerService::Stub> stub;
};

CoordinatorClient::CoordinatorClient(std::string address, std::string worker_id, int threads,
                                     TaskHost& host, const Clock& clock, std::string instance,
                                     std::shared_ptr<const ClientSecurity> security)
    : address_(std::move(address)),
      worker_id_(std::move(worker_id)),
      instance_(std::move(instance)),
      threads_(threads),
      host_(host),
      clock_(clock),
      security_(std::move(security)),
      rpc_(std::make_unique<Rpc>()) {
  Connect();
}

void CoordinatorClient::Connect() {
  // A channel of its own (not gRPC's process-wide subchannel pool), with a
  // short reconnect backoff: Run replaces it after a failed call, so a
  // coordinator that restarts is reached at the next heartbeat, not after a
  // backoff that grew while it was down (gRPC's grows to minutes, and even
  // capped it has held workers off for seconds, past their lease).
  grpc::ChannelArguments args = security_ ? security_->args : grpc::ChannelArguments();
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 500);
  rpc_->channel = grpc::CreateCustomChannel(
      address_, security_ ? security_->credentials : grpc::InsecureChannelCredentials(), args);
  rpc_->stub = proto::WorkerService::NewStub(rpc_->channel);
}

CoordinatorClient::~CoordinatorClient() = default;

std::shared_ptr<const engine::JobPlan> CoordinatorClient::PlanFor(const proto::JobInfo& job) {
  auto it = plans_.find(job.name());
  if (it != plans_.end() && it->second.first == job.version()) return it->second.second;
  auto plan = engine::JobPlan::Compile(job.spec());
  if (!plan.ok()) {
    spdlog::error("job {}: the coordinator's spec does not compile here: {}", job.name(),
                  plan.status().message());
    return nullptr;
  }
  plans_[job.name()] = {job.version(), *plan};
  return *plan;
}

void CoordinatorClient::Reconcile(const proto::HeartbeatResponse& reply) {
  std::map<std::string, const proto::JobInfo*> jobs;
  for (const proto::JobInfo& j : reply.jobs()) jobs[j.name()] = &j;
  std::map<TaskRef, proto::TaskReport> running;
  for (proto::TaskReport& r : host_.Reports()) running[TaskRef{r.job(), r.partition()}] = r;

  std::set<TaskRef> wanted;
  for (const proto::Assignment& a : reply.assignments()) {
    TaskRef ref{a.job(), a.partition()};
    wanted.insert(ref);
    auto job = jobs.find(a.job());
    if (job == jobs.end()) continue;
    auto r = running.find(ref);
    const bool active = r != running.end() && Active(r->second.state());
    if (a.stop() || a.drain()) {
      if (active && r->second.epoch() == a.epoch()) {
        host_.StopTask(ref, a.drain() ? StopMode::kDrain : StopMode::kRelease);
      } else if (r == running.end() || r->second.state() == proto::TaskReport::FAILED) {
        // Not here (e.g. after a restart): run it from its checkpoint to drain or release it.
        if (auto plan = PlanFor(*job->second)) {
          host_.StartTask(plan, job->second->version(), a.partition(), a.epoch(), StartOf(a));
          host_.StopTask(ref, a.drain() ? StopMode::kDrain : StopMode::kRelease);
        }
      }
      continue;
    }
    auto plan = PlanFor(*job->second);
    if (plan == nullptr) continue;
    if (!active || r->second.epoch() != a.epoch()) {
      host_.StartTask(plan, job->second->version(), a.partition(), a.epoch(), StartOf(a));
    } else if (r->second.version() < job->second->version()) {
      host_.UpdateTask(ref, plan, job->second->version());
    }
  }
  for (const auto& [ref, r] : running) {
    if (wanted.count(ref)) continue;
    if (Active(r.state())) {
      host_.StopTask(ref, StopMode::kFence);
    } else {
      host_.Forget(ref);
    }
  }
}

void CoordinatorClient::Run(const std::atomic<bool>& stop) {
  char hostname[256] = {};
  gethostname(hostname, sizeof(hostname) - 1);
  int64_t heartbeat_ms = 1000, lease_ms = 5000;
  bool registered = false;
  int64_t last_warning = 0;
  auto sleep_ms = [&](int64_t ms) {
    for (int64_t slept = 0; slept < ms && !stop.load(); slept += 20) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  };
  while (!stop.load()) {
    const int64_t started = clock_.NowMillis();
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(2000));
    if (security_) security_->Apply(&ctx);
    grpc::Status st;
    if (!registered) {
      proto::RegisterRequest req;
      req.set_worker_id(worker_id_);
      req.set_host(hostname);
      req.set_threads(threads_);
      req.set_instance(instance_);
      proto::RegisterResponse resp;
      st = rpc_->stub->Register(&ctx, req, &resp);
      if (st.ok()) {
        registered = true;
        heartbeat_ms = resp.heartbeat_ms() > 0 ? resp.heartbeat_ms() : heartbeat_ms;
        lease_ms = resp.lease_ms() > 0 ? resp.lease_ms() : lease_ms;
        spdlog::info("registered with the coordinator at {} as {} (heartbeat {} ms, lease {} ms)",
                     address_, worker_id_, heartbeat_ms, lease_ms);
        continue;
      }
      if (st.error_code() == grpc::StatusCode::ALREADY_EXISTS) {
        // Another live process holds this id: run nothing meanwhile.
        for (const proto::TaskReport& r : host_.Reports()) {
          if (Active(r.state())) host_.StopTask(TaskRef{r.job(), r.partition()}, StopMode::kFence);
        }
        host_.Confirm({}, 0);
        const int64_t now = clock_.NowMillis();
        if (now - last_warning > 10'000) {
          last_warning = now;
          spdlog::error("the coordinator refuses this worker: {}", st.error_message());
        }
        sleep_ms(heartbeat_ms);
        continue;
      }
    } else {
      proto::HeartbeatRequest req;
      req.set_worker_id(worker_id_);
      req.set_instance(instance_);
      for (proto::TaskReport& r : host_.Reports()) *req.add_tasks() = std::move(r);
      proto::HeartbeatResponse resp;
      st = rpc_->stub->Heartbeat(&ctx, req, &resp);
      if (st.ok()) {
        if (resp.reregister()) {
          spdlog::info("the coordinator does not know this worker: registering again");
          registered = false;
          continue;
        }
        // Fence first: tasks no longer ours stop before anything else runs;
        // then the ones confirmed ours may checkpoint until the coordinator
        // could give them away (a lease after this request, less a beat).
        Reconcile(resp);
        std::map<TaskRef, int64_t> confirmed;
        for (const proto::Assignment& a : resp.assignments()) {
          confirmed[TaskRef{a.job(), a.partition()}] = a.epoch();
        }
        host_.Confirm(confirmed, started + lease_ms - heartbeat_ms);
      }
    }
    if (!st.ok()) {
      if (st.error_code() == grpc::StatusCode::UNAVAILABLE ||
          st.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) {
        Connect();  // the next attempt connects afresh
      }
      const int64_t now = clock_.NowMillis();
      if (now - last_warning > 10'000) {
        last_warning = now;
        if (st.error_code() == grpc::StatusCode::UNAUTHENTICATED ||
            st.error_code() == grpc::StatusCode::PERMISSION_DENIED) {
          spdlog::error(
              "the coordinator at {} refuses this worker's token: {} (--token-file "
              "needs a token with role worker)",
              address_, st.error_message());
        } else {
          spdlog::warn("cannot reach the coordinator at {}: {}; tasks keep running", address_,
                       st.error_message());
        }
      }
    }
    sleep_ms(std::max<int64_t>(0, heartbeat_ms - (clock_.NowMillis() - started)));
  }
}

void CoordinatorClient::Leave() {
  proto::HeartbeatRequest req;
  req.set_worker_id(worker_id_);
  req.set_instance(instance_);
  req.set_leaving(true);
  for (proto::TaskReport& r : host_.Reports()) *req.add_tasks() = std::move(r);
  proto::HeartbeatResponse resp;
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(2000));
  if (security_) security_->Apply(&ctx);
  grpc::Status st = rpc_->stub->Heartbeat(&ctx, req, &resp);
  if (st.ok()) {
    spdlog::info("told the coordinator this worker is leaving");
  } else {
    spdlog::warn("could not tell the coordinator this worker is leaving: {}", st.error_message());
  }
}

}  // namespace sluice::worker
