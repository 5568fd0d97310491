#pragma once

// MetadataStore: the coordinator's durable record of its jobs and of every
// task's assignment (owner, epoch, move target, done). The coordinator
// writes one batch per request or tick, and hands nothing out (an epoch, a
// job) before that batch is committed: Commit returns OK only once the batch
// is durable, so after any crash the coordinator restarts with every epoch
// it ever handed out, and never hands one out twice.
//
// RocksDbMetadataStore (rocksdb_metadata_store.h) is the daemon's, with a
// synced write-ahead log; InMemoryMetadataStore is for tests and fails on
// demand.
//
// Thread safety: the coordinator calls a store under its own lock;
// implementations need not be thread-safe.

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/status.h"

namespace sluice::coordinator {

// Puts and deletes committed together or not at all.
class MetadataBatch {
 public:
  void Put(std::string key, std::string value) {
    ops_.emplace_back(std::move(key), std::move(value));
  }
  void Delete(std::string key) { ops_.emplace_back(std::move(key), std::nullopt); }

  const std::vector<std::pair<std::string, std::optional<std::string>>>& ops() const {
    return ops_;
  }
  bool empty() const { return ops_.empty(); }

 private:
  std::vector<std::pair<std::string, std::optional<std::string>>> ops_;
};

using MetadataScanFn = std::function<Status(std::string_view key, std::string_view value)>;

class MetadataStore {
 public:
  virtual ~MetadataStore() = default;

  // Applies `batch` atomically and durably; on error nothing of it applies.
  virtual Status Commit(const MetadataBatch& batch) = 0;
  // Calls `fn` for every entry whose key starts with `prefix`, in key order;
  // stops at the first error `fn` returns.
  virtual Status Scan(std::string_view prefix, const MetadataScanFn& fn) const = 0;
};

class InMemoryMetadataStore final : public MetadataStore {
 public:
  Status Commit(const MetadataBatch& batch) override;
  Status Scan(std::string_view prefix, const MetadataScanFn& fn) const override;

  // The next `n` commits fail with IoError (and apply nothing).
  void FailCommits(int n) { fail_commits_ = n; }
  // Commits that applied.
  int commits() const { return commits_; }
  const std::map<std::string, std::string, std::less<>>& data() const { return data_; }

 private:
  std::map<std::string, std::string, std::less<>> data_;
  int fail_commits_ = 0;
  int commits_ = 0;
};

}  // namespace sluice::coordinator
