// Rule jobs: rules without a window alert on arrival; rolling rules see each
// event once the watermark reaches it, with the key's events in (t - size, t].

#include <catch2/catch.hpp>

#include "worker/engine/testing.h"

namespace sluice::engine {
namespace {

using testing::Agg;
using testing::BaseSpec;
using testing::Event;
using testing::Field;
using testing::Harness;
using testing::IntField;

constexpr int64_t T = 1'700'000'000'000;
constexpr int64_t kSec = 1'000;

proto::RuleSpec Rule(const std::string& name, const std::string& when, int64_t rolling_ms = 0) {
  proto::RuleSpec r;
  r.set_name(name);
  r.set_when(when);
  if (rolling_ms > 0) r.mutable_window()->set_rolling_ms(rolling_ms);
  return r;
}

proto::JobSpec FraudSpec() {
  proto::JobSpec spec = BaseSpec("fraud");
  *spec.add_rules() = Rule("large_amount", "amount > 5000");
  proto::RuleSpec velocity = Rule("velocity", "n > 3", 300 * kSec);
  *velocity.add_aggregates() = Agg("n", proto::AggregateSpec::COUNT);
  *spec.add_rules() = velocity;
  proto::RuleSpec country = Rule("new_country", "n > 1 && new_value(country)", 30LL * 86400 * kSec);
  *country.add_aggregates() = Agg("n", proto::AggregateSpec::COUNT);
  *spec.add_rules() = country;
  proto::RuleSpec burst = Rule("burst_spend", "total > 10000", 3600 * kSec);
  *burst.add_aggregates() = Agg("total", proto::AggregateSpec::SUM, "amount");
  *spec.add_rules() = burst;
  return spec;
}

std::string Pay(int64_t t, double amount, const std::string& country,
                const std::string& user = "u1") {
  char buf[128];
  std::snprintf(buf, sizeof(buf), "\"amount\":%g,\"country\":\"%s\"", amount, country.c_str());
  return Event(user, t, buf);
}

std::vector<std::string> Summaries(const std::vector<std::string>& alerts,
                                   const std::string& agg_field = "") {
  std::vector<std::string> out;
  for (const std::string& a : alerts) {
    std::string s = Field(a, "rule") + "@" + std::to_string(IntField(a, "event_time") - T);
    for (const char* f : {"n", "total"}) {
      std::string v = Field(a, f);
      if (v != "<missing>") s += " " + std::string(f) + "=" + v;
    }
    out.push_back(s);
  }
  (void)agg_field;
  return out;
}

TEST_CASE("the fraud rules alert at the right events") {
  Harness h(FraudSpec());
  h.Feed({Pay(T + 0, 100, "DE"), Pay(T + 60 * kSec, 100, "DE"), Pay(T + 120 * kSec, 100, "DE"),
          Pay(T + 180 * kSec, 100, "DE"), Pay(T + 200 * kSec, 6000, "FR"),
          Pay(T + 400 * kSec, 5000, "DE")});
  h.task().Drain();
  REQUIRE(Summaries(h.Output()) == std::vector<std::string>{
                                       "large_amount@200000",
                                       "velocity@180000 n=4",
                                       "velocity@200000 n=5",
                                       "new_country@200000 n=5",
                                       "velocity@400000 n=4",
                                       "burst_spend@400000 total=11400",
                                   });
}

TEST_CASE("an alert carries the event and its source position") {
  Harness h(FraudSpec());
  h.Feed(Pay(T, 9000, "DE"));
  auto out = h.Output();
  REQUIRE(out.size() == 1);
  REQUIRE(out[0].substr(41) ==
          "\"job\":\"fraud\",\"rule\":\"large_amount\",\"key\":\"u1\",\"event_time\":" +
              std::to_string(T) + ",\"event\":" + Pay(T, 9000, "DE") +
              ",\"source\":{\"topic\":\"events\",\"partition\":0,\"offset\":0}}");
}

TEST_CASE("rolling windows exclude events exactly a window older") {
  proto::JobSpec spec = BaseSpec();
  proto::RuleSpec r = Rule("pair", "n >= 2", 10 * kSec);
  *r.add_aggregates() = Agg("n", proto::AggregateSpec::COUNT);
  *spec.add_rules() = r;
  Harness h(spec);
  h.Feed({Event("u1", T), Event("u1", T + 10 * kSec), Event("u1", T + 19 * kSec)});
  h.task().Drain();
  // T+10s does not see T (exactly 10 s older); T+19s sees T+10s.
  REQUIRE(Summaries(h.Output()) == std::vector<std::string>{"pair@19000 n=2"});
}

TEST_CASE("keys do not see each other's events") {
  proto::JobSpec spec = BaseSpec();
  proto::RuleSpec r = Rule("pair", "n >= 2", 10 * kSec);
  *r.add_aggregates() = Agg("n", proto::AggregateSpec::COUNT);
  *spec.add_rules() = r;
  Harness h(spec);
  h.Feed({Event("u1", T), Event("u2", T + 1), Event("u1", T + 2)});
  h.task().Drain();
  auto out = h.Output();
  REQUIRE(out.size() == 1);
  REQUIRE(Field(out[0], "key") == "u1");
  REQUIRE(IntField(out[0], "n") == 2);
}

TEST_CASE("a late event goes to the late topic; rules without a window still see it") {
  Harness h(FraudSpec());
  h.Feed({Pay(T + 100 * kSec, 10, "DE"), Pay(T + 200 * kSec, 10, "DE")});
  h.Feed(Pay(T + 50 * kSec, 7000, "FR"));  // behind the watermark
  REQUIRE(h.Late().size() == 1);
  REQUIRE(Summaries(h.Output()) == std::vector<std::string>{"large_amount@50000"});
  h.task().Drain();
  // The late event is in no rolling window: T+200s sees only T+100s.
  REQUIRE(h.Output().size() == 1);
  const TaskCounters& c = h.task().counters();
  REQUIRE(c.consumed == 3);
  REQUIRE(c.late == 1);
  REQUIRE(c.processed == 2);
}

TEST_CASE("new_value is true only for a value no other event in the window has") {
  proto::JobSpec spec = BaseSpec();
  proto::RuleSpec r = Rule("new_country", "new_value(country)", 60 * kSec);
  *spec.add_rules() = r;
  Harness h(spec);
  h.Feed({Pay(T, 1, "DE"), Pay(T + 1 * kSec, 1, "DE"), Pay(T + 2 * kSec, 1, "FR"),
          Event("u1", T + 3 * kSec), Pay(T + 70 * kSec, 1, "DE")});
  h.task().Drain();
  // T: first DE; T+2s: FR; the event without a country is never new;
  // T+70s: the DE at T and T+1s are out of the window.
  REQUIRE(Summaries(h.Output()) ==
          std::vector<std::string>{"new_country@0", "new_country@2000", "new_country@70000"});
}

TEST_CASE("rolling aggregates: min, max, avg, count_distinct, first, last") {
  proto::JobSpec spec = BaseSpec();
  proto::RuleSpec r = Rule("stats", "n == 3", 60 * kSec);
  using F = proto::AggregateSpec;
  *r.add_aggregates() = Agg("n", F::COUNT);
  *r.add_aggregates() = Agg("lo", F::MIN, "amount");
  *r.add_aggregates() = Agg("hi", F::MAX, "amount");
  *r.add_aggregates() = Agg("mean", F::AVG, "amount");
  *r.add_aggregates() = Agg("countries", F::COUNT_DISTINCT, "country");
  *r.add_aggregates() = Agg("first_country", F::FIRST, "country");
  *r.add_aggregates() = Agg("last_country", F::LAST, "country");
  *spec.add_rules() = r;
  Harness h(spec);
  h.Feed({Pay(T, 30, "DE"), Pay(T + 1, 10, "FR"), Pay(T + 2, 20, "DE")});
  h.task().Drain();
  auto out = h.Output();
  REQUIRE(out.size() == 1);
  REQUIRE(Field(out[0], "lo") == "10");
  REQUIRE(Field(out[0], "hi") == "30");
  REQUIRE(Field(out[0], "mean") == "20");
  REQUIRE(Field(out[0], "countries") == "2");
  REQUIRE(Field(out[0], "first_country") == "DE");
  REQUIRE(Field(out[0], "last_country") == "DE");
}

TEST_CASE("rolling rules evaluate in event-time order, not arrival order") {
  proto::JobSpec spec = BaseSpec();
  spec.mutable_source()->set_max_out_of_orderness_ms(10 * kSec);
  proto::RuleSpec r = Rule("seq", "true", 60 * kSec);
  *r.add_aggregates() = Agg("n", proto::AggregateSpec::COUNT);
  *spec.add_rules() = r;
  Harness h(spec);
  h.Feed({Event("u1", T + 5 * kSec), Event("u1", T + 1 * kSec), Event("u1", T + 3 * kSec)});
  h.task().Drain();
  REQUIRE(Summaries(h.Output()) ==
          std::vector<std::string>{"seq@1000 n=1", "seq@3000 n=2", "seq@5000 n=3"});
}

proto::SelectSpec Select(const std::string& name, const std::string& expr) {
  proto::SelectSpec s;
  s.set_name(name);
  s.set_expr(expr);
  return s;
}

// What an alert holds between its event_time and its event.
std::string ValuesOf(const std::string& alert) {
  const size_t from = alert.find(',', alert.find("\"event_time\":"));
  const size_t to = alert.find(",\"event\":{");
  if (from == std::string::npos || to == std::string::npos || to < from) return "<none>";
  return alert.substr(from, to - from);
}

TEST_CASE("an alert carries its select values in the order of the select") {
  proto::JobSpec spec = BaseSpec("fraud");
  proto::RuleSpec r = Rule("large_amount", "amount > 5000");
  *r.add_select() = Select("price_eur", "amount * 0.908");
  *r.add_select() = Select("country", "country");
  *r.add_select() = Select("very_large", "amount > 9000");
  *r.add_select() = Select("tag", "\"a\\\"b\"");
  *spec.add_rules() = r;
  Harness h(spec);
  h.Feed(Pay(T, 6000, "D\\\"E"));
  auto out = h.Output();
  REQUIRE(out.size() == 1);
  REQUIRE(out[0].substr(41) ==
          "\"job\":\"fraud\",\"rule\":\"large_amount\",\"key\":\"u1\",\"event_time\":" +
              std::to_string(T) +
              ",\"price_eur\":5448,\"country\":\"D\\\"E\",\"very_large\":false,"
              "\"tag\":\"a\\\"b\",\"event\":" +
              Pay(T, 6000, "D\\\"E") +
              ",\"source\":{\"topic\":\"events\",\"partition\":0,\"offset\":0}}");
}

TEST_CASE("a rolling rule's select reads its aggregates and the event") {
  proto::JobSpec spec = BaseSpec("fraud");
  proto::RuleSpec r = Rule("burst_spend", "total > 100", 3600 * kSec);
  *r.add_aggregates() = Agg("n", proto::AggregateSpec::COUNT);
  *r.add_aggregates() = Agg("total", proto::AggregateSpec::SUM, "amount");
  *r.add_select() = Select("total_eur", "total * 0.5");
  *r.add_select() = Select("last_eur", "amount * 0.5");
  *r.add_select() = Select("per_payment", "total / n");
  *spec.add_rules() = r;
  Harness h(spec);
  h.Feed({Pay(T, 60, "DE"), Pay(T + kSec, 90, "DE")});
  h.task().Drain();
  auto out = h.Output();
  REQUIRE(out.size() == 1);
  REQUIRE(ValuesOf(out[0]) ==
          ",\"n\":2,\"total\":150,\"total_eur\":75,\"last_eur\":45,"
          "\"per_payment\":75");
}

TEST_CASE("a select of a missing field or a null operand is null") {
  proto::JobSpec spec = BaseSpec();
  proto::RuleSpec r = Rule("all", "true");
  *r.add_select() = Select("missing", "merchant.id");
  *r.add_select() = Select("scaled", "amount * 2");
  *r.add_select() = Select("quotient", "amount / 0");
  *spec.add_rules() = r;
  Harness h(spec);
  h.Feed({Event("u1", T), Pay(T + 1, 3, "DE")});
  auto out = h.Output();
  REQUIRE(out.size() == 2);
  REQUIRE(ValuesOf(out[0]) == ",\"missing\":null,\"scaled\":null,\"quotient\":null");
  REQUIRE(ValuesOf(out[1]) == ",\"missing\":null,\"scaled\":6,\"quotient\":null");
}

TEST_CASE("strings lower() makes in two selects of one alert are both kept") {
  proto::JobSpec spec = BaseSpec();
  for (int64_t rolling_ms : {int64_t{0}, 60 * kSec}) {
    proto::RuleSpec r = Rule(rolling_ms > 0 ? "rolling" : "plain", "true", rolling_ms);
    *r.add_select() = Select("country", "lower(country)");
    *r.add_select() = Select("city", "lower(city)");
    *r.add_select() = Select("same", "lower(country) == lower(city)");
    *spec.add_rules() = r;
  }
  Harness h(spec);
  h.Feed(Event("u1", T, "\"country\":\"DE\",\"city\":\"FR\""));
  h.task().Drain();
  auto out = h.Output();
  REQUIRE(out.size() == 2);
  for (const std::string& alert : out) {
    INFO(alert);
    REQUIRE(ValuesOf(alert) == ",\"country\":\"de\",\"city\":\"fr\",\"same\":false");
  }
}

}  // namespace
}  // namespace sluice::engine
