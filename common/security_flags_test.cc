#include "common/security_flags.h"

#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>

namespace sluice {
namespace {

std::string WriteTemp(const std::string& name, const std::string& text) {
  const std::string path = (std::filesystem::temp_directory_path() /
                            ("security_flags_test_" + std::to_string(::getpid()) + "_" + name))
                               .string();
  std::ofstream(path) << text;
  return path;
}

TEST_CASE("loopback addresses") {
  CHECK(IsLoopbackAddress("127.0.0.1:7070"));
  CHECK(IsLoopbackAddress("127.1.2.3:0"));
  CHECK(IsLoopbackAddress("localhost:7070"));
  CHECK(IsLoopbackAddress("[::1]:7070"));
  CHECK_FALSE(IsLoopbackAddress("0.0.0.0:7070"));
  CHECK_FALSE(IsLoopbackAddress("[::]:7070"));
  CHECK_FALSE(IsLoopbackAddress("10.0.0.1:7070"));
  CHECK_FALSE(IsLoopbackAddress("127.example.com:7070"));
}

TEST_CASE("a server serves TLS unless plaintext on loopback is asked for") {
  ServerSecurityFlags f;
  CHECK(CheckServerSecurity(f, "127.0.0.1:7070").message().find("--tls-cert") != std::string::npos);
  f.tls_cert = "c.pem";
  CHECK_FALSE(CheckServerSecurity(f, "0.0.0.0:7070").ok());
  f.tls_key = "k.pem";
  CHECK(CheckServerSecurity(f, "0.0.0.0:7070").ok());

  ServerSecurityFlags plain;
  plain.insecure = true;
  CHECK(CheckServerSecurity(plain, "127.0.0.1:7070").ok());
  const Status remote = CheckServerSecurity(plain, "0.0.0.0:7070");
  CHECK(remote.message().find("--insecure-allow-remote") != std::string::npos);
  plain.insecure_allow_remote = true;
  CHECK(CheckServerSecurity(plain, "0.0.0.0:7070").ok());
  plain.tls_ca = "ca.pem";
  CHECK_FALSE(CheckServerSecurity(plain, "127.0.0.1:7070").ok());
}

TEST_CASE("a client verifies the server unless plaintext is asked for") {
  ClientSecurityFlags f;
  CHECK(CheckClientSecurity(f).message().find("--tls-ca") != std::string::npos);
  f.insecure = true;
  CHECK(CheckClientSecurity(f).ok());
  f.tls_ca = "ca.pem";
  CHECK_FALSE(CheckClientSecurity(f).ok());
  f.insecure = false;
  CHECK(CheckClientSecurity(f).ok());
  f.tls_cert = "c.pem";
  CHECK(CheckClientSecurity(f).message() == "--tls-cert and --tls-key go together");
  f.tls_key = "k.pem";
  CHECK(CheckClientSecurity(f).ok());
}

TEST_CASE("a token file's token is its first line that is no comment") {
  Result<std::string> t = ReadTokenFile(WriteTemp("t1", "# ops token\n\n  s3cret \nother\n"));
  REQUIRE(t.ok());
  CHECK(*t == "s3cret");
  CHECK(ReadTokenFile(WriteTemp("t2", "# nothing\n")).status().message().find("holds no token") !=
        std::string::npos);
  CHECK(ReadTokenFile(WriteTemp("t3", "two words\n")).status().message().find("one word") !=
        std::string::npos);
  const Status missing = ReadTokenFile("/nonexistent/token").status();
  CHECK(missing.message().find("/nonexistent/token") != std::string::npos);
}

}  // namespace
}  // namespace sluice
