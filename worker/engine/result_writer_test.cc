#include "worker/engine/result_writer.h"

#include <xxhash.h>

#include <catch2/catch.hpp>
#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "worker/engine/aggregate.h"
#include "worker/engine/codec.h"
#include "worker/engine/json_writer.h"
#include "worker/engine/testing.h"

namespace sluice::engine {
namespace {

using testing::Agg;
using testing::BaseSpec;

// The records as the engine wrote them with JsonWriter before ResultWriter:
// the reference ResultWriter must match byte for byte.
void ReferenceId(JsonWriter& w, const std::string& hashed) {
  XXH128_hash_t h = XXH3_128bits(hashed.data(), hashed.size());
  char hex[33];
  static constexpr char kHex[] = "0123456789abcdef";
  for (int i = 0; i < 16; ++i) {
    uint64_t part = i < 8 ? h.high64 : h.low64;
    uint8_t byte = static_cast<uint8_t>(part >> (8 * (7 - (i % 8))));
    hex[2 * i] = kHex[byte >> 4];
    hex[2 * i + 1] = kHex[byte & 15];
  }
  w.SafeKey("id");
  w.SafeString(std::string_view(hex, 32));
}

// The opening every result and alert shares: {"id":...,"job":...
void ReferenceHead(JsonWriter& w, const JobPlan& plan, const std::string& hashed) {
  w.BeginObject();
  ReferenceId(w, hashed);
  w.SafeKey("job");
  w.String(plan.name());
}

std::string ReferenceWindow(const JobPlan& plan, std::string_view key, int64_t start, int64_t end,
                            uint32_t revision, bool update, const std::vector<Value>& values) {
  std::string id;
  Encoder e(&id);
  e.Bytes("window");
  e.Bytes(plan.name());
  e.Bytes(key);
  e.I64(start);
  e.I64(end);
  e.I64(revision);
  std::string out;
  JsonWriter w(&out);
  ReferenceHead(w, plan, id);
  w.SafeKey("key");
  w.String(key);
  w.SafeKey("window_start");
  w.Int(start);
  w.SafeKey("window_end");
  w.Int(end);
  w.SafeKey("kind");
  w.SafeString(update ? "update" : "final");
  for (size_t a = 0; a < values.size(); ++a) {
    w.SafeKey(plan.aggregates()[a].name);
    WriteValue(w, values[a]);
  }
  w.EndObject();
  return out;
}

std::string ReferenceAlert(const JobPlan& plan, size_t rule, std::string_view key, int64_t time,
                           const std::vector<Value>& values, std::string_view event,
                           std::string_view topic, int32_t partition, int64_t offset) {
  const RuleDef& r = plan.rules()[rule];
  std::string id;
  Encoder e(&id);
  e.Bytes("alert");
  e.Bytes(plan.name());
  e.Bytes(r.name);
  e.Bytes(key);
  e.Bytes(topic);
  e.I64(partition);
  e.I64(offset);
  std::string out;
  JsonWriter w(&out);
  ReferenceHead(w, plan, id);
  w.SafeKey("rule");
  w.String(r.name);
  w.SafeKey("key");
  w.String(key);
  w.SafeKey("event_time");
  w.Int(time);
  for (size_t a = 0; a < values.size(); ++a) {
    w.SafeKey(a < r.aggregates.size() ? r.aggregates[a].name
                                      : r.selects[a - r.aggregates.size()].name);
    WriteValue(w, values[a]);
  }
  w.SafeKey("event");
  w.Raw(event);
  w.SafeKey("source");
  w.BeginObject();
  w.SafeKey("topic");
  w.String(topic);
  w.SafeKey("partition");
  w.Int(partition);
  w.SafeKey("offset");
  w.Int(offset);
  w.EndObject();
  w.EndObject();
  return out;
}

std::shared_ptr<const JobPlan> Compile(const proto::JobSpec& spec) {
  auto plan = JobPlan::Compile(spec);
  REQUIRE(plan.ok());
  return *plan;
}

// Keys that need escaping, long keys, empty keys and multi-byte UTF-8.
std::vector<std::string> Keys() {
  std::vector<std::string> keys = {"u42",
                                   "",
                                   "a\"b",
                                   "back\\slash",
                                   "tab\there",
                                   std::string("nul\0x", 5),
                                   "\x01\x1f\x7f",
                                   "caf\xc3\xa9",
                                   std::string(300, 'k') + "\n"};
  std::mt19937_64 rng(7);
  for (int i = 0; i < 200; ++i) {
    std::string k(rng() % 40, ' ');
    for (char& c : k) c = static_cast<char>(rng() % 256);
    keys.push_back(k);
  }
  return keys;
}

std::vector<std::vector<Value>> ValueSets() {
  static const std::string kQuotes(100, '"');  // Values view their strings
  return {
      {Value::Number(7), Value::Number(3), Value::String("/home"), Value::String("a\"\\\n\x02"),
       Value::Number(59.9)},
      {Value::Number(0), Value::Number(-0.0), Value::Null(), Value::Null(), Value::Null()},
      {Value::Number(1e300 * 1e300), Value::Number(std::nan("")), Value::Bool(true),
       Value::Bool(false), Value::Number(-1.5e-300)},
      {Value::Number(9007199254740992.0), Value::Number(-9007199254740991.0), Value::String(""),
       Value::String(kQuotes), Value::Number(std::numeric_limits<double>::denorm_min())},
  };
}

proto::JobSpec WindowSpec() {
  proto::JobSpec spec = BaseSpec("sessions");
  spec.mutable_window()->set_session_gap_ms(60'000);
  using F = proto::AggregateSpec;
  *spec.add_aggregates() = Agg("events", F::COUNT);
  *spec.add_aggregates() = Agg("pages", F::COUNT_DISTINCT, "page");
  *spec.add_aggregates() = Agg("first_page", F::FIRST, "page");
  *spec.add_aggregates() = Agg("last_page", F::LAST, "page");
  *spec.add_aggregates() = Agg("revenue", F::SUM, "amount");
  return spec;
}

TEST_CASE("window results are the bytes JsonWriter wrote, keys and values escaped") {
  auto plan = Compile(WindowSpec());
  ResultWriter writer(*plan);
  for (const std::string& key : Keys()) {
    for (const auto& values : ValueSets()) {
      for (int64_t start : {int64_t{0}, int64_t{-60'000}, int64_t{1'700'000'000'000},
                            std::numeric_limits<int64_t>::min()}) {
        const int64_t end = start + 60'000;
        for (uint32_t revision : {0u, 1u, 300u}) {
          const bool update = revision > 0;
          REQUIRE(std::string(writer.Window(key, start, end, revision, update, values)) ==
                  ReferenceWindow(*plan, key, start, end, revision, update, values));
        }
      }
    }
  }
}

TEST_CASE("alerts are the bytes JsonWriter wrote, with the rule's aggregates and the source") {
  proto::JobSpec spec = BaseSpec("fraud");
  proto::RuleSpec* plain = spec.add_rules();
  plain->set_name("large_amount");
  plain->set_when("amount > 7000");
  proto::RuleSpec* rolling = spec.add_rules();
  rolling->set_name("burst");
  rolling->mutable_window()->set_rolling_ms(300'000);
  *rolling->add_aggregates() = Agg("n", proto::AggregateSpec::COUNT);
  *rolling->add_aggregates() = Agg("total", proto::AggregateSpec::SUM, "amount");
  rolling->set_when("n > 3");
  auto plan = Compile(spec);
  ResultWriter writer(*plan);
  const std::string event = "{\"user\":\"u\\\"1\",\"amount\":7001,\"ts\":5}";
  for (const auto& [topic, partition] :
       std::vector<std::pair<std::string, int32_t>>{{"payments", 3}, {"we\"ird\\topic", 0}}) {
    writer.SetSource(topic, partition);
    for (const std::string& key : Keys()) {
      for (int64_t offset : {int64_t{0}, int64_t{1234}, std::numeric_limits<int64_t>::max()}) {
        REQUIRE(
            std::string(writer.Alert(0, key, 1'700'000'123'456, {}, event, offset)) ==
            ReferenceAlert(*plan, 0, key, 1'700'000'123'456, {}, event, topic, partition, offset));
        const std::vector<Value> values = {Value::Number(4), Value::Number(120.5)};
        REQUIRE(std::string(writer.Alert(1, key, -5, values, event, offset)) ==
                ReferenceAlert(*plan, 1, key, -5, values, event, topic, partition, offset));
      }
    }
  }
}

TEST_CASE("alerts write a rule's select values after its aggregates, escaped as JsonWriter") {
  proto::JobSpec spec = BaseSpec("fraud");
  auto add_select = [](proto::RuleSpec* rule, const std::string& name) {
    proto::SelectSpec* s = rule->add_select();
    s->set_name(name);
    s->set_expr("amount");
  };
  proto::RuleSpec* plain = spec.add_rules();
  plain->set_name("euro");
  plain->set_when("true");
  for (const char* name : {"price_eur", "bidder", "country", "flag", "note"}) {
    add_select(plain, name);
  }
  proto::RuleSpec* rolling = spec.add_rules();
  rolling->set_name("burst");
  rolling->mutable_window()->set_rolling_ms(300'000);
  *rolling->add_aggregates() = Agg("n", proto::AggregateSpec::COUNT);
  *rolling->add_aggregates() = Agg("total", proto::AggregateSpec::SUM, "amount");
  rolling->set_when("n > 3");
  for (const char* name : {"total_eur", "a", "b", "c", "d"}) add_select(rolling, name);
  auto plan = Compile(spec);
  ResultWriter writer(*plan);
  writer.SetSource("payments", 3);
  const std::string event = "{\"user\":\"u1\",\"amount\":7001,\"ts\":5}";
  for (const std::string& key : {std::string("u42"), std::string("a\"b\\c")}) {
    for (const auto& values : ValueSets()) {  // numbers, escaped strings, null, bools
      REQUIRE(std::string(writer.Alert(0, key, 1'700'000'123'456, values, event, 7)) ==
              ReferenceAlert(*plan, 0, key, 1'700'000'123'456, values, event, "payments", 3, 7));
      std::vector<Value> with_aggs = {Value::Number(4), Value::Number(120.5)};
      with_aggs.insert(with_aggs.end(), values.begin(), values.end());
      REQUIRE(std::string(writer.Alert(1, key, 5, with_aggs, event, 8)) ==
              ReferenceAlert(*plan, 1, key, 5, with_aggs, event, "payments", 3, 8));
    }
  }
  const std::string alert(writer.Alert(0, "k", 1, ValueSets()[0], event, 0));
  REQUIRE(alert.find(",\"price_eur\":7,\"bidder\":3,\"country\":\"/home\",\"flag\":"
                     "\"a\\\"\\\\\\n\\u0002\",\"note\":59.9,\"event\":{") != std::string::npos);
}

TEST_CASE("json::WriteEscaped escapes as JsonWriter::AppendEscaped, within 6 bytes a byte") {
  std::string all;
  for (int c = 0; c < 256; ++c) all.push_back(static_cast<char>(c));
  for (const std::string& s : {all, std::string("plain"), std::string(), std::string("\"")}) {
    std::string expected;
    JsonWriter::AppendEscaped(&expected, s);
    std::string buf(6 * s.size(), '\0');
    char* end = json::WriteEscaped(buf.data(), s);
    REQUIRE(std::string(buf.data(), end) == expected);
  }
}

}  // namespace
}  // namespace sluice::engine
