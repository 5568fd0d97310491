"""System tests: every record accounted for when the broker deletes input a
task has not read yet (retention), and when a sink refuses an output record
for good (larger than the producer's message.max.bytes).

- Records deleted before a task read them are counted as `lost` (with the
  last gap's offsets) in `sluicectl status --json`, and the task goes on from
  the log start: every offset of the partition is either consumed or lost.
  On a real Kafka the deletion is real retention (a broker of this module's
  own, started by scripts/kafka.sh with --retention-ms); on sluice-devbroker
  it is the mock's bound of about 5 MB per partition, which deletes the
  oldest batches the same way.
- An alert too large for the producer (a rule that copies a 60 KB field 20
  times) is replaced by one dead letter naming the reason, the sink topic and
  the source position; `refused_outputs` counts it; the task's checkpoints
  keep succeeding and later events are processed, in both delivery modes.

Cluster helpers: cluster_testlib.py."""

import base64
import json
import os
import re
import signal
import tempfile
import time

import pytest
from confluent_kafka import Consumer, TopicPartition

from cluster_testlib import OUT_PARTITIONS, setup_topics, started_cluster
from conftest import BROKER_KINDS
from sluice_testlib import (Broker, KafkaServer, Worker, payments, produce, read_topic, wait_for,
                            write_job)

RETENTION_MS = 3000


class ShortRetentionKafka(KafkaServer):
    """A Kafka broker whose data expires after RETENTION_MS (segments roll and
    retention runs every second: scripts/kafka.sh --retention-ms)."""

    def start(self):
        out = self._script("start", self.data_dir, "--retention-ms", str(RETENTION_MS),
                           "--heap-mb", "512")
        self.bootstrap = [line.split("=", 1)[1] for line in out.splitlines()
                          if line.startswith("bootstrap=")][0]
        return self.bootstrap


@pytest.fixture(scope="module")
def short_retention_kafka():
    with tempfile.TemporaryDirectory(prefix="sluice-kafka-retention-") as d:
        server = ShortRetentionKafka(d)
        server.start()
        yield server
        server.stop()


@pytest.fixture(params=[k for k in BROKER_KINDS if k in ("devbroker", "kafka")])
def deleting_broker(request, workdir):
    """A broker that deletes old records: sluice-devbroker (by size) or a
    short-retention Kafka (by time)."""
    kafka = request.getfixturevalue("short_retention_kafka") if request.param == "kafka" else None
    b = Broker(workdir, kafka=kafka)
    yield b
    b.stop()


def one_cluster(request, workdir, broker, workers=1):
    return started_cluster(request, workdir, broker, workers=workers)


def log_range(bootstrap, topic, partition=0):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "range-" + str(time.time())})
    try:
        return c.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
    finally:
        c.close()


def report(cluster, job, partition=0):
    """The task's report from `sluicectl --json status`, int64 fields as ints."""
    st = cluster.try_status(job)
    for t in (st or {}).get("tasks", []):
        r = t.get("report") or {}
        if int(r.get("partition", -1)) == partition and t.get("worker_id"):
            return {k: (int(v) if isinstance(v, str) and v.lstrip("-").isdigit() else v)
                    for k, v in r.items()}
    return None


def accounted(r):
    """consumed = processed + late + dead_lettered, as every report keeps."""
    assert r["consumed"] == r["processed"] + r["late"] + r["dead_lettered"], r


def delete_after(broker, topic, offset):
    """Produces to partition 0 of `topic` until the broker has deleted the
    records from `offset` on: by retention on Kafka, by the dev broker's size
    bound (about 5 MB per partition) there."""
    if broker.kind == "kafka":
        # Events keep coming; segments older than the retention are deleted.
        seed = [1000]

        def deleted():
            produce(broker.bootstrap, topic, payments(seed=seed[0], n=5, users=5))
            seed[0] += 1
            return log_range(broker.bootstrap, topic)[0] > offset
        wait_for(deleted, 120, f"retention to delete offsets up to {offset}", interval=0.5)
    else:
        pad = "x" * 900_000
        big = [(b"u1", json.dumps({"user_id": "u1", "amount": 1, "country": "DE",
                                   "ts": int(time.time() * 1000), "pad": pad}).encode())
               for _ in range(8)]
        produce(broker.bootstrap, topic, big)
        assert log_range(broker.bootstrap, topic)[0] > offset


