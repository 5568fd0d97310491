#include "coordinator/coordinator.h"

#include <google/protobuf/util/message_differencer.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <set>
#include <utility>

#include "jobspec/job_loader.h"
#include "worker/engine/job_plan.h"

namespace sluice::coordinator {

namespace {

constexpr std::string_view kJobPrefix = "job/";
constexpr std::string_view kTaskPrefix = "task/";

std::string JobStoreKey(const std::string& name) { return std::string(kJobPrefix) + name; }

std::string TaskStoreKey(const TaskKey& key) {
  char partition[16];
  std::snprintf(partition, sizeof(partition), "%08d", key.partition);
  return std::string(kTaskPrefix) + key.job + "/" + partition;
}

}  // namespace

Coordinator::Coordinator(CoordinatorOptions options, const Clock& clock, MetadataStore& store,
                         TopicMetadata& topics)
    : options_(std::move(options)), clock_(clock), store_(store), topics_(topics) {}

Status Coordinator::Load() {
  std::lock_guard<std::mutex> lock(mu_);
  SLUICE_RETURN_IF_ERROR(store_.Scan(kJobPrefix, [&](std::string_view, std::string_view value) {
    proto::JobInfo job;
    if (!job.ParseFromArray(value.data(), static_cast<int>(value.size()))) {
      return Status::Corruption("a stored job does not decode");
    }
    jobs_[job.name()] = job;
    return Status::Ok();
  }));
  const int64_t now = clock_.NowMillis();
  SLUICE_RETURN_IF_ERROR(store_.Scan(kTaskPrefix, [&](std::string_view, std::string_view value) {
    proto::StoredTask stored;
    if (!stored.ParseFromArray(value.data(), static_cast<int>(value.size()))) {
      return Status::Corruption("a stored task does not decode");
    }
    TaskRecord& task = tasks_[TaskKey{stored.job(), stored.partition()}];
    task.life = TaskLifecycle(stored.owner(), stored.epoch(), stored.moving_to(), stored.done());
    // Owners keep their tasks while they re-register: a grace of three
    // leases from now (workers retry every heartbeat; a worker that does not
    // come back loses its tasks then).
    for (const std::string* w : {&task.life.owner(), &task.life.moving_to()}) {
      if (w->empty()) continue;
      WorkerRecord& rec = workers_[*w];
      rec.alive = true;
      rec.placeholder = true;
      rec.last_heartbeat_ms = now + 2 * options_.lease_ms;
    }
    return Status::Ok();
  }));
  spdlog::info("loaded {} job(s) and {} task(s)", jobs_.size(), tasks_.size());
  return Status::Ok();
}

Coordinator::Saved Coordinator::Save() const { return Saved{jobs_, tasks_, workers_}; }

Status Coordinator::CommitSince(Saved before) {
  using google::protobuf::util::MessageDifferencer;
  WriteBatch batch;
  for (const auto& [name, job] : jobs_) {
    auto it = before.jobs.find(name);
    if (it == before.jobs.end() || !MessageDifferencer::Equals(it->second, job)) {
      batch.Put(JobStoreKey(name), job.SerializeAsString());
    }
  }
  for (const auto& [name, job] : before.jobs) {
    if (!jobs_.count(name)) batch.Delete(JobStoreKey(name));
  }
  for (const auto& [key, task] : tasks_) {
    auto it = before.tasks.find(key);
    if (it != before.tasks.end() && it->second.life == task.life) continue;
    proto::StoredTask stored;
    stored.set_job(key.job);
    stored.set_partition(key.partition);
    stored.set_owner(task.life.owner());
    stored.set_epoch(task.life.epoch());
    stored.set_moving_to(task.life.moving_to());
    stored.set_done(task.life.done());
    batch.Put(TaskStoreKey(key), stored.SerializeAsString());
  }
  for (const auto& [key, task] : before.tasks) {
    if (!tasks_.count(key)) batch.Delete(TaskStoreKey(key));
  }
  if (batch.empty()) return Status::Ok();
  Status s = store_.Commit(batch);
  if (s.ok()) return s;
  ++failed_commits_;
  spdlog::error("cannot write the coordinator's metadata, so the change is undone: {}",
                s.message());
  jobs_ = std::move(before.jobs);
  tasks_ = std::move(before.tasks);
  workers_ = std::move(before.workers);
  return Status::Unavailable("the coordinator cannot write its metadata: " + s.message());
}

int64_t Coordinator::failed_commits() const {
  std::lock_guard<std::mutex> lock(mu_);
  return failed_commits_;
}

std::vector<std::string> Coordinator::LiveWorkers() const {
  std::vector<std::string> live;
  for (const auto& [id, w] : workers_) {
    if (w.alive) live.push_back(id);
  }
  return live;
}

Result<proto::JobSpec> Coordinator::ParseSpec(const std::string& yaml, const std::string& filename,
                                              const proto::JobSpec& spec) const {
  if (!yaml.empty()) {
    auto parsed = jobspec::ParseJobYaml(yaml, filename.empty() ? "job.yaml" : filename);
    if (!parsed.ok()) return Status::InvalidArgument(parsed.status().message());
    return parsed;
  }
  auto plan = engine::JobPlan::Compile(spec);
  if (!plan.ok())
    return Status::InvalidArgument("job " + spec.name() + ": " + plan.status().message());
  return spec;
}

// ---- JobService -------------------------------------------------------------

Result<proto::JobInfo> Coordinator::SubmitJob(const proto::SubmitJobRequest& request) {
  SLUICE_ASSIGN_OR_RETURN(proto::JobSpec spec,
                          ParseSpec(request.yaml(), request.filename(), request.spec()));
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = jobs_.find(spec.name());
    if (it != jobs_.end()) {
      return Status::AlreadyExists("a job named " + spec.name() + " already exists (" +
                                   proto::JobState_Name(it->second.state()) +
                                   "); use update, or cancel it first");
    }
  }
  // Kafka is asked without holding the lock.
  const std::string brokers = BrokersOf(spec);
  auto partitions = topics_.PartitionCount(brokers, spec.source().topic(), kLookupMs);
  if (!partitions.ok()) {
    if (partitions.status().code() == StatusCode::kNotFound) {
      return Status::FailedPrecondition("source topic " + spec.source().topic() +
                                        " does not exist on " + brokers);
    }
    return Status::Unavailable("cannot read the partitions of " + spec.source().topic() + " from " +
                               brokers + ": " + partitions.status().message());
  }
  SLUICE_ASSIGN_OR_RETURN(std::vector<int64_t> start_offsets,
                          ResolveStart(brokers, spec.source(), *partitions));
  if (spec.delivery() == proto::JobSpec::EXACTLY_ONCE) {
    Status txn = topics_.CheckTransactions(brokers);
    if (!txn.ok()) {
      return Status::FailedPrecondition("delivery: exactly_once needs Kafka transactions on " +
                                        brokers + ": " + txn.message());
    }
  }

