#include "tools/event_generator.h"

#include <catch2/catch.hpp>

namespace sluice::tools {
namespace {

std::vector<std::string> Take(GeneratorOptions opts, int n) {
  EventGenerator gen(opts);
  std::vector<std::string> out;
  std::string s;
  for (int i = 0; i < n; ++i) {
    gen.Next(&s);
    out.push_back(s);
  }
  return out;
}

TEST_CASE("the same seed gives the same events; another seed others") {
  GeneratorOptions opts;
  opts.fraud_every = 50;
  opts.malformed_share = 0.05;
  opts.out_of_order_share = 0.1;
  opts.disorder_ms = 1000;
  REQUIRE(Take(opts, 500) == Take(opts, 500));
  GeneratorOptions other = opts;
  other.seed = 2;
  REQUIRE(Take(opts, 500) != Take(other, 500));
}

TEST_CASE("malformed and late shares are about as asked") {
  GeneratorOptions opts;
  opts.malformed_share = 0.1;
  opts.late_share = 0.1;
  opts.step_ms = 10;
  EventGenerator gen(opts);
  std::string s;
  int malformed = 0, late = 0;
  for (int i = 0; i < 10'000; ++i) {
    int64_t before = gen.now_ms();
    int64_t ts = gen.Next(&s);
    if (gen.last_key().empty())
      ++malformed;
    else if (ts < before - 500'000)
      ++late;
  }
  REQUIRE(malformed > 800);
  REQUIRE(malformed < 1200);
  REQUIRE(late > 700);
  REQUIRE(late < 1100);
}

TEST_CASE("every injected fraud pattern names the rule, user and events it must trigger") {
  GeneratorOptions opts;
  opts.fraud_every = 10;
  opts.users = 50;
  opts.step_ms = 1000;
  EventGenerator gen(opts);
  std::string s;
  std::map<std::string, int> rules;
  std::map<std::string, std::string> by_txn;  // transaction id -> event
  std::vector<ExpectedAlert> expected;
  for (int i = 0; i < 3000; ++i) {
    gen.Next(&s);
    auto pos = s.find("\"transaction_id\":\"");
    REQUIRE(pos != std::string::npos);
    by_txn[s.substr(pos + 18, s.find('"', pos + 18) - pos - 18)] = s;
    for (ExpectedAlert& e : gen.TakeExpected()) expected.push_back(std::move(e));
  }
  for (const ExpectedAlert& e : expected) {
    ++rules[e.rule];
    REQUIRE_FALSE(e.transaction_ids.empty());
    for (const std::string& t : e.transaction_ids) {
      REQUIRE(by_txn.count(t));
      REQUIRE(by_txn[t].find("\"user_id\":\"" + e.key + "\"") != std::string::npos);
      if (e.rule == "large_amount") REQUIRE(by_txn[t].find("\"amount\":9") != std::string::npos);
    }
  }
  REQUIRE(rules["velocity"] > 50);
  REQUIRE(rules["large_amount"] > 50);
  REQUIRE(rules["new_country"] > 30);
}

}  // namespace
}  // namespace sluice::tools
