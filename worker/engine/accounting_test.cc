// Every event accounted for: typed source fields, de-duplication, the record
// size limit and the type-mismatch counter. Each test checks the counters'
// invariant consumed = processed + late + dead_lettered as well.

#include <catch2/catch.hpp>

#include "worker/engine/event_decoder.h"
#include "worker/engine/state_store.h"
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

void RequireBalanced(const TaskCounters& c) {
  REQUIRE(c.consumed == c.processed + c.late + c.dead_lettered);
}

proto::FieldSpec Declared(const std::string& path, proto::FieldSpec::Type type,
                          bool optional = false) {
  proto::FieldSpec f;
  f.set_path(path);
  f.set_type(type);
  f.set_optional(optional);
  return f;
}

// The fraud job's filter and its large-amount rule, with typed fields.
proto::JobSpec TypedSpec() {
  proto::JobSpec spec = BaseSpec("typed");
  auto* fields = spec.mutable_source()->mutable_fields();
  *fields->Add() = Declared("amount", proto::FieldSpec::NUMBER);
  *fields->Add() = Declared("status", proto::FieldSpec::STRING);
  *fields->Add() = Declared("merchant_id", proto::FieldSpec::STRING, /*optional=*/true);
  *fields->Add() = Declared("n", proto::FieldSpec::INTEGER, /*optional=*/true);
  *fields->Add() = Declared("at", proto::FieldSpec::TIMESTAMP, /*optional=*/true);
  *fields->Add() = Declared("tags", proto::FieldSpec::ARRAY, /*optional=*/true);
  spec.set_filter("amount > 0 && status == \"approved\"");
  proto::RuleSpec* r = spec.add_rules();
  r->set_name("large_amount");
  r->set_when("amount > 5000");
  return spec;
}

TEST_CASE("a declared field of another type is a dead letter with the reason, not filtered") {
  Harness h(TypedSpec());
  h.Feed(Event("u1", T, R"("amount":"9000","status":"approved")"));
  h.Feed(Event("u1", T, R"("amount":9000,"status":"approved")"));
  h.Feed(Event("u1", T, R"("status":"approved")"));
  h.Feed(Event("u1", T, R"("amount":null,"status":"approved")"));
  h.Feed(Event("u1", T, R"("amount":1,"status":"approved","merchant_id":7)"));
  h.Feed(Event("u1", T, R"("amount":1,"status":"approved","merchant_id":null,"n":2.5)"));
  h.Feed(Event("u1", T, R"("amount":1,"status":"approved","n":3.0,"at":"yesterday")"));
  h.Feed(Event("u1", T, R"("amount":1,"status":"approved","at":"2024-03-01T12:00:00Z","tags":{})"));
  h.Feed(Event("u1", T, R"("amount":1,"status":"declined","at":1700000000000,"tags":[1])"));
  auto dead = h.DeadLetters();
  REQUIRE(dead.size() == 7);
  CHECK(Field(dead[0], "reason") == R"(field amount: expected number, got string "9000")");
  CHECK(Field(dead[1], "reason") == "missing field amount (expected number)");
  CHECK(Field(dead[2], "reason") == "field amount: expected number, got null");
  CHECK(Field(dead[3], "reason") == "field merchant_id: expected string, got number 7");
  CHECK(Field(dead[4], "reason") == "field n: expected integer, got number 2.5");
  CHECK(Field(dead[5], "reason") ==
        R"(field at: expected timestamp (epoch ms or RFC 3339), got string "yesterday")");
  CHECK(Field(dead[6], "reason") == "field tags: expected array, got object");
  REQUIRE(h.Output().size() == 1);  // the good 9000
  const TaskCounters& c = h.task().counters();
  CHECK(c.dead_lettered == 7);
  CHECK(c.filtered == 1);  // only the declined one, which is well typed
  RequireBalanced(c);
}

TEST_CASE("re-decoding an accepted event (a queued rule event) skips the declared fields") {
  auto plan = JobPlan::Compile(TypedSpec());
  REQUIRE(plan.ok());
  EventDecoder decoder(**plan);
  DecodedEvent ev;
  std::string reason;
  const std::string e = Event("u1", T, R"("amount":"9000","status":"approved")");
  CHECK_FALSE(decoder.Decode(e, T, /*check_time_bounds=*/true, &ev, &reason));
  CHECK(decoder.Decode(e, T, /*check_time_bounds=*/false, &ev, &reason));
}

