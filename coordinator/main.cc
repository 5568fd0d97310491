// sluice-coordinator: assigns the Kafka partitions of submitted jobs to
// workers, over gRPC. Jobs, assignments and epochs persist under --data-dir.

#include <grpcpp/grpcpp.h>
#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <csignal>
#include <cstdio>
#include <iostream>
#include <optional>
#include <thread>

#include "common/clock.h"
#include "common/daemon.h"
#include "common/grpc_security.h"
#include "common/logging.h"
#include "common/stop_signals.h"
#include "coordinator/auth.h"
#include "coordinator/coordinator.h"
#include "coordinator/rocksdb_metadata_store.h"
#include "coordinator/service.h"
#include "jobspec/job_loader.h"
#include "kafka/kafka_client.h"
#include "kafka/offsets.h"
#include "kafka/transactions.h"
#include "reports/task_reports.h"

namespace {

// Partition counts and offsets from Kafka, with clients per broker list. The
// lock only guards the map: lookups run in parallel (the partition check
// thread and the gRPC threads), each with its own timeout.
class KafkaTopicMetadata final : public sluice::coordinator::TopicMetadata {
 public:
  sluice::Result<int32_t> PartitionCount(const std::string& brokers, const std::string& topic,
                                         int timeout_ms) override {
    auto clients = ClientsFor(brokers);
    if (!clients.ok()) return clients.status();
    return (*clients)->metadata->PartitionCount(topic, timeout_ms);
  }

  sluice::Result<std::vector<int64_t>> EndOffsets(const std::string& brokers,
                                                  const std::string& topic, int32_t partitions,
                                                  int timeout_ms) override {
    auto clients = ClientsFor(brokers);
    if (!clients.ok()) return clients.status();
    return (*clients)->offsets->EndOffsets(topic, partitions, timeout_ms);
  }

  sluice::Result<std::vector<int64_t>> OffsetsForTime(const std::string& brokers,
                                                      const std::string& topic, int32_t partitions,
                                                      int64_t time_ms, int timeout_ms) override {
    auto clients = ClientsFor(brokers);
    if (!clients.ok()) return clients.status();
    return (*clients)->offsets->OffsetsForTime(topic, partitions, time_ms, timeout_ms);
  }

