#!/usr/bin/env bash
# Installs the Debian packages Sluice needs to build, test and run, only when
# they are missing. Works as root or through sudo. Java and Maven are for what
# runs beside Sluice (a real Kafka broker for tests and benchmarks,
# scripts/kafka.sh); they are installed only if `java` or `mvn` is missing.
set -euo pipefail

PACKAGES=(
  build-essential cmake ninja-build pkg-config ccache git clang-format
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  librdkafka-dev librocksdb-dev libboost-dev libboost-system-dev
  libspdlog-dev libfmt-dev catch2 libsimdjson-dev libyaml-cpp-dev libcli11-dev libxxhash-dev
  python3 python3-pytest python3-confluent-kafka python3-yaml docker-compose
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

command -v java >/dev/null 2>&1 || missing+=(default-jre-headless)
command -v mvn >/dev/null 2>&1 || missing+=(maven)

if [ "${#missing[@]}" -eq 0 ]; then
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    SUDO="sudo"
  else
    echo "setup: need root or sudo to install: ${missing[*]}" >&2
    exit 1
  fi
fi

echo "setup: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
