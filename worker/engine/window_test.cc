// Window jobs: tumbling, sliding and session windows with in-order,
// out-of-order and late events, allowed lateness, idle advance and drain.

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

constexpr int64_t kMinute = 60'000;
constexpr int64_t T = 28'333'333 * kMinute;  // minute-aligned, near 2023-11-14

proto::JobSpec Tumbling(int64_t size, int64_t ooo = 0, int64_t lateness = 0) {
  proto::JobSpec spec = BaseSpec();
  spec.mutable_source()->set_max_out_of_orderness_ms(ooo);
  spec.mutable_window()->set_tumbling_ms(size);
  spec.mutable_window()->set_allowed_lateness_ms(lateness);
  *spec.add_aggregates() = Agg("events", proto::AggregateSpec::COUNT);
  return spec;
}

TEST_CASE("tumbling windows fire in order when the watermark passes their end") {
  Harness h(Tumbling(kMinute));
  h.Feed({Event("u1", T + 1000), Event("u1", T + 2000), Event("u2", T + 3000)});
  REQUIRE(h.Output().empty());
  h.Feed(Event("u1", T + kMinute + 1000));  // watermark T + 60999 passes end - 1
  auto out = h.Output();
  REQUIRE(out.size() == 2);
  // Exact record layout after the id.
  REQUIRE(out[0].substr(0, 7) == "{\"id\":\"");
  REQUIRE(out[0].substr(41) ==
          "\"job\":\"test\",\"key\":\"u1\",\"window_start\":" + std::to_string(T) +
              ",\"window_end\":" + std::to_string(T + kMinute) +
              ",\"kind\":\"final\",\"events\":2}");
  REQUIRE(Field(out[1], "key") == "u2");
  REQUIRE(IntField(out[1], "events") == 1);
  h.task().Drain();
  out = h.Output();
  REQUIRE(out.size() == 3);
  REQUIRE(IntField(out[2], "window_start") == T + kMinute);
  REQUIRE(IntField(out[2], "events") == 1);
}

TEST_CASE("the watermark is max event time - out-of-orderness - 1 ms, advanced per event") {
  Harness h(Tumbling(kMinute, /*ooo=*/5000));
  h.Feed(Event("u1", T + 1000));
  h.Feed(Event("u1", T + kMinute - 1 + 5000));  // watermark T + 59999 - 1
  REQUIRE(h.task().watermark() == T + kMinute - 2);
  REQUIRE(h.Output().empty());
  h.Feed(Event("u1", T + kMinute + 5000));  // watermark T + 59999 = end - 1
  REQUIRE(h.task().watermark() == T + kMinute - 1);
  REQUIRE(h.Output().size() == 1);
}

