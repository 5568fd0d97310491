#!/usr/bin/env bash
# The state memory budget on one task: runs sluice-state-bench without a
# budget and under one, on the same keys, and compares them. Builds
# sluice-state-bench in Release (build-bench/) first.
#   bench/run_state_bench.sh [KEYS [BUDGET_MB [JOB]]]   defaults: 5000000 256 tumbling
# Fails if the two outputs differ. Prints a Markdown table with peak RSS
# against budget + what the process holds before its first event + the
# RocksDB block cache and memtable budget (the fixed overhead).
# Environment: JOBS (build parallelism), DATA_DIR (default: a temporary
# directory), EVENTS_PER_KEY (default 2), CHECKPOINT_EVERY (a checkpoint to
# a RocksDB store every N events, as the worker takes them; default 0: none).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
KEYS="${1:-5000000}"
BUDGET_MB="${2:-256}"
JOB="${3:-tumbling}"
PER_KEY="${EVENTS_PER_KEY:-2}"
CHECKPOINT_EVERY="${CHECKPOINT_EVERY:-0}"
CACHE_MB=16
WRITE_BUFFER_MB=32

bash "${ROOT}/bench/build_release.sh" sluice-state-bench >/dev/null
BENCH="${ROOT}/build-bench/bench/sluice-state-bench"
DATA="${DATA_DIR:-$(mktemp -d)}"
trap 'rm -rf "${DATA}/state"' EXIT

run() {  # BUDGET_MB -> the bench's output
  "${BENCH}" --keys "${KEYS}" --events-per-key "${PER_KEY}" --job "${JOB}" \
    --state-memory-mb "$1" --block-cache-mb "${CACHE_MB}" \
    --write-buffer-mb "${WRITE_BUFFER_MB}" --checkpoint-every "${CHECKPOINT_EVERY}" \
    --data-dir "${DATA}/state"
}
field() { tr ' ' '\n' <<<"$1" | grep -A1 -x "$2" | tail -1; }

echo "sluice-state-bench: ${JOB}, ${KEYS} keys x ${PER_KEY} events, checkpoint every ${CHECKPOINT_EVERY} events, $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
free_run="$(run 0)"
budget_run="$(run "${BUDGET_MB}")"
printf '%s\n%s\n' "${free_run}" "${budget_run}"

echo
echo "| budget MB | events/s (CPU) | peak RSS MB | RSS before the first event MB | bound: budget + that + cache ${CACHE_MB} + memtables ${WRITE_BUFFER_MB} | keys evicted | keys read back | output records | digest |"
echo "|---:|---:|---:|---:|---:|---:|---:|---:|---|"
for out in "${free_run}" "${budget_run}"; do
  budget="$(field "${out}" budget_mb)"
  start="$(field "${out}" rss_start_mb)"
  bound="-"
  if [[ "${budget}" != 0 ]]; then
    bound="$(awk -v b="${budget}" -v s="${start}" -v c="${CACHE_MB}" -v w="${WRITE_BUFFER_MB}" 'BEGIN { printf "%.0f", b + s + c + w }')"
  fi
  echo "| ${budget} | $(field "${out}" events_per_s) | $(field "${out}" peak_rss_mb) | ${start} | ${bound} | $(field "${out}" evicted) | $(field "${out}" loaded) | $(field "${out}" records) | $(field "${out}" digest) |"
done

if [[ "$(field "${free_run}" digest)" != "$(field "${budget_run}" digest)" ]]; then
  echo "FAIL: the output under a ${BUDGET_MB} MB budget differs from the unbounded run's" >&2
  exit 1
fi
echo
echo "outputs identical"
