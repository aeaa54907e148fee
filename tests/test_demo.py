"""``cityunion demo`` on the embedded ledger: the README's main job. Its summary
shows fees, a resolved dispute, a flagged lost card, each city's statement
confirmed and completed and city QR codes verified offline, on a chain that
verifies; a second run on the same directory clears the day before."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cli.main import main


def _demo(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, object]:
    assert main(["demo", "--data-dir", str(data_dir), "--records", "120",
                 "--json"]) == 0
    out: dict[str, object] = json.loads(capsys.readouterr().out)
    return out


def test_demo_settles_a_day(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                            ) -> None:
    first = _demo(tmp_path, capsys)
    assert first["verified"] is True
    positions = first["net_positions_fen"]
    assert isinstance(positions, dict) and set(positions) == {
        "Shanghai", "Kunshan", "Taicang"}
    fees = first["center_fee_fen"]
    assert isinstance(fees, int) and fees > 0
    assert sum(positions.values()) + fees == 0
    assert first["excluded_disputed"] == 1  # the withdrawn ride; the other upheld
    assert isinstance(first["flagged_records"], int) and first["flagged_records"] > 0
    statements = first["statements_confirmed_and_completed"]
    assert isinstance(statements, dict) and set(statements) == set(positions)
    codes = first["city_qr_codes"]
    assert isinstance(codes, dict)
    assert (codes["static_issued"], codes["dynamic_made"]) == (2, 1)
    assert codes["verified_offline"] == 3  # both static codes and the dynamic one
    assert codes["scans_reported"] == 5  # the forgery too: its scheme is known
    assert codes["refused"] == ["replayed: this dynamic code was already "
                                "accepted here", "the signature does not verify"]
    second = _demo(tmp_path, capsys)
    assert second["verified"] is True
    assert str(second["business_day"]) < str(first["business_day"])
