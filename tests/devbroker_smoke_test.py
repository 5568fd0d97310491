"""Smoke tests for sluice-devbroker (tools/devbroker/).

Starts the real binary, talks Kafka to it with confluent_kafka and drives its
control port. Run from the repository root with Debian's interpreter:

    /usr/bin/python3 -m pytest tests/devbroker_smoke_test.py

The binary is $SLUICE_BUILD_DIR/tools/devbroker/sluice-devbroker
(SLUICE_BUILD_DIR defaults to /work/main/build). Needs python3-confluent-kafka
and python3-pytest. No fixed sleeps: every wait polls against a deadline.
"""

import os
import signal
import socket
import subprocess
import time

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

BUILD_DIR = os.environ.get("SLUICE_BUILD_DIR", "/work/main/build")
BINARY = os.path.join(BUILD_DIR, "tools", "devbroker", "sluice-devbroker")

STARTUP_TIMEOUT_S = 15
STOP_TIMEOUT_S = 15


def wait_until(predicate, timeout_s, what, interval_s=0.02):
    """Polls predicate() until it returns a truthy value or the deadline passes."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(interval_s)


def read_bootstrap_file(path):
    """Parses the key=value lines of a --bootstrap-file, or None if not there yet."""
    try:
        with open(path) as f:
            text = f.read()
    except FileNotFoundError:
        return None
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def host_port(addr):
    host, port = addr.rsplit(":", 1)
    return host, int(port)


class Devbroker:
    """A running sluice-devbroker process and the addresses it announced."""

    def __init__(self, proc, info, stderr_path):
        self.proc = proc
        self.info = info
        self.stderr_path = stderr_path
        self.bootstrap = info["bootstrap"]
        self.control = info["control"]

    def command(self, line, timeout_s=10):
        """Sends one control command and returns the reply line."""
        with socket.create_connection(host_port(self.control), timeout=timeout_s) as s:
            f = s.makefile("rw", newline="\n")
            f.write(line + "\n")
            f.flush()
            reply = f.readline()
        assert reply.endswith("\n"), f"no full reply to {line!r}: {reply!r}"
        return reply.rstrip("\n")

    def stderr(self):
        with open(self.stderr_path) as f:
            return f.read()


@pytest.fixture
def start_devbroker(tmp_path):
    """Factory: start_devbroker(*flags) -> Devbroker, stopped with SIGTERM at teardown."""
    started = []

    def start(*flags):
        assert os.access(BINARY, os.X_OK), f"build sluice-devbroker first: {BINARY}"
        n = len(started)
        bootstrap_file = tmp_path / f"bootstrap{n}.txt"
        stderr_path = tmp_path / f"devbroker{n}.stderr"
        with open(stderr_path, "w") as err:
            proc = subprocess.Popen(
                [BINARY, "--bootstrap-file", str(bootstrap_file), *flags],
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
            )
        started.append(proc)

        def ready():
            if proc.poll() is not None:
                raise AssertionError(
                    f"devbroker exited with {proc.returncode}:\n{stderr_path.read_text()}"
                )
            return read_bootstrap_file(bootstrap_file)

        info = wait_until(ready, STARTUP_TIMEOUT_S, "the bootstrap file")
        # The first stdout line is the bootstrap address, and matches the file.
        assert proc.stdout.readline().rstrip("\n") == "bootstrap=" + info["bootstrap"]
        return Devbroker(proc, info, stderr_path)

    yield start

    codes = []
    for proc in started:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        codes.append(proc.returncode)
        proc.stdout.close()
    assert codes == [0] * len(started), f"devbroker exit codes after SIGTERM: {codes}"


def produce(bootstrap, topic, messages, timeout_s=30, extra_config=None):
    """Produces (key, value) pairs; returns the delivery errors (empty when all succeeded)."""
    config = {
        "bootstrap.servers": bootstrap,
        "message.timeout.ms": str(timeout_s * 1000),
        "reconnect.backoff.max.ms": "500",
    }
    config.update(extra_config or {})
    producer = Producer(config)
    delivered = []
    errors = []

    def on_delivery(err, msg):
        delivered.append(msg)
        if err is not None:
            errors.append(err)

    for key, value in messages:
        producer.produce(topic, key=key, value=value, on_delivery=on_delivery)
        producer.poll(0)
    wait_until(lambda: producer.flush(0.1) == 0, timeout_s + 5, "deliveries")
    assert len(delivered) == len(messages)
    return errors


def consume_all(bootstrap, topic, partitions, expected_count, timeout_s=30):
    """Reads partitions from the beginning until expected_count messages arrived."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "devbroker-smoke",
            "enable.auto.commit": "false",
        }
    )
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
    received = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(received) < expected_count and time.monotonic() < deadline:
            msg = consumer.poll(0.2)
            if msg is None:
                continue
            assert msg.error() is None, msg.error()
            received.append(msg)
    finally:
        consumer.close()
    return received


