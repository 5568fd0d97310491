// sluice-e2e-bench: end-to-end benchmarks of the worker's data plane.
//
//   throughput  TaskHost (1 and 2 task threads) running a 1-minute tumbling
//               count keyed by user_id over an 8-partition topic of the
//               broker (RocksDB state, checkpoints every 10 s, sink
//               topics on the same broker), against a raw librdkafka
//               consume-and-parse loop over the same topic in the same run.
//               sluice-devbroker keeps only ~5 MB per partition, so the input is
//               produced in rounds into fresh topics; each round is consumed
//               by all three contenders in turn (order rotated per round).
//   latency     event-to-alert latency of the fraud rules (examples/jobs/
//               fraud.yaml, max_out_of_orderness 0, plus a low-threshold rule)
//               at a paced input rate; per-rule percentiles of all samples.
//   checkpoint  Task::Checkpoint stall with 1M keys of session state (first,
//               full checkpoint and incremental ones), a breakdown into the
//               engine's write batch and the BackupEngine commit, and recovery
//               (Task::Open: RestoreLatest + TaskProcessor::Restore) plus the
//               replay of the records since the checkpoint. No Kafka input:
//               records are handed to Task::Process directly.
//
// The program needs a running broker: sluice-devbroker (--bootstrap, --control)
// or Apache Kafka (--bootstrap alone); bench/run_e2e_bench.sh starts either.
// Results print as Markdown.

#include <librdkafka/rdkafka.h>
#include <simdjson.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <boost/asio/post.hpp>
#include <boost/asio/thread_pool.hpp>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "bench/bench_util.h"
#include "bench/e2e_stats.h"
#include "common/check.h"
#include "common/clock.h"
#include "jobspec/job_loader.h"
#include "kafka/kafka_client.h"
#include "proto/sluice.pb.h"
#include "tools/event_generator.h"
#include "worker/adapters.h"
#include "worker/engine/job_plan.h"
#include "worker/engine/record.h"
#include "worker/engine/task_processor.h"
#include "worker/engine/testing.h"
#include "worker/state/checkpoint_store.h"
#include "worker/state/rocksdb_state_store.h"
#include "worker/task.h"
#include "worker/task_host.h"

