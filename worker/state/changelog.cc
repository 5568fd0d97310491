#include "worker/state/changelog.h"

#include <fcntl.h>
#include <rocksdb/write_batch.h>
#include <unistd.h>
#include <xxhash.h>

#include <atomic>
#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <filesystem>

namespace sluice::worker {
namespace {

namespace fs = std::filesystem;

constexpr std::string_view kDeltaFormat = "sluice-delta/1";

std::string Hex64(uint64_t v) {
  char buf[17];
  std::snprintf(buf, sizeof(buf), "%016" PRIx64, v);
  return buf;
}

uint64_t Checksum(std::string_view meta, const std::vector<std::string_view>& batch) {
  XXH64_state_t* state = XXH64_createState();
  XXH64_reset(state, 0);
  XXH64_update(state, meta.data(), meta.size());
  for (std::string_view part : batch) XXH64_update(state, part.data(), part.size());
  const uint64_t h = XXH64_digest(state);
  XXH64_freeState(state);
  return h;
}

// The header's fields and where the body starts.
struct Header {
  int64_t prev = 0;
  int64_t meta_bytes = 0;
  int64_t batch_bytes = 0;
  std::string xxh64;
  size_t body = 0;
};

Result<Header> ParseHeader(std::string_view file) {
  Header h;
  size_t pos = 0;
  bool first = true;
  bool have[4] = {false, false, false, false};
  while (true) {
    const size_t end = file.find('\n', pos);
    if (end == std::string_view::npos) return Status::Corruption("delta header is cut");
    std::string_view line = file.substr(pos, end - pos);
    pos = end + 1;
    if (first) {
      if (line != kDeltaFormat) {
        return Status::Corruption("not a delta checkpoint (format '" + std::string(line) + "')");
      }
      first = false;
      continue;
    }
    if (line.empty()) break;
    const size_t eq = line.find('=');
    if (eq == std::string_view::npos) {
      return Status::Corruption("delta header line without '=': '" + std::string(line) + "'");
    }
    std::string_view key = line.substr(0, eq);
    std::string_view value = line.substr(eq + 1);
    if (key == "xxh64") {
      h.xxh64 = std::string(value);
      have[3] = true;
      continue;
    }
    int64_t* field = key == "prev"          ? (have[0] = true, &h.prev)
                     : key == "meta_bytes"  ? (have[1] = true, &h.meta_bytes)
                     : key == "batch_bytes" ? (have[2] = true, &h.batch_bytes)
                                            : nullptr;
    if (field == nullptr) continue;  // written by a newer version
    if (!ParseInt64(value, *field) || *field < 0) {
      return Status::Corruption("delta header has no valid " + std::string(key));
    }
  }
  if (!(have[0] && have[1] && have[2] && have[3])) {
    return Status::Corruption("delta header lacks prev, meta_bytes, batch_bytes or xxh64");
  }
  h.body = pos;
  return h;
}

}  // namespace

std::string EncodeBatch(const WriteBatch& batch) {
  std::string out;
  out.reserve(batch.bytes());
  for (const std::string& chunk : batch.chunks()) out += chunk;
  return out;
}

std::vector<std::string_view> BatchParts(const WriteBatch& batch) {
  return {batch.chunks().begin(), batch.chunks().end()};
}

Status DecodeBatch(std::string_view in, rocksdb::WriteBatch* out) {
  WriteBatch::Op op;
  while (!in.empty()) {
    if (!WriteBatch::DecodeOp(&in, &op)) {
      return Status::Corruption("delta batch is malformed or cut");
    }
    rocksdb::Slice k(op.key.data(), op.key.size());
    rocksdb::Status s =
        op.put ? out->Put(k, rocksdb::Slice(op.value.data(), op.value.size())) : out->Delete(k);
    if (!s.ok()) return Status::Corruption("delta batch: " + s.ToString());
  }
  return Status::Ok();
}

std::string EncodeDeltaHead(const Delta& delta, const std::vector<std::string_view>& batch) {
  const std::string meta = EncodeCheckpointMeta(delta.meta);
  std::string out;
  out.reserve(meta.size() + 128);
  out += std::string(kDeltaFormat) + "\n";
  out += "prev=" + std::to_string(delta.prev) + "\n";
  out += "meta_bytes=" + std::to_string(meta.size()) + "\n";
  size_t batch_bytes = 0;
  for (std::string_view part : batch) batch_bytes += part.size();
  out += "batch_bytes=" + std::to_string(batch_bytes) + "\n";
  out += "xxh64=" + Hex64(Checksum(meta, batch)) + "\n\n";
  out += meta;
  return out;
}

std::string EncodeDelta(const Delta& delta) {
  return EncodeDeltaHead(delta, {delta.batch}) + delta.batch;
}

Result<Delta> DecodeDeltaHeader(std::string_view file, uint64_t* file_bytes) {
  SLUICE_ASSIGN_OR_RETURN(Header h, ParseHeader(file));
  if (file.size() - h.body < static_cast<uint64_t>(h.meta_bytes)) {
    return Status::Corruption("delta metadata is cut");
  }
  Delta delta;
  delta.prev = h.prev;
  SLUICE_ASSIGN_OR_RETURN(delta.meta,
                          DecodeCheckpointMeta(std::string(file.substr(h.body, h.meta_bytes))));
  if (file_bytes != nullptr) *file_bytes = h.body + h.meta_bytes + h.batch_bytes;
  return delta;
}

Result<Delta> DecodeDelta(std::string_view file) {
  SLUICE_ASSIGN_OR_RETURN(Header h, ParseHeader(file));
  if (file.size() - h.body != static_cast<uint64_t>(h.meta_bytes + h.batch_bytes)) {
    return Status::Corruption("delta is " + std::to_string(file.size()) +
                              " bytes, its header says " +
                              std::to_string(h.body + h.meta_bytes + h.batch_bytes));
  }
  std::string_view meta = file.substr(h.body, h.meta_bytes);
  std::string_view batch = file.substr(h.body + h.meta_bytes);
  if (Hex64(Checksum(meta, {batch})) != h.xxh64) {
    return Status::Corruption("delta checksum mismatch");
  }
  Delta delta;
  delta.prev = h.prev;
  SLUICE_ASSIGN_OR_RETURN(delta.meta, DecodeCheckpointMeta(std::string(meta)));
  delta.batch = std::string(batch);
  return delta;
}

Status WriteFileOnce(const std::string& path, std::initializer_list<std::string_view> parts) {
  return WriteFileOnce(path, std::vector<std::string_view>(parts));
}

Status WriteFileOnce(const std::string& path, const std::vector<std::string_view>& parts) {
  // Two writers of one path (an old owner not yet stopped, and the new one)
  // each write a file of their own: only the link decides.
  static std::atomic<uint64_t> counter{0};
  const std::string tmp = path + ".tmp-" + std::to_string(::getpid()) + "-" +
                          std::to_string(counter.fetch_add(1, std::memory_order_relaxed));
  auto fail = [&](const std::string& what) {
    const int err = errno;
    ::unlink(tmp.c_str());
    return Status::IoError(what + " " + path + ": " + std::strerror(err));
  };
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return Status::IoError("creating " + tmp + ": " + std::strerror(errno));
  for (std::string_view data : parts) {
    size_t written = 0;
    while (written < data.size()) {
      const ssize_t n = ::write(fd, data.data() + written, data.size() - written);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        ::close(fd);
        return fail("writing");
      }
      written += static_cast<size_t>(n);
    }
  }
  if (::fdatasync(fd) != 0) {
    ::close(fd);
    return fail("syncing");
  }
  ::close(fd);
  if (::link(tmp.c_str(), path.c_str()) != 0) {
    if (errno == EEXIST) {
      ::unlink(tmp.c_str());
      return Status::AlreadyExists(path + " exists: another writer wrote this checkpoint");
    }
    return fail("linking");
  }
  ::unlink(tmp.c_str());
  const std::string dir = fs::path(path).parent_path().string();
  const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) return Status::IoError("opening " + dir + ": " + std::strerror(errno));
  const int synced = ::fsync(dfd);
  const int err = errno;
  ::close(dfd);
  if (synced != 0) return Status::IoError("syncing " + dir + ": " + std::strerror(err));
  return Status::Ok();
}

}  // namespace sluice::worker
