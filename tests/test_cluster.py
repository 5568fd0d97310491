"""System tests of a Sluice cluster: sluice-devbroker (or SLUICE_TEST_BROKERS),
sluice-coordinator and sluice-workers in cluster mode, driven with sluicectl.
The output of a job is compared with sluice-run's over the same input, through
worker crashes, a joining worker, a coordinator crash and a live update; bad
requests are refused clearly and change nothing.

Helpers and the `cluster` fixture: cluster_testlib.py."""

import json
import os
import re
import time

from cluster_testlib import (LEASE_S, OUT_PARTITIONS, Stream, check_against_reference, cluster,  # noqa: F401
                             epochs, load, placement, setup_topics)
from sluice_testlib import WINDOW_JOB, payments, produce, read_topic, wait_for, write_job

PARTITIONS = 8


def submit_fraud_job(cluster, partitions=PARTITIONS, **kw):  # noqa: F811
    job_file, job = write_job(cluster.workdir, **kw)
    setup_topics(cluster.broker, job, partitions)
    cluster.submit(job_file)
    return job_file, job


def test_three_workers_balance_and_drain_equals_reference(cluster):  # noqa: F811
    job_file, job = submit_fraud_job(cluster)
    tasks = cluster.wait_running(job["name"], PARTITIONS)
    where = placement(tasks)
    assert set(where.values()) == set(cluster.workers), where
    assert load(where) == [2, 3, 3], where
    # The workers run what the coordinator says they run.
    cluster.wait_files_agree(job["name"], tasks)

    events = payments(seed=11, n=3000, disorder_ms=3000, malformed=0.01)
    produce(cluster.broker.bootstrap, job["topic"], events)
    cluster.wait_caught_up(job["name"], job["topic"], PARTITIONS)
    cluster.drain(job["name"])
    expected, _ = check_against_reference(cluster.broker, job_file, job, len(events), PARTITIONS,
                                          exact=True)

    # The coordinator's last reports: drained, and nothing silently dropped.
    final = cluster.tasks(job["name"])
    assert sorted(t["partition"] for t in final) == list(range(PARTITIONS)), final
    for t in final:
        assert t["state"] == "DRAINED", t
        assert t["consumed"] == t["processed"] + t["late"] + t["dead_lettered"], t
    assert sum(t["alerts"] for t in final) == len(expected[job["name"] + "-alerts"])


def test_kill9_worker_moves_its_tasks_and_loses_nothing(cluster):  # noqa: F811
    job_file, job = submit_fraud_job(cluster)
    before = cluster.wait_running(job["name"], PARTITIONS)
    where = placement(before)
    victim = max(cluster.workers, key=lambda w: list(where.values()).count(w))
    orphans = sorted(p for p, w in where.items() if w == victim)

    events = payments(seed=12, n=4000, disorder_ms=3000, malformed=0.01)
    stream = Stream(cluster.broker.bootstrap, job["topic"], events, chunks=20, pause=0.3)
    wait_for(lambda: cluster.consumed(job["name"]) >= 800, 60, "800 records consumed")
    cluster.workers[victim].kill9()
    killed_at = time.monotonic()

    after = cluster.wait_running(
        job["name"], PARTITIONS, timeout=30,
        accept=lambda tasks: victim not in placement(tasks).values(),
        what=f"on the workers other than {victim} (killed)")
    failover_s = time.monotonic() - killed_at
    moved = placement(after)
    assert load(moved) == [4, 4], moved
    for p in range(PARTITIONS):
        if p in orphans:
            # A task that changes hands gets a new epoch (so the old owner is fenced).
            assert after[p]["epoch"] > before[p]["epoch"], (p, before[p], after[p])
        else:
            assert moved[p] == where[p], f"partition {p} moved off a live worker: {moved}"
            assert after[p]["epoch"] == before[p]["epoch"], (p, before[p], after[p])
    print(f"the tasks of {victim} ({orphans}) ran elsewhere after {failover_s:.1f}s")

    stream.wait()
    cluster.wait_caught_up(job["name"], job["topic"], PARTITIONS)
    cluster.drain(job["name"])
    check_against_reference(cluster.broker, job_file, job, len(events), PARTITIONS, exact=False)


