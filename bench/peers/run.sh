#!/usr/bin/env bash
# Sluice beside Kafka Streams 4.4 and Flink 2.2 (bench/peers/README.md): the
# fraud and sessions jobs of examples/jobs/ on one Apache Kafka broker
# (scripts/kafka.sh), each contender alone in turn over the same input topic.
#
#   bench/peers/run.sh
#
# With the default sizes a run took about 25 minutes on the shared, loaded
# 2-vCPU machine of bench/results/peers-1.md (the peers' runs are the long
# part: Kafka Streams' sessions run alone took 4-6 minutes); PEERS_EVENTS=300000
# and PEERS_LATENCY=0 make it a few minutes, at the price of a larger share
# of JVM warm-up in the peers' figures.
#
# Settings (environment):
#   SLUICE_BIN       directory holding sluice-worker (default: build-bench/worker,
#                    from bench/build_release.sh sluice-worker; else build/worker)
#   PEERS_EVENTS     events per job's input topic (default 1000000)
#   PEERS_USERS      users in those topics (default 100000)
#   PEERS_STEP_MS    mean event-time gap between events (default 10)
#   PEERS_RATE       input rate of the latency run (default 50000 payments/s)
#   PEERS_LATENCY_SECONDS, PEERS_LATENCY_WARMUP_SECONDS   (default 30, 10)
#   PEERS_LATENCY_USERS   users of the latency run (default 10000000)
#   PEERS_CONTENDERS sluice,kstreams,flink      PEERS_JOBS fraud,sessions
#   PEERS_LATENCY=0  skip the latency run; PEERS_THROUGHPUT=0 skip the throughput runs
#   PEERS_BOOTSTRAP  use a running broker instead of starting one
#   PEERS_JAVA_OPTS  extra JVM flags for the peers (default: none, the JVM's defaults)
#   PEERS_WORK       work directory (kept); PEERS_KEEP=1 keeps the temporary one
#   PEERS_BUILD=1    rebuild the Maven projects (built when a jar is missing)
set -euo pipefail
exec /usr/bin/python3 "$(dirname "${BASH_SOURCE[0]}")/run.py" "$@"
