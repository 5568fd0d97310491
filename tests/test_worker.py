"""System tests of sluice-worker on each broker (sluice-devbroker and a real
Apache Kafka; see conftest.py): output equals the engine's for the
same records, through crashes, lost local state, broker outages and garbage."""

import json
import os
import random
import shutil
import threading
import time

import pytest

from sluice_testlib import (WINDOW_JOB, Worker, check_against_reference, payments, produce,
                            read_topic, wait_for, write_job)

PARTITIONS = 4


def setup_job(workdir, broker, checkpoint="1s"):
    job_file, job = write_job(workdir, checkpoint=checkpoint)
    for topic in (job["topic"], job["name"] + "-alerts", job["name"] + "-late",
                  job["name"] + "-dlq"):
        broker.create_topic(topic, PARTITIONS)
    return job_file, job


def test_worker_output_equals_engine_output(workdir, broker):
    job_file, job = setup_job(workdir, broker)
    events = payments(seed=1, n=4000, disorder_ms=3000, malformed=0.01)
    produce(broker.bootstrap, job["topic"], events)
    w = Worker(workdir, job_file, broker.bootstrap)
    w.start("--drain-on-exit")
    w.wait_consumed(len(events))
    assert w.stop() == 0
    expected, _ = check_against_reference(broker, job_file, job, len(events), PARTITIONS,
                                          exact=True)
    st = w.status()
    assert sum(t["alerts"] for t in st["tasks"]) == len(expected[job["name"] + "-alerts"])


def stream_in_background(broker, topic, events, chunks=20, pause=0.3):
    def run():
        step = (len(events) + chunks - 1) // chunks
        for i in range(0, len(events), step):
            produce(broker.bootstrap, topic, events[i:i + step])
            time.sleep(pause)
    t = threading.Thread(target=run)
    t.start()
    return t


def crash_and_recover(workdir, broker, lose_local_state):
    job_file, job = setup_job(workdir, broker)
    events = payments(seed=2, n=6000, disorder_ms=3000, malformed=0.01)
    w = Worker(workdir, job_file, broker.bootstrap)
    w.start()
    producer = stream_in_background(broker, job["topic"], events)
    rng = random.Random(7)

    def every_task_checkpointed():
        assert w.proc.poll() is None, w.log_tail()
        st = w.status()
        tasks = st["tasks"] if st else []
        return len(tasks) == PARTITIONS and all(t["last_checkpoint_id"] > 0 for t in tasks)

    for _ in range(3):
        # At a random moment once every task has a checkpoint, however slow
        # the machine: each restart then has one to restore.
        wait_for(every_task_checkpointed, 120, "every task to take a checkpoint")
        time.sleep(rng.uniform(0.0, 1.5))
        w.kill9()
        if lose_local_state:
            shutil.rmtree(w.data_dir, ignore_errors=True)
        w.start()
    producer.join()
    # The last run drains on exit, so every window and rule is evaluated.
    w.kill9()
    w.start("--drain-on-exit")
    w.wait_consumed(len(events))
    assert w.stop() == 0
    check_against_reference(broker, job_file, job, len(events), PARTITIONS, exact=False)
    # The restarts really restored checkpoints (rather than starting over).
    with open(w.log_path) as f:
        log = f.read()
    assert log.count("restored checkpoint") >= 2 * PARTITIONS, log[-3000:]
    for p in range(PARTITIONS):
        task_dir = os.path.join(w.checkpoint_dir, job["name"], str(p))
        assert os.path.isdir(task_dir), task_dir


def test_kill9_restart_loses_nothing(workdir, broker):
    crash_and_recover(workdir, broker, lose_local_state=False)


def test_lost_local_state_restores_from_checkpoint_store(workdir, broker):
    crash_and_recover(workdir, broker, lose_local_state=True)


