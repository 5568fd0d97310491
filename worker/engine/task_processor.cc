#include "worker/engine/task_processor.h"

#include <simdjson.h>

#include <algorithm>
#include <boost/container/small_vector.hpp>
#include <deque>
#include <vector>

#include "worker/engine/aggregate.h"
#include "worker/engine/codec.h"
#include "worker/engine/event_decoder.h"
#include "worker/engine/json_writer.h"
#include "worker/engine/key_table.h"
#include "worker/engine/result_writer.h"
#include "worker/engine/rolling_rules.h"
#include "worker/engine/time_util.h"
#include "worker/engine/timer_queue.h"

namespace sluice::engine {

namespace {

// Version 2 keeps rolling-rule events in chunks of their own (kChunkPrefix);
// version 1 kept them inside the key's entry, and is still read.
constexpr uint64_t kStateVersion = 2;
constexpr uint64_t kInlineRollingVersion = 1;
constexpr std::string_view kMetaKey = "m";
constexpr std::string_view kPendingKey = "p";
constexpr std::string_view kKeyPrefix = "k/";
constexpr std::string_view kChunkPrefix = "r/";

void AppendBigEndian(std::string* out, uint64_t v) {
  for (int shift = 56; shift >= 0; shift -= 8) out->push_back(static_cast<char>(v >> shift));
}
constexpr uint64_t kSignBit = uint64_t{1} << 63;

int64_t FloorDiv(int64_t a, int64_t b) {
  int64_t q = a / b;
  if ((a % b != 0) && ((a < 0) != (b < 0))) --q;
  return q;
}

// A window's accumulators, one per aggregate of the job. The first is held
// inline: with one aggregate (a count), firing or updating a window reads no
// memory apart from the key's entry.
using Accumulators = boost::container::small_vector<Accumulator, 1>;

// One window of one key.
struct WindowState {
  int64_t start = 0;
  int64_t end = 0;
  bool fired = false;     // emitted at least once
  bool changed = false;   // changed since it was last emitted
  uint32_t revision = 0;  // updates emitted so far
  Accumulators accs;
};

// The job's `dedup`: the values of the dedup field the key had (as
// DistinctKey bytes) with their event times, kept until the watermark passes
// time + within, when no event that is not late can be a repeat of them.
struct DedupEntry {
  std::string value;
  int64_t time = 0;
};
struct DedupState {
  std::vector<DedupEntry> entries;
};

// Everything the task keeps for one key.
struct KeyState {
  // Window jobs; sorted by start. The first window is held inline (see
  // Accumulators): over many keys, each dependent load is a cache miss.
  boost::container::small_vector<WindowState, 1> windows;
  std::unique_ptr<RollingState> rolling;  // rule jobs with rolling rules
  std::unique_ptr<DedupState> dedup;      // jobs with `dedup`
  // 0: written. Impl::gen_: changed since the last barrier. Another value:
  // changed before the last barrier and not yet in its snapshot.
  uint32_t dirty_gen = 0;
  bool persisted = false;  // the store holds (or the open snapshot writes) a version of it
  // The table's copy of the key (entries do not move), for timers.
  const std::string* name = nullptr;
  // Timers that refer to this entry: it stays in the table while any does.
  uint32_t timers = 0;

  bool empty() const {
    return windows.empty() && (!rolling || rolling->entries.empty()) &&
           (!dedup || dedup->entries.empty());
  }
  // For a new key in a reused table entry: keeps the windows' capacity.
  void Reset() {
    windows.clear();
    rolling.reset();
    dedup.reset();
    dirty_gen = 0;
    persisted = false;
    name = nullptr;
    timers = 0;
  }
};

using KeyEntry = KeyTable<KeyState>::Entry;
using KeyTimer = Timer<KeyState>;

// An event waiting for the watermark to reach its time (rolling rules).
struct PendingEvent {
  int64_t time = 0;
  int64_t offset = 0;
  std::string key;
  std::string payload;             // for the alert's "event"
  std::vector<OwnedValue> fields;  // the decoded fields, by slot
};

void AppendBase64(std::string* out, std::string_view in) {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    uint32_t n = (uint8_t(in[i]) << 16) | (uint8_t(in[i + 1]) << 8) | uint8_t(in[i + 2]);
    out->push_back(kAlphabet[(n >> 18) & 63]);
    out->push_back(kAlphabet[(n >> 12) & 63]);
    out->push_back(kAlphabet[(n >> 6) & 63]);
    out->push_back(kAlphabet[n & 63]);
  }
  if (i + 1 == in.size()) {
    uint32_t n = uint8_t(in[i]) << 16;
    out->push_back(kAlphabet[(n >> 18) & 63]);
    out->push_back(kAlphabet[(n >> 12) & 63]);
    out->append("==");
  } else if (i + 2 == in.size()) {
    uint32_t n = (uint8_t(in[i]) << 16) | (uint8_t(in[i + 1]) << 8);
    out->push_back(kAlphabet[(n >> 18) & 63]);
    out->push_back(kAlphabet[(n >> 12) & 63]);
    out->push_back(kAlphabet[(n >> 6) & 63]);
    out->push_back('=');
  }
}

}  // namespace

class TaskProcessor::Impl {
 public:
  Impl(std::shared_ptr<const JobPlan> plan, const Clock& clock, RecordSink& sink)
      : plan_(std::move(plan)),
        clock_(clock),
        sink_(sink),
        staged_{Staged(*plan_), Staged(*plan_), Staged(*plan_)},
        results_(*plan_),
        job_(plan_->name()),
        ooo_(plan_->spec().source().max_out_of_orderness_ms()),
        idle_timeout_(plan_->spec().source().idle_timeout_ms()),
        lateness_(plan_->window().allowed_lateness_ms),
        stride_(plan_->rolling_slots().size()),
        rolling_(*plan_) {
    size_t max_values = plan_->aggregates().size();
    size_t max_selects = 0;
    for (const RuleDef& r : plan_->rules()) {
      max_values = std::max(max_values, r.aggregates.size() + r.selects.size());
      max_selects = std::max(max_selects, r.selects.size());
    }
    agg_values_.resize(max_values);
    select_scratch_.resize(max_selects);
  }

