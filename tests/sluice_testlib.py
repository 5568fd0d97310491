"""Helpers for Sluice system tests: start the real processes (dev broker,
workers), produce events, read topics back, and compute the expected output
with sluice-run over the same records.

Set SLUICE_BUILD_DIR to the build directory (default: <repo>/build). The
`broker` fixture (conftest.py) runs each test on sluice-devbroker and on a real
Apache Kafka from scripts/kafka.sh; SLUICE_TEST_BROKER_KINDS=devbroker (or
kafka) picks one, SLUICE_TEST_BROKERS=host:port uses a Kafka of your own.
"""

import json
import os
import random
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid

from confluent_kafka import Consumer, Producer, TopicPartition

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.environ.get("SLUICE_BUILD_DIR", os.path.join(REPO, "build"))


def binary(*parts):
    path = os.path.join(BUILD, *parts)
    assert os.path.exists(path), f"{path} is not built"
    return path


def wait_for(predicate, timeout, what, interval=0.05):
    """Polls `predicate` until it returns a truthy value or `timeout` passes."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


class KafkaServer:
    """A real Apache Kafka broker (scripts/kafka.sh) with its data in `data_dir`:
    one per test session, shared by every test of the session (each test makes
    topics of its own). stop()/kill9() and start() again keep data and port."""

    def __init__(self, data_dir):
        self.data_dir = data_dir
        self.bootstrap = None

    def _script(self, *args, timeout=600):
        r = subprocess.run(["bash", os.path.join(REPO, "scripts", "kafka.sh"), *args],
                           capture_output=True, text=True, timeout=timeout)
        assert r.returncode == 0, f"scripts/kafka.sh {' '.join(args)}: exit {r.returncode}\n" + \
            r.stdout[-2000:] + r.stderr[-4000:]
        return r.stdout

    def start(self):
        out = self._script("start", self.data_dir)
        bootstrap = [line.split("=", 1)[1] for line in out.splitlines()
                     if line.startswith("bootstrap=")]
        assert bootstrap, out
        assert self.bootstrap in (None, bootstrap[0]), \
            f"the broker came back on {bootstrap[0]}, not {self.bootstrap}"
        self.bootstrap = bootstrap[0]
        return self.bootstrap

    def stop(self):
        self._script("stop", self.data_dir)

    def kill9(self):
        self._script("kill", self.data_dir)


class Broker:
    """The broker one test runs against: sluice-devbroker on an ephemeral port
    (kind "devbroker"), the session's real Kafka (kind "kafka", from a
    KafkaServer), or the Kafka in SLUICE_TEST_BROKERS (kind "external")."""

    def __init__(self, workdir, kafka=None):
        self.external = os.environ.get("SLUICE_TEST_BROKERS")
        self.proc = None
        self.control_addr = None
        self.kafka = kafka
        self._restarter = None
        if self.external:
            self.kind = "external"
            self.bootstrap = self.external
            return
        if kafka is not None:
            self.kind = "kafka"
            self.bootstrap = kafka.bootstrap
            return
        self.kind = "devbroker"
        bootstrap_file = os.path.join(workdir, "bootstrap")
        self.log = open(os.path.join(workdir, "devbroker.log"), "w")
        self.proc = subprocess.Popen(
            [binary("tools", "devbroker", "sluice-devbroker"), "--port", "0",
             "--bootstrap-file", bootstrap_file],
            stdout=self.log, stderr=subprocess.STDOUT)
        wait_for(lambda: os.path.exists(bootstrap_file), 20, "the dev broker's bootstrap file")
        info = {}
        with open(bootstrap_file) as f:
            for line in f:
                if "=" in line:
                    k, v = line.strip().split("=", 1)
                    info[k] = v
        self.bootstrap = info["bootstrap"]
        self.control_addr = info.get("control")

    def control(self, command):
        assert self.control_addr, "fault injection needs sluice-devbroker"
        host, port = self.control_addr.rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=10) as s:
            s.sendall((command + "\n").encode())
            reply = b""
            while not reply.endswith(b"\n"):
                chunk = s.recv(4096)
                if not chunk:
                    break
                reply += chunk
        return reply.decode().strip()

    def can_break(self):
        """Whether outage() works here (not on an external broker)."""
        return self.kind != "external"

    def outage(self, seconds, crash=False):
        """Takes the broker down now and brings it back after `seconds`. The dev
        broker refuses connections meanwhile (its data stays); a real Kafka is
        stopped cleanly, or with `crash` killed with SIGKILL, and restarted on
        the same data and port. wait_up() waits for the restart."""
        if self.kind == "devbroker":
            assert not crash, "sluice-devbroker keeps its data in memory: it cannot crash and recover"
            assert self.control(f"down-for {seconds:g}") == "ok"
            return
        assert self.kind == "kafka", "fault injection needs sluice-devbroker or scripts/kafka.sh"
        if crash:
            self.kafka.kill9()
        else:
            self.kafka.stop()
        errors = []

        def restart():
            time.sleep(seconds)
            try:
                self.kafka.start()
            except BaseException as e:  # noqa: B902 -- handed to wait_up()
                errors.append(e)
        self._restarter = threading.Thread(target=restart, daemon=True)
        self._restarter.errors = errors
        self._restarter.start()

    def wait_up(self, timeout=300):
        """After outage(): waits until the broker is back."""
        if self._restarter is not None:
            self._restarter.join(timeout)
            assert not self._restarter.is_alive(), "the broker did not come back"
            if self._restarter.errors:
                raise self._restarter.errors[0]
            self._restarter = None

    def create_topic(self, name, partitions):
        if self.kind == "devbroker":
            reply = self.control(f"create-topic {name} {partitions}")
            assert reply == "ok", reply
            return
        from confluent_kafka.admin import AdminClient, NewTopic
        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        for f in admin.create_topics([NewTopic(name, partitions, 1)],
                                     operation_timeout=30).values():
            f.result()
        # Until every partition has a leader, a producer or a consumer of
        # the new topic may see it missing.
        wait_for(lambda: self._partitions_led(admin, name) == partitions, 30,
                 f"the {partitions} partitions of {name} to have leaders")

    @staticmethod
    def _partitions_led(admin, name):
        md = admin.list_topics(name, timeout=10).topics.get(name)
        if md is None or md.error is not None:
            return 0
        return sum(1 for p in md.partitions.values() if p.leader >= 0 and p.error is None)

    def stop(self):
        self.wait_up()
        if self.proc:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.log.close()


def produce(bootstrap, topic, records):
    """Produces (key, value) pairs in order and waits for every delivery.
    Returns {partition: offset after the last record delivered there}."""
    p = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True,
                  "partitioner": "murmur2_random", "linger.ms": 5})
    errors = []
    ends = {}

    def on_delivery(err, msg):
        if err:
            errors.append(err)
        else:
            ends[msg.partition()] = max(ends.get(msg.partition(), 0), msg.offset() + 1)

    for key, value in records:
        while True:
            try:
                p.produce(topic, value=value, key=key, on_delivery=on_delivery)
                break
            except BufferError:
                p.poll(0.05)
        p.poll(0)
    remaining = p.flush(120)
    assert remaining == 0 and not errors, f"produce: {remaining} undelivered, errors {errors[:3]}"
    return ends


def read_topic(bootstrap, topic, partitions, expect=None, quiet=3.0, timeout=60):
    """Reads a topic from the beginning: a list of (partition, offset, key, value).
    Stops once `expect` records are read (then waits `quiet` s for extras), or
    after `quiet` seconds without a new record when `expect` is None."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "reader-" + uuid.uuid4().hex,
                  "enable.auto.commit": False, "isolation.level": "read_committed"})
    c.assign([TopicPartition(topic, p, -2) for p in range(partitions)])  # -2: beginning
    out = []
    deadline = time.monotonic() + timeout
    last_new = time.monotonic()
    reached_at = None
    while time.monotonic() < deadline:
        msgs = c.consume(1000, 0.2)
        for m in msgs:
            if m.error():
                continue
            out.append((m.partition(), m.offset(), m.key(), m.value()))
            last_new = time.monotonic()
        if expect is not None and len(out) >= expect and reached_at is None:
            reached_at = time.monotonic()
        if reached_at is not None and time.monotonic() - reached_at > quiet:
            break
        if expect is None and time.monotonic() - last_new > quiet:
            break
    c.close()
    if expect is not None:
        assert len(out) >= expect, f"read {len(out)} of {expect} records from {topic}"
    return out


