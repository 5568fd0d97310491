#include "worker/state/checkpoint_meta.h"

#include <charconv>
#include <map>
#include <string_view>
#include <system_error>

namespace sluice::worker {
namespace {

constexpr std::string_view kFormatKey = "format";
constexpr std::string_view kFormat = "sluice-checkpoint/1";

}  // namespace

bool ParseInt64(std::string_view text, int64_t& out) {
  const char* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, out);
  return ec == std::errc() && ptr == end && !text.empty();
}

std::string EncodeCheckpointMeta(const CheckpointMeta& meta) {
  std::string out;
  out += std::string(kFormatKey) + "=" + std::string(kFormat) + "\n";
  out += "job=" + meta.job + "\n";
  out += "partition=" + std::to_string(meta.partition) + "\n";
  out += "next_offset=" + std::to_string(meta.next_offset) + "\n";
  out += "watermark=" + std::to_string(meta.watermark) + "\n";
  out += "epoch=" + std::to_string(meta.epoch) + "\n";
  out += "created_ms=" + std::to_string(meta.created_ms) + "\n";
  if (meta.checkpoint_id > 0) out += "checkpoint_id=" + std::to_string(meta.checkpoint_id) + "\n";
  if (meta.transactional) out += "transactional=1\n";
  return out;
}

Result<CheckpointMeta> DecodeCheckpointMeta(const std::string& text) {
  std::map<std::string, std::string, std::less<>> fields;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    std::string_view line(text.data() + start, end - start);
    start = end + 1;
    if (line.empty()) continue;
    size_t eq = line.find('=');
    if (eq == std::string_view::npos) {
      return Status::Corruption("checkpoint metadata line without '=': '" + std::string(line) +
                                "'");
    }
    fields[std::string(line.substr(0, eq))] = std::string(line.substr(eq + 1));
  }
  auto format = fields.find(kFormatKey);
  if (format == fields.end() || format->second != kFormat) {
    return Status::Corruption("checkpoint metadata is not in format " + std::string(kFormat) +
                              (format == fields.end() ? "" : " (found " + format->second + ")"));
  }
  CheckpointMeta meta;
  auto job = fields.find("job");
  if (job == fields.end()) return Status::Corruption("checkpoint metadata has no job");
  meta.job = job->second;
  int64_t partition = 0;
  struct IntField {
    const char* name;
    int64_t* out;
  };
  for (IntField f : {IntField{"partition", &partition}, IntField{"next_offset", &meta.next_offset},
                     IntField{"watermark", &meta.watermark}, IntField{"epoch", &meta.epoch},
                     IntField{"created_ms", &meta.created_ms}}) {
    auto it = fields.find(f.name);
    if (it == fields.end() || !ParseInt64(it->second, *f.out)) {
      return Status::Corruption(std::string("checkpoint metadata has no valid ") + f.name +
                                (it == fields.end() ? "" : " ('" + it->second + "')"));
    }
  }
  if (auto it = fields.find("checkpoint_id");
      it != fields.end() &&
      (!ParseInt64(it->second, meta.checkpoint_id) || meta.checkpoint_id < 0)) {
    return Status::Corruption("checkpoint metadata has no valid checkpoint_id ('" + it->second +
                              "')");
  }
  if (auto it = fields.find("transactional"); it != fields.end()) {
    if (it->second != "0" && it->second != "1") {
      return Status::Corruption("checkpoint metadata has no valid transactional ('" + it->second +
                                "')");
    }
    meta.transactional = it->second == "1";
  }
  if (partition < 0 || partition > std::numeric_limits<int32_t>::max()) {
    return Status::Corruption("checkpoint metadata partition out of range: " +
                              std::to_string(partition));
  }
  meta.partition = static_cast<int32_t>(partition);
  return meta;
}

}  // namespace sluice::worker
