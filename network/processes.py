"""The network's processes: started detached with one log each, tracked by pid.

``state.json`` in the network directory records every pid the launcher started
(with the command it ran), so ``network status`` and ``network down`` work from
any later shell, and a pid reused by an unrelated process is never signalled.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any


class NetworkError(Exception):
    """A step of bringing the network up failed; the message says which and why."""


class NodeFailed(NetworkError):
    """A process exited or never became ready; the message has its log's tail."""


def _load(state_file: Path) -> dict[str, Any]:
    if state_file.exists():
        return dict(json.loads(state_file.read_text()))
    return {}


def read_state(state_file: Path) -> dict[str, Any]:
    return _load(state_file)


def update_state(state_file: Path, **values: Any) -> None:
    state = _load(state_file)
    state.update(values)
    tmp = state_file.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2))
    tmp.replace(state_file)


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def running(state_file: Path, name: str) -> int | None:
    """The pid of ``name`` if the process the launcher started still runs."""
    entry = _load(state_file).get("processes", {}).get(name)
    if not entry:
        return None
    pid = int(entry["pid"])
    if _gone(pid):
        return None
    cmd = _cmdline(pid)  # empty while it exits; another program: pid reused
    return None if cmd and entry["program"] not in cmd else pid


def start(state_file: Path, name: str, command: list[str], env: dict[str, str],
          log: Path, cwd: Path | None = None) -> int:
    """Start ``command`` detached (own session), output appended to ``log``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        out.write(f"\n==== {time.strftime('%Y-%m-%dT%H:%M:%S')} starting "
                  f"{' '.join(command)}\n".encode())
        out.flush()
        proc = subprocess.Popen(command, env={**os.environ, **env}, stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                cwd=cwd, start_new_session=True)
    state = _load(state_file)
    state.setdefault("processes", {})[name] = {
        "pid": proc.pid, "program": Path(command[0]).name if "/" in command[0]
        else command[0], "log": str(log)}
    update_state(state_file, processes=state["processes"])
    return proc.pid


def stop(state_file: Path, name: str, timeout: float = 10.0,
         kill: bool = False) -> bool:
    """Stop one process (its whole session); True if it was running."""
    pid = running(state_file, name)
    if pid is None:
        return False
    sig = signal.SIGKILL if kill else signal.SIGTERM
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, sig)
    deadline = time.monotonic() + timeout
    while not _gone(pid):  # (an exiting process loses its cmdline first, and
        # closes its sockets only later: wait for the zombie, or nothing)
        if time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
            deadline = time.monotonic() + 5
        time.sleep(0.05)
    return True


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state in ("Z", "X")


def log_tail(log: Path, lines: int = 12) -> str:
    if not log.exists():
        return "(no log)"
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


def wait_port(state_file: Path, name: str, port: int, log: Path,
              timeout: float = 30.0) -> None:
    """Wait until ``port`` on 127.0.0.1 accepts connections; fail with the log's
    tail if the process exits first or the time runs out."""
    deadline = time.monotonic() + timeout
    while True:
        with socket.socket() as s:
            s.settimeout(0.2)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        if running(state_file, name) is None:
            raise NodeFailed(f"{name} exited; the end of {log}:\n{log_tail(log)}")
        if time.monotonic() > deadline:
            raise NodeFailed(f"{name} is not listening on port {port} after "
                             f"{timeout:.0f} s; the end of {log}:\n{log_tail(log)}")
        time.sleep(0.05)


def port_in_use(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0