  void ProcessBatch(std::span<const SourceRecord> records) {
    if (records.empty()) return;
    const int64_t now = clock_.NowMillis();
    if (topic_.empty()) {
      topic_.assign(records.front().position.topic);
      partition_ = records.front().position.partition;
      results_.SetSource(topic_, partition_);
    }
    // Decoding runs two events ahead, so that the key of an event is in the
    // cache when the event is processed (with many keys, a lookup is
    // otherwise two cache misses in a row): while event i is processed,
    // event i + 2 is decoded and the index bucket of its key requested, and
    // the entry of event i + 1's key (whose bucket has arrived) is requested.
    const bool keyed = !plan_->is_rule_job();
    auto stage = [&](size_t i) {
      Staged& s = staged_[i % kStaged];
      Decode(records[i], now, plan_->max_record_bytes(), s);
      if (keyed && s.extracted) {
        s.hash = KeyTable<KeyState>::Hash(s.ev.key);
        keys_.PrefetchBucket(s.hash);
      }
    };
    const size_t n = records.size();
    for (size_t i = 0; i < std::min(n, kStaged - 1); ++i) stage(i);
    for (size_t i = 0; i < n; ++i) {
      if (i + kStaged - 1 < n) stage(i + kStaged - 1);
      if (i + kEntryAhead < n && keyed && staged_[(i + kEntryAhead) % kStaged].extracted) {
        keys_.PrefetchEntry(staged_[(i + kEntryAhead) % kStaged].hash);
      }
      ProcessOne(records[i], now, staged_[i % kStaged]);
    }
    CountTypeMismatches();
  }

  void OnProcessingTime() {
    if (idle_timeout_ <= 0 || !seen_event_) return;
    const int64_t now = clock_.NowMillis();
    const int64_t idle_for = now - last_event_proc_time_;
    if (idle_for < idle_timeout_) return;
    // Continue from where the events left the watermark, at the rate of
    // processing time.
    AdvanceWatermark(SaturatingAdd(EventWatermark(), idle_for - idle_timeout_));
    CountTypeMismatches();
  }

  void Drain() {
    AdvanceWatermark(kMaxTime);
    CountTypeMismatches();
  }

  Status BeginSnapshot(const StateStore& store);
  bool SnapshotStep(size_t max_keys);
  void TakeSnapshot(WriteBatch* batch);
  bool snapshot_open() const { return snapshot_open_; }
  Status Restore(const StateStore& store);

  int64_t watermark() const { return watermark_; }
  int64_t next_offset() const { return next_offset_; }
  SourcePosition position() const { return position_; }
  const TaskCounters& counters() const { return counters_; }
  size_t open_windows() const { return open_windows_; }
  size_t queued_rule_events() const { return pending_heap_.size(); }

 private:
  void CountTypeMismatches() {
    int64_t n = type_mismatches_before_ + scratch_.type_mismatches();
    for (const EvalScratch& s : select_scratch_) n += s.type_mismatches();
    counters_.type_mismatches = n;
  }

  // The watermark the events alone give.
  int64_t EventWatermark() const {
    return max_event_time_ == kMinTime ? kMinTime : SaturatingAdd(max_event_time_, -ooo_ - 1);
  }

  // One event, decoded, waiting to be processed. Its views point into its
  // decoder, which decodes nothing else until the event has been processed.
  struct Staged {
    explicit Staged(const JobPlan& plan) : decoder(plan) {}
    EventDecoder decoder;
    bool parsed = false;
    bool extracted = false;  // key and event time are good
    DecodedEvent ev;
    uint64_t hash = 0;   // of ev.key, for window jobs
    std::string reason;  // why not parsed or not extracted
  };

  // Parses and extracts (the filter runs when the event is processed).
  static void Decode(const SourceRecord& rec, int64_t now, int64_t max_bytes, Staged& s) {
    s.ev = DecodedEvent{};
    if (static_cast<int64_t>(rec.payload.size()) > max_bytes) {
      s.parsed = s.extracted = false;
      s.reason = "record of " + std::to_string(rec.payload.size()) +
                 " bytes is larger than source.max_record_bytes (" + std::to_string(max_bytes) +
                 ")";
      return;
    }
    s.parsed = s.decoder.Parse(rec.payload, &s.reason);
    s.extracted = s.parsed && s.decoder.Extract(now, /*check_time_bounds=*/true, &s.ev, &s.reason);
  }

  void ProcessOne(const SourceRecord& rec, int64_t now, const Staged& staged) {
    // A record before the next offset was processed already (a redelivery
    // after a reassignment): processing it again would count it twice.
    if (next_offset_ >= 0 && rec.position.offset < next_offset_) {
      ++counters_.redelivered;
      return;
    }
    ++counters_.consumed;
    next_offset_ = rec.position.offset + 1;
    position_ = rec.position;
    if (!staged.parsed) {
      ++counters_.dead_lettered;
      EmitDeadLetter(rec, staged.reason);
      return;
    }
    // The filter runs first: an event it drops needs no key or time (as a
    // filter before keyBy in Flink). It still moves the watermark if it has
    // a good time.
    const bool pass = !plan_->filter() || plan_->filter()->EvalBool(
                                              EvalInput{staged.decoder.fields(), {}, {}}, scratch_);
    const DecodedEvent& ev = staged.ev;
    if (!pass) {
      ++counters_.processed;
      ++counters_.filtered;
      if (ev.event_time == kMinTime) return;
    } else if (!staged.extracted) {
      ++counters_.dead_lettered;
      EmitDeadLetter(rec, staged.reason);
      return;
    }
    seen_event_ = true;
    last_event_proc_time_ = now;

    if (!pass) {
      // Counted above.
    } else if (plan_->dedup() && IsRepeat(ev)) {
      ++counters_.processed;
      ++counters_.deduplicated;
    } else if (plan_->is_rule_job()) {
      OnRuleEvent(rec, ev);
    } else {
      OnWindowEvent(rec, ev);
    }

    if (ev.event_time > max_event_time_) max_event_time_ = ev.event_time;
    AdvanceWatermark(EventWatermark());
  }

  // ---- De-duplication ------------------------------------------------------

  // Whether the key already had the event's dedup value within `within` of
  // its time; if not, remembers the value. An event without the value (null)
  // is never a repeat.
  bool IsRepeat(const DecodedEvent& ev) {
    const DedupDef& dedup = *plan_->dedup();
    const Value& v = ev.fields[dedup.slot];
    if (v.is_null()) return false;
    DistinctKey(v, &dedup_value_);
    const int64_t t = ev.event_time;
    KeyEntry* found = keys_.Find(ev.key);
    if (found != nullptr && found->state.dedup) {
      for (const DedupEntry& e : found->state.dedup->entries) {
        if (e.value == dedup_value_ && SaturatingAdd(e.time, -dedup.within_ms) <= t &&
            t <= SaturatingAdd(e.time, dedup.within_ms)) {
          return true;
        }
      }
    }
    // One lookup: a key already in the table is marked dirty in place.
    if (found != nullptr) MarkDirty(found->state, ev.key);
    KeyState& ks = found != nullptr ? found->state : MutableKey(ev.key);
    if (!ks.dedup) ks.dedup = std::make_unique<DedupState>();
    ks.dedup->entries.push_back(DedupEntry{dedup_value_, t});
    PushTimer(ks, SaturatingAdd(t, dedup.within_ms), 0, 0, TimerKind::kExpireDedup);
    return false;
  }

