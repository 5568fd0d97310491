#include "tools/nexmark_generator.h"

#include <algorithm>
#include <charconv>
#include <cmath>

namespace sluice::tools {

namespace {

constexpr std::string_view kStates[] = {"AZ", "CA", "ID", "OR", "WA", "WY"};
constexpr std::string_view kCities[] = {"Phoenix",  "Los Angeles", "San Francisco", "Boise",
                                        "Portland", "Bend",        "Redmond",       "Seattle",
                                        "Kent",     "Cheyenne"};
constexpr std::string_view kFirstNames[] = {"Peter", "Paul",  "Luke",  "John",   "Saul",  "Vicky",
                                            "Kate",  "Julie", "Sarah", "Deiter", "Walter"};
constexpr std::string_view kLastNames[] = {"Shultz", "Abrams", "Spencer", "White", "Bartels",
                                           "Walton", "Smith",  "Jones",   "Noris"};
// Bids come through one of a few hot channels, or one of many others.
constexpr std::string_view kHotChannels[] = {"Google", "Facebook", "Baidu", "Apple"};
constexpr uint64_t kHotChannelsRatio = 4;  // 1 - 1/4 of bids use a hot channel
constexpr uint64_t kOtherChannels = 10'000;
// Ids may run this far ahead of the last generated person / auction.
constexpr int64_t kIdLead = 10;

template <size_t N>
std::string_view Pick(const std::string_view (&names)[N], uint64_t i) {
  return names[i % N];
}

void AppendInt(std::string* out, int64_t v) {
  char buf[24];
  auto r = std::to_chars(buf, buf + sizeof(buf), v);
  out->append(buf, r.ptr);
}

// ,"name":  (or {"name": for the first field)
void Key(std::string* out, std::string_view name) {
  out->push_back(out->empty() ? '{' : ',');
  out->push_back('"');
  out->append(name);
  out->append("\":");
}

void IntField(std::string* out, std::string_view name, int64_t v) {
  Key(out, name);
  AppendInt(out, v);
}

void StrField(std::string* out, std::string_view name, std::string_view v) {
  Key(out, name);
  out->push_back('"');
  out->append(v);
  out->push_back('"');
}

}  // namespace

std::string_view NexmarkEventTypeName(NexmarkEventType type) {
  switch (type) {
    case NexmarkEventType::kPerson:
      return "person";
    case NexmarkEventType::kAuction:
      return "auction";
    case NexmarkEventType::kBid:
      return "bid";
  }
  return "?";
}

NexmarkGenerator::NexmarkGenerator(const NexmarkOptions& options)
    : opts_(options), rng_(options.seed) {
  opts_.person_proportion = std::max(opts_.person_proportion, 1);
  opts_.auction_proportion = std::max(opts_.auction_proportion, 1);
  opts_.bid_proportion = std::max(opts_.bid_proportion, 0);
  opts_.hot_auction_ratio = std::max(opts_.hot_auction_ratio, 1);
  opts_.hot_sellers_ratio = std::max(opts_.hot_sellers_ratio, 1);
  opts_.hot_bidders_ratio = std::max(opts_.hot_bidders_ratio, 1);
  opts_.num_active_people = std::max(opts_.num_active_people, 1);
  opts_.num_in_flight_auctions = std::max(opts_.num_in_flight_auctions, 1);
  opts_.events_per_second = std::max<int64_t>(opts_.events_per_second, 1);
  total_ = opts_.person_proportion + opts_.auction_proportion + opts_.bid_proportion;
}

NexmarkEventType NexmarkGenerator::TypeOf(int64_t n) const {
  const int64_t offset = n % total_;
  if (offset < opts_.person_proportion) return NexmarkEventType::kPerson;
  if (offset < opts_.person_proportion + opts_.auction_proportion) {
    return NexmarkEventType::kAuction;
  }
  return NexmarkEventType::kBid;
}

int64_t NexmarkGenerator::TimeOf(int64_t n) const {
  return opts_.start_ms + n * 1000 / opts_.events_per_second;
}

int64_t NexmarkGenerator::LastPersonId(int64_t n) const {
  const int64_t block = n / total_;
  const int64_t offset = std::min<int64_t>(n % total_, opts_.person_proportion - 1);
  return block * opts_.person_proportion + offset;
}

int64_t NexmarkGenerator::LastAuctionId(int64_t n) const {
  int64_t block = n / total_;
  int64_t offset = n % total_;
  if (offset < opts_.person_proportion) {
    // A person: the last auction is the last one of the previous block.
    --block;
    offset = opts_.auction_proportion - 1;
  } else if (offset >= opts_.person_proportion + opts_.auction_proportion) {
    // A bid: the last auction of this block.
    offset = opts_.auction_proportion - 1;
  } else {
    offset -= opts_.person_proportion;
  }
  return std::max<int64_t>(block * opts_.auction_proportion + offset, 0);
}

int64_t NexmarkGenerator::RandomPersonId(int64_t n) {
  // One of the most recent num_active_people persons, or a few ahead.
  const int64_t people = LastPersonId(n) + 1;
  const int64_t active = std::min<int64_t>(people, opts_.num_active_people);
  return people - active + static_cast<int64_t>(Below(static_cast<uint64_t>(active + kIdLead)));
}

int64_t NexmarkGenerator::RandomAuctionId(int64_t n) {
  // One of the auctions likely still in flight, or a few ahead.
  const int64_t last = LastAuctionId(n);
  const int64_t first = std::max<int64_t>(last - opts_.num_in_flight_auctions, 0);
  return first + static_cast<int64_t>(Below(static_cast<uint64_t>(last - first + 1 + kIdLead)));
}

uint64_t NexmarkGenerator::Below(uint64_t bound) { return rng_() % bound; }

double NexmarkGenerator::Unit() { return static_cast<double>(rng_() >> 11) * 0x1.0p-53; }

int64_t NexmarkGenerator::Price() {
  // Log-uniform between 1.00 and 1,000,000.00, in cents.
  return std::llround(std::pow(10.0, Unit() * 6.0) * 100.0);
}

void NexmarkGenerator::AppendWord(std::string* out, int max_len) {
  const size_t begin = out->size();
  int len = 3 + static_cast<int>(Below(static_cast<uint64_t>(std::max(max_len - 3, 1))));
  while (len-- > 0) {
    if (Below(13) == 0) {
      out->push_back(' ');
    } else {
      out->push_back(static_cast<char>('a' + Below(26)));
    }
  }
  // Trim spaces at both ends.
  size_t end = out->size();
  while (end > begin && (*out)[end - 1] == ' ') --end;
  out->resize(end);
  size_t first = begin;
  while (first < end && (*out)[first] == ' ') ++first;
  out->erase(begin, first - begin);
}

void NexmarkGenerator::AppendExtra(std::string* out, int used, int average) {
  if (used >= average) return;
  const int want = average - used;
  const int delta = static_cast<int>(std::lround(want * 0.2));
  const int len =
      want - delta + (delta == 0 ? 0 : static_cast<int>(Below(static_cast<uint64_t>(2 * delta))));
  for (int i = 0; i < len; ++i) out->push_back(static_cast<char>('a' + Below(26)));
}

void NexmarkGenerator::Person(int64_t n, int64_t ts, std::string* out) {
  IntField(out, "id", LastPersonId(n) + kFirstPersonId);
  // The field data written so far, in bytes, so `extra` can pad to the average.
  size_t used = 8;
  Key(out, "name");
  out->push_back('"');
  size_t start = out->size();
  out->append(Pick(kFirstNames, Below(std::size(kFirstNames))));
  out->push_back(' ');
  out->append(Pick(kLastNames, Below(std::size(kLastNames))));
  used += out->size() - start;
  out->push_back('"');

  Key(out, "email_address");
  out->push_back('"');
  start = out->size();
  AppendWord(out, 7);
  out->push_back('@');
  AppendWord(out, 5);
  out->append(".com");
  used += out->size() - start;
  out->push_back('"');

  Key(out, "credit_card");
  out->push_back('"');
  for (int i = 0; i < 4; ++i) {
    if (i > 0) out->push_back(' ');
    const auto digits = static_cast<int64_t>(Below(10'000));
    for (int64_t div = 1000; div > 0; div /= 10) {
      out->push_back(static_cast<char>('0' + (digits / div) % 10));
    }
  }
  used += 19;
  out->push_back('"');

  const std::string_view city = Pick(kCities, Below(std::size(kCities)));
  const std::string_view state = Pick(kStates, Below(std::size(kStates)));
  StrField(out, "city", city);
  StrField(out, "state", state);
  used += city.size() + state.size();
  IntField(out, "date_time", ts);
  Key(out, "extra");
  out->push_back('"');
  AppendExtra(out, static_cast<int>(used), opts_.avg_person_bytes);
  out->push_back('"');
}

void NexmarkGenerator::Auction(int64_t n, int64_t ts, std::string* out) {
  IntField(out, "id", LastAuctionId(n) + kFirstAuctionId);
  size_t used = 8 + 5 * 8;  // id, initial_bid, reserve, date_time, expires, seller, category

  Key(out, "item_name");
  out->push_back('"');
  size_t start = out->size();
  AppendWord(out, 20);
  used += out->size() - start;
  out->push_back('"');

  Key(out, "description");
  out->push_back('"');
  start = out->size();
  AppendWord(out, 100);
  used += out->size() - start;
  out->push_back('"');

  const int64_t initial_bid = Price();
  IntField(out, "initial_bid", initial_bid);
  IntField(out, "reserve", initial_bid + Price());
  IntField(out, "date_time", ts);
  // Auctions last on average as long as it takes to start
  // num_in_flight_auctions more of them.
  const int64_t ahead = int64_t{opts_.num_in_flight_auctions} * total_ / opts_.auction_proportion;
  const int64_t horizon = TimeOf(n + ahead) - ts;
  IntField(
      out, "expires",
      ts + 1 +
          static_cast<int64_t>(Below(static_cast<uint64_t>(std::max<int64_t>(horizon * 2, 1)))));
  int64_t seller;
  if (Below(static_cast<uint64_t>(opts_.hot_sellers_ratio)) > 0) {
    seller = (LastPersonId(n) / kHotBucket) * kHotBucket;  // the hot seller
  } else {
    seller = RandomPersonId(n);
  }
  IntField(out, "seller", seller + kFirstPersonId);
  IntField(out, "category", kFirstCategoryId + static_cast<int64_t>(Below(kNumCategories)));
  Key(out, "extra");
  out->push_back('"');
  AppendExtra(out, static_cast<int>(used), opts_.avg_auction_bytes);
  out->push_back('"');
}

void NexmarkGenerator::Bid(int64_t n, int64_t ts, std::string* out) {
  int64_t auction;
  if (Below(static_cast<uint64_t>(opts_.hot_auction_ratio)) > 0) {
    auction = (LastAuctionId(n) / kHotBucket) * kHotBucket;  // the hot auction
  } else {
    auction = RandomAuctionId(n);
  }
  int64_t bidder;
  if (Below(static_cast<uint64_t>(opts_.hot_bidders_ratio)) > 0) {
    // The second person of the bucket, so hot bidders are not hot sellers.
    bidder = (LastPersonId(n) / kHotBucket) * kHotBucket + 1;
  } else {
    bidder = RandomPersonId(n);
  }
  IntField(out, "auction", auction + kFirstAuctionId);
  IntField(out, "bidder", bidder + kFirstPersonId);
  IntField(out, "price", Price());

  Key(out, "channel");
  out->push_back('"');
  int64_t channel_id = -1;
  if (Below(kHotChannelsRatio) > 0) {
    out->append(Pick(kHotChannels, Below(std::size(kHotChannels))));
  } else {
    channel_id = static_cast<int64_t>(Below(kOtherChannels));
    out->append("channel-");
    AppendInt(out, channel_id);
  }
  out->push_back('"');

  Key(out, "url");
  out->append("\"https://www.nexmark.com/");
  for (int i = 0; i < 3; ++i) {
    const size_t before = out->size();
    AppendWord(out, 6);
    // Path segments: spaces become underscores (and an empty one "x").
    for (size_t j = before; j < out->size(); ++j) {
      if ((*out)[j] == ' ') (*out)[j] = '_';
    }
    if (out->size() == before) out->push_back('x');
    out->push_back('/');
  }
  out->append("item.htm?query=1");
  if (channel_id >= 0) {
    out->append("&channel_id=");
    AppendInt(out, channel_id);
  }
  out->push_back('"');

  IntField(out, "date_time", ts);
  Key(out, "extra");
  out->push_back('"');
  AppendExtra(out, 8 * 4, opts_.avg_bid_bytes);  // auction, bidder, price, date_time
  out->push_back('"');
}

int64_t NexmarkGenerator::Next(std::string* out) {
  const int64_t n = next_++;
  const int64_t ts = TimeOf(n);
  last_type_ = TypeOf(n);
  out->clear();
  StrField(out, "event_type", NexmarkEventTypeName(last_type_));
  switch (last_type_) {
    case NexmarkEventType::kPerson:
      Person(n, ts, out);
      break;
    case NexmarkEventType::kAuction:
      Auction(n, ts, out);
      break;
    case NexmarkEventType::kBid:
      Bid(n, ts, out);
      break;
  }
  out->push_back('}');
  return ts;
}

}  // namespace sluice::tools
