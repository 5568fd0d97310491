#pragma once

// Rolling rules: the rules of a rule job with a `rolling` window. Rule r
// judges an event at time t with the events of its key whose time lies in
// (t - size_r, t], the event itself included. Events reach the rules once the
// watermark reaches their time, in (time, offset) order (TaskProcessor queues
// them until then), so a key's events enter its list in order and leave it
// from the front.
//
// Every rule keeps running aggregates over its window, updated as an event
// enters the window and as one expires, instead of scanning the window per
// event: O(1) amortized per event and aggregate. The results are the ones the
// scan gives (an Accumulator fed the window's events from the newest to the
// oldest, then the event itself), bit for bit:
//   count(), count(f)   a count of the values that are not null
//   min, max            a monotonic queue of positions in the list (ties: the
//                       newest of the equal values, as the scan picks)
//   first, last,        a queue of the positions whose value is not null
//   duration
//   count_distinct,     the window's values (DistinctKey bytes) with their
//   new_value(f)        counts
//   sum, avg            a running sum with a bound on how far it can be from
//                       the scan's floating-point sum; see RunningSum
//
// Several rules share one list per key (the events of the largest window);
// each rule has its own position in it where its window starts.
//
// What the store holds of a key's rolling events is the list (TaskProcessor
// writes it in chunks, state_codec.h); the running aggregates are rebuilt
// from it on restore (Rebuild).
//
// Events wait for the watermark in a PendingQueue (below), which gives them
// to the rules in (time, offset) order.
//
// Thread safety: one thread owns a RollingRules and the states it updates,
// and a PendingQueue.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "worker/engine/aggregate.h"
#include "worker/engine/expr.h"
#include "worker/engine/job_plan.h"
#include "worker/engine/time_util.h"
#include "worker/engine/value.h"

namespace sluice::engine {

struct RollingEntry {
  int64_t time = 0;
  int64_t offset = 0;
  // The last event of a chunk the store holds; the chunk is named after it.
  bool chunk_end = false;
};

// A queue in a vector with a moving head, compacted when half of it is
// dead: what a key's rolling list and its rules' positions need (both ends,
// indexing, contiguous iterators) at the size of its elements, where a
// std::deque takes two blocks of about 570 bytes for a key with one event.
template <typename T>
class HeadQueue {
 public:
  using iterator = typename std::vector<T>::iterator;
  using const_iterator = typename std::vector<T>::const_iterator;

  bool empty() const { return head_ == items_.size(); }
  size_t size() const { return items_.size() - head_; }
  T& front() { return items_[head_]; }
  const T& front() const { return items_[head_]; }
  T& back() { return items_.back(); }
  const T& back() const { return items_.back(); }
  T& operator[](size_t i) { return items_[head_ + i]; }
  const T& operator[](size_t i) const { return items_[head_ + i]; }
  iterator begin() { return items_.begin() + static_cast<std::ptrdiff_t>(head_); }
  iterator end() { return items_.end(); }
  const_iterator begin() const { return items_.begin() + static_cast<std::ptrdiff_t>(head_); }
  const_iterator end() const { return items_.end(); }

  void push_back(const T& v) { items_.push_back(v); }
  template <typename... Args>
  T& emplace_back(Args&&... args) {
    return items_.emplace_back(std::forward<Args>(args)...);
  }
  void pop_back() { items_.pop_back(); }
  void pop_front() {
    if (++head_ == items_.size()) {
      items_.clear();
      head_ = 0;
    } else if (head_ >= 32 && head_ * 2 >= items_.size()) {
      items_.erase(items_.begin(), items_.begin() + static_cast<std::ptrdiff_t>(head_));
      head_ = 0;
    }
  }

 private:
  std::vector<T> items_;
  size_t head_ = 0;
};

// Positions in a key's list: absolute sequence numbers.
using SeqQueue = HeadQueue<uint64_t>;

// The values of a window as DistinctKey bytes, with how many of its events
// have each: a short vector searched linearly while there are few, a hash map
// beyond.
class ValueCounts {
 public:
  size_t size() const { return large_ ? large_->size() : small_.size(); }
  bool Contains(const std::string& key) const;
  void Add(const std::string& key);
  // `key` must have been added.
  void Remove(const std::string& key);

