import os
import sys
import tempfile

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from sluice_testlib import Broker  # noqa: E402


@pytest.fixture
def workdir():
    with tempfile.TemporaryDirectory(prefix="sluice-test-") as d:
        yield d


@pytest.fixture
def broker(workdir):
    b = Broker(workdir)
    yield b
    b.stop()
