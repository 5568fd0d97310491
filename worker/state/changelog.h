#pragma once

// The changelog of a checkpoint store: a delta checkpoint is one file holding
// the state changes of one checkpoint interval (the engine's WriteBatch, the
// keys changed since the checkpoint before), the id of the checkpoint it
// follows and the new checkpoint's metadata. A checkpoint is then a full
// checkpoint (a BackupEngine backup) plus the deltas written after it, applied
// in order; see checkpoint_store.h.
//
// The file, written once and never changed:
//
//   sluice-delta/1\n
//   prev=<id>\n            the checkpoint this one follows; 0: the empty state
//   meta_bytes=<n>\n
//   batch_bytes=<n>\n
//   xxh64=<16 hex digits>\n  of the metadata and the batch
//   \n
//   <metadata: EncodeCheckpointMeta><batch: EncodeBatch>
//
// The batch: the operations encoded as WriteBatch keeps them
// (common/write_batch.h).
//
// Nothing here keeps state: these are codecs and a durable file write.

#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "common/write_batch.h"
#include "worker/state/checkpoint_meta.h"

namespace rocksdb {
class WriteBatch;
}  // namespace rocksdb

namespace sluice::worker {

struct Delta {
  int64_t prev = 0;
  CheckpointMeta meta;  // checkpoint_id set
  std::string batch;    // EncodeBatch(...)
};

std::string EncodeBatch(const WriteBatch& batch);
// Appends the operations of an encoded batch to `out`; Corruption if the
// encoding is cut or malformed.
Status DecodeBatch(std::string_view encoded, rocksdb::WriteBatch* out);

// The encoded batch in parts, without a copy: WriteBatch's chunks.
std::vector<std::string_view> BatchParts(const WriteBatch& batch);

// A delta file is its head (header and metadata) followed by the batch:
// EncodeDelta(d) == EncodeDeltaHead(d, {d.batch}) + d.batch. The head alone
// lets a writer send a batch it holds elsewhere, in parts (BatchParts),
// without copying it; `delta.batch` is not read.
std::string EncodeDeltaHead(const Delta& delta, const std::vector<std::string_view>& batch);
std::string EncodeDelta(const Delta& delta);
// Decodes a whole delta file and checks its checksum (Corruption if it fails).
Result<Delta> DecodeDelta(std::string_view file);
// Decodes the header and the metadata only (no checksum: for listing); `file`
// may be just the start of the file. `batch` stays empty; `*file_bytes` (if
// not null) receives the whole file's expected size.
Result<Delta> DecodeDeltaHeader(std::string_view file, uint64_t* file_bytes = nullptr);

// Writes `parts`, one after the other, to `path` durably and at most once: to
// a temporary file of this writer's own, fsynced, linked to `path`
// (AlreadyExists if `path` exists, also when another writer links it first),
// and the directory fsynced.
Status WriteFileOnce(const std::string& path, std::initializer_list<std::string_view> parts);
Status WriteFileOnce(const std::string& path, const std::vector<std::string_view>& parts);

}  // namespace sluice::worker