  // Forgets the dedup values no event that is not late can repeat any more.
  void ExpireDedup(KeyState& ks, std::string_view key) {
    if (!ks.dedup) return;
    const int64_t within = plan_->dedup() ? plan_->dedup()->within_ms : 0;
    auto expired = [&](const DedupEntry& e) {
      return !plan_->dedup() || SaturatingAdd(e.time, within) <= watermark_;
    };
    std::vector<DedupEntry>& entries = ks.dedup->entries;
    if (std::none_of(entries.begin(), entries.end(), expired)) return;
    MarkDirty(ks, key);
    std::erase_if(entries, expired);
    if (entries.empty()) ks.dedup.reset();
    if (ks.empty() && ++empty_keys_ > kSweepEmptyKeys) SweepEmptyKeys();
  }

  // ---- Rule jobs ---------------------------------------------------------

  void OnRuleEvent(const SourceRecord& rec, const DecodedEvent& ev) {
    // Rules without a window judge the event as it arrives, late or not.
    for (size_t i = 0; i < plan_->rules().size(); ++i) {
      const RuleDef& rule = plan_->rules()[i];
      if (rule.window.kind != WindowKind::kNone) continue;
      const EvalInput input{ev.fields, {}, {}};
      if (rule.when.EvalBool(input, scratch_)) {
        EmitAlert(i, input, ev.key, ev.event_time, rec.payload, rec.position.offset);
      }
    }
    if (!plan_->has_rolling_rules()) {
      ++counters_.processed;
      return;
    }
    if (ev.event_time <= watermark_) {
      ++counters_.late;
      EmitLate(rec.payload, ev.key, ev.event_time, rec.position.offset);
      return;
    }
    ++counters_.processed;
    // Queue until the watermark reaches the event's time.
    uint32_t idx;
    if (!free_pending_.empty()) {
      idx = free_pending_.back();
      free_pending_.pop_back();
    } else {
      idx = static_cast<uint32_t>(pending_.size());
      pending_.emplace_back();
    }
    PendingEvent& p = pending_[idx];
    p.time = ev.event_time;
    p.offset = rec.position.offset;
    p.key.assign(ev.key);
    p.payload.assign(rec.payload);
    p.fields.resize(ev.fields.size());
    for (size_t i = 0; i < ev.fields.size(); ++i) p.fields[i].Set(ev.fields[i]);
    pending_heap_.push_back(idx);
    std::push_heap(pending_heap_.begin(), pending_heap_.end(), PendingLater{&pending_});
  }

  struct PendingLater {
    const std::vector<PendingEvent>* events = nullptr;
    bool operator()(uint32_t a, uint32_t b) const;
  };

  // Evaluates the rolling rules for a queued event whose time the watermark
  // has reached (RollingRules), then adds it to its key's rolling state. An
  // expired event that ends a chunk of the store deletes that chunk at the
  // next snapshot.
  void EvaluateRolling(const PendingEvent& p) {
    field_views_.resize(p.fields.size());
    for (size_t i = 0; i < p.fields.size(); ++i) field_views_[i] = p.fields[i].view();
    KeyState& key_state = MutableKey(p.key);
    if (!key_state.rolling) key_state.rolling = std::make_unique<RollingState>();
    RollingAlerts alerts{this, &p};
    rolling_.Evaluate(*key_state.rolling, p.time, p.offset, field_views_, agg_values_, scratch_,
                      alerts, [&](const RollingEntry& expired) {
                        if (expired.chunk_end) {
                          expired_chunks_.push_back(ChunkKey(p.key, expired));
                        }
                      });
  }

  // Emits the alerts of the rolling rules for one queued event.
  struct RollingAlerts final : RollingRules::AlertSink {
    RollingAlerts(Impl* impl, const PendingEvent* event) : impl(impl), event(event) {}
    void OnAlert(size_t rule, const EvalInput& input) override {
      impl->EmitAlert(rule, input, event->key, event->time, event->payload, event->offset);
    }
    Impl* impl;
    const PendingEvent* event;
  };

  // ---- Window jobs -------------------------------------------------------

  void OnWindowEvent(const SourceRecord& rec, const DecodedEvent& ev) {
    const WindowDef& w = plan_->window();
    const int64_t t = ev.event_time;
    bool updated = false;
    switch (w.kind) {
      case WindowKind::kTumbling: {
        const int64_t start = FloorDiv(t, w.size_ms) * w.size_ms;
        if (!Expired(start + w.size_ms)) {
          UpdateWindow(ev, rec.position.offset, start, start + w.size_ms);
          updated = true;
        }
        break;
      }
      case WindowKind::kSliding: {
        // Every window [s, s + size) with s aligned to `every` and s <= t < s + size.
        for (int64_t s = FloorDiv(t, w.every_ms) * w.every_ms; s > t - w.size_ms; s -= w.every_ms) {
          if (Expired(s + w.size_ms)) continue;
          UpdateWindow(ev, rec.position.offset, s, s + w.size_ms);
          updated = true;
        }
        break;
      }
      case WindowKind::kSession:
        updated = UpdateSession(ev, rec.position.offset);
        break;
      case WindowKind::kNone:
      case WindowKind::kRolling:
        break;
    }
    if (updated) {
      ++counters_.processed;
    } else {
      ++counters_.late;
      EmitLate(rec.payload, ev.key, t, rec.position.offset);
    }
  }

  // A window [.., end) takes no more events once the watermark reaches
  // end - 1 + allowed_lateness.
  bool Expired(int64_t end) const { return SaturatingAdd(end - 1, lateness_) <= watermark_; }

  void AddToWindow(WindowState& win, const DecodedEvent& ev, int64_t offset) {
    const auto& aggs = plan_->aggregates();
    for (size_t a = 0; a < aggs.size(); ++a) {
      Value v = aggs[a].field_slot ? ev.fields[*aggs[a].field_slot] : Value::Bool(true);
      win.accs[a].Add(v, ev.event_time, offset);  // duration() reads the time
    }
    win.changed = true;
  }

  WindowState NewWindow(int64_t start, int64_t end) {
    WindowState win;
    win.start = start;
    win.end = end;
    const auto& aggs = plan_->aggregates();
    if (!spare_accs_.empty()) {
      // Reuse a purged window's accumulators.
      win.accs = std::move(spare_accs_.back());
      spare_accs_.pop_back();
      for (size_t a = 0; a < aggs.size(); ++a) win.accs[a].Reset(aggs[a].fn);
      return win;
    }
    win.accs.reserve(aggs.size());
    for (const AggregateDef& a : aggs) win.accs.emplace_back(a.fn);
    return win;
  }

  void UpdateWindow(const DecodedEvent& ev, int64_t offset, int64_t start, int64_t end) {
    KeyState& ks = MutableKey(ev.key);
    auto it = std::lower_bound(ks.windows.begin(), ks.windows.end(), start,
                               [](const WindowState& w, int64_t s) { return w.start < s; });
    if (it == ks.windows.end() || it->start != start) {
      it = ks.windows.insert(it, NewWindow(start, end));
      ++open_windows_;
      PushTimer(ks, end - 1, start, end, TimerKind::kFire);
    }
    AddToWindow(*it, ev, offset);
    AfterUpdate(ev.key, *it);
  }