  std::lock_guard<std::mutex> lock(mu_);
  if (jobs_.count(spec.name()))
    return Status::AlreadyExists("a job named " + spec.name() + " already exists");
  Saved before = Save();
  proto::JobInfo job;
  job.set_name(spec.name());
  *job.mutable_spec() = spec;
  job.set_state(proto::RUNNING);
  job.set_partitions(*partitions);
  job.set_initial_partitions(*partitions);
  for (int64_t offset : start_offsets) job.add_start_offsets(offset);
  job.set_version(1);
  job.set_submitted_ms(clock_.NowMillis());
  job.set_updated_ms(job.submitted_ms());
  jobs_[job.name()] = job;
  topic_loss_.erase(job.name());
  // A check that started before this job existed (of a cancelled job of the
  // same name) is stale.
  applied_check_ticket_[job.name()] = next_check_ticket_;
  for (int32_t p = 0; p < *partitions; ++p) tasks_[TaskKey{job.name(), p}] = TaskRecord();
  Rebalance();
  SLUICE_RETURN_IF_ERROR(CommitSince(std::move(before)));
  spdlog::info("job {} submitted: {} partitions of {}", job.name(), *partitions,
               spec.source().topic());
  return job;
}

std::string Coordinator::BrokersOf(const proto::JobSpec& spec) const {
  return spec.source().brokers().empty() ? options_.default_brokers : spec.source().brokers();
}

