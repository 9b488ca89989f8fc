"""Shared fixtures: a simulator served over real HTTP on 127.0.0.1 in a background thread."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import structlog

from exporter.simulator import Simulator, WorkloadParams
from exporter.simulator.run import Endpoint, run_in_thread
from tests.helpers import KEY_ID, SECRET


@pytest.fixture(autouse=True)
def _plain_structlog() -> Iterator[None]:
    """Undoes any structlog configuration a test made (the CLI configures it), so log capture works everywhere."""
    yield
    structlog.reset_defaults()


@pytest.fixture
def simulator() -> Iterator[Endpoint]:
    """A simulator with a small steady workload, accepting the test key pair."""
    with run_in_thread(Simulator({KEY_ID: SECRET}, seed=7, workload=WorkloadParams(target_running=60))) as endpoint:
        yield endpoint
