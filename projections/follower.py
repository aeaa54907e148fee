"""The projection follower: committed ledger events into the read models,
exactly once, in ledger order.

Each projection's position ``(block, tx, event)`` lives in the
``projection_tracking`` table and is advanced in the same database transaction
as the view updates it guards, by compare-and-set from the position the follower
last read: if anyone else moved it (a second follower, a rebuild), the
transaction fails, nothing is written twice, and the follower re-reads the
positions and skips what is already applied. After a crash the follower
resumes from the committed positions, so nothing is missed either.

Why not ``eventsourcing``'s ``ProjectionRunner``: it subscribes to an
eventsourcing ``Application``'s notification log (one integer sequence) through
its ``ApplicationRecorder``, and its SQLite and PostgreSQL ``TrackingRecorder``
classes record one integer notification id per event in their own datastores.
Our source is the ledger's committed-event stream (embedded events table or
Fabric chaincode events), positioned by ``(block, tx, event)``; adapting it would
mean a fake Application and packing three numbers into one, and writing every
view twice (once per recorder class). Keeping the library's idea — the tracking
record is written atomically with the view, and its uniqueness refuses a second
application — in one small table over one SQL dialect is simpler. Events are
applied in batches (one transaction per batch), which keeps the lag low when
blocks arrive quickly.

Threads: a reader thread tails ``ledger.events(after, follow=True)`` into a
bounded queue; the applier thread drains it in batches. The blocks projection
is advanced by the applier whenever the queue runs dry (and every half second
under load).

An event a projection cannot apply (a handler error, a value the database
refuses) would fail every retry, so it stops the follower: everything before it
is applied, nothing after it, and the failure (projection, event position,
error) is recorded in ``projection_failures`` for ``status`` and
``cityunion projections status`` until the event is applied (after a fix, by a
restart or a rebuild). A database that cannot be reached is retried instead.
"""

from __future__ import annotations

import logging
import queue
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ledger.protocol import CommittedEvent, Ledger, Position
from projections.db import Cursor, Database
from projections.views import (
    ALL_PROJECTIONS,
    BLOCKS,
    EVENT_PROJECTIONS,
    TRACKING_SCHEMA,
    Projection,
)

log = logging.getLogger(__name__)

START = Position(-1, -1, -1)
BlockVerifier = Callable[[int], str | None]
"""Checks one block's hash link and signature; returns what failed, or None."""


FAILURES_SCHEMA = """
CREATE TABLE IF NOT EXISTS projection_failures (
    name TEXT PRIMARY KEY, block BIGINT NOT NULL, tx INTEGER NOT NULL,
    event INTEGER NOT NULL, tx_id TEXT, event_type TEXT NOT NULL,
    error TEXT NOT NULL, failed_at TEXT NOT NULL)
"""


class PositionConflict(Exception):
    """A projection's stored position is not the one this follower last read."""


@dataclass(frozen=True)
class ProjectionFailure:
    """An event a projection could not apply; the follower stopped before it."""

    projection: str
    position: Position
    tx_id: str | None
    event_type: str
    error: str  # one line: the exception's type and message
    failed_at: str

    def __str__(self) -> str:
        b, t, e = self.position
        return (f"projection {self.projection} cannot apply {self.event_type} at "
                f"block {b}, tx {t}, event {e} (tx id {self.tx_id}): {self.error}")


class ProjectionFailed(Exception):
    """Raised when an event cannot be projected (see ``ProjectionFailure``)."""

    def __init__(self, failure: ProjectionFailure) -> None:
        super().__init__(str(failure))
        self.failure = failure


def _transient(e: BaseException) -> bool:
    """A database that cannot be reached or is busy: worth retrying, unlike an
    event that cannot be projected."""
    if isinstance(e, sqlite3.OperationalError):
        return True
    psycopg = sys.modules.get("psycopg")
    return psycopg is not None and isinstance(e, psycopg.OperationalError)


def _failure(projection: str, ev: CommittedEvent,
             e: BaseException) -> ProjectionFailure:
    error = " ".join(f"{type(e).__name__}: {e}".split())  # one line
    return ProjectionFailure(projection, ev.position, ev.tx_id, ev.type,
                             error[:1000], datetime.now(UTC).isoformat())


