"""The block store applies a block's write sets in transaction order."""

from __future__ import annotations

from pathlib import Path

from ledger.store import Store


def test_a_later_write_in_the_block_wins(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.sqlite")
    store.append_block(0, "{}", "h0", "s0", [("t0", "{}")],
                       [(0, [("k", "v0"), ("gone", "x")])], [])
    # block 1: tx 0 deletes k and puts gone; tx 1 puts k back, deletes gone
    store.append_block(1, "{}", "h1", "s1", [("t1", "{}"), ("t2", "{}")],
                       [(0, [("k", None), ("gone", "y")]),
                        (1, [("k", "v1"), ("gone", None)])], [])
    assert store.get_state("k") == ("v1", (1, 1))
    assert store.get_state("gone") is None
    assert [(b, t, v) for b, t, v, _ in store.history("k")] == [
        (0, 0, "v0"), (1, 0, None), (1, 1, "v1")]
    assert store.block_hash(1) == "h1" and store.block_hash(2) is None
    assert store.known_tx_ids(["t0", "t2", "nope"]) == {"t0", "t2"}
    store.close()
