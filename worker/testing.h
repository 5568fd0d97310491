#pragma once

// In-memory fakes of the worker's seams (io.h) and of the coordinator
// (coordinator_client.h), for tests of TaskHost, the checkpointer and the
// coordinator client without a broker, a disk or a network. Each fake does
// what the real one promises and lets a test decide what the real one
// would leave to chance: when records are acknowledged, that a save fails,
// that the coordinator is unreachable.
//
// Thread safety: every fake may be called from several threads.

#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "worker/coordinator_client.h"
#include "worker/engine/state_store.h"
#include "worker/io.h"

namespace sluice::worker::testing {

// The partitions of every topic a fake source reads: records by offset from
// a log start (records below it are deleted), and the offsets each group
// committed.
class FakeLog {
 public:
  struct Record {
    std::string key;
    std::string value;
    int64_t timestamp_ms = -1;
  };

  // Appends one record; returns its offset.
  int64_t Append(const std::string& topic, int32_t partition, std::string key, std::string value,
                 int64_t timestamp_ms = -1);
  // Deletes the records below `start` (as retention does).
  void SetLogStart(const std::string& topic, int32_t partition, int64_t start);
  kafka::LogRange Range(const std::string& topic, int32_t partition) const;
  // Up to `max` records from `offset` (copies).
  std::vector<Record> Read(const std::string& topic, int32_t partition, int64_t offset,
                           size_t max) const;
  void Commit(const std::string& group, const std::string& topic, int32_t partition,
              int64_t next_offset);
  // The offset `group` committed last, or -1.
  int64_t Committed(const std::string& group, const std::string& topic, int32_t partition) const;

 private:
  struct Partition {
    int64_t start = 0;
    std::vector<Record> records;  // from offset 0; below start: deleted
  };
  mutable std::mutex mu_;
  std::map<std::pair<std::string, int32_t>, Partition> partitions_;
  std::map<std::tuple<std::string, std::string, int32_t>, int64_t> committed_;
};

class FakeSource final : public Source {
 public:
  FakeSource(FakeLog* log, std::string group) : log_(log), group_(std::move(group)) {}

  Status Assign(const std::string& topic,
                std::span<const kafka::PartitionOffset> partitions) override;
  std::span<const Message> Poll(int timeout_ms, size_t max) override;
  std::span<const kafka::PartitionOffset> OutOfRange() const override { return out_of_range_; }
  Status Pause(const std::string& topic, std::span<const int32_t> partitions) override;
  Status Resume(const std::string& topic, std::span<const int32_t> partitions) override;
  Status Commit(const std::string& topic, std::span<const kafka::PartitionOffset> offsets) override;
  Result<kafka::LogRange> QueryLogRange(const std::string& topic, int32_t partition,
                                        int timeout_ms) override;
  Result<int64_t> QueryEndOffset(const std::string& topic, int32_t partition,
                                 int timeout_ms) override;
  int64_t HighWatermark(const std::string& topic, int32_t partition) override;

  bool paused(int32_t partition) const { return paused_.count(partition) > 0; }

 private:
  FakeLog* log_;
  std::string group_;
  std::string topic_;
  std::map<int32_t, int64_t> next_;  // assigned partitions, next offset (-1: the start)
  std::set<int32_t> paused_;
  std::set<int32_t> stopped_;         // out of range: not read until assigned again
  std::deque<FakeLog::Record> held_;  // what the last Poll returned points here
  std::vector<Message> batch_;
  std::vector<kafka::PartitionOffset> out_of_range_;
};

// Keeps every record produced. Records are acknowledged at once unless
// set_auto_ack(false): then they stay in flight until Ack or Fail.
class FakeSink final : public OutputSink {
 public:
  struct Record {
    std::string topic;
    std::string key;
    std::string value;
  };

  SinkTopic Topic(const std::string& name) override { return {name, nullptr}; }
  Status Produce(const SinkTopic& topic, std::string_view key, std::string_view value,
                 kafka::DeliveryTracker* generation) override;
  int64_t max_message_bytes() const override { return max_message_bytes_; }
  int64_t Outstanding() const override;
  Status Flush(int timeout_ms) override;

