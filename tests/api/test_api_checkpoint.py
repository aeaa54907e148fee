"""The follower's checkpoint on every ledger: (block, tx, event) and the
transaction id there, committed with the views it guards."""

from __future__ import annotations

from apikit import KS_TRANSPORT, Api
from helpers import unique_hash


def test_checkpoint_names_the_last_applied_transaction(api: Api) -> None:
    out = api.ok("/api/identifiers", {"kind": "person", "category": "identity",
                                      "scheme": "cn-id",
                                      "natural_key_hash": unique_hash()},
                 KS_TRANSPORT)
    api.sync()
    db = api.runtime.db
    row = db.query_one("SELECT block, tx_id FROM projection_tracking "
                       "WHERE name = 'identifiers'")
    assert row is not None
    assert (row["block"], row["tx_id"]) == (out["block_number"], out["tx_id"])
    got = api.get(f"/api/identifiers/{out['result']['id']}", KS_TRANSPORT).json()
    assert got["id"] == out["result"]["id"]
