#include "coordinator/auth.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "common/file_util.h"
#include "worker/engine/json_writer.h"
#include "worker/engine/time_util.h"

namespace sluice::coordinator {

namespace {

constexpr size_t kMaxTokenFileBytes = 1 << 20;
constexpr std::string_view kBearer = "Bearer ";

// The words of a line up to a comment (a word starting with #).
std::vector<std::string> Words(const std::string& line) {
  std::istringstream in(line);
  std::vector<std::string> words;
  std::string w;
  while (in >> w && w[0] != '#') words.push_back(w);
  return words;
}

bool ParseRole(const std::string& s, Role* role) {
  if (s == "read") {
    *role = Role::kRead;
  } else if (s == "operate") {
    *role = Role::kOperate;
  } else if (s == "worker") {
    *role = Role::kWorker;
  } else {
    return false;
  }
  return true;
}

// Equal, in time that depends on the lengths only.
bool ConstantTimeEquals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  }
  return diff == 0;
}

}  // namespace

const char* RoleName(Role role) {
  switch (role) {
    case Role::kRead:
      return "read";
    case Role::kOperate:
      return "operate";
    case Role::kWorker:
      return "worker";
  }
  return "?";
}

bool RoleAllows(Role have, Role need) {
  return have == need || (have == Role::kOperate && need == Role::kRead);
}

Result<TokenTable> TokenTable::Parse(std::string_view text, const std::string& filename) {
  TokenTable table;
  std::istringstream lines{std::string(text)};
  std::string line;
  for (int n = 1; std::getline(lines, line); ++n) {
    const std::vector<std::string> words = Words(line);
    if (words.empty()) continue;
    const std::string where = filename + ":" + std::to_string(n) + ": ";
    if (words.size() < 2) {
      return Status::InvalidArgument(where + "expected TOKEN ROLE [NAME], got one word");
    }
    Entry entry;
    entry.token = words[0];
    if (!ParseRole(words[1], &entry.role)) {
      return Status::InvalidArgument(where + "unknown role '" + words[1] +
                                     "' (expected read, operate or worker)");
    }
    if (words.size() > 3) {
      return Status::InvalidArgument(where + "expected TOKEN ROLE [NAME]; a name is one word");
    }
    entry.name = words.size() == 3 ? words[2]
                                   : std::string(RoleName(entry.role)) + " token (line " +
                                         std::to_string(n) + ")";
    if (entry.token.size() < 16) {
      return Status::InvalidArgument(where +
                                     "a token needs at least 16 characters (openssl "
                                     "rand -hex 32 makes one)");
    }
    if (table.Find(entry.token) != nullptr) {
      return Status::InvalidArgument(where + "the same token appears twice");
    }
    table.entries_.push_back(std::move(entry));
  }
  if (table.entries_.empty()) {
    return Status::InvalidArgument(filename + ": no tokens (lines are TOKEN ROLE [NAME])");
  }
  return table;
}

Result<TokenTable> TokenTable::Load(const std::string& path) {
  Result<std::string> read = ReadFileUpTo(path, kMaxTokenFileBytes + 1);
  if (!read.ok()) {
    return Status::InvalidArgument("cannot read the token file " + path + ": " +
                                   read.status().message());
  }
  const std::string& text = *read;
  if (text.size() > kMaxTokenFileBytes) {
    return Status::InvalidArgument("the token file " + path + " is larger than 1 MiB");
  }
  return Parse(text, path);
}

const TokenTable::Entry* TokenTable::Find(std::string_view token) const {
  const Entry* found = nullptr;
  for (const Entry& e : entries_) {
    if (ConstantTimeEquals(e.token, token)) found = &e;
  }
  return found;
}

AuthDecision Authorize(const TokenTable* tokens, std::string_view authorization, Role need,
                       std::string_view method) {
  AuthDecision d;
  if (tokens == nullptr) return d;
  if (authorization.empty()) {
    d.outcome = AuthDecision::Outcome::kUnauthenticated;
    d.message =
        "no token: the coordinator requires a bearer token (sluicectl --token-file FILE "
        "or $SLUICE_TOKEN)";
    return d;
  }
  if (authorization.substr(0, kBearer.size()) != kBearer) {
    d.outcome = AuthDecision::Outcome::kUnauthenticated;
    d.message = "the authorization header is not 'Bearer TOKEN'";
    return d;
  }
  const TokenTable::Entry* entry = tokens->Find(authorization.substr(kBearer.size()));
  if (entry == nullptr) {
    d.outcome = AuthDecision::Outcome::kUnauthenticated;
    d.message = "unknown token: the coordinator does not accept it";
    return d;
  }
  d.caller = entry->name;
  if (!RoleAllows(entry->role, need)) {
    d.outcome = AuthDecision::Outcome::kPermissionDenied;
    d.message = "permission denied: " + std::string(method) + " needs a token with role " +
                RoleName(need) + "; " + entry->name + " has role " + RoleName(entry->role);
  }
  return d;
}

std::string AuditLine(const AuditEntry& e) {
  std::string out;
  engine::JsonWriter w(&out);
  w.BeginObject();
  w.SafeKey("time");
  w.String(engine::FormatRfc3339Millis(e.time_ms));
  w.SafeKey("time_ms");
  w.Int(e.time_ms);
  const std::pair<const char*, const std::string*> fields[] = {
      {"caller", &e.caller}, {"peer", &e.peer},    {"cert_subject", &e.cert_subject},
      {"method", &e.method}, {"job", &e.job},      {"file", &e.file},
      {"change", &e.change}, {"result", &e.result}};
  for (const auto& [key, value] : fields) {
    if (value->empty()) continue;
    w.SafeKey(key);
    w.String(*value);
  }
  w.EndObject();
  return out;
}

Result<std::unique_ptr<AuditLog>> AuditLog::Open(const std::string& path) {
  // Readable by the owner and its group only: it names callers and jobs.
  const int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
  std::FILE* f = fd < 0 ? nullptr : ::fdopen(fd, "a");
  if (f == nullptr) {
    const int error = errno;
    if (fd >= 0) ::close(fd);
    return Status::InvalidArgument("cannot open the audit log " + path + ": " +
                                   std::strerror(error));
  }
  return std::unique_ptr<AuditLog>(new AuditLog(f, path));
}

AuditLog::~AuditLog() { std::fclose(file_); }

void AuditLog::Write(const AuditEntry& entry) {
  const std::string line = AuditLine(entry) + "\n";
  std::lock_guard<std::mutex> lock(mu_);
  if (std::fwrite(line.data(), 1, line.size(), file_) != line.size() || std::fflush(file_) != 0) {
    spdlog::error("cannot write the audit log {}: {}", path_, std::strerror(errno));
    std::clearerr(file_);
  }
}

}  // namespace sluice::coordinator