Result<std::vector<int64_t>> Coordinator::ResolveStart(const std::string& brokers,
                                                       const proto::SourceSpec& source,
                                                       int32_t partitions) {
  const std::vector<int64_t> beginning(static_cast<size_t>(partitions), kStartAtBeginning);
  if (source.start() == proto::SourceSpec::EARLIEST) return beginning;
  const std::string& topic = source.topic();
  auto failed = [&](const Status& s) {
    return Status::Unavailable("cannot find where " + topic + " on " + brokers +
                               " starts for source.start: " + s.message());
  };
  auto checked = [&](Result<std::vector<int64_t>> offsets) -> Result<std::vector<int64_t>> {
    if (!offsets.ok()) return failed(offsets.status());
    if (offsets->size() != static_cast<size_t>(partitions)) {
      return failed(Status::Internal("offsets for " + std::to_string(offsets->size()) + " of " +
                                     std::to_string(partitions) + " partitions"));
    }
    return offsets;
  };
  auto ends = [&] { return checked(topics_.EndOffsets(brokers, topic, partitions, kLookupMs)); };
  if (source.start() == proto::SourceSpec::LATEST) return ends();
  if (source.start() != proto::SourceSpec::AT_TIME) {
    return Status::InvalidArgument("source.start: unknown value " +
                                   std::to_string(static_cast<int>(source.start())));
  }
  SLUICE_ASSIGN_OR_RETURN(std::vector<int64_t> at,
                          checked(topics_.OffsetsForTime(brokers, topic, partitions,
                                                         source.start_time_ms(), kLookupMs)));
  if (std::any_of(at.begin(), at.end(), [](int64_t o) { return o < 0; })) {
    // No record at or after the time there: start where the next one will be.
    SLUICE_ASSIGN_OR_RETURN(std::vector<int64_t> end, ends());
    for (size_t p = 0; p < at.size(); ++p) {
      if (at[p] < 0) at[p] = end[p];
    }
  }
  return at;
}

Result<proto::JobInfo> Coordinator::UpdateJob(const proto::UpdateJobRequest& request) {
  SLUICE_ASSIGN_OR_RETURN(proto::JobSpec spec,
                          ParseSpec(request.yaml(), request.filename(), request.spec()));
  std::lock_guard<std::mutex> lock(mu_);
  auto it = jobs_.find(request.name());
  if (it == jobs_.end()) return Status::NotFound("no job named " + request.name());
  proto::JobInfo& job = it->second;
  if (spec.name() != job.name()) {
    return Status::InvalidArgument("the file describes job " + spec.name() + ", not " + job.name());
  }
  if (job.state() != proto::RUNNING) {
    return Status::FailedPrecondition("job " + job.name() + " is " +
                                      proto::JobState_Name(job.state()) +
                                      "; only a running job can be updated");
  }
  auto old_plan = engine::JobPlan::Compile(job.spec());
  auto new_plan = engine::JobPlan::Compile(spec);
  if (!old_plan.ok() || !new_plan.ok()) return Status::Internal("a job spec stopped compiling");
  SLUICE_RETURN_IF_ERROR(engine::CheckStateCompatible(**old_plan, **new_plan));
  proto::JobInfo updated = job;
  *updated.mutable_spec() = spec;
  updated.set_version(job.version() + 1);
  updated.set_updated_ms(clock_.NowMillis());
  Saved before = Save();
  job = updated;
  SLUICE_RETURN_IF_ERROR(CommitSince(std::move(before)));
  spdlog::info("job {} updated to version {}", job.name(), job.version());
  return job;
}

Result<proto::JobInfo> Coordinator::StopJob(const std::string& name, bool drain) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = jobs_.find(name);
  if (it == jobs_.end()) return Status::NotFound("no job named " + name);
  if (it->second.state() == proto::STOPPED) return it->second;
  Saved before = Save();
  proto::JobInfo& job = it->second;
  const bool was_running = job.state() == proto::RUNNING;
  if (was_running) {
    job.set_state(drain ? proto::DRAINING : proto::STOPPING);
    job.set_updated_ms(clock_.NowMillis());
    for (auto& [key, task] : tasks_) {
      if (key.job != name) continue;
      task.life.BeginStop();
    }
  }
  CompleteStops();
  SLUICE_RETURN_IF_ERROR(CommitSince(std::move(before)));
  if (was_running) spdlog::info("job {}: {}", name, drain ? "draining" : "stopping");
  return jobs_.at(name);
}

