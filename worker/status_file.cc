#include "worker/status_file.h"

#include <cstdio>

#include "worker/engine/json_writer.h"

namespace sluice::worker {

void WriteStatusFile(const std::string& path, const std::string& worker_id, int64_t now_ms,
                     const std::vector<proto::TaskReport>& reports) {
  if (path.empty()) return;
  std::string json;
  engine::JsonWriter w(&json);
  w.BeginObject();
  w.Key("worker");
  w.String(worker_id);
  w.Key("updated_ms");
  w.Int(now_ms);
  w.Key("tasks");
  w.BeginArray();
  for (const proto::TaskReport& r : reports) {
    w.BeginObject();
    w.Key("job");
    w.String(r.job());
    w.Key("partition");
    w.Int(r.partition());
    w.Key("state");
    w.String(proto::TaskReport::State_Name(r.state()));
    w.Key("epoch");
    w.Int(r.epoch());
    w.Key("version");
    w.Int(r.version());
    const std::pair<const char*, int64_t> fields[] = {
        {"next_offset", r.next_offset()},   {"end_offset", r.end_offset()},
        {"watermark", r.watermark()},       {"last_checkpoint_id", r.last_checkpoint_id()},
        {"last_checkpoint_ms", r.last_checkpoint_ms()}, {"consumed", r.consumed()},
        {"processed", r.processed()},       {"filtered", r.filtered()},
        {"late", r.late()},                 {"dead_lettered", r.dead_lettered()},
        {"alerts", r.alerts()},             {"window_results", r.window_results()},
        {"open_windows", r.open_windows()}};
    for (const auto& [name, value] : fields) {
      w.Key(name);
      w.Int(value);
    }
    w.Key("error");
    w.String(r.error());
    w.EndObject();
  }
  w.EndArray();
  w.EndObject();
  const std::string tmp = path + ".tmp";
  std::FILE* f = std::fopen(tmp.c_str(), "w");
  if (f == nullptr) return;
  bool ok = std::fwrite(json.data(), 1, json.size(), f) == json.size();
  ok = std::fclose(f) == 0 && ok;
  if (ok) std::rename(tmp.c_str(), path.c_str());
}

}  // namespace sluice::worker
