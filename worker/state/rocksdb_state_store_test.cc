#include "worker/state/rocksdb_state_store.h"

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

#include "worker/state/testing_dir.h"

namespace sluice::worker {
namespace {

using engine::WriteBatch;
using testing::OpenBackend;
using testing::OpenTask;
using testing::TempDir;
using Entries = std::vector<std::pair<std::string, std::string>>;

Entries ScanAll(const engine::StateStore& store, std::string_view prefix) {
  Entries out;
  Status s = store.Scan(prefix, [&](std::string_view k, std::string_view v) {
    out.emplace_back(std::string(k), std::string(v));
    return Status::Ok();
  });
  REQUIRE(s.ok());
  return out;
}

std::optional<std::string> GetOrFail(const engine::StateStore& store, std::string_view key) {
  auto r = store.Get(key);
  REQUIRE(r.ok());
  return *r;
}

TEST_CASE("rocksdb state store: batches, get, prefix scan in key order, deletes") {
  TempDir tmp;
  auto backend = OpenBackend(tmp.Sub("data"));
  auto store = OpenTask(*backend, "job-0", false);

  WriteBatch b1;
  b1.Put("w/b", "2");
  b1.Put("w/a", "1");
  b1.Put("w/c", "3");
  b1.Put("x", "other");
  b1.Put(std::string("w/\xff\xff", 4), "high");
  b1.Put("v", "before");
  REQUIRE(store->Write(b1).ok());

  REQUIRE(GetOrFail(*store, "w/a") == "1");
  REQUIRE_FALSE(GetOrFail(*store, "w/zz").has_value());
  REQUIRE(
      ScanAll(*store, "w/") ==
      Entries{{"w/a", "1"}, {"w/b", "2"}, {"w/c", "3"}, {std::string("w/\xff\xff", 4), "high"}});
  REQUIRE(ScanAll(*store, "").size() == 6);
  REQUIRE(ScanAll(*store, "nothing").empty());

  // A batch of puts and deletes is applied as a whole; later ops win.
  WriteBatch b2;
  b2.Delete("w/b");
  b2.Put("w/a", "1b");
  b2.Put("w/d", "4");
  b2.Delete("w/d");
  b2.Delete("never-there");
  REQUIRE(store->Write(b2).ok());
  REQUIRE(ScanAll(*store, "w/") ==
          Entries{{"w/a", "1b"}, {"w/c", "3"}, {std::string("w/\xff\xff", 4), "high"}});
  REQUIRE(GetOrFail(*store, "x") == "other");

  // Binary keys and values survive.
  WriteBatch b3;
  b3.Put(std::string("k\0\1", 3), std::string("v\0\2", 3));
  REQUIRE(store->Write(b3).ok());
  REQUIRE(GetOrFail(*store, std::string("k\0\1", 3)) == std::string("v\0\2", 3));

  // An error from the callback stops the scan and is returned.
  int calls = 0;
  Status s = store->Scan("w/", [&](std::string_view, std::string_view) {
    ++calls;
    return Status::Internal("stop");
  });
  REQUIRE(s.code() == StatusCode::kInternal);
  REQUIRE(calls == 1);
}

TEST_CASE("rocksdb state store: a batch larger than a piece is applied whole, in order") {
  TempDir tmp;
  auto backend = OpenBackend(tmp.Sub("data"));
  auto store = OpenTask(*backend, "job-0", false);
  WriteBatch batch;
  const std::string value(1000, 'v');
  // Three pieces' worth of puts, each key deleted again in a later piece
  // when it is even, and one key written in the first piece and the last.
  const size_t keys = 3 * RocksDbStateStore::kPieceBytes / value.size();
  batch.Put("z/last", "first");
  for (size_t i = 0; i < keys; ++i) batch.Put("k/" + std::to_string(i), value);
  for (size_t i = 0; i < keys; i += 2) batch.Delete("k/" + std::to_string(i));
  batch.Put("z/last", "second");
  REQUIRE(store->WriteInPieces(batch).ok());
  REQUIRE(ScanAll(*store, "k/").size() == keys / 2);
  REQUIRE(GetOrFail(*store, "k/1") == value);
  REQUIRE(GetOrFail(*store, "k/0") == std::nullopt);
  const size_t last_odd = keys % 2 == 0 ? keys - 1 : keys - 2;
  REQUIRE(GetOrFail(*store, "k/" + std::to_string(last_odd)) == value);
  REQUIRE(GetOrFail(*store, "k/" + std::to_string(last_odd - 1)) == std::nullopt);
  REQUIRE(GetOrFail(*store, "z/last") == "second");
}

TEST_CASE("rocksdb state store: reopen keeps data, wipe clears it, closed store refuses") {
  TempDir tmp;
  auto backend = OpenBackend(tmp.Sub("data"));
  {
    auto store = OpenTask(*backend, "job-1", false);
    WriteBatch b;
    for (int i = 0; i < 1000; ++i) b.Put("k" + std::to_string(i), std::string(100, 'a' + i % 26));
    REQUIRE(store->Write(b).ok());
    REQUIRE(store->Close().ok());
    REQUIRE(store->Close().ok());
    REQUIRE(store->db() == nullptr);
    REQUIRE(store->Get("k1").status().code() == StatusCode::kFailedPrecondition);
    REQUIRE(store->Write(b).code() == StatusCode::kFailedPrecondition);
  }
  {
    auto store = OpenTask(*backend, "job-1", false);
    REQUIRE(GetOrFail(*store, "k999") == std::string(100, 'a' + 999 % 26));
    REQUIRE(ScanAll(*store, "k").size() == 1000);
    // Opening the same task twice is refused (RocksDB's lock), not corrupted.
    auto twice = backend->OpenTask("job-1", false);
    REQUIRE_FALSE(twice.ok());
    REQUIRE(twice.status().message().find("job-1") != std::string::npos);
  }  // destructor closes
  {
    auto store = OpenTask(*backend, "job-1", true);
    REQUIRE(ScanAll(*store, "").empty());
  }
  REQUIRE(backend->TaskDir("job-1") == (tmp.path() / "data" / "job-1").string());
  REQUIRE(backend->data_dir() == tmp.Sub("data"));
  for (const char* bad : {"", ".", "..", "a/b"}) {
    REQUIRE(backend->OpenTask(bad, false).status().code() == StatusCode::kInvalidArgument);
  }
}

TEST_CASE("rocksdb state store: a scratch store (a spill store) opens empty every time") {
  TempDir tmp;
  auto backend = OpenBackend(tmp.Sub("data"));
  {
    auto scratch = backend->OpenScratch("job-1.spill");
    REQUIRE(scratch.ok());
    WriteBatch b;
    b.Put("k/a", "1");
    b.Put("t/x", "");
    REQUIRE((*scratch)->Write(b).ok());
    REQUIRE(GetOrFail(**scratch, "k/a") == "1");
    REQUIRE(ScanAll(**scratch, "t/").size() == 1);
  }
  auto again = backend->OpenScratch("job-1.spill");
  REQUIRE(again.ok());
  REQUIRE(ScanAll(**again, "").empty());
}

TEST_CASE("rocksdb state store: two tasks sharing a backend are isolated") {
  TempDir tmp;
  auto backend = OpenBackend(tmp.Sub("data"));
  auto a = OpenTask(*backend, "sessions-0", false);
  auto b = OpenTask(*backend, "sessions-1", false);
  WriteBatch wa;
  wa.Put("key", "from a");
  wa.Put("only-a", "1");
  REQUIRE(a->Write(wa).ok());
  WriteBatch wb;
  wb.Put("key", "from b");
  REQUIRE(b->Write(wb).ok());
  REQUIRE(GetOrFail(*a, "key") == "from a");
  REQUIRE(GetOrFail(*b, "key") == "from b");
  REQUIRE_FALSE(GetOrFail(*b, "only-a").has_value());
  REQUIRE(ScanAll(*b, "") == Entries{{"key", "from b"}});
  // Wiping one leaves the other.
  REQUIRE(b->Close().ok());
  b = OpenTask(*backend, "sessions-1", true);
  REQUIRE(ScanAll(*b, "").empty());
  REQUIRE(ScanAll(*a, "").size() == 2);
  // Stores may outlive the backend (they hold the shared cache themselves).
  backend.reset();
  REQUIRE(GetOrFail(*a, "only-a") == "1");
}

TEST_CASE("state backend: an unusable data directory is a clear IoError") {
  auto r = StateBackend::Open("/proc/sluice-x", StateOptions{});
  REQUIRE_FALSE(r.ok());
  REQUIRE(r.status().code() == StatusCode::kIoError);
  REQUIRE(r.status().message().find("/proc/sluice-x") != std::string::npos);

  TempDir tmp;
  const std::string file = tmp.Sub("a-file");
  { std::ofstream(file) << "x"; }
  auto f = StateBackend::Open(file, StateOptions{});
  REQUIRE(f.status().code() == StatusCode::kIoError);
  REQUIRE(f.status().message().find(file) != std::string::npos);
}

}  // namespace
}  // namespace sluice::worker
