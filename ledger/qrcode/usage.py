"""A terminal's log of the codes it scanned, kept until reported to the ledger
(ReportCodeUsage, chaincode.usage).

Scans are written to SQLite in the terminal's log directory as they are made
(synchronously: a scan the terminal acknowledged survives a power cut), and
reported in reports of at most ``MAX_SCANS``. A report is fixed before it is
submitted: its scans are assigned to it, under its Merkle root, in the same
database transaction. So a terminal that restarts after submitting resubmits
exactly the same scans (the ledger then answers that they are already
reported, which counts as success), never some of them again in another
report; and a submit that fails marks nothing reported.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from chaincode.encoding import canonical_json, sm3_hex
from chaincode.errors import Conflict
from chaincode.merkle import merkle_root
from chaincode.usage import MAX_SCANS, CodeScan, scan_of
from ledger.qrcode.verify import Verdict

Submit = Callable[[dict[str, Any]], Any]  # ReportCodeUsage args -> receipt
Progress = Callable[[int, int], None]  # (scans reported so far, of how many)

FILE_NAME = "scans.sqlite"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS scans (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, scan TEXT NOT NULL, report TEXT);
CREATE INDEX IF NOT EXISTS scans_report ON scans (report, seq);
CREATE TABLE IF NOT EXISTS reports (
    merkle_root TEXT PRIMARY KEY, terminal_id TEXT NOT NULL,
    reported INTEGER NOT NULL DEFAULT 0)
"""
_MOMENT = "%Y-%m-%dT%H:%M:%SZ"


class ScanLog:
    """The scans of one terminal under ``directory`` (created if absent)."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / FILE_NAME
        self._db = sqlite3.connect(self.path, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> ScanLog:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def add(self, *, serial: str, scheme_id: str, kind: str, valid: bool,
            code_text: str, reason: str | None = None,
            at: datetime | None = None) -> dict[str, Any]:
        """Log one scan from the verifier's verdict: the code's serial, scheme
        and kind (``static`` or ``dynamic``), whether it was accepted, the
        refusal reason, and the code's text (kept only as its SM3). ``at``:
        when, default now. Raises ValueError naming a field that cannot be
        reported (a text that is no code has no serial: do not log it)."""
        moment = (at or datetime.now(UTC)).astimezone(UTC)
        scan = {"serial": serial, "scheme_id": scheme_id, "kind": kind,
                "at": moment.strftime(_MOMENT),
                "result": "valid" if valid else "refused",
                "code_sm3": sm3_hex(code_text.rstrip("\r\n").encode())}
        if not valid and reason:
            scan["reason"] = reason[:500]  # the contract's longest text
        try:
            checked = scan_of(CodeScan.model_validate(scan))
        except ValueError as e:  # pydantic's ValidationError is one
            raise ValueError(f"this scan cannot be reported: {e}") from None
        self._db.execute("INSERT INTO scans (scan) VALUES (?)",
                         (canonical_json(checked).decode(),))
        return checked

    def add_verdict(self, verdict: Verdict, code_text: str,
                    at: datetime | None = None) -> dict[str, Any] | None:
        """Log a verifier's verdict on ``code_text``; None (nothing logged)
        when the text is no code of a scheme in the bundle: such a scan
        cannot be reported."""
        if verdict.serial is None or verdict.scheme_id is None or not verdict.kind:
            return None
        return self.add(serial=verdict.serial, scheme_id=verdict.scheme_id,
                        kind=verdict.kind, valid=verdict.ok, code_text=code_text,
                        reason=None if verdict.ok else verdict.reason, at=at)

    def accepted_dynamic_since(self, since: datetime) -> list[str]:
        """The SM3 of the dynamic codes accepted at or after ``since``, among
        the last 100,000 scans: what a restarted terminal must still refuse
        as replays (``Verifier.remember``)."""
        rows = self._db.execute(
            "SELECT json_extract(scan, '$.code_sm3') FROM scans "
            "WHERE seq > (SELECT COALESCE(MAX(seq), 0) - 100000 FROM scans) "
            "AND json_extract(scan, '$.kind') = 'dynamic' "
            "AND json_extract(scan, '$.result') = 'valid' "
            "AND json_extract(scan, '$.at') >= ?",
            (since.astimezone(UTC).strftime(_MOMENT),)).fetchall()
        return [str(r[0]) for r in rows]

    def pending(self) -> int:
        """Scans not yet reported (including those of a report in flight)."""
        return int(self._db.execute(
            "SELECT COUNT(*) FROM scans s LEFT JOIN reports r ON r.merkle_root = "
            "s.report WHERE r.reported IS NOT 1").fetchone()[0])

    def report(self, submit: Submit, terminal_id: str, size: int = MAX_SCANS,
               progress: Progress | None = None) -> int:
        """Submit every pending scan as ReportCodeUsage args of at most
        ``size`` scans, a report left in flight by an earlier run first; each
        report is marked reported once ``submit`` returned (or the ledger said
        it holds those scans already). An error of ``submit`` propagates and
        leaves that report and the rest pending. Returns the scans reported."""
        if not 1 <= size <= MAX_SCANS:
            raise ValueError(f"size: from 1 to {MAX_SCANS}, not {size}")
        total, done = self.pending(), 0
        while (report := self._next_report(terminal_id, size)) is not None:
            root, terminal, scans = report
            try:
                submit({"terminal_id": terminal, "scans": scans,
                        "merkle_root": root})
            except Conflict as e:
                if e.field != "merkle_root":  # not "already reported"
                    raise
            self._db.execute("UPDATE reports SET reported = 1 WHERE merkle_root = ?",
                             (root,))
            done += len(scans)
            if progress is not None:
                progress(done, total)
        return done

    def _next_report(self, terminal_id: str, size: int
                     ) -> tuple[str, str, list[dict[str, Any]]] | None:
        """The report in flight, else a new one of the oldest unassigned scans
        (assigned to it before it is submitted), else None."""
        row = self._db.execute("SELECT merkle_root, terminal_id FROM reports "
                               "WHERE reported = 0 LIMIT 1").fetchone()
        if row is not None:
            return row[0], row[1], self._scans_of(row[0])
        rows = self._db.execute("SELECT seq, scan FROM scans WHERE report IS NULL "
                                "ORDER BY seq LIMIT ?", (size,)).fetchall()
        if not rows:
            return None
        scans = [json.loads(text) for _, text in rows]
        root = merkle_root(scans)
        with self._db:  # one transaction: the report and its scans
            self._db.execute("BEGIN")
            self._db.execute("INSERT INTO reports (merkle_root, terminal_id) "
                             "VALUES (?, ?)", (root, terminal_id))
            self._db.executemany("UPDATE scans SET report = ? WHERE seq = ?",
                                 [(root, seq) for seq, _ in rows])
        return root, terminal_id, scans

    def _scans_of(self, root: str) -> list[dict[str, Any]]:
        return [json.loads(text) for (text,) in self._db.execute(
            "SELECT scan FROM scans WHERE report = ? ORDER BY seq", (root,))]
