#include "worker/engine/window_operator.h"

#include <algorithm>
#include <span>
#include <utility>

namespace sluice::engine {

WindowOperator::WindowOperator(const JobPlan& plan, KeyTimers& timers, ResultWriter& results,
                               RecordSink& sink, TaskCounters& counters, EvalScratch& scratch)
    : plan_(plan),
      assigner_(plan.window()),
      lateness_(plan.window().allowed_lateness_ms),
      timers_(timers),
      results_(results),
      sink_(sink),
      counters_(counters),
      scratch_(scratch),
      values_(plan.aggregates().size()) {}

void WindowOperator::AddToWindow(WindowState& win, const DecodedEvent& ev, int64_t offset) const {
  const auto& aggs = plan_.aggregates();
  for (size_t a = 0; a < aggs.size(); ++a) {
    Value v = aggs[a].field_slot ? ev.fields[*aggs[a].field_slot] : Value::Bool(true);
    win.acc(a).Add(v, ev.event_time, offset);  // duration() reads the time
  }
  win.changed = true;
}

WindowState WindowOperator::NewWindow(int64_t start, int64_t end) {
  WindowState win;
  win.start = start;
  win.end = end;
  std::unique_ptr<Accumulator[]> spare;
  if (!spare_accs_.empty()) {
    // Reuse a purged window's accumulators.
    spare = std::move(spare_accs_.back());
    spare_accs_.pop_back();
  }
  win.InitAccs(plan_.aggregates(), std::move(spare));
  return win;
}

void WindowOperator::UpdateWindow(KeyState& ks, const DecodedEvent& ev, int64_t offset,
                                  TimeWindow w, int64_t watermark) {
  auto it = std::lower_bound(ks.windows.begin(), ks.windows.end(), w.start,
                             [](const WindowState& win, int64_t s) { return win.start < s; });
  if (it == ks.windows.end() || it->start != w.start) {
    it = ks.windows.insert(it, NewWindow(w.start, w.end));
    ++open_windows_;
    PushTimer(timers_, ks, w.end - 1, w.start, TimerKind::kFire);
  }
  AddToWindow(*it, ev, offset);
  AfterUpdate(ev.key, *it, watermark);
}

void WindowOperator::UpdateSession(KeyState& ks, const DecodedEvent& ev, int64_t offset,
                                   int64_t watermark) {
  const int64_t t = ev.event_time;
  const SessionMerge m = assigner_.Merge(ks.windows, t);
  auto& wins = ks.windows;
  if (m.last - m.first == 1) {
    // The common case: the event extends one session, in place.
    WindowState& w = wins[m.first];
    const int64_t start = std::min(w.start, t);
    const int64_t new_end = std::max(w.end, m.window.end);
    if (start != w.start || new_end != w.end) {
      w.start = start;
      w.end = new_end;
      PushTimer(timers_, ks, w.end - 1, w.start, TimerKind::kFire);
    }
    AddToWindow(w, ev, offset);
    AfterUpdate(ev.key, w, watermark);
    return;
  }
  WindowState merged = NewWindow(m.window.start, m.window.end);
  for (size_t i = m.first; i < m.last; ++i) {
    WindowState& w = wins[i];
    merged.start = std::min(merged.start, w.start);
    merged.end = std::max(merged.end, w.end);
    merged.fired = merged.fired || w.fired;
    merged.changed = merged.changed || w.changed;
    merged.revision = std::max(merged.revision, w.revision);
    for (size_t a = 0; a < merged.num_accs(); ++a) merged.acc(a).Merge(w.acc(a));
  }
  wins.erase(wins.begin() + m.first, wins.begin() + m.last);
  auto it = wins.insert(wins.begin() + m.first, std::move(merged));
  open_windows_ = open_windows_ + 1 - (m.last - m.first);
  PushTimer(timers_, ks, it->end - 1, it->start, TimerKind::kFire);
  AddToWindow(*it, ev, offset);
  AfterUpdate(ev.key, *it, watermark);
}

bool WindowOperator::OnTimer(KeyState& ks, std::string_view key, WindowState& win, TimerKind kind) {
  if (kind == TimerKind::kFire) {
    if (!win.fired || win.changed) Emit(key, win);
    if (lateness_ > 0) {
      PushTimer(timers_, ks, TimerTime(win, TimerKind::kPurge), win.start, TimerKind::kPurge);
      return false;
    }
  }
  // Accumulators on the heap are kept for the next window, up to a bound
  // (when every key's window closes at once, the next ones do not all open
  // at once); the inline one costs nothing to build again.
  if (win.num_accs() > 1 && spare_accs_.size() < kMaxSpareAccs) {
    spare_accs_.push_back(win.ReleaseRest());
  }
  ks.windows.erase(ks.windows.begin() + (&win - ks.windows.data()));
  --open_windows_;
  return true;
}

void WindowOperator::OnRestored(KeyState& ks) {
  open_windows_ += ks.windows.size();
  ForEachTimer(ks, [&](int64_t time, int64_t start, TimerKind kind) {
    PushTimer(timers_, ks, time, start, kind);
  });
}

void WindowOperator::Emit(std::string_view key, WindowState& win) {
  const bool update = win.fired;
  win.fired = true;
  win.changed = false;
  if (update) ++win.revision;
  const auto& aggs = plan_.aggregates();
  for (size_t a = 0; a < aggs.size(); ++a) values_[a] = win.acc(a).Result();
  const std::span<const Value> values(values_.data(), aggs.size());
  if (plan_.having() && !plan_.having()->EvalBool(EvalInput{{}, values, {}}, scratch_)) return;
  ++counters_.window_results;
  sink_.Emit(OutputStream::kOutput, key,
             results_.Window(key, win.start, win.end, win.revision, update, values));
}

}  // namespace sluice::engine