  // Sessions: the event opens [t, t + gap) and merges every session at most
  // a gap away: [start, end) with start - gap <= t <= end (end is the last
  // event's time + gap), as Flink's TimeWindow.intersects and Kafka Streams'
  // session merge. Returns false if the event is late.
  bool UpdateSession(const DecodedEvent& ev, int64_t offset) {
    const int64_t gap = plan_->window().gap_ms;
    const int64_t t = ev.event_time;
    const int64_t end = SaturatingAdd(t, gap);
    KeyEntry* found = keys_.Find(ev.key);
    size_t first = 0, last = 0;  // the range of sessions to merge
    if (found != nullptr) {
      auto& wins = found->state.windows;
      while (first < wins.size() && wins[first].end < t) ++first;
      last = first;
      while (last < wins.size() && wins[last].start <= end) ++last;
    }
    if (first == last && Expired(end)) return false;

    KeyState* found_state = nullptr;
    if (found != nullptr) {
      found_state = &found->state;
      MarkDirty(*found_state, ev.key);
    }
    KeyState& ks = found_state != nullptr ? *found_state : MutableKey(ev.key);
    auto& wins = ks.windows;
    if (last - first == 1) {
      // The common case: the event extends one session, in place.
      WindowState& w = wins[first];
      const int64_t start = std::min(w.start, t);
      const int64_t new_end = std::max(w.end, end);
      if (start != w.start || new_end != w.end) {
        w.start = start;
        w.end = new_end;
        PushTimer(ks, w.end - 1, w.start, w.end, TimerKind::kFire);
      }
      AddToWindow(w, ev, offset);
      AfterUpdate(ev.key, w);
      return true;
    }
    WindowState merged = NewWindow(t, end);
    for (size_t i = first; i < last; ++i) {
      WindowState& w = wins[i];
      merged.start = std::min(merged.start, w.start);
      merged.end = std::max(merged.end, w.end);
      merged.fired = merged.fired || w.fired;
      merged.changed = merged.changed || w.changed;
      merged.revision = std::max(merged.revision, w.revision);
      for (size_t a = 0; a < merged.accs.size(); ++a) merged.accs[a].Merge(w.accs[a]);
    }
    wins.erase(wins.begin() + first, wins.begin() + last);
    auto it = wins.insert(wins.begin() + first, std::move(merged));
    open_windows_ = open_windows_ + 1 - (last - first);
    PushTimer(ks, it->end - 1, it->start, it->end, TimerKind::kFire);
    AddToWindow(*it, ev, offset);
    AfterUpdate(ev.key, *it);
    return true;
  }

  // A window that already fired and is complete re-emits at once.
  void AfterUpdate(std::string_view key, WindowState& win) {
    if (win.fired && watermark_ >= win.end - 1) EmitWindow(key, win);
  }

  void PushTimer(KeyState& ks, int64_t time, int64_t start, int64_t end, TimerKind kind) {
    ++ks.timers;
    timers_.Push(KeyTimer{time, ks.name, &ks, start, end, kind});
  }

  void OnTimer(const KeyTimer& timer) {
    KeyState& ks = *timer.owner;
    --ks.timers;
    if (timer.kind == TimerKind::kExpireDedup) {
      ExpireDedup(ks, *timer.key);
      return;
    }
    auto it = std::find_if(ks.windows.begin(), ks.windows.end(), [&](const WindowState& w) {
      return w.start == timer.start && w.end == timer.end;
    });
    if (it == ks.windows.end()) return;  // merged away or purged already
    // Firing changes the window (fired, revision); purging removes it.
    MarkDirty(ks, *timer.key);
    if (timer.kind == TimerKind::kFire) {
      if (!it->fired || it->changed) EmitWindow(*timer.key, *it);
      if (lateness_ > 0) {
        PushTimer(ks, SaturatingAdd(it->end - 1, lateness_), it->start, it->end, TimerKind::kPurge);
        return;
      }
    }
    // Accumulators on the heap are kept for the next window; inline ones
    // cost nothing to build again.
    if (it->accs.capacity() > it->accs.static_capacity) spare_accs_.push_back(std::move(it->accs));
    ks.windows.erase(it);
    --open_windows_;
    // An empty key stays in the table until the next checkpoint (or sweep),
    // so a key seen again soon does not cost a new entry.
    if (ks.empty() && ++empty_keys_ > kSweepEmptyKeys) SweepEmptyKeys();
  }

  static constexpr size_t kSweepEmptyKeys = 100'000;

  // Forgets keys without state (their deletion reaches the store through
  // touched_keys_ at the next checkpoint). A key a timer still refers to stays.
  void SweepEmptyKeys() {
    keys_.ForEach([&](KeyEntry& e) {
      KeyState& ks = e.state;
      if (!ks.empty() || ks.timers > 0) return;
      // A key of the open snapshot goes into it first (copy on write).
      if (ks.dirty_gen != 0 && ks.dirty_gen != gen_) SnapshotKey(e.key, ks);
      // One the store holds stays until the next snapshot writes its delete.
      if (ks.persisted) {
        MarkDirty(ks, e.key);
        return;
      }
      ks.dirty_gen = 0;  // so that a list of changed keys that holds it skips it
      keys_.Erase(e);
    });
    empty_keys_ = 0;
  }

  // ---- Watermark ---------------------------------------------------------

  void AdvanceWatermark(int64_t wm) {
    if (wm <= watermark_) return;
    watermark_ = wm;
    while (!timers_.empty() && timers_.next_time() <= watermark_) {
      // Timers that fire together belong to keys touched long ago: start
      // loading the state of a coming one while this one fires.
      if (const KeyState* ahead = timers_.OwnerAhead(kTimersAhead)) {
        __builtin_prefetch(ahead);
        __builtin_prefetch(reinterpret_cast<const char*>(ahead) + 64);
        __builtin_prefetch(reinterpret_cast<const char*>(ahead) + 128);
      }
      OnTimer(timers_.Pop());
    }
    PendingLater later{&pending_};
    while (!pending_heap_.empty() && pending_[pending_heap_.front()].time <= watermark_) {
      std::pop_heap(pending_heap_.begin(), pending_heap_.end(), later);
      uint32_t idx = pending_heap_.back();
      pending_heap_.pop_back();
      EvaluateRolling(pending_[idx]);
      free_pending_.push_back(idx);
    }
  }

  // ---- State -------------------------------------------------------------

  KeyState& MutableKey(std::string_view key) {
    bool added = false;
    KeyEntry& e = keys_.FindOrAdd(key, &added);
    if (added) e.state.name = &e.key;
    MarkDirty(e.state, key);
    return e.state;
  }