def test_records_deleted_before_they_were_read_are_counted_as_lost(request, workdir,
                                                                    deleting_broker):
    broker = deleting_broker
    cluster = one_cluster(request, workdir, broker)
    job_file, job = write_job(workdir, checkpoint="500ms")
    setup_topics(broker, job, 1)
    cluster.submit(job_file)
    cluster.wait_running(job["name"], 1)
    name = job["name"]

    # The task reads 20 events and checkpoints them; then its worker stops.
    produce(broker.bootstrap, job["topic"], payments(seed=1, n=20, users=5))
    cluster.wait_caught_up(name, job["topic"], 1)
    worker = cluster.workers["w1"]
    worker.terminate()  # SIGTERM: a final checkpoint at offset 20

    # Meanwhile the broker deletes the records after them.
    delete_after(broker, job["topic"], 20)
    produce(broker.bootstrap, job["topic"], payments(seed=99, n=10, users=5))
    low, end = log_range(broker.bootstrap, job["topic"])
    assert 20 < low < end

    # Back, the task restores offset 20, finds it deleted, counts the gap and
    # goes on from the log start.
    worker.start()
    r = wait_for(lambda: (lambda r: r if r and r["state"] == "RUNNING" and
                          r["next_offset"] >= end else None)(report(cluster, name)),
                 60, f"the task to read up to {end}", interval=0.25)
    accounted(r)
    assert r["lost"] > 0, r
    # Every offset of the partition was read or counted as lost (retention may
    # have deleted more by the time the task got there: then the gap was
    # wider, and is counted as such).
    assert r["consumed"] + r["lost"] == end, (r, low, end)
    assert r["lost_from_offset"] >= 20 and r["lost_to_offset"] >= low, (r, low)
    assert r["lost_to_offset"] - r["lost_from_offset"] <= r["lost"], r
    if broker.kind == "devbroker":
        # Nothing else deletes records there: one gap, exactly to the log start.
        assert (r["lost_from_offset"], r["lost_to_offset"], r["lost"]) == (20, low, low - 20), r
    assert "lost" in worker.log_tail(200)


def test_records_deleted_while_a_running_task_lagged_are_counted_as_lost(workdir, deleting_broker):
    """The running case: the worker is frozen (SIGSTOP) while the broker
    deletes what it has not read; resumed, its consumer finds its offset out
    of range. Standalone worker: the loss shows in its log, and every offset
    is consumed or lost."""
    broker = deleting_broker
    job_file, job = write_job(workdir, checkpoint="500ms")
    setup_topics(broker, job, 1)
    worker = Worker(workdir, job_file, broker.bootstrap)
    worker.start()
    produce(broker.bootstrap, job["topic"], payments(seed=1, n=20, users=5))
    worker.wait_consumed(20, timeout=60)

    worker.proc.send_signal(signal.SIGSTOP)
    try:
        delete_after(broker, job["topic"], 20)
    finally:
        worker.proc.send_signal(signal.SIGCONT)
    produce(broker.bootstrap, job["topic"], payments(seed=99, n=10, users=5))
    _, end = log_range(broker.bootstrap, job["topic"])

    def lost_in_log():
        with open(worker.log_path) as f:
            totals = re.findall(r"\d+ lost \((\d+) in all\)", f.read())
        return int(totals[-1]) if totals else 0

    def all_accounted():
        assert worker.proc.poll() is None, worker.log_tail()
        st = worker.status()
        tasks = st["tasks"] if st else []
        return tasks and tasks[0]["next_offset"] >= end and \
            tasks[0]["consumed"] + lost_in_log() == end
    wait_for(all_accounted, 60, f"every offset up to {end} consumed or lost", interval=0.25)
    t = worker.status()["tasks"][0]
    assert t["consumed"] == t["processed"] + t["late"] + t["dead_lettered"], t
    assert t["state"] == "RUNNING" and t["failures"] == 0, t
    # How many exactly depends on where retention stood when the resumed
    # consumer fetched (on Kafka it goes on deleting meanwhile); that every
    # offset is consumed or counted lost is checked above.
    assert lost_in_log() > 0
    assert worker.stop() == 0


