"""System tests of a job's partitions and start position (issue 15): a
partition added to a running job's topic gets a task whose events alert; a
deleted source topic fails the job with the reason; `submit --start-at`
skips older events.

Where the dev broker cannot run a test, the test says why and is skipped
there: librdkafka's mock cluster (sluice-devbroker) has no CreatePartitions
or DeleteTopics, and it answers every offsets-for-times lookup with "no
record", so AT_TIME runs on Apache Kafka only."""

import datetime
import json
import time
import uuid

import pytest
from confluent_kafka import Producer

from cluster_testlib import OUT_PARTITIONS, setup_topics, started_cluster
from sluice_testlib import read_topic, wait_for, write_job

CHECK_INTERVAL = "500ms"


@pytest.fixture
def cluster(request, workdir, broker):
    """Dev broker or Kafka, a coordinator that re-reads partition counts every
    CHECK_INTERVAL, and two workers."""
    return started_cluster(request, workdir, broker, workers=2,
                           coordinator_args=["--partition-check-interval", CHECK_INTERVAL])


def needs_admin(broker, what):
    if broker.kind == "devbroker":
        pytest.skip(f"sluice-devbroker (librdkafka's mock cluster) cannot {what}")


def admin(broker):
    from confluent_kafka.admin import AdminClient
    return AdminClient({"bootstrap.servers": broker.bootstrap})


def large_payments(n, ts_ms, tag):
    """n payments of distinct users, each over the large_amount threshold (one
    alert each, and no other rule fires)."""
    return [(f"{tag}-u{i}".encode(),
             json.dumps({"user_id": f"{tag}-u{i}", "amount": 9000, "country": "DE",
                         "ts": ts_ms + i, "transaction_id": f"{tag}-{i}"},
                        separators=(",", ":")).encode())
            for i in range(n)]


def produce_to(bootstrap, topic, records, partition=None, timestamp_ms=None):
    """Produces (key, value) pairs, to `partition` if given, with the record
    timestamp `timestamp_ms` if given; waits for every delivery."""
    p = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True,
                  "partitioner": "murmur2_random"})
    errors = []
    kw = {}
    if partition is not None:
        kw["partition"] = partition
    if timestamp_ms is not None:
        kw["timestamp"] = timestamp_ms
    for key, value in records:
        p.produce(topic, value=value, key=key,
                  on_delivery=lambda err, _msg: errors.append(err) if err else None, **kw)
    assert p.flush(60) == 0 and not errors, f"produce: {errors[:3]}"


def job_status(cluster, name):
    return cluster.ctl_json("status", name)


def counters(status):
    """{partition: report} with ints, of the tasks that reported."""
    out = {}
    for t in status.get("tasks", []):
        r = t.get("report")
        if r:
            out[int(r.get("partition", 0))] = {k: int(r.get(k, 0)) for k in (
                "consumed", "processed", "late", "dead_lettered", "alerts", "filtered",
                "deduplicated", "lost", "next_offset")} | {"state": r.get("state", "")}
    return out


def check_accounting(status):
    for p, c in counters(status).items():
        assert c["consumed"] == c["processed"] + c["late"] + c["dead_lettered"], (p, c)
        assert c["lost"] == 0, (p, c)


def alerts(broker, job, expect):
    return [json.loads(v) for _, _, _, v in
            read_topic(broker.bootstrap, f"{job['name']}-alerts", OUT_PARTITIONS,
                       expect=expect, quiet=1.0)]


def rfc3339(ms):
    return datetime.datetime.fromtimestamp(ms / 1000, datetime.timezone.utc) \
        .isoformat(timespec="milliseconds").replace("+00:00", "Z")


