"""Where the committer runs, and the submitters waiting on it.

Endorsed transactions go to the committer through a queue; the committer is a
thread of the node (the default) or a process of its own, so that endorsement
and commit run on different cores. Both run ``Committer.run``, the one commit
loop; a thread resolves the submitters' futures directly, a process sends each
block's outcomes back over a queue and a receiver thread resolves them here.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import threading
from collections import deque
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from ledger import committer
from ledger.committer import DUPLICATE_TXID, VALID, Committer, Endorsed
from ledger.protocol import LedgerError, Receipt, SubmitError
from network.consortium import load_consortium

# A submitted transaction's future, with the response and events for its receipt.
Waiting = tuple[Future[Receipt], dict[str, Any], list[dict[str, Any]]]


class CommitQueue:
    """Endorsed transactions on their way to the committer, started on the first
    one, and the futures that wait for their receipts."""

    def __init__(self, writer: Committer, kind: str, data_dir: Path,
                 backend: str, writer_lock: Any) -> None:
        """``writer`` commits in a thread (``kind="thread"``); a committer
        process (``kind="process"``) opens its own on the same store, with the
        node key in ``data_dir`` and the crypto ``backend``, and takes
        ``writer_lock`` (``committer.lock``) over from this process."""
        self.writer = writer
        self.kind = kind
        self.data_dir = data_dir
        self.backend = backend
        self.writer_lock = writer_lock
        self.committed = threading.Condition()  # notified after every block
        self._queue: queue.Queue[Endorsed | None] = queue.Queue()
        self._waiting: dict[str, deque[Waiting]] = {}  # by tx id
        self._waiting_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._process: Any = None
        self._outbox: Any = None
        self._broken = ""  # why the committer process is gone, once it is

    def put(self, endorsed: Endorsed, response: dict[str, Any],
            events: list[dict[str, Any]]) -> Future[Receipt]:
        """Hand ``endorsed`` to the committer; the future gives its receipt."""
        future: Future[Receipt] = Future()
        with self._waiting_lock:
            if self._broken:
                raise LedgerError(self._broken, endorsed.tx_id)
            self._waiting.setdefault(endorsed.tx_id, deque()).append(
                (future, response, events))
        if self._thread is None:
            self._start()
        self._queue.put(endorsed)
        return future

    def stop(self) -> None:
        """Let the committer finish what it was given, then stop it."""
        if self._process is not None:
            self._queue.put(None)  # the process's inbox, in that mode
            if self._thread is not None:
                self._thread.join()  # the receiver ends on "closed"
            self._process.join(timeout=30)
            self._process = None
            self._thread = None
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None

    def wake(self) -> None:
        """Wake whoever waits for the next block (it may never come)."""
        with self.committed:
            self.committed.notify_all()

    # ------------------------------------------------------------- placement
    def _start(self) -> None:
        with self.committed:
            if self._thread is not None:
                return
            if self.kind == "thread":
                target = self._commit_here
            else:
                self._start_process()
                target = self._receive
            self._thread = threading.Thread(target=target, name="committer",
                                            daemon=True)
            self._thread.start()

    def _commit_here(self) -> None:
        def get(timeout: float | None) -> Endorsed | None:
            return self._queue.get(timeout=timeout)

        try:
            self.writer.run(get, self._resolve, self._fail)
        finally:  # the committer's own connection, which close() cannot reach
            self.writer.store.close()

    def _start_process(self) -> None:
        self.writer_lock.close()  # the committer process takes it over
        ctx = multiprocessing.get_context("spawn")
        inbox, self._outbox = ctx.Queue(), ctx.Queue()
        self._queue = inbox  # type: ignore[assignment]
        self._process = ctx.Process(
            target=committer.serve, name="cityunion-committer", daemon=True,
            args=(self.writer.store.target, str(self.data_dir),
                  load_consortium().center.name,
                  self.backend, self.writer.block_max_txs,
                  self.writer.block_timeout, inbox, self._outbox, os.getpid()))
        self._process.start()

    def _receive(self) -> None:
        why = "the committer stopped"
        while True:
            try:
                message = self._outbox.get(timeout=1.0)
            except queue.Empty:
                if self._process.is_alive():
                    continue
                why = (f"the committer process ended (exit code "
                       f"{self._process.exitcode}); see its error output")
                break
            if message[0] == "block":
                self._resolve(message[1], message[2])
            elif message[0] == "failed":
                self._fail(message[1], message[2])
            else:  # "closed"
                break
        with self._waiting_lock:  # no submit may wait on a committer now gone
            self._broken = why
        self._fail(list(self._waiting), why)

    # -------------------------------------------------------------- receipts
    def _take(self, tx_id: str) -> Waiting | None:
        with self._waiting_lock:
            waiting = self._waiting.get(tx_id)
            if not waiting:
                return None
            entry = waiting.popleft()
            if not waiting:
                del self._waiting[tx_id]
            return entry

    def _resolve(self, number: int, outcomes: list[tuple[str, str]]) -> None:
        with self.committed:  # followers read the block after this wakes them
            self.committed.notify_all()
        for tx_id, status in outcomes:
            entry = self._take(tx_id)
            if entry is None:
                continue
            future, response, events = entry
            if status == DUPLICATE_TXID:
                future.set_exception(SubmitError(f"duplicate tx id {tx_id}", tx_id))
            else:
                future.set_result(Receipt(tx_id, number, status, response,
                                          events if status == VALID else []))

    def _fail(self, tx_ids: list[str], why: str) -> None:
        for tx_id in tx_ids:
            while (entry := self._take(tx_id)) is not None:
                entry[0].set_exception(LedgerError(f"commit failed: {why}", tx_id))
