#include "common/security_flags.h"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "common/file_util.h"

namespace sluice {

namespace {

constexpr size_t kMaxSmallFileBytes = 1 << 20;

std::string Trim(const std::string& s) {
  const char* ws = " \t\r\n";
  const size_t begin = s.find_first_not_of(ws);
  if (begin == std::string::npos) return "";
  return s.substr(begin, s.find_last_not_of(ws) - begin + 1);
}

}  // namespace

void AddServerSecurityFlags(CLI::App& app, ServerSecurityFlags* flags) {
  app.add_option("--tls-cert", flags->tls_cert,
                 "TLS: the server's certificate chain (PEM); with --tls-key");
  app.add_option("--tls-key", flags->tls_key, "TLS: the server's private key (PEM)");
  app.add_option("--tls-ca", flags->tls_ca,
                 "Mutual TLS: accept only clients with a certificate signed by this CA (PEM)");
  app.add_flag("--insecure", flags->insecure,
               "Serve plaintext gRPC without TLS, on a loopback address only (development)");
  app.add_flag("--insecure-allow-remote", flags->insecure_allow_remote,
               "With --insecure: allow a non-loopback --listen address (anyone who reaches "
               "the port can read the traffic)");
}

void AddClientSecurityFlags(CLI::App& app, ClientSecurityFlags* flags) {
  app.add_option("--tls-ca", flags->tls_ca,
                 "TLS: the CA that signed the coordinator's certificate (PEM)")
      ->envname("SLUICE_TLS_CA");
  app.add_option("--tls-cert", flags->tls_cert,
                 "Mutual TLS: this client's certificate (PEM); with --tls-key")
      ->envname("SLUICE_TLS_CERT");
  app.add_option("--tls-key", flags->tls_key, "Mutual TLS: this client's private key (PEM)")
      ->envname("SLUICE_TLS_KEY");
  app.add_option("--tls-server-name", flags->tls_server_name,
                 "TLS: the name the coordinator's certificate must carry (default: the host of "
                 "the coordinator's address)")
      ->envname("SLUICE_TLS_SERVER_NAME");
  app.add_flag("--insecure", flags->insecure,
               "Talk plaintext gRPC to the coordinator, without TLS (development, loopback)")
      ->envname("SLUICE_INSECURE");
  app.add_option("--token-file", flags->token_file,
                 "File holding the bearer token sent with every call (its first line that is "
                 "no # comment)")
      ->envname("SLUICE_TOKEN_FILE");
}

bool IsLoopbackAddress(const std::string& host_port) {
  const size_t colon = host_port.rfind(':');
  std::string host = colon == std::string::npos ? host_port : host_port.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  if (host == "localhost" || host == "::1") return true;
  return host.rfind("127.", 0) == 0 && host.find_first_not_of("0123456789.") == std::string::npos;
}

Status CheckServerSecurity(const ServerSecurityFlags& f, const std::string& listen) {
  if (f.insecure) {
    if (!f.tls_cert.empty() || !f.tls_key.empty() || !f.tls_ca.empty()) {
      return Status::InvalidArgument("--insecure excludes --tls-cert, --tls-key and --tls-ca");
    }
    if (!IsLoopbackAddress(listen) && !f.insecure_allow_remote) {
      return Status::InvalidArgument(
          "--insecure serves plaintext, so only on a loopback --listen address (127.0.0.1:PORT); "
          "" +
          listen + " is not one (add --insecure-allow-remote to force it)");
    }
    return Status::Ok();
  }
  if (f.insecure_allow_remote) {
    return Status::InvalidArgument("--insecure-allow-remote goes with --insecure");
  }
  if (f.tls_cert.empty() || f.tls_key.empty()) {
    return Status::InvalidArgument(
        "give --tls-cert and --tls-key (and --tls-ca for mutual TLS), or --insecure for "
        "plaintext on loopback");
  }
  return Status::Ok();
}

Status CheckClientSecurity(const ClientSecurityFlags& f) {
  const bool tls =
      !f.tls_ca.empty() || !f.tls_cert.empty() || !f.tls_key.empty() || !f.tls_server_name.empty();
  if (f.insecure) {
    if (tls) {
      return Status::InvalidArgument(
          "--insecure excludes --tls-ca, --tls-cert, --tls-key and --tls-server-name");
    }
    return Status::Ok();
  }
  if (f.tls_ca.empty()) {
    return Status::InvalidArgument(
        "give --tls-ca (the CA of the coordinator's certificate; with --tls-cert and --tls-key "
        "for mutual TLS), or --insecure for plaintext");
  }
  if (f.tls_cert.empty() != f.tls_key.empty()) {
    return Status::InvalidArgument("--tls-cert and --tls-key go together");
  }
  return Status::Ok();
}

Result<std::string> ReadSmallFile(const std::string& path, const std::string& what) {
  Result<std::string> read = ReadFileUpTo(path, kMaxSmallFileBytes + 1);
  if (!read.ok()) {
    return Status::InvalidArgument("cannot read " + what + " " + path + ": " +
                                   read.status().message());
  }
  std::string text = std::move(read).value();
  if (text.size() > kMaxSmallFileBytes) {
    return Status::InvalidArgument(what + " " + path + " is larger than 1 MiB");
  }
  if (text.empty()) return Status::InvalidArgument(what + " " + path + " is empty");
  return text;
}

Result<std::string> ReadTokenFile(const std::string& path) {
  Result<std::string> text = ReadSmallFile(path, "token file");
  if (!text.ok()) return text.status();
  std::istringstream lines(*text);
  std::string line;
  while (std::getline(lines, line)) {
    line = Trim(line);
    if (line.empty() || line[0] == '#') continue;
    if (line.find_first_of(" \t") != std::string::npos) {
      return Status::InvalidArgument("token file " + path +
                                     ": the token is one word without spaces");
    }
    return line;
  }
  return Status::InvalidArgument("token file " + path + " holds no token");
}

}  // namespace sluice
