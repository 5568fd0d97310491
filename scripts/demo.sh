#!/usr/bin/env bash
# Runs Sluice as a local cluster: the dev broker, the coordinator and two
# workers; submits the example jobs (fraud rules, sessions, page views);
# streams generated payments and clicks; prints alerts and results as they
# appear. Ctrl-C drains the jobs (every open session is emitted), prints a
# summary and stops every process.
#
#   scripts/demo.sh                 run until Ctrl-C
#   scripts/demo.sh --short [N]     N events per stream (default 5000), then
#                                   drain, summarize, and check that every
#                                   injected fraud pattern raised its alert
#   scripts/demo.sh --kafka ...     the same on a real Apache Kafka broker
#                                   (scripts/kafka.sh; needs Java and Maven)
#   scripts/demo.sh --help
set -euo pipefail
cd "$(dirname "$0")/.."

SHORT=0
KAFKA=0
EVENTS=5000
RATE="${SLUICE_DEMO_RATE:-200}"
usage() { sed -n '2,15p' "$0"; }
while [ $# -gt 0 ]; do
  case "$1" in
    --short)
      SHORT=1
      if [[ "${2:-}" =~ ^[0-9]+$ ]]; then EVENTS="$2"; shift; fi ;;
    --kafka) KAFKA=1 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "demo.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
  esac
  shift
done

if ! build_log="$(bash scripts/build.sh build 2>&1)"; then
  printf '%s\n' "$build_log" | tail -n 40 >&2
  echo "demo: the build failed (above)" >&2
  exit 1
fi
BIN=build
PY=/usr/bin/python3
DIR="$(mktemp -d /tmp/sluice-demo.XXXXXX)"
PIDS=()

cleanup() {
  trap - EXIT INT TERM
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  done
  wait 2>/dev/null || true
  if [ "$KAFKA" = 1 ]; then bash scripts/kafka.sh stop "$DIR/kafka" >/dev/null 2>&1 || true; fi
}
trap cleanup EXIT

wait_file() {  # FILE: waits up to 30 s for it to exist
  for _ in $(seq 1 300); do [ -s "$1" ] && return 0; sleep 0.1; done
  echo "demo: timed out waiting for $1" >&2; exit 1
}
start() {  # NAME CMD...: runs in the background, logs to $DIR/NAME.log
  local name="$1"; shift
  "$@" >"$DIR/$name.log" 2>&1 &
  PIDS+=("$!")
}
stop_pid() {  # PID: SIGTERM and wait
  kill -TERM "$1" 2>/dev/null || true
  for _ in $(seq 1 300); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done
}

echo "demo: logs and state in $DIR"
TOPICS=(payments:8 clicks:8
        fraud-alerts:8 payments-late:8 payments-dlq:8
        user-sessions:8 sessions-late:8 sessions-dlq:8
        pageviews-per-minute:8 pageviews-late:8 pageviews-dlq:8)
if [ "$KAFKA" = 1 ]; then
  echo "demo: starting Apache Kafka (scripts/kafka.sh start $DIR/kafka)"
  bash scripts/kafka.sh start "$DIR/kafka" >/dev/null
  bash scripts/kafka.sh topics "$DIR/kafka" "${TOPICS[@]}"
  cp "$DIR/kafka/bootstrap" "$DIR/bootstrap"
else
  start devbroker "$BIN/tools/devbroker/sluice-devbroker" --port 0 --bootstrap-file "$DIR/bootstrap" \
    "${TOPICS[@]/#/--topic=}"
  wait_file "$DIR/bootstrap"
fi
BROKERS="$(sed -n 's/^bootstrap=//p' "$DIR/bootstrap")"
# Everything runs on loopback, so gRPC is plaintext, asked for with --insecure
# (deploy/README.md sets up TLS and tokens for a real cluster).
start coordinator "$BIN/coordinator/sluice-coordinator" --listen 127.0.0.1:0 --insecure \
  --address-file "$DIR/coordinator.address" --brokers "$BROKERS" --data-dir "$DIR/coordinator"
wait_file "$DIR/coordinator.address"
COORD="$(sed -n 's/^address=//p' "$DIR/coordinator.address")"
for w in 1 2; do
  start "worker-$w" "$BIN/worker/sluice-worker" --coordinator "$COORD" --insecure \
    --worker-id "worker-$w" \
    --brokers "$BROKERS" --data-dir "$DIR/worker-$w" --checkpoint-dir "$DIR/checkpoints" \
    --threads 1 --block-cache-mb 32 --write-buffer-mb 32 --status-file "$DIR/worker-$w.json"
done
CTL=("$BIN/cli/sluicectl" --coordinator "$COORD" --insecure)
echo "demo: kafka at $BROKERS, coordinator at $COORD (sluicectl --coordinator $COORD --insecure)"
for job in fraud sessions pageviews; do "${CTL[@]}" submit "examples/jobs/$job.yaml"; done

LOADGEN_ARGS=(--brokers "$BROKERS" --users 20000 --seed 7)
if [ "$SHORT" = 1 ]; then
  LOADGEN_ARGS+=(--count "$EVENTS" --rate 0)
else
  LOADGEN_ARGS+=(--rate "$RATE")
fi
start loadgen-payments "$BIN/tools/sluice-loadgen" "${LOADGEN_ARGS[@]}" --kind payments \
  --fraud-every 200 --expect "$DIR/expected-alerts.jsonl"
LOADGEN_PAYMENTS=$!
start loadgen-clicks "$BIN/tools/sluice-loadgen" "${LOADGEN_ARGS[@]}" --kind clicks
LOADGEN_CLICKS=$!

WATCH=("$PY" scripts/demo_watch.py --brokers "$BROKERS" --status "$DIR/worker-1.json"
       --status "$DIR/worker-2.json")
if [ "$SHORT" = 1 ]; then
  wait "$LOADGEN_PAYMENTS" "$LOADGEN_CLICKS"
  "${WATCH[@]}" --wait-consumed $((3 * EVENTS)) >/dev/null
else
  echo "demo: streaming; alerts and results follow. Ctrl-C to drain and stop."
  trap 'echo; echo "demo: stopping"' INT
  "${WATCH[@]}" --follow || true
  trap - INT
  stop_pid "$LOADGEN_PAYMENTS"
  stop_pid "$LOADGEN_CLICKS"
fi

echo "demo: draining the jobs (emits every open window and session)"
for job in fraud sessions pageviews; do "${CTL[@]}" stop --drain "$job" >/dev/null; done
for job in fraud sessions pageviews; do
  for _ in $(seq 1 600); do
    "${CTL[@]}" status "$job" | head -1 | grep -q STOPPED && break
    sleep 0.1
  done
done
"${CTL[@]}" jobs
CHECK=()
[ "$SHORT" = 1 ] && CHECK=(--check)
for j in fraud sessions pageviews; do "${CTL[@]}" status "$j" >> "$DIR/final-status.txt"; done
"${WATCH[@]}" --summary --expect "$DIR/expected-alerts.jsonl" "${CHECK[@]}" --sluicectl "${CTL[*]}"
