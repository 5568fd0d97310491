#pragma once

// The command-line flags for securing gRPC, shared by the three binaries so
// they read alike: --tls-cert, --tls-key, --tls-ca, --insecure and, on
// clients, --token-file. No gRPC here (sluicectl's command library parses
// these flags without linking gRPC); common/grpc_security.h turns them into
// credentials.

#include <CLI/CLI.hpp>
#include <string>

#include "common/status.h"

namespace sluice {

// A gRPC server's transport security (the coordinator).
struct ServerSecurityFlags {
  std::string tls_cert;   // PEM certificate chain of the server
  std::string tls_key;    // PEM private key of the server
  std::string tls_ca;     // PEM CA: when set, clients must present a certificate it signed
  bool insecure = false;  // plaintext, explicitly asked for
  bool insecure_allow_remote = false;  // plaintext on a non-loopback address
};

// A gRPC client's transport security and bearer token (sluicectl, workers).
struct ClientSecurityFlags {
  std::string tls_ca;           // PEM CA that signed the server's certificate
  std::string tls_cert;         // PEM client certificate (mutual TLS)
  std::string tls_key;          // PEM client private key (mutual TLS)
  std::string tls_server_name;  // the name the server's certificate must carry
  bool insecure = false;        // plaintext, explicitly asked for
  std::string token_file;       // the bearer token: the first line that is no comment
  std::string token;            // the bearer token itself (sluicectl: $SLUICE_TOKEN)
};

// Adds --tls-cert, --tls-key, --tls-ca, --insecure, --insecure-allow-remote.
void AddServerSecurityFlags(CLI::App& app, ServerSecurityFlags* flags);
// Adds --tls-ca, --tls-cert, --tls-key, --tls-server-name, --insecure and
// --token-file; each also read from $SLUICE_TLS_CA, $SLUICE_TLS_CERT,
// $SLUICE_TLS_KEY, $SLUICE_TLS_SERVER_NAME, $SLUICE_INSECURE and
// $SLUICE_TOKEN_FILE when the flag is not given.
void AddClientSecurityFlags(CLI::App& app, ClientSecurityFlags* flags);

// Whether the flags make sense together; InvalidArgument names the flag.
// Server: TLS needs --tls-cert and --tls-key; --insecure excludes the TLS
// flags; plaintext listens only on loopback unless --insecure-allow-remote.
Status CheckServerSecurity(const ServerSecurityFlags& flags, const std::string& listen);
// Client: --tls-ca, or --insecure; a client certificate needs its key.
Status CheckClientSecurity(const ClientSecurityFlags& flags);

// Whether HOST:PORT names a loopback host (127.0.0.0/8, [::1], localhost).
bool IsLoopbackAddress(const std::string& host_port);

// The bearer token in `path`: its first line that is neither empty nor a
// comment (#), trimmed. An error names the file.
Result<std::string> ReadTokenFile(const std::string& path);

// The whole of a small file (certificates, keys, token files: at most
// 1 MiB); an error names the file and `what` it was meant to be.
Result<std::string> ReadSmallFile(const std::string& path, const std::string& what);

}  // namespace sluice
