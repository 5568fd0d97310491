#pragma once

// EventGenerator: deterministic synthetic events for demos, tests and
// benchmarks. Payments (user_id, amount, country, status, ts, transaction_id)
// with injected fraud patterns, or clickstream events (user_id, page, ts,
// amount on checkout) in sessions. The same seed gives the same events.
//
// Event time starts at `start_ms` and advances by `step_ms` per event on
// average; users follow a skewed (Zipf-like) distribution.

#include <algorithm>
#include <cstdint>
#include <map>
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
  // Share of events whose time is moved back by `late_ms` (late for a job
  // with less out-of-orderness).
  double late_share = 0;
  int64_t late_ms = 600'000;
  // Payments: one in `fraud_every` events starts a fraud pattern (0: never).
  // Pattern events are never out of order, late or malformed.
  int fraud_every = 0;
};

// An alert the fraud job (examples/jobs/fraud.yaml) must raise for an
// injected pattern: `rule` for `key` at one of the events `transaction_ids`.
struct ExpectedAlert {
  std::string rule;
  std::string key;
  std::vector<std::string> transaction_ids;
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
  // Moves event time forward to `now_ms` (for live streams, with step_ms 0).
  void SyncTime(int64_t now_ms) { time_ = std::max(time_, now_ms); }
  // Alerts the injected patterns must raise, in order; TakeExpected clears.
  std::vector<ExpectedAlert> TakeExpected() { return std::move(expected_); }

 private:
  int PickUser();
  void Payment(std::string* out, int user, int64_t ts, double amount, const std::string& country);
  // Whether `country` is new for `user` within 30 days before `ts`.
  bool NewCountry(int user, const std::string& country, int64_t ts) const;
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
  std::string fraud_country_;
  ExpectedAlert pending_;
  std::vector<ExpectedAlert> expected_;
  // Payments: the last time each user paid from each country.
  std::vector<std::map<std::string, int64_t>> countries_seen_;
  // Clickstream: a session in progress per generator.
  std::vector<int> session_page_;
};

}  // namespace sluice::tools
