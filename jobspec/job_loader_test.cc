#include "jobspec/job_loader.h"

#include <catch2/catch.hpp>
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

namespace sluice::jobspec {
namespace {

using proto::AggregateSpec;
using proto::JobSpec;
using proto::WindowSpec;

constexpr int64_t kSecond = 1000;
constexpr int64_t kMinute = 60 * kSecond;
constexpr int64_t kHour = 60 * kMinute;
constexpr int64_t kDay = 24 * kHour;

JobSpec MustParse(std::string_view yaml, std::string_view file = "job.yaml") {
  Result<JobSpec> spec = ParseJobYaml(yaml, file);
  INFO(spec.status().message());
  REQUIRE(spec.ok());
  return std::move(spec).value();
}

// The message of the error `yaml` must produce.
std::string ErrorOf(std::string_view yaml, std::string_view file = "job.yaml") {
  Result<JobSpec> spec = ParseJobYaml(yaml, file);
  REQUIRE_FALSE(spec.ok());
  REQUIRE(spec.status().code() == StatusCode::kInvalidArgument);
  return spec.status().message();
}

void RequireAggregate(const AggregateSpec& agg, std::string_view name, AggregateSpec::Function fn,
                      std::string_view field) {
  CHECK(agg.name() == name);
  CHECK(agg.function() == fn);
  CHECK(agg.field() == field);
}

// The two jobs of JOBS.md, put together as written there.
constexpr std::string_view kFraud =
    R"(name: fraud                      # [a-z0-9-], unique in the cluster
source:
  brokers: 127.0.0.1:9092
  topic: payments
  format: json
  key: user_id
  event_time: ts
  max_out_of_orderness: 5s
  idle_timeout: 30s
  max_future: 1h
  max_past: 7d
filter: amount > 0 && status == "approved"    # optional, evaluated before windows
sinks:
  output: fraud-alerts
  late: payments-late
  dead_letter: payments-dlq
checkpoint_interval: 10s
rules:
  - name: large_amount
    when: amount > 5000
  - name: velocity                       # more than 3 payments in 5 minutes
    window: { rolling: 5m }
    aggregate: { n: count() }
    when: n > 3
  - name: new_country                    # a country this user has not paid from in 30 days
    window: { rolling: 30d }
    aggregate: { n: count() }
    when: n > 1 && new_value(country)
  - name: burst_spend
    window: { rolling: 1h }
    aggregate: { total: sum(amount) }
    when: total > 10000
)";

constexpr std::string_view kSessions = R"(name: sessions
source:
  topic: clicks
  key: user_id
  event_time: ts
sinks:
  output: user-sessions
window: { session: 30m, allowed_lateness: 0s }   # or { tumbling: 1m } or { sliding: 10m, every: 1m }
aggregate:
  events: count()
  pages: count_distinct(page)
  first_page: first(page)
  last_page: last(page)
  revenue: sum(amount)
having: events >= 2                     # optional
)";

// A small valid window job; the error tests below change one line of it.
// Lines: 1 name, 2 source, 3 topic, 4 key, 5 event_time, 6 sinks, 7 output,
// 8 window, 9 aggregate.
constexpr std::string_view kMinimal = R"(name: pv
source:
  topic: clicks
  key: page
  event_time: ts
sinks:
  output: pv-out
window: { tumbling: 1m }
aggregate: { views: count() }
)";

TEST_CASE("the fraud job of JOBS.md loads field by field", "[jobspec]") {
  const JobSpec spec = MustParse(kFraud, "fraud.yaml");
  CHECK(spec.name() == "fraud");
  CHECK(spec.source().brokers() == "127.0.0.1:9092");
  CHECK(spec.source().topic() == "payments");
  CHECK(spec.source().format() == "json");
  CHECK(spec.source().key() == "user_id");
  CHECK(spec.source().event_time() == "ts");
  CHECK(spec.source().max_out_of_orderness_ms() == 5 * kSecond);
  CHECK(spec.source().idle_timeout_ms() == 30 * kSecond);
  CHECK(spec.source().max_future_ms() == kHour);
  CHECK(spec.source().max_past_ms() == 7 * kDay);
  CHECK(spec.filter() == "amount > 0 && status == \"approved\"");
  CHECK(spec.sinks().output() == "fraud-alerts");
  CHECK(spec.sinks().late() == "payments-late");
  CHECK(spec.sinks().dead_letter() == "payments-dlq");
  CHECK(spec.checkpoint_interval_ms() == 10 * kSecond);
  CHECK(spec.source_yaml() == kFraud);

  CHECK_FALSE(spec.has_window());
  CHECK(spec.aggregates().empty());
  CHECK(spec.having().empty());
  REQUIRE(spec.rules_size() == 4);

  const proto::RuleSpec& large = spec.rules(0);
  CHECK(large.name() == "large_amount");
  CHECK(large.when() == "amount > 5000");
  CHECK_FALSE(large.has_window());
  CHECK(large.aggregates().empty());

  const proto::RuleSpec& velocity = spec.rules(1);
  CHECK(velocity.name() == "velocity");
  CHECK(velocity.when() == "n > 3");
  CHECK(velocity.window().kind_case() == WindowSpec::kRollingMs);
  CHECK(velocity.window().rolling_ms() == 5 * kMinute);
  CHECK(velocity.window().allowed_lateness_ms() == 0);
  REQUIRE(velocity.aggregates_size() == 1);
  RequireAggregate(velocity.aggregates(0), "n", AggregateSpec::COUNT, "");

  const proto::RuleSpec& country = spec.rules(2);
  CHECK(country.name() == "new_country");
  CHECK(country.when() == "n > 1 && new_value(country)");
  CHECK(country.window().rolling_ms() == 30 * kDay);
  REQUIRE(country.aggregates_size() == 1);
  RequireAggregate(country.aggregates(0), "n", AggregateSpec::COUNT, "");

  const proto::RuleSpec& burst = spec.rules(3);
  CHECK(burst.name() == "burst_spend");
  CHECK(burst.when() == "total > 10000");
  CHECK(burst.window().rolling_ms() == kHour);
  REQUIRE(burst.aggregates_size() == 1);
  RequireAggregate(burst.aggregates(0), "total", AggregateSpec::SUM, "amount");
}

TEST_CASE("the sessions job of JOBS.md loads field by field", "[jobspec]") {
  const JobSpec spec = MustParse(kSessions, "sessions.yaml");
  CHECK(spec.name() == "sessions");
  CHECK(spec.source().topic() == "clicks");
  CHECK(spec.source().key() == "user_id");
  CHECK(spec.source().event_time() == "ts");
  CHECK(spec.sinks().output() == "user-sessions");
  CHECK(spec.rules().empty());
  CHECK(spec.window().kind_case() == WindowSpec::kSessionGapMs);
  CHECK(spec.window().session_gap_ms() == 30 * kMinute);
  CHECK(spec.window().allowed_lateness_ms() == 0);
  REQUIRE(spec.aggregates_size() == 5);
  // Document order is kept: it is the order of the output fields.
  RequireAggregate(spec.aggregates(0), "events", AggregateSpec::COUNT, "");
  RequireAggregate(spec.aggregates(1), "pages", AggregateSpec::COUNT_DISTINCT, "page");
  RequireAggregate(spec.aggregates(2), "first_page", AggregateSpec::FIRST, "page");
  RequireAggregate(spec.aggregates(3), "last_page", AggregateSpec::LAST, "page");
  RequireAggregate(spec.aggregates(4), "revenue", AggregateSpec::SUM, "amount");
  CHECK(spec.having() == "events >= 2");
}

