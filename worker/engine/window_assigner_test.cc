// Window assignment on its own: the windows of an event at the edges of
// tumbling and sliding windows, and which sessions an event merges.

#include "worker/engine/window_assigner.h"

#include <catch2/catch.hpp>
#include <vector>

namespace sluice::engine {
namespace {

constexpr int64_t kMinute = 60'000;

WindowDef Tumbling(int64_t size) {
  WindowDef def;
  def.kind = WindowKind::kTumbling;
  def.size_ms = size;
  return def;
}

WindowDef Sliding(int64_t size, int64_t every) {
  WindowDef def;
  def.kind = WindowKind::kSliding;
  def.size_ms = size;
  def.every_ms = every;
  return def;
}

WindowDef Session(int64_t gap) {
  WindowDef def;
  def.kind = WindowKind::kSession;
  def.gap_ms = gap;
  return def;
}

std::vector<TimeWindow> WindowsOf(const WindowAssigner& assigner, int64_t t) {
  std::vector<TimeWindow> out;
  assigner.ForEachWindow(t, [&](TimeWindow w) { out.push_back(w); });
  return out;
}

TEST_CASE("FloorDiv rounds towards negative infinity") {
  REQUIRE(FloorDiv(7, 2) == 3);
  REQUIRE(FloorDiv(-7, 2) == -4);
  REQUIRE(FloorDiv(-6, 2) == -3);
  REQUIRE(FloorDiv(0, 5) == 0);
  REQUIRE(FloorDiv(-1, kMinute) == -1);
}

TEST_CASE("a tumbling window holds its start and ends before its end") {
  WindowAssigner a(Tumbling(kMinute));
  REQUIRE(WindowsOf(a, 0) == std::vector<TimeWindow>{{0, kMinute}});
  REQUIRE(WindowsOf(a, kMinute - 1) == std::vector<TimeWindow>{{0, kMinute}});
  REQUIRE(WindowsOf(a, kMinute) == std::vector<TimeWindow>{{kMinute, 2 * kMinute}});
  // Before the epoch, windows stay aligned.
  REQUIRE(WindowsOf(a, -1) == std::vector<TimeWindow>{{-kMinute, 0}});
  REQUIRE(WindowsOf(a, -kMinute) == std::vector<TimeWindow>{{-kMinute, 0}});
}

TEST_CASE("an event is in every sliding window that holds it, the newest first") {
  WindowAssigner a(Sliding(2 * kMinute, 30'000));
  REQUIRE(WindowsOf(a, 65'000) ==
          std::vector<TimeWindow>{
              {60'000, 180'000}, {30'000, 150'000}, {0, 120'000}, {-30'000, 90'000}});
  // At a window's start it is in that window; at its end, not.
  const auto at_start = WindowsOf(a, 60'000);
  REQUIRE(at_start.size() == 4);
  REQUIRE(at_start.front() == TimeWindow{60'000, 180'000});
  REQUIRE(at_start.back() == TimeWindow{-30'000, 90'000});
  // Size a multiple of every: always size / every windows.
  for (int64_t t : std::vector<int64_t>{-1, 0, 1, 29'999, 30'000, 119'999})
    REQUIRE(WindowsOf(a, t).size() == 4);
}

TEST_CASE("a sliding window whose every equals its size is a tumbling window") {
  WindowAssigner sliding(Sliding(kMinute, kMinute));
  WindowAssigner tumbling(Tumbling(kMinute));
  for (int64_t t : std::vector<int64_t>{-kMinute - 1, -1, 0, 59'999, 60'000, 123'456}) {
    REQUIRE(WindowsOf(sliding, t) == WindowsOf(tumbling, t));
  }
}

TEST_CASE("an event's session is [t, t + gap), saturating") {
  WindowAssigner a(Session(kMinute));
  REQUIRE(a.SessionOf(1000) == TimeWindow{1000, 1000 + kMinute});
  REQUIRE(a.SessionOf(kMaxTime - 5) == TimeWindow{kMaxTime - 5, kMaxTime});
}

TEST_CASE("an event merges every session at most a gap away") {
  WindowAssigner a(Session(kMinute));
  // Sessions of events at 0..10s and at 200s..210s.
  const std::vector<TimeWindow> sessions{{0, 10'000 + kMinute}, {200'000, 210'000 + kMinute}};

  SECTION("none: a new key") {
    const SessionMerge m = a.Merge(std::vector<TimeWindow>{}, 5000);
    REQUIRE(m.first == 0);
    REQUIRE(m.last == 0);
    REQUIRE(m.window == TimeWindow{5000, 5000 + kMinute});
  }
  SECTION("inside a session") {
    const SessionMerge m = a.Merge(sessions, 5000);
    REQUIRE((m.first == 0 && m.last == 1));
  }
  SECTION("exactly at a session's end (one gap after its last event)") {
    const SessionMerge m = a.Merge(sessions, 10'000 + kMinute);
    REQUIRE((m.first == 0 && m.last == 1));
  }
  SECTION("one ms past a session's end: a new session between the two") {
    const SessionMerge m = a.Merge(sessions, 10'001 + kMinute);
    REQUIRE((m.first == 1 && m.last == 1));
  }
  SECTION("exactly one gap before a session's start") {
    const SessionMerge m = a.Merge(sessions, 200'000 - kMinute);
    REQUIRE((m.first == 1 && m.last == 2));
  }
  SECTION("more than a gap before a session's start") {
    const SessionMerge m = a.Merge(sessions, 200'000 - kMinute - 1);
    REQUIRE((m.first == 1 && m.last == 1));
  }
  SECTION("within a gap of both: the two merge") {
    const std::vector<TimeWindow> near{{0, 10'000 + kMinute}, {100'000, 100'000 + kMinute}};
    const SessionMerge m = a.Merge(near, 50'000);
    REQUIRE((m.first == 0 && m.last == 2));
  }
  SECTION("after every session") {
    const SessionMerge m = a.Merge(sessions, 400'000);
    REQUIRE((m.first == 2 && m.last == 2));
  }
  SECTION("before every session") {
    const SessionMerge m = a.Merge(sessions, -kMinute - 1);
    REQUIRE((m.first == 0 && m.last == 0));
  }
}

}  // namespace
}  // namespace sluice::engine
