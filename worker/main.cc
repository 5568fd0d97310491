// sluice-worker: runs the tasks of a job on Kafka partitions, with state in
// RocksDB and checkpoints in a checkpoint store. Standalone mode: the job and
// partitions are given on the command line.

#include <csignal>
#include <iostream>
#include <thread>

#include <CLI/CLI.hpp>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "common/clock.h"
#include "jobspec/job_loader.h"
#include "worker/worker.h"

namespace {

std::atomic<bool> g_stop{false};

extern "C" void OnSignal(int) { g_stop.store(true); }

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "sluice-worker: runs a Sluice job's tasks (one per Kafka partition) with state in "
      "RocksDB, checkpointing state and offsets together; after a crash it restores the last "
      "checkpoint and replays from its offsets. SIGTERM takes a final checkpoint and exits."};
  std::string job_file, brokers, partitions = "all", data_dir, checkpoint_dir, log_level = "info";
  int threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  int keep = 3;
  size_t block_cache_mb = 256, write_buffer_mb = 128;
  bool drain_on_exit = false;
  std::vector<std::string> kafka_settings;
  std::string status_file;
  app.add_option("--job", job_file, "Job file (YAML)")->required();
  app.add_option("--brokers", brokers,
                 "Kafka bootstrap servers (default: the job's source.brokers, else "
                 "127.0.0.1:9092)");
  app.add_option("--partitions", partitions, "Partitions to run: 'all' or a list like 0-3,5")
      ->default_val("all");
  app.add_option("--data-dir", data_dir, "Local directory for task state (RocksDB)")->required();
  app.add_option("--checkpoint-dir", checkpoint_dir,
                 "Checkpoint store: a directory or file:// URI (a shared volume in a cluster)")
      ->required();
  app.add_option("--threads", threads, "Task threads (default: one per core)")
      ->check(CLI::Range(1, 1024));
  app.add_option("--keep-checkpoints", keep, "Checkpoints kept per task")
      ->default_val(3)
      ->check(CLI::Range(1, 1000));
  app.add_option("--block-cache-mb", block_cache_mb, "RocksDB block cache shared by all tasks")
      ->default_val(256);
  app.add_option("--write-buffer-mb", write_buffer_mb,
                 "RocksDB memtable budget shared by all tasks")
      ->default_val(128);
  app.add_flag("--drain-on-exit", drain_on_exit,
               "On SIGTERM, emit every open window before the final checkpoint (bounded "
               "replays)");
  app.add_option("--kafka", kafka_settings,
                 "Extra librdkafka setting KEY=VALUE for all clients (repeatable)");
  app.add_option("--status-file", status_file,
                 "Write per-task status (offsets, watermark, counters) here as JSON every second");
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error")
      ->default_val("info")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error"}));
  app.failure_message(CLI::FailureMessage::help);
  CLI11_PARSE(app, argc, argv);

  spdlog::set_default_logger(spdlog::stderr_color_mt("sluice-worker"));
  spdlog::set_level(spdlog::level::from_str(log_level));
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ %v");

  auto spec = sluice::jobspec::LoadJobFile(job_file);
  if (!spec.ok()) {
    std::cerr << "sluice-worker: " << spec.status().message() << "\n";
    return 1;
  }
  auto parts = sluice::worker::ParsePartitions(partitions);
  if (!parts.ok()) {
    std::cerr << "sluice-worker: " << parts.status().message() << "\n";
    return 2;
  }

  sluice::worker::WorkerOptions options;
  options.job = *spec;
  options.brokers = !brokers.empty()                   ? brokers
                    : !spec->source().brokers().empty() ? spec->source().brokers()
                                                        : "127.0.0.1:9092";
  options.partitions = *parts;
  options.data_dir = data_dir;
  options.checkpoint_uri = checkpoint_dir;
  options.threads = threads;
  options.keep_checkpoints = keep;
  options.state.block_cache_bytes = block_cache_mb << 20;
  options.state.write_buffer_bytes = write_buffer_mb << 20;
  options.drain_on_exit = drain_on_exit;
  options.status_file = status_file;
  for (const std::string& kv : kafka_settings) {
    size_t eq = kv.find('=');
    if (eq == std::string::npos || eq == 0) {
      std::cerr << "sluice-worker: --kafka: expected KEY=VALUE, got '" << kv << "'\n";
      return 2;
    }
    options.kafka_settings[kv.substr(0, eq)] = kv.substr(eq + 1);
  }

  struct sigaction sa = {};
  sa.sa_handler = OnSignal;
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGINT, &sa, nullptr);

  sluice::SystemClock clock;
  sluice::worker::Worker worker(options, clock);
  sluice::Status s = worker.Run(g_stop);
  if (!s.ok()) {
    spdlog::error("{}", s.message());
    return 1;
  }
  spdlog::info("stopped");
  return 0;
}
