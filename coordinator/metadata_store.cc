#include "coordinator/metadata_store.h"

namespace sluice::coordinator {

Status InMemoryMetadataStore::Commit(const MetadataBatch& batch) {
  if (fail_commits_ > 0) {
    --fail_commits_;
    return Status::IoError("injected metadata write failure");
  }
  for (const auto& [key, value] : batch.ops()) {
    if (value) {
      data_[key] = *value;
    } else {
      data_.erase(key);
    }
  }
  ++commits_;
  return Status::Ok();
}

Status InMemoryMetadataStore::Scan(std::string_view prefix, const MetadataScanFn& fn) const {
  for (auto it = data_.lower_bound(prefix); it != data_.end(); ++it) {
    if (std::string_view(it->first).substr(0, prefix.size()) != prefix) break;
    SLUICE_RETURN_IF_ERROR(fn(it->first, it->second));
  }
  return Status::Ok();
}

}  // namespace sluice::coordinator
