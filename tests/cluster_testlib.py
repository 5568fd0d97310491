"""Helpers for the cluster system tests (test_cluster.py): the coordinator
process, workers in cluster mode, a `cluster` fixture (dev broker +
coordinator + workers), `sluicectl` with its `--json` answers read back as
task placements, and the comparison of a job's output with sluice-run's.

sluicectl --json prints proto3 JSON: proto field names, enums by name, int64
as strings and fields with default values included; a task's `report` is a
message, so it is absent until its worker has reported it.
"""

import collections
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid

import pytest
from confluent_kafka import Consumer, TopicPartition

from sluice_testlib import check_against_reference as check_reference
from sluice_testlib import Worker, binary, produce, wait_for

# Short leases so that failovers are quick in tests.
HEARTBEAT = "500ms"
LEASE = "3s"
LEASE_S = 3.0
OUT_PARTITIONS = 4  # of the sink topics


def free_port():
    """A port that was free a moment ago: bind port 0, read it, close."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def terminate(proc, timeout=30):
    """SIGTERM, then SIGKILL if the process has not exited within `timeout`."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def log_tail(path, n=30):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError:
        return f"(no log at {path})"


# The security flags of the three binaries unless a test gives its own:
# plaintext gRPC on loopback, asked for explicitly (tests/test_security.py
# runs TLS, mutual TLS and tokens).
INSECURE = ("--insecure",)


class Coordinator:
    """One sluice-coordinator process. Restarts keep the port and --data-dir.
    `security`: its TLS/token flags (default: plaintext on loopback)."""

    def __init__(self, workdir, bootstrap, port=0, heartbeat=HEARTBEAT, lease=LEASE, extra=(),
                 security=INSECURE):
        self.port = port
        self.data_dir = os.path.join(workdir, "coordinator-data")
        self.address_file = os.path.join(workdir, "coordinator.address")
        self.log_path = os.path.join(workdir, "coordinator.log")
        self.args = [binary("coordinator", "sluice-coordinator"),
                     "--listen", f"127.0.0.1:{port}", "--address-file", self.address_file,
                     "--brokers", bootstrap, "--data-dir", self.data_dir,
                     "--heartbeat", heartbeat, "--lease", lease, "--log-level", "info",
                     *security, *extra]
        self.proc = None
        self.log = None
        self.address = None
        self.starts = 0

    def start(self, timeout=30):
        if os.path.exists(self.address_file):
            os.remove(self.address_file)
        self.log = open(self.log_path, "a")
        self.proc = subprocess.Popen(self.args, stdout=self.log, stderr=subprocess.STDOUT)
        self.starts += 1

        def serving():
            assert self.proc.poll() is None, \
                f"the coordinator exited with {self.proc.returncode}:\n" + self.log_tail()
            return self.read_address()
        self.address = wait_for(serving, timeout, "the coordinator's address file")
        if self.port:
            assert self.address == f"127.0.0.1:{self.port}", self.address
        return self.address

    def read_address(self):
        try:
            with open(self.address_file) as f:
                for line in f:
                    if line.startswith("address="):
                        return line.strip().split("=", 1)[1]
        except OSError:
            pass
        return None

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self.log.close()

    def stop(self, timeout=30):
        terminate(self.proc, timeout)
        if self.log:
            self.log.close()
        return self.proc.returncode if self.proc else None

    def log_tail(self, n=40):
        return log_tail(self.log_path, n)


