"""scripts/kafka.sh, the real Apache Kafka broker of the tests, the demo's
--kafka mode and the benchmarks: start prints the bootstrap address, the
broker takes examples/jobs/fraud.yaml from sluicectl and Kafka's own console
consumer reads its alerts; a restart keeps data and port, a taken port is
replaced by another, and what cannot be fetched or started fails clearly."""

import json
import os
import socket
import subprocess

import pytest

from cluster_testlib import ClusterWorker, Coordinator
from sluice_testlib import REPO, binary, wait_for

SCRIPT = os.path.join(REPO, "scripts", "kafka.sh")


def kafka_sh(*args, env=None, timeout=600):
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run(["bash", SCRIPT, *args], capture_output=True, text=True,
                          timeout=timeout, env=e)


def started(data_dir, *flags):
    r = kafka_sh("start", data_dir, *flags)
    assert r.returncode == 0, r.stdout + r.stderr
    lines = [x for x in r.stdout.splitlines() if x.startswith("bootstrap=")]
    assert len(lines) == 1, r.stdout
    with open(os.path.join(data_dir, "bootstrap")) as f:
        assert f.read().strip() == lines[0]
    host, port = lines[0].split("=", 1)[1].rsplit(":", 1)
    assert host == "127.0.0.1"
    return f"{host}:{port}", r.stderr


def topic_names(bootstrap):
    from confluent_kafka.admin import AdminClient
    return set(AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=10).topics)


@pytest.fixture
def kafka_dir(workdir):
    d = os.path.join(workdir, "kafka")
    yield d
    kafka_sh("stop", d)


def test_fraud_job_alerts_read_by_kafkas_console_consumer(workdir, kafka_dir):
    bootstrap, _ = started(kafka_dir)
    # Topic auto-creation is off: a job's topics exist only once made.
    assert "payments" not in topic_names(bootstrap)
    r = kafka_sh("topics", kafka_dir, "payments:4", "fraud-alerts:2", "payments-late:2",
                 "payments-dlq:2")
    assert r.returncode == 0, r.stderr
    coordinator = Coordinator(workdir, bootstrap)
    coordinator.start()
    worker = ClusterWorker(workdir, coordinator.address, bootstrap, "w1")
    worker.start()
    try:
        ctl = [binary("cli", "sluicectl"), "--coordinator", coordinator.address, "--insecure"]
        r = subprocess.run(ctl + ["submit", os.path.join(REPO, "examples", "jobs", "fraud.yaml")],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        expect = os.path.join(workdir, "expected.jsonl")
        r = subprocess.run([binary("tools", "sluice-loadgen"), "--brokers", bootstrap,
                            "--kind", "payments", "--count", "3000", "--rate", "0",
                            "--users", "500", "--fraud-every", "100", "--expect", expect],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        with open(expect) as f:
            injected = [json.loads(line) for line in f if line.strip()]
        assert injected

        def consumed():
            assert worker.alive(), "the worker exited: " + worker.log_tail()
            return sum(t["consumed"] for t in worker.tasks("fraud").values())
        wait_for(lambda: consumed() >= 3000, 120, "the worker to consume the 3000 payments")
        # A drain evaluates every rule over every event consumed.
        r = subprocess.run(ctl + ["stop", "--drain", "fraud"], capture_output=True, text=True,
                           timeout=60)
        assert r.returncode == 0, r.stderr

        def stopped():
            r = subprocess.run(ctl + ["--json", "status", "fraud"], capture_output=True,
                               text=True, timeout=60)
            return r.returncode == 0 and json.loads(r.stdout)["job"]["state"] == "STOPPED"
        wait_for(stopped, 120, "the fraud job to drain", interval=0.5)
        # Kafka's own consumer (a JVM client) reads what the worker wrote.
        r = kafka_sh("consume", kafka_dir, "fraud-alerts", "--timeout-ms", "15000",
                     "--formatter-property", "print.key=true", timeout=180)
        records = [line.split("\t", 1) for line in r.stdout.splitlines() if "\t" in line]
        assert records, r.stdout[-2000:] + r.stderr[-2000:]
        alerts = [json.loads(v) for _, v in records]
        assert all(k == a["key"] and a["job"] == "fraud" for (k, _), a in zip(records, alerts))
        seen = {(a["rule"], a["key"], a["event"].get("transaction_id")) for a in alerts}
        missing = [e for e in injected
                   if not any((e["rule"], e["key"], t) in seen for t in e["transaction_ids"])]
        assert not missing, f"{len(missing)} of {len(injected)} patterns not alerted: {missing[:3]}"
    finally:
        worker.terminate()
        coordinator.stop()


def test_restart_keeps_data_and_port_and_a_taken_port_is_replaced(kafka_dir):
    bootstrap, _ = started(kafka_dir)
    assert kafka_sh("topics", kafka_dir, "kept:3").returncode == 0
    r = kafka_sh("status", kafka_dir)
    assert r.returncode == 0 and r.stdout.strip() == f"bootstrap={bootstrap}", r.stdout
    assert kafka_sh("stop", kafka_dir).returncode == 0
    assert kafka_sh("status", kafka_dir).returncode == 1

    # Restarted on the same data: the same address, the topic is still there.
    again, _ = started(kafka_dir)
    assert again == bootstrap
    assert "kept" in topic_names(again)
    assert kafka_sh("kill", kafka_dir).returncode == 0  # kill -9, then recovery

    # Someone else took the port meanwhile: another one is picked.
    port = int(bootstrap.rsplit(":", 1)[1])
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        moved, err = started(kafka_dir)
        assert moved != bootstrap and "taken" in err, (moved, err)
        wait_for(lambda: "kept" in topic_names(moved), 30, "the kept topic after the move")


def test_what_cannot_be_fetched_or_started_fails_clearly(workdir):
    d = os.path.join(workdir, "k")
    r = kafka_sh("start", d, env={"SLUICE_KAFKA_HOME": os.path.join(workdir, "no-kafka")})
    assert r.returncode == 1
    assert "SLUICE_KAFKA_HOME" in r.stderr and "no libs/ directory" in r.stderr, r.stderr

    r = kafka_sh("start", d, env={"SLUICE_KAFKA_VERSION": "0.0.1",
                                  "SLUICE_KAFKA_CACHE": os.path.join(workdir, "cache")})
    assert r.returncode == 1
    assert "could not fetch org.apache.kafka:kafka_2.13:0.0.1" in r.stderr, r.stderr
    assert "SLUICE_KAFKA_HOME=/opt/kafka" in r.stderr, r.stderr

    os.makedirs(os.path.join(d, "data"), exist_ok=True)
    with open(os.path.join(d, "data", "meta.properties"), "w") as f:
        f.write("this is not a KRaft meta.properties\n")
    r = kafka_sh("start", d, env={"SLUICE_KAFKA_START_TIMEOUT": "120"})
    assert r.returncode == 1
    assert "the broker exited while starting" in r.stderr, r.stderr[-3000:]
    assert kafka_sh("status", d).returncode == 1

    for args, text in ((["start", d, "--retention-ms", "five"], "--retention-ms"),
                       (["start", d, "--bogus"], "--bogus"),
                       (["frobnicate"], "unknown command 'frobnicate'"),
                       (["topics", d, "t:1"], "no broker was started")):
        r = kafka_sh(*args)
        assert r.returncode != 0, (args, r.stdout)
        assert text in r.stderr, (args, r.stderr)
    assert "kafka.sh start DIR" in kafka_sh("--help").stdout
