#include "worker/testing.h"

#include <algorithm>

namespace sluice::worker::testing {

// ---- FakeLog ----------------------------------------------------------------

int64_t FakeLog::Append(const std::string& topic, int32_t partition, std::string key,
                        std::string value, int64_t timestamp_ms) {
  std::lock_guard<std::mutex> lock(mu_);
  Partition& p = partitions_[{topic, partition}];
  p.records.push_back({std::move(key), std::move(value), timestamp_ms});
  return static_cast<int64_t>(p.records.size()) - 1;
}

void FakeLog::SetLogStart(const std::string& topic, int32_t partition, int64_t start) {
  std::lock_guard<std::mutex> lock(mu_);
  partitions_[{topic, partition}].start = start;
}

kafka::LogRange FakeLog::Range(const std::string& topic, int32_t partition) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = partitions_.find({topic, partition});
  if (it == partitions_.end()) return {0, 0};
  const int64_t end = static_cast<int64_t>(it->second.records.size());
  return {std::min(it->second.start, end), end};
}

std::vector<FakeLog::Record> FakeLog::Read(const std::string& topic, int32_t partition,
                                           int64_t offset, size_t max) const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<Record> out;
  auto it = partitions_.find({topic, partition});
  if (it == partitions_.end()) return out;
  const auto& records = it->second.records;
  for (auto i = static_cast<size_t>(std::max<int64_t>(0, offset));
       i < records.size() && out.size() < max; ++i) {
    out.push_back(records[i]);
  }
  return out;
}

void FakeLog::Commit(const std::string& group, const std::string& topic, int32_t partition,
                     int64_t next_offset) {
  std::lock_guard<std::mutex> lock(mu_);
  committed_[{group, topic, partition}] = next_offset;
}

int64_t FakeLog::Committed(const std::string& group, const std::string& topic,
                           int32_t partition) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = committed_.find({group, topic, partition});
  return it == committed_.end() ? -1 : it->second;
}

// ---- FakeSource -------------------------------------------------------------

Status FakeSource::Assign(const std::string& topic,
                          std::span<const kafka::PartitionOffset> partitions) {
  topic_ = topic;
  next_.clear();
  paused_.clear();
  stopped_.clear();
  for (const kafka::PartitionOffset& po : partitions) next_[po.partition] = po.offset;
  return Status::Ok();
}

std::span<const Source::Message> FakeSource::Poll(int /*timeout_ms*/, size_t max) {
  held_.clear();
  batch_.clear();
  out_of_range_.clear();
  for (auto& [partition, next] : next_) {
    if (paused_.count(partition) || stopped_.count(partition)) continue;
    const kafka::LogRange range = log_->Range(topic_, partition);
    if (next < 0) next = range.start;
    if (next < range.start || next > range.end) {
      out_of_range_.push_back({partition, next});
      stopped_.insert(partition);
      continue;
    }
    for (FakeLog::Record& r : log_->Read(topic_, partition, next, max - batch_.size())) {
      held_.push_back(std::move(r));
      const FakeLog::Record& h = held_.back();
      batch_.push_back({partition, next++, h.key, h.value, h.timestamp_ms});
    }
    if (batch_.size() >= max) break;
  }
  return batch_;
}

Status FakeSource::Pause(const std::string& /*topic*/, std::span<const int32_t> partitions) {
  for (int32_t p : partitions) paused_.insert(p);
  return Status::Ok();
}

Status FakeSource::Resume(const std::string& /*topic*/, std::span<const int32_t> partitions) {
  for (int32_t p : partitions) paused_.erase(p);
  return Status::Ok();
}

Status FakeSource::Commit(const std::string& topic,
                          std::span<const kafka::PartitionOffset> offsets) {
  for (const kafka::PartitionOffset& po : offsets) {
    log_->Commit(group_, topic, po.partition, po.offset);
  }
  return Status::Ok();
}

Result<kafka::LogRange> FakeSource::QueryLogRange(const std::string& topic, int32_t partition,
                                                  int /*timeout_ms*/) {
  return log_->Range(topic, partition);
}