def keyed_messages(n, prefix="k"):
    return [(f"{prefix}{i}".encode(), f"value-{i}".encode()) for i in range(n)]


def test_produce_and_consume_roundtrip(start_devbroker):
    broker = start_devbroker("--port", "0", "--topic", "t:3")
    assert "listening" not in broker.info
    messages = keyed_messages(100)
    assert produce(broker.bootstrap, "t", messages) == []

    received = consume_all(broker.bootstrap, "t", 3, len(messages))
    assert len(received) == 100
    assert sorted((m.key(), m.value()) for m in received) == sorted(messages)
    # Keyed messages spread over the topic's partitions.
    assert {m.partition() for m in received} <= {0, 1, 2}
    assert len({m.partition() for m in received}) > 1


def test_control_port_down_for_and_bad_command(start_devbroker):
    broker = start_devbroker("--port", "0", "--topic", "t:3")
    assert broker.command("ping") == "ok"
    # A connected producer first, so the outage hits live connections.
    assert produce(broker.bootstrap, "t", keyed_messages(10, "before")) == []

    assert broker.command("down-for 3") == "ok"
    # The broker really is down: its listener refuses connections.
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(host_port(broker.bootstrap), timeout=2).close()
    # The control loop keeps answering while the brokers are down.
    assert broker.command("ping") == "ok"

    started = time.monotonic()
    assert produce(broker.bootstrap, "t", keyed_messages(10, "after")) == []
    # Deliveries completed only once the broker was back up.
    assert time.monotonic() - started > 1.5

    reply = broker.command("bogus")
    assert reply.startswith("error "), reply
    assert broker.command("down 99").startswith("error ")
    assert broker.command("create-topic only-name").startswith("error ")
    assert broker.command("ping") == "ok"


def test_fixed_port_forwards_the_bootstrap_connection(start_devbroker):
    port = free_port()
    broker = start_devbroker("--port", str(port), "--topic", "t:3")
    assert broker.info["listening"] == f"127.0.0.1:{port}"
    fixed = f"127.0.0.1:{port}"
    messages = keyed_messages(20, "fixed")
    assert produce(fixed, "t", messages) == []
    received = consume_all(fixed, "t", 3, len(messages))
    assert sorted((m.key(), m.value()) for m in received) == sorted(messages)


def test_taken_fixed_port_fails_clearly(tmp_path):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        result = subprocess.run(
            [BINARY, "--port", str(port), "--bootstrap-file", str(tmp_path / "b.txt")],
            capture_output=True,
            text=True,
            timeout=STARTUP_TIMEOUT_S,
        )
    assert result.returncode != 0
    assert "already in use" in result.stderr
    assert not (tmp_path / "b.txt").exists()


def test_bad_flag_prints_usage_and_fails():
    result = subprocess.run(
        [BINARY, "--no-such-flag"], capture_output=True, text=True, timeout=STARTUP_TIMEOUT_S
    )
    assert result.returncode != 0
    assert "--control-port" in result.stdout + result.stderr
