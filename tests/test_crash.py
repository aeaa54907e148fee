"""Crash safety: an acknowledged transaction survives SIGKILL mid-commit, and
no partial block is left behind.

A child process (crash_child.py) submits from several threads and prints each
acknowledged tx id; once enough are acknowledged the parent kills it with
SIGKILL after a random delay, reopens the ledger and checks it.
"""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from helpers import identifier_args

from ledger.embedded import EmbeddedLedger, EmbeddedNode

ROOT = Path(__file__).resolve().parent.parent
CHILD = ROOT / "tests" / "crash_child.py"
ACKNOWLEDGED = 200
THREADS = 6
TX_ID = re.compile(r"[0-9a-f]{64}\n")


def _run_and_kill(data: Path, delay: float, committer: str) -> list[str]:
    """Start the child, wait for ACKNOWLEDGED acks, wait ``delay``, SIGKILL it;
    returns every tx id it acknowledged (a line cut short by the kill is not)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT), os.environ.get("PYTHONPATH", "")])}
    child = subprocess.Popen([sys.executable, str(CHILD), str(data), str(THREADS),
                              committer],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, env=env)
    assert child.stdout is not None and child.stderr is not None
    lines: list[str] = []
    enough = threading.Event()

    def read() -> None:
        for line in child.stdout:  # type: ignore[union-attr]
            lines.append(line)
            if len(lines) >= ACKNOWLEDGED:
                enough.set()
        enough.set()  # end of output: the child died by itself

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert enough.wait(60), "the child acknowledged too little in 60 s"
        assert child.poll() is None, f"the child died: {child.stderr.read()}"
        time.sleep(delay)
    finally:
        if child.poll() is None:
            os.kill(child.pid, signal.SIGKILL)
        child.wait(10)
        reader.join(10)
    assert child.returncode == -signal.SIGKILL, child.stderr.read()
    child.stdout.close()
    child.stderr.close()
    complete = [ln for ln in lines if TX_ID.fullmatch(ln)]
    assert len(lines) - len(complete) <= 1, "only the last line may be cut short"
    return [ln.strip() for ln in complete]


@pytest.mark.parametrize("committer", ["thread", "process"])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_acknowledged_transactions_survive_sigkill(tmp_path: Path, seed: int,
                                                   committer: str) -> None:
    delay = random.Random(seed).uniform(0.0, 0.25)
    data = tmp_path / "ledger"
    # With a committer process, the kill orphans it mid-stream: reopening must
    # wait for it to finish its block, and still lose nothing acknowledged.
    acknowledged = _run_and_kill(data, delay, committer)
    assert len(acknowledged) >= ACKNOWLEDGED
    assert len(set(acknowledged)) == len(acknowledged)

    with EmbeddedNode(data) as node:  # reopening takes the dead child's lock
        missing = [t for t in acknowledged if not node.store.has_tx(t)]
        assert not missing, f"{len(missing)} acknowledged txs lost (delay {delay})"
        height = node.height()
        q = node.store._query
        assert [n for (n,) in q("SELECT number FROM blocks ORDER BY number")] == \
            list(range(height)), "block numbers are not contiguous"
        for table, column in (("txs", "block"), ("events", "block"),
                              ("state", "block"), ("history", "block")):
            assert q(f"SELECT COUNT(*) FROM {table} WHERE {column} >= ?",
                     (height,))[0][0] == 0, f"{table} rows of a block not stored"
        report = node.verify()  # includes every block's data hash over its txs
        assert report.ok, report
        assert report.transactions >= len(acknowledged)
        # and the ledger carries on from where it stopped
        client = EmbeddedLedger(node, node.wallet.identity("Kunshan", "transport"))
        receipt = client.submit("RegisterIdentifier", identifier_args("person"))
        assert receipt.block_number == height
        assert node.verify().ok
