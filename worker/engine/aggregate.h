#pragma once

// Accumulators: the running state of one aggregate function (count, sum, min,
// max, avg, count_distinct, first, last) over the events of a window.
//
// Accumulators are commutative: adding the same events in any order, or
// merging two partial accumulators (session merge), gives the same result.
// first/last order events by event time, then by source offset; duration is
// the last event time minus the first. Every function skips null values; sum
// and avg also skip non-numbers. Functions without a field (count(),
// duration()) are given Value::Bool(true) per event.

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_set>
#include <vector>

#include "worker/engine/codec.h"
#include "worker/engine/job_plan.h"
#include "worker/engine/json_writer.h"
#include "worker/engine/value.h"

namespace sluice::engine {

// A Value that owns its string.
struct OwnedValue {
  ValueType type = ValueType::kNull;
  bool boolean = false;
  double number = 0;
  std::string str;

  void Set(const Value& v) {
    type = v.type;
    boolean = v.boolean;
    number = v.number;
    if (v.type == ValueType::kString) {
      str.assign(v.str);
    } else {
      str.clear();
    }
  }
  Value view() const {
    Value v;
    v.type = type;
    v.boolean = boolean;
    v.number = number;
    if (type == ValueType::kString) v.str = str;
    return v;
  }
  void Encode(Encoder& e) const;
  void Decode(Decoder& d);
};

// Total order used by min/max: null < bool < number < string.
int CompareValues(const Value& a, const Value& b);
bool ValuesEqual(const Value& a, const Value& b);
void WriteValue(JsonWriter& w, const Value& v);

// The values count_distinct has seen, as DistinctKey bytes: a short vector
// searched linearly while there are few (most windows), a hash set beyond.
// Clear() keeps the vector's capacity.
class DistinctSet {
 public:
  DistinctSet() = default;
  DistinctSet(const DistinctSet& other);
  DistinctSet& operator=(const DistinctSet& other);
  DistinctSet(DistinctSet&&) noexcept = default;
  DistinctSet& operator=(DistinctSet&&) noexcept = default;

  bool empty() const { return size() == 0; }
  size_t size() const { return large_ ? large_->size() : small_.size(); }
  void Insert(const std::string& key);
  void Clear();
  // Calls f(const std::string&) for every value, in no particular order.
  template <typename F>
  void ForEach(F&& f) const {
    if (large_) {
      for (const std::string& v : *large_) f(v);
    } else {
      for (const std::string& v : small_) f(v);
    }
  }

 private:
  static constexpr size_t kSmallMax = 16;
  std::vector<std::string> small_;  // while large_ is null
  std::unique_ptr<std::unordered_set<std::string>> large_;
};

class Accumulator {
 public:
  explicit Accumulator(AggFn fn = AggFn::kCount) : fn_(fn) {}
  Accumulator(const Accumulator& other);
  Accumulator& operator=(const Accumulator& other);
  Accumulator(Accumulator&&) noexcept = default;
  Accumulator& operator=(Accumulator&&) noexcept = default;

  AggFn fn() const { return fn_; }
  // As `*this = Accumulator(fn)`, keeping allocated capacity for reuse.
  void Reset(AggFn fn);

  // Adds one event's value. count() without a field passes Value::Bool(true).
  void Add(const Value& v, int64_t time, int64_t offset);
  void Merge(const Accumulator& other);
  // The result; a string result points into this accumulator.
  Value Result() const;

  void Encode(Encoder& e) const;
  void Decode(Decoder& d);

  // Whether accumulators of `fn` keep more than a count and a sum (an
  // allocation of ExtraBytes() at their first value).
  static bool NeedsExtra(AggFn fn);
  static size_t ExtraBytes();

 private:
  // What min, max, first, last, duration and count_distinct keep besides
  // the count: on the heap, so that a count, sum or avg takes 32 bytes.
  struct Extra {
    OwnedValue value;       // min, max, first, last
    int64_t at_time = 0;    // first/last: the chosen event; duration: the first time
    int64_t at_offset = 0;  // first/last: the chosen event; duration: the last time
    DistinctSet distinct;
  };
  Extra& extra() {
    if (!extra_) extra_ = std::make_unique<Extra>();
    return *extra_;
  }
  // For reading: an empty Extra when there is none.
  const Extra& extra_view() const;

  AggFn fn_;
  int64_t count_ = 0;
  double sum_ = 0;
  std::unique_ptr<Extra> extra_;
};

// A canonical byte form of a value for exact distinct counting.
void DistinctKey(const Value& v, std::string* out);

}  // namespace sluice::engine