class ClusterWorker(Worker):
    """sluice-worker in cluster mode. All workers of a cluster share the
    checkpoint directory (<workdir>/checkpoints). `security`: its TLS/token
    flags towards the coordinator (default: plaintext)."""

    def __init__(self, workdir, coordinator_address, bootstrap, worker_id, security=INSECURE):
        super().__init__(workdir, job_file="", bootstrap=bootstrap, name=worker_id)
        self.worker_id = worker_id
        self.args = [binary("worker", "sluice-worker"), "--coordinator", coordinator_address,
                     "--worker-id", worker_id, "--brokers", bootstrap,
                     "--data-dir", self.data_dir, "--checkpoint-dir", self.checkpoint_dir,
                     "--status-file", self.status_file, "--threads", "2",
                     "--block-cache-mb", "16", "--write-buffer-mb", "16", *security]
        self.killed = False

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def kill9(self):
        self.killed = True
        super().kill9()

    def tasks(self, job, state="RUNNING"):
        """{partition: task} of the job's tasks in `state`, from the status file."""
        st = self.status()
        if not st:
            return {}
        return {t["partition"]: t for t in st["tasks"]
                if t["job"] == job and (state is None or t["state"] == state)}

    def terminate(self, timeout=30):
        terminate(self.proc, timeout)
        if self.proc is not None:
            self.log.close()


class Stream(threading.Thread):
    """Produces `events` in `chunks`, pausing between them, in the background.
    wait() re-raises what went wrong in the thread. `ends`: {partition: offset
    after the last record delivered there}."""

    def __init__(self, bootstrap, topic, events, chunks=20, pause=0.3):
        super().__init__(daemon=True)
        self.bootstrap, self.topic, self.events = bootstrap, topic, events
        self.chunks, self.pause = chunks, pause
        self.produced = 0
        self.ends = {}
        self.error = None
        self.start()

    def run(self):
        try:
            step = (len(self.events) + self.chunks - 1) // self.chunks
            for i in range(0, len(self.events), step):
                for p, end in produce(self.bootstrap, self.topic, self.events[i:i + step]).items():
                    self.ends[p] = max(self.ends.get(p, 0), end)
                self.produced = min(len(self.events), i + step)
                time.sleep(self.pause)
        except BaseException as e:  # noqa: B902 -- handed to the test thread
            self.error = e

    def wait(self, timeout=180):
        self.join(timeout)
        assert not self.is_alive(), "the producer thread did not finish"
        if self.error:
            raise self.error


