#include "tools/nexmark_generator.h"

#include <algorithm>
#include <catch2/catch.hpp>
#include <cctype>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace sluice::tools {
namespace {

// A strict parser for one flat JSON object (string keys; string, number,
// true, false or null values), enough to check the generator's output
// without a JSON library. Returns nullopt on any syntax error, trailing
// bytes or a duplicate key.
struct JsonValue {
  bool is_string = false;
  std::string text;  // unescaped string, or the literal / number text
};
using FlatObject = std::map<std::string, JsonValue>;

class FlatJsonParser {
 public:
  explicit FlatJsonParser(std::string_view s) : s_(s) {}

  std::optional<FlatObject> Parse() {
    FlatObject obj;
    Ws();
    if (!Eat('{')) return std::nullopt;
    Ws();
    if (Eat('}')) return End() ? std::optional(obj) : std::nullopt;
    while (true) {
      Ws();
      std::string key;
      if (!String(&key)) return std::nullopt;
      Ws();
      if (!Eat(':')) return std::nullopt;
      Ws();
      JsonValue v;
      if (Peek() == '"') {
        v.is_string = true;
        if (!String(&v.text)) return std::nullopt;
      } else if (!Literal(&v.text) && !Number(&v.text)) {
        return std::nullopt;
      }
      if (!obj.emplace(key, v).second) return std::nullopt;
      Ws();
      if (Eat(',')) continue;
      if (Eat('}')) break;
      return std::nullopt;
    }
    return End() ? std::optional(obj) : std::nullopt;
  }

 private:
  char Peek() const { return i_ < s_.size() ? s_[i_] : '\0'; }
  bool Eat(char c) {
    if (Peek() != c || i_ >= s_.size()) return false;
    ++i_;
    return true;
  }
  void Ws() {
    while (i_ < s_.size() &&
           (s_[i_] == ' ' || s_[i_] == '\t' || s_[i_] == '\n' || s_[i_] == '\r')) {
      ++i_;
    }
  }
  bool End() {
    Ws();
    return i_ == s_.size();
  }
  bool String(std::string* out) {
    if (!Eat('"')) return false;
    while (i_ < s_.size()) {
      const auto c = static_cast<unsigned char>(s_[i_++]);
      if (c == '"') return true;
      if (c < 0x20) return false;
      if (c != '\\') {
        out->push_back(static_cast<char>(c));
        continue;
      }
      if (i_ >= s_.size()) return false;
      const char e = s_[i_++];
      switch (e) {
        case '"':
        case '\\':
        case '/':
          out->push_back(e);
          break;
        case 'b':
        case 'f':
        case 'n':
        case 'r':
        case 't':
          out->push_back('?');
          break;
        case 'u':
          for (int k = 0; k < 4; ++k) {
            if (i_ >= s_.size() || !std::isxdigit(static_cast<unsigned char>(s_[i_++]))) {
              return false;
            }
          }
          out->push_back('?');
          break;
        default:
          return false;
      }
    }
    return false;
  }
  bool Literal(std::string* out) {
    for (std::string_view lit : {"true", "false", "null"}) {
      if (s_.substr(i_, lit.size()) == lit) {
        i_ += lit.size();
        *out = lit;
        return true;
      }
    }
    return false;
  }
  bool Digits() {
    const size_t start = i_;
    while (std::isdigit(static_cast<unsigned char>(Peek())) && i_ < s_.size()) ++i_;
    return i_ > start;
  }
  bool Number(std::string* out) {
    const size_t start = i_;
    Eat('-');
    if (Peek() == '0') {
      ++i_;
    } else if (!Digits()) {
      return false;
    }
    if (Eat('.') && !Digits()) return false;
    if (Peek() == 'e' || Peek() == 'E') {
      ++i_;
      if (!Eat('+')) Eat('-');
      if (!Digits()) return false;
    }
    *out = std::string(s_.substr(start, i_ - start));
    return true;
  }

