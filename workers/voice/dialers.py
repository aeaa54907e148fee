"""Where calls run: ``CallWorker`` is one process's call engine (at most
``PJSUA_MAX_CALLS`` calls); ``LocalDialer`` uses one in this process, and
``RayDialer`` spreads calls over several, each a Ray actor (a process of its
own, so more calls at once and a crash takes only its own calls).

Ray is reached through ``connect_ray`` only: a local cluster by default, or an
existing one by address. (A shared ``workers/cluster.py`` is being built
separately; this is the one place to switch to it.)
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from workers.voice.asr import load_recogniser
from workers.voice.intent import RuleMatcher
from workers.voice.journal import INTERRUPTED
from workers.voice.recordings import RecordingStore
from workers.voice.robot import PJSUA_MAX_CALLS, CallEngine, CallResult, LinesBusy
from workers.voice.sip import raise_priority
from workers.voice.template import Template
from workers.voice.tts import PromptCache


@dataclass(frozen=True)
class EngineSpec:
    """What a call worker needs to build its engine (sent to Ray actors)."""

    template: Template
    prompt_dir: str
    sip_port: int
    rtp_port: int
    ring_timeout_s: float | None = None
    asr_model: str | None = None
    recording_dir: str | None = None
    recording_key: str | None = None  # hex; None: stored in clear


class CallWorker:
    """A call engine driven in steps: queued dials go out as lines free up.
    ``own_process``: this process does nothing else (a Ray actor), so it runs
    its calls at a raised priority (``sip.raise_priority``)."""

    def __init__(self, spec: EngineSpec, own_process: bool = False) -> None:
        self.nice = raise_priority() if own_process else os.getpriority(
            os.PRIO_PROCESS, 0)
        recogniser = load_recogniser(Path(spec.asr_model) if spec.asr_model
                                     else None)
        self.engine = CallEngine(spec.template, PromptCache(Path(spec.prompt_dir)),
                                 spec.sip_port, spec.rtp_port, recogniser=recogniser,
                                 matcher=RuleMatcher(),
                                 ring_timeout_s=spec.ring_timeout_s,
                                 recordings=RecordingStore(
                                     Path(spec.recording_dir),
                                     bytes.fromhex(spec.recording_key)
                                     if spec.recording_key else None)
                                 if spec.recording_dir else None)
        self.queue: list[tuple[str, str]] = []

    def step(self, dials: list[tuple[str, str]], ms: int) -> list[CallResult]:
        """Queue ``dials``, place what the free lines allow, and handle events
        for about ``ms``; returns the calls that ended."""
        self.queue.extend(dials)
        out: list[CallResult] = []
        end = time.monotonic() + ms / 1000
        while True:
            while self.queue and self.engine.active < self.engine.max_calls:
                key, uri = self.queue[0]
                try:
                    failed = self.engine.dial(key, uri)
                except LinesBusy:
                    break
                self.queue.pop(0)
                if failed:
                    out.append(failed)
            out += self.engine.step(10)
            if time.monotonic() >= end:
                return out

    def load(self) -> int:
        return self.engine.active + len(self.queue)

    def niceness(self) -> int:
        return self.nice

    def close(self) -> None:
        self.engine.close()


class LocalDialer:
    """One call worker in this process (no Ray)."""

    def __init__(self, spec: EngineSpec) -> None:
        self.worker = CallWorker(spec)
        self.capacity = PJSUA_MAX_CALLS
        self._dials: list[tuple[str, str]] = []

    def dial(self, contact_id: str, uri: str) -> None:
        self._dials.append((contact_id, uri))

    def poll(self, wait_s: float) -> list[CallResult]:
        dials, self._dials = self._dials, []
        return self.worker.step(dials, int(wait_s * 1000))

    def close(self) -> None:
        self.worker.close()


_ray_lock = threading.Lock()


def connect_ray(address: str | None = None, num_cpus: int | None = None) -> None:
    """Join the Ray cluster at ``address`` (or ``$RAY_ADDRESS``), or start a
    local one; nothing if this process is already connected.

    Off the main thread (a campaign the API runs), Ray is started from a
    thread that lives as long as the process: Ray's local processes (raylet,
    GCS) are started with PR_SET_PDEATHSIG, so the kernel kills them when the
    *thread* that started them ends, and a campaign's thread ends with it."""
    import ray

    address = address or os.environ.get("RAY_ADDRESS") or None

    def init() -> None:
        if address:
            ray.init(address=address, include_dashboard=False, log_to_driver=False)
        else:
            ray.init(num_cpus=num_cpus or os.cpu_count() or 2,
                     include_dashboard=False, log_to_driver=False)

    with _ray_lock:
        if ray.is_initialized():
            return
        if threading.current_thread() is threading.main_thread():
            init()
            return
        ready = threading.Event()
        failed: list[BaseException] = []

        def own() -> None:
            try:
                init()
            except BaseException as e:  # raised in the caller below
                failed.append(e)
            ready.set()
            if not failed:
                threading.Event().wait()  # until the process ends

        threading.Thread(target=own, daemon=True, name="ray-owner").start()
        ready.wait()
        if failed:
            raise failed[0]


class RayDialer:
    """``workers`` call workers as Ray actors, each on ports of its own."""

    def __init__(self, spec: EngineSpec, workers: int) -> None:
        import ray

        # An actor holds a SIP endpoint, not a CPU: many fit on 2 cores.
        self._actor = ray.remote(num_cpus=0.1, max_restarts=0)(CallWorker)
        self._ray: Any = ray
        self._spec = spec
        self.actors: list[Any] = [self._start(i) for i in range(workers)]
        self.capacity = PJSUA_MAX_CALLS * workers
        self.restarts = 0
        self._load = [0] * workers
        self._owner: dict[str, tuple[int, str]] = {}
        self._dials: list[list[tuple[str, str]]] = [[] for _ in range(workers)]

    def _start(self, i: int) -> Any:
        return self._actor.remote(replace(
            self._spec, sip_port=self._spec.sip_port + i,  # type: ignore[attr-defined]
            rtp_port=self._spec.rtp_port + 200 * i), own_process=True)

    def dial(self, contact_id: str, uri: str) -> None:
        i = min(range(len(self.actors)), key=lambda j: self._load[j])
        self._load[i] += 1
        self._owner[contact_id] = (i, uri)
        self._dials[i].append((contact_id, uri))

    def poll(self, wait_s: float) -> list[CallResult]:
        """Results of the calls that ended. A call worker that died (its
        process killed, crashed) ends its calls as ``interrupted`` (the
        campaign retries them per its policy) and is started again."""
        ms = int(wait_s * 1000)
        refs = [a.step.remote(d, ms) for a, d in zip(self.actors, self._dials,
                                                    strict=True)]
        self._dials = [[] for _ in self.actors]
        results: list[CallResult] = []
        for i, ref in enumerate(refs):
            try:
                batch = self._ray.get(ref, timeout=60 + wait_s)
            except self._ray.exceptions.RayActorError:
                batch = [CallResult(k, uri, INTERRUPTED)
                         for k, (j, uri) in self._owner.items() if j == i]
                self.actors[i] = self._start(i)
                self.restarts += 1
            for r in batch:
                self._load[self._owner.pop(r.key)[0]] -= 1
                results.append(r)
        return results

    def close(self) -> None:
        try:
            self._ray.get([a.close.remote() for a in self.actors], timeout=30)
        finally:
            for a in self.actors:
                self._ray.kill(a)