def test_added_partition_gets_a_task_and_its_events_alert(cluster):
    needs_admin(cluster.broker, "add partitions to a topic (no CreatePartitions)")
    from confluent_kafka.admin import NewPartitions
    job_file, job = write_job(cluster.workdir)
    setup_topics(cluster.broker, job, 2)
    cluster.submit(job_file)
    cluster.wait_running(job["name"], 2)

    client = admin(cluster.broker)  # kept until its futures are done
    for f in client.create_partitions([NewPartitions(job["topic"], 4)],
                                      operation_timeout=30).values():
        f.result()
    # The coordinator notices within its check interval: tasks for 2 and 3.
    tasks = cluster.wait_running(job["name"], 4, timeout=60)
    assert set(tasks) == {0, 1, 2, 3}
    st = job_status(cluster, job["name"])
    assert st["job"]["partitions"] == 4 and st["job"]["initial_partitions"] == 2, st["job"]
    assert [int(o) for o in st["job"]["start_offsets"]] == [-2, -2, -2, -2]
    code, text, err = cluster.ctl("status", job["name"])
    assert code == 0, err
    assert "4 partitions (2 at submit)" in text, text
    assert "note: partitions 2-3 were added after submit" in text, text

    now = int(time.time() * 1000)
    for p in (2, 3):
        produce_to(cluster.broker.bootstrap, job["topic"], large_payments(5, now, f"p{p}"),
                   partition=p)

    def alerted():
        c = counters(job_status(cluster, job["name"]))
        return all(c.get(p, {}).get("alerts") == 5 for p in (2, 3))
    wait_for(alerted, 60, "5 alerts from each of the new partitions", interval=0.25)
    got = alerts(cluster.broker, job, 10)
    assert sorted((a["rule"], a["source"]["partition"]) for a in got) == \
        [("large_amount", 2)] * 5 + [("large_amount", 3)] * 5
    st = job_status(cluster, job["name"])
    check_accounting(st)
    c = counters(st)
    assert [c[p]["consumed"] for p in range(4)] == [0, 0, 5, 5], c


def test_deleted_topic_fails_the_job_with_the_reason(cluster):
    needs_admin(cluster.broker, "delete a topic (no DeleteTopics)")
    job_file, job = write_job(cluster.workdir)
    setup_topics(cluster.broker, job, 2)
    cluster.submit(job_file)
    cluster.wait_running(job["name"], 2)

    client = admin(cluster.broker)  # kept until its futures are done
    for f in client.delete_topics([job["topic"]], operation_timeout=30).values():
        f.result()
    wait_for(lambda: cluster.job_state(job["name"]) == "FAILED", 60,
             f"job {job['name']} to be FAILED", interval=0.25)
    st = job_status(cluster, job["name"])
    assert st["job"]["error"] == \
        f"source topic {job['topic']} no longer exists on {cluster.broker.bootstrap}", st["job"]

    code, text, err = cluster.ctl("status", job["name"])
    assert code == 0, err
    assert f"job {job['name']}: FAILED (source topic {job['topic']} no longer exists" in text, \
        text
    code, text, err = cluster.ctl("jobs")
    assert code == 0, err
    assert f"job {job['name']} FAILED: source topic {job['topic']} no longer exists" in text, text
    # Its tasks are stopped: no worker runs them any more.
    wait_for(lambda: not any(w.tasks(job["name"], state=None)
                             for w in cluster.workers.values()),
             30, "the workers to stop the failed job's tasks", interval=0.25)
    cluster.check_processes()


def wait_consumed(cluster, job, n, partitions):
    """Waits until the tasks have consumed up to the end of their partitions
    and `n` records in all, and checks it stays `n` once they are there."""
    def done():
        cluster.check_processes()
        c = counters(job_status(cluster, job["name"]))
        total = sum(t["consumed"] for t in c.values())
        assert total <= n, f"consumed {total} records, expected only the {n} newer ones: {c}"
        return total == n and len(c) == partitions
    wait_for(done, 60, f"{job['name']} to consume {n} records", interval=0.25)
    cluster.wait_caught_up(job["name"], job["topic"], partitions)
    c = counters(job_status(cluster, job["name"]))
    assert sum(t["consumed"] for t in c.values()) == n, c