POISON_JOB = """
name: {name}
source:
  topic: {topic}
  key: user_id
  event_time: ts
  max_out_of_orderness: 2s
  idle_timeout: 0s
sinks:
  output: {name}-alerts
  late: {name}-late
  dead_letter: {name}-dlq
checkpoint_interval: {checkpoint}
delivery: {delivery}
rules:
  - name: large_amount
    when: amount > 5000
  - name: noted
    when: exists(note)
    select: {{ {copies} }}
"""

NOTE_BYTES = 60_000  # below the 64 KiB default of source.max_record_bytes
COPIES = 20          # the alert: about 1.2 MB, above the default message.max.bytes (1 MB)


@pytest.mark.parametrize("delivery", ["at_least_once", "exactly_once"])
def test_an_alert_too_large_for_the_sink_becomes_one_dead_letter_and_the_task_goes_on(
        request, workdir, broker, delivery):
    cluster = one_cluster(request, workdir, broker)
    copies = ", ".join(f"c{i}: note" for i in range(COPIES))
    job_file, job = write_job(workdir, template=POISON_JOB, checkpoint="500ms",
                              delivery=delivery, copies=copies)
    setup_topics(broker, job, 1)
    cluster.submit(job_file)
    # exactly_once on sluice-devbroker: creating the marker topic waits 30 s
    # for an admin answer the mock never gives.
    cluster.wait_running(job["name"], 1, timeout=90)
    name = job["name"]

    now = int(time.time() * 1000)

    def payment(i, amount, **extra):
        return (b"u1", json.dumps({"user_id": "u1", "amount": amount, "country": "DE",
                                   "ts": now + i, **extra}).encode())
    events = [payment(i, 7000 if i == 3 else 10) for i in range(10)]
    events.append(payment(10, 10, note="n" * NOTE_BYTES))      # offset 10: the poison alert
    events += [payment(i, 7000 if i == 15 else 10) for i in range(11, 20)]
    produce(broker.bootstrap, job["topic"], events)

    # One dead letter in place of the alert; the alerts before and after it.
    dlq = read_topic(broker.bootstrap, f"{name}-dlq", OUT_PARTITIONS, expect=1, quiet=2.0)
    assert len(dlq) == 1, dlq
    dead = json.loads(dlq[0][3])
    assert "output refused by the sink" in dead["reason"], dead["reason"]
    assert "message.max.bytes" in dead["reason"], dead["reason"]
    assert dead["sink"] == f"{name}-alerts", dead
    assert dead["source"] == {"topic": job["topic"], "partition": 0, "offset": 10}, dead
    assert dead["truncated"] is True and dead["record_bytes"] > 1_000_000, \
        {k: v for k, v in dead.items() if k != "raw"}
    assert len(dead["raw"]) <= 64 * 1024 and dead["raw"].startswith('{"id":'), dead["raw"][:100]
    alerts = read_topic(broker.bootstrap, f"{name}-alerts", OUT_PARTITIONS, expect=2, quiet=2.0)
    offsets = sorted(json.loads(v)["source"]["offset"] for _, _, _, v in alerts)
    assert offsets == [3, 15], offsets

    # The task keeps checkpointing (no restart loop) and counted the refusal.
    r = wait_for(lambda: (lambda r: r if r and r["next_offset"] >= 20 and
                          r["last_checkpoint_id"] > 0 and r["state"] == "RUNNING" else None)(
        report(cluster, name)), 30, "the task to checkpoint past the poison record", interval=0.25)
    accounted(r)
    assert r["consumed"] == 20, r
    assert r["refused_outputs"] == 1, r
    assert r["failures"] == 0 and r["error"] == "", r


