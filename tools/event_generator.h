#pragma once

// EventGenerator: deterministic synthetic events for demos, tests and
// benchmarks. Payments (user_id, amount, country, status, ts, transaction_id)
// with injected fraud patterns, or clickstream events (user_id, page, ts,
// amount on checkout) in sessions. The same seed gives the same events.
//
// Event time starts at `start_ms` and advances by `step_ms` per event on
// average; users follow a skewed (Zipf-like) distribution.

#include <cstdint>
#include <random>
#include <string>
#include <vector>

namespace sluice::tools {

enum class EventKind { kPayments, kClicks };

struct GeneratorOptions {
  EventKind kind = EventKind::kPayments;
  uint64_t seed = 1;
  int64_t start_ms = 1'700'000'000'000;
  int64_t step_ms = 10;  // mean event-time gap between consecutive events
  int users = 1000;
  // Share of events whose time is moved back by up to `disorder_ms`.
  double out_of_order_share = 0;
  int64_t disorder_ms = 0;
  // Share of records that are not valid events (bad JSON, missing fields).
  double malformed_share = 0;
  // Payments: one in `fraud_every` events starts a fraud pattern (0: never).
  int fraud_every = 0;
};

class EventGenerator {
 public:
  explicit EventGenerator(const GeneratorOptions& options);

  // Appends the next record to `out` (cleared first) and returns its event
  // time. Returns the nominal time for malformed records.
  int64_t Next(std::string* out);
  // The Kafka key of the record last produced (the user id).
  const std::string& last_key() const { return key_; }
  int64_t now_ms() const { return time_; }

 private:
  int PickUser();
  void Payment(std::string* out, int user, int64_t ts, double amount, const char* country);
  void Click(std::string* out, int user, int64_t ts);

  GeneratorOptions opts_;
  std::mt19937_64 rng_;
  int64_t time_;
  uint64_t seq_ = 0;
  std::string key_;
  // A fraud pattern in progress: remaining events for one user.
  int fraud_user_ = -1;
  int fraud_left_ = 0;
  int fraud_kind_ = 0;
  // Clickstream: a session in progress per generator.
  std::vector<int> session_page_;
};

}  // namespace sluice::tools