  void set_auto_ack(bool on);
  void set_max_message_bytes(int64_t n) { max_message_bytes_ = n; }
  // The next `n` records are refused for good in their delivery reports.
  void RefuseNext(int n);
  // Acknowledges every record in flight.
  void Ack();
  // Fails the delivery of every record in flight with `error`.
  void Fail(const std::string& error);
  // The values produced to `topic`, in order.
  std::vector<std::string> Values(const std::string& topic) const;

 private:
  mutable std::mutex mu_;
  std::vector<Record> records_;
  std::vector<kafka::DeliveryTracker*> pending_;  // one per record in flight
  bool auto_ack_ = true;
  int refuse_ = 0;
  int64_t max_message_bytes_ = 1 << 20;
};

// One task's local state and its saved checkpoints.
struct FakeDisk {
  std::mutex mu;
  engine::InMemoryStateStore local;
  engine::InMemoryStateStore spill;  // keys beyond the state memory budget
  int spills_opened = 0;
  std::map<int64_t, std::pair<CheckpointMeta, engine::InMemoryStateStore>> saved;
  int fail_saves = 0;  // the next n saves fail
  int saves = 0;       // saves that succeeded
};

class FakeCheckpoints final : public CheckpointTarget {
 public:
  FakeCheckpoints(FakeDisk* disk, std::string name) : disk_(disk), name_(std::move(name)) {}

  Result<std::vector<CheckpointMeta>> List() override;
  Result<CheckpointMeta> Restore(std::optional<int64_t> id) override;
  Status DeleteNewerThan(int64_t id) override;
  Result<engine::StateStore*> OpenState(bool wipe) override;
  Result<engine::StateStore*> OpenSpill() override;
  Result<CheckpointMeta> Save(const WriteBatch& changes, const CheckpointMeta& meta,
                              int64_t protect_id, bool started_empty) override;
  std::string where() const override { return "fake:" + name_; }

 private:
  FakeDisk* disk_;
  std::string name_;
};

// A worker's io in memory. No transactions: exactly_once tasks do not open.
class FakeWorkerIo final : public WorkerIo {
 public:
  Result<std::unique_ptr<Source>> OpenSource(const std::string& job) override;
  OutputSink& sink() override { return sink_; }
  Result<std::unique_ptr<CheckpointTarget>> OpenCheckpoints(const std::string& job,
                                                            int32_t partition,
                                                            const std::string& task_name) override;
  Result<std::unique_ptr<Transaction>> OpenTransaction(const engine::JobPlan& plan,
                                                       int32_t partition,
                                                       const std::string& task_name) override;

  FakeLog& log() { return log_; }
  FakeSink& fake_sink() { return sink_; }
  // The disk of task `task_name` ("<job>-<partition>").
  FakeDisk& disk(const std::string& task_name);
  // The source opened last (owned by the host), or null.
  FakeSource* last_source() const { return last_source_; }

 private:
  FakeLog log_;
  FakeSink sink_;
  std::mutex mu_;
  std::map<std::string, std::unique_ptr<FakeDisk>> disks_;
  FakeSource* last_source_ = nullptr;
};

// The coordinator, as a test scripts it: every call answers `status` (and,
// when OK, the response set here) and is recorded.
class FakeCoordinatorRpc final : public CoordinatorRpc {
 public:
  RpcStatus Register(const proto::RegisterRequest& request,
                     proto::RegisterResponse* response) override;
  RpcStatus Heartbeat(const proto::HeartbeatRequest& request,
                      proto::HeartbeatResponse* response) override;
  void Reconnect() override { ++reconnects; }
  std::string address() const override { return "fake-coordinator"; }

  RpcStatus status;
  proto::RegisterResponse register_response;
  proto::HeartbeatResponse heartbeat_response;
  int registers = 0;
  int reconnects = 0;
  std::vector<proto::HeartbeatRequest> heartbeats;
};

}  // namespace sluice::worker::testing
