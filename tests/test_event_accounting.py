"""Every event accounted for, on each broker: a wrongly typed field is a dead
letter with its reason (not silently filtered), a producer's retry counts
once, sessions one gap apart merge, and a record too large to process is one
bounded dead letter while the partition goes on. The counters always satisfy
consumed = processed + late + dead_lettered."""

import json
import time

from confluent_kafka import Producer

from sluice_testlib import Worker, produce, read_topic, write_job

PARTITIONS = 1


def make_job(workdir, broker, template, **kw):
    job_file, job = write_job(workdir, template=template, **kw)
    for topic in (job["topic"], job["name"] + "-alerts", job["name"] + "-late",
                  job["name"] + "-dlq"):
        broker.create_topic(topic, PARTITIONS)
    return job_file, job


def run_to_end(workdir, job_file, broker, n):
    """Runs a worker over `n` input records, drains it, and returns its last
    status (one task)."""
    w = Worker(workdir, job_file, broker.bootstrap)
    w.start("--drain-on-exit")
    w.wait_consumed(n)
    assert w.stop() == 0, w.log_tail()
    (task,) = w.status()["tasks"]
    assert task["consumed"] == n
    assert task["consumed"] == task["processed"] + task["late"] + task["dead_lettered"], task
    return task


def records(broker, job, kind):
    return [json.loads(v) for _, _, _, v in
            read_topic(broker.bootstrap, f"{job['name']}-{kind}", PARTITIONS, quiet=1.5)]


def event(user, ts, **fields):
    value = {"user_id": user, "ts": ts, **fields}
    return user.encode(), json.dumps(value, separators=(",", ":")).encode()


def job_template(source_extra, body):
    """A job over {topic} keyed by user_id, with the usual sinks: `source_extra`
    adds lines to its source (two-space indented), `body` follows the sinks.
    A template for write_job: literal braces are doubled."""
    return ("\nname: {name}\nsource:\n  topic: {topic}\n  key: user_id\n  event_time: ts\n"
            "  idle_timeout: 0s\n" + source_extra +
            "sinks:\n  output: {name}-alerts\n  late: {name}-late\n"
            "  dead_letter: {name}-dlq\ncheckpoint_interval: {checkpoint}\n" + body)


TYPED_JOB = job_template("  {fields}\n", """filter: amount > 0 && status == "approved"
rules:
  - name: large_amount
    when: amount > 5000
""")


def test_a_string_amount_is_dead_lettered_with_its_reason(workdir, broker):
    job_file, job = make_job(workdir, broker, TYPED_JOB,
                          fields="fields: { amount: number, status: string }")
    t = int(time.time() * 1000)
    events = [event("u1", t, amount="9000", status="approved"),
              event("u1", t + 1, amount=9000, status="approved"),
              event("u2", t + 2, amount=10, status="declined")]
    produce(broker.bootstrap, job["topic"], events)
    task = run_to_end(workdir, job_file, broker, len(events))
    assert task["dead_lettered"] == 1 and task["filtered"] == 1, task
    (dead,) = records(broker, job, "dlq")
    assert dead["reason"] == 'field amount: expected number, got string "9000"'
    assert dead["source"]["offset"] == 0
    (alert,) = records(broker, job, "alerts")
    assert alert["event"]["amount"] == 9000


def test_without_declared_fields_the_type_drift_is_counted(workdir, broker):
    job_file, job = make_job(workdir, broker, TYPED_JOB, fields="")
    t = int(time.time() * 1000)
    events = [event("u1", t, amount="9000", status="approved"),
              event("u1", t + 1, amount=9000, status="approved")]
    produce(broker.bootstrap, job["topic"], events)
    task = run_to_end(workdir, job_file, broker, len(events))
    assert task["filtered"] == 1 and task["type_mismatches"] == 1, task
    assert records(broker, job, "dlq") == []


