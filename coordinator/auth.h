#pragma once

// Who may call the coordinator, and the record of what they changed.
//
// TokenTable: the bearer tokens of --token-file, each with a role. Authorize
// decides one call from its "authorization" header: no token or an unknown
// one is unauthenticated, a token without the needed role is denied. Roles:
//   read     ListJobs, GetJob, ListWorkers
//   operate  read, and SubmitJob, UpdateJob, StopJob, CancelJob
//   worker   Register, Heartbeat
// AuditLog: one JSON line per mutating call, refused ones included.
//
// No gRPC here: service.cc passes the header and the peer in.

#include <cstdint>
#include <cstdio>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace sluice::coordinator {

enum class Role { kRead, kOperate, kWorker };

const char* RoleName(Role role);
// Whether a token with `have` may make a call that needs `need`.
bool RoleAllows(Role have, Role need);

// The tokens of a token file. Lines: `TOKEN ROLE [NAME]`; blank lines and
// # starts a comment, to the end of the line. A token without a name is called
// "ROLE token (line N)". Immutable once parsed; safe to share across threads.
class TokenTable {
 public:
  struct Entry {
    std::string token;
    Role role;
    std::string name;
  };

  // An error names `filename` and the line.
  static Result<TokenTable> Parse(std::string_view text, const std::string& filename);
  static Result<TokenTable> Load(const std::string& path);

  // The entry of `token`, or nullptr. Compares every token in constant time
  // for its length, so timing tells nothing of a near miss.
  const Entry* Find(std::string_view token) const;
  size_t size() const { return entries_.size(); }

 private:
  std::vector<Entry> entries_;
};

// The verdict on one call.
struct AuthDecision {
  enum class Outcome { kOk, kUnauthenticated, kPermissionDenied };
  Outcome outcome = Outcome::kOk;
  std::string caller;   // the token's name; empty when unauthenticated or auth is off
  std::string message;  // why not, for the caller
};

// `tokens` null: authentication is off and every call is allowed.
// `authorization` is the call's authorization header ("Bearer TOKEN"), empty
// when absent; `method` names the call in messages ("CancelJob").
AuthDecision Authorize(const TokenTable* tokens, std::string_view authorization, Role need,
                       std::string_view method);

// One line of the audit log.
struct AuditEntry {
  int64_t time_ms = 0;
  std::string caller;        // token name, empty when none
  std::string peer;          // the transport's peer, "ipv4:10.0.0.5:51234"
  std::string cert_subject;  // the client certificate's subject under mutual TLS
  std::string method;        // "SubmitJob"
  std::string job;
  std::string file;    // the job file a submit or update sent, as the client named it
  std::string change;  // "version 1 -> 2", "RUNNING -> CANCELLED"
  std::string result;  // "ok", or the error
};

// {"time":"2024-03-01T12:00:00.000Z","time_ms":...,"caller":...,"peer":...,
//  "cert_subject":...,"method":...,"job":...,"file":...,"change":...,"result":...}
// without a trailing newline; empty fields are left out.
std::string AuditLine(const AuditEntry& entry);

// Appends audit lines to a file, each flushed as written. Thread-safe.
class AuditLog {
 public:
  ~AuditLog();
  // Opens `path` for appending; an error names it.
  static Result<std::unique_ptr<AuditLog>> Open(const std::string& path);
  // A failed write is logged; the call it records still stands.
  void Write(const AuditEntry& entry);

 private:
  AuditLog(std::FILE* file, std::string path) : file_(file), path_(std::move(path)) {}
  std::mutex mu_;
  std::FILE* file_;
  std::string path_;
};

}  // namespace sluice::coordinator
