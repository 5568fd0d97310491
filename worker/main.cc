// sluice-worker: runs Sluice tasks (one job on one Kafka partition each) with
// state in RocksDB and checkpoints in a checkpoint store.
//
//   cluster mode:    --coordinator HOST:PORT: tasks come from the coordinator
//   standalone mode: --job FILE [--partitions 0-7]: for debugging and tests

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <csignal>
#include <iostream>
#include <thread>

#include "common/clock.h"
#include "common/daemon.h"
#include "common/grpc_security.h"
#include "common/logging.h"
#include "common/memory.h"
#include "common/stop_signals.h"
#include "jobspec/job_loader.h"
#include "kafka/kafka_client.h"
#include "reports/task_reports.h"
#include "worker/adapters.h"
#include "worker/coordinator_client.h"
#include "worker/instance.h"
#include "worker/partitions.h"
#include "worker/task_host.h"

namespace {

const std::atomic<bool>* g_stop = nullptr;  // set by the stop signals

void SleepUnlessStopped(int ms) {
  for (int i = 0; i < ms / 20 && !g_stop->load(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

// Standalone: the partition count of the job's topic, waiting visibly for the
// brokers and the topic.
sluice::Result<int32_t> WaitForTopic(const sluice::worker::HostOptions& options,
                                     const std::string& topic) {
  SLUICE_ASSIGN_OR_RETURN(auto probe, sluice::kafka::KafkaConsumer::Create(
                                          options.brokers, "sluice-probe", options.kafka_settings));
  while (!g_stop->load()) {
    auto count = probe->PartitionCount(topic, 5'000);
    if (count.ok()) return count;
    spdlog::warn("waiting for topic {} at {}: {}", topic, options.brokers,
                 count.status().message());
    SleepUnlessStopped(2'000);
  }
  return sluice::Status::Unavailable("stopped while waiting for Kafka");
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "sluice-worker: runs Sluice tasks (one job on one Kafka partition each) with state in "
      "RocksDB, checkpointing state and offsets together; after a crash a task restores its "
      "last checkpoint and replays from its offset. Cluster mode takes its tasks from the "
      "coordinator (--coordinator); standalone mode runs one job (--job). SIGTERM takes a "
      "final checkpoint of every task and exits."};
  std::string coordinator, worker_id, job_file, brokers, partitions = "all", data_dir,
                                                         checkpoint_dir, status_file;
  int threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  int keep = 3;
  int full_every = 100;
  size_t block_cache_mb = 256, write_buffer_mb = 128, state_memory_mb = 0;
  bool drain_on_exit = false;
  std::vector<std::string> kafka_settings;
  sluice::DaemonFlags daemon;
  auto* coord_opt = app.add_option("--coordinator", coordinator,
                                   "Cluster mode: the coordinator's address HOST:PORT");
  sluice::ClientSecurityFlags security;
  sluice::AddClientSecurityFlags(app, &security);
  app.add_option("--worker-id", worker_id,
                 "Cluster mode: this worker's stable id (default: the host name and a suffix "
                 "from the data directory's path)");
  auto* job_opt = app.add_option("--job", job_file, "Standalone mode: the job file (YAML)");
  job_opt->excludes(coord_opt);
  app.add_option("--partitions", partitions,
                 "Standalone mode: partitions to run, 'all' or a list like 0-3,5")
      ->default_val("all");
  app.add_option("--brokers", brokers,
                 "Kafka bootstrap servers (default: the job's source.brokers, else "
                 "127.0.0.1:9092)");
  app.add_option("--data-dir", data_dir, "Local directory for task state (RocksDB)")->required();
  app.add_option("--checkpoint-dir", checkpoint_dir,
                 "Checkpoint store: a directory or file:// URI, shared by all workers")
      ->required();
  app.add_option("--threads", threads, "Task threads (default: one per core)")
      ->check(CLI::Range(1, 1024));
  app.add_option("--keep-checkpoints", keep, "Checkpoints kept per task")
      ->default_val(3)
      ->check(CLI::Range(1, 1000));
  app.add_option("--full-checkpoint-every", full_every,
                 "A checkpoint writes only what changed since the one before (a delta); "
                 "after this many deltas a full one is taken in the background. 0: every "
                 "checkpoint is full")
      ->default_val(100)
      ->check(CLI::Range(0, 100000));
  app.add_option("--block-cache-mb", block_cache_mb, "RocksDB block cache shared by all tasks")
      ->default_val(256);
  app.add_option("--write-buffer-mb", write_buffer_mb,
                 "RocksDB memtable budget shared by all tasks")
      ->default_val(128);
  app.add_option("--state-memory-mb", state_memory_mb,
                 "Keys' state held in memory by all tasks; beyond it, keys not used lately "
                 "move to a RocksDB spill store per task and are read back at their next "
                 "event or timer. The RocksDB cache and memtables come on top. 0: no bound")
      ->default_val(0);
  app.add_flag("--drain-on-exit", drain_on_exit,
               "Standalone mode: on SIGTERM, emit every open window before the final "
               "checkpoint (bounded replays)");
  app.add_option("--kafka", kafka_settings,
                 "Extra librdkafka setting KEY=VALUE for all clients (repeatable)");
  std::string unhealthy_after = "30s";
  app.add_option("--unhealthy-after", unhealthy_after,
                 "/healthz answers not ready once a task has been FAILED or RESTARTING "
                 "(checkpoints failing) this long")
      ->default_val("30s");
  app.add_option("--status-file", status_file,
                 "Write the tasks' status (offsets, watermark, counters) here as JSON every "
                 "second");
  sluice::AddDaemonFlags(app, &daemon, "per task counters, lag, watermark, checkpoint age");
  CLI11_PARSE(app, argc, argv);
  if (coordinator.empty() == job_file.empty()) {
    std::cerr << "sluice-worker: give --coordinator (cluster mode) or --job (standalone)\n\n"
              << app.help();
    return 2;
  }
  auto unhealthy_after_ms = sluice::jobspec::ParseDurationMs(unhealthy_after);
  if (!unhealthy_after_ms.ok() || *unhealthy_after_ms < 0) {
    std::cerr << "sluice-worker: --unhealthy-after takes a duration like 30s\n\n" << app.help();
    return 2;
  }
  // Cluster mode: TLS to the coordinator (or plaintext when --insecure) and
  // the bearer token, read before anything starts.
  std::shared_ptr<const sluice::ClientSecurity> client_security;
  if (!coordinator.empty()) {
    auto made = sluice::MakeClientSecurity(security);
    if (!made.ok()) {
      std::cerr << "sluice-worker: " << made.status().message() << "\n\n" << app.help();
      return 2;
    }
    client_security = std::make_shared<const sluice::ClientSecurity>(std::move(made).value());
  }

  sluice::SetUpLogging("sluice-worker", daemon.log_level);

  sluice::proto::JobSpec spec;
  if (!job_file.empty()) {
    auto loaded = sluice::jobspec::LoadJobFile(job_file);
    if (!loaded.ok()) {
      std::cerr << "sluice-worker: " << loaded.status().message() << "\n";
      return 1;
    }
    spec = *loaded;
  }
  auto parts = sluice::worker::ParsePartitions(partitions);
  if (!parts.ok()) {
    std::cerr << "sluice-worker: " << parts.status().message() << "\n";
    return 2;
  }
  if (worker_id.empty()) worker_id = sluice::worker::DefaultWorkerId(data_dir);

  sluice::worker::HostOptions options;
  options.brokers = !brokers.empty()                   ? brokers
                    : !spec.source().brokers().empty() ? spec.source().brokers()
                                                       : "127.0.0.1:9092";
  options.data_dir = data_dir;
  options.checkpoint_uri = checkpoint_dir;
  options.threads = threads;
  options.checkpoints.keep = keep;
  options.checkpoints.full_every = full_every;
  // Cluster mode: no checkpoint without the coordinator's confirmation.
  options.fenced = !coordinator.empty();
  options.state.block_cache_bytes = block_cache_mb << 20;
  options.state.write_buffer_bytes = write_buffer_mb << 20;
  options.state_memory_bytes = state_memory_mb << 20;
  // Keys come and go under a budget: what they free is given back (and
  // periodically by TaskHost), so resident memory follows the budget.
  if (state_memory_mb > 0) sluice::FixMmapThreshold();
  for (const std::string& kv : kafka_settings) {
    size_t eq = kv.find('=');
    if (eq == std::string::npos || eq == 0) {
      std::cerr << "sluice-worker: --kafka: expected KEY=VALUE, got '" << kv << "'\n";
      return 2;
    }
    options.kafka_settings[kv.substr(0, eq)] = kv.substr(eq + 1);
  }

  g_stop = &sluice::InstallStopSignals();

  // One worker per data directory; its instance tells a restart of this
  // worker from another process under the same --worker-id.
  auto claim = sluice::worker::DataDirClaim::Take(data_dir);
  if (!claim.ok()) {
    spdlog::error("{}", claim.status().message());
    return 1;
  }

  sluice::SystemClock clock;
  sluice::worker::TaskHost host(options, clock);
  if (sluice::Status s = host.Start(); !s.ok()) {
    spdlog::error("{}", s.message());
    return 1;
  }

  auto metrics = sluice::StartMetrics(
      daemon,
      [&] {
        std::vector<sluice::proto::TaskReport> reports = host.Reports();
        return sluice::reports::TaskMetrics(
            reports, std::vector<std::string>(reports.size(), worker_id), clock.NowMillis());
      },
      [&] {
        return sluice::reports::TaskHealth(host.Reports(), clock.NowMillis(), *unhealthy_after_ms);
      });
  if (!metrics.ok()) {
    spdlog::error("{}", metrics.status().message());
    host.Shutdown(false);
    return 1;
  }

  std::thread control;
  std::unique_ptr<sluice::worker::CoordinatorClient> client;
  if (!coordinator.empty()) {
    client = std::make_unique<sluice::worker::CoordinatorClient>(
        sluice::worker::NewGrpcCoordinatorRpc(coordinator, client_security), worker_id, threads,
        host, clock, claim->instance());
    control = std::thread([&] { client->Run(*g_stop); });
  } else {
    auto plan = sluice::engine::JobPlan::Compile(spec);
    if (!plan.ok()) {
      spdlog::error("{}: {}", job_file, plan.status().message());
      return 1;
    }
    auto count = WaitForTopic(options, spec.source().topic());
    if (!count.ok()) {
      host.Shutdown(false);
      return g_stop->load() ? 0 : 1;
    }
    std::vector<int32_t> run = *parts;
    if (run.empty()) {
      for (int32_t p = 0; p < *count; ++p) run.push_back(p);
    }
    for (int32_t p : run) {
      if (p >= *count) {
        spdlog::error("topic {} has {} partitions; there is no partition {}", spec.source().topic(),
                      *count, p);
        host.Shutdown(false);
        return 1;
      }
    }
    spdlog::info("job {}: {} of {} partitions of {} on {} thread(s)", spec.name(), run.size(),
                 *count, spec.source().topic(), threads);
    for (int32_t p : run) host.StartTask(*plan, 1, p, 0);
  }

  while (!g_stop->load()) {
    sluice::reports::WriteStatusFile(status_file, worker_id, clock.NowMillis(), host.Reports());
    SleepUnlessStopped(500);
  }
  if (control.joinable()) control.join();
  host.Shutdown(drain_on_exit);
  if (client) client->Leave();
  sluice::reports::WriteStatusFile(status_file, worker_id, clock.NowMillis(), host.Reports());
  if (sluice::Status s = host.error(); !s.ok()) {
    spdlog::error("{}", s.message());
    return 1;
  }
  spdlog::info("stopped");
  return 0;
}
