#include "worker/engine/time_util.h"

#include <catch2/catch.hpp>

namespace sluice::engine {
namespace {

TEST_CASE("RFC 3339 times parse to epoch milliseconds") {
  REQUIRE(ParseRfc3339Millis("1970-01-01T00:00:00Z") == 0);
  REQUIRE(ParseRfc3339Millis("2023-11-14T22:13:20Z") == 1700000000000);
  REQUIRE(ParseRfc3339Millis("2023-11-14T22:13:20.5Z") == 1700000000500);
  REQUIRE(ParseRfc3339Millis("2023-11-14T22:13:20.123456Z") == 1700000000123);
  REQUIRE(ParseRfc3339Millis("2023-11-14T23:13:20+01:00") == 1700000000000);
  REQUIRE(ParseRfc3339Millis("2023-11-14T21:43:20-00:30") == 1700000000000);
  REQUIRE(ParseRfc3339Millis("1969-12-31T23:59:59.999Z") == -1);
  REQUIRE(ParseRfc3339Millis("2024-02-29T00:00:00z") == 1709164800000);
}

TEST_CASE("malformed RFC 3339 times are rejected") {
  for (const char* bad : {"", "2023", "2023-11-14", "2023-11-14T22:13:20", "2023-13-01T00:00:00Z",
                          "2023-02-30T00:00:00Z", "2023-11-14T24:00:00Z", "2023-11-14T22:13:20.Z",
                          "2023-11-14T22:13:20Zjunk", "2023-11-14T22:13:20+1:00", "yesterday"}) {
    INFO(bad);
    REQUIRE_FALSE(ParseRfc3339Millis(bad).has_value());
  }
}

TEST_CASE("times format back to RFC 3339") {
  REQUIRE(FormatRfc3339Millis(1700000000000) == "2023-11-14T22:13:20Z");
  REQUIRE(FormatRfc3339Millis(1700000000250) == "2023-11-14T22:13:20.250Z");
  REQUIRE(FormatRfc3339Millis(-1) == "1969-12-31T23:59:59.999Z");
  REQUIRE(ParseRfc3339Millis(FormatRfc3339Millis(1954061239017)) == 1954061239017);
}

TEST_CASE("approximate durations use the largest whole unit") {
  REQUIRE(FormatApproxDuration(250) == "250ms");
  REQUIRE(FormatApproxDuration(12'500) == "12s");
  REQUIRE(FormatApproxDuration(3 * 3600'000 + 5) == "3h");
  REQUIRE(FormatApproxDuration(8 * 86400'000LL) == "8d");
  REQUIRE(FormatApproxDuration(4 * 365 * 86400'000LL + 86400'000LL) == "4y");
}

TEST_CASE("saturating add clamps at the ends of time") {
  REQUIRE(SaturatingAdd(kMaxTime, 5) == kMaxTime);
  REQUIRE(SaturatingAdd(kMinTime, -5) == kMinTime);
  REQUIRE(SaturatingAdd(10, -3) == 7);
}

}  // namespace
}  // namespace sluice::engine
