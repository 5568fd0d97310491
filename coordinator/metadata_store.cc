#include "coordinator/metadata_store.h"

namespace sluice::coordinator {

Status InMemoryMetadataStore::Commit(const WriteBatch& batch) {
  if (fail_commits_ > 0) {
    --fail_commits_;
    return Status::IoError("injected metadata write failure");
  }
  return store_.Write(batch);
}

std::map<std::string, std::string> InMemoryMetadataStore::data() const {
  std::map<std::string, std::string> out;
  Scan("", [&](std::string_view k, std::string_view v) {
    out.emplace(k, v);
    return Status::Ok();
  }).IgnoreError();
  return out;
}

}  // namespace sluice::coordinator
