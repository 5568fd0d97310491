#pragma once

// Window assignment: which windows an event at time t belongs to, for the
// three window kinds of a window job (as Flink's WindowAssigner and, for
// sessions, its MergingWindowSet). Arithmetic over times only: it keeps no
// state and allocates nothing.
//
//   tumbling  [start, start + size) with start = floor(t / size) * size
//   sliding   every [s, s + size) with s a multiple of `every` and
//             s <= t < s + size, the newest first
//   session   [t, t + gap), merged with every session [start, end) of the key
//             at most a gap away: start - gap <= t <= end (end is the last
//             event's time + gap), as Flink's TimeWindow.intersects and Kafka
//             Streams' session merge, so events exactly one gap apart form one
//             session
//
// Whether a window still takes events (allowed lateness) is the window
// operator's concern (window_operator.h). Times are milliseconds; a session's
// end saturates at kMaxTime.
//
// Header-only: it runs per event and inlines into the window operator.

#include <cstddef>
#include <cstdint>

#include "worker/engine/job_plan.h"
#include "worker/engine/time_util.h"

namespace sluice::engine {

// floor(a / b), for b != 0.
inline int64_t FloorDiv(int64_t a, int64_t b) {
  int64_t q = a / b;
  if ((a % b != 0) && ((a < 0) != (b < 0))) --q;
  return q;
}

// A window [start, end) of event time.
struct TimeWindow {
  int64_t start = 0;
  int64_t end = 0;
  bool operator==(const TimeWindow&) const = default;
};

// Sessions [first, last) of a key's list merge with an event's session
// `window` (its own [t, t + gap)); first == last: it merges with none, and
// goes in at `first`.
struct SessionMerge {
  size_t first = 0;
  size_t last = 0;
  TimeWindow window;
};

class WindowAssigner {
 public:
  // `def`: a tumbling, sliding or session window.
  explicit WindowAssigner(const WindowDef& def) : def_(def) {}

  WindowKind kind() const { return def_.kind; }

  // Tumbling and sliding windows: calls f(TimeWindow) for every window `t`
  // belongs to, in order of decreasing start (one for tumbling). Other kinds
  // have none (sessions: see Merge).
  template <typename F>
  void ForEachWindow(int64_t t, F&& f) const {
    if (def_.kind == WindowKind::kTumbling) {
      const int64_t start = FloorDiv(t, def_.size_ms) * def_.size_ms;
      f(TimeWindow{start, start + def_.size_ms});
    } else if (def_.kind == WindowKind::kSliding) {
      for (int64_t s = FloorDiv(t, def_.every_ms) * def_.every_ms; s > t - def_.size_ms;
           s -= def_.every_ms) {
        f(TimeWindow{s, s + def_.size_ms});
      }
    }
  }

  // Sessions: the event's own session [t, t + gap).
  TimeWindow SessionOf(int64_t t) const { return TimeWindow{t, SaturatingAdd(t, def_.gap_ms)}; }

  // Sessions: which of a key's sessions merge with an event at `t`.
  // `sessions` is random access, of elements with `start` and `end`, each
  // starting after the end of the one before, as a key's windows are.
  template <typename Sessions>
  SessionMerge Merge(const Sessions& sessions, int64_t t) const {
    SessionMerge m;
    m.window = SessionOf(t);
    const size_t n = sessions.size();
    while (m.first < n && sessions[m.first].end < t) ++m.first;
    m.last = m.first;
    while (m.last < n && sessions[m.last].start <= m.window.end) ++m.last;
    return m;
  }

 private:
  const WindowDef def_;
};

}  // namespace sluice::engine
