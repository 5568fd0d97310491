#include "worker/engine/json_writer.h"

#include <catch2/catch.hpp>
#include <charconv>
#include <limits>
#include <random>

namespace sluice::engine {
namespace {

TEST_CASE("strings are escaped per JSON, runs of plain text copied as they are") {
  std::string out;
  JsonWriter::AppendEscaped(&out, "plain");
  REQUIRE(out == "plain");
  out.clear();
  JsonWriter::AppendEscaped(&out, std::string("a\"b\\c\nd\re\tf\bg\fh\x01i\x1f", 18) + "\xc3\xa9");
  REQUIRE(out == "a\\\"b\\\\c\\nd\\re\\tf\\bg\\fh\\u0001i\\u001f\xc3\xa9");
  out.clear();
  JsonWriter::AppendEscaped(&out, "\"");
  REQUIRE(out == "\\\"");
  out.clear();
  JsonWriter::AppendEscaped(&out, "");
  REQUIRE(out.empty());
}

TEST_CASE("documents: commas, nesting, numbers") {
  std::string out;
  JsonWriter w(&out);
  w.BeginObject();
  w.Key("a");
  w.Int(-3);
  w.Key("b");
  w.BeginArray();
  w.Double(2.5);
  w.Double(4.0);
  w.Double(1e300 * 1e300);  // not finite: null
  w.Bool(true);
  w.Null();
  w.EndArray();
  w.Key("c");
  w.BeginObject();
  w.EndObject();
  w.Key("d");
  w.Raw("{\"x\":1}");
  w.Key("e\"");
  w.String("v");
  w.EndObject();
  REQUIRE(out ==
          "{\"a\":-3,\"b\":[2.5,4,null,true,null],\"c\":{},\"d\":{\"x\":1},\"e\\\"\":\"v\"}");
}

TEST_CASE("json::WriteInt writes what std::to_chars writes") {
  std::vector<int64_t> values = {0,
                                 1,
                                 -1,
                                 9,
                                 10,
                                 11,
                                 99,
                                 100,
                                 101,
                                 -10,
                                 -100,
                                 std::numeric_limits<int64_t>::max(),
                                 std::numeric_limits<int64_t>::min(),
                                 1'700'000'000'000};
  for (int64_t p = 1, i = 0; i < 18; ++i, p *= 10) {
    for (int64_t v : {p - 1, p, p + 1, -(p - 1), -p, -(p + 1)}) values.push_back(v);
  }
  std::mt19937_64 rng(9);
  for (int i = 0; i < 100'000; ++i) {
    values.push_back(static_cast<int64_t>(rng() >> (rng() % 64)) * (i % 2 ? 1 : -1));
  }
  for (int64_t v : values) {
    char want[32];
    char got[json::kMaxNumberChars];
    const auto res = std::to_chars(want, want + sizeof(want), v);
    REQUIRE(std::string(got, json::WriteInt(got, v)) == std::string(want, res.ptr));
  }
}

}  // namespace
}  // namespace sluice::engine
