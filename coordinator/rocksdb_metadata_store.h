#pragma once

// RocksDbMetadataStore: the coordinator's MetadataStore in a RocksDB database
// of its own (`<data-dir>/coordinator`, the same place and keys as before it
// had its own store). Every Commit is one WriteBatch written with a synced
// write-ahead log (WriteOptions::sync), so a commit that returned OK survives
// a crash of the process and of the host.
//
// Thread safety: one caller at a time (the coordinator's lock).

#include <memory>
#include <string>

#include "common/status.h"
#include "coordinator/metadata_store.h"

namespace rocksdb {
class DB;
}

namespace sluice::coordinator {

class RocksDbMetadataStore final : public MetadataStore {
 public:
  // Opens (or creates) the database in `dir`.
  static Result<std::unique_ptr<RocksDbMetadataStore>> Open(const std::string& dir);
  ~RocksDbMetadataStore() override;

  Status Commit(const WriteBatch& batch) override;
  Status Scan(std::string_view prefix, const MetadataScanFn& fn) const override;

 private:
  RocksDbMetadataStore(std::string dir, std::unique_ptr<rocksdb::DB> db);

  const std::string dir_;
  std::unique_ptr<rocksdb::DB> db_;
};

}  // namespace sluice::coordinator
