#include "worker/engine/key_state.h"

#include <utility>

namespace sluice::engine {

static_assert(sizeof(WindowState) == 64, "a window is one cache line");

WindowState::WindowState(const WindowState& other) { *this = other; }

WindowState::WindowState(WindowState&& other) noexcept { *this = std::move(other); }

WindowState& WindowState::operator=(const WindowState& other) {
  if (this == &other) return *this;
  CopyFields(other);
  first_ = other.first_;
  rest_.reset();
  if (num_accs_ > 1) {
    rest_ = std::make_unique<Accumulator[]>(num_accs_ - 1);
    for (size_t i = 0; i + 1 < num_accs_; ++i) rest_[i] = other.rest_[i];
  }
  return *this;
}

WindowState& WindowState::operator=(WindowState&& other) noexcept {
  if (this == &other) return *this;
  CopyFields(other);
  first_ = std::move(other.first_);
  rest_ = std::move(other.rest_);
  if (other.num_accs_ > 1) other.num_accs_ = 1;
  return *this;
}

void WindowState::CopyFields(const WindowState& other) {
  start = other.start;
  end = other.end;
  revision = other.revision;
  fired = other.fired;
  changed = other.changed;
  num_accs_ = other.num_accs_;
}

Accumulator& WindowState::AddAcc(AggFn fn) {
  if (num_accs_ == 0) {
    first_.Reset(fn);
  } else {
    // Aggregates are few: the array grows by one.
    auto bigger = std::make_unique<Accumulator[]>(num_accs_);
    for (size_t i = 0; i + 1 < num_accs_; ++i) bigger[i] = std::move(rest_[i]);
    bigger[num_accs_ - 1].Reset(fn);
    rest_ = std::move(bigger);
  }
  return acc(num_accs_++);
}

void WindowState::InitAccs(const std::vector<AggregateDef>& aggs,
                           std::unique_ptr<Accumulator[]> spare) {
  num_accs_ = static_cast<uint16_t>(aggs.size());
  if (aggs.empty()) {
    rest_.reset();
    return;
  }
  first_.Reset(aggs[0].fn);
  if (aggs.size() == 1) {
    rest_.reset();
    return;
  }
  rest_ = spare ? std::move(spare) : std::make_unique<Accumulator[]>(aggs.size() - 1);
  for (size_t i = 1; i < aggs.size(); ++i) rest_[i - 1].Reset(aggs[i].fn);
}

}  // namespace sluice::engine
