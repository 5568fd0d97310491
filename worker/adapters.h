#pragma once

// The real implementations of the worker's seams (io.h) and of the
// coordinator client's (coordinator_client.h), constructed here and nowhere
// else: Kafka (librdkafka) for sources, sinks and transactions, RocksDB and
// the checkpoint store for state, gRPC for the coordinator.

#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "common/status.h"
#include "kafka/kafka_client.h"
#include "worker/coordinator_client.h"
#include "worker/exactly_once.h"
#include "worker/io.h"
#include "worker/state/checkpoint_store.h"
#include "worker/state/rocksdb_state_store.h"
#include "worker/task_host.h"

namespace sluice {
struct ClientSecurity;  // common/grpc_security.h
}  // namespace sluice

namespace sluice::worker {

struct KafkaIoConfig {
  std::string brokers;
  std::map<std::string, std::string> kafka_settings;
  std::string checkpoint_uri;
  CheckpointStoreOptions checkpoints;
  // For init_transactions.
  int transaction_timeout_ms = 30'000;
  // Not owned: both must outlive the io and every task opened with it.
  kafka::KafkaProducer* producer = nullptr;
  StateBackend* state = nullptr;
  // Marker topics known already, by job name; others are resolved (and
  // created) on first use.
  std::map<std::string, MarkerTopic> markers;
};

// A worker's io over Kafka and RocksDB.
class KafkaWorkerIo final : public WorkerIo {
 public:
  explicit KafkaWorkerIo(KafkaIoConfig config);
  ~KafkaWorkerIo() override;

  Result<std::unique_ptr<Source>> OpenSource(const std::string& job) override;
  OutputSink& sink() override { return *sink_; }
  Result<std::unique_ptr<CheckpointTarget>> OpenCheckpoints(const std::string& job,
                                                            int32_t partition,
                                                            const std::string& task_name) override;
  Result<std::unique_ptr<Transaction>> OpenTransaction(const engine::JobPlan& plan,
                                                       int32_t partition,
                                                       const std::string& task_name) override;

 private:
  friend Result<std::unique_ptr<WorkerIo>> OpenWorkerIo(const HostOptions& options);
  // The job's marker topic, resolved (and created) once.
  Result<MarkerTopic> MarkersOf(const engine::JobPlan& plan);

  KafkaIoConfig config_;
  std::unique_ptr<OutputSink> sink_;
  std::mutex markers_mu_;
  std::unique_ptr<kafka::KafkaConsumer> metadata_;  // for partition counts
  // Set when OpenWorkerIo made them.
  std::unique_ptr<StateBackend> owned_state_;
  std::unique_ptr<kafka::KafkaProducer> owned_producer_;
};

// Opens what a worker with `options` uses: its state backend (the data
// directory) and its producer.
Result<std::unique_ptr<WorkerIo>> OpenWorkerIo(const HostOptions& options);

// The coordinator over gRPC at `address` (TLS and a bearer token when
// `security` is set).
std::unique_ptr<CoordinatorRpc> NewGrpcCoordinatorRpc(
    std::string address, std::shared_ptr<const ClientSecurity> security);

}  // namespace sluice::worker