DEDUP_JOB = job_template("", """dedup: {{ field: transaction_id, within: 1h }}
rules:
  - name: velocity
    window: {{ rolling: 5m }}
    aggregate: {{ n: count() }}
    when: n > 3
""")


def test_a_retried_payment_raises_velocity_once(workdir, broker):
    job_file, job = make_job(workdir, broker, DEDUP_JOB)
    t = int(time.time() * 1000)
    # Four payments, the second one delivered twice by a retrying producer:
    # without dedup, velocity would fire on the retry and on the fourth.
    events = [event("u1", t, transaction_id="t1"),
              event("u1", t + 1000, transaction_id="t2"),
              event("u1", t + 1500, transaction_id="t2"),
              event("u1", t + 2000, transaction_id="t3"),
              event("u1", t + 3000, transaction_id="t4")]
    produce(broker.bootstrap, job["topic"], events)
    task = run_to_end(workdir, job_file, broker, len(events))
    assert task["deduplicated"] == 1, task
    alerts = records(broker, job, "alerts")
    assert [(a["rule"], a["n"], a["event"]["transaction_id"]) for a in alerts] == \
        [("velocity", 4, "t4")]


SESSION_JOB = job_template("  max_out_of_orderness: 1m\n", """window: {{ session: 10s }}
aggregate: {{ events: count() }}
""")


def test_sessions_exactly_one_gap_apart_merge(workdir, broker):
    job_file, job = make_job(workdir, broker, SESSION_JOB)
    t = int(time.time() * 1000)
    events = [event("u1", t), event("u1", t + 10_000),   # exactly one gap: one session
              event("u2", t), event("u2", t + 10_001)]   # a millisecond more: two
    produce(broker.bootstrap, job["topic"], events)
    run_to_end(workdir, job_file, broker, len(events))
    sessions = sorted((r["key"], r["window_start"] - t, r["events"])
                      for r in records(broker, job, "alerts"))
    assert sessions == [("u1", 0, 2), ("u2", 0, 1), ("u2", 10_001, 1)]


def produce_large(broker, topic, records):
    """Produces records of up to a few MB: the topic and the producer allow
    them (on Kafka the topic's max.message.bytes is raised first)."""
    if broker.kind != "devbroker":
        from confluent_kafka.admin import AdminClient, ConfigResource
        admin = AdminClient({"bootstrap.servers": broker.bootstrap})
        resource = ConfigResource("topic", topic, set_config={"max.message.bytes": "4194304"})
        for f in admin.alter_configs([resource]).values():
            f.result()
    p = Producer({"bootstrap.servers": broker.bootstrap, "message.max.bytes": 5_000_000,
                  "enable.idempotence": True})
    errors = []
    for key, value in records:
        p.produce(topic, value=value, key=key,
                  on_delivery=lambda err, _msg: errors.append(err) if err else None)
        p.poll(0)
    assert p.flush(60) == 0 and not errors, errors


def test_a_2mb_malformed_record_is_one_bounded_dead_letter(workdir, broker):
    job_file, job = make_job(workdir, broker, TYPED_JOB, fields="")
    t = int(time.time() * 1000)
    garbage = b'{"user_id":"u1","amount":' + b"9" * (2 * 1024 * 1024)
    events = [event("u1", t, amount=9000, status="approved"), (b"u1", garbage),
              event("u1", t + 1, amount=9001, status="approved")]
    produce_large(broker, job["topic"], events)
    task = run_to_end(workdir, job_file, broker, len(events))
    assert task["dead_lettered"] == 1, task
    (dead,) = records(broker, job, "dlq")
    assert dead["reason"] == (f"record of {len(garbage)} bytes is larger than "
                              "source.max_record_bytes (65536)")
    assert dead["truncated"] is True and dead["raw_bytes"] == len(garbage)
    assert dead["raw"].encode() == garbage[:65536]
    alerts = records(broker, job, "alerts")
    assert [a["event"]["amount"] for a in alerts] == [9000, 9001]