BROKER_REFUSED_JOB = """
name: {name}
source:
  topic: {topic}
  key: user_id
  event_time: ts
  max_out_of_orderness: 2s
  idle_timeout: 0s
sinks:
  output: {name}-alerts
  late: {name}-late
  dead_letter: {name}-dlq
checkpoint_interval: {checkpoint}
delivery: {delivery}
rules:
  - name: noted
    when: exists(note)
    select: {{ c1: note, c2: note }}
"""


@pytest.mark.parametrize("delivery", ["at_least_once", "exactly_once"])
def test_an_alert_the_broker_refuses_becomes_one_dead_letter_and_the_task_goes_on(
        request, workdir, broker, delivery):
    """The broker refuses the record in its delivery report: the alerts topic
    takes at most 30000 bytes per batch (max.message.bytes), less than one
    alert even compressed, while the producer's own limit (1 MB) lets it
    through."""
    if broker.kind != "kafka":
        pytest.skip("needs a topic-level max.message.bytes (real Kafka)")
    cluster = one_cluster(request, workdir, broker)
    job_file, job = write_job(workdir, template=BROKER_REFUSED_JOB, checkpoint="500ms",
                              delivery=delivery)
    name = job["name"]
    from confluent_kafka.admin import AdminClient, NewTopic
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    topics = [NewTopic(job["topic"], 1, 1), NewTopic(f"{name}-late", 1, 1),
              NewTopic(f"{name}-dlq", 1, 1),
              NewTopic(f"{name}-alerts", 1, 1, config={"max.message.bytes": "30000"})]
    for f in admin.create_topics(topics, operation_timeout=30).values():
        f.result()
    cluster.submit(job_file)
    cluster.wait_running(name, 1, timeout=90)

    now = int(time.time() * 1000)
    note = base64.b64encode(os.urandom(30_000)).decode()  # 40 KB that lz4 cannot shrink
    events = [(b"u1", json.dumps({"user_id": "u1", "amount": 10, "country": "DE", "ts": now + i,
                                  **({"note": note} if i == 5 else {})}).encode())
              for i in range(20)]
    produce(broker.bootstrap, job["topic"], events)

    dlq = read_topic(broker.bootstrap, f"{name}-dlq", 1, expect=1, quiet=2.0)
    assert len(dlq) == 1, dlq
    dead = json.loads(dlq[0][3])
    assert "refused by the broker" in dead["reason"], dead["reason"]
    assert dead["sink"] == f"{name}-alerts", dead
    if delivery == "exactly_once":
        # Found again on replay: the exact position.
        assert dead["source"]["offset"] == 5, dead["source"]
    else:
        # Dead-lettered by the checkpoint: the offsets of its interval.
        assert dead["source"]["from_offset"] <= 5 < dead["source"]["to_offset"], dead["source"]
    assert note in dead["raw"], dead["reason"]
    assert read_topic(broker.bootstrap, f"{name}-alerts", 1, quiet=2.0) == []

    r = wait_for(lambda: (lambda r: r if r and r["next_offset"] >= 20 and
                          r["state"] == "RUNNING" and r["refused_outputs"] == 1 else None)(
        report(cluster, name)), 60, "the task to go on past the refused alert", interval=0.25)
    accounted(r)
    assert r["consumed"] == 20, r
    # exactly_once aborted the transaction once before the replay.
    assert r["failures"] == (1 if delivery == "exactly_once" else 0), r
