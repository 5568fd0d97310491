#include "worker/engine/event_decoder.h"

#include <catch2/catch.hpp>

#include "worker/engine/testing.h"

namespace sluice::engine {
namespace {

constexpr int64_t kNow = 1'700'000'000'000;

std::shared_ptr<const JobPlan> Plan(const std::string& key = "user", int64_t max_future = 3'600'000,
                                    int64_t max_past = 0) {
  proto::JobSpec spec = testing::BaseSpec();
  spec.mutable_source()->set_key(key);
  spec.mutable_source()->set_max_future_ms(max_future);
  spec.mutable_source()->set_max_past_ms(max_past);
  spec.set_filter("amount > 0 && meta.device == \"ios\"");
  proto::RuleSpec* r = spec.add_rules();
  r->set_name("r");
  r->set_when("true");
  return *JobPlan::Compile(spec);
}

struct Decoded {
  bool ok;
  std::string reason;
  DecodedEvent ev;
};

Decoded Decode(EventDecoder& d, const std::string& json) {
  Decoded out;
  out.ok = d.Decode(json, kNow, true, &out.ev, &out.reason);
  return out;
}

TEST_CASE("a good event yields key, time and fields by slot") {
  auto plan = Plan();
  EventDecoder d(*plan);
  auto r = Decode(d, R"({"user":"u1","ts":1700000000000,"amount":12.5,"meta":{"device":"ios"}})");
  REQUIRE(r.ok);
  REQUIRE(r.ev.key == "u1");
  REQUIRE(r.ev.event_time == 1'700'000'000'000);
  const auto& names = plan->field_names();
  for (size_t i = 0; i < names.size(); ++i) {
    if (names[i] == "amount") REQUIRE(r.ev.fields[i].number == 12.5);
    if (names[i] == "meta.device") REQUIRE(r.ev.fields[i].str == "ios");
  }
}

TEST_CASE("keys may be nested, or integers; times may be RFC 3339") {
  auto plan = Plan("user.id");
  EventDecoder d(*plan);
  auto r = Decode(d, R"({"user":{"id":42},"ts":"2023-11-14T22:13:20.5Z"})");
  REQUIRE(r.ok);
  REQUIRE(r.ev.key == "42");
  REQUIRE(r.ev.event_time == 1'700'000'000'500);
}

TEST_CASE("every kind of bad record gets a precise reason") {
  auto plan = Plan("user", 3'600'000, 7LL * 86'400'000);
  EventDecoder d(*plan);
  struct Case {
    std::string json;
    std::string reason;
  };
  std::vector<Case> cases = {
      {R"({"user":"u1",,"ts":1})",
       "invalid_json at byte 13: The JSON document has an improper structure: missing or "
       "superfluous commas, braces, missing keys, etc."},
      {R"({"user":"u1","ts":1.5.5})", "invalid_json at byte 18: Problem while parsing a number"},
      {"", "invalid_json: empty message"},
      {R"([1,2])", "invalid_json: expected a JSON object, got an array"},
      {R"({"ts":1700000000000})", "missing key field user"},
      {R"({"user":null,"ts":1700000000000})", "missing key field user"},
      {R"({"user":true,"ts":1700000000000})",
       "wrong type: key field user is a bool, expected a string or an integer"},
      {R"({"user":"u1"})", "missing event_time field ts"},
      {R"({"user":"u1","ts":true})",
       "wrong type: event_time field ts is a bool, expected epoch milliseconds or an RFC 3339 "
       "string"},
      {R"({"user":"u1","ts":1.5})",
       "wrong type: event_time field ts is not a whole number of milliseconds"},
      {R"({"user":"u1","ts":"yesterday"})",
       "bad event_time: field ts 'yesterday' is not an RFC 3339 time like 2024-03-01T12:00:00Z"},
      {R"({"user":"u1","ts":"2031-01-01T00:00:00Z"})",
       "event_time 2031-01-01T00:00:00Z is 7y in the future (max_future 1h)"},
      {R"({"user":"u1","ts":1690000000000})",
       "event_time 2023-07-22T04:26:40Z is 115d in the past (max_past 7d)"},
  };
  for (const Case& c : cases) {
    INFO(c.json);
    auto r = Decode(d, c.json);
    REQUIRE_FALSE(r.ok);
    REQUIRE(r.reason == c.reason);
  }
  // The decoder recovers after bad input.
  REQUIRE(Decode(d, R"({"user":"u1","ts":1700000000000})").ok);
}

TEST_CASE("time bounds are skipped when re-decoding an accepted event") {
  auto plan = Plan();
  EventDecoder d(*plan);
  DecodedEvent ev;
  std::string reason;
  REQUIRE(d.Decode(R"({"user":"u1","ts":"2031-01-01T00:00:00Z"})", kNow, false, &ev, &reason));
}

TEST_CASE("bad records go to the dead-letter stream with their position and raw bytes") {
  proto::JobSpec spec = testing::BaseSpec();
  spec.mutable_window()->set_tumbling_ms(60'000);
  testing::Harness h(spec);
  h.Feed(std::string("{\"user\":"));
  h.Feed(std::string("\xff\xfe{", 3));
  h.Feed(testing::Event("u1", 1'700'000'000'000));
  auto dead = h.DeadLetters();
  REQUIRE(dead.size() == 2);
  REQUIRE(testing::Field(dead[0], "raw") == "{\"user\":");
  REQUIRE(testing::Field(dead[0], "source") ==
          "{\"topic\":\"events\",\"partition\":0,\"offset\":0}");
  REQUIRE(testing::Field(dead[0], "reason").rfind("invalid_json", 0) == 0);
  REQUIRE(testing::Field(dead[1], "raw_base64") == "//57");
  const TaskCounters& c = h.task().counters();
  REQUIRE(c.dead_lettered == 2);
  REQUIRE(c.consumed == c.processed + c.late + c.dead_lettered);
}

}  // namespace
}  // namespace sluice::engine