TEST_CASE("defaults fill what a job leaves out", "[jobspec]") {
  const JobSpec spec = MustParse(kMinimal);
  CHECK(spec.source().brokers().empty());
  CHECK(spec.source().format() == "json");
  CHECK(spec.source().max_out_of_orderness_ms() == 0);
  CHECK(spec.source().idle_timeout_ms() == 30 * kSecond);
  CHECK(spec.source().max_future_ms() == kHour);
  CHECK(spec.source().max_past_ms() == 0);
  CHECK(spec.filter().empty());
  CHECK(spec.sinks().late() == "pv-late");
  CHECK(spec.sinks().dead_letter() == "pv-dlq");
  CHECK(spec.sinks().markers() == "sluice-pv-markers");
  CHECK(spec.delivery() == JobSpec::AT_LEAST_ONCE);
  CHECK(spec.checkpoint_interval_ms() == 10 * kSecond);
  CHECK(spec.window().tumbling_ms() == kMinute);
  CHECK(spec.window().allowed_lateness_ms() == 0);
  CHECK(spec.having().empty());
  REQUIRE(spec.aggregates_size() == 1);
  RequireAggregate(spec.aggregates(0), "views", AggregateSpec::COUNT, "");
}

TEST_CASE("0s disables idle_timeout and max_future", "[jobspec]") {
  const JobSpec spec = MustParse(R"(name: pv
source:
  topic: clicks
  key: page
  event_time: ts
  idle_timeout: 0s
  max_future: 0s
  max_past: 0s
sinks: { output: pv-out }
window: { tumbling: 1m }
aggregate: { views: count() }
)");
  CHECK(spec.source().idle_timeout_ms() == 0);
  CHECK(spec.source().max_future_ms() == 0);
  CHECK(spec.source().max_past_ms() == 0);
}

TEST_CASE("delivery chooses exactly_once or at_least_once", "[jobspec]") {
  const std::string job = R"(name: pv
source: { topic: clicks, key: page, event_time: ts }
sinks: { output: pv-out, markers: pv-txn }
window: { tumbling: 1m }
aggregate: { views: count() }
)";
  JobSpec spec = MustParse(job + "delivery: exactly_once\n");
  CHECK(spec.delivery() == JobSpec::EXACTLY_ONCE);
  CHECK(spec.sinks().markers() == "pv-txn");
  spec = MustParse(job + "delivery: at_least_once\n");
  CHECK(spec.delivery() == JobSpec::AT_LEAST_ONCE);

  Result<JobSpec> bad = ParseJobYaml(job + "delivery: twice\n", "j.yaml");
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.status().message() ==
        "j.yaml:6: delivery: expected exactly_once or at_least_once, got 'twice'");
  bad = ParseJobYaml(job + "delivery: exactly_once\ncheckpoint_interval: 10m\n", "j.yaml");
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.status().message() ==
        "j.yaml:6: delivery: exactly_once keeps a transaction open for a checkpoint "
        "interval: checkpoint_interval must be at most 5m, got 10m");
  bad = ParseJobYaml(R"(name: pv
source: { topic: clicks, key: page, event_time: ts }
sinks: { output: pv-out, markers: clicks }
window: { tumbling: 1m }
aggregate: { views: count() }
)",
                     "j.yaml");
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.status().message().find("j.yaml:3: sinks.markers: 'clicks' is the source topic") == 0);
}

TEST_CASE("window kinds map onto WindowSpec", "[jobspec]") {
  auto with_window = [](std::string_view window) {
    std::string yaml(kMinimal);
    yaml.replace(yaml.find("window: { tumbling: 1m }"),
                 std::string_view("window: { tumbling: 1m }").size(), window);
    return MustParse(yaml);
  };
  SECTION("sliding") {
    const JobSpec spec = with_window("window: { sliding: 10m, every: 1m, allowed_lateness: 2m }");
    CHECK(spec.window().kind_case() == WindowSpec::kSliding);
    CHECK(spec.window().sliding().size_ms() == 10 * kMinute);
    CHECK(spec.window().sliding().every_ms() == kMinute);
    CHECK(spec.window().allowed_lateness_ms() == 2 * kMinute);
  }
  SECTION("sliding with every equal to the size") {
    const JobSpec spec = with_window("window: { sliding: 1m, every: 1m }");
    CHECK(spec.window().sliding().every_ms() == kMinute);
  }
  SECTION("tumbling in block style with lateness") {
    const JobSpec spec = with_window("window:\n  tumbling: 1h\n  allowed_lateness: 30s");
    CHECK(spec.window().tumbling_ms() == kHour);
    CHECK(spec.window().allowed_lateness_ms() == 30 * kSecond);
  }
}

TEST_CASE("every aggregate function parses", "[jobspec]") {
  const JobSpec spec = MustParse(R"(name: pv
source: { topic: clicks, key: page, event_time: ts }
sinks: { output: pv-out }
window: { tumbling: 1m }
aggregate:
  c: count()
  s: sum(amount)
  lo: min(amount)
  hi: max( amount )
  mean: avg(amount)
  users: count_distinct(user.id)
  f: first(page)
  l: last(page)
)");
  REQUIRE(spec.aggregates_size() == 8);
  RequireAggregate(spec.aggregates(0), "c", AggregateSpec::COUNT, "");
  RequireAggregate(spec.aggregates(1), "s", AggregateSpec::SUM, "amount");
  RequireAggregate(spec.aggregates(2), "lo", AggregateSpec::MIN, "amount");
  RequireAggregate(spec.aggregates(3), "hi", AggregateSpec::MAX, "amount");
  RequireAggregate(spec.aggregates(4), "mean", AggregateSpec::AVG, "amount");
  RequireAggregate(spec.aggregates(5), "users", AggregateSpec::COUNT_DISTINCT, "user.id");
  RequireAggregate(spec.aggregates(6), "f", AggregateSpec::FIRST, "page");
  RequireAggregate(spec.aggregates(7), "l", AggregateSpec::LAST, "page");
}

TEST_CASE("a rule window without aggregates is allowed", "[jobspec]") {
  const JobSpec spec = MustParse(R"(name: fraud
source: { topic: payments, key: user_id, event_time: ts }
sinks: { output: alerts }
rules:
  - name: new_country
    window: { rolling: 30d }
    when: new_value(country)
)");
  REQUIRE(spec.rules_size() == 1);
  CHECK(spec.rules(0).window().rolling_ms() == 30 * kDay);
  CHECK(spec.rules(0).aggregates().empty());
}