  // Call before changing a key's state.
  void MarkDirty(KeyState& ks, std::string_view key) {
    if (ks.dirty_gen == gen_) return;
    // Changed before the barrier and not yet in the snapshot: it goes in
    // now, as it was at the barrier (copy on write).
    if (ks.dirty_gen != 0) SnapshotKey(key, ks);
    ks.dirty_gen = gen_;
    touched_keys_.push_back(&ks);
  }

  // Writes a key's state into the open snapshot: a put, or a delete if it has
  // no state left.
  void SnapshotKey(std::string_view key, KeyState& ks) {
    ks.dirty_gen = 0;
    std::string store_key(kKeyPrefix);
    store_key.append(key);
    if (ks.empty()) {
      if (ks.persisted) snapshot_batch_.Delete(std::move(store_key));
      ks.persisted = false;
      return;
    }
    EncodeKey(ks, &encode_buf_);
    snapshot_batch_.Put(std::move(store_key), encode_buf_);
    ks.persisted = true;
    if (ks.rolling && ks.rolling->unsaved > 0) SaveChunk(key, *ks.rolling);
  }

  // A key's rolling-rule events (RollingState, rolling_rules.h) live in the
  // store apart from the key's entry, in chunks: a snapshot writes the events
  // added since the last one as one chunk, and deletes a chunk once its last
  // event has expired, so a checkpoint costs what changed, not the whole list
  // (as Flink's ListState on RocksDB). The key's entry holds how many events
  // are live; a restore drops the expired ones at the front of the first
  // chunk. The rules' running aggregates are not stored: they are rebuilt
  // from the events at the key's next event.
  //
  // Writes the events no chunk holds yet as a new chunk.
  void SaveChunk(std::string_view key, RollingState& rs) {
    const size_t first = rs.entries.size() - rs.unsaved;
    encode_buf_.clear();
    Encoder e(&encode_buf_);
    e.U64(rs.unsaved);
    for (size_t i = first; i < rs.entries.size(); ++i) {
      e.I64(rs.entries[i].time);
      e.I64(rs.entries[i].offset);
      for (size_t j = 0; j < stride_; ++j) rs.values[i * stride_ + j].Encode(e);
    }
    rs.entries.back().chunk_end = true;
    rs.unsaved = 0;
    snapshot_batch_.Put(ChunkKey(key, rs.entries.back()), encode_buf_);
  }