  std::string_view s_;
  size_t i_ = 0;
};

bool IsInteger(const JsonValue& v) {
  return !v.is_string && !v.text.empty() &&
         std::all_of(v.text.begin() + (v.text[0] == '-' ? 1 : 0), v.text.end(),
                     [](char c) { return std::isdigit(static_cast<unsigned char>(c)); });
}

std::vector<std::string> Take(const NexmarkOptions& opts, int n) {
  NexmarkGenerator gen(opts);
  std::vector<std::string> out;
  std::string s;
  for (int i = 0; i < n; ++i) {
    gen.Next(&s);
    out.push_back(s);
  }
  return out;
}

TEST_CASE("the JSON checker itself accepts JSON and rejects non-JSON") {
  REQUIRE(FlatJsonParser(R"({"a":1,"b":"x\"y","c":-0.5e3,"d":null})").Parse());
  REQUIRE_FALSE(FlatJsonParser(R"({"a":1,})").Parse());
  REQUIRE_FALSE(FlatJsonParser(R"({"a":01})").Parse());
  REQUIRE_FALSE(FlatJsonParser(R"({"a":"x)").Parse());
  REQUIRE_FALSE(FlatJsonParser(R"({"a":1,"a":2})").Parse());
  REQUIRE_FALSE(FlatJsonParser(R"({"a":1} x)").Parse());
}

TEST_CASE("the same options give the same events; another seed others") {
  NexmarkOptions opts;
  REQUIRE(Take(opts, 2000) == Take(opts, 2000));
  NexmarkOptions other = opts;
  other.seed = 2;
  const auto a = Take(opts, 2000);
  const auto b = Take(other, 2000);
  REQUIRE(a != b);
  // The structure (types, ids, times) does not depend on the seed.
  NexmarkGenerator ga(opts), gb(other);
  std::string sa, sb;
  for (int i = 0; i < 2000; ++i) {
    REQUIRE(ga.Next(&sa) == gb.Next(&sb));
    REQUIRE(ga.last_type() == gb.last_type());
  }
}

TEST_CASE("persons, auctions and bids come 1:3:46, exactly over whole blocks") {
  NexmarkOptions opts;
  NexmarkGenerator gen(opts);
  std::string s;
  constexpr int kBlocks = 20'000;  // 1M events
  std::map<NexmarkEventType, int64_t> counts;
  for (int i = 0; i < kBlocks * 50; ++i) {
    gen.Next(&s);
    ++counts[gen.last_type()];
    // The type name in the JSON agrees with last_type().
    if (i % 997 == 0) {
      REQUIRE(s.rfind(std::string("{\"event_type\":\"") +
                          std::string(NexmarkEventTypeName(gen.last_type())) + "\"",
                      0) == 0);
    }
  }
  REQUIRE(counts[NexmarkEventType::kPerson] == 1 * kBlocks);
  REQUIRE(counts[NexmarkEventType::kAuction] == 3 * kBlocks);
  REQUIRE(counts[NexmarkEventType::kBid] == 46 * kBlocks);
}

TEST_CASE("every event is valid flat JSON with the fields the queries use") {
  NexmarkOptions opts;
  opts.seed = 7;
  NexmarkGenerator gen(opts);
  std::string s;
  int64_t last_time = 0;
  std::set<int64_t> persons, auctions;
  int64_t bids = 0, bids_on_known_auction = 0, bids_by_known_person = 0;
  for (int i = 0; i < 100'000; ++i) {
    const int64_t ts = gen.Next(&s);
    INFO(s);
    auto obj = FlatJsonParser(s).Parse();
    REQUIRE(obj.has_value());
    REQUIRE((*obj)["event_type"].is_string);
    REQUIRE(IsInteger((*obj)["date_time"]));
    REQUIRE(std::stoll((*obj)["date_time"].text) == ts);
    REQUIRE(ts >= last_time);  // in order
    last_time = ts;
    REQUIRE(obj->count("extra") == 1);
    const std::string& type = (*obj)["event_type"].text;
    if (type == "person") {
      for (const char* f : {"name", "email_address", "credit_card", "city", "state"}) {
        REQUIRE((*obj)[f].is_string);
      }
      REQUIRE(IsInteger((*obj)["id"]));
      persons.insert(std::stoll((*obj)["id"].text));
      REQUIRE(obj->size() == 9);
    } else if (type == "auction") {
      for (const char* f : {"id", "initial_bid", "reserve", "expires", "seller", "category"}) {
        REQUIRE(IsInteger((*obj)[f]));
      }
      REQUIRE((*obj)["item_name"].is_string);
      REQUIRE(std::stoll((*obj)["reserve"].text) >= std::stoll((*obj)["initial_bid"].text));
      REQUIRE(std::stoll((*obj)["expires"].text) > ts);
      const int64_t category = std::stoll((*obj)["category"].text);
      REQUIRE(category >= 10);
      REQUIRE(category < 15);
      auctions.insert(std::stoll((*obj)["id"].text));
      REQUIRE(obj->size() == 11);
    } else {
      REQUIRE(type == "bid");
      for (const char* f : {"auction", "bidder", "price"}) REQUIRE(IsInteger((*obj)[f]));
      REQUIRE((*obj)["channel"].is_string);
      REQUIRE((*obj)["url"].text.rfind("https://www.nexmark.com/", 0) == 0);
      REQUIRE(std::stoll((*obj)["price"].text) >= 100);
      REQUIRE(obj->size() == 8);
      ++bids;
      if (auctions.count(std::stoll((*obj)["auction"].text))) ++bids_on_known_auction;
      if (persons.count(std::stoll((*obj)["bidder"].text))) ++bids_by_known_person;
    }
  }
  // Ids are sequential from 1000, and bids mostly name existing ones (a few
  // run ahead, by design).
  REQUIRE(*persons.begin() == 1000);
  REQUIRE(*persons.rbegin() == 1000 + static_cast<int64_t>(persons.size()) - 1);
  REQUIRE(*auctions.begin() == 1000);
  REQUIRE(*auctions.rbegin() == 1000 + static_cast<int64_t>(auctions.size()) - 1);
  REQUIRE(bids_on_known_auction > bids * 90 / 100);
  REQUIRE(bids_by_known_person > bids * 95 / 100);
}

TEST_CASE("bids are skewed to hot auctions and hot bidders") {
  NexmarkOptions opts;  // hot_auction_ratio 2, hot_bidders_ratio 4
  NexmarkGenerator gen(opts);
  std::string s;
  std::map<std::string, int64_t> by_auction, by_bidder;
  int64_t bids = 0, hot_auction = 0, hot_bidder = 0;
  for (int i = 0; i < 500'000; ++i) {
    gen.Next(&s);
    if (gen.last_type() != NexmarkEventType::kBid) continue;
    auto obj = FlatJsonParser(s).Parse();
    REQUIRE(obj.has_value());
    const int64_t auction = std::stoll((*obj)["auction"].text);
    const int64_t bidder = std::stoll((*obj)["bidder"].text);
    ++by_auction[(*obj)["auction"].text];
    ++by_bidder[(*obj)["bidder"].text];
    ++bids;
    // Hot ids: the first auction and the second person of a bucket of 100.
    if ((auction - 1000) % 100 == 0) ++hot_auction;
    if ((bidder - 1000) % 100 == 1) ++hot_bidder;
  }
  // P(hot auction) = 1 - 1/2 plus the odd random pick of a bucket start.
  REQUIRE(hot_auction > bids * 48 / 100);
  REQUIRE(hot_auction < bids * 55 / 100);
  // P(hot bidder) = 1 - 1/4, plus random picks.
  REQUIRE(hot_bidder > bids * 73 / 100);
  REQUIRE(hot_bidder < bids * 79 / 100);
  // The busiest auction and bidder get far more than the average share.
  auto max_count = [](const std::map<std::string, int64_t>& m) {
    int64_t best = 0;
    for (const auto& [k, n] : m) best = std::max(best, n);
    return best;
  };
  const double mean_auction = static_cast<double>(bids) / static_cast<double>(by_auction.size());
  const double mean_bidder = static_cast<double>(bids) / static_cast<double>(by_bidder.size());
  REQUIRE(static_cast<double>(max_count(by_auction)) > 10 * mean_auction);
  REQUIRE(static_cast<double>(max_count(by_bidder)) > 10 * mean_bidder);
}

TEST_CASE("event time advances at the configured rate") {
  NexmarkOptions opts;
  opts.events_per_second = 1000;  // one event per ms
  NexmarkGenerator gen(opts);
  std::string s;
  for (int i = 0; i < 5000; ++i) REQUIRE(gen.Next(&s) == opts.start_ms + i);
  NexmarkOptions fast;  // 10M/s: 10,000 events per ms
  NexmarkGenerator g2(fast);
  REQUIRE(g2.TimeOf(9'999) == fast.start_ms);
  REQUIRE(g2.TimeOf(10'000) == fast.start_ms + 1);
  REQUIRE(g2.TimeOf(100'000'000) == fast.start_ms + 10'000);  // 100M events: 10 s
}

TEST_CASE("event sizes are about the reference averages") {
  NexmarkGenerator gen(NexmarkOptions{});
  std::string s;
  std::map<NexmarkEventType, std::pair<int64_t, int64_t>> bytes;  // total, count
  for (int i = 0; i < 50'000; ++i) {
    gen.Next(&s);
    auto& b = bytes[gen.last_type()];
    b.first += static_cast<int64_t>(s.size());
    ++b.second;
  }
  auto mean = [&](NexmarkEventType t) { return bytes[t].first / bytes[t].second; };
  // Field data plus JSON names and punctuation.
  REQUIRE(mean(NexmarkEventType::kBid) > 100);
  REQUIRE(mean(NexmarkEventType::kBid) < 400);
  REQUIRE(mean(NexmarkEventType::kAuction) > 500);
  REQUIRE(mean(NexmarkEventType::kAuction) < 800);
  REQUIRE(mean(NexmarkEventType::kPerson) > 200);
  REQUIRE(mean(NexmarkEventType::kPerson) < 400);
}

}  // namespace
}  // namespace sluice::tools