 private:
  static constexpr size_t kSmallMax = 16;
  std::vector<std::pair<std::string, uint32_t>> small_;  // while large_ is null
  std::unique_ptr<std::unordered_map<std::string, uint32_t>> large_;
};

// A running floating-point sum of a window's numbers, and what is known about
// the sum the scan would compute: fl(...fl(fl(0 + v_newest) + ...) + v_oldest)
// + v_event, which a running sum (adding at one end, subtracting at the
// other) does not reproduce in general.
//
//  - `s` is the running sum; `err` bounds |s - exact sum of the window|: each
//    addition's rounding error is computed exactly (TwoSum) and added up,
//    rounded upwards, so err == 0 means s is exact.
//  - `abs`/`abs_err` likewise for the sum of the absolute values, which
//    bounds the scan's error (Higham: |scan - exact| <= gamma_{n-1} * sum|v|,
//    gamma_k = k u / (1 - k u), u = 2^-53).
//  - With every value an integer and the absolute sum exact and at most
//    2^53, every partial sum of the scan is exact too: the scan's result is
//    s + v_event, exactly.
//  - Otherwise Interval gives a closed interval that holds the scan's
//    result; when a rule only compares the sum with constants and none lies
//    in it, the rule's `when` does not depend on where in the interval the
//    sum is, and the window is summed (Rescan) only when the rule alerts
//    (the alert carries the value) or the interval holds a constant.
// Everything resets to exact zeros when the window has no number left.
struct RunningSum {
  double s = 0;
  double err = 0;
  double abs = 0;
  double abs_err = 0;
  int64_t n = 0;             // numbers in the window
  int64_t non_integers = 0;  // of them, not integers of magnitude <= 2^53

  void Add(double v);
  void Remove(double v);
  // The scan's result with `v` (the event's value) added last, if it is known
  // exactly.
  bool Exact(const Value& v, double* result) const;
  // A closed interval that holds the scan's result with `v` added last. False
  // if none can be given (non-finite values, too many events).
  bool Interval(const Value& v, double* lo, double* hi) const;
};

// What an aggregate of a rolling rule keeps per key.
struct RollingAggState {
  int64_t non_null = 0;                 // values in the window that are not null
  SeqQueue seqs;                        // min/max: monotonic; first/last/duration: non-null values
  RunningSum sum;                       // sum, avg
  std::unique_ptr<ValueCounts> counts;  // count_distinct
};

// One rolling rule's window over a key's list.
struct RollingRuleState {
  uint64_t start = 0;  // the sequence number of the window's first event
  std::vector<RollingAggState> aggs;
  std::vector<ValueCounts> new_values;  // by new_value slot
};

// The rolling rules' state of one key: its events within the largest rolling
// window, in (time, offset) order, their values of JobPlan::rolling_slots()
// (`stride` values per event), and each rule's running aggregates.
struct RollingState {
  HeadQueue<RollingEntry> entries;
  HeadQueue<OwnedValue> values;
  size_t unsaved = 0;      // events at the back that no chunk holds yet
  uint64_t first_seq = 0;  // the sequence number of entries.front()
  // By rolling rule (RollingRules order); empty until built.
  std::vector<RollingRuleState> rules;
};

class RollingRules {
 public:
  explicit RollingRules(const JobPlan& plan);

  // Receives the alerts of Evaluate. `input` is what the rule's `when` saw;
  // its aggregates are the first values of the span Evaluate was given.
  class AlertSink {
   public:
    virtual ~AlertSink() = default;
    virtual void OnAlert(size_t rule, const EvalInput& input) = 0;
  };

  // Judges an event of the key whose state is `rs` (`fields`: the event's
  // decoded values, by slot) with every rolling rule, then adds it to the
  // key's list. `agg_values` has room for every rule's aggregates. Calls
  // on_expired(entry) for each event that leaves the list (before it goes).
  template <typename OnExpired>
  void Evaluate(RollingState& rs, int64_t time, int64_t offset, std::span<const Value> fields,
                std::span<Value> agg_values, EvalScratch& scratch, AlertSink& alerts,
                OnExpired&& on_expired) {
    Build(rs);
    Expire(rs, time);
    const int64_t horizon = SaturatingAdd(time, -plan_.max_rolling_ms());
    while (!rs.entries.empty() && rs.entries.front().time <= horizon) {
      on_expired(rs.entries.front());
      rs.entries.pop_front();
      for (size_t i = 0; i < stride_; ++i) rs.values.pop_front();
      ++rs.first_seq;
      rs.unsaved = std::min(rs.unsaved, rs.entries.size());
    }
    Judge(rs, time, fields, agg_values, scratch, alerts);
    Append(rs, time, offset, fields);
  }

