#!/usr/bin/env bash
# Runs the flagship jobs over generated events and shows what they emit:
# fraud alerts from examples/jobs/fraud.yaml, then user sessions from
# examples/jobs/sessions.yaml, each followed by a summary.
#   scripts/demo.sh [EVENTS]   (default 50000 events per job)
set -euo pipefail
cd "$(dirname "$0")/.."
EVENTS="${1:-50000}"
bash scripts/build.sh build >/dev/null
RUN=build/tools/sluice-run

echo "== fraud: $EVENTS generated payments (1% malformed, 2% out of order) =="
"$RUN" --job examples/jobs/fraud.yaml --generate "$EVENTS" --malformed 0.01 \
  --out-of-order 0.02 --max-print 8
echo
echo "== sessions: $EVENTS generated clicks =="
"$RUN" --job examples/jobs/sessions.yaml --generate "$EVENTS" --max-print 8