@pytest.mark.parametrize("kind", ["window", "rules"])
def test_state_memory_budget_spills_keys_and_changes_no_output(workdir, broker, kind):
    """Under --state-memory-mb 1, most of the keys of a one-hour window job
    (or of the fraud rules, with their rolling events) live in each task's
    RocksDB spill store; a kill -9 restores them from the checkpoint within
    the budget. The output equals sluice-run's, which holds every key in
    memory."""
    if kind == "window":
        job_file, job = write_job(workdir, template=WINDOW_JOB, size="1h", total="sum(amount)")
    else:
        job_file, job = write_job(workdir)
    for topic in (job["topic"], job["name"] + "-alerts", job["name"] + "-late",
                  job["name"] + "-dlq"):
        broker.create_topic(topic, PARTITIONS)
    # About 35 minutes of event time from the start of the last hour: one
    # window, and the rules' hour of rolling events, so the state only grows
    # until the drain and every checkpoint taken once keys are out of memory
    # holds more than the budget.
    hour = 3_600_000
    start_ms = (int(time.time() * 1000) // hour - 1) * hour
    events = payments(seed=5, n=40000, users=10000, start_ms=start_ms, disorder_ms=3000,
                      malformed=0.005)
    w = Worker(workdir, job_file, broker.bootstrap, extra=("--state-memory-mb", "1"))
    w.start()
    producer = stream_in_background(broker, job["topic"], events)

    def tasks():
        assert w.proc.poll() is None, w.log_tail()
        st = w.status()
        return st["tasks"] if st and len(st["tasks"]) == PARTITIONS else []

    def total(field):
        return sum(t[field] for t in tasks())

    wait_for(lambda: total("keys_spilled") > 1000 and total("keys_read_back") > 0, 120,
             "keys in the spill stores, and some read back at an event")
    for t in tasks():
        assert 0 < t["state_memory_budget_bytes"] <= 1 << 20, t
        assert t["keys_evicted"] >= t["keys_spilled"], t
    before = {t["partition"]: t["last_checkpoint_id"] for t in tasks()}
    wait_for(lambda: tasks() and all(t["last_checkpoint_id"] > before[t["partition"]]
                                     for t in tasks()),
             120, "a checkpoint of every task with keys out of memory")
    w.kill9()
    w.start()
    producer.join()
    wait_for(lambda: total("keys_spilled") > 200, 120, "the restarted run to restore beyond its budget")
    w.kill9()
    w.start("--drain-on-exit")
    w.wait_consumed(len(events))
    assert w.stop() == 0
    check_against_reference(broker, job_file, job, len(events), PARTITIONS, exact=False)
    # The last run restored more keys than its budget holds; the window job
    # read them back to fire their windows at the drain.
    last = w.status()["tasks"]
    assert sum(t["keys_evicted"] for t in last) > 200, last
    if kind == "window":
        assert sum(t["keys_read_back"] for t in last) > 200, last
    with open(w.log_path) as f:
        assert f.read().count("restored checkpoint") >= 2 * PARTITIONS


def broker_outage_mid_stream(workdir, broker, crash):
    if not broker.can_break():
        pytest.skip("fault injection needs sluice-devbroker or scripts/kafka.sh")
    if crash and broker.kind != "kafka":
        pytest.skip("sluice-devbroker keeps its data in memory: only a real Kafka can crash")
    job_file, job = setup_job(workdir, broker)
    events = payments(seed=3, n=4000, disorder_ms=2000)
    w = Worker(workdir, job_file, broker.bootstrap)
    w.start("--drain-on-exit")
    produce(broker.bootstrap, job["topic"], events[:2000])
    w.wait_consumed(1000)
    broker.outage(5, crash=crash)
    time.sleep(1)
    assert w.proc.poll() is None
    produce(broker.bootstrap, job["topic"], events[2000:])  # waits for the broker
    broker.wait_up()
    w.wait_consumed(len(events), timeout=180)
    assert w.stop() == 0
    check_against_reference(broker, job_file, job, len(events), PARTITIONS, exact=False)


def test_broker_outage_mid_stream(workdir, broker):
    """The broker refuses connections (dev broker) or stops (real Kafka) for 5 s."""
    broker_outage_mid_stream(workdir, broker, crash=False)


def test_broker_kill9_mid_stream(workdir, broker):
    """A real Kafka killed with SIGKILL and restarted on its data after 5 s."""
    broker_outage_mid_stream(workdir, broker, crash=True)


def test_malformed_events_go_to_dead_letters_with_reasons(workdir, broker):
    job_file, job = setup_job(workdir, broker)
    now = int(time.time() * 1000)
    bad = [
        (b"u1", b'{"user_id":"u1","amount":', "invalid_json"),
        (b"u1", b"not json at all", "invalid_json"),
        (b"u1", b"[1,2,3]", "invalid_json: expected a JSON object, got an array"),
        (b"u1", b'{"amount":5,"ts":%d}' % now, "missing key field user_id"),
        (b"u1", b'{"user_id":{"a":1},"ts":%d}' % now,
         "wrong type: key field user_id is an object"),
        (b"u1", b'{"user_id":"u1","amount":5}', "missing event_time field ts"),
        (b"u1", b'{"user_id":"u1","ts":"yesterday"}', "bad event_time"),
        (b"u1", b'{"user_id":"u1","ts":true}', "wrong type: event_time field ts is a bool"),
        (b"u1", b'{"user_id":"u1","ts":%d}' % (now + 10 * 86_400_000), "in the future"),
        (b"u1", b"\xff\xfe\x00binary", "invalid_json"),
    ]
    good = payments(seed=4, n=500)
    records = good[:250] + [(k, v) for k, v, _ in bad] + good[250:]
    produce(broker.bootstrap, job["topic"], records)
    w = Worker(workdir, job_file, broker.bootstrap)
    w.start()
    w.wait_consumed(len(records))
    assert w.stop() == 0
    dlq = [json.loads(v) for _, _, _, v in
           read_topic(broker.bootstrap, job["name"] + "-dlq", PARTITIONS, expect=len(bad))]
    assert len(dlq) == len(bad)
    for _key, value, reason in bad:
        matches = [d for d in dlq if d.get("raw", "").encode() == value or
                   ("raw_base64" in d and value.startswith(b"\xff"))]
        assert matches, value
        assert reason in matches[0]["reason"], (value, matches[0]["reason"])
        assert matches[0]["source"]["topic"] == job["topic"]
        assert matches[0]["job"] == job["name"]
    tasks = w.status()["tasks"]
    consumed = sum(t["consumed"] for t in tasks)
    assert consumed == len(records)
    assert sum(t["dead_lettered"] for t in tasks) == len(bad)
    for t in tasks:
        assert t["consumed"] == t["processed"] + t["late"] + t["dead_lettered"]


def test_bad_flags_and_unwritable_dirs_fail_clearly(workdir, broker):
    import subprocess
    from sluice_testlib import binary
    job_file, job = setup_job(workdir, broker)
    r = subprocess.run([binary("worker", "sluice-worker"), "--job", job_file, "--data-dir",
                        os.path.join(workdir, "d"), "--checkpoint-dir", os.path.join(workdir, "c"),
                        "--bogus"], capture_output=True, text=True)
    assert r.returncode != 0
    assert "--bogus" in r.stderr and "--checkpoint-dir" in r.stderr  # the error, then usage
    r = subprocess.run([binary("worker", "sluice-worker"), "--job", job_file, "--brokers",
                        broker.bootstrap, "--data-dir", "/proc/sluice-no", "--checkpoint-dir",
                        os.path.join(workdir, "c"), "--partitions", "0"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert "/proc/sluice-no" in r.stderr
    r = subprocess.run([binary("worker", "sluice-worker"), "--job", job_file, "--brokers",
                        broker.bootstrap, "--data-dir", os.path.join(workdir, "d"),
                        "--checkpoint-dir", os.path.join(workdir, "c"), "--partitions", "0-9"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert "has 4 partitions; there is no partition 4" in r.stderr


def free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_metrics_endpoint_reports_the_task_counters(workdir, broker):
    import re
    import urllib.request
    job_file, job = setup_job(workdir, broker)
    events = payments(seed=5, n=600, malformed=0.05)
    produce(broker.bootstrap, job["topic"], events)
    port = free_port()
    w = Worker(workdir, job_file, broker.bootstrap)
    w.start("--metrics-port", str(port))
    w.wait_consumed(len(events))

    def scrape():
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            return r.read().decode()

    def total(text, name):
        return sum(float(v) for v in re.findall(rf"^{name}\{{[^}}]*\}} (\S+)$", text, re.M))

    wait_for(lambda: total(scrape(), "sluice_task_consumed_total") == len(events), 10,
             "the metrics to show every consumed record")
    text = scrape()
    tasks = w.status()["tasks"]
    assert total(text, "sluice_task_dead_lettered_total") == sum(t["dead_lettered"] for t in tasks)
    assert total(text, "sluice_task_dead_lettered_total") > 0
    assert f'job="{job["name"]}",partition="0"' in text
    assert "# TYPE sluice_task_lag gauge" in text
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as r:
        assert r.read() == b"ok\n"
    assert w.stop() == 0
