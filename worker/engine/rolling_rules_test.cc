// Rolling rules keep running aggregates over their windows (RollingRules).
// Each incremental aggregate is checked against a rescan of the window (an
// Accumulator fed the window's events from the newest to the oldest, then
// the event itself, as the rules computed it before) on random streams with
// expiry, equal event times, out-of-order events within the bound, late
// events, and a checkpoint and restore midway.

#include "worker/engine/rolling_rules.h"

#include <algorithm>
#include <catch2/catch.hpp>
#include <climits>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "worker/engine/aggregate.h"
#include "worker/engine/json_writer.h"
#include "worker/engine/state_store.h"
#include "worker/engine/testing.h"

namespace sluice::engine {
namespace {

using testing::Agg;
using testing::BaseSpec;
using testing::Harness;
using F = proto::AggregateSpec;

constexpr int64_t T = 1'700'000'000'000;

// One generated event, with the values the engine decodes from it.
struct GenEvent {
  int64_t time = 0;
  int64_t offset = 0;
  std::string user;
  OwnedValue x;        // mixed types: numbers (decimals, integers, -0, huge), strings, bools, null
  OwnedValue cents;    // decimals with two digits, or missing
  OwnedValue integer;  // small integers, or missing
  OwnedValue country;  // a few strings, or missing
  std::string payload;
};

void AppendField(std::string* out, const char* name, const std::string& text) {
  if (text.empty()) return;  // missing
  out->append(",\"").append(name).append("\":").append(text);
}

// Events for `users` users whose times advance by 0 to `step` ms (equal
// times are common) and arrive up to `jitter` ms out of order; some further
// behind, which are late when the jitter exceeds the bound.
std::vector<GenEvent> Generate(uint64_t seed, int n, int users, int64_t step, int64_t jitter) {
  std::mt19937_64 rng(seed);
  std::vector<GenEvent> out;
  int64_t t = T;
  for (int i = 0; i < n; ++i) {
    GenEvent e;
    t += static_cast<int64_t>(rng() % static_cast<uint64_t>(step + 1));
    e.time = t - static_cast<int64_t>(rng() % static_cast<uint64_t>(jitter + 1));
    e.offset = i;
    e.user = "u" + std::to_string(rng() % static_cast<uint64_t>(users));
    std::string x, cents, integer, country;
    char buf[64];
    switch (rng() % 10) {
      case 0:
        x = "null";
        e.x.type = ValueType::kNull;
        break;
      case 1:
        break;  // missing
      case 2:
        x = "\"s" + std::to_string(rng() % 4) + "\"";
        e.x.type = ValueType::kString;
        e.x.str = x.substr(1, x.size() - 2);
        break;
      case 3:
        x = (rng() % 2) ? "true" : "false";
        e.x.type = ValueType::kBool;
        e.x.boolean = x == "true";
        break;
      case 4:
        x = (rng() % 2) ? "-0.0" : "0";
        e.x.type = ValueType::kNumber;
        e.x.number = x == "-0.0" ? -0.0 : 0.0;
        break;
      case 5:
        x = (rng() % 2) ? "1e16" : "-1e16";
        e.x.type = ValueType::kNumber;
        e.x.number = std::strtod(x.c_str(), nullptr);
        break;
      default:
        std::snprintf(buf, sizeof(buf), "%.2f", static_cast<double>(rng() % 2000) / 100 - 5);
        x = buf;
        e.x.type = ValueType::kNumber;
        e.x.number = std::strtod(buf, nullptr);
        break;
    }
    if (rng() % 8 != 0) {
      std::snprintf(buf, sizeof(buf), "%.2f", static_cast<double>(rng() % 1'000'000) / 100);
      cents = buf;
      e.cents.type = ValueType::kNumber;
      e.cents.number = std::strtod(buf, nullptr);
    }
    if (rng() % 8 != 0) {
      const int64_t k = static_cast<int64_t>(rng() % 2001) - 1000;
      integer = std::to_string(k);
      e.integer.type = ValueType::kNumber;
      e.integer.number = static_cast<double>(k);
    }
    if (rng() % 6 != 0) {
      static const char* kCountries[] = {"DE", "FR", "US", "IT"};
      const std::string c = kCountries[rng() % 4];
      country = "\"" + c + "\"";
      e.country.type = ValueType::kString;
      e.country.str = c;
    }
    e.payload = "{\"user\":\"" + e.user + "\",\"ts\":" + std::to_string(e.time);
    AppendField(&e.payload, "x", x);
    AppendField(&e.payload, "cents", cents);
    AppendField(&e.payload, "integer", integer);
    AppendField(&e.payload, "country", country);
    e.payload += "}";
    out.push_back(std::move(e));
  }
  return out;
}

// A rolling rule with one aggregate `a` of `fn` over `field`.
struct RuleCase {
  std::string name;
  AggFn fn;
  F::Function spec_fn;
  std::string field;  // empty: count() / duration()
  int64_t size_ms;
  std::string when;  // over `a`; "true" alerts for every event
};

const OwnedValue& FieldOf(const GenEvent& e, const std::string& field) {
  static const OwnedValue kTrue = [] {
    OwnedValue v;
    v.type = ValueType::kBool;
    v.boolean = true;
    return v;
  }();
  if (field == "x") return e.x;
  if (field == "cents") return e.cents;
  if (field == "integer") return e.integer;
  if (field == "country") return e.country;
  return kTrue;
}

std::string Json(const Value& v) {
  std::string out;
  JsonWriter w(&out);
  WriteValue(w, v);
  return out;
}

// The text of top-level field `key` of an alert (values here hold no commas).
std::string RawField(const std::string& json, const std::string& key) {
  const std::string needle = "\"" + key + "\":";
  const size_t at = json.find(needle);
  if (at == std::string::npos) return "<missing>";
  const size_t from = at + needle.size();
  return json.substr(from, json.find_first_of(",}", from) - from);
}

// What the rules give for `events` (with out-of-orderness `ooo`), by rescan:
// one line per alert, "rule@offset a=<value>", in the order they fire.
std::vector<std::string> Expected(const std::vector<GenEvent>& events, int64_t ooo,
                                  const std::vector<RuleCase>& rules) {
  // Late: at or behind the watermark the events before it left.
  std::vector<const GenEvent*> live;
  int64_t max_time = INT64_MIN;
  for (const GenEvent& e : events) {
    const int64_t watermark = max_time == INT64_MIN ? INT64_MIN : max_time - ooo - 1;
    if (e.time > watermark) live.push_back(&e);
    max_time = std::max(max_time, e.time);
  }
  std::stable_sort(live.begin(), live.end(), [](const GenEvent* a, const GenEvent* b) {
    return a->time != b->time ? a->time < b->time : a->offset < b->offset;
  });
  std::vector<std::string> out;
  std::map<std::string, std::vector<const GenEvent*>> seen;  // by user, in order
  EvalScratch scratch;
  for (const GenEvent* e : live) {
    std::vector<const GenEvent*>& before = seen[e->user];
    for (const RuleCase& rule : rules) {
      Accumulator acc(rule.fn);
      bool new_value = !e->country.view().is_null();
      for (size_t i = before.size(); i-- > 0;) {
        const GenEvent& w = *before[i];
        if (w.time <= e->time - rule.size_ms) break;
        acc.Add(FieldOf(w, rule.field).view(), w.time, w.offset);
        if (ValuesEqual(w.country.view(), e->country.view())) new_value = false;
      }
      acc.Add(FieldOf(*e, rule.field).view(), e->time, e->offset);
      const Value result = acc.Result();
      bool fire = rule.when == "true";
      if (rule.when == "new_value(country)") fire = new_value;
      if (rule.when.rfind("a > ", 0) == 0) {
        const double c = std::strtod(rule.when.c_str() + 4, nullptr);
        fire = result.is_number() && result.number > c;
      }
      if (fire) {
        out.push_back(rule.name + "@" + std::to_string(e->offset) + " a=" + Json(result));
      }
    }
    before.push_back(e);
  }
  return out;
}

std::vector<std::string> Actual(const std::vector<std::string>& alerts) {
  std::vector<std::string> out;
  for (const std::string& a : alerts) {
    out.push_back(RawField(a, "rule").substr(1, RawField(a, "rule").size() - 2) + "@" +
                  RawField(a, "offset") + " a=" + RawField(a, "a"));
  }
  return out;
}

// Runs `rules` over random streams, once straight through and once with a
// checkpoint and restore midway, and compares with the rescan.
void CheckAgainstRescan(std::vector<RuleCase> rules, uint64_t seed) {
  for (size_t i = 0; i < rules.size(); ++i) rules[i].name = "r" + std::to_string(i);
  const int64_t ooo = 2'000;
  for (int users : {1, 7}) {
    const std::vector<GenEvent> events =
        Generate(seed + static_cast<uint64_t>(users), 1500, users, 400, 3'000);
    proto::JobSpec spec = BaseSpec("rolling");
    spec.mutable_source()->set_max_out_of_orderness_ms(ooo);
    for (const RuleCase& rc : rules) {
      proto::RuleSpec* r = spec.add_rules();
      r->set_name(rc.name);
      r->set_when(rc.when);
      r->mutable_window()->set_rolling_ms(rc.size_ms);
      *r->add_aggregates() = Agg("a", rc.spec_fn, rc.field);
    }
    const std::vector<std::string> expected = Expected(events, ooo, rules);
    REQUIRE(expected.size() > 100);
    for (bool restore : {false, true}) {
      Harness h(spec);
      InMemoryStateStore store;
      for (size_t i = 0; i < events.size(); ++i) {
        h.Feed(events[i].payload);
        if (restore && (i == events.size() / 3 || i == events.size() / 2)) {
          REQUIRE(h.task().Checkpoint(store).ok());
          h.RestoreFrom(store);
        }
      }
      h.task().Drain();
      CAPTURE(users, restore);
      const std::vector<std::string> actual = Actual(h.Output());
      REQUIRE(actual.size() == expected.size());
      for (size_t i = 0; i < actual.size(); ++i) {
        CAPTURE(i);
        REQUIRE(actual[i] == expected[i]);
      }
    }
  }
}

// Window sizes: a short one (a few events), one of about the out-of-order
// bound, and one that holds most of a user's events.
std::vector<RuleCase> Cases(const std::string& base, AggFn fn, F::Function spec_fn,
                            const std::string& field, const std::string& when = "true") {
  std::vector<RuleCase> out;
  for (int64_t size : {1'000, 3'000, 60'000}) {
    out.push_back({base + std::to_string(size), fn, spec_fn, field, size, when});
  }
  return out;
}

TEST_CASE("rolling count() and count(f) match a rescan") {
  auto rules = Cases("count", AggFn::kCount, F::COUNT, "");
  auto of_field = Cases("count_x", AggFn::kCount, F::COUNT, "x");
  rules.insert(rules.end(), of_field.begin(), of_field.end());
  CheckAgainstRescan(rules, 1);
}

TEST_CASE("rolling sum matches a rescan bit for bit") {
  std::vector<RuleCase> rules;
  for (const char* field : {"x", "cents", "integer"}) {
    auto c = Cases(std::string("sum_") + field, AggFn::kSum, F::SUM, field);
    rules.insert(rules.end(), c.begin(), c.end());
  }
  CheckAgainstRescan(rules, 2);
}

TEST_CASE("rolling sum judged against thresholds alerts as a rescan does") {
  // Thresholds near the sums the streams reach, so that the running sum's
  // interval often holds one and the window is summed again.
  std::vector<RuleCase> rules;
  for (const char* when : {"a > 0", "a > 25000", "a > 100000", "a > 30.07"}) {
    auto c = Cases(std::string("cents_") + when, AggFn::kSum, F::SUM, "cents", when);
    rules.insert(rules.end(), c.begin(), c.end());
  }
  for (const char* when : {"a > 0", "a > 1000", "a > 1e15"}) {
    auto c = Cases(std::string("x_") + when, AggFn::kSum, F::SUM, "x", when);
    rules.insert(rules.end(), c.begin(), c.end());
  }
  CheckAgainstRescan(rules, 3);
}

TEST_CASE("rolling avg matches a rescan bit for bit") {
  std::vector<RuleCase> rules;
  for (const char* field : {"x", "cents", "integer"}) {
    auto c = Cases(std::string("avg_") + field, AggFn::kAvg, F::AVG, field);
    rules.insert(rules.end(), c.begin(), c.end());
    auto t = Cases(std::string("avg_t_") + field, AggFn::kAvg, F::AVG, field, "a > 5000");
    rules.insert(rules.end(), t.begin(), t.end());
  }
  CheckAgainstRescan(rules, 4);
}

TEST_CASE("rolling min and max match a rescan, ties included") {
  std::vector<RuleCase> rules;
  for (const char* field : {"x", "integer", "country"}) {
    auto mn = Cases(std::string("min_") + field, AggFn::kMin, F::MIN, field);
    auto mx = Cases(std::string("max_") + field, AggFn::kMax, F::MAX, field);
    rules.insert(rules.end(), mn.begin(), mn.end());
    rules.insert(rules.end(), mx.begin(), mx.end());
  }
  CheckAgainstRescan(rules, 5);
}

TEST_CASE("rolling first, last and duration match a rescan") {
  std::vector<RuleCase> rules;
  for (const char* field : {"x", "country"}) {
    auto f = Cases(std::string("first_") + field, AggFn::kFirst, F::FIRST, field);
    auto l = Cases(std::string("last_") + field, AggFn::kLast, F::LAST, field);
    rules.insert(rules.end(), f.begin(), f.end());
    rules.insert(rules.end(), l.begin(), l.end());
  }
  auto d = Cases("duration", AggFn::kDuration, F::DURATION, "");
  rules.insert(rules.end(), d.begin(), d.end());
  CheckAgainstRescan(rules, 6);
}

TEST_CASE("rolling count_distinct matches a rescan") {
  std::vector<RuleCase> rules;
  for (const char* field : {"x", "country", "integer"}) {
    auto c =
        Cases(std::string("distinct_") + field, AggFn::kCountDistinct, F::COUNT_DISTINCT, field);
    rules.insert(rules.end(), c.begin(), c.end());
  }
  CheckAgainstRescan(rules, 7);
}

TEST_CASE("rolling new_value matches a rescan") {
  auto rules = Cases("new_country", AggFn::kCount, F::COUNT, "", "new_value(country)");
  CheckAgainstRescan(rules, 8);
}

TEST_CASE("a running sum is exact for integers and its interval holds the rescan's sum") {
  std::mt19937_64 rng(9);
  for (int round = 0; round < 200; ++round) {
    const bool integers = round % 2 == 0;
    RunningSum sum;
    std::vector<double> window;  // oldest first
    for (int step = 0; step < 300; ++step) {
      if (!window.empty() && rng() % 3 == 0) {
        sum.Remove(window.front());
        window.erase(window.begin());
        continue;
      }
      double v = integers
                     ? static_cast<double>(static_cast<int64_t>(rng() % 200'001) - 100'000)
                     : static_cast<double>(static_cast<int64_t>(rng() % 2'000'001)) / 100 - 10'000;
      if (!integers && rng() % 50 == 0) v = 1e17;
      const Value current = Value::Number(static_cast<double>(rng() % 1000) / (integers ? 1 : 10));
      double scan = 0;
      for (size_t i = window.size(); i-- > 0;) scan += window[i];
      scan += current.number;
      double exact = 0, lo = 0, hi = 0;
      if (sum.Exact(current, &exact)) {
        REQUIRE(std::memcmp(&exact, &scan, sizeof(double)) == 0);
      } else {
        REQUIRE(!integers);
        REQUIRE(sum.Interval(current, &lo, &hi));
        REQUIRE(lo <= scan);
        REQUIRE(scan <= hi);
      }
      sum.Add(v);
      window.push_back(v);
    }
  }
}

TEST_CASE("Expr tells when an aggregate is only compared with constants") {
  struct Scope : ExprScope {
    std::optional<ExprRef> Resolve(std::string_view name) override {
      if (name == "total") return ExprRef{ExprRef::Kind::kAggregate, 0};
      if (name == "n") return ExprRef{ExprRef::Kind::kAggregate, 1};
      return ExprRef{ExprRef::Kind::kField, 0};
    }
    std::optional<uint32_t> ResolveNewValue(std::string_view) override { return 0; }
  } scope;
  auto check = [&](const char* text, bool only, std::vector<double> want = {}) {
    auto e = Expr::Parse(text, scope);
    REQUIRE(e.ok());
    std::vector<double> got;
    CAPTURE(text);
    REQUIRE(e->ReadsAggregateOnlyAgainstConstants(0, &got) == only);
    if (only) REQUIRE(got == want);
  };
  check("total > 10000", true, {10000});
  check("n > 1 && 500 <= total || total == 7", true, {500, 7});
  check("n > 3", true);
  check("total > amount", false);
  check("total * 2 > 10", false);
  check("abs(total) > 10", false);
  check("total in [1, 2]", false);
  check("total > \"x\"", false);
}

TEST_CASE("queued rule events come out in (time, offset) order once the watermark reaches them") {
  PendingQueue q;
  const Value amount[] = {Value::Number(5), Value::String("eur")};
  q.Push(T + 20, 7, "u1", "{\"a\":1}", amount);
  q.Push(T + 10, 9, "u2", "{}", {});
  q.Push(T + 10, 3, "u3", "{}", {});
  q.Push(T + 30, 1, "u1", "{}", {});
  REQUIRE(q.size() == 4);
  const std::vector<const PendingEvent*> order = q.InOrder();
  REQUIRE(order.size() == 4);
  CHECK(order[0]->offset == 3);
  CHECK(order[1]->offset == 9);
  CHECK(order[2]->offset == 7);
  CHECK(order[3]->offset == 1);

  REQUIRE(q.Due(T + 9) == nullptr);
  std::vector<int64_t> offsets;
  while (const PendingEvent* p = q.Due(T + 20)) {
    offsets.push_back(p->offset);
    if (p->offset == 7) {
      // A copy of what was queued.
      CHECK(p->key == "u1");
      CHECK(p->payload == "{\"a\":1}");
      REQUIRE(p->fields.size() == 2);
      CHECK(p->fields[0].view().number == 5);
      CHECK(p->fields[1].view().str == "eur");
    }
    q.Pop();
  }
  REQUIRE(offsets == std::vector<int64_t>{3, 9, 7});
  REQUIRE(q.size() == 1);
  // Slots taken out are reused; the order holds.
  q.Push(T + 25, 2, "u4", "{}", {});
  q.Push(T + 40, 0, "u5", "{}", {});
  offsets.clear();
  while (const PendingEvent* p = q.Due(T + 100)) {
    offsets.push_back(p->offset);
    q.Pop();
  }
  REQUIRE(offsets == std::vector<int64_t>{2, 1, 0});
  REQUIRE(q.size() == 0);
  REQUIRE(q.InOrder().empty());
}

}  // namespace
}  // namespace sluice::engine
