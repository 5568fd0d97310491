#include "worker/engine/state_store.h"

#include <catch2/catch.hpp>

#include "worker/engine/codec.h"

namespace sluice::engine {
namespace {

TEST_CASE("in-memory store applies batches and scans by prefix") {
  InMemoryStateStore store;
  WriteBatch b;
  b.Put("k/a", "1");
  b.Put("k/b", "2");
  b.Put("m", "meta");
  REQUIRE(store.Write(b).ok());
  WriteBatch b2;
  b2.Delete("k/a");
  b2.Put("k/c", "3");
  REQUIRE(store.Write(b2).ok());

  std::vector<std::string> seen;
  REQUIRE(store
              .Scan("k/",
                    [&](std::string_view k, std::string_view v) {
                      seen.push_back(std::string(k) + "=" + std::string(v));
                      return Status::Ok();
                    })
              .ok());
  REQUIRE(seen == std::vector<std::string>{"k/b=2", "k/c=3"});
  REQUIRE(store.Get("m")->value() == "meta");
  REQUIRE_FALSE(store.Get("k/a")->has_value());
}

TEST_CASE("codec round-trips and detects truncation") {
  std::string buf;
  Encoder e(&buf);
  e.U64(300);
  e.I64(-5);
  e.I64(INT64_MIN);
  e.Double(2.5);
  e.Bytes("hello");
  e.Bool(true);
  Decoder d(buf);
  REQUIRE(d.U64() == 300);
  REQUIRE(d.I64() == -5);
  REQUIRE(d.I64() == INT64_MIN);
  REQUIRE(d.Double() == 2.5);
  REQUIRE(d.Bytes() == "hello");
  REQUIRE(d.Bool());
  REQUIRE(d.ok());
  REQUIRE(d.done());

  Decoder truncated(std::string_view(buf).substr(0, buf.size() - 4));
  truncated.U64();
  truncated.I64();
  truncated.I64();
  truncated.Double();
  truncated.Bytes();
  REQUIRE_FALSE(truncated.ok());
}

}  // namespace
}  // namespace sluice::engine
