"""A campaign's durable progress: one SQLite file next to the campaign
(``DATA_DIR/voice/campaigns/NAME/journal.sqlite``), committed with
``synchronous=FULL`` (fsync) before a call is placed and after it ends.

What it holds: how the campaign was started (``meta``), every attempt
(contact id, attempt number, when dialled, and once it ended its outcome and
record) and every final outcome, at most one a contact (a UNIQUE key, so no
contact can end twice). No phone numbers: those stay in the contacts file.

The rule for calls under way when the campaign's process died: an attempt
that was dialled and has no outcome ends as ``interrupted`` when the campaign
resumes. ``interrupted`` is retried like busy or no answer (the citizen may
have heard part of the script, so at most ``attempts`` calls in all still
holds); with no attempts left, ``interrupted`` is the contact's final outcome.
The same holds for calls lost with a call worker that died mid-campaign.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

INTERRUPTED = "interrupted"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS attempts (
    contact TEXT NOT NULL, attempt INTEGER NOT NULL, dialled_at TEXT NOT NULL,
    outcome TEXT, ended_at TEXT, record TEXT,
    PRIMARY KEY (contact, attempt));
CREATE TABLE IF NOT EXISTS finals (
    seq INTEGER PRIMARY KEY, contact TEXT NOT NULL UNIQUE, outcome TEXT NOT NULL,
    attempts INTEGER NOT NULL, at TEXT NOT NULL, talk_s INTEGER NOT NULL);
"""


@dataclass(frozen=True)
class Attempt:
    contact: str
    attempt: int
    dialled_at: datetime
    outcome: str | None  # None: dialled, and the process died before it ended
    ended_at: datetime | None
    record: dict[str, Any] | None


@dataclass(frozen=True)
class Final:
    seq: int  # the order in which contacts ended: 1, 2, ... without gaps
    contact: str
    outcome: str
    attempts: int
    at: datetime
    talk_s: int  # of the last call


class Journal:
    """One campaign's journal. Each write is its own committed transaction."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        # The API opens a campaign in a request's thread and drives it in a
        # thread of its own: handed over, never used by two threads at once.
        self.db = sqlite3.connect(path, isolation_level=None,
                                  check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.executescript(_SCHEMA)

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def close(self) -> None:
        self.db.close()

    # ---------------------------------------------------------------- meta
    def get(self, key: str) -> Any:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?",
                              (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def set(self, key: str, value: Any) -> None:
        with self._tx() as db:
            db.execute("INSERT INTO meta VALUES (?, ?) ON CONFLICT (key) DO UPDATE "
                       "SET value = excluded.value", (key, json.dumps(value)))

    # ------------------------------------------------------------ progress
    def dialled(self, contact: str, attempt: int, at: datetime) -> None:
        with self._tx() as db:
            db.execute("INSERT INTO attempts (contact, attempt, dialled_at) "
                       "VALUES (?, ?, ?)", (contact, attempt, at.isoformat()))

    def ended(self, contact: str, attempt: int, outcome: str, at: datetime,
              record: dict[str, Any] | None, final: str | None) -> None:
        """The attempt's outcome and, if the contact is done, its final
        outcome, in one transaction."""
        with self._tx() as db:
            db.execute("UPDATE attempts SET outcome = ?, ended_at = ?, record = ? "
                       "WHERE contact = ? AND attempt = ?",
                       (outcome, at.isoformat(),
                        json.dumps(record, ensure_ascii=False) if record else None,
                        contact, attempt))
            if final is not None:
                talk = int((record or {}).get("duration_s") or 0)
                self._final(db, contact, final, attempt, at, talk)

    def final(self, contact: str, outcome: str, attempts: int, at: datetime) -> None:
        """A final outcome without a call (do not call, cancelled)."""
        with self._tx() as db:
            self._final(db, contact, outcome, attempts, at)

    @staticmethod
    def _final(db: sqlite3.Connection, contact: str, outcome: str, attempts: int,
               at: datetime, talk_s: int = 0) -> None:
        db.execute("INSERT INTO finals (contact, outcome, attempts, at, talk_s) "
                   "VALUES (?, ?, ?, ?, ?)",
                   (contact, outcome, attempts, at.isoformat(), talk_s))

    # ------------------------------------------------------------- reading
    def attempts(self) -> list[Attempt]:
        return [Attempt(c, n, datetime.fromisoformat(d), o,
                        datetime.fromisoformat(e) if e else None,
                        json.loads(r) if r else None)
                for c, n, d, o, e, r in self.db.execute(
                    "SELECT contact, attempt, dialled_at, outcome, ended_at, record "
                    "FROM attempts ORDER BY contact, attempt")]

    def finals(self, after: int = 0, limit: int = -1) -> list[Final]:
        """Final outcomes in the order they were reached, from ``seq > after``."""
        return [Final(s, c, o, n, datetime.fromisoformat(a), t)
                for s, c, o, n, a, t in self.db.execute(
                    "SELECT seq, contact, outcome, attempts, at, talk_s FROM finals "
                    "WHERE seq > ? ORDER BY seq LIMIT ?", (after, limit))]

    def counts(self) -> dict[str, int]:
        return dict(self.db.execute(
            "SELECT outcome, COUNT(*) FROM finals GROUP BY outcome ORDER BY outcome"
        ).fetchall())