  // A chunk's name: the prefix, the key (length first), then the time and
  // offset of its last event, ordered as signed numbers, so that a scan
  // lists a key's chunks together and in event order.
  static std::string ChunkKey(std::string_view key, const RollingEntry& last) {
    std::string out(kChunkPrefix);
    out.reserve(kChunkPrefix.size() + 4 + key.size() + 16);
    const auto len = static_cast<uint32_t>(key.size());
    for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<char>(len >> shift));
    out.append(key);
    AppendBigEndian(&out, static_cast<uint64_t>(last.time) ^ kSignBit);
    AppendBigEndian(&out, static_cast<uint64_t>(last.offset) ^ kSignBit);
    return out;
  }
  // The key of a chunk's name; false if it is not one.
  static bool ChunkKeyOf(std::string_view name, std::string_view* key) {
    if (name.substr(0, kChunkPrefix.size()) != kChunkPrefix) return false;
    name.remove_prefix(kChunkPrefix.size());
    if (name.size() < 4) return false;
    uint32_t len = 0;
    for (size_t i = 0; i < 4; ++i) len = (len << 8) | static_cast<uint8_t>(name[i]);
    name.remove_prefix(4);
    if (name.size() != size_t{len} + 16) return false;
    *key = name.substr(0, len);
    return true;
  }

  static void EncodeKey(const KeyState& ks, std::string* out);
  // `version`: of the state being restored. Version 2 gives in `live` the
  // number of rolling events the key's chunks hold that are live.
  bool DecodeKey(std::string_view in, uint64_t version, KeyState* ks, uint64_t* live) const;
  Status RestoreChunks(const StateStore& store, std::vector<std::pair<KeyEntry*, uint64_t>>& live);
  // Appends `n` events as SaveChunk encodes them (time, offset, values).
  void DecodeRollingEvents(Decoder& d, uint64_t n, RollingState& rs) const;

  // ---- Output ------------------------------------------------------------

  void WriteSource(JsonWriter& w, int64_t offset) {
    w.SafeKey("source");
    w.BeginObject();
    w.SafeKey("topic");
    w.String(topic_);
    w.SafeKey("partition");
    w.Int(partition_);
    w.SafeKey("offset");
    w.Int(offset);
    w.EndObject();
  }

  // An alert of plan_->rules()[rule] for an event. `input` is what its `when`
  // saw: the event's fields and, for a rolling rule, its aggregate values, the
  // first of agg_values_. The rule's selects are evaluated with it into the
  // values after the aggregates, each with its own scratch, so that a string
  // one of them made (lower()) outlives the next one's evaluation.
  void EmitAlert(size_t rule, const EvalInput& input, std::string_view key, int64_t time,
                 std::string_view payload, int64_t offset) {
    const RuleDef& def = plan_->rules()[rule];
    const size_t num_aggs = def.aggregates.size();
    for (size_t s = 0; s < def.selects.size(); ++s) {
      agg_values_[num_aggs + s] = def.selects[s].expr.Eval(input, select_scratch_[s]);
    }
    const std::span<const Value> values(agg_values_.data(), num_aggs + def.selects.size());
    ++counters_.alerts;
    sink_.Emit(OutputStream::kOutput, key,
               results_.Alert(rule, key, time, values, decoder_.Minify(payload), offset));
  }

  void EmitWindow(std::string_view key, WindowState& win) {
    const bool update = win.fired;
    win.fired = true;
    win.changed = false;
    if (update) ++win.revision;
    const auto& aggs = plan_->aggregates();
    for (size_t a = 0; a < aggs.size(); ++a) agg_values_[a] = win.accs[a].Result();
    if (plan_->having() &&
        !plan_->having()->EvalBool(
            EvalInput{{}, std::span<const Value>(agg_values_.data(), aggs.size()), {}}, scratch_)) {
      return;
    }
    ++counters_.window_results;
    sink_.Emit(OutputStream::kOutput, key,
               results_.Window(key, win.start, win.end, win.revision, update,
                               std::span<const Value>(agg_values_.data(), aggs.size())));
  }

  void EmitLate(std::string_view payload, std::string_view key, int64_t time, int64_t offset) {
    out_.clear();
    JsonWriter w(&out_);
    w.BeginObject();
    w.SafeKey("job");
    w.String(job_);
    w.SafeKey("reason");
    w.SafeString("late");
    w.SafeKey("key");
    w.String(key);
    w.SafeKey("event_time");
    w.Int(time);
    w.SafeKey("watermark");
    w.Int(watermark_);
    w.SafeKey("event");
    w.Raw(decoder_.Minify(payload));
    WriteSource(w, offset);
    w.EndObject();
    sink_.Emit(OutputStream::kLate, key, out_);
  }

  void EmitDeadLetter(const SourceRecord& rec, const std::string& reason) {
    out_.clear();
    JsonWriter w(&out_);
    w.BeginObject();
    w.SafeKey("job");
    w.String(job_);
    w.SafeKey("reason");
    w.String(reason);
    WriteSource(w, rec.position.offset);
    // At most max_record_bytes of the record, so that a dead letter always
    // fits the sink: "raw" when that prefix is UTF-8 (cut at a character
    // boundary), else "raw_base64" of a prefix whose encoding fits.
    const size_t limit = static_cast<size_t>(plan_->max_record_bytes());
    std::string_view raw = rec.payload.substr(0, limit);
    bool utf8 = simdjson::validate_utf8(raw.data(), raw.size());
    for (size_t cut = 1; !utf8 && raw.size() < rec.payload.size() && cut <= 3; ++cut) {
      if (raw.size() < cut) break;
      const std::string_view shorter = raw.substr(0, raw.size() - cut);
      utf8 = simdjson::validate_utf8(shorter.data(), shorter.size());
      if (utf8) raw = shorter;
    }
    if (utf8) {
      w.SafeKey("raw");
      w.String(raw);
    } else {
      raw = rec.payload.substr(0, limit / 4 * 3);
      w.SafeKey("raw_base64");
      std::string b64;
      AppendBase64(&b64, raw);
      w.String(b64);
    }
    if (raw.size() < rec.payload.size()) {
      w.SafeKey("raw_bytes");
      w.Int(static_cast<int64_t>(rec.payload.size()));
      w.SafeKey("truncated");
      w.Bool(true);
    }
    w.EndObject();
    sink_.Emit(OutputStream::kDeadLetter, rec.kafka_key, out_);
  }

  friend class TaskProcessor;

  std::shared_ptr<const JobPlan> plan_;
  const Clock& clock_;
  RecordSink& sink_;
  // Decoders used in turn (ProcessBatch); staged_[0]'s also minifies
  // payloads for output and decodes restored rule events.
  static constexpr size_t kStaged = 3;
  static constexpr size_t kTimersAhead = 8;
  static constexpr size_t kEntryAhead = 1;
  Staged staged_[kStaged];
  EventDecoder& decoder_ = staged_[0].decoder;
  ResultWriter results_;
  const std::string job_;
  const int64_t ooo_;
  const int64_t idle_timeout_;
  const int64_t lateness_;
  const size_t stride_;
  RollingRules rolling_;

  // Position and time.
  std::string topic_;
  int32_t partition_ = 0;
  int64_t next_offset_ = -1;
  SourcePosition position_;
  int64_t max_event_time_ = kMinTime;
  int64_t watermark_ = kMinTime;
  bool seen_event_ = false;
  int64_t last_event_proc_time_ = 0;
  TaskCounters counters_;

  // State: the write-back cache of every key, and what fires next.
  KeyTable<KeyState> keys_;
  // Keys changed since the last barrier. An entry keeps its address while it
  // is in the table; one erased since has dirty_gen 0 (and is skipped), and
  // one reused by a new key since is that key, listed again.
  std::vector<KeyState*> touched_keys_;
  // Snapshots: the generation keys changed now belong to, and the snapshot
  // being taken (its keys are written in steps, or when about to change).
  uint32_t gen_ = 1;
  bool snapshot_open_ = false;
  std::vector<KeyState*> snapshot_keys_;
  size_t snapshot_next_ = 0;
  WriteBatch snapshot_batch_;
  std::string encode_buf_;
  // Chunks whose events have all expired since the last barrier: the next
  // snapshot deletes them.
  std::vector<std::string> expired_chunks_;
  TimerQueue<KeyState> timers_;
  std::vector<PendingEvent> pending_;  // slab
  std::vector<uint32_t> pending_heap_;
  std::vector<uint32_t> free_pending_;
  bool checkpointed_once_ = false;
  size_t open_windows_ = 0;               // over all keys
  size_t empty_keys_ = 0;                 // keys left empty since the last sweep
  std::vector<Accumulators> spare_accs_;  // of purged windows, for reuse

  // Scratch reused across events.
  EvalScratch scratch_;
  std::string dedup_value_;  // IsRepeat's buffer
  // Type mismatches counted before the checkpoint this task restored; the
  // scratches count the ones since.
  int64_t type_mismatches_before_ = 0;
  std::vector<EvalScratch> select_scratch_;  // one per select of a rule
  std::string reason_;
  std::string out_;
  // Aggregate values, then (alerts) select values, of the record being written.
  std::vector<Value> agg_values_;
  std::vector<Value> field_views_;
};

bool TaskProcessor::Impl::PendingLater::operator()(uint32_t a, uint32_t b) const {
  const PendingEvent& x = (*events)[a];
  const PendingEvent& y = (*events)[b];
  if (x.time != y.time) return x.time > y.time;
  return x.offset > y.offset;
}

void TaskProcessor::Impl::EncodeKey(const KeyState& ks, std::string* out) {
  out->clear();
  Encoder e(out);
  e.U64(ks.windows.size());
  for (const WindowState& w : ks.windows) {
    e.I64(w.start);
    e.I64(w.end);
    e.Bool(w.fired);
    e.Bool(w.changed);
    e.U64(w.revision);
    e.U64(w.accs.size());
    for (const Accumulator& a : w.accs) a.Encode(e);
  }
  // The rolling events live in chunks (SaveChunk); here only their number.
  e.U64(ks.rolling ? ks.rolling->entries.size() : 0);
  // Dedup values follow only when there are any, so that a key of a job
  // without `dedup` encodes as before.
  if (ks.dedup && !ks.dedup->entries.empty()) {
    e.U64(ks.dedup->entries.size());
    for (const DedupEntry& d : ks.dedup->entries) {
      e.Bytes(d.value);
      e.I64(d.time);
    }
  }
}

