// RocksDbMetadataStore on a temporary directory: commits survive a reopen,
// a batch applies whole, scans see exactly their prefix, and a directory that
// cannot hold a database fails with its name.

#include "coordinator/rocksdb_metadata_store.h"

#include <catch2/catch.hpp>
#include <fstream>
#include <map>
#include <string>

#include "common/temp_dir.h"

namespace sluice::coordinator {
namespace {

std::unique_ptr<RocksDbMetadataStore> Open(const std::string& dir) {
  auto store = RocksDbMetadataStore::Open(dir);
  INFO(store.status().ToString());
  REQUIRE(store.ok());
  return std::move(store).value();
}

std::map<std::string, std::string> ScanAll(const MetadataStore& store, std::string_view prefix) {
  std::map<std::string, std::string> out;
  REQUIRE(store
              .Scan(prefix,
                    [&](std::string_view k, std::string_view v) {
                      out.emplace(std::string(k), std::string(v));
                      return Status::Ok();
                    })
              .ok());
  return out;
}

TEST_CASE("metadata commits survive a reopen, and a batch applies whole") {
  testing::TempDir tmp;
  const std::string dir = tmp.Sub("coordinator");
  {
    auto store = Open(dir);
    WriteBatch first;
    first.Put("job/a", "1");
    first.Put("job/b", "2");
    first.Put("task/a/00000000", "t0");
    REQUIRE(store->Commit(first).ok());
    WriteBatch second;
    second.Delete("job/a");
    second.Put("job/c", "3");
    REQUIRE(store->Commit(second).ok());
    REQUIRE(store->Commit(WriteBatch()).ok());  // nothing to write
  }
  auto store = Open(dir);
  CHECK(ScanAll(*store, "job/") ==
        std::map<std::string, std::string>{{"job/b", "2"}, {"job/c", "3"}});
  CHECK(ScanAll(*store, "task/") == std::map<std::string, std::string>{{"task/a/00000000", "t0"}});
  CHECK(ScanAll(*store, "jo").size() == 2);
  CHECK(ScanAll(*store, "nothing/").empty());
}

TEST_CASE("a scan stops at the first error its callback returns") {
  testing::TempDir tmp;
  auto store = Open(tmp.Sub("coordinator"));
  WriteBatch batch;
  for (const char* k : {"job/a", "job/b", "job/c"}) batch.Put(k, "x");
  REQUIRE(store->Commit(batch).ok());
  int seen = 0;
  Status s = store->Scan("job/", [&](std::string_view, std::string_view) {
    return ++seen == 2 ? Status::Corruption("bad record") : Status::Ok();
  });
  CHECK(s.code() == StatusCode::kCorruption);
  CHECK(seen == 2);
}

TEST_CASE("a metadata directory that is a file fails with its name") {
  testing::TempDir tmp;
  const std::string path = tmp.Sub("not-a-dir");
  std::ofstream(path) << "x";
  auto store = RocksDbMetadataStore::Open(path);
  REQUIRE_FALSE(store.ok());
  CHECK_THAT(store.status().message(), Catch::Contains(path));
}

}  // namespace
}  // namespace sluice::coordinator
