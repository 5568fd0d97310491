#include "worker/adapters.h"

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <mutex>
#include <utility>

#include "common/grpc_security.h"
#include "proto/sluice.grpc.pb.h"
#include "worker/engine/job_plan.h"

namespace sluice::worker {

namespace {

// ---- Source: a Kafka consumer with manual assignment ------------------------

class KafkaSource final : public Source {
 public:
  explicit KafkaSource(std::unique_ptr<kafka::KafkaConsumer> consumer)
      : consumer_(std::move(consumer)) {}

  Status Assign(const std::string& topic,
                std::span<const kafka::PartitionOffset> partitions) override {
    return consumer_->Assign(topic, partitions);
  }
  std::span<const Message> Poll(int timeout_ms, size_t max) override {
    return consumer_->Poll(timeout_ms, max);
  }
  std::span<const kafka::PartitionOffset> OutOfRange() const override {
    return consumer_->OutOfRange();
  }
  Status Pause(const std::string& topic, std::span<const int32_t> partitions) override {
    return consumer_->Pause(topic, partitions);
  }
  Status Resume(const std::string& topic, std::span<const int32_t> partitions) override {
    return consumer_->Resume(topic, partitions);
  }
  Status Commit(const std::string& topic,
                std::span<const kafka::PartitionOffset> offsets) override {
    return consumer_->Commit(topic, offsets);
  }
  Result<kafka::LogRange> QueryLogRange(const std::string& topic, int32_t partition,
                                        int timeout_ms) override {
    return consumer_->QueryLogRange(topic, partition, timeout_ms);
  }
  Result<int64_t> QueryEndOffset(const std::string& topic, int32_t partition,
                                 int timeout_ms) override {
    return consumer_->QueryEndOffset(topic, partition, timeout_ms);
  }
  int64_t HighWatermark(const std::string& topic, int32_t partition) override {
    return consumer_->HighWatermark(topic, partition);
  }

 private:
  std::unique_ptr<kafka::KafkaConsumer> consumer_;
};

// ---- OutputSink: the worker's idempotent producer ---------------------------

class KafkaSink final : public OutputSink {
 public:
  explicit KafkaSink(kafka::KafkaProducer* producer) : producer_(producer) {}

  SinkTopic Topic(const std::string& name) override { return {name, producer_->Topic(name)}; }
  Status Produce(const SinkTopic& topic, std::string_view key, std::string_view value,
                 kafka::DeliveryTracker* generation) override {
    return producer_->Produce(static_cast<rd_kafka_topic_s*>(topic.handle), key, value, generation);
  }
  int64_t max_message_bytes() const override { return producer_->max_message_bytes(); }
  int64_t Outstanding() const override { return producer_->OutstandingRecords(); }
  Status Flush(int timeout_ms) override { return producer_->Flush(timeout_ms); }

 private:
  kafka::KafkaProducer* producer_;
};

// ---- CheckpointTarget: the task's RocksDB and its checkpoint store ----------

class RocksDbCheckpoints final : public CheckpointTarget {
 public:
  RocksDbCheckpoints(StateBackend* backend, std::string task_name,
                     std::unique_ptr<CheckpointStore> checkpoints)
      : backend_(backend), task_name_(std::move(task_name)), checkpoints_(std::move(checkpoints)) {}

  Result<std::vector<CheckpointMeta>> List() override { return checkpoints_->List(); }

  Result<CheckpointMeta> Restore(std::optional<int64_t> id) override {
    CheckpointMeta meta;
    const std::string dir = backend_->TaskDir(task_name_);
    SLUICE_RETURN_IF_ERROR(id ? checkpoints_->Restore(*id, dir, &meta)
                              : checkpoints_->RestoreLatest(dir, &meta));
    return meta;
  }

  Status DeleteNewerThan(int64_t id) override { return checkpoints_->DeleteNewerThan(id); }

  Result<engine::StateStore*> OpenState(bool wipe) override {
    SLUICE_ASSIGN_OR_RETURN(store_, backend_->OpenTask(task_name_, wipe));
    return static_cast<engine::StateStore*>(store_.get());
  }