TEST_CASE("without declared fields a wrongly typed value is filtered, and counted as a mismatch") {
  proto::JobSpec spec = TypedSpec();
  spec.mutable_source()->clear_fields();
  Harness h(spec);
  h.Feed(Event("u1", T, R"("amount":"9000","status":"approved")"));
  h.Feed(Event("u1", T, R"("amount":9000,"status":"approved")"));
  const TaskCounters& c = h.task().counters();
  CHECK(c.filtered == 1);
  CHECK(c.type_mismatches == 1);  // "9000" > 0
  CHECK(h.Output().size() == 1);
  RequireBalanced(c);
}

TEST_CASE("declared fields: an expression may read only what is declared") {
  proto::JobSpec spec = TypedSpec();
  spec.mutable_rules(0)->set_when("amount > 5000 && country == \"NL\"");
  auto plan = JobPlan::Compile(spec);
  REQUIRE_FALSE(plan.ok());
  CHECK(plan.status().message() ==
        "rules[0].when: field 'country' is not declared in source.fields (declared: amount, "
        "status, merchant_id, n, at, tags)");

  spec = TypedSpec();
  spec.set_filter("amount > 0 && state == \"approved\"");
  plan = JobPlan::Compile(spec);
  REQUIRE_FALSE(plan.ok());
  CHECK(plan.status().message().rfind("filter: field 'state' is not declared", 0) == 0);

  spec = TypedSpec();
  spec.mutable_dedup()->set_field("transaction_id");
  spec.mutable_dedup()->set_within_ms(3600 * kSec);
  plan = JobPlan::Compile(spec);
  REQUIRE_FALSE(plan.ok());
  CHECK(plan.status().message().rfind("dedup.field: field 'transaction_id' is not declared", 0) ==
        0);

  // The key and the event time need not be declared.
  REQUIRE(JobPlan::Compile(TypedSpec()).ok());
}

proto::JobSpec DedupSpec() {
  proto::JobSpec spec = BaseSpec("dedup");
  spec.mutable_dedup()->set_field("transaction_id");
  spec.mutable_dedup()->set_within_ms(3600 * kSec);
  proto::RuleSpec* velocity = spec.add_rules();
  velocity->set_name("velocity");
  velocity->set_when("n > 2");
  velocity->mutable_window()->set_rolling_ms(300 * kSec);
  *velocity->add_aggregates() = Agg("n", proto::AggregateSpec::COUNT);
  return spec;
}

TEST_CASE("dedup drops a key's repeated value within `within`, so velocity counts it once") {
  Harness h(DedupSpec());
  h.Feed(Event("u1", T, R"("transaction_id":"t1")"));
  h.Feed(Event("u1", T + 1 * kSec, R"("transaction_id":"t1")"));  // a producer retry
  h.Feed(Event("u2", T + 1 * kSec, R"("transaction_id":"t1")"));  // another key: not a repeat
  h.Feed(Event("u1", T + 2 * kSec, R"("transaction_id":"t2")"));
  h.Feed(Event("u1", T + 3 * kSec));  // no value: never a repeat
  h.task().Drain();
  const TaskCounters& c = h.task().counters();
  CHECK(c.deduplicated == 1);
  auto out = h.Output();
  REQUIRE(out.size() == 1);  // u1's third distinct payment, not the retry
  CHECK(IntField(out[0], "n") == 3);
  CHECK(IntField(out[0], "event_time") == T + 3 * kSec);
  RequireBalanced(c);
}

TEST_CASE("dedup forgets a value once the watermark passes its time + within") {
  proto::JobSpec spec = DedupSpec();
  spec.mutable_dedup()->set_within_ms(10 * kSec);
  Harness h(spec);
  h.Feed(Event("u1", T, R"("transaction_id":"t1")"));
  h.Feed(Event("u1", T + 10 * kSec, R"("transaction_id":"t1")"));  // exactly within: a repeat
  h.Feed(Event("u1", T + 10 * kSec + 1, R"("transaction_id":"t1")"));
  CHECK(h.task().counters().deduplicated == 1);
  // The watermark passes every time + within: nothing is kept for u1.
  h.Feed(Event("u2", T + 100 * kSec));
  h.Feed(Event("u1", T + 101 * kSec, R"("transaction_id":"t1")"));
  CHECK(h.task().counters().deduplicated == 1);
}

