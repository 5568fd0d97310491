#pragma once

// Translation of rocksdb::Status into sluice Status, for the .cc files that
// use RocksDB (worker/state/, the coordinator's metadata store). Header-only:
// it pulls in RocksDB, so keep it out of other headers.

#include <rocksdb/status.h>

#include <string>
#include <string_view>

#include "common/status.h"

namespace sluice {

// `context` says what was being done, e.g. "opening state of task fraud-3 at
// /var/lib/sluice/state/fraud-3"; the RocksDB message follows it.
inline Status FromRocksDb(const rocksdb::Status& s, std::string_view context) {
  if (s.ok()) return Status::Ok();
  std::string message = std::string(context) + ": " + s.ToString();
  switch (s.code()) {
    case rocksdb::Status::kOk:
      return Status::Ok();
    case rocksdb::Status::kNotFound:
      return Status::NotFound(std::move(message));
    case rocksdb::Status::kCorruption:
      return Status::Corruption(std::move(message));
    case rocksdb::Status::kInvalidArgument:
      return Status::InvalidArgument(std::move(message));
    case rocksdb::Status::kIOError:
      return Status::IoError(std::move(message));
    case rocksdb::Status::kNotSupported:
      return Status::FailedPrecondition(std::move(message));
    case rocksdb::Status::kBusy:
    case rocksdb::Status::kTimedOut:
    case rocksdb::Status::kTryAgain:
    case rocksdb::Status::kShutdownInProgress:
      return Status::Unavailable(std::move(message));
    default:  // kIncomplete, kAborted, kMergeInProgress, kExpired, ...
      return Status::Internal(std::move(message));
  }
}

}  // namespace sluice
