#include "common/file_util.h"

#include <catch2/catch.hpp>
#include <fstream>
#include <string>

#include "common/temp_dir.h"

namespace sluice {
namespace {

TEST_CASE("ReadFileUpTo reads a whole file, or up to the limit") {
  testing::TempDir dir;
  const std::string path = (dir.path() / "f").string();
  std::ofstream(path, std::ios::binary) << std::string("abc\0def", 7);
  Result<std::string> all = ReadFileUpTo(path);
  REQUIRE(all.ok());
  CHECK(*all == std::string("abc\0def", 7));
  Result<std::string> cut = ReadFileUpTo(path, 4);
  REQUIRE(cut.ok());
  CHECK(*cut == std::string("abc\0", 4));
  Result<std::string> none = ReadFileUpTo(path, 0);
  REQUIRE(none.ok());
  CHECK(none->empty());
}

TEST_CASE("ReadFileUpTo: a missing file is NotFound, a directory an IoError, with the reason") {
  testing::TempDir dir;
  Result<std::string> missing = ReadFileUpTo((dir.path() / "none").string());
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.status().code() == StatusCode::kNotFound);
  CHECK(missing.status().message() == "No such file or directory");
  Result<std::string> directory = ReadFileUpTo(dir.path().string());
  REQUIRE_FALSE(directory.ok());
  CHECK(directory.status().code() == StatusCode::kIoError);
  CHECK(directory.status().message() == "it is a directory");
}

}  // namespace
}  // namespace sluice