Result<proto::JobInfo> Coordinator::CancelJob(const std::string& name) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = jobs_.find(name);
  if (it == jobs_.end()) return Status::NotFound("no job named " + name);
  proto::JobInfo job = it->second;
  Saved before = Save();
  for (auto t = tasks_.begin(); t != tasks_.end();) {
    t = t->first.job == name ? tasks_.erase(t) : std::next(t);
  }
  jobs_.erase(it);
  topic_loss_.erase(name);
  Rebalance();
  SLUICE_RETURN_IF_ERROR(CommitSince(std::move(before)));
  spdlog::info("job {} cancelled", name);
  job.set_state(proto::STOPPED);
  return job;
}

std::vector<proto::JobInfo> Coordinator::ListJobs() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<proto::JobInfo> out;
  for (const auto& [name, job] : jobs_) out.push_back(job);
  return out;
}

Result<proto::JobStatus> Coordinator::GetJob(const std::string& name) {
  // A failed metadata write is logged and counted; the status is still shown.
  CheckPartitions(name, kStatusLookupMs).IgnoreError();
  return JobStatusOf(name);
}

Result<proto::JobStatus> Coordinator::JobStatusOf(const std::string& name) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = jobs_.find(name);
  if (it == jobs_.end()) return Status::NotFound("no job named " + name);
  proto::JobStatus status;
  *status.mutable_job() = it->second;
  for (const auto& [key, task] : tasks_) {
    if (key.job != name) continue;
    proto::TaskStatus* ts = status.add_tasks();
    ts->set_worker_id(task.life.owner());
    *ts->mutable_report() = task.report;
    ts->mutable_report()->set_job(key.job);
    ts->mutable_report()->set_partition(key.partition);
    ts->mutable_report()->set_epoch(task.life.epoch());
  }
  return status;
}

std::vector<proto::WorkerInfo> Coordinator::ListWorkers() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<proto::WorkerInfo> out;
  for (const auto& [id, w] : workers_) {
    proto::WorkerInfo info;
    info.set_worker_id(id);
    info.set_host(w.host);
    info.set_threads(w.threads);
    info.set_alive(w.alive);
    info.set_last_heartbeat_ms(w.last_heartbeat_ms);
    int32_t n = 0;
    for (const auto& [key, task] : tasks_) n += task.life.owner() == id ? 1 : 0;
    info.set_tasks(n);
    out.push_back(info);
  }
  return out;
}

// ---- WorkerService ----------------------------------------------------------

Result<proto::RegisterResponse> Coordinator::Register(const proto::RegisterRequest& request) {
  std::lock_guard<std::mutex> lock(mu_);
  const int64_t now = clock_.NowMillis();
  Saved before = Save();
  auto it = workers_.find(request.worker_id());
  const bool again = it != workers_.end() && it->second.alive && !it->second.placeholder;
  if (again && !it->second.instance.empty() && !request.instance().empty() &&
      it->second.instance != request.instance()) {
    // Two processes, one id: both would run every task of the id. The first
    // keeps it until its lease runs out.
    return Status::AlreadyExists(
        "worker id " + request.worker_id() + " is held by a live worker on host " +
        it->second.host +
        " with another data directory; give this worker its own --worker-id "
        "(it is refused until the other's lease of " +
        std::to_string(options_.lease_ms / 1000) + " s runs out)");
  }
  if (again) {
    // The same worker registering again is a new process: fence the old one's
    // tasks by giving them a new epoch.
    for (auto& [key, task] : tasks_) {
      if (task.life.owner() != request.worker_id()) continue;
      task.life.Fence();
      task.report = proto::TaskReport();
    }
  }
  WorkerRecord& w = workers_[request.worker_id()];
  w.host = request.host();
  w.instance = request.instance();
  w.threads = request.threads();
  w.last_heartbeat_ms = now;
  w.alive = true;
  w.placeholder = false;
  Rebalance();
  SLUICE_RETURN_IF_ERROR(CommitSince(std::move(before)));
  if (again) {
    spdlog::info("worker {} registered again (restarted)", request.worker_id());
  } else {
    spdlog::info("worker {} registered ({} threads, host {})", request.worker_id(),
                 request.threads(), request.host());
  }
  proto::RegisterResponse response;
  response.set_heartbeat_ms(options_.heartbeat_ms);
  response.set_lease_ms(options_.lease_ms);
  return response;
}

