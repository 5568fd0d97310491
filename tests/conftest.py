"""Fixtures of the system tests.

`broker` runs each test that takes it once per broker kind: on sluice-devbroker
(its own, per test) and on a real Apache Kafka (scripts/kafka.sh, one per test
session, topics per test). SLUICE_TEST_BROKER_KINDS picks the kinds
(default "devbroker,kafka"); SLUICE_TEST_BROKERS=host:port runs every test
once, on that Kafka."""

import os
import sys
import tempfile

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from sluice_testlib import Broker, KafkaServer  # noqa: E402

BROKER_KINDS = (["external"] if os.environ.get("SLUICE_TEST_BROKERS") else
                [k for k in os.environ.get("SLUICE_TEST_BROKER_KINDS",
                                           "devbroker,kafka").split(",") if k])
for _kind in BROKER_KINDS:
    assert _kind in ("devbroker", "kafka", "external"), \
        f"SLUICE_TEST_BROKER_KINDS: unknown broker kind '{_kind}' (devbroker, kafka)"


@pytest.fixture
def workdir():
    with tempfile.TemporaryDirectory(prefix="sluice-test-") as d:
        yield d


@pytest.fixture(scope="session")
def kafka_server():
    """The session's real Kafka broker, started on first use."""
    with tempfile.TemporaryDirectory(prefix="sluice-kafka-") as d:
        server = KafkaServer(d)
        server.start()
        yield server
        server.stop()


@pytest.fixture(params=BROKER_KINDS)
def broker(request, workdir):
    kafka = request.getfixturevalue("kafka_server") if request.param == "kafka" else None
    b = Broker(workdir, kafka=kafka)
    yield b
    b.stop()
