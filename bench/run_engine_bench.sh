#!/usr/bin/env bash
# Builds sluice-engine-bench in Release (build-bench/, at the repository root)
# and runs it. Arguments are passed to the benchmark, e.g.
#   bench/run_engine_bench.sh --scenario tumbling,decode --events 500000
# Build parallelism: JOBS (default 2).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="${ROOT}/build-bench"
cd "${ROOT}"

bash bench/build_release.sh sluice-engine-bench
"${BUILD}/bench/sluice-engine-bench" "$@"