Result<int64_t> FakeSource::QueryEndOffset(const std::string& topic, int32_t partition,
                                           int /*timeout_ms*/) {
  return log_->Range(topic, partition).end;
}

int64_t FakeSource::HighWatermark(const std::string& topic, int32_t partition) {
  return log_->Range(topic, partition).end;
}

// ---- FakeSink ---------------------------------------------------------------

Status FakeSink::Produce(const SinkTopic& topic, std::string_view key, std::string_view value,
                         kafka::DeliveryTracker* generation) {
  std::unique_lock<std::mutex> lock(mu_);
  if (static_cast<int64_t>(key.size() + value.size()) > max_message_bytes_) {
    return Status::InvalidArgument("Broker: Message size too large");
  }
  if (generation != nullptr) generation->in_flight.fetch_add(1);
  if (refuse_ > 0) {
    --refuse_;
    kafka::RefusedRecord r;
    r.topic = topic.name;
    r.error = "Broker: Message size too large";
    r.key = std::string(key);
    const int64_t prefix = generation != nullptr ? generation->refused_prefix_bytes.load() : 0;
    r.value_prefix = std::string(value.substr(0, static_cast<size_t>(prefix)));
    r.value_bytes = static_cast<int64_t>(value.size());
    r.hash = kafka::RecordHash(key, value);
    lock.unlock();
    if (generation != nullptr) {
      generation->AddRefused(std::move(r));
      generation->Settled();
    }
    return Status::Ok();
  }
  records_.push_back({topic.name, std::string(key), std::string(value)});
  if (generation == nullptr) return Status::Ok();
  if (!auto_ack_) {
    pending_.push_back(generation);
    return Status::Ok();
  }
  lock.unlock();
  generation->delivered.fetch_add(1);
  generation->Settled();
  return Status::Ok();
}

int64_t FakeSink::Outstanding() const {
  std::lock_guard<std::mutex> lock(mu_);
  return static_cast<int64_t>(pending_.size());
}

Status FakeSink::Flush(int /*timeout_ms*/) {
  std::lock_guard<std::mutex> lock(mu_);
  return pending_.empty()
             ? Status::Ok()
             : Status::Unavailable(std::to_string(pending_.size()) + " records not acknowledged");
}

void FakeSink::set_auto_ack(bool on) {
  std::lock_guard<std::mutex> lock(mu_);
  auto_ack_ = on;
}

void FakeSink::RefuseNext(int n) {
  std::lock_guard<std::mutex> lock(mu_);
  refuse_ = n;
}

void FakeSink::Ack() {
  std::vector<kafka::DeliveryTracker*> pending;
  {
    std::lock_guard<std::mutex> lock(mu_);
    pending.swap(pending_);
  }
  for (kafka::DeliveryTracker* g : pending) {
    g->delivered.fetch_add(1);
    g->Settled();
  }
}

void FakeSink::Fail(const std::string& error) {
  std::vector<kafka::DeliveryTracker*> pending;
  {
    std::lock_guard<std::mutex> lock(mu_);
    pending.swap(pending_);
  }
  for (kafka::DeliveryTracker* g : pending) {
    if (!g->has_error.load()) {
      g->last_error = error;
      g->has_error.store(true);
    }
    g->failed.fetch_add(1);
    g->Settled();
  }
}

std::vector<std::string> FakeSink::Values(const std::string& topic) const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<std::string> out;
  for (const Record& r : records_) {
    if (r.topic == topic) out.push_back(r.value);
  }
  return out;
}

// ---- FakeCheckpoints --------------------------------------------------------

Result<std::vector<CheckpointMeta>> FakeCheckpoints::List() {
  std::lock_guard<std::mutex> lock(disk_->mu);
  std::vector<CheckpointMeta> out;
  for (auto it = disk_->saved.rbegin(); it != disk_->saved.rend(); ++it) {
    out.push_back(it->second.first);
  }
  return out;
}

