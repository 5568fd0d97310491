#pragma once

// What goes into and comes out of a task: source records from one Kafka
// partition, and the records a task emits to its job's sinks.

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace sluice::engine {

// Where an input record came from.
struct SourcePosition {
  std::string_view topic;
  int32_t partition = 0;
  int64_t offset = 0;
};

// One input message. The views stay valid only during the call they are passed
// to.
struct SourceRecord {
  std::string_view payload;
  std::string_view kafka_key;
  SourcePosition position;
};

// The sinks of a job (JOBS.md "sinks").
enum class OutputStream : uint8_t { kOutput, kLate, kDeadLetter };

const char* OutputStreamName(OutputStream stream);

// Where a task emits its records. Called on the task's thread; must copy what it
// keeps, since the views are reused after the call.
class RecordSink {
 public:
  virtual ~RecordSink() = default;
  virtual void Emit(OutputStream stream, std::string_view key, std::string_view value) = 0;
};

// A RecordSink that keeps every record, for tests and tools.
class CollectingSink final : public RecordSink {
 public:
  struct Record {
    OutputStream stream;
    std::string key;
    std::string value;
    bool operator==(const Record&) const = default;
  };

  void Emit(OutputStream stream, std::string_view key, std::string_view value) override {
    records_.push_back({stream, std::string(key), std::string(value)});
  }

  const std::vector<Record>& records() const { return records_; }
  std::vector<Record> Take(OutputStream stream) const {
    std::vector<Record> out;
    for (const Record& r : records_) {
      if (r.stream == stream) out.push_back(r);
    }
    return out;
  }
  void Clear() { records_.clear(); }

 private:
  std::vector<Record> records_;
};

}  // namespace sluice::engine
