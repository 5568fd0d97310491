#include "common/write_batch.h"

#include <algorithm>
#include <catch2/catch.hpp>
#include <string>
#include <vector>

namespace sluice {
namespace {

struct Seen {
  std::string key;
  std::string value;
  bool put;
  bool operator==(const Seen& o) const { return key == o.key && value == o.value && put == o.put; }
};

std::vector<Seen> Ops(const WriteBatch& batch) {
  std::vector<Seen> out;
  for (const WriteBatch::Op& op : batch) {
    out.push_back({std::string(op.key), std::string(op.value), op.put});
  }
  return out;
}

TEST_CASE("WriteBatch gives back its operations in order, with any bytes") {
  WriteBatch batch;
  REQUIRE(batch.empty());
  REQUIRE(batch.begin() == batch.end());
  const std::string binary("a\0b\xff", 4);
  batch.Put("k1", "v1");
  batch.Delete("gone");
  batch.Put(binary, std::string(300, 'x'));
  batch.Put("", "");
  REQUIRE(batch.count() == 4);
  REQUIRE_FALSE(batch.empty());
  REQUIRE(Ops(batch) == std::vector<Seen>{{"k1", "v1", true},
                                          {"gone", "", false},
                                          {binary, std::string(300, 'x'), true},
                                          {"", "", true}});
}

TEST_CASE("WriteBatch's encoding is the delta checkpoint's: tag, 4-byte lengths, bytes") {
  WriteBatch batch;
  batch.Put("ab", "xyz");
  batch.Delete("c");
  using namespace std::string_literals;
  // (Each hex escape ends its literal: "\x00a" would be one escape.)
  const std::string expected =
      "P\x02\x00\x00\x00"s + "ab" + "\x03\x00\x00\x00"s + "xyz" + "D\x01\x00\x00\x00"s + "c";
  REQUIRE(batch.chunks().size() == 1);
  REQUIRE(batch.chunks()[0] == expected);
  REQUIRE(batch.bytes() == expected.size());
}

TEST_CASE("WriteBatch::DecodeOp reads an encoding back and refuses one cut or malformed") {
  WriteBatch batch;
  batch.Put("ab", "xyz");
  batch.Delete("c");
  const std::string encoded(batch.chunks()[0]);
  std::string_view in = encoded;
  WriteBatch::Op op;
  REQUIRE(WriteBatch::DecodeOp(&in, &op));
  REQUIRE((op.put && op.key == "ab" && op.value == "xyz"));
  REQUIRE(WriteBatch::DecodeOp(&in, &op));
  REQUIRE((!op.put && op.key == "c" && op.value.empty()));
  REQUIRE(in.empty());
  REQUIRE_FALSE(WriteBatch::DecodeOp(&in, &op));
  for (size_t cut = 1; cut < 14; ++cut) {  // inside the put
    std::string_view part = std::string_view(encoded).substr(0, cut);
    REQUIRE_FALSE(WriteBatch::DecodeOp(&part, &op));
  }
  std::string bad_tag = encoded;
  bad_tag[0] = 'X';
  std::string_view bad = bad_tag;
  REQUIRE_FALSE(WriteBatch::DecodeOp(&bad, &op));
}

TEST_CASE("WriteBatch::SortByKey orders by key and keeps the order on one key") {
  WriteBatch batch;
  batch.Put("b", "1");
  batch.Put("a", "2");
  batch.Delete("b");
  batch.Put("c", "3");
  batch.Put("b", "4");
  batch.SortByKey();
  REQUIRE(batch.count() == 5);
  REQUIRE(Ops(batch) == std::vector<Seen>{{"a", "2", true},
                                          {"b", "1", true},
                                          {"b", "", false},
                                          {"b", "4", true},
                                          {"c", "3", true}});
}

TEST_CASE("WriteBatch holds a large batch in chunks, never splitting an operation") {
  WriteBatch batch;
  std::vector<Seen> expected;
  std::string whole;
  const std::string big(WriteBatch::kChunkBytes + 10, 'b');  // larger than a chunk
  for (int i = 0; i < 30'000; ++i) {
    const std::string key = "key-" + std::to_string(i);
    if (i % 7 == 0) {
      batch.Delete(key);
      expected.push_back({key, "", false});
    } else {
      const std::string& value = i == 15'000 ? big : std::string(100 + i % 13, 'v');
      batch.Put(key, value);
      expected.push_back({key, value, true});
    }
  }
  REQUIRE(batch.chunks().size() > 4);
  size_t bytes = 0;
  for (const std::string& chunk : batch.chunks()) {
    REQUIRE(!chunk.empty());
    REQUIRE((chunk.size() <= WriteBatch::kChunkBytes ||
             chunk.size() == 5 + std::string("key-15000").size() + 4 + big.size()));
    bytes += chunk.size();
  }
  REQUIRE(bytes == batch.bytes());
  REQUIRE(batch.count() == expected.size());
  REQUIRE(Ops(batch) == expected);
  batch.SortByKey();
  std::stable_sort(expected.begin(), expected.end(),
                   [](const Seen& a, const Seen& b) { return a.key < b.key; });
  REQUIRE(Ops(batch) == expected);
  REQUIRE(batch.bytes() == bytes);
}

}  // namespace
}  // namespace sluice
