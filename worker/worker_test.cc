#include <catch2/catch.hpp>

#include "worker/partitions.h"

namespace sluice::worker {
namespace {

TEST_CASE("partition lists parse, and bad ones are rejected with the expected form") {
  REQUIRE(ParsePartitions("all")->empty());
  REQUIRE(*ParsePartitions("0-3,5,7") == std::vector<int32_t>{0, 1, 2, 3, 5, 7});
  REQUIRE(*ParsePartitions("3,1,1") == std::vector<int32_t>{1, 3});
  for (const char* bad : {"x", "1-", "-1", "3-1", "1,,2", "1.5", "0-3x"}) {
    INFO(bad);
    auto r = ParsePartitions(bad);
    REQUIRE_FALSE(r.ok());
    REQUIRE(r.status().message().find("expected a list like 0-3,5,7") != std::string::npos);
  }
}

}  // namespace
}  // namespace sluice::worker
