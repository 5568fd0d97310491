#!/usr/bin/env bash
# A real Apache Kafka broker on demand: one combined KRaft broker+controller on
# free 127.0.0.1 ports, its data in DIR. For tests, the demo's --kafka mode and
# benchmarks; Sluice itself needs no JVM (the dev broker is the default).
#
#   scripts/kafka.sh start DIR [--retention-ms MS] [--heap-mb MB]
#                                  format DIR (first time), start the broker, wait
#                                  until it answers, print bootstrap=127.0.0.1:PORT
#                                  (also in DIR/bootstrap); a second start on the
#                                  same DIR keeps its data and its port
#   scripts/kafka.sh stop DIR      stop it cleanly (SIGTERM, then SIGKILL after 60 s)
#   scripts/kafka.sh kill DIR      kill -9 it (crash tests; start again on DIR)
#   scripts/kafka.sh status DIR    print bootstrap=... if it runs, else exit 1
#   scripts/kafka.sh topics DIR NAME:PARTITIONS...   create topics (replication 1)
#   scripts/kafka.sh consume DIR TOPIC [ARGS...]     kafka-console-consumer from the beginning
#   scripts/kafka.sh fetch         fetch the broker's jars only
#
# The broker's jars (org.apache.kafka:kafka_2.13 $SLUICE_KAFKA_VERSION with its
# runtime dependencies) come from Maven Central once, into
# ${XDG_CACHE_HOME:-~/.cache}/sluice/kafka-VERSION. SLUICE_KAFKA_HOME=/opt/kafka
# uses an unpacked Apache Kafka release instead (its libs/ directory).
set -euo pipefail

KAFKA_VERSION="${SLUICE_KAFKA_VERSION:-4.4.0}"
LOG4J_VERSION="2.25.5"
CACHE_ROOT="${SLUICE_KAFKA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/sluice}"
CACHE="$CACHE_ROOT/kafka-$KAFKA_VERSION"
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3

usage() { sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; }
die() { echo "kafka.sh: $*" >&2; exit 1; }

# ---- the broker's jars

fetch_jars() {
  if [ -n "${SLUICE_KAFKA_HOME:-}" ]; then
    [ -d "$SLUICE_KAFKA_HOME/libs" ] ||
      die "SLUICE_KAFKA_HOME=$SLUICE_KAFKA_HOME has no libs/ directory (expected an unpacked Apache Kafka release)"
    CLASSPATH_DIR="$SLUICE_KAFKA_HOME/libs"
    return
  fi
  CLASSPATH_DIR="$CACHE/libs"
  [ -f "$CACHE/complete" ] && return
  command -v java >/dev/null || die "java is not installed (scripts/setup.sh installs it)"
  command -v mvn >/dev/null || die "mvn is not installed (scripts/setup.sh installs it)"
  mkdir -p "$CACHE"
  rm -rf "$CACHE/libs"
  cat >"$CACHE/pom.xml" <<EOF
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>sluice.dev</groupId>
  <artifactId>kafka-broker</artifactId>
  <version>$KAFKA_VERSION</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>$KAFKA_VERSION</version></dependency>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka-tools</artifactId><version>$KAFKA_VERSION</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j-impl</artifactId><version>$LOG4J_VERSION</version></dependency>
  </dependencies>
</project>
EOF
  echo "kafka.sh: fetching Apache Kafka $KAFKA_VERSION through Maven into $CACHE (once)" >&2
  if ! mvn -B -q -f "$CACHE/pom.xml" dependency:copy-dependencies \
      -DoutputDirectory="$CACHE/libs" -DincludeScope=runtime >"$CACHE/fetch.log" 2>&1; then
    tail -n 15 "$CACHE/fetch.log" >&2
    die "could not fetch org.apache.kafka:kafka_2.13:$KAFKA_VERSION through Maven (log: $CACHE/fetch.log).
  Check the network and Maven's settings, or point SLUICE_KAFKA_HOME at an unpacked
  Apache Kafka release (e.g. SLUICE_KAFKA_HOME=/opt/kafka), or pick another version
  with SLUICE_KAFKA_VERSION."
  fi
  ls "$CACHE/libs"/kafka_2.13-*.jar >/dev/null 2>&1 || die "Maven fetched no kafka_2.13 jar (log: $CACHE/fetch.log)"
  touch "$CACHE/complete"
}

