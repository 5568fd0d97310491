"""System tests of delivery: exactly_once. A read_committed consumer must see
every output record of the job exactly once, record for record what sluice-run
computes over the same input, across a SIGKILL of the worker at each step of
the transaction protocol, a zombie worker, and repeated kills in a cluster.

Fencing needs a real broker: the fault-point, zombie and cluster tests run on
Apache Kafka only (librdkafka's mock in sluice-devbroker commits transactions
but neither fences nor aborts; see worker/exactly_once.h)."""

import json
import os
import random
import signal
import time

import pytest

from cluster_testlib import (Stream, cluster, placement,  # noqa: F401
                             setup_topics)
from cluster_testlib import check_against_reference as check_cluster_reference
from sluice_testlib import (Worker, check_against_reference, payments, produce, read_topic,
                            wait_for, write_job)

PARTITIONS = 4
FAULT_POINTS = ["after_produce", "after_barrier", "after_checkpoint", "after_marker",
                "after_commit", "during_restore"]


def needs_fencing(broker):
    if broker.kind == "devbroker":
        pytest.skip("sluice-devbroker's mock neither fences nor aborts transactions")


def setup_job(workdir, broker, checkpoint="500ms"):
    job_file, job = write_job(workdir, checkpoint=checkpoint, delivery="exactly_once")
    for topic in (job["topic"], job["name"] + "-alerts", job["name"] + "-late",
                  job["name"] + "-dlq"):
        broker.create_topic(topic, PARTITIONS)
    return job_file, job


def markers(broker, job):
    """The committed markers of the job, parsed: [{key: value}]."""
    out = []
    for _p, _o, key, value in read_topic(broker.bootstrap, f"sluice-{job['name']}-markers",
                                          PARTITIONS, quiet=1.0):
        fields = dict(line.split("=", 1) for line in value.decode().splitlines() if line)
        fields["task"] = key.decode()
        out.append(fields)
    return out


def test_exactly_once_output_equals_engine_output(workdir, broker):
    job_file, job = setup_job(workdir, broker)
    events = payments(seed=21, n=3000, disorder_ms=3000, malformed=0.01)
    produce(broker.bootstrap, job["topic"], events)
    w = Worker(workdir, job_file, broker.bootstrap)
    w.start("--drain-on-exit")
    w.wait_consumed(len(events))
    assert w.stop() == 0
    check_against_reference(broker, job_file, job, len(events), PARTITIONS, exact=True)
    tasks = w.status()["tasks"]
    for t in tasks:
        assert t["delivery"] == "exactly_once", t
        assert t["transactions_committed"] >= 1, t
        assert t["transactions_aborted"] == 0, t
    # One marker per committed transaction, each naming a checkpoint.
    found = markers(broker, job)
    assert {m["task"] for m in found} == {f"{job['name']}-{p}" for p in range(PARTITIONS)}
    assert all(int(m["checkpoint_id"]) > 0 and m["transactional"] == "1" for m in found)


@pytest.mark.parametrize("point", FAULT_POINTS)
def test_sigkill_at_each_step_leaves_exactly_once_output(workdir, broker, point):
    """The worker kills itself at `point` (SLUICE_FAULT_POINT), is restarted,
    and the committed output equals an uninterrupted run's: 0 duplicates, 0
    missing."""
    needs_fencing(broker)
    job_file, job = setup_job(workdir, broker)
    events = payments(seed=22, n=4000, disorder_ms=2000, malformed=0.01)
    w = Worker(workdir, job_file, broker.bootstrap)
    if point == "during_restore":
        w.start()
    stream = Stream(broker.bootstrap, job["topic"], events, chunks=10, pause=0.3)
    if point == "during_restore":
        w.wait_consumed(1000)
        w.kill9()
    # The third time: after some transactions have committed.
    os.environ["SLUICE_FAULT_POINT"] = f"{point}:3"
    try:
        w.start()
    finally:
        del os.environ["SLUICE_FAULT_POINT"]
    wait_for(lambda: w.proc.poll() is not None, 60, f"the worker to reach {point}")
    assert w.proc.returncode == -signal.SIGKILL, w.log_tail()
    w.log.close()
    with open(w.log_path) as f:
        assert f"fault point {point} reached" in f.read()
    stream.wait()
    w.start("--drain-on-exit")
    w.wait_consumed(len(events))
    assert w.stop() == 0
    check_against_reference(broker, job_file, job, len(events), PARTITIONS, exact=True)


