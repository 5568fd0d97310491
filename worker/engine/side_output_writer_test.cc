// Late records and dead letters, byte for byte, and the Base64 they use.

#include "worker/engine/side_output_writer.h"

#include <catch2/catch.hpp>
#include <string>

#include "worker/engine/base64.h"

namespace sluice::engine {
namespace {

std::string Base64(std::string_view in) {
  std::string out = "prefix:";
  AppendBase64(&out, in);
  return out.substr(7);
}

TEST_CASE("Base64 of the RFC 4648 test vectors") {
  CHECK(Base64("") == "");
  CHECK(Base64("f") == "Zg==");
  CHECK(Base64("fo") == "Zm8=");
  CHECK(Base64("foo") == "Zm9v");
  CHECK(Base64("foob") == "Zm9vYg==");
  CHECK(Base64("fooba") == "Zm9vYmE=");
  CHECK(Base64("foobar") == "Zm9vYmFy");
  CHECK(Base64(std::string("\xff\xfe\x7b\x00", 4)) == "//57AA==");
}

TEST_CASE("a late record carries the job, key, times, event and source") {
  SideOutputWriter w("pay\"ments", 1024);
  w.SetSource("events", 3);
  REQUIRE(w.Late("u\n1", 1000, 1999, R"({"user":"u\n1","ts":1000})", 42) ==
          R"({"job":"pay\"ments","reason":"late","key":"u\n1","event_time":1000,)"
          R"("watermark":1999,"event":{"user":"u\n1","ts":1000},)"
          R"("source":{"topic":"events","partition":3,"offset":42}})");
  // The source may change; the buffer is reused.
  w.SetSource("other", 0);
  REQUIRE(w.Late("k", -5, -6, "{}", 0) ==
          R"({"job":"pay\"ments","reason":"late","key":"k","event_time":-5,"watermark":-6,)"
          R"("event":{},"source":{"topic":"other","partition":0,"offset":0}})");
}

TEST_CASE("a dead letter carries the reason and the record as it came") {
  SideOutputWriter w("job", 1024);
  w.SetSource("events", 0);
  REQUIRE(w.DeadLetter("invalid_json at byte 1: \"x\"", "{oops", 7) ==
          R"({"job":"job","reason":"invalid_json at byte 1: \"x\"",)"
          R"("source":{"topic":"events","partition":0,"offset":7},"raw":"{oops"})");
}

TEST_CASE("a dead letter that is not UTF-8 carries its record in Base64") {
  SideOutputWriter w("job", 1024);
  w.SetSource("events", 0);
  REQUIRE(w.DeadLetter("bad", std::string("\xff\xfe\x7b", 3), 1) ==
          R"({"job":"job","reason":"bad","source":{"topic":"events","partition":0,"offset":1},)"
          R"("raw_base64":"//57"})");
}

TEST_CASE("a dead letter carries at most max_record_bytes of its record") {
  SideOutputWriter w("job", 8);
  w.SetSource("events", 0);
  const std::string head = R"({"job":"job","reason":"big",)"
                           R"("source":{"topic":"events","partition":0,"offset":2},)";
  // UTF-8: the first 8 bytes.
  REQUIRE(w.DeadLetter("big", "0123456789", 2) ==
          head + R"("raw":"01234567","raw_bytes":10,"truncated":true})");
  // Cut at a character boundary: "é" is 2 bytes, at bytes 7 and 8.
  REQUIRE(w.DeadLetter("big", "0123456\xc3\xa9x", 2) ==
          head + R"("raw":"0123456","raw_bytes":10,"truncated":true})");
  // Not UTF-8: Base64 of the first 6 bytes, whose encoding is 8 characters.
  REQUIRE(w.DeadLetter("big",
                       "\xff"
                       "123456789",
                       2) == head + R"("raw_base64":"/zEyMzQ1","raw_bytes":10,"truncated":true})");
  // Exactly the limit: not cut.
  REQUIRE(w.DeadLetter("big", "01234567", 2) == head + R"("raw":"01234567"})");
}

}  // namespace
}  // namespace sluice::engine
