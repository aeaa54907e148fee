"""Fixtures of the video worker tests: one local Ray cluster for the session
(2 CPUs, no dashboard), shared with any other suite that started one."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[None]:
    ray = pytest.importorskip("ray")
    if ray.is_initialized():  # another suite's session cluster
        yield
        return
    # no usage report or metrics agent traffic from tests
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()