  sluice::Status CheckTransactions(const std::string& brokers) override {
    // A transactional id of its own: its init_transactions fences nothing of a job.
    auto probe = sluice::kafka::TransactionalProducer::Create(brokers, "sluice-coordinator-probe",
                                                              {}, 10'000);
    return probe.ok() ? sluice::Status::Ok() : probe.status();
  }

 private:
  struct Clients {
    std::unique_ptr<sluice::kafka::KafkaConsumer> metadata;
    std::unique_ptr<sluice::kafka::OffsetLookup> offsets;
  };

  // The clients of `brokers`, created on first use; they live as long as this.
  sluice::Result<Clients*> ClientsFor(const std::string& brokers) {
    std::lock_guard<std::mutex> lock(mu_);
    std::unique_ptr<Clients>& clients = clients_[brokers];
    if (!clients) {
      auto metadata = sluice::kafka::KafkaConsumer::Create(brokers, "sluice-coordinator",
                                                           {{"allow.auto.create.topics", "false"}});
      if (!metadata.ok()) return metadata.status();
      auto offsets = sluice::kafka::OffsetLookup::Create(brokers);
      if (!offsets.ok()) return offsets.status();
      clients = std::make_unique<Clients>(
          Clients{std::move(metadata).value(), std::move(offsets).value()});
    }
    return clients.get();
  }

  std::mutex mu_;
  std::map<std::string, std::unique_ptr<Clients>> clients_;
};

// Jobs by state, workers by liveness, and every task's last report.
std::string CoordinatorMetrics(const sluice::coordinator::Coordinator& c, int64_t now_ms) {
  std::string out =
      "# HELP sluice_job_info A job, labeled with its state\n# TYPE sluice_job_info gauge\n";
  std::vector<sluice::proto::TaskReport> reports;
  std::vector<std::string> owners;
  std::vector<std::pair<std::string, int32_t>> partitions;
  for (const sluice::proto::JobInfo& job : c.ListJobs()) {
    sluice::AppendMetric(
        &out, "sluice_job_info",
        {{"job", job.name()}, {"state", sluice::proto::JobState_Name(job.state())}}, 1);
    partitions.push_back({job.name(), job.partitions()});
    auto status = c.JobStatusOf(job.name());
    if (!status.ok()) continue;
    for (const sluice::proto::TaskStatus& t : status->tasks()) {
      reports.push_back(t.report());
      owners.push_back(t.worker_id());
    }
  }
  out +=
      "# HELP sluice_job_partitions Partitions of a job's source topic (tasks), as last read\n"
      "# TYPE sluice_job_partitions gauge\n";
  for (const auto& [name, n] : partitions) {
    sluice::AppendMetric(&out, "sluice_job_partitions", {{"job", name}}, n);
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
      "state survives restarts; workers keep processing while it is down. gRPC is served over "
      "TLS (--tls-cert, --tls-key; --tls-ca for mutual TLS), or plaintext on loopback with "
      "--insecure; with --token-file every call needs a bearer token of the right role."};
  std::string listen = "127.0.0.1:7070", brokers = "127.0.0.1:9092", data_dir, address_file,
              heartbeat = "1s", lease = "5s", partition_check = "30s", token_file, audit_log;
  sluice::DaemonFlags daemon;
  sluice::ServerSecurityFlags security;
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
  app.add_option("--partition-check-interval", partition_check,
                 "How often the partition count of every running job's source topic is read "
                 "again (new partitions get tasks; a topic that shrank or disappeared fails the "
                 "job)")
      ->default_val("30s");
  sluice::AddServerSecurityFlags(app, &security);
  app.add_option("--token-file", token_file,
                 "Bearer tokens, one per line: TOKEN ROLE [NAME], ROLE read (list, status), "
                 "operate (read, and submit, update, stop, cancel) or worker (register, "
                 "heartbeat); # starts a comment. Without it any caller may do anything");
  app.add_option("--audit-log", audit_log,
                 "Append one JSON line per submit, update, stop and cancel, refused ones "
                 "included: time, caller, peer, certificate subject, job, change, result");
  sluice::AddDaemonFlags(app, &daemon, "jobs, workers, every task's last report");
  CLI11_PARSE(app, argc, argv);

  sluice::SetUpLogging("sluice-coordinator", daemon.log_level);

  auto credentials = sluice::MakeServerCredentials(security, listen);
  if (!credentials.ok()) {
    std::cerr << "sluice-coordinator: " << credentials.status().message() << "\n\n" << app.help();
    return 2;
  }
  std::optional<sluice::coordinator::TokenTable> tokens;
  if (!token_file.empty()) {
    auto loaded = sluice::coordinator::TokenTable::Load(token_file);
    if (!loaded.ok()) {
      std::cerr << "sluice-coordinator: " << loaded.status().message() << "\n\n" << app.help();
      return 2;
    }
    tokens = std::move(loaded).value();
  }
  std::unique_ptr<sluice::coordinator::AuditLog> audit;
  if (!audit_log.empty()) {
    auto opened = sluice::coordinator::AuditLog::Open(audit_log);
    if (!opened.ok()) {
      std::cerr << "sluice-coordinator: " << opened.status().message() << "\n\n" << app.help();
      return 2;
    }
    audit = std::move(opened).value();
  }

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
  auto pc = sluice::jobspec::ParseDurationMs(partition_check);
  if (!pc.ok() || *pc <= 0) {
    std::cerr << "sluice-coordinator: --partition-check-interval takes a duration like 30s\n\n"
              << app.help();
    return 2;
  }
  options.partition_check_ms = *pc;

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

  const sluice::coordinator::CallGuard guard{tokens ? &*tokens : nullptr, audit.get(), &clock};
  sluice::coordinator::JobServiceImpl job_service(coordinator, guard);
  sluice::coordinator::WorkerServiceImpl worker_service(coordinator, guard);
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(listen, *credentials, &port);
  builder.RegisterService(&job_service);
  builder.RegisterService(&worker_service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server || port == 0) {
    spdlog::error("cannot listen on {}", listen);
    return 1;
  }
  const std::string address = listen.substr(0, listen.rfind(':')) + ":" + std::to_string(port);
  spdlog::info("serving on {} (heartbeat {} ms, lease {} ms, partition check every {} ms)", address,
               options.heartbeat_ms, options.lease_ms, options.partition_check_ms);
  if (security.insecure) {
    spdlog::warn("gRPC is PLAINTEXT (--insecure): no encryption, no client certificates");
  } else {
    spdlog::info("gRPC over TLS{}", security.tls_ca.empty()
                                        ? " (client certificates not required; --tls-ca to require)"
                                        : " with client certificates verified (mutual TLS)");
  }
  if (tokens) {
    spdlog::info("authentication on: {} token(s) from {}", tokens->size(), token_file);
  } else {
    spdlog::warn(
        "AUTHENTICATION IS OFF (no --token-file): anyone who reaches {} can submit, update, "
        "stop and cancel jobs and register as a worker",
        address);
  }
  if (audit) spdlog::info("audit log: {}", audit_log);
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
  // Partition checks ask Kafka, so they run apart from the tick loop (leases
  // must expire on time while a broker is slow).
  std::thread partition_checker([&] {
    while (!stop.load()) {
      // A failed metadata write is logged and counted; the next check tries again.
      coordinator.CheckPartitionsIfDue().IgnoreError();
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  });
  while (!stop.load()) {
    // A failed metadata write is logged and counted (/metrics) by the
    // coordinator; the next tick tries again.
    coordinator.Tick().IgnoreError();
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  partition_checker.join();
  spdlog::info("stopped");
  return 0;
}
