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
      extra_(other.extra_ ? std::make_unique<Extra>(*other.extra_) : nullptr) {}

bool Accumulator::NeedsExtra(AggFn fn) {
  switch (fn) {
    case AggFn::kCount:
    case AggFn::kSum:
    case AggFn::kAvg:
      return false;
    default:
      return true;
  }
}

size_t Accumulator::ExtraBytes() { return sizeof(Extra); }

const Accumulator::Extra& Accumulator::extra_view() const {
  static const Extra kNone;
  return extra_ ? *extra_ : kNone;
}

void Accumulator::Reset(AggFn fn) {
  fn_ = fn;
  count_ = 0;
  sum_ = 0;
  if (extra_) {  // kept for reuse
    Extra& x = *extra_;
    x.value.type = ValueType::kNull;
    x.value.boolean = false;
    x.value.number = 0;
    x.value.str.clear();
    x.at_time = 0;
    x.at_offset = 0;
    x.distinct.Clear();
  }
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
    case AggFn::kMin: {
      Extra& x = extra();
      if (count_++ == 0 || CompareValues(v, x.value.view()) < 0) x.value.Set(v);
      break;
    }
    case AggFn::kMax: {
      Extra& x = extra();
      if (count_++ == 0 || CompareValues(v, x.value.view()) > 0) x.value.Set(v);
      break;
    }
    case AggFn::kFirst: {
      Extra& x = extra();
      if (count_++ == 0 || time < x.at_time || (time == x.at_time && offset < x.at_offset)) {
        x.value.Set(v);
        x.at_time = time;
        x.at_offset = offset;
      }
      break;
    }
    case AggFn::kLast: {
      Extra& x = extra();
      if (count_++ == 0 || time > x.at_time || (time == x.at_time && offset > x.at_offset)) {
        x.value.Set(v);
        x.at_time = time;
        x.at_offset = offset;
      }
      break;
    }
    case AggFn::kDuration: {
      Extra& x = extra();
      if (count_++ == 0) {
        x.at_time = x.at_offset = time;
      } else {
        x.at_time = std::min(x.at_time, time);
        x.at_offset = std::max(x.at_offset, time);
      }
      break;
    }
    case AggFn::kCountDistinct: {
      thread_local std::string key;
      DistinctKey(v, &key);
      extra().distinct.Insert(key);
      break;
    }
  }
}

void Accumulator::Merge(const Accumulator& other) {
  const Extra& o = other.extra_view();
  if (other.count_ == 0 && o.distinct.empty()) return;
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
      Add(o.value.view(), 0, 0);
      count_ += other.count_ - 1;
      break;
    case AggFn::kFirst:
    case AggFn::kLast:
      Add(o.value.view(), o.at_time, o.at_offset);
      count_ += other.count_ - 1;
      break;
    case AggFn::kCountDistinct: {
      Extra& x = extra();
      o.distinct.ForEach([&x](const std::string& v) { x.distinct.Insert(v); });
      break;
    }
    case AggFn::kDuration:
      Add(Value::Bool(true), o.at_time, 0);
      Add(Value::Bool(true), o.at_offset, 0);
      count_ += other.count_ - 2;
      break;
  }
}

Value Accumulator::Result() const {
  const Extra& x = extra_view();
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
      return count_ == 0 ? Value::Null() : x.value.view();
    case AggFn::kCountDistinct:
      return Value::Number(static_cast<double>(x.distinct.size()));
    case AggFn::kDuration:
      return count_ == 0 ? Value::Null()
                         : Value::Number(static_cast<double>(x.at_offset - x.at_time));
  }
  return Value::Null();
}

void Accumulator::Encode(Encoder& e) const {
  const Extra& x = extra_view();
  e.U64(static_cast<uint64_t>(fn_));
  e.I64(count_);
  e.Double(sum_);
  x.value.Encode(e);
  e.I64(x.at_time);
  e.I64(x.at_offset);
  // Distinct values sorted, so equal states encode to equal bytes.
  std::vector<std::string_view> values;
  values.reserve(x.distinct.size());
  x.distinct.ForEach([&](const std::string& v) { values.push_back(v); });
  std::sort(values.begin(), values.end());
  e.U64(values.size());
  for (std::string_view v : values) e.Bytes(v);
}

void Accumulator::Decode(Decoder& d) {
  fn_ = static_cast<AggFn>(d.U64());
  count_ = d.I64();
  sum_ = d.Double();
  // A count, sum or avg holds the fields' defaults: read into scratch.
  thread_local Extra scratch;
  Extra& x = NeedsExtra(fn_) ? extra() : scratch;
  x.value.Decode(d);
  x.at_time = d.I64();
  x.at_offset = d.I64();
  uint64_t n = d.U64();
  x.distinct.Clear();
  for (uint64_t i = 0; i < n && d.ok(); ++i) x.distinct.Insert(std::string(d.Bytes()));
}

}  // namespace sluice::engine
