#include "common/status.h"

#include <catch2/catch.hpp>

namespace sluice {
namespace {

Result<int> Half(int x) {
  if (x % 2 != 0) return Status::InvalidArgument("odd: " + std::to_string(x));
  return x / 2;
}

Result<int> Quarter(int x) {
  SLUICE_ASSIGN_OR_RETURN(int h, Half(x));
  return Half(h);
}

TEST_CASE("Result carries a value or an error") {
  REQUIRE(Quarter(8).ok());
  REQUIRE(*Quarter(8) == 2);
  Result<int> r = Quarter(6);
  REQUIRE_FALSE(r.ok());
  REQUIRE(r.status().code() == StatusCode::kInvalidArgument);
  REQUIRE(r.status().message() == "odd: 3");
  REQUIRE(r.status().ToString() == "invalid argument: odd: 3");
}

}  // namespace
}  // namespace sluice
