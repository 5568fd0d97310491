#include "coordinator/auth.h"

#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>

namespace sluice::coordinator {
namespace {

constexpr const char* kTokens =
    "# the fraud team\n"
    "\n"
    "rrrrrrrrrrrrrrrrrrrr read dashboards\n"
    "oooooooooooooooooooo operate alice   # on call\n"
    "wwwwwwwwwwwwwwwwwwww worker\n";

TEST_CASE("a token file names each token's role and holder") {
  Result<TokenTable> t = TokenTable::Parse(kTokens, "tokens.txt");
  REQUIRE(t.ok());
  CHECK(t->size() == 3);
  const TokenTable::Entry* alice = t->Find("oooooooooooooooooooo");
  REQUIRE(alice != nullptr);
  CHECK(alice->role == Role::kOperate);
  CHECK(alice->name == "alice");
  CHECK(t->Find("wwwwwwwwwwwwwwwwwwww")->name == "worker token (line 5)");
  CHECK(t->Find("oooooooooooooooooooX") == nullptr);
  CHECK(t->Find("") == nullptr);
}

TEST_CASE("a bad token file is refused with its name and line") {
  auto error = [](const char* text) {
    return TokenTable::Parse(text, "tokens.txt").status().message();
  };
  CHECK(error("tttttttttttttttttttt admin\n") ==
        "tokens.txt:1: unknown role 'admin' (expected read, operate or worker)");
  CHECK(error("# x\ntttttttttttttttttttt\n") ==
        "tokens.txt:2: expected TOKEN ROLE [NAME], got one word");
  CHECK(error("short read\n").find("tokens.txt:1: a token needs at least 16") == 0);
  CHECK(error("tttttttttttttttttttt read a\ntttttttttttttttttttt operate b\n") ==
        "tokens.txt:2: the same token appears twice");
  CHECK(error("# only comments\n") == "tokens.txt: no tokens (lines are TOKEN ROLE [NAME])");
  CHECK(TokenTable::Load("/nonexistent/tokens")
            .status()
            .message()
            .find("cannot read the token file /nonexistent/tokens") == 0);
}

TEST_CASE("operate implies read; worker is a role of its own") {
  CHECK(RoleAllows(Role::kRead, Role::kRead));
  CHECK_FALSE(RoleAllows(Role::kRead, Role::kOperate));
  CHECK(RoleAllows(Role::kOperate, Role::kRead));
  CHECK(RoleAllows(Role::kOperate, Role::kOperate));
  CHECK_FALSE(RoleAllows(Role::kOperate, Role::kWorker));
  CHECK_FALSE(RoleAllows(Role::kWorker, Role::kRead));
  CHECK(RoleAllows(Role::kWorker, Role::kWorker));
}

TEST_CASE("every call is authorized from its bearer token") {
  Result<TokenTable> t = TokenTable::Parse(kTokens, "tokens.txt");
  REQUIRE(t.ok());
  using Outcome = AuthDecision::Outcome;

  SECTION("no token table: authentication is off") {
    CHECK(Authorize(nullptr, "", Role::kOperate, "CancelJob").outcome == Outcome::kOk);
  }
  SECTION("no token, a malformed header or an unknown token: unauthenticated") {
    AuthDecision d = Authorize(&*t, "", Role::kRead, "ListJobs");
    CHECK(d.outcome == Outcome::kUnauthenticated);
    CHECK(d.message.find("no token") == 0);
    CHECK(Authorize(&*t, "Basic oooooooooooooooooooo", Role::kRead, "ListJobs").outcome ==
          Outcome::kUnauthenticated);
    d = Authorize(&*t, "Bearer nope-nope-nope-nope", Role::kRead, "ListJobs");
    CHECK(d.outcome == Outcome::kUnauthenticated);
    CHECK(d.caller.empty());
  }
  SECTION("a token without the role: denied, naming the call and both roles") {
    AuthDecision d = Authorize(&*t, "Bearer rrrrrrrrrrrrrrrrrrrr", Role::kOperate, "CancelJob");
    CHECK(d.outcome == Outcome::kPermissionDenied);
    CHECK(d.caller == "dashboards");
    CHECK(d.message ==
          "permission denied: CancelJob needs a token with role operate; dashboards has role "
          "read");
    CHECK(Authorize(&*t, "Bearer oooooooooooooooooooo", Role::kWorker, "Register").outcome ==
          Outcome::kPermissionDenied);
  }
  SECTION("a token with the role") {
    AuthDecision d = Authorize(&*t, "Bearer oooooooooooooooooooo", Role::kRead, "GetJob");
    CHECK(d.outcome == Outcome::kOk);
    CHECK(d.caller == "alice");
    CHECK(Authorize(&*t, "Bearer wwwwwwwwwwwwwwwwwwww", Role::kWorker, "Heartbeat").outcome ==
          Outcome::kOk);
  }
}

TEST_CASE("an audit line is one JSON object, empty fields left out") {
  AuditEntry e;
  e.time_ms = 1'709'294'400'123;
  e.caller = "alice";
  e.peer = "ipv4:127.0.0.1:5000";
  e.method = "UpdateJob";
  e.job = "fraud \"eu\"";
  e.file = "fraud.yaml";
  e.change = "version 1 -> 2";
  e.result = "ok";
  CHECK(
      AuditLine(e) ==
      R"({"time":"2024-03-01T12:00:00.123Z","time_ms":1709294400123,"caller":"alice",)"
      R"("peer":"ipv4:127.0.0.1:5000","method":"UpdateJob","job":"fraud \"eu\"","file":"fraud.yaml",)"
      R"("change":"version 1 -> 2","result":"ok"})");
}

TEST_CASE("the audit log appends one line per entry, readable by owner and group only") {
  const std::filesystem::path dir =
      std::filesystem::temp_directory_path() / ("auth_test_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const std::string path = (dir / "audit.jsonl").string();
  {
    Result<std::unique_ptr<AuditLog>> log = AuditLog::Open(path);
    REQUIRE(log.ok());
    AuditEntry e;
    e.method = "SubmitJob";
    e.result = "ok";
    (*log)->Write(e);
    e.method = "CancelJob";
    (*log)->Write(e);
  }
  std::ifstream in(path);
  std::string first, second, third;
  std::getline(in, first);
  std::getline(in, second);
  CHECK(first.find(R"("method":"SubmitJob")") != std::string::npos);
  CHECK(second.find(R"("method":"CancelJob")") != std::string::npos);
  CHECK_FALSE(std::getline(in, third));
  const auto perms = std::filesystem::status(path).permissions();
  CHECK((perms & std::filesystem::perms::others_all) == std::filesystem::perms::none);

  CHECK(AuditLog::Open((dir / "no" / "such" / "dir").string())
            .status()
            .message()
            .find("cannot open the audit log " + (dir / "no").string()) == 0);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace sluice::coordinator