bool TaskProcessor::Impl::DecodeKey(std::string_view in, uint64_t version, KeyState* ks,
                                    uint64_t* live) const {
  *live = 0;
  Decoder d(in);
  uint64_t nw = d.U64();
  for (uint64_t i = 0; i < nw && d.ok(); ++i) {
    WindowState w;
    w.start = d.I64();
    w.end = d.I64();
    w.fired = d.Bool();
    w.changed = d.Bool();
    w.revision = static_cast<uint32_t>(d.U64());
    uint64_t na = d.U64();
    if (na != plan_->aggregates().size()) return false;
    for (uint64_t a = 0; a < na && d.ok(); ++a) w.accs.emplace_back().Decode(d);
    ks->windows.push_back(std::move(w));
  }
  uint64_t nr = d.U64();
  if (nr > 0) ks->rolling = std::make_unique<RollingState>();
  if (version == kInlineRollingVersion) {
    // The events follow inline; none is in a chunk yet.
    if (ks->rolling) {
      DecodeRollingEvents(d, nr, *ks->rolling);
      ks->rolling->unsaved = ks->rolling->entries.size();
    }
  } else {
    *live = nr;
  }
  if (d.ok() && !d.done()) {
    const uint64_t nd = d.U64();
    if (nd > 0) ks->dedup = std::make_unique<DedupState>();
    for (uint64_t i = 0; i < nd && d.ok(); ++i) {
      DedupEntry entry;
      entry.value.assign(d.Bytes());
      entry.time = d.I64();
      ks->dedup->entries.push_back(std::move(entry));
    }
  }
  return d.ok() && d.done();
}

void TaskProcessor::Impl::DecodeRollingEvents(Decoder& d, uint64_t n, RollingState& rs) const {
  for (uint64_t i = 0; i < n && d.ok(); ++i) {
    RollingEntry entry;
    entry.time = d.I64();
    entry.offset = d.I64();
    rs.entries.push_back(entry);
    for (size_t j = 0; j < stride_; ++j) rs.values.emplace_back().Decode(d);
  }
}

Status TaskProcessor::Impl::RestoreChunks(const StateStore& store,
                                          std::vector<std::pair<KeyEntry*, uint64_t>>& live) {
  SLUICE_RETURN_IF_ERROR(store.Scan(kChunkPrefix, [&](std::string_view name, std::string_view v) {
    std::string_view key;
    KeyEntry* e = ChunkKeyOf(name, &key) ? keys_.Find(key) : nullptr;
    if (e == nullptr || !e->state.rolling) {
      return Status::Corruption("a chunk of rolling events has no key state");
    }
    RollingState& rs = *e->state.rolling;
    Decoder d(v);
    const uint64_t n = d.U64();
    DecodeRollingEvents(d, n, rs);
    if (!d.ok() || !d.done() || n == 0) {
      return Status::Corruption("a chunk of rolling events of key '" + std::string(key) +
                                "' does not decode");
    }
    rs.entries.back().chunk_end = true;
    return Status::Ok();
  }));
  // Events before the live ones had expired; their chunk's last event had not.
  for (auto& [e, n] : live) {
    RollingState& rs = *e->state.rolling;
    if (rs.entries.size() < n) {
      return Status::Corruption("rolling events of key '" + e->key + "' are missing");
    }
    while (rs.entries.size() > n) {
      rs.entries.pop_front();
      for (size_t j = 0; j < stride_; ++j) rs.values.pop_front();
      ++rs.first_seq;
    }
    // Each rule's running aggregates are built from the events at the key's
    // next event (RollingRules::Evaluate).
  }
  return Status::Ok();
}

Status TaskProcessor::Impl::BeginSnapshot(const StateStore& store) {
  if (snapshot_open_) return Status::FailedPrecondition("a snapshot is open");
  snapshot_batch_ = WriteBatch();
  std::string buf;
  if (!checkpointed_once_) {
    // The store may hold state from an earlier run of this task: replace it.
    // A key without state may still be in the table (until swept, or while
    // a timer refers to it): the store must not keep an old version of it.
    SLUICE_RETURN_IF_ERROR(store.Scan(kKeyPrefix, [&](std::string_view k, std::string_view) {
      const KeyEntry* e = keys_.Find(k.substr(kKeyPrefix.size()));
      if (e == nullptr || e->state.empty()) snapshot_batch_.Delete(std::string(k));
      return Status::Ok();
    }));
    // Every rolling event is written again, in new chunks.
    SLUICE_RETURN_IF_ERROR(store.Scan(kChunkPrefix, [&](std::string_view k, std::string_view) {
      snapshot_batch_.Delete(std::string(k));
      return Status::Ok();
    }));
    expired_chunks_.clear();
    keys_.ForEach([&](KeyEntry& e) {
      if (e.state.rolling) {
        for (RollingEntry& r : e.state.rolling->entries) r.chunk_end = false;
        e.state.rolling->unsaved = e.state.rolling->entries.size();
      }
      MarkDirty(e.state, e.key);
    });
  }
  for (std::string& name : expired_chunks_) snapshot_batch_.Delete(std::move(name));
  expired_chunks_.clear();
  // The keys changed since the last barrier are written by SnapshotStep.
  snapshot_keys_.swap(touched_keys_);
  touched_keys_.clear();
  snapshot_next_ = 0;
  if (++gen_ == 0) gen_ = 1;
  // Queued rule events, in (time, offset) order.
  {
    Encoder e(&buf);
    std::vector<uint32_t> order = pending_heap_;
    PendingLater later{&pending_};
    std::sort(order.begin(), order.end(), [&](uint32_t a, uint32_t b) { return later(b, a); });
    e.U64(order.size());
    for (uint32_t idx : order) {
      const PendingEvent& p = pending_[idx];
      e.I64(p.time);
      e.I64(p.offset);
      e.Bytes(p.key);
      e.Bytes(p.payload);
    }
  }
  snapshot_batch_.Put(std::string(kPendingKey), buf);
  buf.clear();
  {
    Encoder e(&buf);
    e.U64(kStateVersion);
    e.Bytes(plan_->name());
    e.Bytes(topic_);
    e.I64(partition_);
    e.I64(next_offset_);
    e.I64(max_event_time_);
    e.I64(watermark_);
    e.Bool(seen_event_);
    e.I64(last_event_proc_time_);
    for (int64_t c : {counters_.consumed, counters_.processed, counters_.filtered, counters_.late,
                      counters_.dead_lettered, counters_.window_results, counters_.alerts,
                      counters_.deduplicated, counters_.type_mismatches}) {
      e.I64(c);
    }
  }
  snapshot_batch_.Put(std::string(kMetaKey), buf);
  checkpointed_once_ = true;
  snapshot_open_ = true;
  return Status::Ok();
}

bool TaskProcessor::Impl::SnapshotStep(size_t max_keys) {
  for (; snapshot_next_ < snapshot_keys_.size() && max_keys > 0; ++snapshot_next_, --max_keys) {
    KeyState& ks = *snapshot_keys_[snapshot_next_];
    // Already written (copy on write), listed twice, erased, or reused by a
    // key that changed after the barrier.
    if (ks.dirty_gen == 0 || ks.dirty_gen == gen_) continue;
    SnapshotKey(*ks.name, ks);
    // Without state: out of the table, unless timers still refer to it.
    if (ks.empty() && ks.timers == 0) keys_.Erase(*keys_.Find(*ks.name));
  }
  return snapshot_next_ == snapshot_keys_.size();
}