TEST_CASE("dedup values and the new counters are part of the checkpoint") {
  proto::JobSpec spec = DedupSpec();
  spec.set_filter("amount > 0");
  Harness h(spec);
  h.Feed(Event("u1", T, R"("transaction_id":"t1","amount":"5")"));  // a type mismatch
  h.Feed(Event("u1", T, R"("transaction_id":"t1","amount":5)"));
  h.Feed(Event("u1", T, R"("transaction_id":"t1","amount":5)"));  // a repeat
  REQUIRE(h.task().counters().deduplicated == 1);
  REQUIRE(h.task().counters().type_mismatches == 1);
  InMemoryStateStore store;
  REQUIRE(h.task().Checkpoint(store).ok());
  h.RestoreFrom(store);
  CHECK(h.task().counters().deduplicated == 1);
  CHECK(h.task().counters().type_mismatches == 1);
  h.Feed(Event("u1", T + kSec, R"("transaction_id":"t1","amount":"6")"));
  CHECK(h.task().counters().deduplicated == 1);  // filtered first: not a repeat
  CHECK(h.task().counters().type_mismatches == 2);
  h.Feed(Event("u1", T + kSec, R"("transaction_id":"t1","amount":6)"));
  CHECK(h.task().counters().deduplicated == 2);  // the value restored from the checkpoint
}

TEST_CASE("a record larger than max_record_bytes is a dead letter carrying a bounded prefix") {
  proto::JobSpec spec = TypedSpec();
  spec.mutable_source()->set_max_record_bytes(1024);
  Harness h(spec);
  const std::string big = Event(
      "u1", T, R"("amount":9000,"status":"approved","pad":")" + std::string(2000, 'x') + "\"");
  h.Feed(big);
  // A malformed record just under the limit keeps all of its bytes.
  const std::string bad = "{" + std::string(1000, 'y');
  h.Feed(bad);
  auto dead = h.DeadLetters();
  REQUIRE(dead.size() == 2);
  CHECK(Field(dead[0], "reason") == "record of " + std::to_string(big.size()) +
                                        " bytes is larger than source.max_record_bytes (1024)");
  CHECK(Field(dead[0], "raw") == big.substr(0, 1024));
  CHECK(IntField(dead[0], "raw_bytes") == static_cast<int64_t>(big.size()));
  CHECK(Field(dead[0], "truncated") == "true");
  CHECK(Field(dead[1], "raw") == bad);
  CHECK(Field(dead[1], "truncated") == "<missing>");
  CHECK(h.Output().empty());
  RequireBalanced(h.task().counters());
}

TEST_CASE("a truncated dead letter cuts UTF-8 at a character boundary") {
  proto::JobSpec spec = TypedSpec();
  spec.mutable_source()->set_max_record_bytes(1024);
  Harness h(spec);
  // 1023 bytes, then a 2-byte character across the limit.
  const std::string record = "{" + std::string(1022, 'a') + "\xc3\xa9" + std::string(10, 'b');
  h.Feed(record);
  auto dead = h.DeadLetters();
  REQUIRE(dead.size() == 1);
  CHECK(Field(dead[0], "raw") == record.substr(0, 1023));
}

TEST_CASE("count(f) counts the events where f is not null; count() counts all") {
  proto::JobSpec spec = BaseSpec("counts");
  spec.mutable_window()->set_tumbling_ms(60 * kSec);
  *spec.add_aggregates() = Agg("events", proto::AggregateSpec::COUNT);
  *spec.add_aggregates() = Agg("with_amount", proto::AggregateSpec::COUNT, "amount");
  Harness h(spec);
  h.Feed(Event("u1", T, R"("amount":5)"));
  h.Feed(Event("u1", T + 1, R"("amount":null)"));
  h.Feed(Event("u1", T + 2));
  h.task().Drain();
  auto out = h.Output();
  REQUIRE(out.size() == 1);
  CHECK(IntField(out[0], "events") == 3);
  CHECK(IntField(out[0], "with_amount") == 1);
}

}  // namespace
}  // namespace sluice::engine