  // Builds the running aggregates of a key's list as it stands (restored
  // from the store); Evaluate builds them when missing.
  void Rebuild(RollingState& rs) const;

  // The number of rolling rules.
  size_t size() const { return rules_.size(); }

 private:
  struct Agg {
    AggFn fn;
    int32_t rolling_index;  // -1: count() and the like, which see true
    std::optional<uint32_t> field_slot;
  };
  struct Rule {
    size_t index;  // in JobPlan::rules()
    int64_t size_ms;
    std::vector<Agg> aggs;
    std::vector<int32_t> new_value_index;  // rolling index by new_value slot
    // Per aggregate, sum/avg: whether `when` reads it only against constants,
    // and those constants.
    std::vector<bool> judged_by_interval;
    std::vector<std::vector<double>> thresholds;
  };

  void Build(RollingState& rs) const {
    if (rs.rules.empty() && !rules_.empty()) Rebuild(rs);
  }
  // Moves each rule's window start past the events at or before time - size.
  void Expire(RollingState& rs, int64_t time) const;
  void Judge(RollingState& rs, int64_t time, std::span<const Value> fields,
             std::span<Value> agg_values, EvalScratch& scratch, AlertSink& alerts);
  void Append(RollingState& rs, int64_t time, int64_t offset, std::span<const Value> fields) const;

  // The list's event `seq` enters or leaves a rule's aggregates.
  void Enter(const RollingState& rs, const Rule& rule, RollingRuleState& st, uint64_t seq) const;
  void Leave(const RollingState& rs, const Rule& rule, RollingRuleState& st, uint64_t seq) const;

  Value ValueAt(const RollingState& rs, int32_t rolling_index, uint64_t seq) const {
    if (rolling_index < 0) return Value::Bool(true);
    return rs.values[(seq - rs.first_seq) * stride_ + static_cast<size_t>(rolling_index)].view();
  }
  const RollingEntry& EntryAt(const RollingState& rs, uint64_t seq) const {
    return rs.entries[seq - rs.first_seq];
  }
  // The result of an aggregate over the window plus the event's value `v`.
  Value Result(const RollingState& rs, const RollingRuleState& st, const Agg& agg,
               const RollingAggState& a, const Value& v, int64_t time) const;
  // The scan's sum of the window's numbers, newest first, then `v`'s.
  double Rescan(const RollingState& rs, const RollingRuleState& st, const Agg& agg,
                const Value& v) const;

  const JobPlan& plan_;
  const size_t stride_;
  std::vector<Rule> rules_;
  std::unique_ptr<bool[]> new_values_;
};

// An event of a rule job waiting for the watermark to reach its time, when it
// meets the rolling rules.
struct PendingEvent {
  int64_t time = 0;
  int64_t offset = 0;
  std::string key;
  std::string payload;             // for the alert's "event"
  std::vector<OwnedValue> fields;  // the decoded fields, by slot
};

// A task's queued events, taken out in (time, offset) order. The events live
// in slots that are reused once an event has been taken out, so that queueing
// one copies its bytes into buffers that already have the capacity.
class PendingQueue {
 public:
  size_t size() const { return heap_.size(); }

  // Queues a copy of an event.
  void Push(int64_t time, int64_t offset, std::string_view key, std::string_view payload,
            std::span<const Value> fields);

  // The first event in (time, offset) order if its time is at most
  // `watermark`, else nullptr. Valid until Pop, which takes it out.
  const PendingEvent* Due(int64_t watermark) const {
    if (heap_.empty() || slots_[heap_.front()].time > watermark) return nullptr;
    return &slots_[heap_.front()];
  }
  void Pop();

  // The queued events, in (time, offset) order.
  std::vector<const PendingEvent*> InOrder() const;

 private:
  // Heap order: the top is the first event.
  struct Later {
    const std::vector<PendingEvent>* slots = nullptr;
    bool operator()(uint32_t a, uint32_t b) const {
      const PendingEvent& x = (*slots)[a];
      const PendingEvent& y = (*slots)[b];
      if (x.time != y.time) return x.time > y.time;
      return x.offset > y.offset;
    }
  };

  std::vector<PendingEvent> slots_;
  std::vector<uint32_t> heap_;  // of slots_ indices
  std::vector<uint32_t> free_;  // slots_ indices not in use
};

}  // namespace sluice::engine
