// The window operator on its own, driven as the task drives it: an event is
// judged (Accepts), added (Add), and timers fire in order (Find, OnTimer).

#include "worker/engine/window_operator.h"

#include <catch2/catch.hpp>
#include <memory>
#include <string>
#include <vector>

#include "worker/engine/key_table.h"
#include "worker/engine/testing.h"

namespace sluice::engine {
namespace {

using testing::Agg;
using testing::BaseSpec;
using testing::Field;
using testing::IntField;

constexpr int64_t kSec = 1000;

std::shared_ptr<const JobPlan> Compile(const proto::JobSpec& spec) {
  auto plan = JobPlan::Compile(spec);
  REQUIRE(plan.ok());
  return *plan;
}

proto::JobSpec CountSpec() {
  proto::JobSpec spec = BaseSpec();
  *spec.add_aggregates() = Agg("events", proto::AggregateSpec::COUNT);
  return spec;
}

// The operator with what the task gives it.
struct Fixture {
  explicit Fixture(const proto::JobSpec& spec)
      : plan(Compile(spec)),
        results(*plan),
        windows(*plan, timers, results, sink, counters, scratch) {}

  KeyState& Key(std::string_view key) {
    bool added = false;
    KeyEntry& e = keys.FindOrAdd(key, &added);
    if (added) e.state.name = &e.key;
    return e.state;
  }

  // An event of `key` at `t` (count() only: no fields); false if late.
  bool Add(std::string_view key, int64_t t) {
    KeyEntry* found = keys.Find(key);
    if (!windows.Accepts(found != nullptr ? &found->state : nullptr, t, watermark)) return false;
    DecodedEvent ev;
    ev.key = key;
    ev.event_time = t;
    windows.Add(Key(key), ev, /*offset=*/0, watermark);
    return true;
  }

  // Moves the watermark and fires the window timers due.
  void Advance(int64_t wm) {
    watermark = wm;
    while (!timers.empty() && timers.next_time() <= watermark) {
      const KeyTimer t = timers.Pop();
      --t.owner->timers;
      if (WindowState* w = windows.Find(*t.owner, t)) {
        windows.OnTimer(*t.owner, t.key(), *w, t.kind);
      }
    }
  }

  std::vector<std::string> Output() {
    std::vector<std::string> out;
    for (const auto& r : sink.records()) out.push_back(r.value);
    return out;
  }

