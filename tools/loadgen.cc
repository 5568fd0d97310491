// sluice-loadgen: streams synthetic payments or clickstream events into Kafka,
// keyed by user, at a set rate or as fast as possible. Deterministic with
// --seed. With --expect it also writes the alerts the injected fraud patterns
// must raise, one JSON object per line, so a run can be checked.

#include <CLI/CLI.hpp>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <thread>

#include "common/clock.h"
#include "common/stop_signals.h"
#include "kafka/kafka_client.h"
#include "tools/event_generator.h"
#include "worker/engine/json_writer.h"

int main(int argc, char** argv) {
  CLI::App app{
      "sluice-loadgen: streams synthetic events into Kafka, keyed by user_id: payments with "
      "injected fraud patterns (bursts, country switches, large amounts) or clickstream "
      "sessions, with set shares of out-of-order, late and malformed records. Event time is "
      "the wall clock. Deterministic for a given --seed."};
  std::string brokers = "127.0.0.1:9092", topic, kind = "payments", expect_file;
  double rate = 1000, out_of_order = 0.02, late = 0.005, malformed = 0.002;
  int64_t count = 0, disorder_ms = 3000;
  uint64_t seed = 1;
  int users = 10'000, fraud_every = 1000;
  app.add_option("--brokers", brokers, "Kafka bootstrap servers")->default_val(brokers);
  app.add_option("--topic", topic, "Topic to write to (default: payments or clicks)");
  app.add_option("--kind", kind, "payments or clicks")
      ->check(CLI::IsMember({"payments", "clicks"}))
      ->default_val(kind);
  app.add_option("--rate", rate, "Events per second; 0: as fast as possible")
      ->default_val(rate)
      ->check(CLI::Range(0.0, 1e9));
  app.add_option("--count", count, "Stop after this many events; 0: run until SIGTERM")
      ->default_val(0);
  app.add_option("--seed", seed, "Random seed")->default_val(1);
  app.add_option("--users", users, "Number of users (skewed: low ids are hot)")
      ->default_val(users)
      ->check(CLI::Range(1, 100'000'000));
  app.add_option("--out-of-order", out_of_order, "Share of events up to --disorder-ms early")
      ->default_val(out_of_order)
      ->check(CLI::Range(0.0, 1.0));
  app.add_option("--disorder-ms", disorder_ms, "How far out of order")->default_val(disorder_ms);
  app.add_option("--late", late, "Share of events 10 minutes behind (late for most jobs)")
      ->default_val(late)
      ->check(CLI::Range(0.0, 1.0));
  app.add_option("--malformed", malformed, "Share of malformed records")
      ->default_val(malformed)
      ->check(CLI::Range(0.0, 1.0));
  app.add_option("--fraud-every", fraud_every,
                 "Payments: start a fraud pattern every N events; 0: none")
      ->default_val(fraud_every);
  app.add_option("--expect", expect_file,
                 "Write the alerts the injected patterns must raise here (JSON lines)");
  app.failure_message(CLI::FailureMessage::help);
  CLI11_PARSE(app, argc, argv);
  if (topic.empty()) topic = kind;

  auto producer = sluice::kafka::KafkaProducer::Create(brokers);
  if (!producer.ok()) {
    std::cerr << "sluice-loadgen: " << producer.status().message() << "\n";
    return 1;
  }
  std::ofstream expect;
  if (!expect_file.empty()) {
    expect.open(expect_file);
    if (!expect) {
      std::cerr << "sluice-loadgen: cannot write " << expect_file << "\n";
      return 1;
    }
  }
  const std::atomic<bool>& stop = sluice::InstallStopSignals();

  sluice::SystemClock clock;
  sluice::tools::GeneratorOptions opts;
  opts.kind =
      kind == "clicks" ? sluice::tools::EventKind::kClicks : sluice::tools::EventKind::kPayments;
  opts.seed = seed;
  opts.users = users;
  opts.step_ms = 0;  // event time follows the wall clock
  opts.start_ms = clock.NowMillis();
  opts.out_of_order_share = out_of_order;
  opts.disorder_ms = disorder_ms;
  opts.late_share = late;
  opts.malformed_share = malformed;
  opts.fraud_every = kind == "payments" ? fraud_every : 0;
  sluice::tools::EventGenerator gen(opts);

  sluice::kafka::DeliveryTracker tracker;
  std::string payload, line;
  const auto start = std::chrono::steady_clock::now();
  auto last_progress = start;
  int64_t sent = 0, expected = 0;
  while (!stop.load() && (count == 0 || sent < count)) {
    if (rate > 0) {
      const auto due = start + std::chrono::duration<double>(static_cast<double>(sent) / rate);
      if (due > std::chrono::steady_clock::now()) std::this_thread::sleep_until(due);
    }
    gen.SyncTime(clock.NowMillis());
    gen.Next(&payload);
    sluice::Status s = (*producer)->Produce(topic, gen.last_key(), payload, &tracker);
    if (!s.ok()) {
      std::cerr << "sluice-loadgen: " << s.message() << "\n";
      return 1;
    }
    ++sent;
    for (const sluice::tools::ExpectedAlert& e : gen.TakeExpected()) {
      ++expected;
      if (!expect.is_open()) continue;
      line.clear();
      sluice::engine::JsonWriter w(&line);
      w.BeginObject();
      w.Key("rule");
      w.String(e.rule);
      w.Key("key");
      w.String(e.key);
      w.Key("transaction_ids");
      w.BeginArray();
      for (const std::string& t : e.transaction_ids) w.String(t);
      w.EndArray();
      w.EndObject();
      expect << line << "\n";
    }
    const auto now = std::chrono::steady_clock::now();
    if (now - last_progress >= std::chrono::seconds(5)) {
      last_progress = now;
      const double secs = std::chrono::duration<double>(now - start).count();
      std::fprintf(stderr, "loadgen: %lld events to %s (%.0f/s), %lld fraud patterns\n",
                   static_cast<long long>(sent), topic.c_str(), static_cast<double>(sent) / secs,
                   static_cast<long long>(expected));
    }
  }
  sluice::Status flushed = (*producer)->Flush(60'000);
  expect.close();
  const int64_t failed = tracker.failed.load();
  std::fprintf(stderr, "loadgen: done: %lld events to %s, %lld fraud patterns, %lld failed\n",
               static_cast<long long>(sent), topic.c_str(), static_cast<long long>(expected),
               static_cast<long long>(failed));
  return flushed.ok() && failed == 0 ? 0 : 1;
}
