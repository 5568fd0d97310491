#include "worker/instance.h"

#include <catch2/catch.hpp>

#include "worker/state/testing_dir.h"

namespace sluice::worker {
namespace {

TEST_CASE("a data directory has one worker at a time, and an instance that survives restarts") {
  testing::TempDir dir;
  const std::string data = (dir.path() / "data").string();
  std::string first;
  {
    auto claim = DataDirClaim::Take(data);
    REQUIRE(claim.ok());
    first = claim->instance();
    REQUIRE(first.size() == 32);
    auto second = DataDirClaim::Take(data);
    REQUIRE(second.status().code() == StatusCode::kFailedPrecondition);
    REQUIRE(second.status().message().find("is in use by another sluice-worker") !=
            std::string::npos);
  }
  auto again = DataDirClaim::Take(data);  // the lock went with the first
  REQUIRE(again.ok());
  REQUIRE(again->instance() == first);
  auto other = DataDirClaim::Take((dir.path() / "other").string());
  REQUIRE(other.ok());
  REQUIRE(other->instance() != first);
}

TEST_CASE("the default worker id is stable per data directory and differs between them") {
  REQUIRE(DefaultWorkerId("/var/lib/sluice/a") == DefaultWorkerId("/var/lib/sluice/a"));
  REQUIRE(DefaultWorkerId("/var/lib/sluice/a") == DefaultWorkerId("/var/lib/sluice/./a"));
  REQUIRE(DefaultWorkerId("/var/lib/sluice/a") != DefaultWorkerId("/var/lib/sluice/b"));
}

}  // namespace
}  // namespace sluice::worker
