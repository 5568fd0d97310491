// Properties: shuffling events within the out-of-orderness bound never
// changes the results, and neither does how the records are batched.

#include <algorithm>
#include <catch2/catch.hpp>
#include <random>

#include "worker/engine/testing.h"

namespace sluice::engine {
namespace {

using testing::Agg;
using testing::BaseSpec;
using testing::Event;
using testing::Field;
using testing::Harness;
using testing::RandomEvents;

constexpr int64_t T = 1'700'000'000'000;
constexpr int64_t kOoo = 10'000;

struct Timed {
  int64_t time;
  std::string json;
};

// Events with distinct times (so ties by offset cannot differ).
std::vector<Timed> Generate(std::mt19937_64& rng, int n) {
  std::vector<Timed> out;
  int64_t t = T;
  for (int i = 0; i < n; ++i) {
    t += 1 + static_cast<int64_t>(rng() % 4'000);
    char extra[96];
    std::snprintf(extra, sizeof(extra), "\"page\":\"/p%d\",\"amount\":%d,\"country\":\"c%d\"",
                  static_cast<int>(rng() % 6), static_cast<int>(rng() % 100),
                  static_cast<int>(rng() % 3));
    out.push_back({t, Event("u" + std::to_string(rng() % 8), t, extra)});
  }
  return out;
}

// An arrival order in which no event is more than kOoo behind the newest one
// seen before it: sort by time + a jitter in [0, kOoo].
std::vector<std::string> Shuffle(std::mt19937_64& rng, const std::vector<Timed>& events) {
  std::vector<std::pair<int64_t, size_t>> order;
  for (size_t i = 0; i < events.size(); ++i) {
    order.emplace_back(events[i].time + static_cast<int64_t>(rng() % (kOoo + 1)), i);
  }
  std::sort(order.begin(), order.end());
  std::vector<std::string> out;
  for (const auto& [k, i] : order) out.push_back(events[i].json);
  return out;
}

std::vector<std::string> Run(const proto::JobSpec& spec, const std::vector<std::string>& events,
                             bool strip_positions) {
  Harness h(spec);
  h.Feed(events);
  h.task().Drain();
  REQUIRE(h.task().counters().late == 0);
  std::vector<std::string> out = h.Output();
  if (strip_positions) {
    // Alerts name their source offset, which depends on arrival order: compare
    // what they say about the event instead, as a set.
    for (std::string& a : out) {
      a = Field(a, "rule") + " " + Field(a, "key") + " " + Field(a, "event_time") + " " +
          Field(a, "n") + " " + Field(a, "total") + " " + Field(a, "event");
    }
    std::sort(out.begin(), out.end());
  }
  return out;
}

TEST_CASE("shuffling within the out-of-orderness bound never changes window results") {
  using F = proto::AggregateSpec;
  std::vector<proto::JobSpec> specs;
  for (int kind = 0; kind < 3; ++kind) {
    proto::JobSpec spec = BaseSpec("prop");
    spec.mutable_source()->set_max_out_of_orderness_ms(kOoo);
    if (kind == 0) spec.mutable_window()->set_tumbling_ms(30'000);
    if (kind == 1) {
      spec.mutable_window()->mutable_sliding()->set_size_ms(30'000);
      spec.mutable_window()->mutable_sliding()->set_every_ms(10'000);
    }
    if (kind == 2) spec.mutable_window()->set_session_gap_ms(15'000);
    *spec.add_aggregates() = Agg("events", F::COUNT);
    *spec.add_aggregates() = Agg("pages", F::COUNT_DISTINCT, "page");
    *spec.add_aggregates() = Agg("first_page", F::FIRST, "page");
    *spec.add_aggregates() = Agg("last_page", F::LAST, "page");
    *spec.add_aggregates() = Agg("total", F::SUM, "amount");
    *spec.add_aggregates() = Agg("hi", F::MAX, "amount");
    specs.push_back(spec);
  }
  for (uint64_t seed = 1; seed <= 20; ++seed) {
    std::mt19937_64 rng(seed);
    auto events = Generate(rng, 400);
    std::vector<std::string> in_order;
    for (const Timed& e : events) in_order.push_back(e.json);
    auto shuffled = Shuffle(rng, events);
    for (const proto::JobSpec& spec : specs) {
      INFO("seed " << seed << " window " << spec.window().DebugString());
      REQUIRE(Run(spec, shuffled, false) == Run(spec, in_order, false));
    }
  }
}

TEST_CASE("shuffling within the out-of-orderness bound never changes rule alerts") {
  proto::JobSpec spec = BaseSpec("prop");
  spec.mutable_source()->set_max_out_of_orderness_ms(kOoo);
  proto::RuleSpec* big = spec.add_rules();
  big->set_name("big");
  big->set_when("amount > 90");
  proto::RuleSpec* velocity = spec.add_rules();
  velocity->set_name("velocity");
  velocity->mutable_window()->set_rolling_ms(20'000);
  *velocity->add_aggregates() = Agg("n", proto::AggregateSpec::COUNT);
  velocity->set_when("n > 2");
  proto::RuleSpec* fresh = spec.add_rules();
  fresh->set_name("fresh");
  fresh->mutable_window()->set_rolling_ms(60'000);
  *fresh->add_aggregates() = Agg("total", proto::AggregateSpec::SUM, "amount");
  fresh->set_when("new_value(country) && total > 100");
  for (uint64_t seed = 1; seed <= 20; ++seed) {
    std::mt19937_64 rng(seed);
    auto events = Generate(rng, 400);
    std::vector<std::string> in_order;
    for (const Timed& e : events) in_order.push_back(e.json);
    auto shuffled = Shuffle(rng, events);
    auto expected = Run(spec, in_order, true);
    REQUIRE(expected.size() > 10);
    REQUIRE(Run(spec, shuffled, true) == expected);
  }
}

// The task decodes a batch a few records ahead of the one it processes: a
// stream with dead letters, late and filtered records, cut into batches of
// every size, gives the output of one record at a time. A batch that starts
// with records already processed (a redelivery) skips exactly those.
TEST_CASE("how records are batched never changes the output") {
  proto::JobSpec tumbling = BaseSpec("tumbling");
  tumbling.mutable_source()->set_max_out_of_orderness_ms(kOoo);
  tumbling.set_filter("amount % 5 != 0");
  tumbling.mutable_window()->set_tumbling_ms(30'000);
  *tumbling.add_aggregates() = Agg("events", proto::AggregateSpec::COUNT);
  proto::JobSpec rules = testing::RuleJob();
  rules.set_filter("amount % 7 != 0");
  for (const proto::JobSpec& spec : {testing::SessionJob(), rules, tumbling}) {
    INFO(spec.name());
    const std::vector<std::string> events = RandomEvents(11, 3000, 40);
    Harness one(spec);
    one.Feed(events);
    one.task().Drain();
    REQUIRE(one.task().counters().dead_lettered > 0);
    REQUIRE(one.task().counters().late > 0);
    if (!spec.filter().empty()) REQUIRE(one.task().counters().filtered > 0);

    std::mt19937_64 rng(5);
    for (size_t max_batch : {2, 3, 4, 17, 500}) {
      INFO("batches of 1.." << max_batch);
      Harness batched(spec);
      const std::span<const std::string> all(events);
      size_t fed = 0, batches = 0;
      while (fed < all.size()) {
        const size_t n = std::min(all.size() - fed, 1 + rng() % max_batch);
        batched.FeedBatch(all.subspan(fed, n));
        fed += n;
        if (++batches % 5 == 0 && fed > 5 && fed < all.size()) {
          // Redelivered: the next batch starts up to 5 records back.
          const size_t back = 1 + rng() % 5;
          batched.set_next_offset(static_cast<int64_t>(fed - back));
          fed -= back;
        }
      }
      batched.task().Drain();
      REQUIRE(batched.sink().records() == one.sink().records());
      REQUIRE(batched.task().counters().consumed == one.task().counters().consumed);
      REQUIRE(batched.task().counters().redelivered > 0);
    }
  }
}

}  // namespace
}  // namespace sluice::engine