class Worker:
    """One sluice-worker process."""

    def __init__(self, workdir, job_file, bootstrap, name="worker", extra=()):
        self.workdir = workdir
        self.data_dir = os.path.join(workdir, name + "-data")
        self.checkpoint_dir = os.path.join(workdir, "checkpoints")
        self.status_file = os.path.join(workdir, name + "-status.json")
        self.args = [binary("worker", "sluice-worker"), "--job", job_file, "--brokers", bootstrap,
                     "--data-dir", self.data_dir, "--checkpoint-dir", self.checkpoint_dir,
                     "--status-file", self.status_file, "--threads", "2",
                     "--block-cache-mb", "16", "--write-buffer-mb", "16", *extra]
        self.log_path = os.path.join(workdir, name + ".log")
        self.proc = None
        self.starts = 0

    def start(self, *extra):
        if os.path.exists(self.status_file):
            os.remove(self.status_file)
        self.log = open(self.log_path, "a")
        self.proc = subprocess.Popen(self.args + list(extra), stdout=self.log,
                                     stderr=subprocess.STDOUT)
        self.starts += 1

    def status(self):
        try:
            with open(self.status_file) as f:
                return json.load(f)
        except (OSError, ValueError):
            return None

    def consumed(self):
        st = self.status()
        return sum(t["consumed"] for t in st["tasks"]) if st else 0

    def wait_consumed(self, n, timeout=120):
        def done():
            assert self.proc.poll() is None, f"worker exited with {self.proc.returncode}: " + \
                self.log_tail()
            return self.consumed() >= n
        wait_for(done, timeout, f"the worker to consume {n} records")

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self.log.close()

    def stop(self, timeout=60):
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout)
        self.log.close()
        return code

    def log_tail(self, n=30):
        with open(self.log_path) as f:
            return "".join(f.readlines()[-n:])