Result<CheckpointMeta> FakeCheckpoints::Restore(std::optional<int64_t> id) {
  std::lock_guard<std::mutex> lock(disk_->mu);
  if (disk_->saved.empty()) return Status::NotFound("no checkpoint in " + where());
  auto it = id ? disk_->saved.find(*id) : std::prev(disk_->saved.end());
  if (it == disk_->saved.end()) {
    return Status::NotFound("no checkpoint " + std::to_string(*id) + " in " + where());
  }
  disk_->local = it->second.second;
  return it->second.first;
}

Status FakeCheckpoints::DeleteNewerThan(int64_t id) {
  std::lock_guard<std::mutex> lock(disk_->mu);
  disk_->saved.erase(disk_->saved.upper_bound(id), disk_->saved.end());
  return Status::Ok();
}

Result<engine::StateStore*> FakeCheckpoints::OpenState(bool wipe) {
  std::lock_guard<std::mutex> lock(disk_->mu);
  if (wipe) disk_->local = engine::InMemoryStateStore();
  return static_cast<engine::StateStore*>(&disk_->local);
}

Result<engine::StateStore*> FakeCheckpoints::OpenSpill() {
  std::lock_guard<std::mutex> lock(disk_->mu);
  disk_->spill = engine::InMemoryStateStore();
  ++disk_->spills_opened;
  return static_cast<engine::StateStore*>(&disk_->spill);
}

Result<CheckpointMeta> FakeCheckpoints::Save(const WriteBatch& /*changes*/,
                                             const CheckpointMeta& meta, int64_t /*protect_id*/,
                                             bool /*started_empty*/) {
  std::lock_guard<std::mutex> lock(disk_->mu);
  if (disk_->fail_saves > 0) {
    --disk_->fail_saves;
    return Status::IoError("injected: cannot write a checkpoint to " + where());
  }
  if (!disk_->saved.empty() && meta.epoch < disk_->saved.rbegin()->second.first.epoch) {
    return Status::FailedPrecondition("epoch " + std::to_string(meta.epoch) +
                                      " is older than the newest checkpoint's");
  }
  CheckpointMeta saved = meta;
  saved.checkpoint_id = disk_->saved.empty() ? 1 : disk_->saved.rbegin()->first + 1;
  disk_->saved[saved.checkpoint_id] = {saved, disk_->local};
  ++disk_->saves;
  return saved;
}

// ---- FakeWorkerIo -----------------------------------------------------------

Result<std::unique_ptr<Source>> FakeWorkerIo::OpenSource(const std::string& job) {
  auto source = std::make_unique<FakeSource>(&log_, "sluice-" + job);
  std::lock_guard<std::mutex> lock(mu_);
  last_source_ = source.get();
  return std::unique_ptr<Source>(std::move(source));
}

Result<std::unique_ptr<CheckpointTarget>> FakeWorkerIo::OpenCheckpoints(
    const std::string& /*job*/, int32_t /*partition*/, const std::string& task_name) {
  return std::unique_ptr<CheckpointTarget>(
      std::make_unique<FakeCheckpoints>(&disk(task_name), task_name));
}

Result<std::unique_ptr<Transaction>> FakeWorkerIo::OpenTransaction(
    const engine::JobPlan& /*plan*/, int32_t /*partition*/, const std::string& /*task_name*/) {
  return Status::FailedPrecondition("the fake io has no transactions");
}

FakeDisk& FakeWorkerIo::disk(const std::string& task_name) {
  std::lock_guard<std::mutex> lock(mu_);
  std::unique_ptr<FakeDisk>& d = disks_[task_name];
  if (!d) d = std::make_unique<FakeDisk>();
  return *d;
}

// ---- FakeCoordinatorRpc -----------------------------------------------------

RpcStatus FakeCoordinatorRpc::Register(const proto::RegisterRequest& /*request*/,
                                       proto::RegisterResponse* response) {
  ++registers;
  if (status.ok()) *response = register_response;
  return status;
}

RpcStatus FakeCoordinatorRpc::Heartbeat(const proto::HeartbeatRequest& request,
                                        proto::HeartbeatResponse* response) {
  heartbeats.push_back(request);
  if (status.ok()) *response = heartbeat_response;
  return status;
}

}  // namespace sluice::worker::testing
