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
#include <string>
#include <string_view>

#include "common/status.h"
#include "common/write_batch.h"
#include "worker/engine/state_store.h"

namespace sluice::coordinator {

using MetadataScanFn = std::function<Status(std::string_view key, std::string_view value)>;

class MetadataStore {
 public:
  virtual ~MetadataStore() = default;

  // Applies `batch` atomically and durably; on error nothing of it applies.
  virtual Status Commit(const WriteBatch& batch) = 0;
  // Calls `fn` for every entry whose key starts with `prefix`, in key order;
  // stops at the first error `fn` returns.
  virtual Status Scan(std::string_view prefix, const MetadataScanFn& fn) const = 0;
};

// The engine's in-memory store as a metadata store, failing on demand.
class InMemoryMetadataStore final : public MetadataStore {
 public:
  Status Commit(const WriteBatch& batch) override;
  Status Scan(std::string_view prefix, const MetadataScanFn& fn) const override {
    return store_.Scan(prefix, fn);
  }

  // The next `n` commits fail with IoError (and apply nothing).
  void FailCommits(int n) { fail_commits_ = n; }
  // Everything stored, in key order.
  std::map<std::string, std::string> data() const;

 private:
  engine::InMemoryStateStore store_;
  int fail_commits_ = 0;
};

}  // namespace sluice::coordinator