  std::shared_ptr<const JobPlan> plan;
  KeyTable<KeyState> keys;
  KeyTimers timers;
  ResultWriter results;
  CollectingSink sink;
  TaskCounters counters;
  EvalScratch scratch;
  WindowOperator windows;
  int64_t watermark = kMinTime;
};

TEST_CASE("a tumbling window fires at end - 1, updates while late events come, then purges") {
  proto::JobSpec spec = CountSpec();
  spec.mutable_window()->set_tumbling_ms(60 * kSec);
  spec.mutable_window()->set_allowed_lateness_ms(10 * kSec);
  Fixture f(spec);
  REQUIRE(f.Add("u1", 1 * kSec));
  REQUIRE(f.windows.open_windows() == 1);
  f.Advance(60 * kSec - 2);
  REQUIRE(f.Output().empty());
  f.Advance(60 * kSec - 1);
  auto out = f.Output();
  REQUIRE(out.size() == 1);
  CHECK(Field(out[0], "kind") == "final");
  CHECK(IntField(out[0], "events") == 1);
  CHECK(f.counters.window_results == 1);

  // Within the allowed lateness: added, and emitted again at once.
  REQUIRE(f.Add("u1", 2 * kSec));
  out = f.Output();
  REQUIRE(out.size() == 2);
  CHECK(Field(out[1], "kind") == "update");
  CHECK(IntField(out[1], "events") == 2);

  f.Advance(70 * kSec - 2);
  REQUIRE(f.windows.open_windows() == 1);
  f.Advance(70 * kSec - 1);  // end - 1 + lateness: purged
  REQUIRE(f.windows.open_windows() == 0);
  REQUIRE(f.Key("u1").windows.empty());
  REQUIRE(f.Key("u1").timers == 0);
  REQUIRE_FALSE(f.Add("u1", 3 * kSec));
  REQUIRE(f.Output().size() == 2);
}

TEST_CASE("a window's copy has accumulators of its own; a moved-from one keeps its inline one") {
  WindowState w;
  w.start = 10;
  w.end = 20;
  w.AddAcc(AggFn::kCount).Add(Value::Bool(true), 10, 0);
  w.AddAcc(AggFn::kSum).Add(Value::Number(5), 10, 0);
  w.AddAcc(AggFn::kMax).Add(Value::Number(7), 10, 0);
  WindowState copy = w;
  copy.acc(1).Add(Value::Number(1), 11, 1);
  REQUIRE(copy.num_accs() == 3);
  CHECK(copy.start == 10);
  CHECK(copy.end == 20);
  CHECK(copy.acc(1).Result().number == 6);
  CHECK(w.acc(1).Result().number == 5);
  CHECK(copy.acc(2).Result().number == 7);
  WindowState moved = std::move(w);
  REQUIRE(moved.num_accs() == 3);
  CHECK(moved.acc(2).Result().number == 7);
  REQUIRE(w.num_accs() <= 1);  // NOLINT(bugprone-use-after-move): what is left
  copy = moved;
  CHECK(copy.acc(1).Result().number == 5);
}

TEST_CASE("without allowed lateness a window purges when it fires") {
  proto::JobSpec spec = CountSpec();
  spec.mutable_window()->set_tumbling_ms(60 * kSec);
  Fixture f(spec);
  REQUIRE(f.Add("u1", 1 * kSec));
  KeyState& ks = f.Key("u1");
  const KeyTimer fire{60 * kSec - 1, &ks, 0, TimerKind::kFire};
  WindowState* w = f.windows.Find(ks, fire);
  REQUIRE(w != nullptr);
  REQUIRE(f.windows.OnTimer(ks, "u1", *w, TimerKind::kFire));  // purged
  REQUIRE(f.Output().size() == 1);
  REQUIRE(f.windows.open_windows() == 0);
  REQUIRE(f.windows.Find(ks, fire) == nullptr);
}

TEST_CASE(
    "a timer finds its window by the window's start and the time its timer of that kind is due") {
  proto::JobSpec spec = CountSpec();
  spec.mutable_window()->set_tumbling_ms(60 * kSec);
  spec.mutable_window()->set_allowed_lateness_ms(10 * kSec);
  Fixture f(spec);
  REQUIRE(f.Add("u1", 1 * kSec));
  REQUIRE(f.Add("u1", 61 * kSec));
  KeyState& ks = f.Key("u1");
  auto find = [&](int64_t time, int64_t start, TimerKind kind) {
    return f.windows.Find(ks, KeyTimer{time, &ks, start, kind});
  };
  REQUIRE(find(60 * kSec - 1, 0, TimerKind::kFire) == &ks.windows[0]);
  REQUIRE(find(70 * kSec - 1, 0, TimerKind::kPurge) == &ks.windows[0]);
  REQUIRE(find(120 * kSec - 1, 60 * kSec, TimerKind::kFire) == &ks.windows[1]);
  // Another window's time, or the other kind's.
  REQUIRE(find(120 * kSec - 1, 0, TimerKind::kFire) == nullptr);
  REQUIRE(find(60 * kSec - 1, 0, TimerKind::kPurge) == nullptr);
  REQUIRE(find(70 * kSec - 1, 0, TimerKind::kFire) == nullptr);
}

TEST_CASE("an event joins every sliding window that still takes events") {
  proto::JobSpec spec = CountSpec();
  spec.mutable_window()->mutable_sliding()->set_size_ms(120 * kSec);
  spec.mutable_window()->mutable_sliding()->set_every_ms(60 * kSec);
  Fixture f(spec);
  REQUIRE(f.Add("u1", 90 * kSec));  // [0, 120 s) and [60 s, 180 s)
  REQUIRE(f.windows.open_windows() == 2);
  f.Advance(120 * kSec - 1);
  REQUIRE(f.windows.open_windows() == 1);
  REQUIRE(f.Output().size() == 1);
  REQUIRE(f.Add("u1", 100 * kSec));  // only [60 s, 180 s) takes it
  REQUIRE(f.windows.open_windows() == 1);
  REQUIRE(f.Output().size() == 1);
  f.Advance(180 * kSec - 1);
  auto out = f.Output();
  REQUIRE(out.size() == 2);
  CHECK(IntField(out[1], "window_start") == 60 * kSec);
  CHECK(IntField(out[1], "events") == 2);
  REQUIRE_FALSE(f.Add("u1", 100 * kSec));  // both of its windows have fired
}

TEST_CASE("an event between two sessions merges them into one") {
  proto::JobSpec spec = CountSpec();
  spec.mutable_window()->set_session_gap_ms(10 * kSec);
  Fixture f(spec);
  REQUIRE(f.Add("u1", 0));          // [0, 10 s)
  REQUIRE(f.Add("u1", 25 * kSec));  // [25 s, 35 s)
  REQUIRE(f.Add("u1", 12 * kSec));  // [12 s, 22 s): a third
  REQUIRE(f.windows.open_windows() == 3);
  REQUIRE(f.Add("u1", 10 * kSec));  // at most a gap from the first two
  REQUIRE(f.windows.open_windows() == 2);
  REQUIRE(f.Add("u1", 22 * kSec));  // at most a gap from both left
  REQUIRE(f.windows.open_windows() == 1);
  const KeyState& ks = f.Key("u1");
  REQUIRE(ks.windows.size() == 1);
  CHECK(ks.windows[0].start == 0);
  CHECK(ks.windows[0].end == 35 * kSec);
  // A timer of the first session, which had the merged one's start, finds
  // nothing; the merged one's does.
  KeyState& key = f.Key("u1");
  REQUIRE(f.windows.Find(key, KeyTimer{10 * kSec - 1, &key, 0, TimerKind::kFire}) == nullptr);
  REQUIRE(f.windows.Find(key, KeyTimer{35 * kSec - 1, &key, 0, TimerKind::kFire}) ==
          &key.windows[0]);
  // The timers of the merged sessions find no window; the merged one fires.
  f.Advance(35 * kSec - 1);
  auto out = f.Output();
  REQUIRE(out.size() == 1);
  CHECK(IntField(out[0], "events") == 5);
  CHECK(IntField(out[0], "window_end") == 35 * kSec);
  REQUIRE(f.windows.open_windows() == 0);
}

TEST_CASE("a late event still joins a session it reaches") {
  proto::JobSpec spec = CountSpec();
  spec.mutable_window()->set_session_gap_ms(10 * kSec);
  Fixture f(spec);
  REQUIRE(f.Add("u1", 100 * kSec));
  f.Advance(103 * kSec);
  // Its own session [92 s, 102 s) would be expired; it reaches [100 s, 110 s).
  REQUIRE(f.Add("u1", 92 * kSec));
  CHECK(f.Key("u1").windows[0].start == 92 * kSec);
  // Another key has no session to reach.
  REQUIRE_FALSE(f.Add("u2", 92 * kSec));
}

TEST_CASE("restored windows get their fire or purge timers back") {
  proto::JobSpec spec = CountSpec();
  spec.mutable_window()->set_tumbling_ms(60 * kSec);
  spec.mutable_window()->set_allowed_lateness_ms(10 * kSec);
  Fixture f(spec);
  KeyState& ks = f.Key("u1");
  for (int64_t start : {int64_t{0}, 60 * kSec}) {
    WindowState w;
    w.start = start;
    w.end = start + 60 * kSec;
    w.fired = start == 0;  // fired, nothing new: waits for its purge
    w.AddAcc(AggFn::kCount).Add(Value::Bool(true), start, 0);
    ks.windows.push_back(std::move(w));
  }
  f.windows.OnRestored(ks);
  REQUIRE(f.windows.open_windows() == 2);
  REQUIRE(ks.timers == 2);
  f.Advance(70 * kSec - 1);  // the first purges without emitting again
  REQUIRE(f.Output().empty());
  REQUIRE(f.windows.open_windows() == 1);
  f.Advance(120 * kSec - 1);
  REQUIRE(f.Output().size() == 1);
  CHECK(IntField(f.Output()[0], "window_start") == 60 * kSec);
}

}  // namespace
}  // namespace sluice::engine