def payments(seed, n, users=40, start_ms=None, malformed=0.0, disorder_ms=0):
    """Deterministic payment events (key, value) with bursts, country switches
    and large amounts."""
    rng = random.Random(seed)
    t = start_ms if start_ms is not None else int(time.time() * 1000) - n * 50
    out = []
    countries = ["DE", "FR", "NL", "ES"]
    for i in range(n):
        t += rng.randint(1, 100)
        user = f"u{rng.randrange(users)}"
        if malformed and rng.random() < malformed:
            out.append((user.encode(), rng.choice([
                b'{"user_id":"' + user.encode() + b'","amount":',
                b'{"amount":1,"ts":' + str(t).encode() + b'}',
                b'{"user_id":"' + user.encode() + b'","ts":"soon"}',
                b'\xff\xfe',
            ])))
            continue
        ts = t - (rng.randrange(disorder_ms) if disorder_ms and rng.random() < 0.2 else 0)
        amount = rng.choice([12.5, 40, 99.99, 250, 7000]) if rng.random() < 0.05 else \
            round(rng.uniform(1, 300), 2)
        country = countries[int(user[1:]) % 4] if rng.random() < 0.97 else rng.choice(["BR", "JP"])
        value = json.dumps({"user_id": user, "amount": amount, "country": country, "ts": ts,
                            "transaction_id": f"t-{seed}-{i}"}, separators=(",", ":"))
        out.append((user.encode(), value.encode()))
    return out


FRAUD_JOB = """
name: {name}
source:
  topic: {topic}
  key: user_id
  event_time: ts
  max_out_of_orderness: 2s
  idle_timeout: 0s
  max_future: 1h
sinks:
  output: {name}-alerts
  late: {name}-late
  dead_letter: {name}-dlq
checkpoint_interval: {checkpoint}
delivery: {delivery}
rules:
  - name: large_amount
    when: amount > 5000
  - name: velocity
    window: {{ rolling: 2s }}
    aggregate: {{ n: count() }}
    when: n > 3
  - name: new_country
    window: {{ rolling: 1h }}
    aggregate: {{ n: count() }}
    when: n > 1 && new_value(country)
"""