java_run() {  # CLASS ARGS...: runs a class from the broker's jars in the foreground
  java -Xmx256m -cp "$CLASSPATH_DIR/*" -Dlog4j2.configurationFile="$DIR/log4j2-tools.properties" "$@"
}

# ---- ports, configuration, liveness

free_ports() {  # N: prints N distinct free 127.0.0.1 ports
  "$PY" - "$1" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}

port_free() {  # PORT
  "$PY" -c 'import socket,sys
s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))' "$1" 2>/dev/null
}

running_pid() {  # prints the broker's pid if it runs
  [ -f "$DIR/kafka.pid" ] || return 1
  local pid
  pid="$(cat "$DIR/kafka.pid")"
  kill -0 "$pid" 2>/dev/null || return 1
  echo "$pid"
}

write_config() {  # BROKER_PORT CONTROLLER_PORT
  local bport="$1" cport="$2"
  cat >"$DIR/kafka.properties" <<EOF
# Written by scripts/kafka.sh: one combined KRaft broker and controller on loopback.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$cport
listeners=PLAINTEXT://127.0.0.1:$bport,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$bport
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$DIR/data
auto.create.topics.enable=false
num.partitions=1
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=8
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=8
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
num.network.threads=2
num.io.threads=4
log.retention.ms=$RETENTION_MS
log.retention.check.interval.ms=$RETENTION_CHECK_MS
log.roll.ms=$ROLL_MS
log.segment.bytes=$SEGMENT_BYTES
EOF
  printf 'broker=%s\ncontroller=%s\nretention_ms=%s\n' "$bport" "$cport" "$RETENTION_MS" >"$DIR/ports"
}

write_log_config() {
  cat >"$DIR/log4j2.properties" <<EOF
status = warn
appender.file.type = File
appender.file.name = file
appender.file.fileName = $DIR/logs/server.log
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = info
rootLogger.appenderRef.file.ref = file
logger.kafka.name = kafka
logger.kafka.level = info
logger.apache.name = org.apache
logger.apache.level = warn
logger.raft.name = org.apache.kafka.raft
logger.raft.level = warn
EOF
  cat >"$DIR/log4j2-tools.properties" <<EOF
status = warn
appender.err.type = Console
appender.err.name = err
appender.err.target = SYSTEM_ERR
appender.err.layout.type = PatternLayout
appender.err.layout.pattern = %p %m%n
rootLogger.level = warn
rootLogger.appenderRef.err.ref = err
EOF
}

answers() {  # BOOTSTRAP: exit 0 once the broker lists itself in its metadata
  "$PY" - "$1" 2>/dev/null <<'EOF'
import sys
from confluent_kafka.admin import AdminClient
admin = AdminClient({"bootstrap.servers": sys.argv[1], "log_level": 0})
try:
    md = admin.list_topics(timeout=2)
except Exception:
    sys.exit(1)
sys.exit(0 if md.brokers else 1)
EOF
}

started_bootstrap() {  # prints the address of the broker started in DIR
  local b
  b="$(sed -n 's/^bootstrap=//p' "$DIR/bootstrap" 2>/dev/null)" || true
  [ -n "$b" ] || die "no broker was started in $DIR"
  echo "$b"
}

cluster_id() {  # a Kafka Uuid: 16 random bytes, base64url without padding
  "$PY" -c 'import base64, uuid
while True:
    s = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
    if not s.startswith("-"):
        print(s); break'
}

