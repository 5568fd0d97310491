#pragma once

// WriteBatch: puts and deletes applied together or not at all, by a store
// that takes batches (the engine's StateStore, the coordinator's
// MetadataStore).

#include <algorithm>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace sluice {

class WriteBatch {
 public:
  void Put(std::string key, std::string value) {
    ops_.emplace_back(std::move(key), std::move(value));
  }
  void Delete(std::string key) { ops_.emplace_back(std::move(key), std::nullopt); }

  const std::vector<std::pair<std::string, std::optional<std::string>>>& ops() const {
    return ops_;
  }
  bool empty() const { return ops_.empty(); }

  // Orders the operations by key, keeping the order of those on one key (so
  // the last still wins): a store inserts sorted keys faster.
  void SortByKey() {
    std::stable_sort(ops_.begin(), ops_.end(),
                     [](const auto& a, const auto& b) { return a.first < b.first; });
  }

 private:
  std::vector<std::pair<std::string, std::optional<std::string>>> ops_;
};

}  // namespace sluice
