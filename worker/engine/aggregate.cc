#include "worker/engine/aggregate.h"

#include <algorithm>
#include <cstring>
#include <vector>

namespace sluice::engine {

void OwnedValue::Encode(Encoder& e) const {
  e.U64(static_cast<uint64_t>(type));
  switch (type) {
    case ValueType::kNull:
      break;
    case ValueType::kBool:
      e.Bool(boolean);
      break;
    case ValueType::kNumber:
      e.Double(number);
      break;
    case ValueType::kString:
      e.Bytes(str);
      break;
  }
}

void OwnedValue::Decode(Decoder& d) {
  uint64_t t = d.U64();
  str.clear();
  switch (t) {
    case 0:
      type = ValueType::kNull;
      break;
    case 1:
      type = ValueType::kBool;
      boolean = d.Bool();
      break;
    case 2:
      type = ValueType::kNumber;
      number = d.Double();
      break;
    case 3:
      type = ValueType::kString;
      str.assign(d.Bytes());
      break;
    default:
      type = ValueType::kNull;
      d.Bytes();
      break;
  }
}

int CompareValues(const Value& a, const Value& b) {
  if (a.type != b.type) return a.type < b.type ? -1 : 1;
  switch (a.type) {
    case ValueType::kNull:
      return 0;
    case ValueType::kBool:
      return a.boolean == b.boolean ? 0 : (a.boolean ? 1 : -1);
    case ValueType::kNumber:
      return a.number < b.number ? -1 : (a.number > b.number ? 1 : 0);
    case ValueType::kString: {
      int c = a.str.compare(b.str);
      return c < 0 ? -1 : (c > 0 ? 1 : 0);
    }
  }
  return 0;
}

bool ValuesEqual(const Value& a, const Value& b) {
  return a.type != ValueType::kNull && CompareValues(a, b) == 0;
}

void WriteValue(JsonWriter& w, const Value& v) {
  switch (v.type) {
    case ValueType::kNull:
      w.Null();
      break;
    case ValueType::kBool:
      w.Bool(v.boolean);
      break;
    case ValueType::kNumber:
      w.Double(v.number);
      break;
    case ValueType::kString:
      w.String(v.str);
      break;
  }
}

void DistinctKey(const Value& v, std::string* out) {
  out->clear();
  switch (v.type) {
    case ValueType::kNull:
      break;
    case ValueType::kBool:
      out->push_back(v.boolean ? 'T' : 'F');
      break;
    case ValueType::kNumber: {
      double n = v.number == 0 ? 0.0 : v.number;  // -0 and 0 are one value
      char buf[8];
      std::memcpy(buf, &n, 8);
      out->push_back('n');
      out->append(buf, 8);
      break;
    }
    case ValueType::kString:
      out->push_back('s');
      out->append(v.str);
      break;
  }
}

DistinctSet::DistinctSet(const DistinctSet& other) : small_(other.small_) {
  if (other.large_) large_ = std::make_unique<std::unordered_set<std::string>>(*other.large_);
}

DistinctSet& DistinctSet::operator=(const DistinctSet& other) {
  if (this != &other) {
    DistinctSet copy(other);
    *this = std::move(copy);
  }
  return *this;
}

void DistinctSet::Insert(const std::string& key) {
  if (large_) {
    if (large_->find(key) == large_->end()) large_->insert(key);
    return;
  }
  for (const std::string& v : small_) {
    if (v == key) return;
  }
  if (small_.size() < kSmallMax) {
    small_.push_back(key);
    return;
  }
  large_ = std::make_unique<std::unordered_set<std::string>>();
  for (std::string& v : small_) large_->insert(std::move(v));
  small_.clear();
  large_->insert(key);
}

void DistinctSet::Clear() {
  small_.clear();
  large_.reset();
}

Accumulator::Accumulator(const Accumulator& other)
    : fn_(other.fn_),
      count_(other.count_),
      sum_(other.sum_),
      value_(other.value_),
      at_time_(other.at_time_),
      at_offset_(other.at_offset_),
      distinct_(other.distinct_) {}

void Accumulator::Reset(AggFn fn) {
  fn_ = fn;
  count_ = 0;
  sum_ = 0;
  value_.type = ValueType::kNull;
  value_.boolean = false;
  value_.number = 0;
  value_.str.clear();
  at_time_ = 0;
  at_offset_ = 0;
  distinct_.Clear();
}

Accumulator& Accumulator::operator=(const Accumulator& other) {
  if (this != &other) {
    Accumulator copy(other);
    *this = std::move(copy);
  }
  return *this;
}

void Accumulator::Add(const Value& v, int64_t time, int64_t offset) {
  if (v.is_null()) return;
  switch (fn_) {
    case AggFn::kCount:
      ++count_;
      break;
    case AggFn::kSum:
    case AggFn::kAvg:
      if (v.is_number()) {
        sum_ += v.number;
        ++count_;
      }
      break;
    case AggFn::kMin:
      if (count_++ == 0 || CompareValues(v, value_.view()) < 0) value_.Set(v);
      break;
    case AggFn::kMax:
      if (count_++ == 0 || CompareValues(v, value_.view()) > 0) value_.Set(v);
      break;
    case AggFn::kFirst:
      if (count_++ == 0 || time < at_time_ || (time == at_time_ && offset < at_offset_)) {
        value_.Set(v);
        at_time_ = time;
        at_offset_ = offset;
      }
      break;
    case AggFn::kLast:
      if (count_++ == 0 || time > at_time_ || (time == at_time_ && offset > at_offset_)) {
        value_.Set(v);
        at_time_ = time;
        at_offset_ = offset;
      }
      break;
    case AggFn::kDuration:
      if (count_++ == 0) {
        at_time_ = at_offset_ = time;
      } else {
        at_time_ = std::min(at_time_, time);
        at_offset_ = std::max(at_offset_, time);
      }
      break;
    case AggFn::kCountDistinct: {
      thread_local std::string key;
      DistinctKey(v, &key);
      distinct_.Insert(key);
      break;
    }
  }
}

void Accumulator::Merge(const Accumulator& other) {
  if (other.count_ == 0 && other.distinct_.empty()) return;
  switch (fn_) {
    case AggFn::kCount:
      count_ += other.count_;
      break;
    case AggFn::kSum:
    case AggFn::kAvg:
      sum_ += other.sum_;
      count_ += other.count_;
      break;
    case AggFn::kMin:
    case AggFn::kMax:
      Add(other.value_.view(), 0, 0);
      count_ += other.count_ - 1;
      break;
    case AggFn::kFirst:
    case AggFn::kLast:
      Add(other.value_.view(), other.at_time_, other.at_offset_);
      count_ += other.count_ - 1;
      break;
    case AggFn::kCountDistinct:
      other.distinct_.ForEach([this](const std::string& v) { distinct_.Insert(v); });
      break;
    case AggFn::kDuration:
      Add(Value::Bool(true), other.at_time_, 0);
      Add(Value::Bool(true), other.at_offset_, 0);
      count_ += other.count_ - 2;
      break;
  }
}

Value Accumulator::Result() const {
  switch (fn_) {
    case AggFn::kCount:
      return Value::Number(static_cast<double>(count_));
    case AggFn::kSum:
      return count_ == 0 ? Value::Null() : Value::Number(sum_);
    case AggFn::kAvg:
      return count_ == 0 ? Value::Null() : Value::Number(sum_ / static_cast<double>(count_));
    case AggFn::kMin:
    case AggFn::kMax:
    case AggFn::kFirst:
    case AggFn::kLast:
      return count_ == 0 ? Value::Null() : value_.view();
    case AggFn::kCountDistinct:
      return Value::Number(static_cast<double>(distinct_.size()));
    case AggFn::kDuration:
      return count_ == 0 ? Value::Null()
                         : Value::Number(static_cast<double>(at_offset_ - at_time_));
  }
  return Value::Null();
}

void Accumulator::Encode(Encoder& e) const {
  e.U64(static_cast<uint64_t>(fn_));
  e.I64(count_);
  e.Double(sum_);
  value_.Encode(e);
  e.I64(at_time_);
  e.I64(at_offset_);
  // Distinct values sorted, so equal states encode to equal bytes.
  std::vector<std::string_view> values;
  values.reserve(distinct_.size());
  distinct_.ForEach([&](const std::string& v) { values.push_back(v); });
  std::sort(values.begin(), values.end());
  e.U64(values.size());
  for (std::string_view v : values) e.Bytes(v);
}

void Accumulator::Decode(Decoder& d) {
  fn_ = static_cast<AggFn>(d.U64());
  count_ = d.I64();
  sum_ = d.Double();
  value_.Decode(d);
  at_time_ = d.I64();
  at_offset_ = d.I64();
  uint64_t n = d.U64();
  distinct_.Clear();
  for (uint64_t i = 0; i < n && d.ok(); ++i) distinct_.Insert(std::string(d.Bytes()));
}

}  // namespace sluice::engine
