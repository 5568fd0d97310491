// sluice-coordinator: assigns the Kafka partitions of submitted jobs to
// workers, over gRPC. Jobs, assignments and epochs persist under --data-dir.

#include <grpcpp/grpcpp.h>
#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <csignal>
#include <cstdio>
#include <iostream>
#include <thread>

#include "common/clock.h"
#include "common/daemon.h"
#include "common/logging.h"
#include "common/stop_signals.h"
#include "coordinator/coordinator.h"
#include "coordinator/rocksdb_metadata_store.h"
#include "coordinator/service.h"
#include "jobspec/job_loader.h"
#include "kafka/kafka_client.h"
#include "kafka/transactions.h"
#include "reports/task_reports.h"

namespace {

// Partition counts from Kafka metadata, with a client per broker list.
class KafkaTopicMetadata final : public sluice::coordinator::TopicMetadata {
 public:
  sluice::Result<int32_t> PartitionCount(const std::string& brokers,
                                         const std::string& topic) override {
    std::lock_guard<std::mutex> lock(mu_);
    auto& client = clients_[brokers];
    if (!client) {
      auto created = sluice::kafka::KafkaConsumer::Create(brokers, "sluice-coordinator",
                                                          {{"allow.auto.create.topics", "false"}});
      if (!created.ok()) return created.status();
      client = std::move(created).value();
    }
    return client->PartitionCount(topic, 5'000);
  }

  sluice::Status CheckTransactions(const std::string& brokers) override {
    // A transactional id of its own: its init_transactions fences nothing of a job.
    auto probe = sluice::kafka::TransactionalProducer::Create(brokers, "sluice-coordinator-probe",
                                                              {}, 10'000);
    return probe.ok() ? sluice::Status::Ok() : probe.status();
  }

 private:
  std::mutex mu_;
  std::map<std::string, std::unique_ptr<sluice::kafka::KafkaConsumer>> clients_;
};

// Jobs by state, workers by liveness, and every task's last report.
std::string CoordinatorMetrics(const sluice::coordinator::Coordinator& c, int64_t now_ms) {
  std::string out =
      "# HELP sluice_job_info A job, labeled with its state\n# TYPE sluice_job_info gauge\n";
  std::vector<sluice::proto::TaskReport> reports;
  std::vector<std::string> owners;
  for (const sluice::proto::JobInfo& job : c.ListJobs()) {
    sluice::AppendMetric(
        &out, "sluice_job_info",
        {{"job", job.name()}, {"state", sluice::proto::JobState_Name(job.state())}}, 1);
    auto status = c.GetJob(job.name());
    if (!status.ok()) continue;
    for (const sluice::proto::TaskStatus& t : status->tasks()) {
      reports.push_back(t.report());
      owners.push_back(t.worker_id());
    }
  }
  out +=
      "# HELP sluice_worker_alive Whether a worker holds its lease\n"
      "# TYPE sluice_worker_alive gauge\n";
  for (const sluice::proto::WorkerInfo& w : c.ListWorkers()) {
    sluice::AppendMetric(&out, "sluice_worker_alive", {{"worker", w.worker_id()}},
                         w.alive() ? 1 : 0);
  }
  out +=
      "# HELP sluice_coordinator_metadata_write_failures_total Metadata writes that failed "
      "(each undid its request)\n"
      "# TYPE sluice_coordinator_metadata_write_failures_total counter\n";
  sluice::AppendMetric(&out, "sluice_coordinator_metadata_write_failures_total", {},
                       static_cast<double>(c.failed_commits()));
  return out + sluice::reports::TaskMetrics(reports, owners, now_ms);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "sluice-coordinator: the Sluice control plane. Accepts jobs from sluicectl, leases "
      "workers, and assigns every task (job, Kafka partition) to one worker under an epoch, "
      "balanced and sticky; moves tasks when workers join, leave or stop heartbeating. Its "
      "state survives restarts; workers keep processing while it is down."};
  std::string listen = "127.0.0.1:7070", brokers = "127.0.0.1:9092", data_dir, address_file,
              heartbeat = "1s", lease = "5s";
  sluice::DaemonFlags daemon;
  app.add_option("--listen", listen, "gRPC address to serve on, HOST:PORT (port 0: any)")
      ->default_val("127.0.0.1:7070");
  app.add_option("--brokers", brokers, "Kafka bootstrap servers for jobs that name none")
      ->default_val("127.0.0.1:9092");
  app.add_option("--data-dir", data_dir, "Directory for the coordinator's state (RocksDB)")
      ->required();
  app.add_option("--address-file", address_file,
                 "Write 'address=HOST:PORT' here once serving (for port 0)");
  app.add_option("--heartbeat", heartbeat, "Worker heartbeat interval")->default_val("1s");
  app.add_option("--lease", lease, "A worker silent this long is presumed dead")->default_val("5s");
  sluice::AddDaemonFlags(app, &daemon, "jobs, workers, every task's last report");
  CLI11_PARSE(app, argc, argv);

  sluice::SetUpLogging("sluice-coordinator", daemon.log_level);

  sluice::coordinator::CoordinatorOptions options;
  options.default_brokers = brokers;
  auto hb = sluice::jobspec::ParseDurationMs(heartbeat);
  auto ls = sluice::jobspec::ParseDurationMs(lease);
  if (!hb.ok() || !ls.ok() || *hb <= 0 || *ls <= *hb) {
    std::cerr << "sluice-coordinator: --heartbeat and --lease take durations like 1s and 5s, "
                 "with the lease longer than the heartbeat\n\n"
              << app.help();
    return 2;
  }
  options.heartbeat_ms = *hb;
  options.lease_ms = *ls;

  auto store = sluice::coordinator::RocksDbMetadataStore::Open(data_dir + "/coordinator");
  if (!store.ok()) {
    spdlog::error("{}", store.status().message());
    return 1;
  }

  sluice::SystemClock clock;
  KafkaTopicMetadata topics;
  sluice::coordinator::Coordinator coordinator(options, clock, **store, topics);
  if (sluice::Status s = coordinator.Load(); !s.ok()) {
    spdlog::error("cannot load the coordinator's state from {}: {}", data_dir, s.message());
    return 1;
  }

  sluice::coordinator::JobServiceImpl job_service(coordinator);
  sluice::coordinator::WorkerServiceImpl worker_service(coordinator);
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(listen, grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&job_service);
  builder.RegisterService(&worker_service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server || port == 0) {
    spdlog::error("cannot listen on {}", listen);
    return 1;
  }
  const std::string address = listen.substr(0, listen.rfind(':')) + ":" + std::to_string(port);
  spdlog::info("serving on {} (heartbeat {} ms, lease {} ms)", address, options.heartbeat_ms,
               options.lease_ms);
  if (!address_file.empty()) {
    const std::string tmp = address_file + ".tmp";
    if (std::FILE* f = std::fopen(tmp.c_str(), "w")) {
      std::fprintf(f, "address=%s\n", address.c_str());
      std::fclose(f);
      std::rename(tmp.c_str(), address_file.c_str());
    }
  }

  auto metrics = sluice::StartMetrics(
      daemon, [&] { return CoordinatorMetrics(coordinator, clock.NowMillis()); });
  if (!metrics.ok()) {
    spdlog::error("{}", metrics.status().message());
    return 1;
  }

  const std::atomic<bool>& stop = sluice::InstallStopSignals();
  while (!stop.load()) {
    // A failed metadata write is logged and counted (/metrics) by the
    // coordinator; the next tick tries again.
    coordinator.Tick().IgnoreError();
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  spdlog::info("stopped");
  return 0;
}