def test_joining_worker_takes_two_tasks_and_nothing_is_lost(cluster):  # noqa: F811
    job_file, job = submit_fraud_job(cluster)
    before = cluster.wait_running(job["name"], PARTITIONS)
    assert load(placement(before)) == [2, 3, 3]

    events = payments(seed=13, n=4000, disorder_ms=3000, malformed=0.01)
    stream = Stream(cluster.broker.bootstrap, job["topic"], events, chunks=20, pause=0.3)
    wait_for(lambda: cluster.consumed(job["name"]) >= 800, 60, "800 records consumed")
    newcomer = cluster.add_worker().worker_id

    after = cluster.wait_running(
        job["name"], PARTITIONS, timeout=30,
        accept=lambda tasks: load(placement(tasks)) == [2, 2, 2, 2],
        what="spread 2/2/2/2 over 4 workers")
    old, new = placement(before), placement(after)
    moved = sorted(p for p in range(PARTITIONS) if old[p] != new[p])
    assert len(moved) == 2, f"moved {moved}: {old} -> {new}"
    assert all(new[p] == newcomer for p in moved), new
    for p in range(PARTITIONS):
        if p not in moved:
            # Sticky: a task that stays where it is keeps running (same epoch).
            assert after[p]["epoch"] == before[p]["epoch"], (p, before[p], after[p])

    stream.wait()
    cluster.wait_caught_up(job["name"], job["topic"], PARTITIONS)
    cluster.drain(job["name"])
    check_against_reference(cluster.broker, job_file, job, len(events), PARTITIONS, exact=False)


def test_workers_keep_running_while_the_coordinator_is_down(cluster):  # noqa: F811
    job_file, job = submit_fraud_job(cluster)
    name = job["name"]
    before = cluster.wait_running(name, PARTITIONS)
    files_before = cluster.wait_files_agree(name, before)

    events = payments(seed=14, n=4000, disorder_ms=3000, malformed=0.01)
    stream = Stream(cluster.broker.bootstrap, job["topic"], events, chunks=20, pause=0.4)
    wait_for(lambda: cluster.consumed(name) >= 300, 60, "300 records consumed")
    cluster.coordinator.kill9()
    down_at = time.monotonic()

    # Without the coordinator the workers keep consuming what is produced.
    consumed_at_kill = cluster.consumed(name)
    wait_for(lambda: cluster.check_processes() or cluster.consumed(name) >= consumed_at_kill + 500,
             20, "the workers to consume 500 more records without the coordinator")
    code, _, err = cluster.ctl("jobs", timeout=2)
    assert code == 1 and "cannot reach the coordinator" in err, (code, err)
    # Stay down longer than a lease: a restarted coordinator must not take
    # that for dead workers.
    time.sleep(max(0.0, down_at + LEASE_S + 1.0 - time.monotonic()))
    assert cluster.file_placement(name) == files_before, "a task restarted or moved"

    cluster.coordinator.start()  # same port, same --data-dir
    restarted_at = time.monotonic()
    wait_for(lambda: name in cluster.ctl("jobs")[1], 20, f"`sluicectl jobs` to list {name}")
    jobs = cluster.ctl_json("jobs")["jobs"]
    assert [j["state"] for j in jobs if j["name"] == name] == ["RUNNING"], jobs
    again = cluster.wait_running(name, PARTITIONS, timeout=30, what="after the restart")
    assert placement(again) == placement(before)
    assert epochs(again) == epochs(before)

    stream.wait()
    cluster.wait_caught_up(name, job["topic"], PARTITIONS)
    # A lease after the restart nothing has moved either.
    time.sleep(max(0.0, restarted_at + LEASE_S + 1.0 - time.monotonic()))
    assert placement(cluster.running(name)) == placement(before)
    assert epochs(cluster.running(name)) == epochs(before)
    assert cluster.file_placement(name) == files_before, "a task restarted or moved"
    assert all(w.starts == 1 and w.alive() for w in cluster.workers.values())

    cluster.drain(name)
    check_against_reference(cluster.broker, job_file, job, len(events), PARTITIONS, exact=False)


def payment(user, i, ts, amount):
    value = {"user_id": user, "amount": amount, "country": "DE", "ts": ts,
             "transaction_id": f"{user}-{i}"}
    return user.encode(), json.dumps(value, separators=(",", ":")).encode()


