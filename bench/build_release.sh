#!/usr/bin/env bash
# Installs what is missing and builds the given targets in Release in
# build-bench/ (at the repository root), for the benchmark scripts.
#   bench/build_release.sh TARGET...      JOBS: build parallelism (default 2)
# GCC 12 at -O3 reports a false -Werror=restrict inside std::string; the flag
# silences that one warning.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "${ROOT}/scripts/setup.sh"
cmake -S "${ROOT}" -B "${ROOT}/build-bench" -G Ninja \
  -DCMAKE_BUILD_TYPE=Release -DSLUICE_BUILD_TESTS=OFF \
  -DCMAKE_CXX_FLAGS=-Wno-restrict >/dev/null
cmake --build "${ROOT}/build-bench" --target "$@" -j "${JOBS:-2}"