def ensure_schema(db: Database) -> None:
    """Create the read-model tables and a starting position per projection."""
    db.script(TRACKING_SCHEMA + ";" + FAILURES_SCHEMA + ";"
              + ";".join(p.schema for p in ALL_PROJECTIONS))
    columns = db.query("SELECT * FROM projection_tracking LIMIT 1")
    if columns and "tx_id" not in columns[0]:  # made before tx ids were kept
        db.script("ALTER TABLE projection_tracking ADD COLUMN tx_id TEXT")
    with db.transaction() as cur:
        cur.executemany("INSERT INTO projection_tracking "
                        "(name, block, tx, event) VALUES (?, -1, -1, -1) "
                        "ON CONFLICT (name) DO NOTHING",
                        [(p.name,) for p in ALL_PROJECTIONS])


def read_positions(db: Database | Cursor) -> dict[str, Position]:
    return {r["name"]: Position(r["block"], r["tx"], r["event"])
            for r in db.query("SELECT name, block, tx, event "
                              "FROM projection_tracking")}


def read_failures(db: Database) -> list[ProjectionFailure]:
    """The recorded failures, earliest event first (none while healthy)."""
    return [ProjectionFailure(r["name"], Position(r["block"], r["tx"], r["event"]),
                              r["tx_id"], r["event_type"], r["error"],
                              r["failed_at"])
            for r in db.query("SELECT * FROM projection_failures "
                              "ORDER BY block, tx, event, name")]


def clear(cur: Cursor, projections: Iterable[Projection] = ALL_PROJECTIONS) -> None:
    """Empty the views, reset their positions and forget their failures, in
    the caller's transaction."""
    for p in projections:
        for table in p.tables:
            cur.execute(f"DELETE FROM {table}")
        cur.execute("UPDATE projection_tracking SET block = -1, tx = -1, "
                    "event = -1, updated_at = NULL, tx_id = NULL WHERE name = ?",
                    (p.name,))
        cur.execute("DELETE FROM projection_failures WHERE name = ?", (p.name,))


def _advance(cur: Cursor, name: str, old: Position, new: Position,
             tx_id: str | None = None) -> None:
    """Move a projection's checkpoint, (block, tx, event) and the transaction id
    there, from ``old`` (compare-and-set) inside the views' transaction."""
    changed = cur.execute(
        "UPDATE projection_tracking SET block = ?, tx = ?, event = ?, "
        "updated_at = ?, tx_id = ? "
        "WHERE name = ? AND block = ? AND tx = ? AND event = ?",
        (*new, datetime.now(UTC).isoformat(), tx_id, name, *old))
    if changed != 1:
        raise PositionConflict(f"projection {name} is no longer at {tuple(old)}")


@dataclass(frozen=True)
class FollowerStatus:
    """What the dashboard shows as projection lag."""

    running: bool
    positions: dict[str, Position]
    ledger_height: int
    last_applied_at: str | None
    last_lag_ms: float | None  # event timestamp (submit) to its view commit
    error: str | None
    failure: ProjectionFailure | None = None  # set: stopped before this event

    @property
    def healthy(self) -> bool:
        return self.error is None and self.failure is None


