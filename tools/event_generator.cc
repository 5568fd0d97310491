#include "tools/event_generator.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace sluice::tools {

namespace {
constexpr const char* kCountries[] = {"DE", "FR", "US", "GB", "NL", "ES", "IT", "PL"};
// Countries for switches: never a user's home country (kCountries).
constexpr const char* kSwitchCountries[] = {"BR", "JP", "ZA", "MX", "IN", "AR", "KR", "EG",
                                            "TR", "TH", "VN", "CL", "NG", "PE", "PH", "ID"};
constexpr int64_t kThirtyDays = 30LL * 86'400'000;
constexpr const char* kPages[] = {"/home", "/search",   "/item",    "/item/reviews",
                                  "/cart", "/checkout", "/account", "/help"};
}  // namespace

EventGenerator::EventGenerator(const GeneratorOptions& options)
    : opts_(options), rng_(options.seed), time_(options.start_ms) {
  session_page_.assign(static_cast<size_t>(std::max(options.users, 1)), 0);
  countries_seen_.resize(static_cast<size_t>(std::max(options.users, 1)));
}

bool EventGenerator::NewCountry(int user, const std::string& country, int64_t ts) const {
  const auto& seen = countries_seen_[static_cast<size_t>(user)];
  auto it = seen.find(country);
  return it == seen.end() || it->second <= ts - kThirtyDays;
}

int EventGenerator::PickUser() {
  // Skewed: a uniform draw to the power 1.5, so low ids are hot (user 0 gets
  // about users^(-2/3) of the events).
  double u = std::uniform_real_distribution<double>(0, 1)(rng_);
  return static_cast<int>(std::pow(u, 1.5) * opts_.users) % std::max(opts_.users, 1);
}

void EventGenerator::Payment(std::string* out, int user, int64_t ts, double amount,
                             const std::string& country) {
  int64_t& last = countries_seen_[static_cast<size_t>(user)][country];
  last = std::max(last, ts);
  char buf[256];
  std::snprintf(buf, sizeof(buf),
                "{\"user_id\":\"u%d\",\"amount\":%.2f,\"currency\":\"EUR\",\"country\":\"%s\","
                "\"status\":\"approved\",\"ts\":%lld,\"transaction_id\":\"t-%llu\"}",
                user, amount, country.c_str(), static_cast<long long>(ts),
                static_cast<unsigned long long>(seq_));
  out->assign(buf);
}

void EventGenerator::Click(std::string* out, int user, int64_t ts) {
  int& page = session_page_[static_cast<size_t>(user)];
  page = (page + 1 + static_cast<int>(rng_() % 3)) % 8;
  char buf[200];
  if (kPages[page] == std::string_view("/checkout")) {
    std::snprintf(buf, sizeof(buf),
                  "{\"user_id\":\"u%d\",\"page\":\"%s\",\"ts\":%lld,\"amount\":%.2f}", user,
                  kPages[page], static_cast<long long>(ts), 5 + (rng_() % 20000) / 100.0);
  } else {
    std::snprintf(buf, sizeof(buf), "{\"user_id\":\"u%d\",\"page\":\"%s\",\"ts\":%lld}", user,
                  kPages[page], static_cast<long long>(ts));
  }
  out->assign(buf);
}

int64_t EventGenerator::Next(std::string* out) {
  ++seq_;
  if (opts_.step_ms > 0) {
    time_ += static_cast<int64_t>(rng_() % static_cast<uint64_t>(2 * opts_.step_ms + 1));
  }
  int64_t ts = time_;
  const bool in_pattern = fraud_left_ > 0;
  auto chance = [&](double share) {
    return share > 0 && std::uniform_real_distribution<double>(0, 1)(rng_) < share;
  };
  if (!in_pattern && chance(opts_.malformed_share)) {
    key_.clear();
    switch (rng_() % 3) {
      case 0:
        out->assign("{\"user_id\":\"u1\",\"amount\":");
        break;
      case 1:
        out->assign("{\"amount\":3,\"ts\":" + std::to_string(ts) + "}");
        break;
      default:
        out->assign("{\"user_id\":\"u2\",\"ts\":\"not a time\"}");
        break;
    }
    return ts;
  }
  if (!in_pattern && opts_.disorder_ms > 0 && chance(opts_.out_of_order_share)) {
    ts -= static_cast<int64_t>(rng_() % static_cast<uint64_t>(opts_.disorder_ms));
  } else if (!in_pattern && chance(opts_.late_share)) {
    ts -= opts_.late_ms;
  }

  int user;
  if (opts_.kind == EventKind::kClicks) {
    user = PickUser();
    Click(out, user, ts);
  } else if (in_pattern) {
    // Fraud patterns: 0 = velocity burst, 1 = country switch, 2 = large amount.
    user = fraud_user_;
    --fraud_left_;
    const std::string txn = "t-" + std::to_string(seq_);
    if (fraud_kind_ == 0) {
      Payment(out, user, ts, 20 + static_cast<double>(rng_() % 100), kCountries[user % 8]);
      // The 4th and 5th payments of the burst are "more than 3 in 5 minutes".
      if (fraud_left_ <= 1) pending_.transaction_ids.push_back(txn);
    } else if (fraud_kind_ == 1) {
      if (fraud_left_ == 0) {
        if (NewCountry(user, fraud_country_, ts)) pending_.transaction_ids.push_back(txn);
        Payment(out, user, ts, 50, fraud_country_);
      } else {
        Payment(out, user, ts, 50, kCountries[user % 8]);
      }
    } else {
      Payment(out, user, ts, 9000 + static_cast<double>(rng_() % 1000), kCountries[user % 8]);
      pending_.transaction_ids.push_back(txn);
    }
    if (fraud_left_ == 0 && !pending_.transaction_ids.empty()) {
      expected_.push_back(std::move(pending_));
      pending_ = ExpectedAlert();
    }
  } else {
    user = PickUser();
    if (opts_.fraud_every > 0 && seq_ % static_cast<uint64_t>(opts_.fraud_every) == 0) {
      static constexpr const char* kRules[] = {"velocity", "new_country", "large_amount"};
      fraud_user_ = user;
      fraud_kind_ = static_cast<int>((seq_ / static_cast<uint64_t>(opts_.fraud_every)) % 3);
      fraud_left_ = fraud_kind_ == 0 ? 5 : (fraud_kind_ == 1 ? 2 : 1);
      fraud_country_ = kSwitchCountries[(seq_ / 7) % 16];
      pending_ = ExpectedAlert{kRules[fraud_kind_], "u" + std::to_string(user), {}};
    }
    Payment(out, user, ts, 1 + static_cast<double>(rng_() % 30000) / 100.0, kCountries[user % 8]);
  }
  key_ = "u" + std::to_string(user);
  return ts;
}

}  // namespace sluice::tools
