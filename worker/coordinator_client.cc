#include "worker/coordinator_client.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <optional>
#include <set>
#include <thread>

namespace sluice::worker {

namespace {
// Where a task without a checkpoint starts: Assignment.start_offset, if set.
std::optional<int64_t> StartOf(const proto::Assignment& a) {
  return a.has_start_offset() ? std::optional<int64_t>(a.start_offset()) : std::nullopt;
}
}  // namespace

CoordinatorClient::CoordinatorClient(std::unique_ptr<CoordinatorRpc> rpc, std::string worker_id,
                                     int threads, TaskHost& host, const Clock& clock,
                                     std::string instance)
    : rpc_(std::move(rpc)),
      worker_id_(std::move(worker_id)),
      instance_(std::move(instance)),
      threads_(threads),
      host_(host),
      clock_(clock) {
  char hostname[256] = {};
  gethostname(hostname, sizeof(hostname) - 1);
  hostname_ = hostname;
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
  while (!stop.load()) {
    const int64_t wait_ms = Beat();
    for (int64_t slept = 0; slept < wait_ms && !stop.load(); slept += 20) {
      std::this_thread::sleep_for(std::chrono::milliseconds(std::min<int64_t>(20, wait_ms)));
    }
  }
}

int64_t CoordinatorClient::Beat() {
  const int64_t started = clock_.NowMillis();
  RpcStatus st;
  if (!registered_) {
    proto::RegisterRequest req;
    req.set_worker_id(worker_id_);
    req.set_host(hostname_);
    req.set_threads(threads_);
    req.set_instance(instance_);
    proto::RegisterResponse resp;
    st = rpc_->Register(req, &resp);
    if (st.ok()) {
      registered_ = true;
      heartbeat_ms_ = resp.heartbeat_ms() > 0 ? resp.heartbeat_ms() : heartbeat_ms_;
      lease_ms_ = resp.lease_ms() > 0 ? resp.lease_ms() : lease_ms_;
      spdlog::info("registered with the coordinator at {} as {} (heartbeat {} ms, lease {} ms)",
                   rpc_->address(), worker_id_, heartbeat_ms_, lease_ms_);
      return 0;
    }
    if (st.code == RpcStatus::Code::kDuplicate) {
      // Another live process holds this id: run nothing meanwhile.
      for (const proto::TaskReport& r : host_.Reports()) {
        if (Active(r.state())) host_.StopTask(TaskRef{r.job(), r.partition()}, StopMode::kFence);
      }
      host_.Confirm({}, 0);
      Warn(st);
      return heartbeat_ms_;
    }
  } else {
    proto::HeartbeatRequest req;
    req.set_worker_id(worker_id_);
    req.set_instance(instance_);
    for (proto::TaskReport& r : host_.Reports()) *req.add_tasks() = std::move(r);
    proto::HeartbeatResponse resp;
    st = rpc_->Heartbeat(req, &resp);
    if (st.ok()) {
      if (resp.reregister()) {
        spdlog::info("the coordinator does not know this worker: registering again");
        registered_ = false;
        return 0;
      }
      // Fence first: tasks no longer ours stop before anything else runs;
      // then the ones confirmed ours may checkpoint until the coordinator
      // could give them away (a lease after this request, less a beat).
      Reconcile(resp);
      std::map<TaskRef, int64_t> confirmed;
      for (const proto::Assignment& a : resp.assignments()) {
        confirmed[TaskRef{a.job(), a.partition()}] = a.epoch();
      }
      host_.Confirm(confirmed, started + lease_ms_ - heartbeat_ms_);
    }
  }
  if (!st.ok()) {
    if (st.code == RpcStatus::Code::kUnreachable) rpc_->Reconnect();
    Warn(st);
  }
  return std::max<int64_t>(0, heartbeat_ms_ - (clock_.NowMillis() - started));
}

void CoordinatorClient::Warn(const RpcStatus& st) {
  const int64_t now = clock_.NowMillis();
  if (now - last_warning_ <= 10'000 && last_warning_ != 0) return;
  last_warning_ = now;
  switch (st.code) {
    case RpcStatus::Code::kDuplicate:
      spdlog::error("the coordinator refuses this worker: {}", st.message);
      break;
    case RpcStatus::Code::kUnauthorized:
      spdlog::error(
          "the coordinator at {} refuses this worker's token: {} (--token-file needs a token "
          "with role worker)",
          rpc_->address(), st.message);
      break;
    default:
      spdlog::warn("cannot reach the coordinator at {}: {}; tasks keep running", rpc_->address(),
                   st.message);
  }
}

void CoordinatorClient::Leave() {
  proto::HeartbeatRequest req;
  req.set_worker_id(worker_id_);
  req.set_instance(instance_);
  req.set_leaving(true);
  for (proto::TaskReport& r : host_.Reports()) *req.add_tasks() = std::move(r);
  proto::HeartbeatResponse resp;
  RpcStatus st = rpc_->Heartbeat(req, &resp);
  if (st.ok()) {
    spdlog::info("told the coordinator this worker is leaving");
  } else {
    spdlog::warn("could not tell the coordinator this worker is leaving: {}", st.message);
  }
}

}  // namespace sluice::worker
