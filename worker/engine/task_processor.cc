#include "worker/engine/task_processor.h"

#include <algorithm>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "worker/engine/event_decoder.h"
#include "worker/engine/key_filter.h"
#include "worker/engine/key_state.h"
#include "worker/engine/key_table.h"
#include "worker/engine/result_writer.h"
#include "worker/engine/rolling_rules.h"
#include "worker/engine/side_output_writer.h"
#include "worker/engine/state_codec.h"
#include "worker/engine/state_spill.h"
#include "worker/engine/time_util.h"
#include "worker/engine/timer_queue.h"
#include "worker/engine/window_operator.h"

namespace sluice::engine {

// The driver of one task: it decodes, filters and de-duplicates each event,
// hands it to the job's operator (WindowOperator for a window job, the rules
// and RollingRules for a rule job), moves the watermark and fires what is
// due, and keeps every key's state (KeyState) with the marks its snapshots
// need. What the store holds, and how, is the state codec's (state_codec.h).
class TaskProcessor::Impl {
 public:
  Impl(std::shared_ptr<const JobPlan> plan, const Clock& clock, RecordSink& sink)
      : plan_(std::move(plan)),
        clock_(clock),
        sink_(sink),
        staged_{Staged(*plan_), Staged(*plan_), Staged(*plan_)},
        results_(*plan_),
        side_(plan_->name(), plan_->max_record_bytes()),
        codec_(*plan_),
        ooo_(plan_->spec().source().max_out_of_orderness_ms()),
        idle_timeout_(plan_->spec().source().idle_timeout_ms()),
        stride_(plan_->rolling_slots().size()),
        window_extra_bytes_(WindowExtraBytes(*plan_)),
        rolling_(*plan_),
        windows_(*plan_, timers_, results_, sink_, counters_, scratch_) {
    size_t max_values = 0;
    size_t max_selects = 0;
    for (const RuleDef& r : plan_->rules()) {
      max_values = std::max(max_values, r.aggregates.size() + r.selects.size());
      max_selects = std::max(max_selects, r.selects.size());
    }
    agg_values_.resize(max_values);
    select_scratch_.resize(max_selects);
  }

