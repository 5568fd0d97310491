#include "worker/engine/key_table.h"

#include <catch2/catch.hpp>
#include <map>
#include <random>
#include <string>
#include <vector>

namespace sluice::engine {
namespace {

struct State {
  int value = 0;
  std::vector<int> items;
  int resets = 0;
  void Reset() {
    value = 0;
    items.clear();
    ++resets;
  }
};

using Table = KeyTable<State>;

TEST_CASE("finds, adds and erases keys as a map does, through growth and backward shifts") {
  Table table;
  std::map<std::string, int> reference;
  std::map<std::string, Table::Entry*> address;
  std::mt19937_64 rng(5);
  for (int step = 0; step < 200'000; ++step) {
    // Few keys at first (long probe runs in a small index), then many.
    const uint64_t range = step < 20'000 ? 40 : 5'000;
    const std::string key = "k" + std::to_string(rng() % range);
    switch (rng() % 3) {
      case 0: {
        bool added = false;
        Table::Entry& e = table.FindOrAdd(key, &added);
        REQUIRE(added == (reference.count(key) == 0));
        REQUIRE(e.key == key);
        if (added) {
          REQUIRE(e.state.value == 0);
          REQUIRE(e.state.items.empty());
          address[key] = &e;
        } else {
          REQUIRE(&e == address[key]);  // entries do not move
        }
        e.state.value = step;
        e.state.items.push_back(step);
        reference[key] = step;
        break;
      }
      case 1: {
        Table::Entry* e = table.Find(key);
        auto it = reference.find(key);
        REQUIRE((e != nullptr) == (it != reference.end()));
        if (e != nullptr) REQUIRE(e->state.value == it->second);
        break;
      }
      default: {
        Table::Entry* e = table.Find(key);
        if (e != nullptr) {
          table.Erase(*e);
          reference.erase(key);
          address.erase(key);
        }
      }
    }
    REQUIRE(table.size() == reference.size());
  }
  size_t seen = 0;
  table.ForEach([&](const Table::Entry& e) {
    ++seen;
    REQUIRE(reference.at(e.key) == e.state.value);
  });
  REQUIRE(seen == reference.size());
}

TEST_CASE("ForEach may erase the entry it visits; erased entries are reused, reset") {
  Table table;
  for (int i = 0; i < 1000; ++i) table.FindOrAdd("key-" + std::to_string(i)).state.value = i;
  table.ForEach([&](Table::Entry& e) {
    if (e.state.value % 2 == 0) table.Erase(e);
  });
  REQUIRE(table.size() == 500);
  for (int i = 0; i < 1000; ++i) {
    Table::Entry* e = table.Find("key-" + std::to_string(i));
    REQUIRE((e != nullptr) == (i % 2 == 1));
  }
  bool added = false;
  Table::Entry& reused = table.FindOrAdd("a key longer than the short string buffer", &added);
  REQUIRE(added);
  REQUIRE(reused.state.resets == 1);  // a reused entry, Reset() for its new key
  REQUIRE(reused.state.value == 0);
  REQUIRE(table.Find("a key longer than the short string buffer") == &reused);
  REQUIRE(table.Find("") == nullptr);
  table.FindOrAdd("").state.value = -1;
  REQUIRE(table.Find("")->state.value == -1);
}

}  // namespace
}  // namespace sluice::engine
