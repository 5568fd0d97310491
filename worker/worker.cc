#include "worker/worker.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <deque>
#include <thread>

#include <spdlog/spdlog.h>

#include "worker/engine/job_plan.h"
#include "worker/engine/json_writer.h"
#include "worker/kafka/kafka_client.h"
#include "worker/task.h"

namespace sluice::worker {

struct Worker::Shared {
  JobContext job;
  std::unique_ptr<StateBackend> state;
  std::unique_ptr<KafkaProducer> producer;
  std::mutex trackers_mu;
  std::deque<DeliveryTracker> trackers;  // stable addresses, never freed while producing

  DeliveryTracker* NewTracker() {
    std::lock_guard<std::mutex> lock(trackers_mu);
    return &trackers.emplace_back();
  }
};

Worker::Worker(WorkerOptions options, const Clock& clock)
    : options_(std::move(options)), clock_(clock) {}

Worker::~Worker() = default;

void Worker::Fail(const Status& s) {
  std::lock_guard<std::mutex> lock(error_mu_);
  if (error_.ok()) error_ = s;
  failed_.store(true);
}

Status Worker::Run(const std::atomic<bool>& stop) {
  SLUICE_ASSIGN_OR_RETURN(auto plan, engine::JobPlan::Compile(options_.job));
  shared_ = std::make_unique<Shared>();
  SLUICE_ASSIGN_OR_RETURN(shared_->state, StateBackend::Open(options_.data_dir, options_.state));
  SLUICE_ASSIGN_OR_RETURN(shared_->producer,
                          KafkaProducer::Create(options_.brokers, options_.kafka_settings));
  JobContext& job = shared_->job;
  job.plan = plan;
  job.clock = &clock_;
  job.producer = shared_->producer.get();
  job.state = shared_->state.get();
  job.checkpoint_uri = options_.checkpoint_uri;
  job.keep_checkpoints = options_.keep_checkpoints;

  // Wait for the brokers and the topic, visibly.
  const std::string& topic = plan->spec().source().topic();
  int32_t partition_count = 0;
  {
    SLUICE_ASSIGN_OR_RETURN(auto probe, KafkaConsumer::Create(options_.brokers,
                                                              "sluice-" + plan->name(),
                                                              options_.kafka_settings));
    while (true) {
      auto count = probe->PartitionCount(topic, 5'000);
      if (count.ok()) {
        partition_count = *count;
        break;
      }
      spdlog::warn("waiting for topic {} at {}: {}", topic, options_.brokers,
                   count.status().message());
      for (int i = 0; i < 20 && !stop.load(); ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
      if (stop.load()) return Status::Ok();
    }
  }
  std::vector<int32_t> partitions = options_.partitions;
  if (partitions.empty()) {
    for (int32_t p = 0; p < partition_count; ++p) partitions.push_back(p);
  }
  for (int32_t p : partitions) {
    if (p >= partition_count) {
      return Status::InvalidArgument("topic " + topic + " has " + std::to_string(partition_count) +
                                     " partitions; there is no partition " + std::to_string(p));
    }
  }
  spdlog::info("job {}: {} of {} partitions of {} on {} thread(s)", plan->name(),
               partitions.size(), partition_count, topic, options_.threads);

  const size_t nthreads =
      std::max<size_t>(1, std::min<size_t>(static_cast<size_t>(options_.threads), partitions.size()));
  std::vector<std::vector<int32_t>> per_thread(nthreads);
  for (size_t i = 0; i < partitions.size(); ++i) per_thread[i % nthreads].push_back(partitions[i]);
  std::atomic<int> running{static_cast<int>(nthreads)};
  std::vector<std::thread> threads;
  for (auto& parts : per_thread) {
    threads.emplace_back([this, parts, &stop, &running] {
      RunThread(parts, stop);
      running.fetch_sub(1);
    });
  }
  while (running.load() > 0) {
    WriteStatus();
    for (int i = 0; i < 10 && running.load() > 0; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }
  for (std::thread& t : threads) t.join();
  WriteStatus();
  if (shared_->producer) {
    Status s = shared_->producer->Flush(options_.flush_timeout_ms);
    if (!s.ok()) spdlog::error("final flush: {}", s.message());
  }
  std::lock_guard<std::mutex> lock(error_mu_);
  return error_;
}

void Worker::RunThread(std::vector<int32_t> partitions, const std::atomic<bool>& stop) {
  const JobContext& job = shared_->job;
  const std::string& topic = job.plan->spec().source().topic();
  auto consumer = KafkaConsumer::Create(options_.brokers, "sluice-" + job.plan->name(),
                                        options_.kafka_settings);
  if (!consumer.ok()) return Fail(consumer.status());

  std::map<int32_t, std::unique_ptr<Task>> tasks;
  std::map<int32_t, DeliveryTracker*> trackers;
  for (int32_t p : partitions) {
    trackers[p] = shared_->NewTracker();
    auto task = Task::Open(job, p, trackers[p]);
    if (!task.ok()) {
      return Fail(Status(task.status().code(), "task " + job.plan->name() + "-" +
                                                   std::to_string(p) + ": " +
                                                   task.status().message()));
    }
    tasks[p] = std::move(task).value();
  }
  auto assign = [&]() {
    std::vector<PartitionOffset> offsets;
    for (auto& [p, task] : tasks) offsets.push_back({p, task->next_offset()});
    return (*consumer)->Assign(topic, offsets);
  };
  if (Status s = assign(); !s.ok()) return Fail(s);

  auto commit = [&](Task& task) {
    if (task.next_offset() < 0) return;
    PartitionOffset po{task.partition(), task.next_offset()};
    Status s = (*consumer)->Commit(topic, std::span<const PartitionOffset>(&po, 1));
    if (!s.ok()) spdlog::warn("task {}: {}", task.name(), s.message());
  };

  // Replaces a task whose checkpoint failed by one restored from its last
  // checkpoint; its records since then are processed (and produced) again.
  auto restart = [&](int32_t p) -> Status {
    DeliveryTracker* tracker = trackers[p];
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (tracker->in_flight.load() > 0 && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    tasks[p].reset();
    if (tracker->in_flight.load() > 0) trackers[p] = shared_->NewTracker();  // leave the old one
    trackers[p]->failed.store(0);
    trackers[p]->has_error.store(false);
    SLUICE_ASSIGN_OR_RETURN(tasks[p], Task::Open(job, p, trackers[p]));
    return assign();
  };

  std::vector<engine::SourceRecord> records;
  int64_t last_tick = clock_.NowMillis();
  int64_t last_report = last_tick;
  int64_t last_published = 0;
  bool paused = false;
  std::vector<int32_t> all_partitions = partitions;

  while (!stop.load() && !failed_.load()) {
    std::span<const KafkaConsumer::Message> batch = (*consumer)->Poll(100, 1000);
    for (size_t i = 0; i < batch.size();) {
      const int32_t p = batch[i].partition;
      records.clear();
      size_t j = i;
      for (; j < batch.size() && batch[j].partition == p; ++j) {
        records.push_back({batch[j].payload, batch[j].key, {topic, p, batch[j].offset}});
      }
      auto it = tasks.find(p);
      if (it != tasks.end()) it->second->Process(records);
      i = j;
    }

    const int64_t now = clock_.NowMillis();
    if (now - last_tick >= 1000) {
      last_tick = now;
      for (auto& [p, task] : tasks) task->OnProcessingTime();
    }
    for (auto& [p, task] : tasks) {
      if (!task->CheckpointDue(now)) continue;
      Status s = task->Checkpoint(now, options_.flush_timeout_ms);
      if (s.ok()) {
        commit(*task);
        continue;
      }
      spdlog::error("task {}: checkpoint failed: {}; restarting it from its last checkpoint",
                    task->name(), s.message());
      if (Status r = restart(p); !r.ok()) return Fail(r);
      break;  // the assignment changed: poll again
    }

    // Back-pressure: stop fetching while the producer is backed up.
    const int64_t pending = shared_->producer->OutstandingRecords();
    if (!paused && pending > options_.max_pending_records) {
      if ((*consumer)->Pause(topic, all_partitions).ok()) paused = true;
    } else if (paused && pending < options_.max_pending_records / 2) {
      if ((*consumer)->Resume(topic, all_partitions).ok()) paused = false;
    }

    if (now - last_published >= 250) {
      last_published = now;
      for (auto& [p, task] : tasks) Publish(p, *task);
    }
    if (now - last_report >= 10'000) {
      last_report = now;
      for (auto& [p, task] : tasks) {
        const auto& c = task->processor().counters();
        spdlog::info("task {}: offset {} watermark {} consumed {} late {} dead_lettered {} "
                     "alerts {} windows {}",
                     task->name(), task->next_offset(), task->processor().watermark(), c.consumed,
                     c.late, c.dead_lettered, c.alerts, c.window_results);
      }
    }
  }

  // Stopping: a final checkpoint per task.
  for (auto& [p, task] : tasks) {
    if (options_.drain_on_exit) task->Drain();
    Status s = task->Checkpoint(clock_.NowMillis(), options_.flush_timeout_ms);
    if (s.ok()) {
      commit(*task);
      spdlog::info("task {}: final checkpoint at offset {}", task->name(), task->next_offset());
      Publish(p, *task);
    } else {
      spdlog::error("task {}: final checkpoint failed: {} (a restart replays from the last one)",
                    task->name(), s.message());
    }
  }
}

void Worker::Publish(int32_t partition, const Task& task) {
  const engine::TaskProcessor& proc = task.processor();
  const engine::TaskCounters& c = proc.counters();
  TaskStatus st;
  st.next_offset = task.next_offset();
  st.watermark = proc.watermark();
  st.last_checkpoint_ms = task.last_checkpoint_ms();
  st.open_windows = static_cast<int64_t>(proc.open_windows());
  st.queued_rule_events = static_cast<int64_t>(proc.queued_rule_events());
  int64_t values[7] = {c.consumed, c.processed, c.filtered, c.late,
                       c.dead_lettered, c.alerts, c.window_results};
  std::copy(std::begin(values), std::end(values), st.counters);
  std::lock_guard<std::mutex> lock(status_mu_);
  status_[partition] = st;
}

void Worker::WriteStatus() {
  if (options_.status_file.empty()) return;
  static constexpr const char* kCounterNames[7] = {"consumed", "processed",     "filtered",
                                                   "late",     "dead_lettered", "alerts",
                                                   "window_results"};
  std::string json;
  engine::JsonWriter w(&json);
  w.BeginObject();
  w.Key("job");
  w.String(options_.job.name());
  w.Key("updated_ms");
  w.Int(clock_.NowMillis());
  w.Key("tasks");
  w.BeginArray();
  {
    std::lock_guard<std::mutex> lock(status_mu_);
    for (const auto& [p, st] : status_) {
      w.BeginObject();
      w.Key("partition");
      w.Int(p);
      w.Key("next_offset");
      w.Int(st.next_offset);
      w.Key("watermark");
      w.Int(st.watermark);
      w.Key("last_checkpoint_ms");
      w.Int(st.last_checkpoint_ms);
      w.Key("open_windows");
      w.Int(st.open_windows);
      w.Key("queued_rule_events");
      w.Int(st.queued_rule_events);
      for (int i = 0; i < 7; ++i) {
        w.Key(kCounterNames[i]);
        w.Int(st.counters[i]);
      }
      w.EndObject();
    }
  }
  w.EndArray();
  w.EndObject();
  const std::string tmp = options_.status_file + ".tmp";
  std::FILE* f = std::fopen(tmp.c_str(), "w");
  if (f == nullptr) return;
  bool ok = std::fwrite(json.data(), 1, json.size(), f) == json.size();
  ok = std::fclose(f) == 0 && ok;
  if (ok) std::rename(tmp.c_str(), options_.status_file.c_str());
}

Result<std::vector<int32_t>> ParsePartitions(const std::string& text) {
  std::vector<int32_t> out;
  if (text == "all" || text.empty()) return out;
  size_t pos = 0;
  while (pos <= text.size()) {
    size_t comma = text.find(',', pos);
    std::string part = text.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
    size_t dash = part.find('-');
    try {
      size_t used = 0;
      if (dash == std::string::npos) {
        int v = std::stoi(part, &used);
        if (used != part.size() || v < 0) throw std::invalid_argument(part);
        out.push_back(v);
      } else {
        int a = std::stoi(part.substr(0, dash), &used);
        if (used != dash) throw std::invalid_argument(part);
        std::string rest = part.substr(dash + 1);
        int b = std::stoi(rest, &used);
        if (used != rest.size() || a < 0 || b < a) throw std::invalid_argument(part);
        for (int v = a; v <= b; ++v) out.push_back(v);
      }
    } catch (const std::exception&) {
      return Status::InvalidArgument("--partitions: expected a list like 0-3,5,7 or 'all', got '" +
                                     text + "'");
    }
    if (comma == std::string::npos) break;
    pos = comma + 1;
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

}  // namespace sluice::worker
