#include "worker/engine/state_store.h"

#include <algorithm>

namespace sluice::engine {

Status InMemoryStateStore::Write(const WriteBatch& batch) {
  for (const WriteBatch::Op& op : batch) {
    if (op.put) {
      data_.insert_or_assign(std::string(op.key), std::string(op.value));
    } else if (auto it = data_.find(op.key); it != data_.end()) {
      data_.erase(it);
    }
  }
  ++writes_;
  last_batch_size_ = batch.count();
  return Status::Ok();
}

Result<std::optional<std::string>> InMemoryStateStore::Get(std::string_view key) const {
  auto it = data_.find(key);
  if (it == data_.end()) return std::optional<std::string>();
  return std::optional<std::string>(it->second);
}

Status InMemoryStateStore::ScanFrom(
    std::string_view prefix, std::string_view from,
    const std::function<Status(std::string_view, std::string_view)>& fn) const {
  for (auto it = data_.lower_bound(std::max(prefix, from)); it != data_.end(); ++it) {
    if (std::string_view(it->first).substr(0, prefix.size()) != prefix) break;
    SLUICE_RETURN_IF_ERROR(fn(it->first, it->second));
  }
  return Status::Ok();
}

}  // namespace sluice::engine