TEST_CASE("out-of-order events within the bound count; later ones go to the late topic") {
  Harness h(Tumbling(kMinute, /*ooo=*/5000));
  h.Feed(Event("u1", T + 58'000));
  h.Feed(Event("u1", T + 61'000));  // watermark T + 55999
  h.Feed(Event("u1", T + 59'000));  // out of order, still in time
  REQUIRE(h.Output().empty());
  h.Feed(Event("u1", T + 66'000));  // watermark T + 60999: first window fires
  REQUIRE(h.Output().size() == 1);
  REQUIRE(IntField(h.Output()[0], "events") == 2);

  h.Feed(Event("u1", T + 59'500, "\"page\":\"/x\""));  // its window has fired: late
  auto late = h.Late();
  REQUIRE(late.size() == 1);
  REQUIRE(Field(late[0], "reason") == "late");
  REQUIRE(IntField(late[0], "watermark") == T + 60'999);
  REQUIRE(IntField(late[0], "event_time") == T + 59'500);
  REQUIRE(Field(late[0], "event") == Event("u1", T + 59'500, "\"page\":\"/x\""));
  REQUIRE(Field(late[0], "source") == "{\"topic\":\"events\",\"partition\":0,\"offset\":4}");
  const TaskCounters& c = h.task().counters();
  REQUIRE(c.consumed == 5);
  REQUIRE(c.processed == 4);
  REQUIRE(c.late == 1);
  REQUIRE(c.consumed == c.processed + c.late + c.dead_lettered);
}

TEST_CASE("sliding windows count an event in every window that covers it") {
  proto::JobSpec spec = BaseSpec();
  spec.mutable_window()->mutable_sliding()->set_size_ms(10'000);
  spec.mutable_window()->mutable_sliding()->set_every_ms(5'000);
  *spec.add_aggregates() = Agg("events", proto::AggregateSpec::COUNT);
  Harness h(spec);
  h.Feed({Event("u1", T + 7'000), Event("u1", T + 12'000)});
  REQUIRE(h.Output().size() == 1);  // [T, T+10s) fired at watermark T + 11999
  h.task().Drain();
  auto out = h.Output();
  REQUIRE(out.size() == 3);
  REQUIRE(IntField(out[0], "window_start") == T);
  REQUIRE(IntField(out[0], "events") == 1);
  REQUIRE(IntField(out[1], "window_start") == T + 5'000);
  REQUIRE(IntField(out[1], "window_end") == T + 15'000);
  REQUIRE(IntField(out[1], "events") == 2);
  REQUIRE(IntField(out[2], "window_start") == T + 10'000);
  REQUIRE(IntField(out[2], "events") == 1);
}

proto::JobSpec Sessions(int64_t gap, int64_t ooo) {
  proto::JobSpec spec = BaseSpec();
  spec.mutable_source()->set_max_out_of_orderness_ms(ooo);
  spec.mutable_window()->set_session_gap_ms(gap);
  *spec.add_aggregates() = Agg("events", proto::AggregateSpec::COUNT);
  *spec.add_aggregates() = Agg("first_page", proto::AggregateSpec::FIRST, "page");
  *spec.add_aggregates() = Agg("last_page", proto::AggregateSpec::LAST, "page");
  *spec.add_aggregates() = Agg("pages", proto::AggregateSpec::COUNT_DISTINCT, "page");
  *spec.add_aggregates() = Agg("duration", proto::AggregateSpec::DURATION);
  return spec;
}

TEST_CASE("sessions merge events at most a gap apart, and when bridged") {
  Harness h(Sessions(10'000, kMinute));
  h.Feed(Event("u1", T + 0, "\"page\":\"/a\""));
  h.Feed(Event("u1", T + 25'000, "\"page\":\"/e\""));
  REQUIRE(h.task().open_windows() == 2);
  // Exactly a gap before T+25s: joins it ([T+15s, T+35s)); 15 s after T: not T's.
  h.Feed(Event("u1", T + 15'000, "\"page\":\"/c\""));
  REQUIRE(h.task().open_windows() == 2);
  // Exactly a gap after T and exactly a gap before T+15s... at most a gap
  // from both: bridges them.
  h.Feed(Event("u1", T + 10'000, "\"page\":\"/b\""));
  REQUIRE(h.task().open_windows() == 1);
  REQUIRE(h.Output().empty());
  h.task().Drain();
  auto out = h.Output();
  REQUIRE(out.size() == 1);
  REQUIRE(IntField(out[0], "window_start") == T);
  REQUIRE(IntField(out[0], "window_end") == T + 35'000);
  REQUIRE(IntField(out[0], "events") == 4);
  REQUIRE(Field(out[0], "first_page") == "/a");
  REQUIRE(Field(out[0], "last_page") == "/e");
  REQUIRE(IntField(out[0], "pages") == 4);
  REQUIRE(IntField(out[0], "duration") == 25'000);  // first event T, last T+25s
  REQUIRE(Field(out[0], "kind") == "final");
}

TEST_CASE("two events exactly one gap apart form one session; a millisecond more, two") {
  Harness h(Sessions(10'000, kMinute));
  h.Feed({Event("u1", T), Event("u1", T + 10'000)});
  h.Feed({Event("u2", T), Event("u2", T + 10'001)});
  h.task().Drain();
  std::vector<std::string> sessions;  // key:start+events, in firing order
  for (const std::string& r : h.Output()) {
    sessions.push_back(Field(r, "key") + ":" + std::to_string(IntField(r, "window_start") - T) +
                       "+" + Field(r, "events"));
  }
  REQUIRE(sessions == std::vector<std::string>{"u2:0+1", "u1:0+2", "u2:10001+1"});
}

TEST_CASE("separate users have separate sessions, fired in key order") {
  Harness h(Sessions(10'000, 0));
  h.Feed({Event("u2", T), Event("u1", T), Event("u3", T + 30'000)});
  auto out = h.Output();
  REQUIRE(out.size() == 2);
  REQUIRE(Field(out[0], "key") == "u1");
  REQUIRE(Field(out[1], "key") == "u2");
}

TEST_CASE("a late event that would open a session alone is late") {
  Harness h(Sessions(10'000, 0));
  h.Feed({Event("u1", T + 100'000), Event("u2", T)});
  REQUIRE(h.Late().size() == 1);
  REQUIRE(h.task().open_windows() == 1);
}

TEST_CASE("allowed lateness re-emits updates, then purges") {
  Harness h(Tumbling(kMinute, 0, /*lateness=*/30'000));
  h.Feed(Event("u1", T + 1'000));
  h.Feed(Event("u1", T + kMinute + 1'000));  // fires [T, T+1m): final, events 1
  h.Feed(Event("u1", T + 2'000));            // within lateness: update, events 2
  h.Feed(Event("u1", T + 95'000));           // watermark T + 94999: purges [T, T+1m)
  h.Feed(Event("u1", T + 3'000));            // late
  auto out = h.Output();
  REQUIRE(out.size() == 2);
  REQUIRE(Field(out[0], "kind") == "final");
  REQUIRE(IntField(out[0], "events") == 1);
  REQUIRE(Field(out[1], "kind") == "update");
  REQUIRE(IntField(out[1], "events") == 2);
  REQUIRE(Field(out[0], "id") != Field(out[1], "id"));
  REQUIRE(h.Late().size() == 1);
  REQUIRE(h.task().counters().late == 1);
}

TEST_CASE("a session merged after it fired re-emits as an update") {
  proto::JobSpec spec = Sessions(10'000, 0);
  spec.mutable_window()->set_allowed_lateness_ms(kMinute);
  Harness h(spec);
  h.Feed(Event("u1", T, "\"page\":\"/a\""));
  h.Feed(Event("u1", T + 20'000, "\"page\":\"/c\""));  // fires [T, T+10s)
  REQUIRE(h.Output().size() == 1);
  h.Feed(Event("u1", T + 9'000, "\"page\":\"/b\""));  // extends it to [T, T+19s)
  auto out = h.Output();
  REQUIRE(out.size() == 2);
  REQUIRE(Field(out[1], "kind") == "update");
  REQUIRE(IntField(out[1], "window_end") == T + 19'000);
  REQUIRE(IntField(out[1], "events") == 2);
  REQUIRE(Field(out[1], "last_page") == "/b");
}

TEST_CASE("idle streams advance the watermark at the rate of processing time") {
  proto::JobSpec spec = Tumbling(kMinute);
  spec.mutable_source()->set_idle_timeout_ms(30'000);
  Harness h(spec);
  const int64_t p0 = h.clock().NowMillis();
  h.Feed(Event("u1", T + 1'000));
  h.clock().Set(p0 + 29'999);
  h.task().OnProcessingTime();
  REQUIRE(h.task().watermark() == T + 999);
  // Idle since 88 s: the watermark has moved 58 s past where events left it.
  h.clock().Set(p0 + 88'000);
  h.task().OnProcessingTime();
  REQUIRE(h.task().watermark() == T + 58'999);
  REQUIRE(h.Output().empty());
  h.clock().Set(p0 + 89'000);
  h.task().OnProcessingTime();
  REQUIRE(h.Output().size() == 1);
  // An older event does not move the watermark back (and is late now).
  h.Feed(Event("u1", T + 30'000));
  REQUIRE(h.task().watermark() == T + 59'999);
  REQUIRE(h.Late().size() == 1);
}

TEST_CASE("idle advance is off when idle_timeout is 0") {
  Harness h(Tumbling(kMinute));
  h.Feed(Event("u1", T + 1'000));
  h.clock().Advance(3'600'000);
  h.task().OnProcessingTime();
  REQUIRE(h.Output().empty());
}

TEST_CASE("drain emits every open window and leaves no state") {
  Harness h(Sessions(kMinute, 0));
  h.Feed({Event("u1", T), Event("u2", T + 1), Event("u3", T + 2)});
  REQUIRE(h.Output().empty());
  h.task().Drain();
  REQUIRE(h.Output().size() == 3);
  REQUIRE(h.task().open_windows() == 0);
}

TEST_CASE("having drops windows whose aggregates fail it") {
  proto::JobSpec spec = Tumbling(kMinute);
  spec.set_having("events >= 2");
  Harness h(spec);
  h.Feed({Event("u1", T), Event("u1", T + 1), Event("u2", T + 2)});
  h.task().Drain();
  auto out = h.Output();
  REQUIRE(out.size() == 1);
  REQUIRE(Field(out[0], "key") == "u1");
}

TEST_CASE("a filter skips events but they still advance the watermark") {
  proto::JobSpec spec = Tumbling(kMinute);
  spec.set_filter("amount > 0");
  Harness h(spec);
  h.Feed({Event("u1", T, "\"amount\":5"), Event("u1", T + 1, "\"amount\":0"),
          Event("u2", T + kMinute, "\"amount\":-1")});
  auto out = h.Output();
  REQUIRE(out.size() == 1);
  REQUIRE(IntField(out[0], "events") == 1);
  REQUIRE(h.task().counters().filtered == 2);
  REQUIRE(h.task().counters().processed == 3);
}

TEST_CASE("every aggregate over a window, skipping nulls") {
  proto::JobSpec spec = Tumbling(kMinute);
  spec.clear_aggregates();
  using F = proto::AggregateSpec;
  *spec.add_aggregates() = Agg("n", F::COUNT);
  *spec.add_aggregates() = Agg("with_amount", F::COUNT, "amount");
  *spec.add_aggregates() = Agg("total", F::SUM, "amount");
  *spec.add_aggregates() = Agg("lo", F::MIN, "amount");
  *spec.add_aggregates() = Agg("hi", F::MAX, "amount");
  *spec.add_aggregates() = Agg("mean", F::AVG, "amount");
  *spec.add_aggregates() = Agg("pages", F::COUNT_DISTINCT, "page");
  *spec.add_aggregates() = Agg("first_page", F::FIRST, "page");
  *spec.add_aggregates() = Agg("last_page", F::LAST, "page");
  *spec.add_aggregates() = Agg("none", F::SUM, "missing");
  Harness h(spec);
  h.Feed({Event("u1", T + 30, "\"amount\":2.5,\"page\":\"/b\""),
          Event("u1", T + 10, "\"amount\":10,\"page\":\"/a\""),
          Event("u1", T + 20, "\"page\":\"/b\""),
          Event("u1", T + 30, "\"amount\":-1,\"page\":\"/c\"")});
  h.task().Drain();
  auto out = h.Output();
  REQUIRE(out.size() == 1);
  REQUIRE(IntField(out[0], "n") == 4);
  REQUIRE(IntField(out[0], "with_amount") == 3);
  REQUIRE(Field(out[0], "total") == "11.5");
  REQUIRE(Field(out[0], "lo") == "-1");
  REQUIRE(Field(out[0], "hi") == "10");
  REQUIRE(Field(out[0], "mean") == "3.8333333333333335");
  REQUIRE(IntField(out[0], "pages") == 3);
  REQUIRE(Field(out[0], "first_page") == "/a");
  // Two events at T+30: the later offset is last.
  REQUIRE(Field(out[0], "last_page") == "/c");
  REQUIRE(Field(out[0], "none") == "null");
}

}  // namespace
}  // namespace sluice::engine

namespace sluice::engine {
namespace {

TEST_CASE("the filter runs before the key and time are required") {
  proto::JobSpec spec = testing::BaseSpec();
  spec.set_filter("kind == \"click\"");
  spec.mutable_window()->set_tumbling_ms(60'000);
  *spec.add_aggregates() = testing::Agg("events", proto::AggregateSpec::COUNT);
  testing::Harness h(spec);
  h.Feed(std::string(R"({"kind":"view","ts":1700000000000})"));   // no key, filtered
  h.Feed(std::string(R"({"kind":"view"})"));                      // no key, no time
  h.Feed(std::string(R"({"kind":"click","ts":1700000000001})"));  // no key: dead letter
  h.Feed(std::string(R"({"kind":"click","user":"u1","ts":1700000000002})"));
  h.Feed(std::string(R"({"kind":"view","ts":1700000100000})"));  // moves the watermark
  REQUIRE(h.DeadLetters().size() == 1);
  REQUIRE(testing::Field(h.DeadLetters()[0], "reason") == "missing key field user");
  REQUIRE(h.Output().size() == 1);  // the window fired on the filtered event's time
  const TaskCounters& c = h.task().counters();
  REQUIRE(c.filtered == 3);
  REQUIRE(c.consumed == c.processed + c.late + c.dead_lettered);
}

}  // namespace
}  // namespace sluice::engine