launch() {  # starts the JVM in its own session; sets PID
  mkdir -p "$DIR/logs"
  # shellcheck disable=SC2086
  setsid java -Xms256m -Xmx"${HEAP_MB}"m -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
    -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$DIR/log4j2.properties" -Dkafka.logs.dir="$DIR/logs" \
    ${SLUICE_KAFKA_JVM_OPTS:-} -cp "$CLASSPATH_DIR/*" kafka.Kafka "$DIR/kafka.properties" \
    >>"$DIR/logs/stdout.log" 2>&1 </dev/null &
  PID=$!
  echo "$PID" >"$DIR/kafka.pid"
}

wait_ready() {  # BOOTSTRAP: 0 when it answers, 1 if the JVM exited, 2 on timeout
  local deadline=$((SECONDS + ${SLUICE_KAFKA_START_TIMEOUT:-120}))
  while [ "$SECONDS" -lt "$deadline" ]; do
    kill -0 "$PID" 2>/dev/null || return 1
    answers "$1" && return 0
    sleep 0.3
  done
  return 2
}

# ---- commands

cmd_start() {
  RETENTION_MS=604800000 HEAP_MB=1024
  while [ $# -gt 0 ]; do
    case "$1" in
      --retention-ms) [ $# -ge 2 ] || die "--retention-ms needs a value"; RETENTION_MS="$2"; shift 2 ;;
      --heap-mb) [ $# -ge 2 ] || die "--heap-mb needs a value"; HEAP_MB="$2"; shift 2 ;;
      *) usage >&2; die "start: unknown argument '$1'" ;;
    esac
  done
  [[ "$RETENTION_MS" =~ ^[0-9]+$ ]] || die "--retention-ms: expected milliseconds, got '$RETENTION_MS'"
  [[ "$HEAP_MB" =~ ^[0-9]+$ ]] || die "--heap-mb: expected megabytes, got '$HEAP_MB'"
  # Short retention (tests of data lost to retention) also rolls segments
  # often and checks often, so that data is really deleted.
  if [ "$RETENTION_MS" -lt 3600000 ]; then
    RETENTION_CHECK_MS=1000 ROLL_MS="$RETENTION_MS" SEGMENT_BYTES=1048576
  else
    RETENTION_CHECK_MS=300000 ROLL_MS=604800000 SEGMENT_BYTES=1073741824
  fi
  if pid="$(running_pid)"; then
    cat "$DIR/bootstrap"
    echo "kafka.sh: already running (pid $pid)" >&2
    return 0
  fi
  command -v java >/dev/null || die "java is not installed (scripts/setup.sh installs it)"
  fetch_jars
  mkdir -p "$DIR/data" "$DIR/logs"
  write_log_config

  local bport="" cport=""
  if [ -f "$DIR/ports" ]; then
    bport="$(sed -n 's/^broker=//p' "$DIR/ports")"
    cport="$(sed -n 's/^controller=//p' "$DIR/ports")"
    if ! port_free "$bport" || ! port_free "$cport"; then
      echo "kafka.sh: port $bport or $cport of the last run is taken; picking others" >&2
      bport="" cport=""
    fi
  fi
  local attempt
  for attempt in 1 2 3 4 5; do
    if [ -z "$bport" ]; then
      read -r bport cport < <(free_ports 2)
    fi
    write_config "$bport" "$cport"
    if [ ! -f "$DIR/data/meta.properties" ]; then
      if ! java_run kafka.tools.StorageTool format -t "$(cluster_id)" -c "$DIR/kafka.properties" \
          >"$DIR/logs/format.log" 2>&1; then
        cat "$DIR/logs/format.log" >&2
        die "could not format KRaft storage in $DIR/data"
      fi
    fi
    local bootstrap="127.0.0.1:$bport"
    : >"$DIR/logs/stdout.log"
    launch
    local rc=0
    wait_ready "$bootstrap" || rc=$?
    if [ "$rc" = 0 ]; then
      echo "bootstrap=$bootstrap" | tee "$DIR/bootstrap"
      return 0
    fi
    if [ "$rc" = 2 ]; then
      kill -KILL "$PID" 2>/dev/null || true
      tail -n 20 "$DIR/logs/server.log" "$DIR/logs/stdout.log" >&2 2>/dev/null || true
      die "the broker did not answer on $bootstrap within ${SLUICE_KAFKA_START_TIMEOUT:-120} s (logs in $DIR/logs)"
    fi
    if grep -q "Address already in use" "$DIR/logs/server.log" "$DIR/logs/stdout.log" 2>/dev/null; then
      echo "kafka.sh: port $bport or $cport was taken (attempt $attempt); picking others" >&2
      bport="" cport=""
      : >"$DIR/logs/server.log"
      continue
    fi
    tail -n 30 "$DIR/logs/stdout.log" "$DIR/logs/server.log" >&2 2>/dev/null || true
    die "the broker exited while starting (logs in $DIR/logs)"
  done
  die "no free port pair after 5 attempts"
}

cmd_stop() {
  local pid
  if ! pid="$(running_pid)"; then
    echo "kafka.sh: no broker runs in $DIR" >&2
    return 0
  fi
  kill -TERM "$pid"
  local i
  for i in $(seq 1 600); do
    kill -0 "$pid" 2>/dev/null || { rm -f "$DIR/kafka.pid"; return 0; }
    sleep 0.1
  done
  echo "kafka.sh: the broker did not stop within 60 s; killing it" >&2
  kill -KILL "$pid" 2>/dev/null || true
  rm -f "$DIR/kafka.pid"
}

cmd_kill() {
  local pid
  pid="$(running_pid)" || die "no broker runs in $DIR"
  kill -KILL "$pid"
  while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
  rm -f "$DIR/kafka.pid"
}

cmd_topics() {
  [ $# -ge 1 ] || die "topics: expected NAME:PARTITIONS..."
  local bootstrap
  bootstrap="$(started_bootstrap)"
  "$PY" - "$bootstrap" "$@" <<'EOF'
import sys
from confluent_kafka.admin import AdminClient, NewTopic
admin = AdminClient({"bootstrap.servers": sys.argv[1]})
topics = {}
for spec in sys.argv[2:]:
    name, _, parts = spec.partition(":")
    if not name or not parts.isdigit() or int(parts) < 1:
        sys.exit(f"kafka.sh: topics: expected NAME:PARTITIONS, got '{spec}'")
    topics[name] = NewTopic(name, int(parts), 1)
failed = False
for name, future in admin.create_topics(list(topics.values()), operation_timeout=30).items():
    try:
        future.result()
    except Exception as e:
        if "TOPIC_ALREADY_EXISTS" not in str(e):
            print(f"kafka.sh: topic {name}: {e}", file=sys.stderr)
            failed = True
sys.exit(1 if failed else 0)
EOF
}

cmd_consume() {
  [ $# -ge 1 ] || die "consume: expected TOPIC"
  local topic="$1"; shift
  local bootstrap
  bootstrap="$(started_bootstrap)"
  fetch_jars
  write_log_config
  java_run org.apache.kafka.tools.consumer.ConsoleConsumer --bootstrap-server "$bootstrap" \
    --topic "$topic" --from-beginning "$@"
}

command="${1:-}"
[ $# -gt 0 ] && shift
case "$command" in
  -h|--help|help) usage; exit 0 ;;
  fetch) fetch_jars; echo "classpath=$CLASSPATH_DIR" ;;
  start|stop|kill|status|topics|consume)
    [ $# -ge 1 ] || { usage >&2; die "$command: expected DIR"; }
    mkdir -p "$1"
    DIR="$(cd "$1" && pwd)"
    shift
    case "$command" in
      start) cmd_start "$@" ;;
      stop) cmd_stop ;;
      kill) cmd_kill ;;
      status) running_pid >/dev/null && cat "$DIR/bootstrap" ;;
      topics) cmd_topics "$@" ;;
      consume) cmd_consume "$@" ;;
    esac ;;
  "") usage >&2; exit 2 ;;
  *) usage >&2; die "unknown command '$command'" ;;
esac