  void ProcessBatch(std::span<const SourceRecord> records) {
    if (records.empty() || !status_.ok()) return;
    const int64_t now = clock_.NowMillis();
    if (topic_.empty()) {
      topic_.assign(records.front().position.topic);
      partition_ = records.front().position.partition;
      results_.SetSource(topic_, partition_);
      side_.SetSource(topic_, partition_);
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
    MaybeEvict();
    if (touched_keys_.size() > 2 * keys_.size() + 4096) CompactTouchedKeys();
    CountTypeMismatches();
  }

  // Keys that leave the table and come back (the budget's evictions, sweeps
  // of empty keys) are listed again each time: without a checkpoint to
  // empty the list, it would grow with the traffic, not with the keys. Keeps
  // each key changed since the barrier once.
  void CompactTouchedKeys() {
    std::erase_if(touched_keys_, [&](const KeyState* ks) { return ks->dirty_gen != gen_; });
    std::sort(touched_keys_.begin(), touched_keys_.end());
    touched_keys_.erase(std::unique(touched_keys_.begin(), touched_keys_.end()),
                        touched_keys_.end());
    if (touched_keys_.capacity() > 4 * touched_keys_.size() + 4096) touched_keys_.shrink_to_fit();
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
  Status RestoreFrom(const StateStore& store);

  int64_t watermark() const { return watermark_; }
  int64_t next_offset() const { return next_offset_; }
  SourcePosition position() const { return position_; }
  const TaskCounters& counters() const { return counters_; }
  size_t open_windows() const { return windows_.open_windows(); }
  size_t queued_rule_events() const { return pending_.size(); }

  void SetStateSpill(StateStore* spill, size_t budget_bytes) {
    spill_ = spill != nullptr ? std::make_unique<StateSpill>(*spill) : nullptr;
    budget_ = budget_bytes;
    spill_timers_after_.clear();
    filter_.Clear(std::max<size_t>(budget_bytes / 64, 1 << 16));
  }
  void SetStateMemoryBudget(size_t budget_bytes) { budget_ = budget_bytes; }
  StateMemoryStats state_memory() const {
    StateMemoryStats m;
    m.budget_bytes = spill_ ? budget_ : 0;
    m.resident_bytes = ResidentBytes();
    m.resident_keys = keys_.size();
    m.spilled_keys = spilled_keys_;
    m.evicted = keys_evicted_;
    m.loaded = keys_loaded_;
    return m;
  }
  const Status& status() const { return status_; }

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
    KeyEntry* found = FindKey(ev.key);
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
    ++dedup_entries_;
    PushTimer(timers_, ks, SaturatingAdd(t, dedup.within_ms), 0, TimerKind::kExpireDedup);
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
    dedup_entries_ -= std::erase_if(entries, expired);
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
    // Queued until the watermark reaches the event's time.
    pending_.Push(ev.event_time, rec.position.offset, ev.key, rec.payload, ev.fields);
  }

  // Evaluates the rolling rules for a queued event whose time the watermark
  // has reached (RollingRules), then adds it to its key's rolling state. An
  // expired event that ends a chunk of the store deletes that chunk at the
  // next snapshot.
  void EvaluateRolling(const PendingEvent& p) {
    field_views_.resize(p.fields.size());
    for (size_t i = 0; i < p.fields.size(); ++i) field_views_[i] = p.fields[i].view();
    KeyState& key_state = MutableKey(p.key);
    if (!key_state.rolling) key_state.rolling = std::make_unique<RollingState>();
    const size_t before = key_state.rolling->entries.size();
    RollingAlerts alerts{this, &p};
    rolling_.Evaluate(*key_state.rolling, p.time, p.offset, field_views_, agg_values_, scratch_,
                      alerts, [&](const RollingEntry& expired) {
                        if (expired.chunk_end) {
                          expired_chunks_.push_back(ChunkName(p.key, expired.time, expired.offset));
                        }
                      });
    rolling_entries_ += key_state.rolling->entries.size();
    rolling_entries_ -= before;
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

  // A key is added (or marked changed) only for an event a window takes.
  // Sessions look the key up first, to judge the event; a key found then is
  // marked changed in place, without a second lookup.
  void OnWindowEvent(const SourceRecord& rec, const DecodedEvent& ev) {
    KeyEntry* found = windows_.judges_by_key() ? FindKey(ev.key) : nullptr;
    if (!windows_.Accepts(found != nullptr ? &found->state : nullptr, ev.event_time, watermark_)) {
      ++counters_.late;
      EmitLate(rec.payload, ev.key, ev.event_time, rec.position.offset);
      return;
    }
    KeyState* ks = nullptr;
    if (found != nullptr) {
      ks = &found->state;
      MarkDirty(*ks, ev.key);
    } else {
      ks = &MutableKey(ev.key);
    }
    windows_.Add(*ks, ev, rec.position.offset, watermark_);
    ++counters_.processed;
  }

  // ---- Timers and the watermark -------------------------------------------

  void OnTimer(const KeyTimer& timer) {
    KeyState& ks = *timer.owner;
    --ks.timers;
    if (timer.kind == TimerKind::kExpireDedup) {
      ExpireDedup(ks, timer.key());
      return;
    }
    WindowState* win = windows_.Find(ks, timer);
    if (win == nullptr) return;  // merged away or purged already
    // Firing changes the window (fired, revision); purging removes it.
    MarkDirty(ks, timer.key());
    const bool purged = windows_.OnTimer(ks, timer.key(), *win, timer.kind);
    // An empty key stays in the table until the next checkpoint (or sweep),
    // so a key seen again soon does not cost a new entry.
    if (purged && ks.empty() && ++empty_keys_ > kSweepEmptyKeys) SweepEmptyKeys();
  }

  static constexpr size_t kSweepEmptyKeys = 100'000;

  // Forgets keys without state (their deletion reaches the store through
  // touched_keys_ at the next checkpoint). A key a timer still refers to stays.
  void SweepEmptyKeys() {
    // A key read back leaves deletes in the spill store's batch; once it is
    // out of the table, the next read of it must find them written.
    FlushSpill();
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

  void AdvanceWatermark(int64_t wm) {
    if (wm <= watermark_) return;
    watermark_ = wm;
    if (spill_) {
      FireTimersWithSpill();
    } else {
      FireTimers();
    }
    while (const PendingEvent* p = pending_.Due(watermark_)) {
      EvaluateRolling(*p);
      pending_.Pop();
    }
  }

  void FireTimers() {
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
  }

  // The same, when timers of keys out of memory wait in the spill store: in
  // the order of all timers, a spilled one reads its key back (its timers go
  // into the queue, itself among them), and the queue fires. Keys leave
  // memory between timers when the budget asks.
  void FireTimersWithSpill();

  // ---- State and the copy-on-write snapshot --------------------------------

  KeyState& MutableKey(std::string_view key) {
    if (spilled_keys_ > 0) {
      if (KeyEntry* found = FindKey(key)) {
        MarkDirty(found->state, key);
        return found->state;
      }
    }
    bool added = false;
    KeyEntry& e = keys_.FindOrAdd(key, &added);
    if (added) e.state.name = &e.key;
    e.state.hot = true;
    MarkDirty(e.state, key);
    return e.state;
  }

  // ---- The state memory budget (state_spill.h) ----

  // The key's entry, read back from the spill store if it is there, or
  // nullptr; marked as used.
  KeyEntry* FindKey(std::string_view key) {
    KeyEntry* e = keys_.Find(key);
    if (e == nullptr && spilled_keys_ > 0) e = LoadKey(key);
    if (e != nullptr) e->state.hot = true;
    return e;
  }
  KeyEntry* LoadKey(std::string_view key);
  // Moves keys out of memory while the state is over its budget.
  void MaybeEvict();
  // Writes the spill store's batch; an error fails the task.
  void FlushSpill();
  bool Evictable(const KeyState& ks) const;
  void EvictKey(KeyEntry& e);
  // Calls f(time, start, kind) for each timer a key's state needs.
  template <typename F>
  void ForEachTimer(const KeyState& ks, F&& f) const {
    windows_.ForEachTimer(ks, f);
    ForEachDedupTimer(ks, f);
  }
  template <typename F>
  void ForEachDedupTimer(const KeyState& ks, F&& f) const {
    if (!ks.dedup) return;
    const int64_t within = plan_->dedup() ? plan_->dedup()->within_ms : 0;
    for (const DedupEntry& d : ks.dedup->entries) {
      f(SaturatingAdd(d.time, within), 0, TimerKind::kExpireDedup);
    }
  }
  // Sets the timers of a key read back from a store.
  void OnKeyRestored(KeyState& ks) {
    windows_.OnRestored(ks);
    if (ks.dedup) dedup_entries_ += ks.dedup->entries.size();
    ForEachDedupTimer(ks, [&](int64_t time, int64_t start, TimerKind kind) {
      PushTimer(timers_, ks, time, start, kind);
    });
  }
  size_t ResidentBytes() const;
  void RebuildFilter();
  void SpillFailed(const Status& s) {
    if (status_.ok()) status_ = s;
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
    std::string store_key = KeyStateName(key);
    if (ks.empty()) {
      if (ks.persisted) snapshot_batch_.Delete(std::move(store_key));
      ks.persisted = false;
      return;
    }
    codec_.EncodeKey(ks, &encode_buf_);
    snapshot_batch_.Put(std::move(store_key), encode_buf_);
    ks.persisted = true;
    if (ks.rolling && ks.rolling->unsaved > 0) SaveChunk(key, *ks.rolling);
  }

  // A key's rolling-rule events live in the store apart from the key's entry,
  // in chunks (state_codec.h): a snapshot writes the events added since the
  // last one as one chunk, and deletes a chunk once its last event has
  // expired, so a checkpoint costs what changed, not the whole list (as
  // Flink's ListState on RocksDB). The key's entry holds how many events are
  // live; a restore drops the expired ones at the front of the first chunk.
  // The rules' running aggregates are not stored: they are rebuilt from the
  // events at the key's next event.
  //
  // Writes the events no chunk holds yet as a new chunk.
  void SaveChunk(std::string_view key, RollingState& rs) {
    codec_.EncodeChunk(rs, rs.entries.size() - rs.unsaved, &encode_buf_);
    const RollingEntry& last = rs.entries.back();
    rs.entries.back().chunk_end = true;
    rs.unsaved = 0;
    snapshot_batch_.Put(ChunkName(key, last.time, last.offset), encode_buf_);
  }

  Status RestoreChunks(const StateStore& store, std::vector<std::pair<KeyEntry*, uint64_t>>& live);

  // The same for keys out of memory: their events no chunk holds yet (all:
  // every event, chunked anew) go in a chunk of the open snapshot, and the
  // spill store keeps the chunk marks.
  Status SaveSpilledChunks(const std::vector<std::string>& keys, bool all) {
    for (const std::string& key : keys) {
      SLUICE_ASSIGN_OR_RETURN(std::optional<std::string> events, spill_->LoadRolling(key));
      if (!events) continue;
      RollingState rs;
      if (!codec_.DecodeSpilledRolling(*events, rs)) {
        return Status::Corruption("the spilled rolling events of key '" + key + "' do not decode");
      }
      if (all) {
        for (RollingEntry& r : rs.entries) r.chunk_end = false;
        rs.unsaved = rs.entries.size();
      }
      if (rs.unsaved == 0) continue;
      SaveChunk(key, rs);
      codec_.EncodeSpilledRolling(rs, &encode_buf_);
      spill_->EvictRolling(key, encode_buf_);
    }
    return spill_->Flush();
  }

  // ---- Output ------------------------------------------------------------

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

  void EmitLate(std::string_view payload, std::string_view key, int64_t time, int64_t offset) {
    sink_.Emit(OutputStream::kLate, key,
               side_.Late(key, time, watermark_, decoder_.Minify(payload), offset));
  }

  void EmitDeadLetter(const SourceRecord& rec, const std::string& reason) {
    sink_.Emit(OutputStream::kDeadLetter, rec.kafka_key,
               side_.DeadLetter(reason, rec.payload, rec.position.offset));
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
  SideOutputWriter side_;
  const StateCodec codec_;
  const int64_t ooo_;
  const int64_t idle_timeout_;
  const size_t stride_;
  // What a window's min, max, first, last, duration and count_distinct keep
  // on the heap (Accumulator::NeedsExtra), for the state memory estimate.
  const size_t window_extra_bytes_;
  static size_t WindowExtraBytes(const JobPlan& plan) {
    size_t n = 0;
    for (const AggregateDef& a : plan.aggregates()) n += Accumulator::NeedsExtra(a.fn) ? 1 : 0;
    return n * Accumulator::ExtraBytes();
  }
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

  // Scratch reused across events.
  EvalScratch scratch_;
  std::string dedup_value_;  // IsRepeat's buffer
  // Type mismatches counted before the checkpoint this task restored; the
  // scratches count the ones since.
  int64_t type_mismatches_before_ = 0;
  std::vector<EvalScratch> select_scratch_;  // one per select of a rule
  std::string reason_;
  // Aggregate values, then select values, of the alert being written.
  std::vector<Value> agg_values_;
  std::vector<Value> field_views_;

  // State: the write-back cache of every key, and what fires next.
  KeyTable<KeyState> keys_;
  KeyTimers timers_;
  WindowOperator windows_;  // window jobs
  PendingQueue pending_;    // rule jobs: events waiting for the watermark
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
  // The size of the last checkpoint's batch: the budget keeps room for the
  // next (ResidentBytes).
  size_t checkpoint_reserve_ = 0;
  std::string encode_buf_;
  // Chunks whose events have all expired since the last barrier: the next
  // snapshot deletes them.
  std::vector<std::string> expired_chunks_;
  bool checkpointed_once_ = false;
  size_t empty_keys_ = 0;  // keys left empty since the last sweep
  size_t dedup_entries_ = 0;

  // The state memory budget: keys out of memory are in the spill store, and
  // the filter holds every key put there since it was last built (so a key
  // it does not hold is not read from the store).
  std::unique_ptr<StateSpill> spill_;
  size_t budget_ = 0;
  KeyFilter filter_;
  size_t spilled_keys_ = 0;
  size_t evict_hand_ = 0;              // the next slot the budget looks at
  size_t evict_floor_ = 0;             // what the last pass could not go below
  int64_t spill_min_time_ = kMaxTime;  // no spilled timer is earlier
  std::vector<KeyState*> evicted_;     // in the pass, for their timers
  std::vector<SpilledTimer> due_;      // spilled timers being fired
  // The last spilled timer read. Every timer spilled later comes after it:
  // a key with a due timer stays in memory, and the watermark only rises.
  std::string spill_timers_after_;
  bool restoring_ = false;
  size_t rolling_entries_ = 0;  // rolling-rule events in memory, over all keys
  int64_t keys_evicted_ = 0;
  int64_t keys_loaded_ = 0;
  Status status_;
};

Status TaskProcessor::Impl::RestoreChunks(const StateStore& store,
                                          std::vector<std::pair<KeyEntry*, uint64_t>>& live) {
  SLUICE_RETURN_IF_ERROR(store.Scan(kChunkPrefix, [&](std::string_view name, std::string_view v) {
    std::string_view key;
    KeyEntry* e = ChunkKeyOf(name, &key) ? keys_.Find(key) : nullptr;
    if (e == nullptr || !e->state.rolling) {
      return Status::Corruption("a chunk of rolling events has no key state");
    }
    RollingState& rs = *e->state.rolling;
    if (!codec_.DecodeChunk(v, rs)) {
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

// ---- The state memory budget ---------------------------------------------

size_t TaskProcessor::Impl::ResidentBytes() const {
  // The table's entries (the first window and its first accumulator are
  // inline) and index, further windows and accumulators, timers, dedup
  // values, and the filter of keys out of memory.
  const size_t keys = keys_.size();
  const size_t windows = windows_.open_windows();
  const size_t aggs = plan_->aggregates().size();
  size_t bytes = keys * (sizeof(KeyEntry) + 2 * sizeof(uint64_t));
  if (windows > keys) bytes += (windows - keys) * sizeof(WindowState);
  if (aggs > 1) bytes += windows * (aggs - 1) * sizeof(Accumulator);
  // Min, max, first, last, duration and count_distinct keep more on the heap
  // (strings beyond their inline bytes and distinct values not counted).
  bytes += windows * window_extra_bytes_;
  bytes += timers_.bytes();
  bytes += dedup_entries_ * (sizeof(DedupEntry) + 16);
  // A rolling event: its entry and values (twice, for the lists' spare
  // room), and about 16 bytes in each rule's running aggregates. A key of a
  // job with rolling rules: its lists and its rules' state.
  bytes += rolling_entries_ *
           (2 * (sizeof(RollingEntry) + stride_ * sizeof(OwnedValue)) + 16 * plan_->rules().size());
  if (plan_->has_rolling_rules()) {
    bytes +=
        keys * (sizeof(RollingState) + plan_->rules().size() * (sizeof(RollingRuleState) + 64));
  }
  bytes += filter_.bytes();
  // The checkpoint's batch: the one being built, or room for the next, as
  // large as the last (which the caller may still be writing), up to half
  // the budget. So the keys in memory make room for it, and it is not on
  // top of the budget. (A first checkpoint, which holds every key, can be
  // larger than the budget: moving keys out would not make it smaller.)
  bytes += std::min(std::max(snapshot_open_ ? snapshot_batch_.bytes() : 0, checkpoint_reserve_),
                    budget_ / 2);
  return bytes;
}

bool TaskProcessor::Impl::Evictable(const KeyState& ks) const {
  // A key with rolling-rule events stays while they are being read from
  // their chunks.
  if (ks.rolling && restoring_) return false;
  // A timer due now is being fired, or about to be.
  bool due = false;
  ForEachTimer(ks, [&](int64_t time, int64_t, TimerKind) { due = due || time <= watermark_; });
  return !due;
}

void TaskProcessor::Impl::EvictKey(KeyEntry& e) {
  KeyState& ks = e.state;
  const std::string_view key = e.key;
  // A key of the open snapshot goes into it first (copy on write).
  if (ks.dirty_gen != 0 && ks.dirty_gen != gen_) SnapshotKey(key, ks);
  const bool dirty = ks.dirty_gen == gen_;
  bool spilled = false;
  if (!ks.empty()) {
    codec_.EncodeKey(ks, &encode_buf_);
    spill_->Evict(key, &encode_buf_, dirty, ks.persisted);
    if (ks.rolling && !ks.rolling->entries.empty()) {
      codec_.EncodeSpilledRolling(*ks.rolling, &encode_buf_);
      spill_->EvictRolling(key, encode_buf_);
      rolling_entries_ -= ks.rolling->entries.size();
    }
    ForEachTimer(ks, [&](int64_t time, int64_t start, TimerKind kind) {
      spill_->EvictTimer(key, time, start, kind);
      spill_min_time_ = std::min(spill_min_time_, time);
    });
    windows_.OnEvicted(ks);
    if (ks.dedup) dedup_entries_ -= ks.dedup->entries.size();
    spilled = true;
  } else if (dirty && ks.persisted) {
    spill_->Evict(key, nullptr, /*dirty=*/true, /*persisted=*/true);  // a delete to write
    spilled = true;
  }
  if (spilled) {
    filter_.Add(KeyTable<KeyState>::Hash(key));
    ++spilled_keys_;
  }
  if (ks.timers > 0) evicted_.push_back(&ks);
  ks.dirty_gen = 0;  // lists of changed keys that hold it skip it
  ++keys_evicted_;
  keys_.Erase(e);
  // The slot waits for another key: what the state holds on the heap goes
  // now (its timers are taken out by pointer after the pass).
  decltype(ks.windows)().swap(ks.windows);
  ks.rolling.reset();
  ks.dedup.reset();
}

void TaskProcessor::Impl::FlushSpill() {
  if (!spill_ || !status_.ok()) return;
  if (Status s = spill_->Flush(); !s.ok()) SpillFailed(s);
}

void TaskProcessor::Impl::MaybeEvict() {
  if (!spill_ || budget_ == 0 || !status_.ok()) return;
  const size_t bytes = ResidentBytes();
  if (bytes <= budget_ || bytes <= evict_floor_ + evict_floor_ / 10) {
    FlushSpill();  // what keys read back leave behind
    return;
  }
  // Down to 90% of the budget, so that a pass is not needed at every batch.
  // Timers of evicted keys leave the queue after the pass; until then the
  // estimate counts them out by hand.
  const size_t target = budget_ - budget_ / 10;
  size_t leaving_timers = 0;
  const size_t timer_bytes = KeyTimers::kBytesPerTimer;
  auto estimate = [&] { return ResidentBytes() - leaving_timers * timer_bytes; };
  // A clock over the table's slots: a key used since the hand last passed
  // it gets another round.
  const size_t slots = keys_.slots();
  for (size_t visited = 0; visited < 2 * slots && estimate() > target; ++visited) {
    if (evict_hand_ >= slots) evict_hand_ = 0;
    KeyEntry* e = keys_.LiveAt(evict_hand_++);
    if (e == nullptr) continue;
    if (e->state.hot) {
      e->state.hot = false;
      continue;
    }
    if (!Evictable(e->state)) continue;
    leaving_timers += e->state.timers;
    EvictKey(*e);
  }
  FlushSpill();
  if (!evicted_.empty()) {
    std::sort(evicted_.begin(), evicted_.end());
    timers_.RemoveIf([&](const KeyTimer& t) {
      return std::binary_search(evicted_.begin(), evicted_.end(), t.owner);
    });
    evicted_.clear();
  }
  // What could not go: wait for the state to grow a tenth before trying again.
  evict_floor_ = ResidentBytes() > budget_ ? ResidentBytes() : 0;
  if (filter_.added() > filter_.capacity()) RebuildFilter();
}

void TaskProcessor::Impl::RebuildFilter() {
  filter_.Clear(2 * std::max(spilled_keys_, filter_.capacity()));
  size_t n = 0;
  const Status s = spill_->ForEachSpilledKey([&](std::string_view key) {
    filter_.Add(KeyTable<KeyState>::Hash(key));
    ++n;
  });
  if (!s.ok()) SpillFailed(s);
  spilled_keys_ = n;
}

KeyEntry* TaskProcessor::Impl::LoadKey(std::string_view key) {
  if (!status_.ok() || !filter_.MayContain(KeyTable<KeyState>::Hash(key))) return nullptr;
  Result<std::optional<StateSpill::Loaded>> loaded = spill_->Load(key);
  if (!loaded.ok()) {
    SpillFailed(loaded.status());
    return nullptr;
  }
  if (!loaded->has_value()) return nullptr;
  const StateSpill::Loaded& l = **loaded;
  KeyState ks;
  if (l.state) {
    uint64_t live = 0;
    if (!codec_.DecodeKey(*l.state, kStateVersion, &ks, &live)) {
      SpillFailed(Status::Corruption("the spilled state of key '" + std::string(key) +
                                     "' does not decode"));
      return nullptr;
    }
    if (live > 0) {
      Result<std::optional<std::string>> events = spill_->LoadRolling(key);
      if (!events.ok()) {
        SpillFailed(events.status());
        return nullptr;
      }
      if (!ks.rolling) ks.rolling = std::make_unique<RollingState>();
      if (!events->has_value() || !codec_.DecodeSpilledRolling(**events, *ks.rolling) ||
          ks.rolling->entries.size() != live) {
        SpillFailed(Status::Corruption("the spilled rolling events of key '" + std::string(key) +
                                       "' are missing or do not decode"));
        return nullptr;
      }
      spill_->ForgetRolling(key);
      rolling_entries_ += live;
    }
  }
  KeyEntry& e = keys_.FindOrAdd(key);
  e.state = std::move(ks);
  e.state.name = &e.key;
  e.state.persisted = l.persisted;
  spill_->Forget(key, l.dirty);
  ForEachTimer(e.state, [&](int64_t time, int64_t start, TimerKind kind) {
    spill_->ForgetTimer(key, time, start, kind);
  });
  // The deletes go with the next Flush: at the end of the batch or of an
  // eviction pass, or before the next read of the store.
  OnKeyRestored(e.state);
  if (l.dirty) {
    // Changed since the last barrier (whose snapshot took every such key
    // out of the spill store): it stays changed.
    e.state.dirty_gen = gen_;
    touched_keys_.push_back(&e.state);
  }
  if (spilled_keys_ > 0) --spilled_keys_;
  ++keys_loaded_;
  return &e;
}

namespace {

// Whether a spilled timer comes before one in memory, in the TimerQueue's
// order (time, key, start, kind).
bool SpilledFirst(const SpilledTimer& s, const KeyTimer& m) {
  if (s.time != m.time) return s.time < m.time;
  if (const int c = s.key.compare(m.key()); c != 0) return c < 0;
  if (s.start != m.start) return s.start < m.start;
  return s.kind < m.kind;
}

}  // namespace

void TaskProcessor::Impl::FireTimersWithSpill() {
  due_.clear();
  size_t due_pos = 0;
  std::string& after = spill_timers_after_;
  bool more = spill_min_time_ <= watermark_;
  size_t fired = 0;
  for (;;) {
    if (due_pos == due_.size() && more) {
      due_.clear();
      due_pos = 0;
      int64_t next = kMaxTime;
      if (Status s = spill_->DueTimers(watermark_, after, 1024, &due_, &next); !s.ok()) {
        SpillFailed(s);
        return;
      }
      if (!due_.empty()) {
        const SpilledTimer& last = due_.back();
        after = SpilledTimerName(last.time, last.key, last.start, last.kind);
      }
      more = next <= watermark_;
      if (!more) spill_min_time_ = next;
    }
    const SpilledTimer* spilled = due_pos < due_.size() ? &due_[due_pos] : nullptr;
    const bool in_memory = !timers_.empty() && timers_.next_time() <= watermark_;
    if (spilled != nullptr && (!in_memory || SpilledFirst(*spilled, timers_.Peek()))) {
      ++due_pos;
      // Its timers join the queue; a key in memory has them there already.
      if (keys_.Find(spilled->key) == nullptr) LoadKey(spilled->key);
      if (!status_.ok()) return;
      continue;
    }
    if (!in_memory) break;
    OnTimer(timers_.Pop());
    if (++fired % 256 == 0) MaybeEvict();
  }
  FlushSpill();
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
    // And every key out of memory (after the deletes above, which it undoes),
    // with all its rolling events in a new chunk.
    if (spill_) {
      std::vector<std::string> rolling_keys;
      SLUICE_RETURN_IF_ERROR(spill_->ForEachKey([&](std::string_view key, std::string_view v) {
        snapshot_batch_.Put(KeyStateName(key), std::string(v));
        if (plan_->has_rolling_rules()) rolling_keys.emplace_back(key);
        return Status::Ok();
      }));
      SLUICE_RETURN_IF_ERROR(SaveSpilledChunks(rolling_keys, /*all=*/true));
    }
  }
  // Keys out of memory that changed since the last barrier go in as they are.
  if (spill_) {
    std::vector<std::string> rolling_keys;
    SLUICE_RETURN_IF_ERROR(
        spill_->TakeChanged([&](std::string_view key, const std::string* state, bool persisted) {
          if (state != nullptr) {
            snapshot_batch_.Put(KeyStateName(key), *state);
            if (plan_->has_rolling_rules()) rolling_keys.emplace_back(key);
          } else {
            if (persisted) snapshot_batch_.Delete(KeyStateName(key));
            if (spilled_keys_ > 0) --spilled_keys_;  // nothing left of it
          }
        }));
    SLUICE_RETURN_IF_ERROR(SaveSpilledChunks(rolling_keys, /*all=*/false));
  }
  for (std::string& name : expired_chunks_) snapshot_batch_.Delete(std::move(name));
  expired_chunks_.clear();
  // The keys changed since the last barrier are written by SnapshotStep.
  snapshot_keys_.swap(touched_keys_);
  touched_keys_.clear();
  snapshot_next_ = 0;
  if (++gen_ == 0) gen_ = 1;
  // Queued rule events, in (time, offset) order.
  EncodePending(pending_.InOrder(), &buf);
  snapshot_batch_.Put(std::string(kPendingKey), buf);
  TaskMeta meta;
  meta.job = plan_->name();
  meta.topic = topic_;
  meta.partition = partition_;
  meta.next_offset = next_offset_;
  meta.max_event_time = max_event_time_;
  meta.watermark = watermark_;
  meta.seen_event = seen_event_;
  meta.last_event_proc_time = last_event_proc_time_;
  meta.counters = counters_;
  EncodeTaskMeta(meta, &buf);
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
  checkpoint_reserve_ = snapshot_batch_.bytes();
  *batch = std::move(snapshot_batch_);
  snapshot_batch_ = WriteBatch();
  snapshot_keys_.clear();
  snapshot_next_ = 0;
  snapshot_open_ = false;
  empty_keys_ = 0;
}

Status TaskProcessor::Impl::Restore(const StateStore& store) {
  // Keys whose rolling events are still to be read from their chunks must
  // not leave memory meanwhile.
  restoring_ = true;
  const Status s = RestoreFrom(store);
  restoring_ = false;
  rolling_entries_ = 0;
  keys_.ForEach([&](const KeyEntry& e) {
    if (e.state.rolling) rolling_entries_ += e.state.rolling->entries.size();
  });
  if (s.ok()) MaybeEvict();
  return s.ok() ? status_ : s;
}

Status TaskProcessor::Impl::RestoreFrom(const StateStore& store) {
  SLUICE_ASSIGN_OR_RETURN(std::optional<std::string> meta_bytes, store.Get(kMetaKey));
  if (!meta_bytes) return Status::Ok();  // a new task
  TaskMeta meta;
  SLUICE_RETURN_IF_ERROR(DecodeTaskMeta(*meta_bytes, plan_->name(), &meta));
  topic_.assign(meta.topic);
  partition_ = meta.partition;
  results_.SetSource(topic_, partition_);
  side_.SetSource(topic_, partition_);
  next_offset_ = meta.next_offset;
  max_event_time_ = meta.max_event_time;
  watermark_ = meta.watermark;
  seen_event_ = meta.seen_event;
  last_event_proc_time_ = meta.last_event_proc_time;
  meta.counters.redelivered = counters_.redelivered;  // not kept
  counters_ = meta.counters;
  type_mismatches_before_ = counters_.type_mismatches;

  std::vector<std::pair<KeyEntry*, uint64_t>> live_rolling;
  size_t restored_keys = 0;
  SLUICE_RETURN_IF_ERROR(store.Scan(kKeyPrefix, [&](std::string_view k, std::string_view v) {
    KeyState ks;
    uint64_t live = 0;
    if (!codec_.DecodeKey(v, meta.version, &ks, &live)) {
      return Status::Corruption("state of key '" + std::string(k.substr(kKeyPrefix.size())) +
                                "' does not decode");
    }
    ks.persisted = true;
    bool added = false;
    KeyEntry& e = keys_.FindOrAdd(k.substr(kKeyPrefix.size()), &added);
    if (!added) return Status::Corruption("key state listed twice");
    e.state = std::move(ks);
    e.state.name = &e.key;
    if (live > 0) live_rolling.emplace_back(&e, live);
    // Timers follow from the windows and the dedup values.
    OnKeyRestored(e.state);
    // Keys beyond the budget go on to the spill store as they come.
    if (++restored_keys % 4096 == 0) {
      MaybeEvict();
      if (!status_.ok()) return status_;
    }
    return Status::Ok();
  }));
  if (meta.version != kInlineRollingVersion) {
    SLUICE_RETURN_IF_ERROR(RestoreChunks(store, live_rolling));
  }
  SLUICE_ASSIGN_OR_RETURN(std::optional<std::string> pending, store.Get(kPendingKey));
  if (pending) {
    SLUICE_RETURN_IF_ERROR(DecodePending(*pending, [&](const PendingRecord& p) {
      DecodedEvent ev;
      if (!decoder_.Decode(p.payload, 0, /*check_time_bounds=*/false, &ev, &reason_)) {
        return Status::Corruption("a queued event does not decode: " + reason_);
      }
      pending_.Push(p.time, p.offset, p.key, p.payload, ev.fields);
      return Status::Ok();
    }));
  }
  // State of the older version is rewritten whole at the first checkpoint.
  checkpointed_once_ = meta.version == kStateVersion;
  MaybeEvict();
  return status_;
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
void TaskProcessor::SetStateSpill(StateStore* spill, size_t budget_bytes) {
  impl_->SetStateSpill(spill, budget_bytes);
}
void TaskProcessor::SetStateMemoryBudget(size_t budget_bytes) {
  impl_->SetStateMemoryBudget(budget_bytes);
}
StateMemoryStats TaskProcessor::state_memory() const { return impl_->state_memory(); }
const Status& TaskProcessor::status() const { return impl_->status(); }
int64_t TaskProcessor::watermark() const { return impl_->watermark(); }
int64_t TaskProcessor::next_offset() const { return impl_->next_offset(); }
const TaskCounters& TaskProcessor::counters() const { return impl_->counters(); }
SourcePosition TaskProcessor::position() const { return impl_->position(); }
size_t TaskProcessor::open_windows() const { return impl_->open_windows(); }
size_t TaskProcessor::queued_rule_events() const { return impl_->queued_rule_events(); }

}  // namespace sluice::engine