// ---- Structural errors: each with its file and line. ----

TEST_CASE("YAML syntax errors carry the line", "[jobspec][errors]") {
  const std::string msg = ErrorOf(R"(name: pv
source:
  topic: [clicks
  key: page
)",
                                  "pv.yaml");
  CHECK(msg.rfind("pv.yaml:", 0) == 0);
  CHECK(msg.find(": invalid YAML: ") != std::string::npos);
  const std::string msg2 = ErrorOf("name: pv\nsource: a\n  b: c\n", "pv.yaml");
  CHECK(msg2 == "pv.yaml:3: invalid YAML: illegal map value");
}

TEST_CASE("the document must be one mapping", "[jobspec][errors]") {
  CHECK(ErrorOf("") ==
        "job.yaml:1: expected a job: a mapping with name, source, sinks and "
        "either rules or window, got nothing");
  CHECK(ErrorOf("# just a comment\n- a\n- b\n") ==
        "job.yaml:2: expected a job: a mapping with name, source, sinks and "
        "either rules or window, got a list");
  CHECK(ErrorOf(std::string(kMinimal) + "---\nname: other\n") ==
        "job.yaml:11: a job file holds one YAML document, found another");
}

TEST_CASE("unknown keys are rejected at every level", "[jobspec][errors]") {
  CHECK(ErrorOf(std::string(kMinimal) + "windw: { tumbling: 1m }\n") ==
        "job.yaml:10: unknown key 'windw' (expected one of: name, source, "
        "dedup, filter, sinks, checkpoint_interval, delivery, rules, window, "
        "aggregate, having)");
  CHECK(ErrorOf(R"(name: pv
source:
  topic: clicks
  key: page
  evnt_time: ts
sinks: { output: pv-out }
window: { tumbling: 1m }
aggregate: { views: count() }
)") == "job.yaml:5: unknown key 'evnt_time' in source (expected one of: "
       "brokers, topic, format, key, event_time, max_out_of_orderness, "
       "idle_timeout, max_future, max_past, start, fields, max_record_bytes)");
  CHECK(ErrorOf(R"(name: pv
source: { topic: clicks, key: page, event_time: ts }
sinks:
  output: pv-out
  dead-letter: pv-dead
window: { tumbling: 1m }
aggregate: { views: count() }
)") == "job.yaml:5: unknown key 'dead-letter' in sinks (expected one of: "
       "output, late, dead_letter, markers)");
  CHECK(ErrorOf(R"(name: pv
source: { topic: clicks, key: page, event_time: ts }
sinks: { output: pv-out }
window: { tumbling: 1m,
          lateness: 1m }
aggregate: { views: count() }
)") == "job.yaml:5: unknown key 'lateness' in window (expected one of: "
       "tumbling, session, sliding, every, allowed_lateness)");
  CHECK(ErrorOf(R"(name: fraud
source: { topic: payments, key: user_id, event_time: ts }
sinks: { output: alerts }
rules:
  - name: large_amount
    when: amount > 5000
  - name: velocity
    when: n > 3
    aggregate: { n: count() }

    windw: { rolling: 5m }
)",
                "fraud.yaml") ==
        "fraud.yaml:11: unknown key 'windw' in rules[1] "
        "(expected one of: name, when, window, aggregate, select)");
  CHECK(ErrorOf(R"(name: fraud
source: { topic: payments, key: user_id, event_time: ts }
sinks: { output: alerts }
rules:
  - name: velocity
    window: { rolling: 5m, every: 1m }
    when: amount > 1
)") == "job.yaml:6: rules[0].window: a rule window can only be rolling, "
       "like { rolling: 5m }, got 'every'");
}

TEST_CASE("duplicate keys are rejected", "[jobspec][errors]") {
  CHECK(ErrorOf(std::string(kMinimal) + "name: pv2\n") == "job.yaml:10: duplicate key 'name'");
  CHECK(ErrorOf(R"(name: pv
source:
  topic: clicks
  key: page
  topic: views
  event_time: ts
sinks: { output: pv-out }
window: { tumbling: 1m }
aggregate: { views: count() }
)") == "job.yaml:5: duplicate key 'topic' in source");
}

TEST_CASE("missing required keys name their section", "[jobspec][errors]") {
  CHECK(ErrorOf(R"(# a page view counter
source: { topic: clicks, key: page, event_time: ts }
sinks: { output: pv-out }
window: { tumbling: 1m }
aggregate: { views: count() }
)") == "job.yaml:2: missing required key 'name'");
  CHECK(ErrorOf(R"(name: x
source:
  key: page
  event_time: ts
sinks: { output: pv-out }
window: { tumbling: 1m }
aggregate: { views: count() }
)",
                "x.yaml") == "x.yaml:2: missing required key 'topic' in source");
  CHECK(ErrorOf(R"(name: x
source:
  topic: clicks
  event_time: ts
sinks: { output: pv-out }
window: { tumbling: 1m }
aggregate: { views: count() }
)") == "job.yaml:2: missing required key 'key' in source");
  CHECK(ErrorOf(R"(name: x
source:
  topic: clicks
  key: page
sinks: { output: pv-out }
window: { tumbling: 1m }
aggregate: { views: count() }
)") == "job.yaml:2: missing required key 'event_time' in source");
  CHECK(ErrorOf(R"(name: x
source: { topic: clicks, key: page, event_time: ts }
window: { tumbling: 1m }
aggregate: { views: count() }
)") == "job.yaml:1: missing required key 'sinks'");
  CHECK(ErrorOf(R"(name: x
source: { topic: clicks, key: page, event_time: ts }
sinks:
  late: x-late
window: { tumbling: 1m }
aggregate: { views: count() }
)") == "job.yaml:3: missing required key 'output' in sinks");
  CHECK(ErrorOf(R"(name: x
source: { topic: clicks, key: page, event_time: ts }
sinks: { output: pv-out }
window: { tumbling: 1m }
)") == "job.yaml:1: missing required key 'aggregate' (a window job needs "
       "it)");
  CHECK(ErrorOf(R"(name: fraud
source: { topic: payments, key: user_id, event_time: ts }
sinks: { output: alerts }
rules:
  - name: large_amount
    when: amount > 5000
  - when: amount > 1
)") == "job.yaml:7: missing required key 'name' in rules[1]");
  CHECK(ErrorOf(R"(name: fraud
source: { topic: payments, key: user_id, event_time: ts }
sinks: { output: alerts }
rules:
  - name: large_amount
)") == "job.yaml:5: missing required key 'when' in rules[0]");
}

TEST_CASE("values of the wrong shape are rejected", "[jobspec][errors]") {
  CHECK(ErrorOf(R"(name: x
source: clicks
sinks: { output: pv-out }
window: { tumbling: 1m }
aggregate: { views: count() }
)") == "job.yaml:2: source: expected a mapping, got 'clicks'");
  CHECK(ErrorOf(R"(name: x
source: { topic: clicks, key: page, event_time: ts }
sinks: { output: pv-out }
window: { tumbling: 1m }
aggregate: { views: count() }
filter:
)") == "job.yaml:6: filter: expected an expression, got nothing");
  CHECK(ErrorOf(R"(name: x
source: { topic: [a, b], key: page, event_time: ts }
sinks: { output: pv-out }
window: { tumbling: 1m }
aggregate: { views: count() }
)") == "job.yaml:2: source.topic: expected a Kafka topic name, got a list");
  CHECK(ErrorOf(R"(name: x
source: { topic: clicks, key: page, event_time: ts }
sinks: { output: pv-out }
window: { tumbling: 1m }
aggregate: { views: count() }
having: !exists(x)
)") == "job.yaml:6: having: unexpected YAML tag '!exists(x)' (quote a value "
       "that starts with '!')");
  CHECK(ErrorOf(R"(name: fraud
source: { topic: payments, key: user_id, event_time: ts }
sinks: { output: alerts }
rules:
  large_amount: amount > 5000
)") == "job.yaml:4: rules: expected a list of rules, got a mapping");
  CHECK(ErrorOf(R"(name: fraud
source: { topic: payments, key: user_id, event_time: ts }
sinks: { output: alerts }
rules: []
)") == "job.yaml:4: rules: expected at least one rule");
}

TEST_CASE("names, topics and field paths are checked", "[jobspec][errors]") {
  CHECK(ErrorOf(R"(name: Page_Views
source: { topic: clicks, key: page, event_time: ts }
sinks: { output: pv-out }
window: { tumbling: 1m }
aggregate: { views: count() }
)") == "job.yaml:1: name: expected a job name of a-z, 0-9 and '-' (at most "
       "200), got 'Page_Views'");
  CHECK(ErrorOf(R"(name: pv
source: { topic: clicks, key: page, event_time: ts }
sinks:
  output: pv out
window: { tumbling: 1m }
aggregate: { views: count() }
)") == "job.yaml:4: sinks.output: expected a Kafka topic name (at most 249 "
       "of A-Z a-z 0-9 . _ -), got 'pv out'");
  CHECK(ErrorOf(R"(name: pv
source: { topic: clicks, key: user..id, event_time: ts }
sinks: { output: pv-out }
window: { tumbling: 1m }
aggregate: { views: count() }
)") == "job.yaml:2: source.key: expected a field path like user_id or "
       "user.id, got 'user..id'");
  CHECK(ErrorOf(R"(name: pv
source: { topic: clicks, key: page, event_time: ts, format: avro }
sinks: { output: pv-out }
window: { tumbling: 1m }
aggregate: { views: count() }
)") == "job.yaml:2: source.format: expected json (the only format), got "
       "'avro'");
  CHECK(ErrorOf(R"(name: pv
source: { topic: clicks, key: page, event_time: ts }
sinks:
  output: clicks
window: { tumbling: 1m }
aggregate: { views: count() }
)") == "job.yaml:4: sinks.output: 'clicks' is the source topic; a job must "
       "not write to the topic it reads");
}

TEST_CASE("bad durations name the key and the line", "[jobspec][errors]") {
  CHECK(ErrorOf(R"(name: fraud
source:
  brokers: 127.0.0.1:9092
  topic: payments
  key: user_id
  event_time: ts
  max_out_of_orderness: five
sinks: { output: alerts }
rules:
  - { name: large_amount, when: amount > 5000 }
)",
                "fraud.yaml") ==
        "fraud.yaml:7: source.max_out_of_orderness: expected a "
        "duration like 250ms, 5s, 30m, 1h or 7d, got 'five'");
  CHECK(ErrorOf(std::string(kMinimal) + "checkpoint_interval: 0s\n") ==
        "job.yaml:10: checkpoint_interval: must be longer than 0s");
  CHECK(ErrorOf(std::string(kMinimal) + "checkpoint_interval: 10\n") ==
        "job.yaml:10: checkpoint_interval: expected a duration like 250ms, "
        "5s, 30m, 1h or 7d, got '10'");
}

TEST_CASE("rules and window exclude each other", "[jobspec][errors]") {
  CHECK(ErrorOf(R"(name: fraud
source: { topic: payments, key: user_id, event_time: ts }
sinks: { output: alerts }
rules:
  - { name: large_amount, when: amount > 5000 }
window: { tumbling: 1m }
)") == "job.yaml:6: a job has either 'rules' or 'window', not both");
  CHECK(ErrorOf(R"(name: fraud
source: { topic: payments, key: user_id, event_time: ts }
sinks: { output: alerts }
)") == "job.yaml:1: a job needs either 'rules' or 'window' and 'aggregate'");
  CHECK(ErrorOf(R"(name: fraud
source: { topic: payments, key: user_id, event_time: ts }
sinks: { output: alerts }
rules:
  - { name: large_amount, when: amount > 5000 }
having: n > 1
)") == "job.yaml:6: having: only a window job has 'having'; a rule has "
       "'when'");
  CHECK(ErrorOf(R"(name: fraud
source: { topic: payments, key: user_id, event_time: ts }
sinks: { output: alerts }
rules:
  - { name: large_amount, when: amount > 5000 }
aggregate: { n: count() }
)") == "job.yaml:6: aggregate: a rule job has no job-level aggregate; put it "
       "in the rule that uses it");
  CHECK(ErrorOf(R"(name: pv
source: { topic: clicks, key: page, event_time: ts }
sinks: { output: pv-out }
aggregate: { views: count() }
)") == "job.yaml:1: missing required key 'window' (a job with 'aggregate' is "
       "a window job)");
}

TEST_CASE("window rules: kinds, sizes and every", "[jobspec][errors]") {
  auto window_error = [](std::string_view window) {
    std::string yaml(kMinimal);
    yaml.replace(yaml.find("window: { tumbling: 1m }"),
                 std::string_view("window: { tumbling: 1m }").size(), window);
    return ErrorOf(yaml);
  };
  CHECK(window_error("window: { rolling: 5m }") ==
        "job.yaml:8: window: a rolling window is for rules; a job window is "
        "tumbling, session or sliding");
  CHECK(window_error("window: { tumbling: 1m, session: 5m }") ==
        "job.yaml:8: window: expected only one of tumbling, session or "
        "sliding, got 'tumbling' and 'session'");
  CHECK(window_error("window: { allowed_lateness: 1m }") ==
        "job.yaml:8: window: expected one of tumbling, session or sliding, "
        "like { tumbling: 1m }");
  CHECK(window_error("window: { tumbling: 0s }") ==
        "job.yaml:8: window.tumbling: must be longer than 0s");
  CHECK(window_error("window: { session: 0m }") ==
        "job.yaml:8: window.session: must be longer than 0s");
  CHECK(window_error("window: { tumbling: 1m, every: 1m }") ==
        "job.yaml:8: window.every: only a sliding window has 'every'");
  CHECK(window_error("window: { sliding: 10m }") ==
        "job.yaml:8: missing required key 'every' in window (a sliding "
        "window needs it, like { sliding: 10m, every: 1m })");
  CHECK(window_error("window: { sliding: 10m, every: 0s }") ==
        "job.yaml:8: window.every: must be longer than 0s");
  CHECK(window_error("window:\n  sliding: 1m\n  every: 2m") ==
        "job.yaml:10: window.every: must not be longer than the window (1m), "
        "got 2m");
  CHECK(window_error("window: 1m") ==
        "job.yaml:8: window: expected a window like { tumbling: 1m }, "
        "{ session: 30m } or { sliding: 10m, every: 1m }, got '1m'");
}

TEST_CASE("rule windows may only be rolling", "[jobspec][errors]") {
  auto rule_error = [](std::string_view window) {
    return ErrorOf(std::string(R"(name: fraud
source: { topic: payments, key: user_id, event_time: ts }
sinks: { output: alerts }
rules:
  - name: velocity
)") + "    " + std::string(window) +
                   R"(
    aggregate: { n: count() }
    when: n > 3
)");
  };
  CHECK(rule_error("window: { tumbling: 5m }") ==
        "job.yaml:6: rules[0].window: a rule window can only be rolling, "
        "like { rolling: 5m }, got 'tumbling'");
  CHECK(rule_error("window: { rolling: 0s }") ==
        "job.yaml:6: rules[0].window.rolling: must be longer than 0s");
  CHECK(rule_error("window: { rolling: 5m, allowed_lateness: 1m }") ==
        "job.yaml:6: unknown key 'allowed_lateness' in rules[0].window "
        "(expected one of: rolling)");
  CHECK(rule_error("window: 5m") ==
        "job.yaml:6: rules[0].window: expected a rolling window like "
        "{ rolling: 5m }, got '5m'");
  CHECK(ErrorOf(R"(name: fraud
source: { topic: payments, key: user_id, event_time: ts }
sinks: { output: alerts }
rules:
  - name: velocity
    aggregate: { n: count() }
    when: n > 3
)") == "job.yaml:6: rules[0].aggregate: a rule aggregates over a window; add "
       "one like window: { rolling: 5m }");
}

TEST_CASE("rule names are unique", "[jobspec][errors]") {
  CHECK(ErrorOf(R"(name: fraud
source: { topic: payments, key: user_id, event_time: ts }
sinks: { output: alerts }
rules:
  - name: big
    when: amount > 5000
  - name: small
    when: amount < 1
  - name: big
    when: amount > 9000
)") == "job.yaml:9: rules[2].name: duplicate rule name 'big' (also "
       "rules[0])");
  CHECK(ErrorOf(R"(name: fraud
source: { topic: payments, key: user_id, event_time: ts }
sinks: { output: alerts }
rules:
  - name: big one
    when: amount > 5000
)") == "job.yaml:5: rules[0].name: expected a rule name of A-Z, a-z, 0-9, "
       "'_' and '-', got 'big one'");
}

TEST_CASE("aggregates: names and functions", "[jobspec][errors]") {
  auto aggregate_error = [](std::string_view entry) {
    return ErrorOf(std::string(R"(name: pv
source: { topic: clicks, key: page, event_time: ts }
sinks: { output: pv-out }
window: { tumbling: 1m }
aggregate:
  views: count()
)") + "  " + std::string(entry) +
                   "\n");
  };
  CHECK(aggregate_error("views: sum(amount)") ==
        "job.yaml:7: duplicate aggregate name 'views' in aggregate");
  CHECK(aggregate_error("total-spend: sum(amount)") ==
        "job.yaml:7: aggregate: aggregate name 'total-spend' is not an "
        "identifier (A-Z, a-z, 0-9 and '_', not starting with a digit)");
  CHECK(aggregate_error("1st: first(page)") ==
        "job.yaml:7: aggregate: aggregate name '1st' is not an identifier "
        "(A-Z, a-z, 0-9 and '_', not starting with a digit)");
  CHECK(aggregate_error("key: first(page)") ==
        "job.yaml:7: aggregate: aggregate name 'key' is taken by a field of "
        "every output record");
  CHECK(aggregate_error("in: first(page)") ==
        "job.yaml:7: aggregate: aggregate name 'in' is a word of the "
        "expression language");
  CHECK(aggregate_error("true: first(page)") ==
        "job.yaml:7: aggregate: aggregate name 'true' is a word of the "
        "expression language");
  CHECK(aggregate_error("m: median(amount)") ==
        "job.yaml:7: aggregate.m: unknown aggregate function 'median' "
        "(expected one of: count, sum, min, max, avg, count_distinct, first, "
        "last, duration)");
  CHECK(aggregate_error("d: duration(page)") ==
        "job.yaml:7: aggregate.d: duration() takes no field, got 'duration(page)'");
  CHECK(aggregate_error("s: sum()") ==
        "job.yaml:7: aggregate.s: sum() needs a field, like sum(amount)");
  const std::string expected_like =
      "expected an aggregate like count(), count(f), sum(f), min(f), max(f), avg(f), "
      "count_distinct(f), first(f), last(f) or duration(), got ";
  CHECK(aggregate_error("s: sum(amount") ==
        "job.yaml:7: aggregate.s: " + expected_like + "'sum(amount'");
  CHECK(aggregate_error("s: sum(a + b)") ==
        "job.yaml:7: aggregate.s: " + expected_like + "'sum(a + b)'");
  CHECK(aggregate_error("s: sum(amount) * 2") ==
        "job.yaml:7: aggregate.s: " + expected_like + "'sum(amount) * 2'");
  CHECK(aggregate_error("s: count") == "job.yaml:7: aggregate.s: " + expected_like + "'count'");
  CHECK(aggregate_error("s: { fn: sum }") ==
        "job.yaml:7: aggregate.s: expected an aggregate like count() or "
        "sum(amount), got a mapping");
  // Names are unique within their scope only: two rules may both have n.
  CHECK(MustParse(kFraud).rules(2).aggregates(0).name() == "n");
}

// A rule with a select; the error tests below add a line 11 to it.
// Lines: 5 name, 6 window, 7 aggregate, 8 when, 9 select, 10 total_eur.
constexpr std::string_view kSelect = R"(name: fraud
source: { topic: payments, key: user_id, event_time: ts }
sinks: { output: alerts }
rules:
  - name: burst
    window: { rolling: 1h }
    aggregate: { total: sum(amount) }
    when: total > 10000
    select:
      total_eur: total * 0.908
)";

TEST_CASE("a rule's select maps names to expressions in the file's order", "[jobspec]") {
  const JobSpec spec = MustParse(std::string(kSelect) +
                                 "      country: lower(country)\n"
                                 "      big: amount > 5000\n"
                                 "      amount: amount\n");
  REQUIRE(spec.rules_size() == 1);
  const proto::RuleSpec& rule = spec.rules(0);
  REQUIRE(rule.select_size() == 4);
  CHECK(rule.select(0).name() == "total_eur");
  CHECK(rule.select(0).expr() == "total * 0.908");
  CHECK(rule.select(1).name() == "country");
  CHECK(rule.select(1).expr() == "lower(country)");
  CHECK(rule.select(2).name() == "big");
  CHECK(rule.select(2).expr() == "amount > 5000");
  CHECK(rule.select(3).name() == "amount");
  CHECK(rule.select(3).expr() == "amount");
  CHECK(MustParse(kFraud).rules(0).select().empty());
}

TEST_CASE("select: names and expressions", "[jobspec][errors]") {
  auto select_error = [](std::string_view entry) {
    return ErrorOf(std::string(kSelect) + "      " + std::string(entry) + "\n");
  };
  CHECK(select_error("country-code: country") ==
        "job.yaml:11: rules[0].select: select name 'country-code' is not an "
        "identifier (A-Z, a-z, 0-9 and '_', not starting with a digit)");
  CHECK(select_error("in: country") ==
        "job.yaml:11: rules[0].select: select name 'in' is a word of the "
        "expression language");
  CHECK(select_error("event_time: ts") ==
        "job.yaml:11: rules[0].select: select name 'event_time' is taken by a "
        "field of every output record");
  CHECK(select_error("total: amount") ==
        "job.yaml:11: rules[0].select: select name 'total' is taken by an "
        "aggregate of the rule");
  CHECK(select_error("total_eur: amount") ==
        "job.yaml:11: duplicate select name 'total_eur' in rules[0].select");
  CHECK(select_error("c: ''") == "job.yaml:11: rules[0].select.c: expected an expression, got ''");
  CHECK(select_error("c: { x: 1 }") ==
        "job.yaml:11: rules[0].select.c: expected an expression, got a "
        "mapping");
  CHECK(select_error("seen: new_value(country)") ==
        "job.yaml:11: rules[0].select[1]: column 1: new_value() is not allowed "
        "in select (it is a condition; use it in when)");
  const std::string syntax = select_error("c: amount * ");
  INFO(syntax);
  CHECK(syntax.rfind("job.yaml:11: rules[0].select[1]: column ", 0) == 0);

  // The first of two entries: its own line, not the select's or the last.
  std::string yaml(kSelect);
  yaml.replace(yaml.find("total * 0.908"), 13, "total * ");
  const std::string first = ErrorOf(yaml + "      country: country\n");
  INFO(first);
  CHECK(first.rfind("job.yaml:10: rules[0].select[0]: column ", 0) == 0);

  yaml = std::string(kSelect);
  yaml.replace(yaml.find("\n      total_eur: total * 0.908"), 31, " [total_eur]");
  CHECK(ErrorOf(yaml) ==
        "job.yaml:9: rules[0].select: expected a mapping of name: expression, "
        "like { price_eur: price * 0.908 }, got a list");
  yaml.replace(yaml.find("[total_eur]"), 11, "{}");
  CHECK(ErrorOf(yaml) == "job.yaml:9: rules[0].select: expected at least one field");
}

// ---- Expression errors, found by engine::JobPlan::Compile. ----

TEST_CASE("expression errors point at the line of the expression", "[jobspec][errors][expr]") {
  SECTION("filter") {
    const std::string msg = ErrorOf(R"(name: pv
source: { topic: clicks, key: page, event_time: ts }

filter: amount >
sinks: { output: pv-out }
window: { tumbling: 1m }
aggregate: { views: count() }
)",
                                    "pv.yaml");
    INFO(msg);
    CHECK(msg.rfind("pv.yaml:4: filter: ", 0) == 0);
    CHECK(msg.find("column") != std::string::npos);
  }
  SECTION("rules[1].when") {
    std::string yaml(kFraud);
    yaml.replace(yaml.find("when: n > 3"), 11, "when: n > > 3");
    const std::string msg = ErrorOf(yaml, "fraud.yaml");
    INFO(msg);
    CHECK(msg.rfind("fraud.yaml:24: rules[1].when: ", 0) == 0);
    CHECK(msg.find("column") != std::string::npos);
  }
  SECTION("new_value in a rule without a window") {
    std::string yaml(kFraud);
    yaml.replace(yaml.find("when: amount > 5000"), 19, "when: new_value(country)");
    const std::string msg = ErrorOf(yaml, "fraud.yaml");
    INFO(msg);
    CHECK(msg.rfind("fraud.yaml:20: rules[0].when: ", 0) == 0);
  }
  SECTION("having may only name aggregates") {
    std::string yaml(kSessions);
    yaml.replace(yaml.find("having: events >= 2"), 19, "having: amount > 5");
    const std::string msg = ErrorOf(yaml, "sessions.yaml");
    INFO(msg);
    CHECK(msg.rfind("sessions.yaml:15: having: ", 0) == 0);
    CHECK(msg.find("unknown name 'amount'") != std::string::npos);
  }
  SECTION("having") {
    std::string yaml(kSessions);
    yaml.replace(yaml.find("having: events >= 2"), 19, "having: events >= (2");
    const std::string msg = ErrorOf(yaml, "sessions.yaml");
    INFO(msg);
    CHECK(msg.rfind("sessions.yaml:15: having: ", 0) == 0);
    CHECK(msg.find("column") != std::string::npos);
  }
}

// ---- Durations. ----

TEST_CASE("durations parse in every unit", "[jobspec][duration]") {
  CHECK(ParseDurationMs("250ms").value() == 250);
  CHECK(ParseDurationMs("5s").value() == 5 * kSecond);
  CHECK(ParseDurationMs("30m").value() == 30 * kMinute);
  CHECK(ParseDurationMs("1h").value() == kHour);
  CHECK(ParseDurationMs("7d").value() == 7 * kDay);
  CHECK(ParseDurationMs("0s").value() == 0);
  CHECK(ParseDurationMs("0ms").value() == 0);
  CHECK(ParseDurationMs("90m").value() == 90 * kMinute);
  CHECK(ParseDurationMs("36500d").value() == kMaxDurationMs);
}

TEST_CASE("malformed durations are rejected", "[jobspec][duration]") {
  for (std::string_view text : {"5", "5x", "-5s", "", "1.5s", "five", "s", "5 s", " 5s", "5s ",
                                "+5s", "5S", "5sec", "5mss", "1h30m", "0x10s"}) {
    Result<int64_t> ms = ParseDurationMs(text);
    INFO("'" << text << "'");
    REQUIRE_FALSE(ms.ok());
    CHECK(ms.status().code() == StatusCode::kInvalidArgument);
    CHECK(ms.status().message() ==
          "expected a duration like 250ms, 5s, 30m, 1h or 7d, got '" + std::string(text) + "'");
  }
  for (std::string_view text :
       {"36501d", "99999999999999999999999ms", "9223372036854775807ms", "876001h"}) {
    INFO(text);
    Result<int64_t> ms = ParseDurationMs(text);
    REQUIRE_FALSE(ms.ok());
    CHECK(ms.status().message().find("longer than the limit of 36500d") != std::string::npos);
  }
}

TEST_CASE("durations format in the largest exact unit", "[jobspec][duration]") {
  CHECK(FormatDurationMs(0) == "0s");
  CHECK(FormatDurationMs(250) == "250ms");
  CHECK(FormatDurationMs(1500) == "1500ms");
  CHECK(FormatDurationMs(5 * kSecond) == "5s");
  CHECK(FormatDurationMs(90 * kSecond) == "90s");
  CHECK(FormatDurationMs(5 * kMinute) == "5m");
  CHECK(FormatDurationMs(90 * kMinute) == "90m");
  CHECK(FormatDurationMs(kHour) == "1h");
  CHECK(FormatDurationMs(36 * kHour) == "36h");
  CHECK(FormatDurationMs(7 * kDay) == "7d");
}

TEST_CASE("durations round-trip", "[jobspec][duration]") {
  for (int64_t ms : {int64_t{0}, int64_t{1}, int64_t{999}, int64_t{1000}, int64_t{1001},
                     59 * kSecond, kMinute, 61 * kSecond, kHour + kMinute, kDay - 1, kDay,
                     400 * kDay, kMaxDurationMs - 1, kMaxDurationMs}) {
    INFO(ms);
    const std::string text = FormatDurationMs(ms);
    Result<int64_t> back = ParseDurationMs(text);
    REQUIRE(back.ok());
    CHECK(back.value() == ms);
  }
  for (std::string_view text : {"250ms", "5s", "30m", "1h", "7d", "0s"}) {
    CHECK(FormatDurationMs(ParseDurationMs(text).value()) == text);
  }
}

// ---- Files. ----

TEST_CASE("the example jobs load", "[jobspec][examples]") {
  const std::string dir = std::string(SLUICE_SOURCE_DIR) + "/examples/jobs/";
  SECTION("fraud") {
    Result<JobSpec> spec = LoadJobFile(dir + "fraud.yaml");
    INFO(spec.status().message());
    REQUIRE(spec.ok());
    CHECK(spec->name() == "fraud");
    CHECK(spec->source().topic() == "payments");
    CHECK(spec->source().key() == "user_id");
    CHECK(spec->delivery() == JobSpec::EXACTLY_ONCE);
    CHECK(spec->sinks().markers() == "sluice-fraud-markers");
    REQUIRE(spec->rules_size() == 4);
    CHECK(spec->rules(0).name() == "large_amount");
    CHECK(spec->rules(1).name() == "velocity");
    CHECK(spec->rules(2).name() == "new_country");
    CHECK(spec->rules(3).name() == "burst_spend");
    CHECK(spec->rules(3).aggregates(0).function() == AggregateSpec::SUM);
    CHECK_FALSE(spec->source_yaml().empty());
    // Typed fields and retries counted once.
    REQUIRE(spec->source().fields_size() == 4);
    CHECK(spec->source().fields(0).path() == "amount");
    CHECK(spec->source().fields(0).type() == proto::FieldSpec::NUMBER);
    CHECK(spec->dedup().field() == "transaction_id");
    CHECK(spec->dedup().within_ms() == kHour);
  }
  SECTION("sessions") {
    Result<JobSpec> spec = LoadJobFile(dir + "sessions.yaml");
    INFO(spec.status().message());
    REQUIRE(spec.ok());
    CHECK(spec->name() == "sessions");
    CHECK(spec->source().topic() == "clicks");
    CHECK(spec->source().key() == "user_id");
    CHECK(spec->window().session_gap_ms() == 30 * kMinute);
    REQUIRE(spec->aggregates_size() == 6);
    RequireAggregate(spec->aggregates(0), "events", AggregateSpec::COUNT, "");
    RequireAggregate(spec->aggregates(1), "duration", AggregateSpec::DURATION, "");
    RequireAggregate(spec->aggregates(2), "pages", AggregateSpec::COUNT_DISTINCT, "page");
    RequireAggregate(spec->aggregates(3), "first_page", AggregateSpec::FIRST, "page");
    RequireAggregate(spec->aggregates(4), "last_page", AggregateSpec::LAST, "page");
    RequireAggregate(spec->aggregates(5), "revenue", AggregateSpec::SUM, "amount");
    REQUIRE(spec->source().fields_size() == 2);
    CHECK(spec->source().fields(1).path() == "amount");
    CHECK(spec->source().fields(1).optional());
  }
  SECTION("nexmark-q1: a projection of every bid") {
    Result<JobSpec> spec = LoadJobFile(dir + "nexmark-q1.yaml");
    INFO(spec.status().message());
    REQUIRE(spec.ok());
    CHECK(spec->name() == "nexmark-q1");
    CHECK(spec->source().topic() == "nexmark");
    CHECK(spec->filter() == "event_type == \"bid\"");
    REQUIRE(spec->rules_size() == 1);
    CHECK(spec->rules(0).when() == "true");
    REQUIRE(spec->rules(0).select_size() == 4);
    CHECK(spec->rules(0).select(0).name() == "auction");
    CHECK(spec->rules(0).select(1).name() == "bidder");
    CHECK(spec->rules(0).select(2).name() == "price");
    CHECK(spec->rules(0).select(2).expr() == "price * 0.908");
    CHECK(spec->rules(0).select(3).name() == "date_time");
  }
  SECTION("every file in examples/jobs") {
    int files = 0;
    for (const auto& entry : std::filesystem::directory_iterator(dir)) {
      if (entry.path().extension() != ".yaml") continue;
      ++files;
      Result<JobSpec> spec = LoadJobFile(entry.path().string());
      INFO(entry.path().string() << ": " << spec.status().message());
      CHECK(spec.ok());
    }
    // fraud, sessions, pageviews, nexmark-q0, q1, q2 and q11.
    CHECK(files >= 7);
  }
  SECTION("pageviews") {
    Result<JobSpec> spec = LoadJobFile(dir + "pageviews.yaml");
    INFO(spec.status().message());
    REQUIRE(spec.ok());
    CHECK(spec->name() == "pageviews");
    CHECK(spec->source().topic() == "clicks");
    CHECK(spec->source().key() == "user_id");
    CHECK(spec->window().tumbling_ms() == kMinute);
    REQUIRE(spec->aggregates_size() == 2);
    RequireAggregate(spec->aggregates(0), "views", AggregateSpec::COUNT, "");
    RequireAggregate(spec->aggregates(1), "pages", AggregateSpec::COUNT_DISTINCT, "page");
  }
}

TEST_CASE("a missing file is NotFound and names the path", "[jobspec]") {
  Result<JobSpec> spec = LoadJobFile("/nonexistent/sluice/job.yaml");
  REQUIRE_FALSE(spec.ok());
  CHECK(spec.status().code() == StatusCode::kNotFound);
  CHECK(spec.status().message().rfind("/nonexistent/sluice/job.yaml: ", 0) == 0);
}

TEST_CASE("errors in a file name the path as given", "[jobspec]") {
  const std::string dir = std::string(SLUICE_SOURCE_DIR) + "/examples/jobs/";
  // A directory opens but does not read as a job.
  Result<JobSpec> spec = LoadJobFile(dir);
  REQUIRE_FALSE(spec.ok());
  CHECK(spec.status().message().rfind(dir, 0) == 0);
}

TEST_CASE("duration() takes no field", "[jobspec]") {
  const std::string yaml =
      "name: s\nsource:\n  topic: clicks\n  key: user_id\n  event_time: ts\n"
      "sinks:\n  output: out\nwindow: { session: 30m }\naggregate:\n"
      "  d: duration(ts)\n";
  Result<JobSpec> spec = ParseJobYaml(yaml, "s.yaml");
  REQUIRE_FALSE(spec.ok());
  REQUIRE(spec.status().message().find("s.yaml:10:") == 0);
  REQUIRE(spec.status().message().find("duration() takes no field") != std::string::npos);
}

TEST_CASE("count(f) names the field it counts; count() none", "[jobspec]") {
  const JobSpec spec = MustParse(R"(name: pv
source: { topic: clicks, key: page, event_time: ts }
sinks: { output: pv-out }
window: { tumbling: 1m }
aggregate: { views: count(), with_user: count(user.id) }
)");
  RequireAggregate(spec.aggregates(0), "views", AggregateSpec::COUNT, "");
  RequireAggregate(spec.aggregates(1), "with_user", AggregateSpec::COUNT, "user.id");
}

// A job with typed fields; the error tests below replace its lines.
// Lines: 7 fields, 8 amount, 9 status, 10 merchant_id, 11 ts.
constexpr std::string_view kTyped = R"(name: fraud
source:
  topic: payments
  key: user_id
  event_time: ts
  start: latest
  fields:
    amount: number
    status: string
    merchant_id: string?
    ts: timestamp
dedup: { field: merchant_id, within: 1h }
filter: amount > 0 && status == "approved"
sinks: { output: alerts }
rules:
  - name: large_amount
    when: amount > 5000
)";

TEST_CASE("source.fields, start, max_record_bytes and dedup load", "[jobspec]") {
  const JobSpec spec = MustParse(kTyped);
  const proto::SourceSpec& src = spec.source();
  REQUIRE(src.fields_size() == 4);
  CHECK(src.fields(0).path() == "amount");
  CHECK(src.fields(0).type() == proto::FieldSpec::NUMBER);
  CHECK_FALSE(src.fields(0).optional());
  CHECK(src.fields(2).path() == "merchant_id");
  CHECK(src.fields(2).type() == proto::FieldSpec::STRING);
  CHECK(src.fields(2).optional());
  CHECK(src.fields(3).type() == proto::FieldSpec::TIMESTAMP);
  CHECK(src.start() == proto::SourceSpec::LATEST);
  CHECK(src.max_record_bytes() == 64 * 1024);
  CHECK(spec.dedup().field() == "merchant_id");
  CHECK(spec.dedup().within_ms() == kHour);

  auto with = [](std::string_view from, std::string_view to) {
    std::string yaml(kTyped);
    yaml.replace(yaml.find(from), from.size(), to);
    return yaml;
  };
  const JobSpec at = MustParse(with("start: latest",
                                    "start: 2024-03-01T12:00:00Z\n  "
                                    "max_record_bytes: 2097152"));
  CHECK(at.source().start() == proto::SourceSpec::AT_TIME);
  CHECK(at.source().start_time_ms() == 1709294400000);
  CHECK(at.source().max_record_bytes() == 2097152);
  CHECK(MustParse(with("start: latest", "start: earliest")).source().start() ==
        proto::SourceSpec::EARLIEST);
  // Without `fields`, nothing is declared and any field may be read.
  CHECK(MustParse("name: f\nsource: { topic: t, key: k, event_time: ts }\nsinks: { output: o }\n"
                  "rules: [{ name: r, when: anything > 1 }]\n")
            .source()
            .fields_size() == 0);
}

TEST_CASE("bad fields, start, max_record_bytes and dedup name their line", "[jobspec][errors]") {
  auto with = [](std::string_view from, std::string_view to) {
    std::string yaml(kTyped);
    yaml.replace(yaml.find(from), from.size(), to);
    return ErrorOf(yaml);
  };
  CHECK(with("amount: number", "amount: numeric") ==
        "job.yaml:8: source.fields.amount: unknown type 'numeric' (expected number, integer, "
        "string, bool, timestamp, object, array or any, with a trailing ? when the field may be "
        "missing or null)");
  CHECK(with("status: string", "status: [string]") ==
        "job.yaml:9: source.fields.status: expected number, integer, string, bool, timestamp, "
        "object, array or any, with a trailing ? when the field may be missing or null, got a "
        "list");
  CHECK(with("  fields:\n    amount: number\n    status: string\n    merchant_id: string?\n"
             "    ts: timestamp\n",
             "  fields: [amount]\n") ==
        "job.yaml:7: source.fields: expected a mapping of field to type, like { amount: number, "
        "merchant_id: string? }, got a list");
  CHECK(with("status: string", "amount: string") ==
        "job.yaml:9: source.fields: duplicate field 'amount'");
  CHECK(with("start: latest", "start: yesterday") ==
        "job.yaml:6: source.start: expected earliest, latest or an RFC 3339 time like "
        "2024-03-01T12:00:00Z, got 'yesterday'");
  CHECK(with("start: latest", "max_record_bytes: 10") ==
        "job.yaml:6: source.max_record_bytes: expected a size in bytes from 1024 to 1073741824, "
        "like 65536, got '10'");
  CHECK(with("dedup: { field: merchant_id, within: 1h }",
             "dedup: { field: transaction_id, within: 1h }") ==
        "job.yaml:12: dedup.field: field 'transaction_id' is not declared in source.fields "
        "(declared: amount, status, merchant_id, ts)");
  CHECK(with("dedup: { field: merchant_id, within: 1h }", "dedup: { field: merchant_id }") ==
        "job.yaml:12: missing required key 'within' in dedup");
  CHECK(with("dedup: { field: merchant_id, within: 1h }",
             "dedup: { field: merchant_id, within: 0s }") ==
        "job.yaml:12: dedup.within: must be longer than 0s");
  CHECK(with("when: amount > 5000", "when: amount > 5000 && country == \"NL\"") ==
        "job.yaml:17: rules[0].when: field 'country' is not declared in source.fields "
        "(declared: amount, status, merchant_id, ts)");
  CHECK(with("filter: amount > 0", "filter: amt > 0") ==
        "job.yaml:13: filter: field 'amt' is not declared in source.fields (declared: amount, "
        "status, merchant_id, ts)");
}

}  // namespace
}  // namespace sluice::jobspec
