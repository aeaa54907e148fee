"""The workers' Ray cluster: a local head started as a child process
(``ray start --head --block``), its state in the data directory, and how a
worker process joins it, or an existing cluster named by its address.

Ray 2.60 uses token authentication: the head is started with a fresh token
(``RAY_AUTH_MODE=token``, ``RAY_AUTH_TOKEN``) kept, with the address, in a
state file only the owner can read; a client joining by address needs the same
two variables. Ray's internal ports listen on every interface (only the
dashboard, off here, binds to 127.0.0.1): run it on a trusted network.
``--block`` matters: the head and its children stop with the one SIGTERM to
the ``ray start`` process; without it, they outlive it and hang.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

STATE_FILE = "cluster.json"


class ClusterError(Exception):
    """The cluster cannot be started, found or stopped; the message says why."""


@dataclass(frozen=True)
class Cluster:
    pid: int
    address: str
    token: str
    temp_dir: str
    num_cpus: int
    log: str

    def public(self) -> dict[str, object]:
        """What may be shown: everything but the token."""
        return {k: v for k, v in asdict(self).items() if k != "token"}


def state_dir(data_dir: Path) -> Path:
    return Path(data_dir) / "workers"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ray_executable() -> str:
    found = shutil.which("ray") or str(Path(sys.executable).parent / "ray")
    if not Path(found).exists():
        raise ClusterError("the `ray` command is missing: pip install -e '.[workers]'")
    return found


def _alive(pid: int) -> bool:
    """Whether ``pid`` is our ``ray start --block`` (not a reused pid)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"--block" in cmdline and any(b"ray" in part for part in cmdline[:3])


def load(data_dir: Path) -> Cluster | None:
    """The running cluster of this data directory, if any."""
    path = state_dir(data_dir) / STATE_FILE
    if not path.exists():
        return None
    cluster = Cluster(**json.loads(path.read_text("utf-8")))
    return cluster if _alive(cluster.pid) else None


def _reachable(address: str) -> bool:
    host, port = address.rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=0.5):
            return True
    except OSError:
        return False


def up(data_dir: Path, num_cpus: int | None = None, port: int | None = None,
       wait_s: float = 60.0) -> Cluster:
    """Start the head (or return the one running) and wait until it answers."""
    running = load(data_dir)
    if running is not None:
        return running
    sdir = state_dir(data_dir)
    sdir.mkdir(parents=True, exist_ok=True)
    port = port or _free_port()
    token = secrets.token_hex(32)
    # short: Ray's socket paths live under it and must stay under 108 bytes
    temp = tempfile.mkdtemp(prefix="cu-ray-")
    cpus = num_cpus or os.cpu_count() or 1
    log_path = sdir / "ray.log"
    cmd = [_ray_executable(), "start", "--head", "--block", f"--port={port}",
           f"--num-cpus={cpus}", "--include-dashboard=false",
           "--node-ip-address=127.0.0.1", f"--temp-dir={temp}",
           "--disable-usage-stats"]
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token}
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    cluster = Cluster(proc.pid, f"127.0.0.1:{port}", token, temp, cpus,
                      str(log_path))
    state = sdir / STATE_FILE
    fd = os.open(state, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:  # the token: owner only
        json.dump(asdict(cluster), f)
    deadline = time.monotonic() + wait_s
    while not _reachable(cluster.address):
        if proc.poll() is not None or time.monotonic() > deadline:
            tail = log_path.read_text("utf-8", "replace")[-2000:]
            down(data_dir)
            raise ClusterError(f"the Ray head did not start; {log_path}:\n{tail}")
        time.sleep(0.2)
    return cluster


def down(data_dir: Path, wait_s: float = 30.0) -> bool:
    """Stop the head with SIGTERM to its one pid; whether one was running."""
    path = state_dir(data_dir) / STATE_FILE
    if not path.exists():
        return False
    cluster = Cluster(**json.loads(path.read_text("utf-8")))
    was = _alive(cluster.pid)
    if was:
        os.kill(cluster.pid, signal.SIGTERM)
        deadline = time.monotonic() + wait_s
        while _alive(cluster.pid) and time.monotonic() < deadline:
            # reap it when it is our child (stopped by the process that started it)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(cluster.pid, os.WNOHANG)
            time.sleep(0.1)
        if _alive(cluster.pid):
            raise ClusterError(f"Ray head {cluster.pid} did not stop in {wait_s:.0f} s")
    path.unlink()
    shutil.rmtree(cluster.temp_dir, ignore_errors=True)
    return was


def join(data_dir: Path | None = None, address: str | None = None,
         num_cpus: int = 2) -> str:
    """Connect this process to Ray: ``address`` (token from the environment),
    else this data directory's running cluster, else a local one of its own.
    Returns what it joined."""
    # Ray reads its auth settings when first imported: set them before.
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if address is None and data_dir is not None and (c := load(data_dir)):
        address = c.address
        os.environ["RAY_AUTH_MODE"] = "token"
        os.environ["RAY_AUTH_TOKEN"] = c.token
    import ray

    if ray.is_initialized():
        return "already connected"
    if address:
        ray.init(address=address, log_to_driver=False)
        return address
    ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
    return "local"
