"""The first README command in its short mode: the local cluster (dev broker,
or with --kafka a real Kafka from scripts/kafka.sh; coordinator, two
workers), the example jobs over generated streams, a drain, and a summary that
must show every injected fraud pattern alerted."""

import os
import re
import subprocess

import pytest

from conftest import BROKER_KINDS

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def running_demo_processes(demo_dir):
    out = subprocess.run(["pgrep", "-af", demo_dir], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if "pgrep" not in line]


@pytest.mark.parametrize("kind", [k for k in BROKER_KINDS if k != "external"])
def test_demo_short_mode_alerts_every_injected_pattern(kind):
    flags = ["--kafka"] if kind == "kafka" else []
    r = subprocess.run(["bash", os.path.join(REPO, "scripts", "demo.sh"), *flags, "--short", "2000"],
                       capture_output=True, text=True, timeout=600)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-4000:]
    m = re.search(r"injected fraud patterns alerted: (\d+) of (\d+)", out)
    assert m, out[-4000:]
    assert int(m.group(2)) > 0 and m.group(1) == m.group(2), out[-2000:]
    assert re.search(r"events in:\s+2000 payments, 2000 clicks", out), out[-2000:]
    assert re.search(r"sessions:\s+[1-9]", out), out[-2000:]
    demo_dir = re.search(r"logs and state in (\S+)", out).group(1)
    assert running_demo_processes(demo_dir) == []
