#pragma once

// WindowOperator: the windows of a window job, per key (as Flink's
// WindowOperator). It adds an event to the windows WindowAssigner gives it
// (window_assigner.h), merging sessions; sets a timer for each window's end;
// emits a window's result when its timer fires ("kind":"final"), and again
// when an event reaches a window that already fired ("update"), until the
// watermark passes end - 1 + allowed_lateness, when the window is purged.
//
// A key's windows live in its KeyState (key_state.h), sorted by start; the
// task (TaskProcessor) finds the key and marks it changed before the operator
// changes it, and fires the timers in order. The operator keeps the count of
// open windows and the accumulators of purged windows for reuse.
//
// Contract per event: Accepts, then (if it did) Add, with the same watermark.
// Per timer of kind kFire or kPurge: Find, then (if found) OnTimer.
//
// Thread safety: one thread owns a WindowOperator, with its task.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string_view>
#include <vector>

#include "worker/engine/event_decoder.h"
#include "worker/engine/expr.h"
#include "worker/engine/job_plan.h"
#include "worker/engine/key_state.h"
#include "worker/engine/record.h"
#include "worker/engine/result_writer.h"
#include "worker/engine/task_processor.h"
#include "worker/engine/time_util.h"
#include "worker/engine/window_assigner.h"

namespace sluice::engine {

class WindowOperator {
 public:
  // Timers go to `timers`; results are written with `results` to `sink` and
  // counted in counters.window_results; `having` is evaluated with `scratch`.
  // All must outlive the operator.
  WindowOperator(const JobPlan& plan, KeyTimers& timers, ResultWriter& results, RecordSink& sink,
                 TaskCounters& counters, EvalScratch& scratch);

  // Whether Accepts reads the key's state: only for sessions, where an event
  // may reach a session of its key. Otherwise Accepts may be given nullptr,
  // and the key need not be looked up for a late event.
  bool judges_by_key() const { return assigner_.kind() == WindowKind::kSession; }

  // Whether an event at `t` of a key whose state is `ks` (nullptr: the key
  // has none, or judges_by_key() is false) belongs to a window that still
  // takes events; if not, the event is late.
  bool Accepts(const KeyState* ks, int64_t t, int64_t watermark) const {
    if (assigner_.kind() == WindowKind::kSession) {
      // A session the event merges with takes it even when the event's own
      // session would be expired.
      if (ks != nullptr) {
        const SessionMerge m = assigner_.Merge(ks->windows, t);
        if (m.first != m.last) return true;
      }
      return !Expired(assigner_.SessionOf(t).end, watermark);
    }
    bool open = false;
    assigner_.ForEachWindow(t, [&](TimeWindow w) { open = open || !Expired(w.end, watermark); });
    return open;
  }

  // Adds an event that Accepts took to the windows of its key: `ks`, marked
  // changed. A window that already fired and is complete re-emits at once.
  void Add(KeyState& ks, const DecodedEvent& ev, int64_t offset, int64_t watermark) {
    if (assigner_.kind() == WindowKind::kSession) {
      UpdateSession(ks, ev, offset, watermark);
      return;
    }
    assigner_.ForEachWindow(ev.event_time, [&](TimeWindow w) {
      if (!Expired(w.end, watermark)) UpdateWindow(ks, ev, offset, w, watermark);
    });
  }

  // The window of `ks` a kFire or kPurge timer refers to, or nullptr if it
  // was merged away or purged already. A timer does not hold its window's
  // end: a window is the one of its start whose timer of that kind is due
  // at the timer's time (a session that grew has a later one).
  WindowState* Find(KeyState& ks, const KeyTimer& timer) const {
    for (WindowState& w : ks.windows) {
      if (w.start == timer.start && TimerTime(w, timer.kind) == timer.time) return &w;
    }
    return nullptr;
  }

  // A kFire or kPurge timer of `win`, a window of `ks` (marked changed), is
  // due. Fires the window (unless it has nothing new to emit) and sets its
  // purge timer, or purges it. Returns true if the window was purged.
  bool OnTimer(KeyState& ks, std::string_view key, WindowState& win, TimerKind kind);

  // Sets the timers of a key's windows read back from the store (or from a
  // spill store, state_spill.h).
  void OnRestored(KeyState& ks);
  // A key's windows leave memory (their timers are taken out by the caller).
  void OnEvicted(const KeyState& ks) { open_windows_ -= ks.windows.size(); }

  // Calls f(time, start, kind) for each timer a key's windows need: the
  // ones a restore sets. The timers in memory may hold more (of windows
  // merged away or fired since), which fire as nothing.
  template <typename F>
  void ForEachTimer(const KeyState& ks, F&& f) const {
    for (const WindowState& w : ks.windows) {
      const TimerKind kind = !w.fired || w.changed ? TimerKind::kFire : TimerKind::kPurge;
      f(TimerTime(w, kind), w.start, kind);
    }
  }

  // Open windows, over all keys.
  size_t open_windows() const { return open_windows_; }

 private:
  // When a window's timer of `kind` is due: it fires at its last
  // millisecond, and is purged allowed_lateness later.
  int64_t TimerTime(const WindowState& w, TimerKind kind) const {
    return kind == TimerKind::kFire ? w.end - 1 : SaturatingAdd(w.end - 1, lateness_);
  }
  // A window [.., end) takes no more events once the watermark reaches
  // end - 1 + allowed_lateness.
  bool Expired(int64_t end, int64_t watermark) const {
    return SaturatingAdd(end - 1, lateness_) <= watermark;
  }

  void AddToWindow(WindowState& win, const DecodedEvent& ev, int64_t offset) const;
  WindowState NewWindow(int64_t start, int64_t end);
  void UpdateWindow(KeyState& ks, const DecodedEvent& ev, int64_t offset, TimeWindow w,
                    int64_t watermark);
  void UpdateSession(KeyState& ks, const DecodedEvent& ev, int64_t offset, int64_t watermark);
  // A window that already fired and is complete re-emits at once.
  void AfterUpdate(std::string_view key, WindowState& win, int64_t watermark) {
    if (win.fired && watermark >= win.end - 1) Emit(key, win);
  }
  void Emit(std::string_view key, WindowState& win);

  const JobPlan& plan_;
  const WindowAssigner assigner_;
  const int64_t lateness_;
  KeyTimers& timers_;
  ResultWriter& results_;
  RecordSink& sink_;
  TaskCounters& counters_;
  EvalScratch& scratch_;

  size_t open_windows_ = 0;  // over all keys
  static constexpr size_t kMaxSpareAccs = 4096;
  // Of purged windows (their accumulators beyond the first), for reuse.
  std::vector<std::unique_ptr<Accumulator[]>> spare_accs_;
  std::vector<Value> values_;  // the aggregate results of the window being emitted
};

}  // namespace sluice::engine
