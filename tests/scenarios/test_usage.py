"""City QR code usage on every ledger: a terminal reports scans with their
Merkle root (one CodeUsageReported); the same scans again, a wrong root, or a
caller outside the terminals and city admins are refused and write nothing."""

from __future__ import annotations

import pytest
from helpers import (
    CENTER,
    Clients,
    World,
    code_scan,
    event_types,
    rejected,
    usage_args,
)

from chaincode.errors import Conflict, InvalidArgument, Unauthorized
from chaincode.usage import MAX_SCANS
from ledger.protocol import Ledger


def test_report_code_usage(world: World) -> None:
    scans = [code_scan(world.scheme),
             code_scan(world.scheme, kind="dynamic", result="refused",
                       reason="the code's signature does not verify"),
             code_scan(world.scheme, at="2026-11-20T08:05:00Z")]
    args = usage_args(scans, "gate-7")
    receipt = world.ids("Kunshan", "terminal").submit("ReportCodeUsage", args)
    assert receipt.status == "VALID"
    assert event_types(receipt) == ["CodeUsageReported"]
    assert receipt.result == {"id": receipt.events[0]["aggregate_id"], "count": 3,
                              "valid": 2, "refused": 1}
    data = receipt.events[0]["data"]
    assert data["scans"] == scans  # exactly as the leaves were hashed
    assert (data["city"], data["terminal_id"], data["merkle_root"]) == (
        "Kunshan", "gate-7", args["merkle_root"])
    assert data["reported_by"] == "Kunshan:terminal"


def test_same_scans_are_reported_once(world: World) -> None:
    args = usage_args([code_scan(world.scheme)])
    world.ids("Kunshan", "terminal").submit("ReportCodeUsage", args)
    # again, even by another city's terminal: refused, nothing written
    rejected(world.ids, ("Shanghai", "terminal"), "ReportCodeUsage", args,
             Conflict, "merkle_root", "already reported")


def test_scans_reordered_need_their_own_root(world: World) -> None:
    scans = [code_scan(world.scheme), code_scan(world.scheme)]
    args = usage_args(scans)
    args["scans"] = scans[::-1]
    err = rejected(world.ids, ("Kunshan", "admin"), "ReportCodeUsage", args,
                   InvalidArgument, "merkle_root", "does not match the scans")
    assert usage_args(scans[::-1])["merkle_root"] in err.message  # the computed


@pytest.mark.parametrize("caller", [("Kunshan", "transport"), (CENTER, "admin"),
                                    ("Kunshan", "auditor")])
def test_only_terminals_and_city_admins_report(ids: Clients[Ledger],
                                               caller: tuple[str, str]) -> None:
    rejected(ids, caller, "ReportCodeUsage",
             usage_args([code_scan("0" * 8 + "-0000-0000-0000-" + "0" * 12)]),
             Unauthorized, None, "ReportCodeUsage may be called by")


def test_more_scans_than_a_report_holds(shared: World) -> None:
    scan = code_scan(shared.scheme)
    rejected(shared.ids, ("Kunshan", "terminal"), "ReportCodeUsage",
             {"terminal_id": "T1", "scans": [scan] * (MAX_SCANS + 1),
              "merkle_root": "ab" * 32}, InvalidArgument, "scans",
             "at most 10000")
