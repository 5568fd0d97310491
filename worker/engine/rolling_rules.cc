#include "worker/engine/rolling_rules.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <limits>

namespace sluice::engine {

namespace {

// `v` as DistinctKey bytes (how count_distinct keys values), in a buffer the
// thread reuses: valid until its next call.
const std::string& DistinctBytes(const Value& v) {
  thread_local std::string bytes;
  DistinctKey(v, &bytes);
  return bytes;
}

constexpr double kUnit = 0x1p-53;    // u, the unit roundoff of double
constexpr double kTwoTo53 = 0x1p53;  // integers up to here are exact
constexpr double kTiny = 0x1p-1074;  // the smallest positive double

// The next double above a finite x >= 0.
double Up(double x) {
  if (x == 0) return kTiny;
  return std::bit_cast<double>(std::bit_cast<uint64_t>(x) + 1);
}

// An upper bound of x + y for x, y >= 0; exactly 0 when both are.
double AddUp(double x, double y) {
  const double r = x + y;
  return r == 0 ? 0 : Up(r);
}

// s + v and its rounding error, exactly (Knuth's TwoSum).
double TwoSumError(double s, double v, double sum) {
  const double bv = sum - s;
  const double bs = sum - bv;
  return (s - bs) + (v - bv);
}

bool IsSmallInteger(double v) { return std::trunc(v) == v && std::fabs(v) <= kTwoTo53; }

}  // namespace

// ---- ValueCounts -------------------------------------------------------------

bool ValueCounts::Contains(const std::string& key) const {
  if (large_) return large_->find(key) != large_->end();
  for (const auto& [v, n] : small_) {
    if (v == key) return true;
  }
  return false;
}

void ValueCounts::Add(const std::string& key) {
  if (large_) {
    ++(*large_)[key];
    return;
  }
  for (auto& [v, n] : small_) {
    if (v == key) {
      ++n;
      return;
    }
  }
  if (small_.size() < kSmallMax) {
    small_.emplace_back(key, 1);
    return;
  }
  large_ = std::make_unique<std::unordered_map<std::string, uint32_t>>();
  for (auto& [v, n] : small_) large_->emplace(std::move(v), n);
  small_.clear();
  large_->emplace(key, 1);
}

void ValueCounts::Remove(const std::string& key) {
  if (large_) {
    auto it = large_->find(key);
    if (it != large_->end() && --it->second == 0) large_->erase(it);
    return;
  }
  for (size_t i = 0; i < small_.size(); ++i) {
    if (small_[i].first != key) continue;
    if (--small_[i].second == 0) {
      if (i + 1 != small_.size()) small_[i] = std::move(small_.back());
      small_.pop_back();
    }
    return;
  }
}

// ---- RunningSum --------------------------------------------------------------

void RunningSum::Add(double v) {
  ++n;
  if (!IsSmallInteger(v)) ++non_integers;
  const double next = s + v;
  err = AddUp(err, std::fabs(TwoSumError(s, v, next)));
  s = next;
  const double next_abs = abs + std::fabs(v);
  abs_err = AddUp(abs_err, std::fabs(TwoSumError(abs, std::fabs(v), next_abs)));
  abs = next_abs;
}

void RunningSum::Remove(double v) {
  if (--n == 0) {
    *this = RunningSum();
    return;
  }
  if (!IsSmallInteger(v)) --non_integers;
  const double next = s - v;
  err = AddUp(err, std::fabs(TwoSumError(s, -v, next)));
  s = next;
  const double next_abs = abs - std::fabs(v);
  abs_err = AddUp(abs_err, std::fabs(TwoSumError(abs, -std::fabs(v), next_abs)));
  abs = next_abs;
}

bool RunningSum::Exact(const Value& v, double* result) const {
  // err is NaN after a non-finite value: then this is false.
  if (!(err == 0 && abs_err == 0) || non_integers != 0) return false;
  const double x = v.is_number() ? v.number : 0;
  if (v.is_number() && !IsSmallInteger(x)) return false;
  // Every partial sum of the scan is an integer no larger than the sum of
  // magnitudes, which is below 2^53 (rounding is monotone: a sum of 2^53 or
  // more never computes to less), so each is exact, and so is s + x.
  if (!(abs + std::fabs(x) < kTwoTo53)) return false;
  *result = v.is_number() ? s + x : s;
  return true;
}

bool RunningSum::Interval(const Value& v, double* lo, double* hi) const {
  const double x = v.is_number() ? v.number : 0;
  const int64_t count = n + (v.is_number() ? 1 : 0);
  // The scan rounds count - 1 times.
  const double k = static_cast<double>(count - 1);
  if (k * kUnit >= 0.25) return false;
  const double gamma = k * kUnit / (1 - k * kUnit);
  const double magnitudes = AddUp(AddUp(abs, std::fabs(x)), abs_err);
  const double approx = s + x;
  // |scan - approx| <= |scan - exact| + |exact - (s + x)| + |(s + x) - approx|
  //                 <= gamma * magnitudes + err + u |approx|;
  // computed with a margin for its own roundings.
  double bound = gamma * magnitudes + err + 2 * kUnit * std::fabs(approx);
  bound = bound * (1 + 16 * kUnit) + 4 * kTiny;
  if (!std::isfinite(bound) || !std::isfinite(approx)) return false;
  *lo = std::nextafter(approx - bound, -std::numeric_limits<double>::infinity());
  *hi = std::nextafter(approx + bound, std::numeric_limits<double>::infinity());
  return std::isfinite(*lo) && std::isfinite(*hi);
}

// ---- RollingRules ------------------------------------------------------------

RollingRules::RollingRules(const JobPlan& plan)
    : plan_(plan), stride_(plan.rolling_slots().size()) {
  size_t max_new_values = 1;
  for (size_t i = 0; i < plan.rules().size(); ++i) {
    const RuleDef& def = plan.rules()[i];
    if (def.window.kind != WindowKind::kRolling) continue;
    Rule rule;
    rule.index = i;
    rule.size_ms = def.window.size_ms;
    for (size_t a = 0; a < def.aggregates.size(); ++a) {
      const AggregateDef& agg = def.aggregates[a];
      rule.aggs.push_back(Agg{agg.fn, agg.rolling_index, agg.field_slot});
      std::vector<double> thresholds;
      const bool by_interval =
          (agg.fn == AggFn::kSum || agg.fn == AggFn::kAvg) &&
          def.when.ReadsAggregateOnlyAgainstConstants(static_cast<uint32_t>(a), &thresholds);
      rule.judged_by_interval.push_back(by_interval);
      rule.thresholds.push_back(std::move(thresholds));
    }
    rule.new_value_index = def.new_value_rolling_index;
    max_new_values = std::max(max_new_values, rule.new_value_index.size());
    rules_.push_back(std::move(rule));
  }
  new_values_ = std::make_unique<bool[]>(max_new_values);
}

void RollingRules::Rebuild(RollingState& rs) const {
  rs.rules.clear();
  rs.rules.resize(rules_.size());
  const uint64_t end = rs.first_seq + rs.entries.size();
  for (size_t r = 0; r < rules_.size(); ++r) {
    const Rule& rule = rules_[r];
    RollingRuleState& st = rs.rules[r];
    st.start = rs.first_seq;
    st.aggs.resize(rule.aggs.size());
    for (size_t a = 0; a < rule.aggs.size(); ++a) {
      if (rule.aggs[a].fn == AggFn::kCountDistinct) {
        st.aggs[a].counts = std::make_unique<ValueCounts>();
      }
    }
    st.new_values.resize(rule.new_value_index.size());
    for (uint64_t seq = rs.first_seq; seq < end; ++seq) Enter(rs, rule, st, seq);
  }
}

void RollingRules::Expire(RollingState& rs, int64_t time) const {
  const uint64_t end = rs.first_seq + rs.entries.size();
  for (size_t r = 0; r < rules_.size(); ++r) {
    const Rule& rule = rules_[r];
    RollingRuleState& st = rs.rules[r];
    const int64_t from = SaturatingAdd(time, -rule.size_ms);  // exclusive
    while (st.start < end && EntryAt(rs, st.start).time <= from) {
      Leave(rs, rule, st, st.start);
      ++st.start;
    }
  }
}

void RollingRules::Append(RollingState& rs, int64_t time, int64_t offset,
                          std::span<const Value> fields) const {
  rs.entries.push_back({time, offset});
  ++rs.unsaved;
  for (uint32_t slot : plan_.rolling_slots()) rs.values.emplace_back().Set(fields[slot]);
  const uint64_t seq = rs.first_seq + rs.entries.size() - 1;
  for (size_t r = 0; r < rules_.size(); ++r) Enter(rs, rules_[r], rs.rules[r], seq);
}

void RollingRules::Enter(const RollingState& rs, const Rule& rule, RollingRuleState& st,
                         uint64_t seq) const {
  for (size_t a = 0; a < rule.aggs.size(); ++a) {
    const Agg& agg = rule.aggs[a];
    RollingAggState& s = st.aggs[a];
    const Value v = ValueAt(rs, agg.rolling_index, seq);
    if (v.is_null()) continue;
    ++s.non_null;
    switch (agg.fn) {
      case AggFn::kCount:
        break;
      case AggFn::kSum:
      case AggFn::kAvg:
        if (v.is_number()) s.sum.Add(v.number);
        break;
      case AggFn::kMin:
        // Equal values go too: the newest of them is the one the scan keeps.
        while (!s.seqs.empty() &&
               CompareValues(ValueAt(rs, agg.rolling_index, s.seqs.back()), v) >= 0) {
          s.seqs.pop_back();
        }
        s.seqs.push_back(seq);
        break;
      case AggFn::kMax:
        while (!s.seqs.empty() &&
               CompareValues(ValueAt(rs, agg.rolling_index, s.seqs.back()), v) <= 0) {
          s.seqs.pop_back();
        }
        s.seqs.push_back(seq);
        break;
      case AggFn::kFirst:
      case AggFn::kLast:
      case AggFn::kDuration:
        s.seqs.push_back(seq);
        break;
      case AggFn::kCountDistinct: {
        s.counts->Add(DistinctBytes(v));
        break;
      }
    }
  }
  for (size_t j = 0; j < rule.new_value_index.size(); ++j) {
    const Value v = ValueAt(rs, rule.new_value_index[j], seq);
    if (v.is_null()) continue;
    st.new_values[j].Add(DistinctBytes(v));
  }
}

void RollingRules::Leave(const RollingState& rs, const Rule& rule, RollingRuleState& st,
                         uint64_t seq) const {
  for (size_t a = 0; a < rule.aggs.size(); ++a) {
    const Agg& agg = rule.aggs[a];
    RollingAggState& s = st.aggs[a];
    const Value v = ValueAt(rs, agg.rolling_index, seq);
    if (v.is_null()) continue;
    --s.non_null;
    switch (agg.fn) {
      case AggFn::kCount:
        break;
      case AggFn::kSum:
      case AggFn::kAvg:
        if (v.is_number()) s.sum.Remove(v.number);
        break;
      case AggFn::kMin:
      case AggFn::kMax:
      case AggFn::kFirst:
      case AggFn::kLast:
      case AggFn::kDuration:
        if (!s.seqs.empty() && s.seqs.front() == seq) s.seqs.pop_front();
        break;
      case AggFn::kCountDistinct: {
        s.counts->Remove(DistinctBytes(v));
        break;
      }
    }
  }
  for (size_t j = 0; j < rule.new_value_index.size(); ++j) {
    const Value v = ValueAt(rs, rule.new_value_index[j], seq);
    if (v.is_null()) continue;
    st.new_values[j].Remove(DistinctBytes(v));
  }
}

Value RollingRules::Result(const RollingState& rs, const RollingRuleState& /*st*/, const Agg& agg,
                           const RollingAggState& a, const Value& v, int64_t time) const {
  const bool has = !v.is_null();
  switch (agg.fn) {
    case AggFn::kCount:
      return Value::Number(static_cast<double>(a.non_null + (has ? 1 : 0)));
    case AggFn::kMin:
    case AggFn::kMax: {
      if (a.seqs.empty()) return has ? v : Value::Null();
      const Value best = ValueAt(rs, agg.rolling_index, a.seqs.front());
      if (!has) return best;
      const int c = CompareValues(v, best);
      return (agg.fn == AggFn::kMin ? c < 0 : c > 0) ? v : best;
    }
    case AggFn::kFirst:
      if (!a.seqs.empty()) return ValueAt(rs, agg.rolling_index, a.seqs.front());
      return has ? v : Value::Null();
    case AggFn::kLast:
      if (has) return v;
      return a.seqs.empty() ? Value::Null() : ValueAt(rs, agg.rolling_index, a.seqs.back());
    case AggFn::kDuration: {
      if (a.seqs.empty() && !has) return Value::Null();
      const int64_t first = a.seqs.empty() ? time : EntryAt(rs, a.seqs.front()).time;
      const int64_t last = has ? time : EntryAt(rs, a.seqs.back()).time;
      return Value::Number(static_cast<double>(last - first));
    }
    case AggFn::kCountDistinct: {
      size_t n = a.counts->size();
      if (has) {
        if (!a.counts->Contains(DistinctBytes(v))) ++n;
      }
      return Value::Number(static_cast<double>(n));
    }
    case AggFn::kSum:
    case AggFn::kAvg:
      break;  // see Judge
  }
  return Value::Null();
}

double RollingRules::Rescan(const RollingState& rs, const RollingRuleState& st, const Agg& agg,
                            const Value& v) const {
  // As Accumulator::Add over the window from the newest event, then the event.
  double sum = 0;
  const uint64_t end = rs.first_seq + rs.entries.size();
  if (agg.rolling_index >= 0 && end > st.start) {
    // Walk the values from the newest event's back, `stride_` at a time.
    auto it =
        rs.values.begin() + static_cast<std::ptrdiff_t>((end - 1 - rs.first_seq) * stride_ +
                                                        static_cast<size_t>(agg.rolling_index));
    const auto step = static_cast<std::ptrdiff_t>(stride_);
    for (uint64_t n = end - st.start;;) {
      if (it->type == ValueType::kNumber) sum += it->number;
      if (--n == 0) break;
      it -= step;
    }
  }
  if (v.is_number()) sum += v.number;
  return sum;
}

void RollingRules::Judge(RollingState& rs, int64_t time, std::span<const Value> fields,
                         std::span<Value> agg_values, EvalScratch& scratch, AlertSink& alerts) {
  for (size_t r = 0; r < rules_.size(); ++r) {
    const Rule& rule = rules_[r];
    const RuleDef& def = plan_.rules()[rule.index];
    RollingRuleState& st = rs.rules[r];
    const size_t nv = rule.new_value_index.size();
    for (size_t j = 0; j < nv; ++j) {
      const Value cur = fields[plan_.rolling_slots()[static_cast<size_t>(rule.new_value_index[j])]];
      if (cur.is_null()) {
        new_values_[j] = false;
      } else {
        new_values_[j] = !st.new_values[j].Contains(DistinctBytes(cur));
      }
    }
    // Sums known only to lie in an interval, and whether `when` is the same
    // over all of it.
    bool approximate = false;
    bool decided = true;
    for (size_t a = 0; a < rule.aggs.size(); ++a) {
      const Agg& agg = rule.aggs[a];
      const RollingAggState& s = st.aggs[a];
      const Value v = agg.field_slot ? fields[*agg.field_slot] : Value::Bool(true);
      if (agg.fn != AggFn::kSum && agg.fn != AggFn::kAvg) {
        agg_values[a] = Result(rs, st, agg, s, v, time);
        continue;
      }
      const int64_t count = s.sum.n + (v.is_number() ? 1 : 0);
      const double divisor = agg.fn == AggFn::kAvg ? static_cast<double>(count) : 1;
      double sum = 0, lo = 0, hi = 0;
      if (count == 0) {
        agg_values[a] = Value::Null();
      } else if (s.sum.Exact(v, &sum)) {
        agg_values[a] = Value::Number(agg.fn == AggFn::kAvg ? sum / divisor : sum);
      } else if (rule.judged_by_interval[a] && s.sum.Interval(v, &lo, &hi)) {
        // Division by a positive count is monotone: the average lies in the
        // interval of the divided bounds.
        if (agg.fn == AggFn::kAvg) {
          lo /= divisor;
          hi /= divisor;
        }
        for (double c : rule.thresholds[a]) {
          if (lo <= c && c <= hi) decided = false;
        }
        agg_values[a] = Value::Number(lo);
        approximate = true;
      } else {
        sum = Rescan(rs, st, agg, v);
        agg_values[a] = Value::Number(agg.fn == AggFn::kAvg ? sum / divisor : sum);
      }
    }
    // The exact sums, where an interval was not enough.
    auto rescan = [&] {
      for (size_t a = 0; a < rule.aggs.size(); ++a) {
        const Agg& agg = rule.aggs[a];
        if ((agg.fn != AggFn::kSum && agg.fn != AggFn::kAvg) || !agg_values[a].is_number()) {
          continue;
        }
        const Value v = agg.field_slot ? fields[*agg.field_slot] : Value::Bool(true);
        const double sum = Rescan(rs, st, agg, v);
        const int64_t count = st.aggs[a].sum.n + (v.is_number() ? 1 : 0);
        agg_values[a] =
            Value::Number(agg.fn == AggFn::kAvg ? sum / static_cast<double>(count) : sum);
      }
    };
    if (approximate && !decided) rescan();
    const EvalInput input{fields, std::span<const Value>(agg_values.data(), rule.aggs.size()),
                          std::span<const bool>(new_values_.get(), nv)};
    if (!def.when.EvalBool(input, scratch)) continue;
    // The alert carries the values: exact ones. `when` is true for them too,
    // being the same over the interval.
    if (approximate && decided) rescan();
    alerts.OnAlert(rule.index, input);
  }
}

void PendingQueue::Push(int64_t time, int64_t offset, std::string_view key,
                        std::string_view payload, std::span<const Value> fields) {
  uint32_t idx;
  if (!free_.empty()) {
    idx = free_.back();
    free_.pop_back();
  } else {
    idx = static_cast<uint32_t>(slots_.size());
    slots_.emplace_back();
  }
  PendingEvent& p = slots_[idx];
  p.time = time;
  p.offset = offset;
  p.key.assign(key);
  p.payload.assign(payload);
  p.fields.resize(fields.size());
  for (size_t i = 0; i < fields.size(); ++i) p.fields[i].Set(fields[i]);
  heap_.push_back(idx);
  std::push_heap(heap_.begin(), heap_.end(), Later{&slots_});
}

void PendingQueue::Pop() {
  std::pop_heap(heap_.begin(), heap_.end(), Later{&slots_});
  free_.push_back(heap_.back());
  heap_.pop_back();
}

std::vector<const PendingEvent*> PendingQueue::InOrder() const {
  std::vector<uint32_t> order = heap_;
  const Later later{&slots_};
  std::sort(order.begin(), order.end(), [&](uint32_t a, uint32_t b) { return later(b, a); });
  std::vector<const PendingEvent*> out;
  out.reserve(order.size());
  for (uint32_t idx : order) out.push_back(&slots_[idx]);
  return out;
}

}  // namespace sluice::engine