namespace sluice::bench {
namespace {

using engine::testing::Agg;

namespace fs = std::filesystem;
using F = proto::AggregateSpec;
using Steady = std::chrono::steady_clock;

double SecondsSince(Steady::time_point t) {
  return std::chrono::duration<double>(Steady::now() - t).count();
}
double Ms(Steady::time_point a, Steady::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}
int64_t WallUs() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

struct Config {
  std::string bootstrap;
  std::string control;
  std::string work_dir = "/tmp/sluice-e2e-bench";
  std::string fraud_job = "examples/jobs/fraud.yaml";
  int partitions = 8;
  int users = 100'000;
  // throughput
  int rounds = 3;
  int64_t round_events = 800'000;
  // Event time of the throughput input: "sparse" (+10 ms per event: nearly
  // every event opens its own window, one result per event) or "live" (+1 ms
  // per 1000 events, as a stream at 1M events/s: windows hold many events).
  std::string event_time = "sparse";
  // latency
  double latency_rate = 50'000;
  // linger.ms of the event producer and of the worker's producer.
  std::string latency_linger_ms = "5";
  double latency_warmup_s = 5;
  double latency_seconds = 30;
  int latency_threads = 2;
  double low_threshold = 250;
  // checkpoint
  int64_t keys = 1'000'000;
  int deltas = 20;
  int64_t delta_events = 10'000;
  int64_t replay_events = 100'000;
  int64_t tumbling_ckpt_events = 2'000'000;
  int latency_users = 100'000;
  // Extra librdkafka consumer settings for the throughput contenders (both).
  std::map<std::string, std::string> consumer_settings;
  // Overrides of the jobs' delivery ("" = as the job says; the throughput
  // job's default is at_least_once) and checkpoint interval (0 = as is).
  std::string delivery;
  int64_t checkpoint_interval_ms = 0;
};

// Applies --delivery and --checkpoint-interval-ms to a bench job.
void ApplyDelivery(const Config& cfg, proto::JobSpec* spec) {
  if (cfg.delivery == "exactly_once") spec->set_delivery(proto::JobSpec::EXACTLY_ONCE);
  if (cfg.delivery == "at_least_once") spec->set_delivery(proto::JobSpec::AT_LEAST_ONCE);
  if (cfg.checkpoint_interval_ms > 0) spec->set_checkpoint_interval_ms(cfg.checkpoint_interval_ms);
  // Each run starts from an empty checkpoint store: a marker topic of its own.
  static int runs = 0;
  spec->mutable_sinks()->set_markers("sluice-" + spec->name() + "-" + std::to_string(getpid()) +
                                     "-" + std::to_string(++runs) + "-markers");
}

// ---- Kafka: a plain producer for the input ----------------------------------

void CountDelivery(rd_kafka_t*, const rd_kafka_message_t* msg, void* opaque);

class LoadProducer {
 public:
  explicit LoadProducer(const std::string& brokers, const std::string& linger_ms = "5") {
    rd_kafka_conf_t* conf = rd_kafka_conf_new();
    char err[512];
    const std::map<std::string, std::string> settings = {
        {"bootstrap.servers", brokers},
        {"enable.idempotence", "true"},
        {"linger.ms", linger_ms},
        {"compression.type", "lz4"},
        {"partitioner", "murmur2_random"},
        {"queue.buffering.max.messages", "1000000"},
        {"queue.buffering.max.kbytes", "1048576"}};
    for (const auto& [k, v] : settings) {
      SLUICE_CHECK(rd_kafka_conf_set(conf, k.c_str(), v.c_str(), err, sizeof(err)) ==
                   RD_KAFKA_CONF_OK)
          << k << ": " << err;
    }
    rd_kafka_conf_set_opaque(conf, this);
    rd_kafka_conf_set_dr_msg_cb(conf, CountDelivery);
    rk_ = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
    SLUICE_CHECK(rk_ != nullptr) << err;
  }
  ~LoadProducer() {
    rd_kafka_flush(rk_, 30'000);
    for (auto& [n, t] : topics_) rd_kafka_topic_destroy(t);
    rd_kafka_destroy(rk_);
  }

  void Produce(const std::string& topic, std::string_view key, std::string_view value) {
    rd_kafka_topic_t*& t = topics_[topic];
    if (t == nullptr) t = rd_kafka_topic_new(rk_, topic.c_str(), nullptr);
    while (rd_kafka_produce(t, RD_KAFKA_PARTITION_UA, RD_KAFKA_MSG_F_COPY,
                            const_cast<char*>(value.data()), value.size(), key.data(), key.size(),
                            nullptr) != 0) {
      SLUICE_CHECK(rd_kafka_last_error() == RD_KAFKA_RESP_ERR__QUEUE_FULL)
          << rd_kafka_err2str(rd_kafka_last_error());
      rd_kafka_poll(rk_, 1);
    }
    if ((++produced_ & 1023) == 0) rd_kafka_poll(rk_, 0);
  }
  void Poll() { rd_kafka_poll(rk_, 0); }
  void Flush() { SLUICE_CHECK(rd_kafka_flush(rk_, 120'000) == RD_KAFKA_RESP_ERR_NO_ERROR); }

  // Low and high offsets of a partition, asked from the broker.
  std::pair<int64_t, int64_t> Watermarks(const std::string& topic, int32_t p) {
    int64_t low = -1, high = -1;
    rd_kafka_query_watermark_offsets(rk_, topic.c_str(), p, &low, &high, 10'000);
    return {low, high};
  }

  std::atomic<int64_t> delivered{0};
  std::atomic<int64_t> failed{0};

 private:
  rd_kafka_t* rk_ = nullptr;
  std::map<std::string, rd_kafka_topic_t*> topics_;
  uint64_t produced_ = 0;
};

void CountDelivery(rd_kafka_t*, const rd_kafka_message_t* msg, void* opaque) {
  auto* p = static_cast<LoadProducer*>(opaque);
  if (msg->err) {
    p->failed.fetch_add(1);
  } else {
    p->delivered.fetch_add(1);
  }
}

// A consumer configured as the worker's KafkaConsumer (same settings), with
// manual assignment of every partition of `topic` from the beginning.
struct RawConsumer {
  rd_kafka_t* rk = nullptr;
  rd_kafka_queue_t* queue = nullptr;

  RawConsumer(const std::string& brokers, const std::string& group, const std::string& topic,
              int partitions, int64_t start_offset,
              const std::map<std::string, std::string>& extra = {}) {
    rd_kafka_conf_t* conf = rd_kafka_conf_new();
    char err[512];
    std::map<std::string, std::string> settings = {
        {"bootstrap.servers", brokers},    {"group.id", group},
        {"enable.auto.commit", "false"},   {"enable.auto.offset.store", "false"},
        {"auto.offset.reset", "earliest"}, {"isolation.level", "read_committed"},
        {"enable.partition.eof", "false"}, {"queued.max.messages.kbytes", "16384"}};
    for (const auto& [k, v] : extra) settings[k] = v;
    for (const auto& [k, v] : settings) {
      SLUICE_CHECK(rd_kafka_conf_set(conf, k.c_str(), v.c_str(), err, sizeof(err)) ==
                   RD_KAFKA_CONF_OK)
          << k << ": " << err;
    }
    rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err));
    SLUICE_CHECK(rk != nullptr) << err;
    rd_kafka_poll_set_consumer(rk);
    queue = rd_kafka_queue_get_consumer(rk);
    rd_kafka_topic_partition_list_t* list = rd_kafka_topic_partition_list_new(partitions);
    for (int p = 0; p < partitions; ++p) {
      rd_kafka_topic_partition_list_add(list, topic.c_str(), p)->offset = start_offset;
    }
    SLUICE_CHECK(rd_kafka_assign(rk, list) == RD_KAFKA_RESP_ERR_NO_ERROR);
    rd_kafka_topic_partition_list_destroy(list);
  }
  ~RawConsumer() {
    rd_kafka_queue_destroy(queue);
    rd_kafka_assign(rk, nullptr);
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
  }
};

// simdjson DOM parse of a message that is not padded: copied into a padded
// buffer first (as the engine's decoder does).
class PaddedParser {
 public:
  simdjson::error_code Parse(std::string_view json, simdjson::dom::element* out) {
    if (buf_.size() < json.size() + simdjson::SIMDJSON_PADDING) {
      buf_.resize(json.size() + simdjson::SIMDJSON_PADDING);
    }
    std::memcpy(buf_.data(), json.data(), json.size());
    return parser_.parse(buf_.data(), json.size(), /*realloc_if_needed=*/false).get(*out);
  }

 private:
  simdjson::dom::parser parser_;
  std::string buf_;
};

// ---- Jobs ---------------------------------------------------------------------

std::shared_ptr<const engine::JobPlan> Compile(const proto::JobSpec& spec) {
  auto plan = engine::JobPlan::Compile(spec);
  SLUICE_CHECK(plan.ok()) << spec.name() << ": " << plan.status().ToString();
  return *plan;
}

// Creates a topic through Kafka's admin API (replication 1) and waits for the
// broker's answer; an existing topic is an error unless `if_missing`.
void CreateTopicWithAdmin(const std::string& bootstrap, const std::string& name, int partitions,
                          bool if_missing) {
  char errstr[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  SLUICE_CHECK(rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap.c_str(), errstr,
                                 sizeof(errstr)) == RD_KAFKA_CONF_OK)
      << errstr;
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
  SLUICE_CHECK(rk != nullptr) << errstr;
  rd_kafka_NewTopic_t* topic =
      rd_kafka_NewTopic_new(name.c_str(), partitions, 1, errstr, sizeof(errstr));
  SLUICE_CHECK(topic != nullptr) << errstr;
  rd_kafka_queue_t* queue = rd_kafka_queue_new(rk);
  rd_kafka_AdminOptions_t* options = rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_CREATETOPICS);
  SLUICE_CHECK(
      rd_kafka_AdminOptions_set_operation_timeout(options, 30'000, errstr, sizeof(errstr)) == 0)
      << errstr;
  rd_kafka_CreateTopics(rk, &topic, 1, options, queue);
  rd_kafka_event_t* ev = rd_kafka_queue_poll(queue, 60'000);
  SLUICE_CHECK(ev != nullptr) << "create topic " << name << ": no answer within 60 s";
  SLUICE_CHECK(rd_kafka_event_error(ev) == RD_KAFKA_RESP_ERR_NO_ERROR)
      << "create topic " << name << ": " << rd_kafka_event_error_string(ev);
  size_t n = 0;
  const rd_kafka_topic_result_t** results =
      rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(ev), &n);
  for (size_t i = 0; i < n; ++i) {
    const rd_kafka_resp_err_t err = rd_kafka_topic_result_error(results[i]);
    SLUICE_CHECK(err == RD_KAFKA_RESP_ERR_NO_ERROR ||
                 (err == RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS && if_missing))
        << "create topic " << name << ": " << rd_kafka_topic_result_error_string(results[i]);
  }
  rd_kafka_event_destroy(ev);
  rd_kafka_AdminOptions_destroy(options);
  rd_kafka_NewTopic_destroy(topic);
  rd_kafka_queue_destroy(queue);
  rd_kafka_destroy(rk);
}

// On sluice-devbroker through its control port; on Kafka through the admin API.
void CreateTopic(const Config& cfg, const std::string& name, int partitions) {
  if (cfg.control.empty()) {
    CreateTopicWithAdmin(cfg.bootstrap, name, partitions, /*if_missing=*/false);
    return;
  }
  std::string reply =
      DevbrokerControl(cfg.control, "create-topic " + name + " " + std::to_string(partitions));
  SLUICE_CHECK(reply == "ok") << "create-topic " << name << ": " << reply;
}

// The sink topics a job writes to. sluice-devbroker creates a topic on first
// use; Kafka (auto-creation off, as scripts/kafka.sh runs it) needs them made.
void CreateSinkTopics(const Config& cfg, const proto::SinkSpec& sinks) {
  if (!cfg.control.empty()) return;
  for (const std::string& name : {sinks.output(), sinks.late(), sinks.dead_letter()}) {
    if (!name.empty())
      CreateTopicWithAdmin(cfg.bootstrap, name, cfg.partitions, /*if_missing=*/true);
  }
}

int64_t DirBytes(const fs::path& dir) {
  int64_t total = 0;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(dir, ec);
       it != fs::recursive_directory_iterator(); it.increment(ec)) {
    if (ec) break;
    if (it->is_regular_file(ec)) total += static_cast<int64_t>(it->file_size(ec));
  }
  return total;
}

// ==== 1. Throughput =============================================================

struct RateResult {
  std::string who;
  int round = 0;
  int64_t events = 0;         // consumed in total
  int64_t window_events = 0;  // counted in the measured window
  double window_s = 0;
  double rate = 0;      // window_events / window_s
  double rate_low = 0;  // pessimistic bound (TaskHost: see ThroughputHost)
  int checkpoints = 0;  // checkpoints taken inside the window (TaskHost)
  int64_t outputs = 0;
  std::vector<double> thread_rates;  // TaskHost: each thread's busy rate
};

// The baseline: one consumer, all partitions, simdjson DOM parse of every
// message reading user_id (the key) and ts (the event time). Timed from the
// return of the first non-empty poll to the end of the last message.
// With `produce`, the loop also produces one record per event, of the size
// and shape of a window result, with the worker's producer and its settings
// (worker/kafka/kafka_client.cc: idempotent, acks=all, lz4, linger 5 ms) into
// a topic of its own: the least a job that emits a result per event costs
// through librdkafka, without any engine.
RateResult ThroughputRaw(const Config& cfg, const std::string& topic, int64_t n, int round,
                         bool produce = false) {
  RawConsumer c(cfg.bootstrap, "bench-raw-" + topic + (produce ? "-p" : ""), topic, cfg.partitions,
                RD_KAFKA_OFFSET_BEGINNING, cfg.consumer_settings);
  std::unique_ptr<kafka::KafkaProducer> out;
  rd_kafka_topic_s* out_topic = nullptr;
  kafka::DeliveryTracker tracker;
  if (produce) {
    CreateTopic(cfg, topic + "-raw-out", cfg.partitions);
    auto created = kafka::KafkaProducer::Create(cfg.bootstrap);
    SLUICE_CHECK(created.ok()) << created.status().ToString();
    out = std::move(created).value();
    out_topic = out->Topic(topic + "-raw-out");
  }
  std::vector<rd_kafka_message_t*> msgs(1000);
  PaddedParser parser;
  simdjson::dom::element doc;
  int64_t count = 0, bad = 0;
  uint64_t checksum = 0;
  Steady::time_point first{}, last{};
  const auto deadline = Steady::now() + std::chrono::seconds(120);
  while (count < n && Steady::now() < deadline) {
    ssize_t got = rd_kafka_consume_batch_queue(c.queue, 100, msgs.data(), msgs.size());
    if (got <= 0) continue;
    if (count == 0) first = Steady::now();
    for (ssize_t i = 0; i < got; ++i) {
      rd_kafka_message_t* m = msgs[static_cast<size_t>(i)];
      if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        ++count;
        std::string_view key;
        int64_t ts = 0;
        if (parser.Parse({static_cast<const char*>(m->payload), m->len}, &doc) ||
            doc["user_id"].get_string().get(key) || doc["ts"].get_int64().get(ts)) {
          ++bad;
        } else {
          checksum += key.size() + static_cast<uint64_t>(key.back()) + static_cast<uint64_t>(ts);
          if (produce) {
            const int64_t start = ts - ts % 60'000;
            char buf[256];
            const int len = std::snprintf(
                buf, sizeof(buf),
                "{\"id\":\"%016llx%016llx\",\"job\":\"bench-tumbling\",\"key\":\"%.*s\","
                "\"window_start\":%lld,\"window_end\":%lld,\"kind\":\"final\",\"events\":1}",
                static_cast<unsigned long long>(checksum), static_cast<unsigned long long>(count),
                static_cast<int>(key.size()), key.data(), static_cast<long long>(start),
                static_cast<long long>(start + 60'000));
            SLUICE_CHECK(out->Produce(out_topic, key,
                                      std::string_view(buf, static_cast<size_t>(len)), &tracker)
                             .ok());
          }
        }
      }
      rd_kafka_message_destroy(m);
    }
    last = Steady::now();
  }
  asm volatile("" : : "r"(checksum) : "memory");
  SLUICE_CHECK(count == n) << "raw consumer read " << count << " of " << n;
  SLUICE_CHECK(bad == 0) << bad << " messages did not parse";
  if (produce) {
    // Outside the timed window, as for the worker (whose rate counts
    // consumed records): every record is acknowledged before the next run.
    SLUICE_CHECK(out->Flush(60'000).ok());
    SLUICE_CHECK(tracker.failed.load() == 0) << tracker.failed.load() << " records failed";
    SLUICE_CHECK(tracker.delivered.load() == n) << tracker.delivered.load() << " of " << n;
  }
  RateResult r;
  r.who = "raw librdkafka + simdjson";
  r.round = round;
  r.events = count;
  r.window_events = count;
  r.window_s = Ms(first, last) / 1000;
  r.rate = r.rate_low = static_cast<double>(count) / r.window_s;
  return r;
}

// The worker's data plane. TaskHost publishes each task's report (with its
// consumed counter) every 250 ms, from the task's thread, all tasks of a
// thread at once; polling Reports() every 2 ms sees each publish within
// ~2 ms. Tasks are placed on threads in start order on the least loaded one,
// so partition p runs on thread p % threads. Per thread, the publishes give
// exact (time, consumed) points while it is busy: its rate is (C_b - C_a) /
// (t_b - t_a) between its first publish with consumed > 0 and its last one
// before it had consumed everything, and its first and last record are
// extrapolated from those points (t_a - C_a / rate, t_b + (final - C_b) /
// rate). The host's rate is all events over [earliest first record, latest
// last record]: idle time of a thread that finished early counts against it,
// as it would in a real deployment. `rate_low` (coarse): (n - C_a) / (t_n -
// t_a) over the summed publishes, including up to 250 ms of idle time.
// `variant` "no-output" adds `having: events > 1e9`, so nothing is produced to
// the sink (a diagnostic: the cost of the output path).
RateResult ThroughputHost(const Config& cfg, const std::string& topic, int64_t n, int round,
                          int threads, const std::string& variant = "") {
  const fs::path dir = fs::path(cfg.work_dir) /
                       ("tp-r" + std::to_string(round) + "-t" + std::to_string(threads) + variant);
  fs::remove_all(dir);
  worker::HostOptions options;
  options.brokers = cfg.bootstrap;
  options.data_dir = (dir / "state").string();
  options.checkpoint_uri = "file://" + fs::absolute(dir / "checkpoints").string();
  options.threads = threads;
  options.kafka_settings = cfg.consumer_settings;  // also given to its producer, which ignores them
  SystemClock clock;
  worker::TaskHost host(options, clock);
  SLUICE_CHECK(host.Start().ok());

  proto::JobSpec spec = BenchJob("tumbling", topic);
  spec.mutable_sinks()->set_output("e2e-tumbling-out");
  spec.mutable_sinks()->set_late("e2e-tumbling-late");
  spec.mutable_sinks()->set_dead_letter("e2e-tumbling-dlq");
  spec.mutable_window()->set_tumbling_ms(60'000);
  *spec.add_aggregates() = Agg("events", F::COUNT);
  if (variant == "no-output") spec.set_having("events > 1000000000");
  ApplyDelivery(cfg, &spec);
  CreateSinkTopics(cfg, spec.sinks());
  auto plan = Compile(spec);
  for (int p = 0; p < cfg.partitions; ++p) host.StartTask(plan, 1, p, 0);

  struct Point {
    Steady::time_point t;
    int64_t total;
  };
  std::vector<Point> points;  // all tasks
  std::vector<std::vector<Point>> per_thread(static_cast<size_t>(threads));
  std::vector<int64_t> thread_total(static_cast<size_t>(threads), 0);
  int64_t total = 0, outputs = 0;
  std::map<int32_t, int64_t> first_ckpt;  // checkpoint id when the task started consuming
  std::map<int32_t, int64_t> last_ckpt;
  const auto deadline = Steady::now() + std::chrono::seconds(180);
  while (total < n && Steady::now() < deadline) {
    std::vector<proto::TaskReport> reports = host.Reports();
    const auto now = Steady::now();
    int64_t sum = 0, out = 0;
    std::vector<int64_t> by_thread(static_cast<size_t>(threads), 0);
    for (const proto::TaskReport& r : reports) {
      sum += r.consumed();
      out += r.window_results();
      by_thread[static_cast<size_t>(r.partition() % threads)] += r.consumed();
      SLUICE_CHECK(r.state() != proto::TaskReport::FAILED) << r.error();
      if (r.consumed() > 0) {
        if (!first_ckpt.count(r.partition())) first_ckpt[r.partition()] = r.last_checkpoint_id();
        last_ckpt[r.partition()] = r.last_checkpoint_id();
      }
    }
    for (size_t t = 0; t < by_thread.size(); ++t) {
      if (by_thread[t] != thread_total[t]) {
        thread_total[t] = by_thread[t];
        per_thread[t].push_back({now, by_thread[t]});
      }
    }
    if (sum != total) {
      total = sum;
      outputs = out;
      points.push_back({now, sum});
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  // Let the counters settle (duplicates, if any, show as consumed > n).
  std::this_thread::sleep_for(std::chrono::milliseconds(600));
  std::vector<proto::TaskReport> final_reports = host.Reports();
  host.Shutdown(false);
  SLUICE_CHECK(host.error().ok()) << host.error().message();
  int64_t final_total = 0;
  for (const proto::TaskReport& fr : final_reports) final_total += fr.consumed();
  if (total != n || final_total != n) {
    std::printf("  !! TaskHost (%d threads%s) consumed %lld records of a topic holding %lld:\n",
                threads, variant.empty() ? "" : (", " + variant).c_str(),
                static_cast<long long>(final_total), static_cast<long long>(n));
    for (const proto::TaskReport& fr : final_reports) {
      std::printf("     partition %d: consumed %lld, next_offset %lld, end_offset %lld\n",
                  fr.partition(), static_cast<long long>(fr.consumed()),
                  static_cast<long long>(fr.next_offset()),
                  static_cast<long long>(fr.end_offset()));
    }
    std::fflush(stdout);
  }
  SLUICE_CHECK(total >= n) << "TaskHost consumed " << total << " of " << n;

  RateResult r;
  r.who = "TaskHost, " + std::to_string(threads) + " task thread" + (threads > 1 ? "s" : "") +
          (variant.empty() ? "" : ", " + variant);
  r.round = round;
  r.events = total;
  r.outputs = outputs;
  for (const auto& [p, id] : last_ckpt) r.checkpoints += static_cast<int>(id - first_ckpt[p]);
  const Point& a = points.front();
  const Point& end = points.back();
  r.rate_low = static_cast<double>(end.total - a.total) / (Ms(a.t, end.t) / 1000);
  // Per thread: start and end extrapolated from its busy publishes.
  double first_s = 1e300, last_s = -1e300;  // relative to a.t
  for (const std::vector<Point>& pts : per_thread) {
    if (pts.size() < 3) {  // too short to extrapolate: use the raw points
      first_s = std::min(first_s, Ms(a.t, pts.front().t) / 1000);
      last_s = std::max(last_s, Ms(a.t, pts.back().t) / 1000);
      continue;
    }
    const Point& pa = pts.front();
    const Point& pb = pts[pts.size() - 2];
    const double rate = static_cast<double>(pb.total - pa.total) / (Ms(pa.t, pb.t) / 1000);
    first_s = std::min(first_s, Ms(a.t, pa.t) / 1000 - static_cast<double>(pa.total) / rate);
    last_s = std::max(
        last_s, Ms(a.t, pb.t) / 1000 + static_cast<double>(pts.back().total - pb.total) / rate);
    r.thread_rates.push_back(rate);
  }
  r.window_events = total;
  r.window_s = last_s - first_s;
  r.rate = static_cast<double>(total) / r.window_s;
  fs::remove_all(dir);
  return r;
}

// librdkafka 2.0.2 stops fetching a partition for fetch.error.backoff.ms
// (500 ms) whenever the consumer's local queue holds queued.min.messages
// (default 100000) messages or queued.max.messages.kbytes (the worker sets
// 16384) of data. A consumer with a backlog therefore runs in bursts. "tuned"
// raises both limits so that fetching never pauses.
const std::map<std::string, std::string> kTunedFetch = {{"queued.min.messages", "10000000"},
                                                        {"queued.max.messages.kbytes", "2097151"}};

std::map<std::string, std::string> With(const std::map<std::string, std::string>& base,
                                        const std::map<std::string, std::string>& extra) {
  std::map<std::string, std::string> out = base;
  for (const auto& [k, v] : extra) out[k] = v;
  return out;
}

void RunThroughput(const Config& cfg) {
  std::printf("\n## 1. Throughput through %s\n\n",
              cfg.control.empty() ? "Apache Kafka" : "sluice-devbroker");
  const bool live = cfg.event_time == "live";
  std::printf(
      "%d rounds of %lld payments (%d users, generator seed = round, event time %s), "
      "each produced into a fresh %d-partition topic, then consumed by each contender "
      "in turn (order rotated per round). Worker delivery %s, checkpoint interval %s.\n\n",
      cfg.rounds, static_cast<long long>(cfg.round_events), cfg.users,
      live ? "+1 ms per 1000 events (live)" : "+10 ms per event on average (sparse)",
      cfg.partitions, cfg.delivery.empty() ? "at_least_once" : cfg.delivery.c_str(),
      cfg.checkpoint_interval_ms > 0 ? (std::to_string(cfg.checkpoint_interval_ms) + " ms").c_str()
                                     : "10 s");
  std::fflush(stdout);
  struct Contender {
    std::string name;
    std::function<RateResult(const std::string&, int)> run;
  };
  const auto tuned = With(cfg.consumer_settings, kTunedFetch);
  Config tuned_cfg = cfg;
  tuned_cfg.consumer_settings = tuned;
  const std::vector<Contender> contenders = {
      {"raw loop (tuned fetch)",
       [&](const std::string& t, int r) {
         return ThroughputRaw(tuned_cfg, t, cfg.round_events, r);
       }},
      {"TaskHost 1 thread (worker defaults)",
       [&](const std::string& t, int r) { return ThroughputHost(cfg, t, cfg.round_events, r, 1); }},
      {"TaskHost 2 threads (worker defaults)",
       [&](const std::string& t, int r) { return ThroughputHost(cfg, t, cfg.round_events, r, 2); }},
      {"TaskHost 1 thread (tuned fetch)",
       [&](const std::string& t, int r) {
         return ThroughputHost(tuned_cfg, t, cfg.round_events, r, 1, "tuned");
       }},
      {"TaskHost 2 threads (tuned fetch)",
       [&](const std::string& t, int r) {
         return ThroughputHost(tuned_cfg, t, cfg.round_events, r, 2, "tuned");
       }},
      {"TaskHost 1 thread (tuned, no sink output)",
       [&](const std::string& t, int r) {
         return ThroughputHost(tuned_cfg, t, cfg.round_events, r, 1, "no-output");
       }},
      {"raw loop (worker's consumer settings)",
       [&](const std::string& t, int r) { return ThroughputRaw(cfg, t, cfg.round_events, r); }},
      {"raw loop + produce a result per event (tuned fetch)",
       [&](const std::string& t, int r) {
         return ThroughputRaw(tuned_cfg, t, cfg.round_events, r, /*produce=*/true);
       }},
  };
  std::vector<std::vector<RateResult>> results(contenders.size());
  LoadProducer producer(cfg.bootstrap);
  for (int round = 1; round <= cfg.rounds; ++round) {
    const std::string topic = "e2e-tp-" + std::to_string(round) + "-" + std::to_string(getpid());
    CreateTopic(cfg, topic, cfg.partitions);
    tools::GeneratorOptions g;
    g.kind = tools::EventKind::kPayments;
    g.seed = static_cast<uint64_t>(round);
    g.users = cfg.users;
    if (live) g.step_ms = 0;
    tools::EventGenerator gen(g);
    std::string one;
    int64_t bytes = 0;
    const auto t0 = Steady::now();
    for (int64_t i = 0; i < cfg.round_events; ++i) {
      if (live) gen.SyncTime(g.start_ms + i / 1000);
      gen.Next(&one);
      bytes += static_cast<int64_t>(one.size());
      producer.Produce(topic, gen.last_key(), one);
    }
    producer.Flush();
    const double produce_s = SecondsSince(t0);
    SLUICE_CHECK(producer.failed.load() == 0) << producer.failed.load() << " deliveries failed";
    int64_t high_sum = 0, max_part = 0, min_part = INT64_MAX;
    for (int p = 0; p < cfg.partitions; ++p) {
      auto [low, high] = producer.Watermarks(topic, p);
      SLUICE_CHECK(low == 0) << topic << "/" << p << ": the broker dropped records (low offset "
                             << low << "); use fewer --round-events";
      high_sum += high;
      max_part = std::max(max_part, high);
      min_part = std::min(min_part, high);
    }
    SLUICE_CHECK(high_sum == cfg.round_events) << high_sum;
    std::printf(
        "round %d: topic %s, %.1f MB of JSON (%.0f B/event, lz4 on the wire), produced in "
        "%.2f s; records per partition %lld..%lld (none dropped by the broker)\n",
        round, topic.c_str(), static_cast<double>(bytes) / 1e6,
        static_cast<double>(bytes) / static_cast<double>(cfg.round_events), produce_s,
        static_cast<long long>(min_part), static_cast<long long>(max_part));
    std::fflush(stdout);
    for (size_t k = 0; k < contenders.size(); ++k) {
      const size_t which = (k + static_cast<size_t>(round) - 1) % contenders.size();
      RateResult r = contenders[which].run(topic, round);
      std::string per_thread;
      for (double tr : r.thread_rates) per_thread += " " + std::to_string(static_cast<int64_t>(tr));
      std::printf(
          "  %-42s %9.0f events/s (%lld events in %.3f s; coarse %.0f; per-thread busy "
          "rate%s; checkpoints during the run %d; window results %lld)\n",
          contenders[which].name.c_str(), r.rate, static_cast<long long>(r.window_events),
          r.window_s, r.rate_low, per_thread.empty() ? " -" : per_thread.c_str(), r.checkpoints,
          static_cast<long long>(r.outputs));
      std::fflush(stdout);
      results[which].push_back(r);
    }
  }

  auto median = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
  };
  std::vector<double> base;
  for (const RateResult& r : results[0]) base.push_back(r.rate);
  std::printf(
      "\n| contender | events/s per round | median events/s | ratio to the raw loop "
      "(median of per-round ratios) |\n|---|---|---:|---:|\n");
  for (size_t c = 0; c < contenders.size(); ++c) {
    std::vector<double> rates, ratios;
    std::string per_round;
    for (size_t i = 0; i < results[c].size(); ++i) {
      rates.push_back(results[c][i].rate);
      ratios.push_back(results[c][i].rate / base[i]);
      per_round += (i ? ", " : "") + std::to_string(static_cast<int64_t>(results[c][i].rate));
    }
    std::printf("| %s | %s | %.0f | %.2f |\n", contenders[c].name.c_str(), per_round.c_str(),
                median(rates), median(ratios));
  }
  std::fflush(stdout);
}

// ==== 2. Latency ================================================================

void RunLatency(const Config& cfg, const std::string& label) {
  std::printf("\n## 2. Event-to-alert latency (fraud rules): %s\n\n", label.c_str());
  static int run = 0;
  const std::string tag = std::to_string(getpid()) + "-" + std::to_string(++run);
  const std::string in_topic = "e2e-lat-payments-" + tag;
  const std::string alert_topic = "e2e-lat-alerts-" + tag;
  CreateTopic(cfg, in_topic, cfg.partitions);
  CreateTopic(cfg, alert_topic, cfg.partitions);

  auto loaded = jobspec::LoadJobFile(cfg.fraud_job);
  SLUICE_CHECK(loaded.ok()) << loaded.status().ToString();
  proto::JobSpec spec = *loaded;
  spec.set_name("fraud-lat-" + tag);
  spec.mutable_source()->set_topic(in_topic);
  spec.mutable_source()->set_max_out_of_orderness_ms(0);
  spec.mutable_sinks()->set_output(alert_topic);
  spec.mutable_sinks()->set_late(alert_topic + "-late");
  spec.mutable_sinks()->set_dead_letter(alert_topic + "-dlq");
  char when[64];
  std::snprintf(when, sizeof(when), "amount > %g", cfg.low_threshold);
  proto::RuleSpec* low = spec.add_rules();
  low->set_name("low_threshold");
  low->set_when(when);
  ApplyDelivery(cfg, &spec);
  CreateSinkTopics(cfg, spec.sinks());
  auto plan = Compile(spec);
  std::printf(
      "Job: %s with max_out_of_orderness 0 (other settings as in the file: "
      "filter `%s`, idle_timeout %llds, max_future %llds, max_past %lldd), plus rule "
      "`low_threshold: %s`. %d task threads, %d partitions. Delivery %s, checkpoint "
      "interval %lld ms.\n",
      cfg.fraud_job.c_str(), spec.filter().c_str(),
      static_cast<long long>(spec.source().idle_timeout_ms() / 1000),
      static_cast<long long>(spec.source().max_future_ms() / 1000),
      static_cast<long long>(spec.source().max_past_ms() / 86'400'000), when, cfg.latency_threads,
      cfg.partitions,
      spec.delivery() == proto::JobSpec::EXACTLY_ONCE ? "exactly_once" : "at_least_once",
      static_cast<long long>(spec.checkpoint_interval_ms()));
  std::printf(
      "Input: %.0f payments/s (%d users, fraud_every 1000), ts = producer wall clock at "
      "produce; warm-up %.0f s, measured %.0f s.\n\n",
      cfg.latency_rate, cfg.latency_users, cfg.latency_warmup_s, cfg.latency_seconds);
  std::fflush(stdout);

  const fs::path dir = fs::path(cfg.work_dir) / ("latency-" + tag);
  fs::remove_all(dir);
  worker::HostOptions options;
  options.brokers = cfg.bootstrap;
  options.data_dir = (dir / "state").string();
  options.checkpoint_uri = "file://" + fs::absolute(dir / "checkpoints").string();
  options.threads = cfg.latency_threads;
  options.kafka_settings = cfg.consumer_settings;
  options.kafka_settings["linger.ms"] = cfg.latency_linger_ms;
  SystemClock clock;
  worker::TaskHost host(options, clock);
  SLUICE_CHECK(host.Start().ok());
  for (int p = 0; p < cfg.partitions; ++p) host.StartTask(plan, 1, p, 0);
  for (int i = 0; i < 3000; ++i) {
    auto reports = host.Reports();
    int running = 0;
    for (const auto& r : reports) running += r.state() == proto::TaskReport::RUNNING;
    if (running == cfg.partitions) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }

  // Alert consumer: latency = now - the event's produce time. The produce
  // time in microseconds travels in the event as "sent_us" (the alert copies
  // the event); "ts" holds the same instant in ms. Both are recorded.
  std::atomic<bool> stop_consumer{false};
  std::atomic<int64_t> measure_from_us{INT64_MAX}, measure_to_us{INT64_MAX};
  std::map<std::string, Samples> by_rule;
  Samples all_us, all_ms_event_time;
  // The alert's Kafka timestamp is the worker's produce time (CreateTime, set
  // by librdkafka when the worker hands the record over, in ms): it splits an
  // alert's latency into the part up to the worker's produce call (the first
  // hop and the worker) and the part after (the worker's producer, the broker,
  // the alert consumer).
  Samples to_produce_ms, after_produce_ms;
  std::vector<std::pair<int64_t, double>> series;  // (sent_us, latency ms)
  int64_t alerts_seen = 0;
  std::thread consumer([&] {
    RawConsumer c(cfg.bootstrap, "bench-alerts-" + tag, alert_topic, cfg.partitions,
                  RD_KAFKA_OFFSET_BEGINNING, cfg.consumer_settings);
    PaddedParser parser;
    simdjson::dom::element doc;
    while (!stop_consumer.load()) {
      // One message at a time: returns as soon as one is there (a batch call
      // would wait for the batch to fill, adding latency of its own).
      rd_kafka_message_t* m = rd_kafka_consume_queue(c.queue, 20);
      if (m != nullptr) {
        const int64_t now_us = WallUs();
        if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
          std::string_view rule;
          int64_t event_time = 0, sent_us = 0;
          if (!parser.Parse({static_cast<const char*>(m->payload), m->len}, &doc) &&
              !doc["rule"].get_string().get(rule) &&
              !doc["event_time"].get_int64().get(event_time) &&
              !doc["event"]["sent_us"].get_int64().get(sent_us)) {
            ++alerts_seen;
            if (sent_us >= measure_from_us.load() && sent_us < measure_to_us.load()) {
              const double lat_ms = static_cast<double>(now_us - sent_us) / 1000.0;
              by_rule[std::string(rule)].Add(lat_ms);
              all_us.Add(lat_ms);
              series.emplace_back(sent_us, lat_ms);
              all_ms_event_time.Add(static_cast<double>(now_us / 1000 - event_time));
              rd_kafka_timestamp_type_t type;
              const int64_t produced_ms = rd_kafka_message_timestamp(m, &type);
              if (type == RD_KAFKA_TIMESTAMP_CREATE_TIME && produced_ms > 0) {
                to_produce_ms.Add(static_cast<double>(produced_ms) - sent_us / 1000.0);
                after_produce_ms.Add(static_cast<double>(now_us) / 1000.0 -
                                     static_cast<double>(produced_ms));
              }
            }
          }
        }
        rd_kafka_message_destroy(m);
      }
    }
  });

  // Baseline: a raw consumer of the input topic (same settings), recording
  // now - sent_us for every event: what the broker and librdkafka alone add.
  Samples input_ms;
  std::thread input_consumer([&] {
    RawConsumer c(cfg.bootstrap, "bench-input-" + tag, in_topic, cfg.partitions,
                  RD_KAFKA_OFFSET_BEGINNING, cfg.consumer_settings);
    while (!stop_consumer.load()) {
      rd_kafka_message_t* m = rd_kafka_consume_queue(c.queue, 20);
      if (m != nullptr) {
        const int64_t now_us = WallUs();
        if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
          // The event ends with ,"sent_us":N}: read N without a full parse.
          std::string_view v(static_cast<const char*>(m->payload), m->len);
          size_t at = v.rfind(':');
          int64_t sent_us = std::strtoll(std::string(v.substr(at + 1)).c_str(), nullptr, 10);
          if (sent_us >= measure_from_us.load() && sent_us < measure_to_us.load()) {
            input_ms.Add(static_cast<double>(now_us - sent_us) / 1000.0);
          }
        }
        rd_kafka_message_destroy(m);
      }
    }
  });

  // exactly_once: every commit's duration, as the tasks report it (each
  // report carries the last commit's; a report is published every 250 ms and
  // a commit every checkpoint interval, so sampling at 20 ms sees each).
  std::atomic<bool> stop_commits{false};
  Samples commit_ms;
  int64_t txn_committed = 0, txn_aborted = 0;
  std::thread commit_sampler([&] {
    std::map<int32_t, int64_t> seen;
    while (!stop_commits.load()) {
      for (const proto::TaskReport& r : host.Reports()) {
        int64_t& last = seen[r.partition()];
        if (r.transactions_committed() > last) {
          if (last > 0 && measure_from_us.load() != INT64_MAX) {
            commit_ms.Add(static_cast<double>(r.last_commit_ms()));
          }
          last = r.transactions_committed();
        }
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  });

  // Paced producer: at each step, produces the events due by now.
  LoadProducer producer(cfg.bootstrap, cfg.latency_linger_ms);
  tools::GeneratorOptions g;
  g.kind = tools::EventKind::kPayments;
  g.seed = 7;
  g.step_ms = 0;
  g.users = cfg.users;
  g.fraud_every = 1000;
  g.users = cfg.latency_users;
  g.start_ms = WallUs() / 1000;
  tools::EventGenerator gen(g);
  std::string one;
  int64_t sent = 0, sent_measured = 0;
  const auto start = Steady::now();
  const double total_s = cfg.latency_warmup_s + cfg.latency_seconds;
  bool measuring = false;
  while (true) {
    const double el = SecondsSince(start);
    if (el >= total_s) break;
    if (!measuring && el >= cfg.latency_warmup_s) {
      measuring = true;
      measure_from_us.store(WallUs());
    }
    const int64_t due = static_cast<int64_t>(el * cfg.latency_rate);
    while (sent < due) {
      const int64_t now_us = WallUs();
      gen.SyncTime(now_us / 1000);
      gen.Next(&one);
      one.pop_back();  // '}'
      one += ",\"sent_us\":" + std::to_string(now_us) + "}";
      producer.Produce(in_topic, gen.last_key(), one);
      ++sent;
      if (measuring) ++sent_measured;
    }
    producer.Poll();
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  measure_to_us.store(WallUs());
  const double achieved = static_cast<double>(sent_measured) / cfg.latency_seconds;
  producer.Flush();
  // Alerts of rolling rules for the last events fire with the next event of
  // their partition; idle_timeout (30 s) would flush the rest. Wait for the
  // stragglers a little, then stop.
  std::this_thread::sleep_for(std::chrono::seconds(3));
  stop_consumer.store(true);
  consumer.join();
  input_consumer.join();
  stop_commits.store(true);
  commit_sampler.join();
  auto reports = host.Reports();
  int64_t consumed = 0, alerts = 0, late = 0, dlq = 0;
  for (const auto& r : reports) {
    consumed += r.consumed();
    alerts += r.alerts();
    late += r.late();
    dlq += r.dead_lettered();
    txn_committed += r.transactions_committed();
    txn_aborted += r.transactions_aborted();
  }
  host.Shutdown(false);
  fs::remove_all(dir);

  std::printf(
      "Produced %lld events (%.0f/s in the measured window); the host consumed %lld, "
      "raised %lld alerts (late %lld, dead-lettered %lld); the alert consumer read "
      "%lld.\n\n",
      static_cast<long long>(sent), achieved, static_cast<long long>(consumed),
      static_cast<long long>(alerts), static_cast<long long>(late), static_cast<long long>(dlq),
      static_cast<long long>(alerts_seen));
  std::printf(
      "| rule | alerts measured | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms |\n"
      "|---|---:|---:|---:|---:|---:|---:|\n");
  auto row = [](const std::string& name, Samples& s) {
    std::printf("| %s | %zu | %.2f | %.2f | %.2f | %.2f | %.2f |\n", name.c_str(), s.size(),
                s.Quantile(0.5), s.Quantile(0.9), s.Quantile(0.99), s.Quantile(0.999), s.Max());
  };
  for (auto& [rule, s] : by_rule) row(rule, s);
  row("**all rules**", all_us);
  row("baseline: raw consumer of the input topic (produce to consume)", input_ms);
  if (spec.delivery() == proto::JobSpec::EXACTLY_ONCE) {
    std::printf(
        "\nTransactions: %lld committed, %lld aborted over the run. Commit duration "
        "(the marker and commit_transaction, after the checkpoint is saved) in the measured "
        "window: n %zu, p50 %.0f, "
        "p90 %.0f, p99 %.0f, max %.0f ms.\n",
        static_cast<long long>(txn_committed), static_cast<long long>(txn_aborted),
        commit_ms.size(), commit_ms.Quantile(0.5), commit_ms.Quantile(0.9),
        commit_ms.Quantile(0.99), commit_ms.Max());
  }
  // Latency over the run, by second of produce time: stalls show as spikes.
  {
    const int64_t from = measure_from_us.load();
    const size_t seconds = static_cast<size_t>(cfg.latency_seconds) + 1;
    std::vector<Samples> per_second(seconds);
    for (const auto& [sent, lat] : series) {
      const size_t sec = static_cast<size_t>((sent - from) / 1'000'000);
      if (sec < seconds) per_second[sec].Add(lat);
    }
    std::printf("\nAlert latency by second of the measured window (p50/max ms):");
    for (size_t i = 0; i < seconds; ++i) {
      if (per_second[i].empty()) continue;
      std::printf(" %zu:%.0f/%.0f", i, per_second[i].Quantile(0.5), per_second[i].Max());
    }
    std::printf("\n");
  }
  std::printf(
      "\nSame alerts from the ms event_time field (now_ms - event_time, 1 ms "
      "resolution): p50 %.0f, p99 %.0f, p99.9 %.0f ms.\n",
      all_ms_event_time.Quantile(0.5), all_ms_event_time.Quantile(0.99),
      all_ms_event_time.Quantile(0.999));
  if (!to_produce_ms.empty()) {
    std::printf(
        "Split at the worker's produce call (the alert's CreateTime, 1 ms "
        "resolution), %zu alerts: event produced -> alert produced p50 %.1f / p90 %.1f "
        "/ p99 %.1f ms (the input hop and the worker); alert produced -> alert read "
        "p50 %.1f / p90 %.1f / p99 %.1f ms (the worker's producer, the broker, the "
        "reader).\n",
        to_produce_ms.size(), to_produce_ms.Quantile(0.5), to_produce_ms.Quantile(0.9),
        to_produce_ms.Quantile(0.99), after_produce_ms.Quantile(0.5),
        after_produce_ms.Quantile(0.9), after_produce_ms.Quantile(0.99));
  }
  std::fflush(stdout);
}

// ==== 3. Checkpoint stall and recovery ==========================================

// Input of the checkpoint benchmark: `keys` users seen once each (1M session
// windows), then deltas over random existing users, then the records that
// come after the last checkpoint (to replay after the restart).
struct CkptInput {
  std::vector<std::string> payloads;
  std::vector<std::string> keys;
  std::vector<engine::SourceRecord> records;
  size_t load_end = 0;
  std::vector<size_t> delta_end;  // one per delta
  size_t replay_end = 0;
};

CkptInput MakeCkptInput(const Config& cfg) {
  CkptInput in;
  const int64_t n = cfg.keys + cfg.deltas * cfg.delta_events + cfg.replay_events;
  in.payloads.reserve(static_cast<size_t>(n));
  in.keys.reserve(static_cast<size_t>(n));
  std::mt19937_64 rng(3);
  const int64_t base = 1'700'000'000'000;
  char buf[160];
  for (int64_t i = 0; i < n; ++i) {
    const int64_t user =
        i < cfg.keys ? i : static_cast<int64_t>(rng() % static_cast<uint64_t>(cfg.keys));
    const int64_t ts = base + i / 1000;  // 1000 events per ms of event time
    std::snprintf(buf, sizeof(buf), "{\"user_id\":\"u%lld\",\"amount\":%.2f,\"ts\":%lld}",
                  static_cast<long long>(user), 1 + static_cast<double>(rng() % 30000) / 100.0,
                  static_cast<long long>(ts));
    in.payloads.emplace_back(buf);
    in.keys.push_back("u" + std::to_string(user));
  }
  in.records.reserve(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    in.records.push_back(
        {in.payloads[static_cast<size_t>(i)], in.keys[static_cast<size_t>(i)], {"e2e-ckpt", 0, i}});
  }
  in.load_end = static_cast<size_t>(cfg.keys);
  size_t end = in.load_end;
  for (int d = 0; d < cfg.deltas; ++d) {
    end += static_cast<size_t>(cfg.delta_events);
    in.delta_end.push_back(end);
  }
  in.replay_end = end + static_cast<size_t>(cfg.replay_events);
  return in;
}

proto::JobSpec SessionSpec(const std::string& name) {
  proto::JobSpec spec = BenchJob(name, "e2e-ckpt");
  spec.mutable_window()->set_session_gap_ms(24LL * 3'600'000);  // never closes in the run
  *spec.add_aggregates() = Agg("events", F::COUNT);
  *spec.add_aggregates() = Agg("spent", F::SUM, "amount");
  return spec;
}

// The worker's background executor for checkpoint commits (one thread), timing
// each commit.
class TimedBackground {
 public:
  TimedBackground() { boost::asio::post(pool_, worker::LowerThreadPriority); }
  ~TimedBackground() { pool_.join(); }
  worker::BackgroundExecutor Executor() {
    return [this](std::function<void()> work) {
      boost::asio::post(pool_, [this, work = std::move(work)] {
        const auto s = Steady::now();
        work();
        std::lock_guard<std::mutex> lock(mu_);
        commit_ms_.Add(Ms(s, Steady::now()));
      });
    };
  }
  // The commit times so far; clears them.
  Samples TakeCommits() {
    std::lock_guard<std::mutex> lock(mu_);
    return std::exchange(commit_ms_, Samples());
  }

 private:
  boost::asio::thread_pool pool_{1};
  std::mutex mu_;
  Samples commit_ms_;
};

// Waits for the checkpoint in flight (encoding what is left of its snapshot)
// and checks that it succeeded.
void AwaitCheckpoint(worker::Task& task) {
  while (true) {
    task.AdvanceCheckpoint(1'000'000);
    if (auto done = task.PollCheckpoint()) {
      SLUICE_CHECK(done->status.ok()) << done->status.ToString();
      return;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

double ProcessRange(const std::function<void(std::span<const engine::SourceRecord>)>& process,
                    const CkptInput& in, size_t from, size_t to) {
  const auto t0 = Steady::now();
  for (size_t i = from; i < to; i += 1000) {
    process(std::span<const engine::SourceRecord>(in.records)
                .subspan(i, std::min<size_t>(1000, to - i)));
  }
  return SecondsSince(t0);
}

void RunCheckpoint(const Config& cfg) {
  std::printf("\n## 3. Checkpoint stall and recovery with %lld keys\n\n",
              static_cast<long long>(cfg.keys));
  std::printf(
      "Job: session windows (gap 24 h: none closes during the run) keyed by user_id, "
      "count() and sum(amount); one task; %lld distinct users seen once each, then %d "
      "deltas of %lld events on random existing users (%.1f%% of the keys dirty per "
      "checkpoint), then %lld events after the last checkpoint. Records go to "
      "Task::Process in batches of 1000 (no Kafka input).\n\n",
      static_cast<long long>(cfg.keys), cfg.deltas, static_cast<long long>(cfg.delta_events),
      100.0 * static_cast<double>(cfg.delta_events) / static_cast<double>(cfg.keys),
      static_cast<long long>(cfg.replay_events));
  std::fflush(stdout);
  const CkptInput in = MakeCkptInput(cfg);
  const fs::path dir = fs::path(cfg.work_dir) / "checkpoint";
  fs::remove_all(dir);
  ManualClock clock(1'700'000'000'000);

  // ---- A: the worker's Task, as a task thread runs it ----
  Samples stall_ms, barrier_ms, step_ms, commit_ms;
  double full_ms = 0, full_commit_ms = 0, load_s = 0, open_s = 0, replay_s = 0, fresh_open_s = 0;
  int64_t state_bytes = 0, ckpt_bytes = 0, restored_offset = 0;
  size_t restored_windows = 0;
  {
    auto backend = worker::StateBackend::Open((dir / "a-state").string(), worker::StateOptions{});
    SLUICE_CHECK(backend.ok());
    auto producer = kafka::KafkaProducer::Create(cfg.bootstrap);
    SLUICE_CHECK(producer.ok());
    worker::TaskDeliveries deliveries;
    TimedBackground background;
    worker::JobContext ctx;
    ctx.plan = Compile(SessionSpec("sessions1m"));
    ctx.clock = &clock;
    worker::KafkaIoConfig io_config;
    io_config.producer = producer->get();
    io_config.state = backend->get();
    io_config.checkpoint_uri = "file://" + fs::absolute(dir / "a-checkpoints").string();
    io_config.checkpoints.keep = 3;
    worker::KafkaWorkerIo io(io_config);
    ctx.io = &io;
    ctx.background = background.Executor();
    auto t0 = Steady::now();
    auto task = worker::Task::Open(ctx, 0, 1, &deliveries);
    fresh_open_s = SecondsSince(t0);
    SLUICE_CHECK(task.ok()) << task.status().ToString();
    auto process = [&](std::span<const engine::SourceRecord> r) { (*task)->Process(r); };
    load_s = ProcessRange(process, in, 0, in.load_end);
    SLUICE_CHECK((*task)->processor().open_windows() == static_cast<size_t>(cfg.keys))
        << (*task)->processor().open_windows();
    // The barrier is what the task thread stalls for; the commit runs on the
    // background thread while the next delta is processed.
    auto barrier = [&] {
      const auto s = Steady::now();
      Status st = (*task)->BeginCheckpoint(clock.NowMillis(), 60'000);
      SLUICE_CHECK(st.ok()) << st.ToString();
      return Ms(s, Steady::now());
    };
    full_ms = barrier();
    {
      const auto s = Steady::now();
      AwaitCheckpoint(**task);
      full_ms += Ms(s, Steady::now());  // nothing to process meanwhile: all of it at once
    }
    full_commit_ms = background.TakeCommits().Max();
    std::printf(
        "A  Task: loaded %lld keys in %.2f s (%.0f events/s); first checkpoint (full): "
        "barrier %.1f ms, commit %.1f ms\n",
        static_cast<long long>(cfg.keys), load_s, static_cast<double>(cfg.keys) / load_s, full_ms,
        full_commit_ms);
    std::fflush(stdout);
    // As a task thread does: a batch of records, then a step of the open
    // snapshot's encoding (TaskHost's budget, 1 ms).
    double longest_pause = 0;
    auto process_and_step = [&](std::span<const engine::SourceRecord> r) {
      (*task)->Process(r);
      if (!(*task)->snapshotting()) return;
      const auto s = Steady::now();
      (*task)->AdvanceCheckpoint(1'000);
      const double ms = Ms(s, Steady::now());
      step_ms.Add(ms);
      longest_pause = std::max(longest_pause, ms);
    };
    size_t from = in.load_end;
    for (size_t end : in.delta_end) {
      ProcessRange(process_and_step, in, from, end);
      from = end;
      if (from != in.delta_end.front()) {
        AwaitCheckpoint(**task);  // the previous one
        stall_ms.Add(longest_pause);
      }
      const double b = barrier();
      barrier_ms.Add(b);
      longest_pause = b;
    }
    ProcessRange(process_and_step, in, from, std::min(in.replay_end, from + 20'000));
    AwaitCheckpoint(**task);
    stall_ms.Add(longest_pause);
    commit_ms = background.TakeCommits();
    // Records after the last checkpoint; then the task dies without one.
    ProcessRange(process, in, std::min(in.replay_end, from + 20'000), in.replay_end);
    state_bytes = DirBytes(dir / "a-state");
    ckpt_bytes = DirBytes(dir / "a-checkpoints");
    task->reset();

    // Restart: Task::Open restores the newest checkpoint (RestoreLatest into
    // the task's state dir, open RocksDB, TaskProcessor::Restore).
    t0 = Steady::now();
    auto again = worker::Task::Open(ctx, 0, 1, &deliveries);
    open_s = SecondsSince(t0);
    SLUICE_CHECK(again.ok()) << again.status().ToString();
    restored_offset = (*again)->next_offset();
    restored_windows = (*again)->processor().open_windows();
    SLUICE_CHECK(restored_offset == static_cast<int64_t>(in.delta_end.back())) << restored_offset;
    auto process2 = [&](std::span<const engine::SourceRecord> r) { (*again)->Process(r); };
    replay_s = ProcessRange(process2, in, in.delta_end.back(), in.replay_end);
    again->reset();
  }

  // ---- B: the same steps on the components, to split the time ----
  Samples b_snapshot_ms, b_write_ms, b_save_ms, b_delta_ms;
  double b_full_snapshot = 0, b_full_write = 0, b_full_save = 0, b_full_delta = 0,
         b_restore_files = 0, b_restore_deltas = 0, b_open_db = 0, b_processor_restore = 0;
  {
    class NullSink final : public engine::RecordSink {
     public:
      void Emit(engine::OutputStream, std::string_view, std::string_view) override {}
    } sink;
    auto backend = worker::StateBackend::Open((dir / "b-state").string(), worker::StateOptions{});
    SLUICE_CHECK(backend.ok());
    auto store = (*backend)->OpenTask("sessions1m-0", /*wipe=*/true);
    SLUICE_CHECK(store.ok());
    auto ckpts = worker::CheckpointStore::Open(
        "file://" + fs::absolute(dir / "b-checkpoints").string(), "sessions1m", 0, 3);
    SLUICE_CHECK(ckpts.ok());
    // The same checkpoints as deltas (what the worker commits), in a store of
    // their own.
    auto delta_ckpts = worker::CheckpointStore::Open(
        "file://" + fs::absolute(dir / "b-delta-checkpoints").string(), "sessions1m", 0, 3);
    SLUICE_CHECK(delta_ckpts.ok());
    auto plan = Compile(SessionSpec("sessions1m"));
    auto proc = std::make_unique<engine::TaskProcessor>(plan, clock, sink);
    auto process = [&](std::span<const engine::SourceRecord> r) { proc->ProcessBatch(r); };
    ProcessRange(process, in, 0, in.load_end);
    auto checkpoint = [&](double* snapshot_ms, double* write_ms, double* save_ms,
                          double* delta_ms) {
      auto s = Steady::now();
      engine::WriteBatch batch;
      SLUICE_CHECK(proc->Snapshot(**store, &batch).ok());
      auto w = Steady::now();
      SLUICE_CHECK((*store)->Write(batch).ok());
      auto m = Steady::now();
      worker::CheckpointMeta meta;
      meta.job = "sessions1m";
      meta.partition = 0;
      meta.next_offset = proc->next_offset();
      meta.watermark = proc->watermark();
      meta.epoch = 1;
      auto saved = (*ckpts)->Save(**store, meta);
      SLUICE_CHECK(saved.ok()) << saved.status().ToString();
      auto d = Steady::now();
      auto delta = (*delta_ckpts)->SaveChanges(**store, batch, meta, 0, /*started_empty=*/true);
      SLUICE_CHECK(delta.ok()) << delta.status().ToString();
      *snapshot_ms = Ms(s, w);
      *write_ms = Ms(w, m);
      *save_ms = Ms(m, d);
      *delta_ms = Ms(d, Steady::now());
    };
    checkpoint(&b_full_snapshot, &b_full_write, &b_full_save, &b_full_delta);
    size_t from = in.load_end;
    for (size_t end : in.delta_end) {
      ProcessRange(process, in, from, end);
      from = end;
      double sn = 0, w = 0, s = 0, dm = 0;
      checkpoint(&sn, &w, &s, &dm);
      b_snapshot_ms.Add(sn);
      b_write_ms.Add(w);
      b_save_ms.Add(s);
      b_delta_ms.Add(dm);
    }
    proc.reset();
    SLUICE_CHECK((*store)->Close().ok());
    store->reset();
    const std::string db_dir = (*backend)->TaskDir("sessions1m-0");
    auto t0 = Steady::now();
    SLUICE_CHECK((*ckpts)->RestoreLatest(db_dir).ok());
    b_restore_files = SecondsSince(t0);
    t0 = Steady::now();
    SLUICE_CHECK((*delta_ckpts)->RestoreLatest(db_dir + "-from-deltas").ok());
    b_restore_deltas = SecondsSince(t0);
    t0 = Steady::now();
    auto reopened = (*backend)->OpenTask("sessions1m-0", /*wipe=*/false);
    SLUICE_CHECK(reopened.ok());
    b_open_db = SecondsSince(t0);
    t0 = Steady::now();
    engine::TaskProcessor restored(plan, clock, sink);
    SLUICE_CHECK(restored.Restore(**reopened).ok());
    b_processor_restore = SecondsSince(t0);
    SLUICE_CHECK(restored.open_windows() == static_cast<size_t>(cfg.keys));
  }
  fs::remove_all(dir);

  std::printf(
      "\n| checkpoint | n | stall: longest pause of the task thread, p50 / p99 / max "
      "ms | barrier p50 / p99 ms | encoding step p50 / p99 ms | commit (background) p50 / "
      "p99 / max ms |\n|---|---:|---:|---:|---:|---:|\n");
  std::printf("| first (full: %lld keys), encoded at once | 1 | %.1f | – | – | %.1f |\n",
              static_cast<long long>(cfg.keys), full_ms, full_commit_ms);
  std::printf(
      "| incremental (%lld events / ~%lld dirty keys each) | %zu | %.2f / %.2f / %.2f | "
      "%.3f / %.3f | %.2f / %.2f | %.1f / %.1f / %.1f |\n",
      static_cast<long long>(cfg.delta_events), static_cast<long long>(cfg.delta_events),
      stall_ms.size(), stall_ms.Quantile(0.5), stall_ms.Quantile(0.99), stall_ms.Max(),
      barrier_ms.Quantile(0.5), barrier_ms.Quantile(0.99), step_ms.Quantile(0.5),
      step_ms.Quantile(0.99), commit_ms.Quantile(0.5), commit_ms.Quantile(0.99), commit_ms.Max());
  std::printf(
      "\nThe task thread pauses for the barrier (Task::BeginCheckpoint: position, "
      "watermark, the list of changed keys; seal the delivery generation) and then for "
      "steps of encoding the changed keys (AdvanceCheckpoint, 1 ms budget each, between "
      "batches of 1000 records; a key about to change is encoded first). The commit "
      "(wait for acknowledgements, RocksDB write, backup) runs on the background thread "
      "while the task processes the next records.\n");
  std::printf(
      "\nWhere the time goes (B: the same steps on TaskProcessor + RocksDbStateStore + "
      "CheckpointStore):\n\n| step | full: ms | incremental p50 ms | incremental p99 ms "
      "|\n|---|---:|---:|---:|\n");
  std::printf(
      "| TaskProcessor::Snapshot (encode the dirty keys into a WriteBatch; barrier) | "
      "%.1f | %.2f | %.2f |\n",
      b_full_snapshot, b_snapshot_ms.Quantile(0.5), b_snapshot_ms.Quantile(0.99));
  std::printf("| RocksDbStateStore::Write (one WriteBatch; commit) | %.1f | %.1f | %.1f |\n",
              b_full_write, b_write_ms.Quantile(0.5), b_write_ms.Quantile(0.99));
  std::printf(
      "| CheckpointStore::Save (memtable flush + BackupEngine copy + fsync + purge; commit) | "
      "%.1f | %.1f | %.1f |\n",
      b_full_save, b_save_ms.Quantile(0.5), b_save_ms.Quantile(0.99));
  std::printf(
      "| CheckpointStore::SaveChanges (delta: the batch in one fsynced file; what the worker "
      "commits) | %.1f | %.1f | %.1f |\n",
      b_full_delta, b_delta_ms.Quantile(0.5), b_delta_ms.Quantile(0.99));
  std::printf("\nSizes after the run: task RocksDB %.1f MB, checkpoint store %.1f MB (3 kept).\n",
              static_cast<double>(state_bytes) / 1e6, static_cast<double>(ckpt_bytes) / 1e6);
  std::printf("\n| recovery with %lld keys | seconds |\n|---|---:|\n",
              static_cast<long long>(cfg.keys));
  std::printf("| Task::Open from the checkpoint store (A, total) | %.2f |\n", open_s);
  std::printf("| - CheckpointStore::RestoreLatest (copy + verify files) (B) | %.2f |\n",
              b_restore_files);
  std::printf(
      "| - the same from the delta store (its newest full checkpoint, made in the "
      "background, and the deltas after it) (B) | %.2f |\n",
      b_restore_deltas);
  std::printf("| - StateBackend::OpenTask (open RocksDB) (B) | %.2f |\n", b_open_db);
  std::printf(
      "| - TaskProcessor::Restore (scan all keys, rebuild maps and timers) (B) | %.2f "
      "|\n",
      b_processor_restore);
  std::printf("| replay of the %lld records after the checkpoint (A) | %.2f (%.0f events/s) |\n",
              static_cast<long long>(cfg.replay_events), replay_s,
              static_cast<double>(cfg.replay_events) / replay_s);
  std::printf("| ready + replayed | %.2f |\n", open_s + replay_s);
  std::printf(
      "\n(Restored at offset %lld with %zu open windows; a fresh Task::Open with no "
      "checkpoint took %.3f s.)\n",
      static_cast<long long>(restored_offset), restored_windows, fresh_open_s);
  std::fflush(stdout);
}

// ==== 3b. Checkpoint of the throughput job (tumbling count) =======================

// The tumbling job of scenario 1 on one Task, fed N generator events directly
// (no Kafka input; its window results do go to the broker, so the
// checkpoint's wait for sink acknowledgements is included), then checkpointed;
// twice, so the second one shows the steady state of a checkpoint interval.
void RunTumblingCheckpoint(const Config& cfg) {
  const int64_t n = cfg.tumbling_ckpt_events;
  std::printf("\n## 3b. Checkpoint of the tumbling job after %lld events\n\n",
              static_cast<long long>(n));
  tools::GeneratorOptions g;
  g.kind = tools::EventKind::kPayments;
  g.seed = 11;
  g.users = cfg.users;
  tools::EventGenerator gen(g);
  std::vector<std::string> payloads, keys;
  payloads.reserve(static_cast<size_t>(2 * n));
  keys.reserve(static_cast<size_t>(2 * n));
  std::string one;
  for (int64_t i = 0; i < 2 * n; ++i) {
    gen.Next(&one);
    payloads.push_back(one);
    keys.push_back(gen.last_key());
  }
  std::vector<engine::SourceRecord> records;
  records.reserve(payloads.size());
  for (size_t i = 0; i < payloads.size(); ++i) {
    records.push_back({payloads[i], keys[i], {"e2e-ckpt-tumbling", 0, static_cast<int64_t>(i)}});
  }
  const fs::path dir = fs::path(cfg.work_dir) / "checkpoint-tumbling";
  fs::remove_all(dir);
  ManualClock clock(1'700'000'000'000);
  auto backend = worker::StateBackend::Open((dir / "state").string(), worker::StateOptions{});
  SLUICE_CHECK(backend.ok());
  auto producer = kafka::KafkaProducer::Create(cfg.bootstrap);
  SLUICE_CHECK(producer.ok());
  worker::TaskDeliveries deliveries;
  TimedBackground background;
  worker::JobContext ctx;
  ctx.background = background.Executor();
  proto::JobSpec spec = BenchJob("tumbling-ckpt", "e2e-ckpt-tumbling");
  spec.mutable_window()->set_tumbling_ms(60'000);
  *spec.add_aggregates() = Agg("events", F::COUNT);
  ctx.plan = Compile(spec);
  ctx.clock = &clock;
  worker::KafkaIoConfig io_config;
  io_config.producer = producer->get();
  io_config.state = backend->get();
  io_config.checkpoint_uri = "file://" + fs::absolute(dir / "checkpoints").string();
  worker::KafkaWorkerIo io(io_config);
  ctx.io = &io;
  auto task = worker::Task::Open(ctx, 0, 1, &deliveries);
  SLUICE_CHECK(task.ok()) << task.status().ToString();
  std::printf(
      "| interval | events | processing s | window results produced | in flight at "
      "the barrier | barrier (stall) ms | commit (background) ms |\n"
      "|---|---:|---:|---:|---:|---:|---:|\n");
  for (int k = 0; k < 2; ++k) {
    const int64_t results_before = (*task)->processor().counters().window_results;
    const auto t0 = Steady::now();
    for (int64_t i = k * n; i < (k + 1) * n; i += 1000) {
      (*task)->Process(std::span<const engine::SourceRecord>(records).subspan(
          static_cast<size_t>(i), static_cast<size_t>(std::min<int64_t>(1000, (k + 1) * n - i))));
    }
    const double proc_s = SecondsSince(t0);
    const int64_t in_flight = (*task)->in_flight();
    const auto c0 = Steady::now();
    Status st = (*task)->BeginCheckpoint(clock.NowMillis(), 120'000);
    const double barrier_ms = Ms(c0, Steady::now());
    SLUICE_CHECK(st.ok()) << st.ToString();
    AwaitCheckpoint(**task);
    std::printf(
        "| %s | %lld | %.2f | %lld | %lld | %.1f | %.0f |\n", k == 0 ? "first" : "second",
        static_cast<long long>(n), proc_s,
        static_cast<long long>((*task)->processor().counters().window_results - results_before),
        static_cast<long long>(in_flight), barrier_ms, background.TakeCommits().Max());
    std::fflush(stdout);
  }
  std::printf("\n(Open windows at the end: %zu.)\n", (*task)->processor().open_windows());
  task->reset();

  // The same on the components, to split the time (no sink: nothing to wait for).
  class NullSink final : public engine::RecordSink {
   public:
    void Emit(engine::OutputStream, std::string_view, std::string_view) override {}
  } sink;
  auto store = (*backend)->OpenTask("tumbling-b", /*wipe=*/true);
  SLUICE_CHECK(store.ok());
  auto ckpts = worker::CheckpointStore::Open(
      "file://" + fs::absolute(dir / "checkpoints-b").string(), "tumbling-ckpt", 0, 3);
  SLUICE_CHECK(ckpts.ok());
  engine::TaskProcessor proc(ctx.plan, clock, sink);
  std::printf(
      "\n| interval (components) | TaskProcessor::Checkpoint ms | CheckpointStore::Save ms "
      "| RocksDB after, MB |\n|---|---:|---:|---:|\n");
  for (int k = 0; k < 2; ++k) {
    for (int64_t i = k * n; i < (k + 1) * n; i += 1000) {
      proc.ProcessBatch(std::span<const engine::SourceRecord>(records).subspan(
          static_cast<size_t>(i), static_cast<size_t>(std::min<int64_t>(1000, (k + 1) * n - i))));
    }
    const auto a = Steady::now();
    SLUICE_CHECK(proc.Checkpoint(**store).ok());
    const auto b = Steady::now();
    worker::CheckpointMeta meta;
    meta.job = "tumbling-ckpt";
    meta.partition = 0;
    meta.next_offset = proc.next_offset();
    meta.epoch = 1;
    SLUICE_CHECK((*ckpts)->Save(**store, meta).ok());
    const auto c = Steady::now();
    std::printf("| %s | %.0f | %.0f | %.1f |\n", k == 0 ? "first" : "second", Ms(a, b), Ms(b, c),
                static_cast<double>(DirBytes((*store)->dir())) / 1e6);
    std::fflush(stdout);
  }
  store->reset();
  fs::remove_all(dir);
}

}  // namespace

int Main(int argc, char** argv) {
  CLI::App app{
      "sluice-e2e-bench: end-to-end benchmarks of the worker data plane against a "
      "running sluice-devbroker or Apache Kafka. See bench/run_e2e_bench.sh."};
  Config cfg;
  std::vector<std::string> scenarios;
  app.add_option("--bootstrap", cfg.bootstrap, "Broker bootstrap address")->required();
  app.add_option("--control", cfg.control,
                 "sluice-devbroker control address (create-topic); without it the broker is "
                 "taken for Apache Kafka and topics are made through the admin API");
  app.add_option("--scenario", scenarios, "throughput, latency, checkpoint (default: all)")
      ->delimiter(',')
      ->check(CLI::IsMember({"all", "throughput", "latency", "checkpoint"}));
  app.add_option("--work-dir", cfg.work_dir, "Scratch directory for state and checkpoints")
      ->capture_default_str();
  app.add_option("--fraud-job", cfg.fraud_job, "The fraud job file")->capture_default_str();
  app.add_option("--users", cfg.users, "Generator users")->capture_default_str();
  app.add_option("--rounds", cfg.rounds, "Throughput rounds")->capture_default_str();
  app.add_option("--event-time", cfg.event_time,
                 "Throughput input's event time: sparse (+10 ms per event) or live (+1 ms per "
                 "1000 events)")
      ->check(CLI::IsMember({"sparse", "live"}));
  app.add_option("--round-events", cfg.round_events,
                 "Events per round (must fit in the broker's ~5 MB per partition, lz4)")
      ->capture_default_str();
  std::vector<std::string> consumer_settings;
  app.add_option("--consumer-setting", consumer_settings,
                 "KEY=VALUE librdkafka setting for both throughput consumers (the raw loop and "
                 "the TaskHost's), e.g. queued.min.messages=1000000; repeatable")
      ->delimiter(',');
  app.add_option("--latency-rate", cfg.latency_rate, "Events/s for the latency run")
      ->capture_default_str();
  app.add_option("--latency-seconds", cfg.latency_seconds, "Measured seconds")
      ->capture_default_str();
  app.add_option("--latency-warmup", cfg.latency_warmup_s, "Warm-up seconds")
      ->capture_default_str();
  app.add_option("--latency-threads", cfg.latency_threads, "Task threads for the latency run")
      ->capture_default_str();
  app.add_option("--low-threshold", cfg.low_threshold, "low_threshold rule: amount > X")
      ->capture_default_str();
  app.add_option("--keys", cfg.keys, "Distinct keys for the checkpoint benchmark")
      ->capture_default_str();
  app.add_option("--deltas", cfg.deltas, "Incremental checkpoints")->capture_default_str();
  app.add_option("--delta-events", cfg.delta_events, "Events between incremental checkpoints")
      ->capture_default_str();
  app.add_option("--replay-events", cfg.replay_events, "Events after the last checkpoint")
      ->capture_default_str();
  app.add_option("--tumbling-checkpoint-events", cfg.tumbling_ckpt_events,
                 "Events per checkpoint interval in the tumbling-job checkpoint run")
      ->capture_default_str();
  app.add_option("--latency-users", cfg.latency_users,
                 "Generator users for the latency run (payments per user and 5 minutes set how "
                 "often the velocity rule fires)")
      ->capture_default_str();
  app.add_option("--delivery", cfg.delivery,
                 "Override the jobs' delivery: exactly_once or at_least_once")
      ->check(CLI::IsMember({"exactly_once", "at_least_once"}));
  app.add_option("--checkpoint-interval-ms", cfg.checkpoint_interval_ms,
                 "Override the jobs' checkpoint interval (ms)")
      ->check(CLI::Range(int64_t{1}, int64_t{300'000}));
  CLI11_PARSE(app, argc, argv);
  for (const std::string& kv : consumer_settings) {
    const size_t eq = kv.find('=');
    if (eq == std::string::npos || eq == 0) {
      std::fprintf(stderr, "--consumer-setting: expected KEY=VALUE, got '%s'\n", kv.c_str());
      return 2;
    }
    cfg.consumer_settings[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  auto wanted = [&](const std::string& s) {
    return scenarios.empty() ||
           std::find(scenarios.begin(), scenarios.end(), "all") != scenarios.end() ||
           std::find(scenarios.begin(), scenarios.end(), s) != scenarios.end();
  };
  spdlog::set_level(
      (std::getenv("SLUICE_BENCH_DEBUG")
           ? spdlog::level::debug
           : spdlog::level::err));  // kafka_settings given to the producer warn (CONFWARN)
  fs::create_directories(cfg.work_dir);

  std::printf("# sluice-e2e-bench\n\n");
  std::printf("- cpu: %s, %u logical cores visible\n", CpuModel().c_str(),
              std::thread::hardware_concurrency());
#ifdef NDEBUG
  std::printf("- build: optimized, assertions off\n");
#else
  std::printf("- build: ASSERTIONS ON (not a Release build)\n");
#endif
  if (cfg.control.empty()) {
    std::printf("- broker: Apache Kafka at %s (client librdkafka %s)\n", cfg.bootstrap.c_str(),
                rd_kafka_version_str());
  } else {
    std::printf("- broker: sluice-devbroker at %s (librdkafka %s mock)\n", cfg.bootstrap.c_str(),
                rd_kafka_version_str());
  }
  std::fflush(stdout);
  if (wanted("throughput")) RunThroughput(cfg);
  if (wanted("latency")) {
    RunLatency(cfg,
               "consumers as configured by the worker (fetch.wait.max.ms 500, librdkafka's "
               "default)");
    Config fast = cfg;
    fast.consumer_settings["fetch.wait.max.ms"] = "5";
    RunLatency(fast, "every consumer (worker, alert reader, baseline) with fetch.wait.max.ms=5");
    Config low = fast;
    low.latency_linger_ms = "0";
    RunLatency(low,
               "fetch.wait.max.ms=5, and linger.ms=0 on the event producer and the worker's "
               "producer");
    if (cfg.latency_rate > 5000) {
      fast.latency_rate = 5000;
      RunLatency(fast, "fetch.wait.max.ms=5, input at 5000 events/s (shows the Poll batch wait)");
    }
  }
  if (wanted("checkpoint")) RunCheckpoint(cfg);
  if (wanted("checkpoint")) RunTumblingCheckpoint(cfg);
  return 0;
}

}  // namespace sluice::bench

int main(int argc, char** argv) { return sluice::bench::Main(argc, argv); }
