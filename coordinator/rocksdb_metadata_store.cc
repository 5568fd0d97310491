#include "coordinator/rocksdb_metadata_store.h"

#include <rocksdb/db.h>
#include <rocksdb/options.h>
#include <rocksdb/write_batch.h>

#include <filesystem>
#include <system_error>

#include "common/rocksdb_status.h"

namespace sluice::coordinator {

Result<std::unique_ptr<RocksDbMetadataStore>> RocksDbMetadataStore::Open(const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return Status::IoError("creating the metadata directory " + dir + ": " + ec.message());
  rocksdb::Options options;
  options.create_if_missing = true;
  // A few kilobytes per job and task: small buffers, one background thread.
  options.write_buffer_size = 4 << 20;
  options.max_background_jobs = 1;
  options.keep_log_file_num = 3;
  options.max_log_file_size = 4 << 20;
  rocksdb::DB* raw = nullptr;
  rocksdb::Status s = rocksdb::DB::Open(options, dir, &raw);
  std::unique_ptr<rocksdb::DB> db(raw);
  if (!s.ok()) return FromRocksDb(s, "opening the coordinator's metadata at " + dir);
  return std::unique_ptr<RocksDbMetadataStore>(new RocksDbMetadataStore(dir, std::move(db)));
}

RocksDbMetadataStore::RocksDbMetadataStore(std::string dir, std::unique_ptr<rocksdb::DB> db)
    : dir_(std::move(dir)), db_(std::move(db)) {}

RocksDbMetadataStore::~RocksDbMetadataStore() {
  if (db_) db_->Close().PermitUncheckedError();
}

Status RocksDbMetadataStore::Commit(const WriteBatch& batch) {
  if (batch.empty()) return Status::Ok();
  rocksdb::WriteBatch wb;
  for (const WriteBatch::Op& op : batch) {
    const rocksdb::Slice key(op.key.data(), op.key.size());
    rocksdb::Status s =
        op.put ? wb.Put(key, rocksdb::Slice(op.value.data(), op.value.size())) : wb.Delete(key);
    if (!s.ok()) return FromRocksDb(s, "preparing a metadata write");
  }
  rocksdb::WriteOptions options;
  options.sync = true;  // durable before the coordinator acts on it
  return FromRocksDb(db_->Write(options, &wb), "writing the coordinator's metadata at " + dir_);
}

Status RocksDbMetadataStore::Scan(std::string_view prefix, const MetadataScanFn& fn) const {
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions()));
  const rocksdb::Slice p(prefix.data(), prefix.size());
  for (it->Seek(p); it->Valid() && it->key().starts_with(p); it->Next()) {
    SLUICE_RETURN_IF_ERROR(fn(std::string_view(it->key().data(), it->key().size()),
                              std::string_view(it->value().data(), it->value().size())));
  }
  return FromRocksDb(it->status(), "reading the coordinator's metadata at " + dir_);
}

}  // namespace sluice::coordinator