Result<proto::HeartbeatResponse> Coordinator::Heartbeat(const proto::HeartbeatRequest& request) {
  std::lock_guard<std::mutex> lock(mu_);
  proto::HeartbeatResponse response;
  const std::string& id = request.worker_id();
  auto wit = workers_.find(id);
  if (wit == workers_.end() || wit->second.placeholder ||
      (!request.instance().empty() && request.instance() != wit->second.instance)) {
    // Unknown, or an older process of this id (replaced after its lease ran out).
    response.set_reregister(true);
    return response;
  }
  Saved before = Save();
  WorkerRecord& worker = wit->second;
  if (!worker.alive && !request.leaving()) {
    spdlog::info("worker {} is back after its lease expired", id);
  }
  worker.alive = !request.leaving();
  worker.last_heartbeat_ms = clock_.NowMillis();

  bool changed = false;
  for (const proto::TaskReport& report : request.tasks()) {
    auto tit = tasks_.find(TaskKey{report.job(), report.partition()});
    if (tit == tasks_.end()) continue;
    const TaskKey& key = tit->first;
    TaskRecord& task = tit->second;
    if (task.life.owner() != id || report.epoch() != task.life.epoch()) continue;  // stale
    task.report = report;
    auto job = jobs_.find(key.job);
    const proto::JobState state = job == jobs_.end() ? proto::STOPPED : job->second.state();
    switch (report.state()) {
      case proto::TaskReport::RELEASED:
        if (task.life.phase(state) == TaskLifecycle::Phase::kMoving && !request.leaving()) {
          spdlog::info("task {} moves from {} to {}", key.ToString(), id, task.life.moving_to());
        }
        task.life.Released(state, request.leaving());
        if (task.life.owner() != id && !task.life.owner().empty()) {
          task.report = proto::TaskReport();
          spdlog::info("task {} assigned to {} (epoch {})", key.ToString(), task.life.owner(),
                       task.life.epoch());
        }
        changed = true;
        break;
      case proto::TaskReport::DRAINED:
        if (state == proto::DRAINING) {
          task.life.Drained(state);
          changed = true;
        }
        break;
      case proto::TaskReport::FAILED:
        spdlog::warn("task {} failed on {}: {}", key.ToString(), id, report.error());
        task.life.OwnerGone();
        changed = true;
        break;
      default:
        break;
    }
  }
  if (request.leaving()) {
    // Its tasks move now; the released ones without waiting for the lease.
    spdlog::info("worker {} is leaving", id);
    for (auto& [key, task] : tasks_) {
      if (task.life.owner() == id) task.life.OwnerGone();
      if (task.life.moving_to() == id) task.life.TargetGone();
    }
    changed = true;
  }
  if (changed) {
    CompleteStops();
    Rebalance();
  }
  SLUICE_RETURN_IF_ERROR(CommitSince(std::move(before)));
  if (request.leaving()) return response;

  std::set<std::string> job_names;
  for (const auto& [key, task] : tasks_) {
    if (task.life.owner() != id || task.life.done()) continue;
    auto job = jobs_.find(key.job);
    if (job == jobs_.end() || job->second.state() == proto::STOPPED ||
        job->second.state() == proto::FAILED) {
      continue;
    }
    const proto::JobInfo& info = job->second;
    proto::Assignment* a = response.add_assignments();
    a->set_job(key.job);
    a->set_partition(key.partition);
    a->set_epoch(task.life.epoch());
    a->set_start_offset(key.partition >= 0 && key.partition < info.start_offsets_size()
                            ? info.start_offsets(key.partition)
                            : kStartAtBeginning);
    a->set_drain(job->second.state() == proto::DRAINING);
    a->set_stop(job->second.state() == proto::STOPPING || !task.life.moving_to().empty());
    job_names.insert(key.job);
  }
  for (const std::string& name : job_names) *response.add_jobs() = jobs_.at(name);
  return response;
}

