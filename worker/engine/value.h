#pragma once

// Value: one field of an event, or the result of an expression, as seen by the
// engine. A Value does not own its string: `str` points into the decoded event,
// the job plan (literals) or an EvalScratch. Copying a Value never allocates.

#include <cstdint>
#include <string_view>

namespace sluice::engine {

enum class ValueType : uint8_t { kNull, kBool, kNumber, kString };

struct Value {
  ValueType type = ValueType::kNull;
  bool boolean = false;
  double number = 0;
  std::string_view str;

  static Value Null() { return Value(); }
  static Value Bool(bool b) {
    Value v;
    v.type = ValueType::kBool;
    v.boolean = b;
    return v;
  }
  static Value Number(double n) {
    Value v;
    v.type = ValueType::kNumber;
    v.number = n;
    return v;
  }
  static Value String(std::string_view s) {
    Value v;
    v.type = ValueType::kString;
    v.str = s;
    return v;
  }

  bool is_null() const { return type == ValueType::kNull; }
  bool is_bool() const { return type == ValueType::kBool; }
  bool is_number() const { return type == ValueType::kNumber; }
  bool is_string() const { return type == ValueType::kString; }
  // True only for a boolean true; null and every other type are false. This is
  // how a filter, `when` or `having` is judged.
  bool IsTrue() const { return type == ValueType::kBool && boolean; }
};

}  // namespace sluice::engine