void TaskProcessor::Impl::TakeSnapshot(WriteBatch* batch) {
  *batch = std::move(snapshot_batch_);
  snapshot_batch_ = WriteBatch();
  snapshot_keys_.clear();
  snapshot_next_ = 0;
  snapshot_open_ = false;
  empty_keys_ = 0;
}

Status TaskProcessor::Impl::Restore(const StateStore& store) {
  SLUICE_ASSIGN_OR_RETURN(std::optional<std::string> meta, store.Get(kMetaKey));
  if (!meta) return Status::Ok();  // a new task
  uint64_t version = 0;
  {
    Decoder d(*meta);
    version = d.U64();
    if (version != kStateVersion && version != kInlineRollingVersion) {
      return Status::Corruption("task state has an unknown version");
    }
    std::string_view job = d.Bytes();
    if (d.ok() && job != plan_->name()) {
      return Status::FailedPrecondition("task state belongs to job '" + std::string(job) +
                                        "', not '" + plan_->name() + "'");
    }
    topic_.assign(d.Bytes());
    partition_ = static_cast<int32_t>(d.I64());
    results_.SetSource(topic_, partition_);
    next_offset_ = d.I64();
    max_event_time_ = d.I64();
    watermark_ = d.I64();
    seen_event_ = d.Bool();
    last_event_proc_time_ = d.I64();
    for (int64_t* c :
         {&counters_.consumed, &counters_.processed, &counters_.filtered, &counters_.late,
          &counters_.dead_lettered, &counters_.window_results, &counters_.alerts}) {
      *c = d.I64();
    }
    // Metadata written before these counters existed ends here.
    if (d.ok() && !d.done()) {
      counters_.deduplicated = d.I64();
      type_mismatches_before_ = d.I64();
      counters_.type_mismatches = type_mismatches_before_;
    }
    if (!d.ok()) return Status::Corruption("task metadata does not decode");
  }
  std::vector<std::pair<KeyEntry*, uint64_t>> live_rolling;
  SLUICE_RETURN_IF_ERROR(store.Scan(kKeyPrefix, [&](std::string_view k, std::string_view v) {
    KeyState ks;
    uint64_t live = 0;
    if (!DecodeKey(v, version, &ks, &live)) {
      return Status::Corruption("state of key '" + std::string(k.substr(kKeyPrefix.size())) +
                                "' does not decode");
    }
    ks.persisted = true;
    open_windows_ += ks.windows.size();
    bool added = false;
    KeyEntry& e = keys_.FindOrAdd(k.substr(kKeyPrefix.size()), &added);
    if (!added) return Status::Corruption("key state listed twice");
    e.state = std::move(ks);
    e.state.name = &e.key;
    if (live > 0) live_rolling.emplace_back(&e, live);
    KeyState& restored = e.state;
    // Timers follow from the windows.
    for (const WindowState& w : restored.windows) {
      if (!w.fired || w.changed) {
        PushTimer(restored, w.end - 1, w.start, w.end, TimerKind::kFire);
      } else {
        PushTimer(restored, SaturatingAdd(w.end - 1, lateness_), w.start, w.end, TimerKind::kPurge);
      }
    }
    if (restored.dedup) {
      const int64_t within = plan_->dedup() ? plan_->dedup()->within_ms : 0;
      for (const DedupEntry& d : restored.dedup->entries) {
        PushTimer(restored, SaturatingAdd(d.time, within), 0, 0, TimerKind::kExpireDedup);
      }
    }
    return Status::Ok();
  }));
  if (version != kInlineRollingVersion) SLUICE_RETURN_IF_ERROR(RestoreChunks(store, live_rolling));
  SLUICE_ASSIGN_OR_RETURN(std::optional<std::string> pending, store.Get(kPendingKey));
  if (pending) {
    Decoder d(*pending);
    uint64_t n = d.U64();
    for (uint64_t i = 0; i < n && d.ok(); ++i) {
      PendingEvent p;
      p.time = d.I64();
      p.offset = d.I64();
      p.key.assign(d.Bytes());
      p.payload.assign(d.Bytes());
      DecodedEvent ev;
      if (d.ok()) {
        if (!decoder_.Decode(p.payload, 0, /*check_time_bounds=*/false, &ev, &reason_)) {
          return Status::Corruption("a queued event does not decode: " + reason_);
        }
        p.fields.resize(ev.fields.size());
        for (size_t f = 0; f < ev.fields.size(); ++f) p.fields[f].Set(ev.fields[f]);
      }
      pending_.push_back(std::move(p));
      pending_heap_.push_back(static_cast<uint32_t>(pending_.size() - 1));
      std::push_heap(pending_heap_.begin(), pending_heap_.end(), PendingLater{&pending_});
    }
    if (!d.ok()) return Status::Corruption("queued rule events do not decode");
  }
  // State of the older version is rewritten whole at the first checkpoint.
  checkpointed_once_ = version == kStateVersion;
  return Status::Ok();
}

TaskProcessor::TaskProcessor(std::shared_ptr<const JobPlan> plan, const Clock& clock,
                             RecordSink& sink)
    : impl_(std::make_unique<Impl>(std::move(plan), clock, sink)) {}
TaskProcessor::~TaskProcessor() = default;

void TaskProcessor::ProcessBatch(std::span<const SourceRecord> records) {
  impl_->ProcessBatch(records);
}
void TaskProcessor::OnProcessingTime() { impl_->OnProcessingTime(); }
void TaskProcessor::Drain() { impl_->Drain(); }
Status TaskProcessor::Checkpoint(StateStore& store) {
  WriteBatch batch;
  SLUICE_RETURN_IF_ERROR(Snapshot(store, &batch));
  return store.Write(batch);
}
Status TaskProcessor::Snapshot(const StateStore& store, WriteBatch* batch) {
  SLUICE_RETURN_IF_ERROR(impl_->BeginSnapshot(store));
  impl_->SnapshotStep(SIZE_MAX);
  impl_->TakeSnapshot(batch);
  return Status::Ok();
}
Status TaskProcessor::BeginSnapshot(const StateStore& store) { return impl_->BeginSnapshot(store); }
bool TaskProcessor::SnapshotStep(size_t max_keys) { return impl_->SnapshotStep(max_keys); }
void TaskProcessor::TakeSnapshot(WriteBatch* batch) { impl_->TakeSnapshot(batch); }
bool TaskProcessor::snapshot_open() const { return impl_->snapshot_open(); }
Status TaskProcessor::Restore(const StateStore& store) { return impl_->Restore(store); }
int64_t TaskProcessor::watermark() const { return impl_->watermark(); }
int64_t TaskProcessor::next_offset() const { return impl_->next_offset(); }
const TaskCounters& TaskProcessor::counters() const { return impl_->counters(); }
SourcePosition TaskProcessor::position() const { return impl_->position(); }
size_t TaskProcessor::open_windows() const { return impl_->open_windows(); }
size_t TaskProcessor::queued_rule_events() const { return impl_->queued_rule_events(); }

}  // namespace sluice::engine