# A tumbling window job: count and one more aggregate per user.
WINDOW_JOB = """
name: {name}
source:
  topic: {topic}
  key: user_id
  event_time: ts
  max_out_of_orderness: 2s
sinks:
  output: {name}-alerts
  late: {name}-late
  dead_letter: {name}-dlq
checkpoint_interval: {checkpoint}
window: {{ tumbling: {size} }}
aggregate:
  n: count()
  total: {total}
"""


def write_job(workdir, template=FRAUD_JOB, checkpoint="1s", **kw):
    name = "j" + uuid.uuid4().hex[:8]
    fields = {"name": name, "topic": name + "-in", "checkpoint": checkpoint,
              "delivery": "at_least_once"}
    fields.update(kw)
    path = os.path.join(workdir, name + ".yaml")
    with open(path, "w") as f:
        f.write(template.format(**fields))
    return path, fields


def expected_output(job_file, dump):
    """Runs sluice-run over a dump of the input topic: {"output"|"late"|"dlq": [records]}."""
    with tempfile.NamedTemporaryFile("wb", suffix=".tsv", delete=False) as f:
        for partition, offset, _key, value in sorted(dump, key=lambda r: (r[0], r[1])):
            # Payloads with tabs or newlines cannot go through this format.
            assert b"\n" not in value
            f.write(f"{partition}\t{offset}\t".encode() + value + b"\n")
        path = f.name
    proc = subprocess.run([binary("tools", "sluice-run"), "--job", job_file, "--input", path,
                           "--positions"], capture_output=True, check=True)
    os.remove(path)
    out = {}
    for line in proc.stdout.decode("utf-8", "replace").splitlines():
        topic, record = line.split(" ", 1)
        out.setdefault(topic, []).append(record)
    return out


def by_id(records):
    """{id: record}; fails if one id carries two different records."""
    out = {}
    for r in records:
        rid = json.loads(r)["id"]
        assert out.get(rid, r) == r, f"id {rid} has two contents:\n{out[rid]}\n{r}"
        out[rid] = r
    return out


def outputs(broker, job, partitions):
    """What a job wrote: {"alerts"|"late"|"dlq": [records]}."""
    return {kind: [v.decode("utf-8") for _, _, _, v in
                   read_topic(broker.bootstrap, f"{job['name']}-{kind}", partitions,
                              quiet=2.0)]
            for kind in ("alerts", "late", "dlq")}


def check_against_reference(broker, job_file, job, total, partitions, exact,
                            sink_partitions=None):
    """Compares what the workers produced with sluice-run over the same input. `exact`: nothing crashed or moved, so no
    duplicates either; otherwise alerts are compared by id (a replayed record
    must be identical) and late/dlq as sets."""
    dump = read_topic(broker.bootstrap, job["topic"], partitions, expect=total, quiet=0.5)
    assert len(dump) == total
    expected = expected_output(job_file, dump)
    got = outputs(broker, job, sink_partitions or partitions)
    exp_alerts = expected.get(job["name"] + "-alerts", [])
    assert len(exp_alerts) > 20, "the test data should trigger alerts"
    got_by_id, exp_by_id = by_id(got["alerts"]), by_id(exp_alerts)
    missing = sorted(set(exp_by_id) - set(got_by_id))
    extra = sorted(set(got_by_id) - set(exp_by_id))
    assert not missing and not extra, \
        f"{len(missing)} alerts missing (e.g. {[exp_by_id[i] for i in missing[:2]]}), " \
        f"{len(extra)} unexpected (e.g. {[got_by_id[i] for i in extra[:2]]})"
    assert got_by_id == exp_by_id
    for kind in ("late", "dlq"):
        exp = expected.get(job["name"] + "-" + kind, [])
        if exact:
            assert sorted(got[kind]) == sorted(exp), kind
        else:
            assert set(got[kind]) == set(exp), kind
    if exact:
        assert len(got["alerts"]) == len(exp_alerts), "duplicate alerts without a failure"
    return expected, got
