"""A terminal's scan log (ledger.qrcode.usage.ScanLog): scans survive a
restart, reports hold at most the size asked, a failed submit marks nothing
reported and the retry sends exactly the same report, and ``cityunion qr
report`` takes the log to the ledger."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from helpers import Clients, sm3_hex

from chaincode.errors import Conflict
from chaincode.merkle import merkle_root
from cli.main import main
from ledger.embedded import EmbeddedLedger, EmbeddedNode
from ledger.qrcode.usage import ScanLog

SCHEME = "12345678-0000-4000-8000-123456789012"
START = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)


def _add(log: ScanLog, n: int, valid: bool = True) -> list[dict[str, Any]]:
    return [log.add(serial=secrets.token_hex(12), scheme_id=SCHEME, kind="static",
                    valid=valid, code_text=f"code-{i}",
                    reason=None if valid else "signature does not verify",
                    at=START + timedelta(seconds=i)) for i in range(n)]


class Recorder:
    """A submit that records its arguments and fails while ``failing``."""

    def __init__(self, failing: Exception | None = None) -> None:
        self.calls: list[dict[str, Any]] = []
        self.failing = failing

    def __call__(self, args: dict[str, Any]) -> None:
        self.calls.append(args)
        if self.failing is not None:
            raise self.failing


def test_scans_survive_a_restart(tmp_path: Path) -> None:
    with ScanLog(tmp_path) as log:
        scans = _add(log, 2) + _add(log, 1, valid=False)
    assert scans[0]["code_sm3"] == sm3_hex("code-0")
    assert scans[2]["reason"] == "signature does not verify"
    assert "reason" not in scans[0]
    with ScanLog(tmp_path) as log:
        assert log.pending() == 3
        submit = Recorder()
        assert log.report(submit, "gate-1") == 3
        assert submit.calls == [{"terminal_id": "gate-1", "scans": scans,
                                 "merkle_root": merkle_root(scans)}]
        assert log.pending() == 0
    with ScanLog(tmp_path) as log:
        again = Recorder()
        assert log.report(again, "gate-1") == 0 and again.calls == []


def test_reports_hold_at_most_size_scans(tmp_path: Path) -> None:
    seen: list[tuple[int, int]] = []
    with ScanLog(tmp_path) as log:
        scans = _add(log, 5)
        submit = Recorder()
        log.report(submit, "gate-1", size=2,
                   progress=lambda done, total: seen.append((done, total)))
    assert [c["scans"] for c in submit.calls] == [scans[:2], scans[2:4], scans[4:]]
    assert seen == [(2, 5), (4, 5), (5, 5)]


def test_failed_submit_marks_nothing_and_is_retried_unchanged(tmp_path: Path
                                                              ) -> None:
    with ScanLog(tmp_path) as log:
        first = _add(log, 3)
        failing = Recorder(ConnectionError("peer unreachable"))
        with pytest.raises(ConnectionError):
            log.report(failing, "gate-1")
        assert log.pending() == 3
        later = _add(log, 1)  # logged before the retry: a report of its own
    with ScanLog(tmp_path) as log:
        assert log.pending() == 4
        submit = Recorder()
        assert log.report(submit, "gate-2") == 4
    assert submit.calls[0] == failing.calls[0]  # the same scans, terminal, root
    assert submit.calls[0]["scans"] == first
    assert submit.calls[1]["scans"] == later


def test_already_reported_counts_as_reported(tmp_path: Path) -> None:
    """A run that stopped after the ledger took its report, before marking it."""
    with ScanLog(tmp_path) as log:
        _add(log, 2)
        assert log.report(Recorder(Conflict("these scans are already reported",
                                            field="merkle_root")), "gate-1") == 2
        assert log.pending() == 0
        _add(log, 1)
        with pytest.raises(Conflict):  # any other conflict is an error
            log.report(Recorder(Conflict("no", field="terminal_id")), "gate-1")
        assert log.pending() == 1


def test_unreportable_scan_is_refused_naming_the_field(tmp_path: Path) -> None:
    with ScanLog(tmp_path) as log:
        with pytest.raises(ValueError, match="serial"):
            log.add(serial="not-a-serial", scheme_id=SCHEME, kind="static",
                    valid=True, code_text="x")
        with pytest.raises(ValueError, match="kind"):
            log.add(serial="ab" * 12, scheme_id=SCHEME, kind="printed",
                    valid=True, code_text="x")
        assert log.pending() == 0


def test_cli_reports_the_log(tmp_path: Path, node: EmbeddedNode,
                             ids: Clients[EmbeddedLedger],
                             capsys: pytest.CaptureFixture[str]) -> None:
    log_dir = tmp_path / "scans"
    with ScanLog(log_dir) as log:
        scans = _add(log, 3)
    height = ids("Kunshan", "auditor").height()
    node.close()  # the CLI opens the ledger itself
    args = ["qr", "report", "--data-dir", str(tmp_path / "ledger"), "--log",
            str(log_dir), "--terminal", "gate-1", "--city", "Kunshan"]
    assert main(args) == 0
    out = capsys.readouterr()
    assert "reported 3 scan(s) of terminal gate-1 (Kunshan)" in out.out
    assert "reported 3/3 scans" in out.err
    assert main(args) == 0
    assert "no scans to report" in capsys.readouterr().out
    reopened = EmbeddedNode(tmp_path / "ledger")
    try:
        events = [e for e in reopened.events() if e.position.block >= height]
    finally:
        reopened.close()
    assert [e.type for e in events] == ["CodeUsageReported"]
    assert events[0].data["scans"] == scans
    assert main([*args[:-4], "--terminal", "gate 1", "--city", "Kunshan"]) == 2
    assert "--terminal" in capsys.readouterr().err