class Follower:
    """Keeps the read models up to date with one ledger."""

    def __init__(self, ledger: Ledger, db: Database, *,
                 verify_block: BlockVerifier | None = None,
                 batch_size: int = 1000,
                 before_commit: Callable[[], None] | None = None,
                 projections: Sequence[Projection] = EVENT_PROJECTIONS) -> None:
        self.ledger = ledger
        self.db = db
        self.verify_block = verify_block
        self.batch_size = batch_size
        self.before_commit = before_commit  # a seam for crash tests
        self.projections = projections  # a seam for failure tests
        ensure_schema(db)
        self.positions = read_positions(db)
        failures = read_failures(db)
        self._failure: ProjectionFailure | None = failures[0] if failures else None
        self._cursor: Cursor | None = None  # while a rebuild holds one transaction
        self._queue: queue.Queue[CommittedEvent] = queue.Queue(maxsize=10_000)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._progress = threading.Condition()
        self._height = 0
        self._last_applied_at: str | None = None
        self._last_lag_ms: float | None = None
        self._error: str | None = None

    # ------------------------------------------------------------- applying
    @contextmanager
    def _transaction(self) -> Iterator[Cursor]:
        if self._cursor is not None:  # a rebuild's: committed by the rebuild
            yield self._cursor
            return
        with self.db.transaction() as cur:
            yield cur

    def _read_positions(self) -> dict[str, Position]:
        return read_positions(self._cursor or self.db)

    def apply(self, events: Sequence[CommittedEvent]) -> int:
        """Apply events in one transaction with the positions they reach;
        events at or before a projection's position are skipped for it.
        Returns how many (projection, event) updates were made.

        An event a projection cannot apply raises ``ProjectionFailed``, once
        the events before it are applied and the failure is recorded."""
        try:
            while True:
                try:
                    return self._apply_once(events)
                except PositionConflict as e:
                    log.warning("%s; re-reading positions", e)
                    self.positions = self._read_positions()
        except ProjectionFailed as failed:
            if self._cursor is None:  # a rebuild's transaction is lost anyway
                earlier = [e for e in events if e.position < failed.failure.position]
                if earlier:
                    self.apply(earlier)  # raises an earlier failure, if any
                self._record(failed.failure)
            self._failure = failed.failure
            raise

    def _apply_once(self, events: Sequence[CommittedEvent]) -> int:
        moved: dict[str, Position] = {}
        applied = 0
        failure = self._failure
        with self._transaction() as cur:
            for p in self.projections:
                old = self.positions[p.name]
                mine = [e for e in events if e.position > old]
                if not mine:
                    continue
                _advance(cur, p.name, old, mine[-1].position, mine[-1].tx_id)
                moved[p.name] = mine[-1].position
                for ev in mine:
                    try:
                        p.apply(cur, ev)
                    except Exception as e:
                        if _transient(e):
                            raise
                        raise ProjectionFailed(_failure(p.name, ev, e)) from e
                applied += len(mine)
            passed = failure is not None and moved.get(
                failure.projection, START) >= failure.position
            if passed:
                cur.execute("DELETE FROM projection_failures")
            if self.before_commit is not None and moved:
                self.before_commit()
        self.positions.update(moved)
        if passed:
            self._failure = None
        if moved:
            now = datetime.now(UTC)
            self._last_applied_at = now.isoformat()
            self._last_lag_ms = (now - datetime.fromisoformat(
                events[-1].timestamp)).total_seconds() * 1000
        return applied

    def project_blocks(self, chunk: int = 100) -> int:
        """Project every block not yet in the blocks view; returns how many."""
        self._height = height = self.ledger.height()
        done = 0
        while self.positions[BLOCKS.name].block < height - 1:
            old = self.positions[BLOCKS.name]
            last = min(height - 1, old.block + chunk)
            numbers = range(old.block + 1, last + 1)
            fetched = [(n, self.ledger.block(n)) for n in numbers]
            checked = [(n, b, self.verify_block(n) if self.verify_block else None)
                       for n, b in fetched]
            new = Position(last, 0, 0)
            try:
                with self._transaction() as cur:
                    _advance(cur, BLOCKS.name, old, new)
                    for n, block, error in checked:
                        BLOCKS.add(cur, n, block, error,
                                   self.verify_block is not None)
            except PositionConflict:
                self.positions = self._read_positions()
                continue
            self.positions[BLOCKS.name] = new
            done += len(numbers)
        return done

    def _start_position(self) -> Position:
        return min(self.positions[p.name] for p in self.projections)

    def _record(self, failure: ProjectionFailure) -> None:
        """Keep the failure where ``projections status`` finds it."""
        log.error("%s; the projection follower stops", failure)
        try:
            with self.db.transaction() as cur:
                cur.execute("DELETE FROM projection_failures")
                cur.execute("INSERT INTO projection_failures VALUES "
                            "(?, ?, ?, ?, ?, ?, ?, ?)",
                            (failure.projection, *failure.position, failure.tx_id,
                             failure.event_type, failure.error, failure.failed_at))
        except Exception:  # the status of this process still says it
            log.exception("the projection failure could not be recorded")

    def catch_up(self) -> int:
        """Apply everything the ledger holds now (no live tail); returns the
        number of events read. Used by rebuild and by tests. Raises
        ``ProjectionFailed`` at an event that cannot be projected."""
        batch: list[CommittedEvent] = []
        count = 0
        for ev in self.ledger.events(after=self._start_position()):
            batch.append(ev)
            if len(batch) >= self.batch_size:
                self.apply(batch)
                count += len(batch)
                batch = []
        if batch:
            self.apply(batch)
            count += len(batch)
        self.project_blocks()
        self._notify()
        return count

    # ----------------------------------------------------------- live tail
    def start(self) -> None:
        """Follow the ledger in background threads until :meth:`stop`."""
        self._stop.clear()
        self._threads = [
            threading.Thread(target=self._read, name="projection-reader",
                             daemon=True),
            threading.Thread(target=self._run, name="projection-applier",
                             daemon=True)]
        for t in self._threads:
            t.start()

    def stop(self, timeout: float = 90.0) -> bool:
        """Stop applying; the reader ends with the ledger's event stream.
        Whether the applier ended within ``timeout`` (it may be in a ledger
        call, which has its own deadline): until it has, the ledger connection
        must stay open under it."""
        self._stop.set()
        for t in self._threads[1:]:
            t.join(timeout)
        stopped = not any(t.is_alive() for t in self._threads[1:])
        self._threads = self._threads[:1]
        return stopped

    def _read(self) -> None:
        try:
            for ev in self.ledger.events(after=self._start_position(), follow=True):
                while not self._stop.is_set():
                    try:
                        self._queue.put(ev, timeout=0.5)
                        break
                    except queue.Full:
                        continue
                if self._stop.is_set():
                    return
        except Exception as e:  # the ledger went away: say so in the status
            if not self._stop.is_set():
                log.exception("projection reader stopped")
                self._error = f"reader: {e}"

    def _run(self) -> None:
        pending: list[CommittedEvent] = []
        blocks_due = 0.0
        while not self._stop.is_set():
            try:
                if not pending:
                    pending.append(self._queue.get(timeout=0.2))
                while len(pending) < self.batch_size:
                    pending.append(self._queue.get_nowait())
            except queue.Empty:
                pass
            try:
                if pending:
                    self.apply(pending)
                    pending = []
                # Blocks follow once the events are drained, and at least twice
                # a second under a steady stream of them.
                if self._queue.empty() or time.monotonic() >= blocks_due:
                    self.project_blocks()
                    blocks_due = time.monotonic() + 0.5
                self._error = None
            except ProjectionFailed as e:  # retrying would fail forever: stop
                self._error = str(e)
                self._stop.set()
            except Exception as e:  # keep the batch and try again
                log.exception("projection batch failed; retrying")
                self._error = str(e)
                self._stop.wait(1.0)
            self._notify()

    def _notify(self) -> None:
        with self._progress:
            self._progress.notify_all()

    # -------------------------------------------------------------- status
    def status(self) -> FollowerStatus:
        running = any(t.is_alive() for t in self._threads[1:])
        if not running:  # no one else keeps the height: report the ledger's
            try:
                self._height = self.ledger.height()
            except Exception as e:
                log.warning("ledger height unknown: %s", e)
        return FollowerStatus(
            running, dict(self.positions), self._height, self._last_applied_at,
            self._last_lag_ms, self._error, self._failure)

    def wait_caught_up(self, timeout: float = 10.0) -> None:
        """Block until everything committed before this call is projected;
        raises TimeoutError otherwise."""
        height = self.ledger.height()
        last = self._start_position()
        for ev in self.ledger.events(after=last):
            last = ev.position
        deadline = time.monotonic() + timeout

        def done() -> bool:
            pos = self.positions
            return (all(pos[p.name] >= last for p in self.projections)
                    and pos[BLOCKS.name].block >= height - 1)

        with self._progress:
            while not done():
                if self._stop.is_set() and self._failure is not None:
                    raise ProjectionFailed(self._failure)
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"read models did not reach block "
                                       f"{height - 1} in {timeout} s")
                self._progress.wait(min(left, 0.1))


def rebuild(ledger: Ledger, db: Database,
            verify_block: BlockVerifier | None = None,
            projections: Sequence[Projection] = EVENT_PROJECTIONS) -> dict[str, Any]:
    """Empty every read model and project the whole ledger again, in one
    database transaction: readers see the previous views until it commits, and
    a failure (``ProjectionFailed`` at an event, the ledger or the database
    going away) leaves them as they were."""
    follower = Follower(ledger, db, verify_block=verify_block,
                        projections=projections)
    with db.transaction() as cur:
        clear(cur)
        follower.positions = {p.name: START for p in ALL_PROJECTIONS}
        follower._failure = None
        follower._cursor = cur
        try:
            events = follower.catch_up()
        finally:
            follower._cursor = None
    return {"events": events, "blocks": follower.positions[BLOCKS.name].block + 1,
            "positions": {k: list(v) for k, v in follower.positions.items()}}