CLUSTER_PARTITIONS = 8


def submit_exactly_once_job(cluster):  # noqa: F811
    job_file, job = write_job(cluster.workdir, checkpoint="500ms", delivery="exactly_once")
    setup_topics(cluster.broker, job, CLUSTER_PARTITIONS)
    cluster.submit(job_file)
    return job_file, job


def test_a_frozen_worker_is_fenced_and_writes_nothing_more(cluster):  # noqa: F811
    """A zombie: a worker frozen with SIGSTOP while its tasks move to the
    others (who fence its transactional ids); resumed with SIGCONT, it writes
    nothing more, and the committed output is exact."""
    needs_fencing(cluster.broker)
    job_file, job = submit_exactly_once_job(cluster)
    name = job["name"]
    before = cluster.wait_running(name, CLUSTER_PARTITIONS)
    where = placement(before)
    victim = max(cluster.workers, key=lambda w: list(where.values()).count(w))
    events = payments(seed=23, n=5000, disorder_ms=2000, malformed=0.01)
    stream = Stream(cluster.broker.bootstrap, job["topic"], events, chunks=20, pause=0.3)
    wait_for(lambda: cluster.consumed(name) >= 800, 60, "800 records consumed")
    zombie = cluster.workers[victim]
    zombie.proc.send_signal(signal.SIGSTOP)
    cluster.wait_running(name, CLUSTER_PARTITIONS, timeout=60,
                         accept=lambda tasks: victim not in placement(tasks).values(),
                         what=f"on the workers other than {victim} (frozen)")
    time.sleep(2)  # the new owners commit transactions meanwhile
    zombie.proc.send_signal(signal.SIGCONT)
    wait_for(lambda: not zombie.tasks(name), 60, f"{victim} to give up the tasks it held")
    assert zombie.alive()
    stream.wait()
    cluster.wait_caught_up(name, job["topic"], CLUSTER_PARTITIONS)
    cluster.drain(name)
    check_cluster_reference(cluster.broker, job_file, job, len(events), CLUSTER_PARTITIONS,
                            exact=True)


def test_cluster_kills_and_a_broker_restart_leave_exactly_once_output(cluster):  # noqa: F811
    """Repeated kill -9 of workers and of the coordinator, and a kill -9 of the
    broker: 0 duplicates, 0 missing."""
    needs_fencing(cluster.broker)
    job_file, job = submit_exactly_once_job(cluster)
    name = job["name"]
    cluster.wait_running(name, CLUSTER_PARTITIONS)
    events = payments(seed=24, n=8000, disorder_ms=2000, malformed=0.01)
    stream = Stream(cluster.broker.bootstrap, job["topic"], events, chunks=40, pause=0.3)
    rng = random.Random(24)
    wait_for(lambda: cluster.consumed(name) >= 500, 60, "500 records consumed")
    for round_ in range(4):
        time.sleep(rng.uniform(1.0, 2.0))
        victim = rng.choice(sorted(cluster.workers))
        cluster.workers[victim].kill9()
        if round_ == 1:
            cluster.coordinator.kill9()
            time.sleep(1)
            cluster.coordinator.start()
        time.sleep(rng.uniform(0.5, 1.5))
        cluster.workers[victim].killed = False
        cluster.workers[victim].start()
    if cluster.broker.can_break():
        cluster.broker.outage(5, crash=True)
        cluster.broker.wait_up()
    stream.wait(timeout=300)
    cluster.wait_caught_up(name, job["topic"], CLUSTER_PARTITIONS, timeout=240,
                           produced=stream.ends)
    cluster.drain(name, timeout=120)
    check_cluster_reference(cluster.broker, job_file, job, len(events), CLUSTER_PARTITIONS,
                            exact=True)
