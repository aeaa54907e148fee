"""A camera's watch as a Ray actor, and the driver that raises its alerts.

The actor analyses; the driver (``cityunion video watch``) holds the ledger
identity and submits. So the wallet never travels to the cluster, which may be
remote and shared, and the chain checks the worker like any other caller
(``terminal`` of the camera's city). Ray restarts a killed actor
(``max_restarts``) and retries its ``run`` (``max_task_retries``); the
checkpoint makes the restarted one resume where the old one stopped.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from typing import Any

import ray
from ray.exceptions import GetTimeoutError, RayActorError

from workers.video.service import Raiser as Raiser
from workers.video.service import zones_of as zones_of
from workers.video.watch import CameraWatch, WatchConfig

log = logging.getLogger(__name__)


class CameraActor:
    """``CameraWatch`` behind Ray: ``run`` in one thread, the rest in others."""

    def __init__(self, config: WatchConfig) -> None:
        self.watch = CameraWatch(config)

    def run(self) -> dict[str, float]:
        return self.watch.run()

    def progress(self) -> dict[str, float]:
        return self.watch.progress()

    def take_alerts(self) -> list[dict[str, Any]]:
        return self.watch.take_alerts()

    def ack(self, keys: list[str]) -> None:
        self.watch.ack(keys)

    def stop(self) -> None:
        self.watch.stop()

    def pid(self) -> int:
        """The actor's process (a restart gives a new one)."""
        return os.getpid()


def start_actor(config: WatchConfig, name: str | None = None,
                actor: type[CameraActor] = CameraActor) -> Any:
    """The camera's actor on the connected cluster (restarted if it dies);
    ``actor``: a subclass instead (the bench's, which time-stamps frames)."""
    remote = ray.remote(actor)
    return remote.options(  # type: ignore[attr-defined]
        name=name, max_restarts=-1, max_task_retries=-1, max_concurrency=4,
        num_cpus=1).remote(config)


def drive(actor: Any, raise_alerts: Callable[[list[dict[str, Any]]], list[str]],
          on_progress: Callable[[dict[str, float]], None] = lambda p: None,
          poll_s: float = 0.5, restart_wait_s: float = 120.0) -> dict[str, float]:
    """Run the actor's watch to its end, raising its alerts as they come;
    rides out restarts of the actor (calls fail while it restarts)."""
    run_ref = actor.run.remote()
    last_ok = time.monotonic()
    while True:
        ready, _ = ray.wait([run_ref], timeout=poll_s)
        try:
            alerts = ray.get(actor.take_alerts.remote(), timeout=60)
            if alerts:
                ray.get(actor.ack.remote(raise_alerts(alerts)), timeout=60)
            progress = ray.get(actor.progress.remote(), timeout=60)
            last_ok = time.monotonic()
        except (RayActorError, GetTimeoutError) as e:
            if time.monotonic() - last_ok > restart_wait_s:
                raise
            log.warning("camera actor unavailable (%s); waiting", type(e).__name__)
            continue
        on_progress(progress)
        if ready:
            result: dict[str, float] = ray.get(run_ref)
            alerts = ray.get(actor.take_alerts.remote())
            if alerts:
                ray.get(actor.ack.remote(raise_alerts(alerts)))
            return {**result, **ray.get(actor.progress.remote())}
