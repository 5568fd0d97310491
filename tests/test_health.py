"""System test of health that tells the truth: a worker whose checkpoint
disk fills up reports its task failing with the disk's reason (status file,
/metrics) and answers /healthz not ready; once space is back the task
checkpoints again and the worker is ready.

The full disk is a small tmpfs mounted over the checkpoint directory, so the
test needs permission to mount (root); it is skipped elsewhere."""

import os
import subprocess
import urllib.error
import urllib.request

import pytest

from cluster_testlib import free_port
from sluice_testlib import Worker, payments, produce, wait_for, write_job

PARTITIONS = 1
FAILING = ("RESTARTING", "FAILED")


@pytest.fixture
def small_disk(workdir):
    """<workdir>/checkpoints on a 64 MiB tmpfs; unmounted afterwards."""
    path = os.path.join(workdir, "checkpoints")
    os.makedirs(path)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", path],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs (needs root): {r.stderr.strip()}")
    yield path
    subprocess.run(["umount", "-l", path], capture_output=True)


def healthz(port):
    """(HTTP status, body) of /healthz."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def fill(path):
    """Writes a file into `path` until the disk is full; returns its path."""
    filler = os.path.join(path, "filler")
    with open(filler, "wb") as f:
        chunk = b"\0" * (1 << 20)
        try:
            while True:
                f.write(chunk)
                f.flush()
        except OSError:
            pass
    return filler


def test_a_full_checkpoint_disk_fails_the_task_and_healthz_then_recovers(workdir, broker,
                                                                        small_disk):
    job_file, job = write_job(workdir, checkpoint="500ms")
    for topic in (job["topic"], job["name"] + "-alerts", job["name"] + "-late",
                  job["name"] + "-dlq"):
        broker.create_topic(topic, PARTITIONS)
    port = free_port()
    w = Worker(workdir, job_file, broker.bootstrap)
    assert w.checkpoint_dir == small_disk
    w.start("--metrics-port", str(port), "--unhealthy-after", "2s")
    try:
        def task():
            assert w.proc.poll() is None, "the worker exited:\n" + w.log_tail()
            st = w.status()
            return st["tasks"][0] if st and st.get("tasks") else None

        produce(broker.bootstrap, job["topic"], payments(seed=1, n=300))
        wait_for(lambda: (task() or {}).get("state") == "RUNNING" and
                 int(task().get("last_checkpoint_id", 0)) > 0, 60, "a first checkpoint")
        assert healthz(port)[0] == 200

        # The disk fills up: the next checkpoints fail with ENOSPC.
        filler = fill(small_disk)
        seed = 2

        def failing():
            nonlocal seed
            produce(broker.bootstrap, job["topic"], payments(seed=seed, n=50))
            seed += 1
            t = task()
            return t if t and t["state"] in FAILING else None
        t = wait_for(failing, 60, "the task to report its checkpoints failing", interval=0.5)
        assert "No space left on device" in t["error"], t
        status, body = wait_for(lambda: (lambda h: h if h[0] != 200 else None)(healthz(port)),
                                30, "/healthz to answer not ready")
        assert status == 503, (status, body)
        assert "No space left on device" in body, body
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            metrics = r.read().decode()
        assert "sluice_task_failures_total" in metrics

        # Space is back: a checkpoint completes, the task runs, /healthz is ok.
        os.remove(filler)
        checkpoint_before = int(t.get("last_checkpoint_id", 0))

        def recovered():
            nonlocal seed
            produce(broker.bootstrap, job["topic"], payments(seed=seed, n=50))
            seed += 1
            t = task()
            return (t and t["state"] == "RUNNING" and not t.get("error") and
                    int(t.get("last_checkpoint_id", 0)) > checkpoint_before)
        wait_for(recovered, 60, "the task to checkpoint again and run", interval=0.5)
        wait_for(lambda: healthz(port)[0] == 200, 30, "/healthz to answer ok again")
        assert w.stop() == 0
    finally:
        if w.proc.poll() is None:
            w.kill9()