// ---- Assignment -------------------------------------------------------------

void Coordinator::Assign(const TaskKey& key, TaskRecord& task, const std::string& worker) {
  task.life.Assign(worker);
  task.report = proto::TaskReport();
  spdlog::info("task {} assigned to {} (epoch {})", key.ToString(), worker, task.life.epoch());
}

void Coordinator::Rebalance() {
  const std::vector<std::string> live = LiveWorkers();
  if (live.empty()) return;
  PlanInput input;
  input.workers = live;
  for (const auto& [key, task] : tasks_) {
    auto job = jobs_.find(key.job);
    if (job == jobs_.end() || job->second.state() != proto::RUNNING) continue;
    input.tasks.push_back(key);
    if (!task.life.owner().empty()) input.current[key] = task.life.owner();
  }
  const std::map<TaskKey, std::string> plan = PlanAssignment(input);
  std::set<std::string> alive(live.begin(), live.end());
  for (auto& [key, task] : tasks_) {
    auto job = jobs_.find(key.job);
    if (job == jobs_.end()) continue;
    if (job->second.state() == proto::RUNNING) {
      const std::string& target = plan.at(key);
      if (task.life.owner().empty() || !alive.count(task.life.owner())) {
        Assign(key, task, target);
      } else {
        task.life.Plan(target);
      }
    } else if ((job->second.state() == proto::DRAINING || job->second.state() == proto::STOPPING) &&
               !task.life.done() &&
               (task.life.owner().empty() || !alive.count(task.life.owner()))) {
      // A stopping job's task whose owner is gone: someone restores it to stop it.
      std::map<std::string, int> load;
      for (const std::string& w : live) load[w] = 0;
      for (const auto& [k, t] : tasks_) {
        if (load.count(t.life.owner())) ++load[t.life.owner()];
      }
      std::string least = live.front();
      for (const auto& [w, n] : load) {
        if (n < load[least]) least = w;
      }
      Assign(key, task, least);
    }
  }
}

void Coordinator::CompleteStops() {
  for (auto& [name, job] : jobs_) {
    if (job.state() != proto::DRAINING && job.state() != proto::STOPPING) continue;
    bool all_done = true;
    for (const auto& [key, task] : tasks_) {
      if (key.job == name && !task.life.done()) all_done = false;
    }
    if (!all_done) continue;
    job.set_state(proto::STOPPED);
    job.set_updated_ms(clock_.NowMillis());
    for (auto& [key, task] : tasks_) {
      if (key.job == name) task.life.Retire();
    }
    spdlog::info("job {} stopped", name);
  }
}

void Coordinator::ExpireLeases(int64_t now) {
  bool expired = false;
  for (auto& [id, w] : workers_) {
    if (w.alive && now - w.last_heartbeat_ms > options_.lease_ms) {
      w.alive = false;
      expired = true;
      spdlog::warn("worker {}: lease expired; its tasks move", id);
    }
  }
  if (!expired) return;
  for (auto& [key, task] : tasks_) {
    auto w = workers_.find(task.life.moving_to());
    if (!task.life.moving_to().empty() && (w == workers_.end() || !w->second.alive)) {
      task.life.TargetGone();
    }
  }
  // Tick rebalances next.
}

Status Coordinator::Tick() {
  std::lock_guard<std::mutex> lock(mu_);
  Saved before = Save();
  ExpireLeases(clock_.NowMillis());
  CompleteStops();
  Rebalance();
  return CommitSince(std::move(before));
}

// ---- Partitions -------------------------------------------------------------

Status Coordinator::CheckPartitionsIfDue() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    const int64_t now = clock_.NowMillis();
    if (last_partition_check_ms_ != 0 &&
        now - last_partition_check_ms_ < options_.partition_check_ms) {
      return Status::Ok();
    }
    last_partition_check_ms_ = now;
  }
  return CheckPartitions("", kLookupMs);
}