def test_update_changes_a_threshold_without_restarting_tasks(cluster):  # noqa: F811
    partitions = 4
    job_file, job = submit_fraud_job(cluster, partitions=partitions)
    name = job["name"]
    before = cluster.wait_running(name, partitions)
    pids = {w.worker_id: w.proc.pid for w in cluster.workers.values()}

    # Event times strictly increase, 300 ms apart per user group, so nothing
    # is late and only user "uv" has velocity (> 3 payments within 2 s).
    amounts = [50, 1000, 4000, 7000, 150]
    t = int(time.time() * 1000) - 120_000
    pre, post = [], []
    for i in range(40):
        pre.append(payment(f"a{i % 10}", i, t, amounts[i % 5]))
        t += 300
    for i in range(3):
        pre.append(payment("uv", i, t + 100 * i, 10))
    for i in range(3, 5):
        post.append(payment("uv", i, t + 100 * i, 10))
    t += 1000
    for i in range(40):
        post.append(payment(f"b{i % 10}", i, t, amounts[i % 5]))
        t += 300

    produce(cluster.broker.bootstrap, job["topic"], pre)
    cluster.wait_caught_up(name, job["topic"], partitions)

    with open(job_file) as f:
        text = f.read()
    assert "when: amount > 5000" in text
    new_file = os.path.join(cluster.workdir, name + "-v2.yaml")
    with open(new_file, "w") as f:
        f.write(text.replace("when: amount > 5000", "when: amount > 200"))
    code, out, err = cluster.ctl("update", name, new_file)
    assert code == 0, (code, out, err)
    after = cluster.wait_running(
        name, partitions, timeout=30,
        accept=lambda tasks: all(t["version"] == 2 for t in tasks.values()),
        what="at version 2")
    assert [j["version"] for j in cluster.ctl_json("jobs")["jobs"] if j["name"] == name] == ["2"]

    produce(cluster.broker.bootstrap, job["topic"], post)
    cluster.wait_caught_up(name, job["topic"], partitions)
    # No restart: same processes, same task epochs (same placement).
    assert {w.worker_id: w.proc.pid for w in cluster.workers.values() if w.alive()} == pids
    assert placement(cluster.running(name)) == placement(before) == placement(after)
    assert epochs(cluster.running(name)) == epochs(before)
    cluster.drain(name)

    alerts = [json.loads(v) for _, _, _, v in
              read_topic(cluster.broker.bootstrap, name + "-alerts", OUT_PARTITIONS, quiet=2.0)]
    large = sorted(a["event"]["transaction_id"] for a in alerts if a["rule"] == "large_amount")
    expect_large = sorted(
        [json.loads(v)["transaction_id"] for _, v in pre if json.loads(v)["amount"] > 5000] +
        [json.loads(v)["transaction_id"] for _, v in post if json.loads(v)["amount"] > 200])
    assert large == expect_large
    assert any(json.loads(v)["amount"] == 1000 for _, v in pre)  # not alerted before the update
    velocity = sorted((a["event"]["transaction_id"], a["n"]) for a in alerts
                      if a["rule"] == "velocity" and a["key"] == "uv")
    # uv-3 and uv-4 count the three payments from before the update.
    assert velocity == [("uv-3", 4), ("uv-4", 5)], velocity
    assert not [a for a in alerts if a["rule"] == "velocity" and a["key"] != "uv"]


def test_bad_requests_fail_clearly_and_change_nothing(cluster):  # noqa: F811
    job_file, job = submit_fraud_job(cluster, partitions=2)
    win_file, win = write_job(cluster.workdir, template=WINDOW_JOB, size="1m",
                              total="sum(amount)")
    setup_topics(cluster.broker, win, 2)
    cluster.submit(win_file)
    jobs_before = cluster.ctl_json("jobs")
    assert sorted(j["name"] for j in jobs_before["jobs"]) == sorted([job["name"], win["name"]])

    def refused(*args):
        code, out, err = cluster.ctl(*args)
        assert code == 1, (args, code, out, err)
        assert err.startswith("sluicectl: ") and "cannot reach" not in err, err
        return err

    # A bad duration: the file and the line.
    bad_file, bad = write_job(cluster.workdir)
    with open(bad_file) as f:
        lines = f.read().split("\n")
    line = next(i for i, s in enumerate(lines, 1) if "max_out_of_orderness" in s)
    lines[line - 1] = "  max_out_of_orderness: 2 fortnights"
    with open(bad_file, "w") as f:
        f.write("\n".join(lines))
    setup_topics(cluster.broker, bad, 2)
    err = refused("submit", bad_file)
    assert f"{bad_file}:{line}:" in err and "max_out_of_orderness" in err, err

    err = refused("status", "nosuchjob")
    assert "nosuchjob" in err and re.search(r"not found|no (such )?job|unknown", err, re.I), err

    err = refused("submit", job_file)
    assert job["name"] in err and "already exists" in err, err

    orphan_file, orphan = write_job(cluster.workdir, topic="nosuch-topic-" + str(os.getpid()))
    for kind in ("alerts", "late", "dlq"):  # only the source topic is missing
        cluster.broker.create_topic(f"{orphan['name']}-{kind}", 2)
    err = refused("submit", orphan_file)
    assert orphan["topic"] in err, err

    # An update may change rules and thresholds, not the state a window job keeps.
    for change, reason in ((dict(size="2m", total="sum(amount)"), "window"),
                           (dict(size="1m", total="max(amount)"), "aggregate")):
        new_file = os.path.join(cluster.workdir, f"{win['name']}-{reason}.yaml")
        with open(new_file, "w") as f:
            f.write(WINDOW_JOB.format(name=win["name"], topic=win["topic"], checkpoint="1s",
                                      **change))
        err = refused("update", win["name"], new_file)
        assert reason in err, err

    assert cluster.ctl_json("jobs") == jobs_before
    for j in (job, win):
        st = cluster.ctl_json("status", j["name"])
        assert st["job"]["state"] == "RUNNING" and st["job"]["version"] == "1", st["job"]


