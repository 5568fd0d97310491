#pragma once

// NexmarkGenerator: the Nexmark auction stream (persons, auctions, bids) as
// flat JSON objects, one per event, for benchmarks and demos. Written from the
// Nexmark specification (the NEXMark paper and the nexmark/nexmark suite's
// generator model), not from its code:
//
//  - Event n (n = 0, 1, ...) is a person, an auction or a bid by its position in
//    a block of person_proportion + auction_proportion + bid_proportion events
//    (default 1 : 3 : 46): the first person_proportion of each block are
//    persons, the next auction_proportion auctions, the rest bids. Over any
//    whole number of blocks the ratio is exact.
//  - Person and auction ids are sequential from 1000 (the k-th person has id
//    1000 + k). A bid names an auction and a bidder that exist already or are
//    about to (a small lead), among the recent ones: the last
//    num_in_flight_auctions auctions and the last num_active_people persons.
//  - Hot keys: with probability 1 - 1/hot_auction_ratio a bid goes to the hot
//    auction (the first auction of the current bucket of 100 auction ids);
//    with probability 1 - 1/hot_bidders_ratio it comes from the hot bidder (the
//    second person of the current bucket of 100 person ids); with probability
//    1 - 1/hot_sellers_ratio an auction's seller is the hot seller (the first
//    person of that bucket). Defaults 2, 4, 4 as in the reference setup.
//  - Event time: event n has date_time = start_ms + n * 1000 / events_per_second
//    (integer ms, so consecutive events may share a millisecond). In order; the
//    Nexmark stream has no disorder by default.
//  - Sizes: `extra` pads each event to about the reference average size of its
//    type (person 200, auction 500, bid 100 bytes of field data).
//
// Shapes (every event has "event_type" and "date_time", epoch ms):
//   {"event_type":"person","id":1000,"name":"Kate Smith","email_address":"...",
//    "credit_card":"1234 5678 9012 3456","city":"Boise","state":"ID",
//    "date_time":1700000000000,"extra":"..."}
//   {"event_type":"auction","id":1000,"item_name":"...","description":"...",
//    "initial_bid":123,"reserve":456,"date_time":...,"expires":...,
//    "seller":1000,"category":10,"extra":"..."}
//   {"event_type":"bid","auction":1000,"bidder":1001,"price":9876,
//    "channel":"Google","url":"https://www.nexmark.com/...","date_time":...,
//    "extra":"..."}
// Strings hold only [a-z], digits, spaces and URL punctuation: no escaping.
//
// Deterministic: the same options (seed included) give the same bytes, on
// every platform (std::mt19937_64 and no std distributions).

#include <cstdint>
#include <random>
#include <string>
#include <string_view>

namespace sluice::tools {

enum class NexmarkEventType { kPerson, kAuction, kBid };

std::string_view NexmarkEventTypeName(NexmarkEventType type);

struct NexmarkOptions {
  uint64_t seed = 1;
  int64_t start_ms = 1'700'000'000'000;
  // Event-time rate: events per second of event time. The published Flink
  // runs (nexmark/nexmark README) use 10M events/s.
  int64_t events_per_second = 10'000'000;
  int person_proportion = 1;
  int auction_proportion = 3;
  int bid_proportion = 46;
  int hot_auction_ratio = 2;
  int hot_sellers_ratio = 4;
  int hot_bidders_ratio = 4;
  int num_active_people = 1000;
  int num_in_flight_auctions = 100;
  int avg_person_bytes = 200;
  int avg_auction_bytes = 500;
  int avg_bid_bytes = 100;
};

class NexmarkGenerator {
 public:
  // The first id of persons and auctions, and the first category.
  static constexpr int64_t kFirstPersonId = 1000;
  static constexpr int64_t kFirstAuctionId = 1000;
  static constexpr int64_t kFirstCategoryId = 10;
  static constexpr int kNumCategories = 5;
  // Size of the id buckets whose first (auctions, sellers) or second
  // (bidders) member is hot.
  static constexpr int64_t kHotBucket = 100;

  explicit NexmarkGenerator(const NexmarkOptions& options);

  // Writes the next event to `out` (cleared first) and returns its event time.
  int64_t Next(std::string* out);

  // What event number `n` is (a pure function of the proportions).
  NexmarkEventType TypeOf(int64_t n) const;
  // The event time of event number `n`.
  int64_t TimeOf(int64_t n) const;

  NexmarkEventType last_type() const { return last_type_; }
  // Events generated so far (the number of the next event).
  int64_t count() const { return next_; }
  const NexmarkOptions& options() const { return opts_; }

 private:
  // Base-0 id of the last person / auction generated at or before event `n`
  // (the current one when `n` is a person / an auction).
  int64_t LastPersonId(int64_t n) const;
  int64_t LastAuctionId(int64_t n) const;
  // A random recent person / in-flight auction, base 0.
  int64_t RandomPersonId(int64_t n);
  int64_t RandomAuctionId(int64_t n);

  uint64_t Below(uint64_t bound);  // uniform in [0, bound), bound > 0
  double Unit();                   // uniform in [0, 1)
  int64_t Price();
  // Lowercase letters with about one space in 13, trimmed, 3..max_len-1 long
  // before trimming.
  void AppendWord(std::string* out, int max_len);
  // Letters so that `used` + its length is on average `average` (±20%).
  void AppendExtra(std::string* out, int used, int average);

  void Person(int64_t n, int64_t ts, std::string* out);
  void Auction(int64_t n, int64_t ts, std::string* out);
  void Bid(int64_t n, int64_t ts, std::string* out);

  NexmarkOptions opts_;
  int64_t total_;  // events per block
  std::mt19937_64 rng_;
  int64_t next_ = 0;
  NexmarkEventType last_type_ = NexmarkEventType::kPerson;
};

}  // namespace sluice::tools
