#include "worker/engine/aggregate.h"

#include <catch2/catch.hpp>
#include <string>
#include <vector>

namespace sluice::engine {
namespace {

TEST_CASE("merging partial accumulators equals adding everything to one") {
  const std::vector<Value> values = {Value::Number(3),  Value::String("b"), Value::Null(),
                                     Value::Number(-2), Value::String("a"), Value::Number(3)};
  for (AggFn fn : {AggFn::kCount, AggFn::kSum, AggFn::kMin, AggFn::kMax, AggFn::kAvg,
                   AggFn::kCountDistinct, AggFn::kFirst, AggFn::kLast, AggFn::kDuration}) {
    Accumulator whole(fn), left(fn), right(fn);
    for (size_t i = 0; i < values.size(); ++i) {
      whole.Add(values[i], static_cast<int64_t>(i % 3), static_cast<int64_t>(i));
      (i % 2 == 0 ? left : right)
          .Add(values[i], static_cast<int64_t>(i % 3), static_cast<int64_t>(i));
    }
    Accumulator merged = left;
    merged.Merge(right);
    Accumulator merged_other_way = right;
    merged_other_way.Merge(left);
    INFO(static_cast<int>(fn));
    REQUIRE(CompareValues(merged.Result(), whole.Result()) == 0);
    REQUIRE(CompareValues(merged_other_way.Result(), whole.Result()) == 0);
  }
}

TEST_CASE("aggregate results") {
  auto result = [](AggFn fn) {
    Accumulator a(fn);
    a.Add(Value::Number(4), 10, 0);
    a.Add(Value::Number(1), 5, 1);
    a.Add(Value::Null(), 1, 2);
    a.Add(Value::Number(4), 20, 3);
    return a.Result();
  };
  REQUIRE(result(AggFn::kCount).number == 3);
  REQUIRE(result(AggFn::kSum).number == 9);
  REQUIRE(result(AggFn::kMin).number == 1);
  REQUIRE(result(AggFn::kMax).number == 4);
  REQUIRE(result(AggFn::kAvg).number == 3);
  REQUIRE(result(AggFn::kCountDistinct).number == 2);
  REQUIRE(result(AggFn::kFirst).number == 1);  // earliest event time
  REQUIRE(result(AggFn::kLast).number == 4);
  REQUIRE(result(AggFn::kDuration).number == 15);  // times 5..20; the null is skipped
  REQUIRE(Accumulator(AggFn::kDuration).Result().is_null());
  REQUIRE(Accumulator(AggFn::kSum).Result().is_null());
  REQUIRE(Accumulator(AggFn::kCount).Result().number == 0);
}

TEST_CASE("accumulators survive encoding") {
  for (AggFn fn : {AggFn::kSum, AggFn::kMin, AggFn::kCountDistinct, AggFn::kLast}) {
    Accumulator a(fn);
    a.Add(Value::String("x"), 1, 1);
    a.Add(Value::Number(2.5), 2, 2);
    a.Add(Value::String("y"), 3, 3);
    std::string buf;
    Encoder e(&buf);
    a.Encode(e);
    Accumulator b;
    Decoder d(buf);
    b.Decode(d);
    REQUIRE(d.ok());
    REQUIRE(b.fn() == fn);
    REQUIRE(CompareValues(a.Result(), b.Result()) == 0);
    // Same state, same bytes.
    std::string again;
    Encoder e2(&again);
    b.Encode(e2);
    REQUIRE(again == buf);
  }
}

std::string Encoded(const Accumulator& a) {
  std::string out;
  Encoder e(&out);
  a.Encode(e);
  return out;
}

TEST_CASE("count_distinct is exact below, at and above the small-set size, and encodes sorted") {
  for (int n : {0, 1, 15, 16, 17, 40, 1000}) {
    Accumulator a(AggFn::kCountDistinct), b(AggFn::kCountDistinct);
    for (int i = 0; i < 3 * n; ++i) {
      const std::string page = "/p" + std::to_string(i % std::max(n, 1));
      a.Add(Value::String(page), i, i);
      b.Add(Value::String(page), i, i);
      a.Add(Value::Number(i % std::max(n, 1)), i, i);  // numbers differ from strings
    }
    if (n == 0) b.Add(Value::Null(), 0, 0);
    INFO(n);
    REQUIRE(a.Result().number == 2 * n);
    REQUIRE(b.Result().number == n);
    // The same values in another order encode to the same bytes.
    Accumulator c(AggFn::kCountDistinct);
    for (int i = 3 * n - 1; i >= 0; --i) {
      c.Add(Value::String("/p" + std::to_string(i % std::max(n, 1))), i, i);
    }
    Accumulator c_state = c;
    REQUIRE(Encoded(c) == Encoded(b));
    const std::string bytes = Encoded(b);
    Decoder d(bytes);
    Accumulator decoded;
    decoded.Decode(d);
    REQUIRE(d.ok());
    REQUIRE(Encoded(decoded) == Encoded(b));
    Accumulator merged(AggFn::kCountDistinct);
    merged.Merge(a);
    merged.Merge(c_state);
    REQUIRE(merged.Result().number == 2 * n);
  }
}

TEST_CASE("Reset leaves an accumulator as a new one") {
  for (AggFn fn : {AggFn::kCount, AggFn::kSum, AggFn::kMin, AggFn::kMax, AggFn::kAvg,
                   AggFn::kCountDistinct, AggFn::kFirst, AggFn::kLast, AggFn::kDuration}) {
    Accumulator used(AggFn::kCountDistinct);
    for (int i = 0; i < 30; ++i) used.Add(Value::String("v" + std::to_string(i)), i, i);
    Accumulator last(AggFn::kLast);
    last.Add(Value::String("a long string value, not a short one"), 5, 5);
    for (Accumulator* a : {&used, &last}) {
      a->Reset(fn);
      INFO(static_cast<int>(fn));
      REQUIRE(Encoded(*a) == Encoded(Accumulator(fn)));
      a->Add(Value::Number(2), 1, 1);
      Accumulator fresh(fn);
      fresh.Add(Value::Number(2), 1, 1);
      REQUIRE(Encoded(*a) == Encoded(fresh));
    }
  }
}

}  // namespace
}  // namespace sluice::engine
