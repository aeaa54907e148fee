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
from dataclasses import dataclass, field
from typing import Any

import ray
from ray.exceptions import GetTimeoutError, RayActorError

from chaincode.errors import Conflict
from ledger.protocol import Ledger
from workers.video.evidence import EvidenceStore
from workers.video.model import Zone
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


def zones_of(camera: dict[str, Any]) -> list[Zone]:
    """A camera's zones as recorded on chain (GetCamera)."""
    return [Zone(z["zone"], tuple((int(x), int(y)) for x, y in z["polygon"]),
                 tuple(z["detectors"]), int(z["min_people"]),
                 float(z["hold_seconds"]), float(z["garbage_seconds"]))
            for z in camera["zones"]]


@dataclass
class Raiser:
    """Submits pending alerts as the worker identity; stores their evidence in
    the driver's store first (checked against its digest)."""

    ledger: Ledger
    camera_id: str
    store: EvidenceStore
    raised: list[str] = field(default_factory=list)  # alert ids, this run
    duplicates: int = 0

    def __call__(self, alerts: list[dict[str, Any]]) -> list[str]:
        done = []
        for a in alerts:
            for digest, blob in a["blobs"].items():
                if self.store.put(blob) != digest:
                    raise ValueError(f"evidence {digest} arrived corrupt")
            args = {k: a[k] for k in ("incident", "kind", "confidence_permille",
                                      "observed_at", "zone", "evidence_sm3")}
            try:
                receipt = self.ledger.submit("RaiseVideoAlert",
                                             {"camera_id": self.camera_id, **args})
                self.raised.append(str(receipt.result["id"]))
            except Conflict as e:
                if e.field != "incident":
                    raise
                self.duplicates += 1  # raised before a restart: once is enough
            done.append(a["incident"])
        return done


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