Status Coordinator::CheckPartitions(const std::string& only_job, int timeout_ms) {
  struct Probe {
    std::string job, brokers, topic;
    uint64_t ticket = 0;
    Result<int32_t> count = Status::Unavailable("not asked");
  };
  std::vector<Probe> probes;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& [name, job] : jobs_) {
      if (job.state() != proto::RUNNING || (!only_job.empty() && name != only_job)) continue;
      probes.push_back(
          Probe{name, BrokersOf(job.spec()), job.spec().source().topic(), ++next_check_ticket_});
    }
  }
  if (probes.empty()) return Status::Ok();
  // Kafka is asked without holding the lock, once per topic.
  std::map<std::pair<std::string, std::string>, Result<int32_t>> counts;
  for (Probe& probe : probes) {
    auto key = std::make_pair(probe.brokers, probe.topic);
    auto it = counts.find(key);
    if (it == counts.end()) {
      it =
          counts.emplace(key, topics_.PartitionCount(probe.brokers, probe.topic, timeout_ms)).first;
    }
    probe.count = it->second;
  }

  std::lock_guard<std::mutex> lock(mu_);
  Saved before = Save();
  const int64_t now = clock_.NowMillis();
  bool changed = false;
  for (const Probe& probe : probes) {
    auto it = jobs_.find(probe.job);
    // Stopped, cancelled or failed meanwhile, or a later check already applied.
    if (it == jobs_.end() || it->second.state() != proto::RUNNING) continue;
    uint64_t& applied = applied_check_ticket_[probe.job];
    if (probe.ticket <= applied) continue;
    applied = probe.ticket;
    changed |= ApplyPartitionCount(it->second, probe.count, now);
  }
  if (changed) Rebalance();
  return CommitSince(std::move(before));
}

bool Coordinator::ApplyPartitionCount(proto::JobInfo& job, const Result<int32_t>& count,
                                      int64_t now) {
  const std::string& topic = job.spec().source().topic();
  if (!count.ok() && count.status().code() != StatusCode::kNotFound) {
    spdlog::debug("job {}: cannot read the partitions of {}: {}", job.name(), topic,
                  count.status().message());
    return false;  // Kafka unreachable: nothing is known
  }
  std::string loss;
  if (!count.ok()) {
    loss = "source topic " + topic + " no longer exists on " + BrokersOf(job.spec());
  } else if (*count < job.partitions()) {
    loss = "source topic " + topic + " shrank from " + std::to_string(job.partitions()) + " to " +
           std::to_string(*count) + " partitions";
  }
  if (!loss.empty()) {
    TopicLoss& seen = topic_loss_[job.name()];
    if (seen.first_seen_ms == 0) {
      seen.first_seen_ms = now;
      spdlog::warn("job {}: {} (checking again before failing the job)", job.name(), loss);
      return false;
    }
    if (now - seen.first_seen_ms < kConfirmTopicLossMs) return false;
    FailJob(job, loss);
    return true;
  }
  topic_loss_.erase(job.name());
  if (*count == job.partitions()) return false;

  // Partitions were added: their tasks start at the beginning, with fresh state.
  const int32_t old_count = job.partitions();
  while (job.start_offsets_size() < old_count) job.add_start_offsets(kStartAtBeginning);
  job.mutable_start_offsets()->Truncate(old_count);
  for (int32_t p = old_count; p < *count; ++p) {
    job.add_start_offsets(kStartAtBeginning);
    tasks_[TaskKey{job.name(), p}] = TaskRecord();
  }
  job.set_partitions(*count);
  job.set_updated_ms(now);
  spdlog::info(
      "job {}: {} has {} partitions now ({} before); tasks for partitions {}..{} start "
      "at their beginning",
      job.name(), topic, *count, old_count, old_count, *count - 1);
  return true;
}

void Coordinator::FailJob(proto::JobInfo& job, const std::string& error) {
  job.set_state(proto::FAILED);
  job.set_error(error);
  job.set_updated_ms(clock_.NowMillis());
  topic_loss_.erase(job.name());
  for (auto& [key, task] : tasks_) {
    if (key.job != job.name()) continue;
    // No worker holds the task any more: its owner stops it at the next heartbeat.
    task.life.TargetGone();
    task.life.Retire();
  }
  spdlog::error("job {} FAILED: {}; its tasks are stopped", job.name(), error);
}

}  // namespace sluice::coordinator
