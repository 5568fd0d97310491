#!/usr/bin/env bash
# Builds sluice-e2e-bench in Release (build-bench/, at the repository root),
# starts a broker on ephemeral ports and runs the benchmark against it:
# sluice-devbroker by default, or with --kafka (first argument) a real Apache
# Kafka from scripts/kafka.sh. Other arguments are passed to the benchmark, e.g.
#   bench/run_e2e_bench.sh --scenario throughput --rounds 5
#   bench/run_e2e_bench.sh --kafka --scenario throughput,latency
#   bench/run_e2e_bench.sh --scenario checkpoint --keys 1000000
# Environment: JOBS (build parallelism, default 2); BENCH_BUILD (a build
# directory that already holds sluice-e2e-bench, e.g. build/: nothing is built);
# DEVBROKER (the broker
# binary; default build/tools/devbroker/sluice-devbroker, else it is built in
# build-bench/); WORK_DIR (scratch space for state and checkpoints; default a
# fresh directory under /tmp, removed at exit).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="${BENCH_BUILD:-${ROOT}/build-bench}"
cd "${ROOT}"

KAFKA=0
if [ "${1:-}" = "--kafka" ]; then
  KAFKA=1
  shift
fi

targets=(sluice-e2e-bench)
DEVBROKER="${DEVBROKER:-${ROOT}/build/tools/devbroker/sluice-devbroker}"
if [ "${KAFKA}" = 0 ] && [ ! -x "${DEVBROKER}" ]; then
  DEVBROKER="${BUILD}/tools/devbroker/sluice-devbroker"
  targets+=(sluice-devbroker)
fi
if [ -z "${BENCH_BUILD:-}" ]; then bash bench/build_release.sh "${targets[@]}"; fi

TMP="$(mktemp -d /tmp/sluice-e2e.XXXXXX)"
WORK="${WORK_DIR:-${TMP}/work}"
BROKER_PID=""
cleanup() {
  if [ -n "${BROKER_PID}" ]; then
    kill -TERM "${BROKER_PID}" 2>/dev/null || true
    wait "${BROKER_PID}" 2>/dev/null || true
  fi
  if [ "${KAFKA}" = 1 ]; then bash scripts/kafka.sh stop "${TMP}/kafka" >/dev/null 2>&1 || true; fi
  rm -rf "${TMP}"
}
trap cleanup EXIT

if [ "${KAFKA}" = 1 ]; then
  bash scripts/kafka.sh start "${TMP}/kafka" >/dev/null
  BOOTSTRAP="$(sed -n 's/^bootstrap=//p' "${TMP}/kafka/bootstrap")"
  echo "Apache Kafka (scripts/kafka.sh, settings in ${TMP}/kafka/kafka.properties): bootstrap ${BOOTSTRAP}" >&2
  sed -n '/^[a-z]/p' "${TMP}/kafka/kafka.properties" >&2
  "${BUILD}/bench/sluice-e2e-bench" --bootstrap "${BOOTSTRAP}" \
    --work-dir "${WORK}" --fraud-job "${ROOT}/examples/jobs/fraud.yaml" "$@"
  exit
fi

"${DEVBROKER}" --port 0 --bootstrap-file "${TMP}/bootstrap" --log-level warn \
  --topic e2e-ready:8 >"${TMP}/devbroker.log" 2>&1 &
BROKER_PID=$!
for _ in $(seq 1 200); do
  [ -f "${TMP}/bootstrap" ] && break
  if ! kill -0 "${BROKER_PID}" 2>/dev/null; then
    cat "${TMP}/devbroker.log" >&2
    exit 1
  fi
  sleep 0.1
done
BOOTSTRAP="$(sed -n 's/^bootstrap=//p' "${TMP}/bootstrap")"
CONTROL="$(sed -n 's/^control=//p' "${TMP}/bootstrap")"
echo "devbroker ${DEVBROKER}: bootstrap ${BOOTSTRAP}, control ${CONTROL}" >&2

"${BUILD}/bench/sluice-e2e-bench" --bootstrap "${BOOTSTRAP}" --control "${CONTROL}" \
  --work-dir "${WORK}" --fraud-job "${ROOT}/examples/jobs/fraud.yaml" "$@"
