#include "worker/engine/json_writer.h"

#include <catch2/catch.hpp>

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
  REQUIRE(out == "{\"a\":-3,\"b\":[2.5,4,null,true,null],\"c\":{},\"d\":{\"x\":1},\"e\\\"\":\"v\"}");
}

}  // namespace
}  // namespace sluice::engine
