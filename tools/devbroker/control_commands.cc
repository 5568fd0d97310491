#include "tools/devbroker/control_commands.h"

#include <spdlog/spdlog.h>

#include <charconv>
#include <cmath>
#include <limits>
#include <vector>

namespace sluice::devbroker {

namespace {

std::vector<std::string_view> SplitWords(std::string_view line) {
  std::vector<std::string_view> words;
  size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t' || line[i] == '\r')) ++i;
    size_t start = i;
    while (i < line.size() && line[i] != ' ' && line[i] != '\t' && line[i] != '\r') ++i;
    if (i > start) words.push_back(line.substr(start, i - start));
  }
  return words;
}

// Parses a whole word as an integer in [lo, hi].
Result<int64_t> ParseInt(std::string_view word, const char* what, int64_t lo, int64_t hi) {
  int64_t v = 0;
  auto [end, ec] = std::from_chars(word.data(), word.data() + word.size(), v);
  if (ec != std::errc() || end != word.data() + word.size()) {
    return Status::InvalidArgument(std::string(what) + " must be an integer, got '" +
                                   std::string(word) + "'");
  }
  if (v < lo || v > hi) {
    return Status::InvalidArgument(std::string(what) + " must be in " + std::to_string(lo) + ".." +
                                   std::to_string(hi) + ", got " + std::to_string(v));
  }
  return v;
}

Result<double> ParseSeconds(std::string_view word) {
  double v = 0;
  auto [end, ec] = std::from_chars(word.data(), word.data() + word.size(), v);
  if (ec != std::errc() || end != word.data() + word.size() || !std::isfinite(v) || v < 0 ||
      v > 86400) {
    return Status::InvalidArgument("SECONDS must be a number in 0..86400, got '" +
                                   std::string(word) + "'");
  }
  return v;
}

// The line as it is safe to log or echo: printable ASCII, at most 200 chars.
std::string Printable(std::string_view line) {
  std::string out(line.substr(0, 200));
  for (char& c : out) {
    if (c < 0x20 || c > 0x7e) c = '?';
  }
  if (line.size() > 200) out += "...";
  return out;
}

Status Arity(const std::vector<std::string_view>& words, size_t args, const char* usage) {
  if (words.size() != args + 1) return Status::InvalidArgument(std::string("usage: ") + usage);
  return Status::Ok();
}

}  // namespace

const char* ControlCommands::Usage() {
  return "  ping                            reply ok\n"
         "  down BROKER_ID                  take one broker down (ids start at 1)\n"
         "  up BROKER_ID                    bring it back\n"
         "  down-for SECONDS                all brokers down, up again after SECONDS\n"
         "                                  (fractions allowed; replies at once)\n"
         "  create-topic NAME PARTITIONS    create a topic (replication factor 1)\n"
         "  error API_KEY ERROR_CODE COUNT  the next COUNT requests of API_KEY fail with\n"
         "                                  ERROR_CODE (numeric Kafka codes, e.g. 0=Produce,\n"
         "                                  1=Fetch, 3=Metadata; 6=NOT_LEADER_OR_FOLLOWER)\n"
         "  rtt BROKER_ID MS                add MS of round-trip time to one broker\n";
}

std::string ControlCommands::Execute(std::string_view line, Clock::time_point now) {
  Status st = Dispatch(line, now);
  if (st.ok()) {
    spdlog::info("control: {} -> ok", Printable(line));
    return "ok";
  }
  std::string reply = Printable("error " + st.message());
  spdlog::warn("control: {} -> {}", Printable(line), reply);
  return reply;
}

Status ControlCommands::Dispatch(std::string_view line, Clock::time_point now) {
  std::vector<std::string_view> words = SplitWords(line);
  if (words.empty()) return Status::InvalidArgument("empty command");
  std::string_view cmd = words[0];
  constexpr int64_t kMaxBroker = std::numeric_limits<int32_t>::max();

  if (cmd == "ping") {
    return Arity(words, 0, "ping");
  }
  if (cmd == "down" || cmd == "up") {
    SLUICE_RETURN_IF_ERROR(Arity(words, 1, "down|up BROKER_ID"));
    SLUICE_ASSIGN_OR_RETURN(int64_t id, ParseInt(words[1], "BROKER_ID", 1, kMaxBroker));
    return cmd == "down" ? cluster_.SetBrokerDown(static_cast<int32_t>(id))
                         : cluster_.SetBrokerUp(static_cast<int32_t>(id));
  }
  if (cmd == "down-for") {
    SLUICE_RETURN_IF_ERROR(Arity(words, 1, "down-for SECONDS"));
    SLUICE_ASSIGN_OR_RETURN(double seconds, ParseSeconds(words[1]));
    SLUICE_RETURN_IF_ERROR(AllBrokers(/*up=*/false));
    auto up_at =
        now + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
    if (!brokers_up_at_ || *brokers_up_at_ < up_at) brokers_up_at_ = up_at;
    return Status::Ok();
  }
  if (cmd == "create-topic") {
    SLUICE_RETURN_IF_ERROR(Arity(words, 2, "create-topic NAME PARTITIONS"));
    SLUICE_ASSIGN_OR_RETURN(int64_t partitions, ParseInt(words[2], "PARTITIONS", 1, 100000));
    return cluster_.CreateTopic(std::string(words[1]), static_cast<int>(partitions));
  }
  if (cmd == "error") {
    SLUICE_RETURN_IF_ERROR(Arity(words, 3, "error API_KEY ERROR_CODE COUNT"));
    SLUICE_ASSIGN_OR_RETURN(int64_t api_key, ParseInt(words[1], "API_KEY", 0, 32767));
    // Kafka error codes are int16 on the wire.
    SLUICE_ASSIGN_OR_RETURN(int64_t code, ParseInt(words[2], "ERROR_CODE", -1, 32767));
    SLUICE_ASSIGN_OR_RETURN(int64_t count, ParseInt(words[3], "COUNT", 1, 1000000));
    return cluster_.PushRequestErrors(static_cast<int16_t>(api_key), static_cast<int32_t>(code),
                                      static_cast<size_t>(count));
  }
  if (cmd == "rtt") {
    SLUICE_RETURN_IF_ERROR(Arity(words, 2, "rtt BROKER_ID MS"));
    SLUICE_ASSIGN_OR_RETURN(int64_t id, ParseInt(words[1], "BROKER_ID", 1, kMaxBroker));
    SLUICE_ASSIGN_OR_RETURN(int64_t ms, ParseInt(words[2], "MS", 0, 3600 * 1000));
    return cluster_.SetBrokerRtt(static_cast<int32_t>(id), static_cast<int>(ms));
  }
  return Status::InvalidArgument("unknown command '" + std::string(cmd) +
                                 "' (ping, down, up, down-for, create-topic, error, rtt)");
}

Status ControlCommands::AllBrokers(bool up) {
  for (int32_t id = 1; id <= cluster_.broker_count(); ++id) {
    SLUICE_RETURN_IF_ERROR(up ? cluster_.SetBrokerUp(id) : cluster_.SetBrokerDown(id));
  }
  return Status::Ok();
}

void ControlCommands::RunDue(Clock::time_point now) {
  if (!brokers_up_at_ || now < *brokers_up_at_) return;
  brokers_up_at_.reset();
  Status st = AllBrokers(/*up=*/true);
  if (st.ok()) {
    spdlog::info("control: down-for elapsed, all brokers up");
  } else {
    spdlog::error("control: bringing brokers up after down-for: {}", st.ToString());
  }
}

}  // namespace sluice::devbroker