def test_coordinator_killed_right_after_an_epoch_bump_never_hands_an_epoch_out_twice(cluster):  # noqa: F811
    job_file, job = submit_fraud_job(cluster)
    name = job["name"]
    before = cluster.wait_running(name, PARTITIONS)
    owners = {}  # (partition, epoch) -> the one worker that ever ran it

    def record(placement_with_epochs):
        for p, (worker, epoch) in placement_with_epochs.items():
            assert owners.setdefault((p, epoch), worker) == worker, \
                f"partition {p} epoch {epoch} ran on {owners[(p, epoch)]} and on {worker}"
    record({p: (t["worker"], t["epoch"]) for p, t in before.items()})

    events = payments(seed=15, n=3000, disorder_ms=3000, malformed=0.01)
    stream = Stream(cluster.broker.bootstrap, job["topic"], events, chunks=15, pause=0.3)
    wait_for(lambda: cluster.consumed(name) >= 300, 60, "300 records consumed")

    # w1 restarts under the same id: its tasks get new epochs (the old
    # process is fenced). The moment the new process runs them, the
    # coordinator is killed.
    victim = cluster.workers["w1"]
    mine = sorted(p for p, t in before.items() if t["worker"] == "w1")
    victim.kill9()
    victim.killed = False
    victim.start()
    def bumped_epochs():
        """{partition: epoch} once the new w1 runs all its tasks under new epochs."""
        tasks = victim.tasks(name)
        if all(p in tasks and tasks[p]["epoch"] > before[p]["epoch"] for p in mine):
            return {p: tasks[p]["epoch"] for p in mine}
        return None
    bumped = wait_for(bumped_epochs, 30, "the restarted w1 to run its tasks under new epochs",
                      interval=0.02)
    cluster.coordinator.kill9()
    record({p: ("w1", e) for p, e in bumped.items()})

    cluster.coordinator.start()
    after = cluster.wait_running(
        name, PARTITIONS, timeout=30,
        accept=lambda tasks: all(tasks[p]["epoch"] >= bumped[p] for p in mine),
        what="with the epochs of w1's restart")
    for p in mine:
        # The restarted coordinator knows the bumped epoch: it keeps w1 on
        # it, or moves the task under a higher one, never back to an old one.
        assert after[p]["epoch"] >= bumped[p], (p, bumped[p], after[p])
        if after[p]["worker"] == "w1":
            assert after[p]["epoch"] == bumped[p], (p, bumped[p], after[p])
    record({p: (t["worker"], t["epoch"]) for p, t in after.items()})
    record(cluster.file_placement(name))

    stream.wait()
    cluster.wait_caught_up(name, job["topic"], PARTITIONS)
    record(cluster.file_placement(name))
    cluster.drain(name)
    check_against_reference(cluster.broker, job_file, job, len(events), PARTITIONS, exact=False)


def test_a_second_worker_with_a_taken_id_is_refused_and_runs_nothing(cluster):  # noqa: F811
    """Two processes, one --worker-id (each with its own data directory): the
    coordinator refuses the second while the first is alive, so no task runs
    twice and the output has no duplicates."""
    from cluster_testlib import ClusterWorker
    job_file, job = submit_fraud_job(cluster, partitions=4)
    name = job["name"]
    cluster.wait_running(name, 4)
    dup = ClusterWorker(cluster.workdir, cluster.coordinator.address, cluster.broker.bootstrap,
                        "w1-twin")
    dup.args[dup.args.index("--worker-id") + 1] = "w1"
    dup.start()
    try:
        def refused():
            with open(dup.log_path) as f:
                return "the coordinator refuses this worker: worker id w1 is held by a live " \
                       "worker" in f.read()
        wait_for(refused, 30, "the second w1 to be refused")
        events = payments(seed=15, n=3000, disorder_ms=2000, malformed=0.01)
        produce(cluster.broker.bootstrap, job["topic"], events)
        cluster.wait_caught_up(name, job["topic"], 4)
        assert dup.alive()
        assert not dup.tasks(name), dup.status()
        cluster.drain(name)
        check_against_reference(cluster.broker, job_file, job, len(events), 4, exact=True)
    finally:
        dup.terminate()