def end_offsets(bootstrap, topic, partitions):
    """{partition: high watermark} of a topic, from the broker."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "offsets-" + uuid.uuid4().hex})
    try:
        return {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                for p in range(partitions)}
    finally:
        c.close()


def task_view(task_status):
    """One entry of JobStatus.tasks as a flat dict with ints."""
    r = task_status.get("report") or {}
    view = {"worker": task_status.get("worker_id", ""), "state": r.get("state", ""),
            "partition": int(r.get("partition", -1))}
    for field in ("epoch", "version", "next_offset", "end_offset", "watermark", "consumed",
                  "processed", "late", "dead_lettered", "alerts"):
        view[field] = int(r.get(field, 0))
    view["error"] = r.get("error", "")
    return view


class Cluster:
    """A dev broker (the `broker` fixture), one coordinator on a port chosen up
    front (so that it can be restarted at the same address) and workers
    w1..wN. The security flags of each kind of process default to plaintext
    on loopback."""

    def __init__(self, workdir, broker, coordinator_security=INSECURE, worker_security=INSECURE,
                 ctl_security=INSECURE):
        self.workdir = workdir
        self.broker = broker
        self.port = free_port()
        self.coordinator = Coordinator(workdir, broker.bootstrap, port=self.port,
                                       security=coordinator_security)
        self.worker_security = tuple(worker_security)
        self.ctl_security = tuple(ctl_security)
        self.workers = {}

    # ---- processes

    def start(self, workers=3):
        self.coordinator.start()
        for _ in range(workers):
            self.add_worker()
        wait_for(lambda: self.alive_workers() == len(self.workers), 30,
                 f"{workers} workers to register")
        return self

    def add_worker(self):
        worker_id = f"w{len(self.workers) + 1}"
        w = ClusterWorker(self.workdir, self.coordinator.address, self.broker.bootstrap, worker_id,
                          security=self.worker_security)
        w.start()
        self.workers[worker_id] = w
        return w

    def alive_workers(self):
        """How many workers the coordinator lists as alive (0 if unreachable)."""
        code, out, _ = self.ctl("--json", "workers")
        if code != 0:
            return 0
        return sum(1 for w in json.loads(out).get("workers", []) if w.get("alive"))

    def check_processes(self):
        """Fails (with the log's end) if a process that should run has exited."""
        for w in self.workers.values():
            if not w.killed:
                assert w.alive(), \
                    f"worker {w.worker_id} exited with {w.proc.returncode}:\n{w.log_tail()}"

    def stop(self):
        # Workers first: SIGTERM checkpoints their tasks and says goodbye to the
        # coordinator. All at once, so that their tasks do not move around.
        for w in self.workers.values():
            if w.alive():
                w.proc.send_signal(signal.SIGTERM)
        for w in self.workers.values():
            w.terminate()
        self.coordinator.stop()

    def keep_logs(self, test_name):
        """Copies logs, status files and job files out of the workdir."""
        root = os.environ.get("SLUICE_TEST_KEEP_DIR",
                              os.path.join(tempfile.gettempdir(), "sluice-cluster-logs"))
        dest = os.path.join(root, f"{test_name}-{time.strftime('%Y%m%dT%H%M%S')}")
        os.makedirs(dest, exist_ok=True)
        for name in os.listdir(self.workdir):
            if name.endswith((".log", ".json", ".yaml", ".address")) or name == "bootstrap":
                shutil.copy(os.path.join(self.workdir, name), dest)
        print(f"kept the logs of {test_name} in {dest}")
        return dest

    # ---- sluicectl

    def ctl(self, *args, timeout=10, security=None):
        """Runs sluicectl against the coordinator: (exit code, stdout, stderr).
        `security`: its TLS/token flags, else the cluster's."""
        security = self.ctl_security if security is None else tuple(security)
        proc = subprocess.run([binary("cli", "sluicectl"), "--coordinator",
                               f"127.0.0.1:{self.port}", "--timeout", str(timeout), *security,
                               *args],
                              capture_output=True, text=True, timeout=timeout + 30)
        return proc.returncode, proc.stdout, proc.stderr

    def ctl_json(self, *args):
        """The --json answer of a command that must succeed."""
        code, out, err = self.ctl("--json", *args)
        assert code == 0, f"sluicectl {' '.join(args)}: exit {code}: {err}"
        return json.loads(out)

    def try_status(self, job):
        """The job's JobStatus, or None if the coordinator did not answer."""
        code, out, _ = self.ctl("--json", "status", job)
        return json.loads(out) if code == 0 else None

    def submit(self, job_file):
        code, out, err = self.ctl("submit", job_file)
        assert code == 0, f"submit {job_file}: exit {code}: {err}"
        return out

    # ---- tasks and placement (from the coordinator)

    def tasks(self, job):
        """[task_view] of the job's tasks as the coordinator reports them."""
        st = self.try_status(job)
        return [task_view(t) for t in st.get("tasks", [])] if st else []

    def running(self, job):
        """{partition: task_view} of the tasks reported RUNNING on a worker."""
        return {t["partition"]: t for t in self.tasks(job)
                if t["state"] == "RUNNING" and t["worker"]}

    def wait_running(self, job, partitions, timeout=30, accept=lambda tasks: True, what=""):
        """Waits until every partition's task is RUNNING and accept(tasks) holds;
        returns {partition: task_view}."""
        def ready():
            self.check_processes()
            tasks = self.running(job)
            return tasks if set(tasks) == set(range(partitions)) and accept(tasks) else None
        return wait_for(ready, timeout, f"all {partitions} tasks of {job} RUNNING {what}",
                        interval=0.25)

    def job_state(self, job):
        st = self.try_status(job)
        return st["job"]["state"] if st else None

    def wait_caught_up(self, job, topic, partitions, timeout=120, produced=None):
        """Waits until each partition's running task has consumed up to the
        partition's end offset (as the broker reports it now, and at least
        `produced`, {partition: end} as the producer saw it: a broker restarted
        after a crash may report an older high watermark for a while)."""
        ends = end_offsets(self.broker.bootstrap, topic, partitions)
        for p, end in (produced or {}).items():
            ends[p] = max(ends.get(p, 0), end)

        def done():
            self.check_processes()
            tasks = self.running(job)
            return all(ends[p] == 0 or (p in tasks and tasks[p]["next_offset"] >= ends[p])
                       for p in range(partitions))
        wait_for(done, timeout, f"{job} to consume its input up to {ends}", interval=0.25)
        return ends

    def drain(self, job, timeout=60):
        """stop --drain, then waits until the job is STOPPED."""
        code, _, err = self.ctl("stop", "--drain", job)
        assert code == 0, f"stop --drain {job}: exit {code}: {err}"

        def stopped():
            self.check_processes()
            return self.job_state(job) == "STOPPED"
        wait_for(stopped, timeout, f"job {job} to be STOPPED after stop --drain", interval=0.25)

    # ---- the workers' own view (status files)

    def file_placement(self, job):
        """{partition: (worker, epoch)} of RUNNING tasks in the live workers' status files."""
        out = {}
        for w in self.workers.values():
            if w.alive():
                for p, t in w.tasks(job).items():
                    out[p] = (w.worker_id, t["epoch"])
        return out

    def wait_files_agree(self, job, tasks, timeout=10):
        """Waits until the workers' status files show each task of `tasks`
        ({partition: task_view}, the coordinator's view) RUNNING on the same
        worker with the same epoch; returns {partition: (worker, epoch)}."""
        want = {p: (t["worker"], t["epoch"]) for p, t in tasks.items()}
        wait_for(lambda: self.file_placement(job) == want, timeout,
                 f"the workers' status files to show {want}", interval=0.1)
        return want

    def consumed(self, job):
        """Sum of `consumed` over RUNNING tasks in the live workers' status files."""
        return sum(t["consumed"] for w in self.workers.values() if w.alive()
                   for t in w.tasks(job).values())


def placement(tasks):
    """{partition: worker} of a {partition: task_view}."""
    return {p: t["worker"] for p, t in tasks.items()}


def epochs(tasks):
    return {p: t["epoch"] for p, t in tasks.items()}


def load(placement_map):
    """Sorted task counts per worker, e.g. [2, 3, 3]."""
    return sorted(collections.Counter(placement_map.values()).values())


def setup_topics(broker, job, partitions):
    broker.create_topic(job["topic"], partitions)
    for kind in ("alerts", "late", "dlq"):
        broker.create_topic(f"{job['name']}-{kind}", OUT_PARTITIONS)


def check_against_reference(broker, job_file, job, total, partitions, exact):
    """sluice_testlib's check, with this module's sink topics."""
    return check_reference(broker, job_file, job, total, partitions, exact,
                           sink_partitions=OUT_PARTITIONS)


def started_cluster(request, workdir, broker, workers=3, coordinator_args=()):
    """A started cluster on `broker`: a coordinator (with `coordinator_args`)
    and `workers` workers. Processes are stopped after the test (SIGTERM, then
    SIGKILL); on failure, or with SLUICE_KEEP_LOGS=1, the logs are copied to
    $SLUICE_TEST_KEEP_DIR (default /tmp/sluice-cluster-logs)."""
    c = Cluster(workdir, broker)
    c.coordinator.args += list(coordinator_args)
    failed_before = request.session.testsfailed

    def finish():
        c.stop()
        if request.session.testsfailed > failed_before or os.environ.get("SLUICE_KEEP_LOGS"):
            c.keep_logs(request.node.name)
    request.addfinalizer(finish)
    return c.start(workers=workers)


@pytest.fixture
def cluster(request, workdir, broker):
    """A started cluster: coordinator and 3 workers (or the test's param)."""
    return started_cluster(request, workdir, broker, workers=getattr(request, "param", 3))