  Result<engine::StateStore*> OpenSpill() override {
    spill_.reset();
    SLUICE_ASSIGN_OR_RETURN(spill_, backend_->OpenScratch(task_name_ + ".spill"));
    return static_cast<engine::StateStore*>(spill_.get());
  }

  Result<CheckpointMeta> Save(const WriteBatch& changes, const CheckpointMeta& meta,
                              int64_t protect_id, bool started_empty) override {
    if (!store_) return Status::FailedPrecondition("the task's state is not open");
    // A delta of `changes`, or a full checkpoint when the store cannot tell
    // what the local state builds on.
    return checkpoints_->SaveChanges(*store_, changes, meta, protect_id, started_empty);
  }

  std::string where() const override { return checkpoints_->dir(); }

 private:
  StateBackend* backend_;
  std::string task_name_;
  // The store closes after the checkpoint store (whose background full
  // checkpoint works from a hard-linked copy).
  std::unique_ptr<RocksDbStateStore> store_;
  std::unique_ptr<CheckpointStore> checkpoints_;
  std::unique_ptr<RocksDbStateStore> spill_;  // scratch: keys beyond the memory budget
};

}  // namespace

// ---- WorkerIo ---------------------------------------------------------------

KafkaWorkerIo::KafkaWorkerIo(KafkaIoConfig config)
    : config_(std::move(config)), sink_(std::make_unique<KafkaSink>(config_.producer)) {}

KafkaWorkerIo::~KafkaWorkerIo() = default;

Result<std::unique_ptr<Source>> KafkaWorkerIo::OpenSource(const std::string& job) {
  // A partition whose offset is out of range is reported (OutOfRange), not
  // moved by librdkafka.
  std::map<std::string, std::string> settings = config_.kafka_settings;
  settings["auto.offset.reset"] = "error";
  SLUICE_ASSIGN_OR_RETURN(std::unique_ptr<kafka::KafkaConsumer> consumer,
                          kafka::KafkaConsumer::Create(config_.brokers, "sluice-" + job, settings));
  return std::unique_ptr<Source>(std::make_unique<KafkaSource>(std::move(consumer)));
}

Result<std::unique_ptr<CheckpointTarget>> KafkaWorkerIo::OpenCheckpoints(
    const std::string& job, int32_t partition, const std::string& task_name) {
  SLUICE_ASSIGN_OR_RETURN(
      std::unique_ptr<CheckpointStore> store,
      CheckpointStore::Open(config_.checkpoint_uri, job, partition, config_.checkpoints));
  return std::unique_ptr<CheckpointTarget>(
      std::make_unique<RocksDbCheckpoints>(config_.state, task_name, std::move(store)));
}

Result<MarkerTopic> KafkaWorkerIo::MarkersOf(const engine::JobPlan& plan) {
  std::lock_guard<std::mutex> lock(markers_mu_);
  auto it = config_.markers.find(plan.name());
  if (it != config_.markers.end() && it->second.name == plan.spec().sinks().markers()) {
    return it->second;
  }
  if (!metadata_) {
    SLUICE_ASSIGN_OR_RETURN(
        metadata_,
        kafka::KafkaConsumer::Create(config_.brokers, "sluice-metadata", config_.kafka_settings));
  }
  SLUICE_ASSIGN_OR_RETURN(int32_t partitions,
                          metadata_->PartitionCount(plan.spec().source().topic(), 30'000));
  SLUICE_ASSIGN_OR_RETURN(MarkerTopic m, ResolveMarkerTopic(config_.brokers, plan.spec(),
                                                            partitions, config_.kafka_settings));
  config_.markers[plan.name()] = m;
  return m;
}

Result<std::unique_ptr<Transaction>> KafkaWorkerIo::OpenTransaction(const engine::JobPlan& plan,
                                                                    int32_t partition,
                                                                    const std::string& task_name) {
  SLUICE_ASSIGN_OR_RETURN(MarkerTopic markers, MarkersOf(plan));
  SLUICE_ASSIGN_OR_RETURN(
      std::unique_ptr<TransactionalOutput> out,
      TransactionalOutput::Open(config_.brokers, config_.kafka_settings, plan.spec(), markers,
                                partition, task_name, config_.transaction_timeout_ms));
  return std::unique_ptr<Transaction>(std::move(out));
}

Result<std::unique_ptr<WorkerIo>> OpenWorkerIo(const HostOptions& options) {
  SLUICE_ASSIGN_OR_RETURN(std::unique_ptr<StateBackend> state,
                          StateBackend::Open(options.data_dir, options.state));
  SLUICE_ASSIGN_OR_RETURN(std::unique_ptr<kafka::KafkaProducer> producer,
                          kafka::KafkaProducer::Create(options.brokers, options.kafka_settings));
  KafkaIoConfig config;
  config.brokers = options.brokers;
  config.kafka_settings = options.kafka_settings;
  config.checkpoint_uri = options.checkpoint_uri;
  config.checkpoints = options.checkpoints;
  config.transaction_timeout_ms = options.transaction_timeout_ms;
  config.producer = producer.get();
  config.state = state.get();
  auto io = std::make_unique<KafkaWorkerIo>(std::move(config));
  io->owned_state_ = std::move(state);
  io->owned_producer_ = std::move(producer);
  return std::unique_ptr<WorkerIo>(std::move(io));
}

// ---- CoordinatorRpc over gRPC -----------------------------------------------

namespace {

class GrpcCoordinatorRpc final : public CoordinatorRpc {
 public:
  GrpcCoordinatorRpc(std::string address, std::shared_ptr<const ClientSecurity> security)
      : address_(std::move(address)), security_(std::move(security)) {
    Reconnect();
  }

  RpcStatus Register(const proto::RegisterRequest& request,
                     proto::RegisterResponse* response) override {
    grpc::ClientContext ctx;
    Prepare(&ctx);
    return Translate(stub_->Register(&ctx, request, response));
  }

  RpcStatus Heartbeat(const proto::HeartbeatRequest& request,
                      proto::HeartbeatResponse* response) override {
    grpc::ClientContext ctx;
    Prepare(&ctx);
    return Translate(stub_->Heartbeat(&ctx, request, response));
  }

  void Reconnect() override {
    // A channel of its own (not gRPC's process-wide subchannel pool), with a
    // short reconnect backoff: the client replaces it after a failed call,
    // so a coordinator that restarts is reached at the next heartbeat, not
    // after a backoff that grew while it was down (gRPC's grows to minutes,
    // and even capped it has held workers off for seconds, past their lease).
    grpc::ChannelArguments args = security_ ? security_->args : grpc::ChannelArguments();
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
    args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 100);
    args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 500);
    channel_ = grpc::CreateCustomChannel(
        address_, security_ ? security_->credentials : grpc::InsecureChannelCredentials(), args);
    stub_ = proto::WorkerService::NewStub(channel_);
  }

  std::string address() const override { return address_; }

 private:
  void Prepare(grpc::ClientContext* ctx) const {
    ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(2000));
    if (security_) security_->Apply(ctx);
  }

  static RpcStatus Translate(const grpc::Status& st) {
    RpcStatus out;
    out.message = st.error_message();
    switch (st.error_code()) {
      case grpc::StatusCode::OK:
        out.code = RpcStatus::Code::kOk;
        break;
      case grpc::StatusCode::UNAVAILABLE:
      case grpc::StatusCode::DEADLINE_EXCEEDED:
        out.code = RpcStatus::Code::kUnreachable;
        break;
      case grpc::StatusCode::ALREADY_EXISTS:
        out.code = RpcStatus::Code::kDuplicate;
        break;
      case grpc::StatusCode::UNAUTHENTICATED:
      case grpc::StatusCode::PERMISSION_DENIED:
        out.code = RpcStatus::Code::kUnauthorized;
        break;
      default:
        out.code = RpcStatus::Code::kFailed;
    }
    return out;
  }

  std::string address_;
  std::shared_ptr<const ClientSecurity> security_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<proto::WorkerService::Stub> stub_;
};

}  // namespace

std::unique_ptr<CoordinatorRpc> NewGrpcCoordinatorRpc(
    std::string address, std::shared_ptr<const ClientSecurity> security) {
  return std::make_unique<GrpcCoordinatorRpc>(std::move(address), std::move(security));
}

}  // namespace sluice::worker