def test_start_at_is_resolved_per_partition_at_submit(cluster):
    """The coordinator's side of --start-at: JobInfo.start_offsets by partition."""
    name = "start-" + uuid.uuid4().hex[:8]
    cluster.broker.create_topic(name, 2)
    now = int(time.time() * 1000)
    old_ts, new_ts = now - 10 * 60_000, now - 60_000
    for p in (0, 1):
        produce_to(cluster.broker.bootstrap, name, large_payments(10, old_ts, f"old{p}"),
                   partition=p, timestamp_ms=old_ts)
        produce_to(cluster.broker.bootstrap, name, large_payments(4, new_ts, f"new{p}"),
                   partition=p, timestamp_ms=new_ts)
    cases = [("earliest", "EARLIEST", [-2, -2]), ("latest", "LATEST", [14, 14])]
    if cluster.broker.kind != "devbroker":
        # The mock cluster answers offsets-for-times with "no record" (module doc).
        cases += [(rfc3339(now - 5 * 60_000), "AT_TIME", [10, 10]),
                  (rfc3339(now - 60 * 60_000), "AT_TIME", [0, 0]),
                  (rfc3339(now + 60 * 60_000), "AT_TIME", [14, 14])]  # no record: the end
    for start_at, start, offsets in cases:
        job_file, job = write_job(cluster.workdir, topic=name)
        code, out, err = cluster.ctl("submit", job_file, "--start-at", start_at)
        assert code == 0, err
        st = job_status(cluster, job["name"])["job"]
        assert st["spec"]["source"]["start"] == start, (start_at, st["spec"]["source"])
        assert [int(o) for o in st["start_offsets"]] == offsets, (start_at, st)
        assert cluster.ctl("cancel", job["name"])[0] == 0


def test_start_at_latest_skips_older_events(cluster):
    job_file, job = write_job(cluster.workdir)
    setup_topics(cluster.broker, job, 2)
    now = int(time.time() * 1000)
    for p in (0, 1):
        produce_to(cluster.broker.bootstrap, job["topic"], large_payments(10, now, f"old{p}"),
                   partition=p)
    code, out, err = cluster.ctl("submit", job_file, "--start-at", "latest")
    assert code == 0, err
    cluster.wait_running(job["name"], 2)

    for p in (0, 1):
        produce_to(cluster.broker.bootstrap, job["topic"], large_payments(3, now, f"new{p}"),
                   partition=p)
    wait_consumed(cluster, job, 6, 2)
    st = job_status(cluster, job["name"])
    check_accounting(st)
    assert sum(c["alerts"] for c in counters(st).values()) == 6
    assert all(a["key"].startswith("new") for a in alerts(cluster.broker, job, 6))


def test_start_at_time_skips_events_before_it(cluster):
    if cluster.broker.kind == "devbroker":
        pytest.skip("sluice-devbroker (librdkafka's mock cluster) answers every offsets-for-times "
                    "lookup with 'no record'")
    job_file, job = write_job(cluster.workdir)
    setup_topics(cluster.broker, job, 2)
    now = int(time.time() * 1000)
    old_ts, new_ts = now - 10 * 60_000, now - 60_000
    for p in (0, 1):
        produce_to(cluster.broker.bootstrap, job["topic"], large_payments(10, old_ts, f"old{p}"),
                   partition=p, timestamp_ms=old_ts)
        produce_to(cluster.broker.bootstrap, job["topic"], large_payments(4, new_ts, f"new{p}"),
                   partition=p, timestamp_ms=new_ts)

    code, out, err = cluster.ctl("submit", job_file, "--start-at", rfc3339(now - 5 * 60_000))
    assert code == 0, err
    cluster.wait_running(job["name"], 2)
    # Only the records from offset 10 on: the 4 newer ones of each partition.
    wait_consumed(cluster, job, 8, 2)
    check_accounting(job_status(cluster, job["name"]))
    keys = sorted(a["key"] for a in alerts(cluster.broker, job, 8))
    assert all(k.startswith("new") for k in keys), keys


def test_bad_start_at_is_refused_before_anything_is_sent(cluster):
    job_file, job = write_job(cluster.workdir)
    setup_topics(cluster.broker, job, 1)
    code, out, err = cluster.ctl("submit", job_file, "--start-at", "yesterday")
    assert code == 2, (code, out, err)
    assert "--start-at: expected earliest, latest or an RFC 3339 time" in err, err
    assert cluster.ctl_json("jobs").get("jobs", []) == []
