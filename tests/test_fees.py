"""Fees and clearing as pure functions (chaincode.domain ``fee_of``,
``rules_in_effect``, ``clear``): the rounding rule at its boundary, and for any
records, fee rules and disputes, positions with the center's fee income sum to
zero and every non-disputed record is counted exactly once."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from uuid import UUID, uuid4

from helpers import card_record
from hypothesis import given, settings
from hypothesis import strategies as st

from chaincode.contract import CardRecord, card_leaf
from chaincode.domain import (
    PARTIES,
    PAYABLE,
    RECORD_TYPES,
    SCENES,
    RecordsOf,
    clear,
    combined,
    fee_of,
    rules_in_effect,
)
from chaincode.encoding import canonical_json
from chaincode.summary import (
    clear_summaries,
    group_of,
    may_hold_any,
    probes,
    summarise,
)

CITIES = ("Kunshan", "Shanghai", "Taicang", "Suzhou")
CARDS = tuple(f"{i:064x}" for i in range(4))


def rule(bps: int, low: int = 0, high: int = 10**8, **extra: Any) -> dict[str, Any]:
    return {"rate_bps": bps, "min_fee_fen": low, "max_fee_fen": high, **extra}


def test_round_half_up_at_the_half_fen() -> None:
    assert fee_of(50, rule(100)) == 1     # 0.5 fen rounds up
    assert fee_of(49, rule(100)) == 0     # 0.49 rounds down
    assert fee_of(150, rule(100)) == 2    # 1.5 -> 2
    assert fee_of(250, rule(100)) == 3    # 2.5 -> 3 (not to even)
    assert fee_of(1, rule(5000)) == 1     # 0.5 -> 1
    assert fee_of(3, rule(5000)) == 2     # 1.5 -> 2
    assert fee_of(10_000, rule(1)) == 1   # exactly 1
    assert fee_of(14_999, rule(1)) == 1   # 1.4999 -> 1
    assert fee_of(15_000, rule(1)) == 2   # 1.5 -> 2


def test_clamped_to_min_and_max() -> None:
    assert fee_of(10, rule(10, low=3, high=5)) == 3
    assert fee_of(100_000, rule(10, low=3, high=5)) == 5
    assert fee_of(5_000, rule(10, low=3, high=5)) == 5
    assert fee_of(7, rule(0, low=2, high=2)) == 2
    assert fee_of(1_000, None) == 0


def test_rule_in_effect_is_the_latest_on_or_before_the_day() -> None:
    versions = [rule(1, scene="metro", party="issuer", effective_day="2026-01-10"),
                rule(2, scene="metro", party="issuer", effective_day="2026-01-01"),
                rule(3, scene="metro", party="issuer", effective_day="2026-02-01"),
                rule(4, scene="bus", party="issuer", effective_day="2026-03-01")]
    assert rules_in_effect(versions, "2025-12-31") == {}
    assert rules_in_effect(versions, "2026-01-01")[("metro", "issuer")] is versions[1]
    assert rules_in_effect(versions, "2026-01-31")[("metro", "issuer")] is versions[0]
    assert rules_in_effect(versions, "2026-02-01")[("metro", "issuer")] is versions[2]
    assert ("bus", "issuer") not in rules_in_effect(versions, "2026-02-28")


def test_leaf_of_a_record_without_scene_or_type_is_unchanged() -> None:
    r = CardRecord.model_validate(card_record("r1", "Kunshan", 200)).model_dump(
        exclude_none=True)
    assert card_leaf(r) == (
        b'{"amount_fen":200,"card_id_hash":"' + r["card_id_hash"].encode()
        + b'","issuer_city":"Kunshan","record_id":"r1","terminal_id":"T1",'
        b'"time":"2026-11-20T08:00:00Z"}')
    for extra in ({"scene": "metro"}, {"type": "top_up"},
                  {"scene": "park_and_ride", "type": "refund"}):
        new = CardRecord.model_validate({**card_record("r1", "Kunshan"), **extra}
                                        ).model_dump(exclude_none=True)
        assert card_leaf(new) == canonical_json(new)


@dataclass
class Batch:
    acquirer_city: str
    id: UUID = field(default_factory=uuid4)
    records: dict[str, dict[str, Any]] = field(default_factory=dict)
    status: dict[str, str] = field(default_factory=dict)


@st.composite
def batches(draw: st.DrawFn) -> list[Batch]:
    out = []
    serial = 0
    for _ in range(draw(st.integers(0, 4))):
        acquirer = draw(st.sampled_from(CITIES))
        b = Batch(acquirer)
        for _ in range(draw(st.integers(0, 8))):
            serial += 1
            rid = f"r{serial}"
            rec: dict[str, Any] = {
                "issuer_city": draw(st.sampled_from(
                    [c for c in CITIES if c != acquirer])),
                "amount_fen": draw(st.integers(1, 100_000_000)),
                "card_id_hash": draw(st.sampled_from(CARDS)),
                "time": f"2026-01-01T{draw(st.integers(0, 23)):02d}:00:00Z"}
            if draw(st.booleans()):
                rec["scene"] = draw(st.sampled_from(SCENES))
            if draw(st.booleans()):
                rec["type"] = draw(st.sampled_from(RECORD_TYPES))
            b.records[rid] = rec
            b.status[rid] = draw(st.sampled_from(("reported", "confirmed",
                                                  "disputed", "contested")))
        out.append(b)
    return out


@st.composite
def fee_rules(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Versions as the contract admits them: one per scene, party and day."""
    out: dict[tuple[str, str, str], dict[str, Any]] = {}
    for _ in range(draw(st.integers(0, 12))):
        low = draw(st.integers(0, 100_000_000))
        key = (draw(st.sampled_from(SCENES)), draw(st.sampled_from(PARTIES)),
               f"2026-01-{draw(st.integers(1, 28)):02d}")
        out[key] = rule(draw(st.integers(0, 10_000)), low,
                        draw(st.integers(low, 100_000_000)), scene=key[0],
                        party=key[1], effective_day=key[2])
    return list(out.values())


@settings(max_examples=300, deadline=None)
@given(batches(), fee_rules(), st.integers(1, 28))
def test_positions_sum_to_zero_and_every_record_counts_once(
        bs: list[Batch], rules: list[dict[str, Any]], day: int) -> None:
    c = clear(bs, CITIES, rules_in_effect(rules, f"2026-01-{day:02d}"))
    assert sum(c.positions.values()) + c.center_fee_fen == 0
    assert c.center_fee_fen == c.fees_fen >= 0
    live = [(b, rid) for b in bs for rid in b.records if b.status[rid] in PAYABLE]
    total = sum(len(b.records) for b in bs)
    assert c.records == len(live) and c.excluded == total - len(live)
    assert sum(p["records"] for p in c.pairs) == len(live)
    assert c.gross_fen == sum(p["gross_fen"] for p in c.pairs) == sum(
        int(b.records[rid]["amount_fen"]) for b, rid in live)
    assert c.center_fee_fen == sum(
        p["acquirer_fee_fen"] + p["issuer_fee_fen"] for p in c.pairs)
    assert list(c.positions) == sorted(CITIES)
    for city, figures in c.cities.items():
        assert figures["net_fen"] == c.positions[city] == (
            figures["gross_fen"] - figures["fees_fen"])
    assert sum(f["gross_fen"] for f in c.cities.values()) == 0
    assert all(isinstance(v, int) for v in c.positions.values())
    # the order of batches and of records does not change the figures
    again = clear(list(reversed(bs)), tuple(reversed(CITIES)),
                  rules_in_effect(list(reversed(rules)), f"2026-01-{day:02d}"))
    assert again == c


def test_argument_types_list_the_domain_values() -> None:
    from typing import get_args

    from chaincode.cards import Party, RecordType, Scene

    assert (get_args(Scene), get_args(RecordType), get_args(Party)) == (
        SCENES, RECORD_TYPES, PARTIES)


@settings(max_examples=200, deadline=None)
@given(batches(), fee_rules(), st.data())
def test_every_record_counts_once_across_the_run_and_its_adjustments(
        bs: list[Batch], rules: list[dict[str, Any]], data: st.DataObject) -> None:
    """A day is cleared with its disputes open; the disputes then resolve (for
    the acquirer: upheld, cleared in a later run as an adjustment; for the
    issuer or accepted: withdrawn); the later run holds the adjustments."""
    in_effect = rules_in_effect(rules, "2026-01-15")
    blacklist = {CARDS[0]: "2026-01-01T12:00:00Z"}
    day = clear(bs, CITIES, in_effect, blacklist)
    # cleared that day, of the blacklisted card at or after its time
    flagged = {(str(b.id), rid) for b in bs for rid, r in b.records.items()
               if b.status[rid] in PAYABLE and r["card_id_hash"] == CARDS[0]
               and r["time"] >= "2026-01-01T12:00:00Z"}
    upheld: dict[int, list[str]] = {}
    for n, b in enumerate(bs):
        for rid in sorted(b.records):
            if b.status[rid] in ("disputed", "contested"):
                b.status[rid] = data.draw(st.sampled_from(("upheld", "withdrawn")))
                if b.status[rid] == "upheld":
                    upheld.setdefault(n, []).append(rid)
    parts = [clear([RecordsOf.of(bs[n], ids)], CITIES, in_effect)
             for n, ids in sorted(upheld.items())]
    later = combined(parts, CITIES)
    both = combined([day, later], CITIES)
    for c in (day, later, both):
        assert sum(c.positions.values()) + c.center_fee_fen == 0
    counted = [(b.id, rid) for b in bs for rid in b.records
               if b.status[rid] in PAYABLE]
    assert both.records == len(counted) == day.records + later.records
    assert both.gross_fen == sum(int(b.records[rid]["amount_fen"])
                                 for b in bs for rid in b.records
                                 if b.status[rid] in PAYABLE)
    withdrawn = sum(s == "withdrawn" for b in bs for s in b.status.values())
    assert day.excluded == withdrawn + later.records
    assert {(f["batch_id"], f["record_id"]) for f in day.flagged} == flagged


@settings(max_examples=200, deadline=None)
@given(batches(), fee_rules(), st.integers(1, 28))
def test_clearing_summaries_equals_clearing_records(
        bs: list[Batch], rules: list[dict[str, Any]], day: int) -> None:
    """What RunClearing computes from batch summaries (groups of equal
    records, the records not payable kept apart) is what it would compute
    from the records."""
    in_effect = rules_in_effect(rules, f"2026-01-{day:02d}")
    parts = []
    for b in bs:
        records = [{**r, "record_id": rid} for rid, r in b.records.items()]
        excluded = {rid: group_of(b.records[rid]) for rid, s in b.status.items()
                    if s not in PAYABLE}
        parts.append((summarise(b.acquirer_city, records), excluded))
    assert clear_summaries(parts, CITIES, in_effect) == clear(bs, CITIES, in_effect)


@settings(max_examples=100, deadline=None)
@given(batches(), st.sets(st.sampled_from(CARDS)))
def test_bloom_filter_never_misses_a_card(bs: list[Batch],
                                          blacklisted: set[str]) -> None:
    for b in bs:
        summary = summarise(b.acquirer_city, list(b.records.values()))
        held = {r["card_id_hash"] for r in b.records.values()}
        for card in blacklisted & held:
            assert may_hold_any(summary, [probes(card)])
        if not blacklisted:
            assert not may_hold_any(summary, [])


def test_bloom_filter_of_a_full_batch_rarely_answers_maybe() -> None:
    records = [{"issuer_city": "Kunshan", "amount_fen": 200,
                "card_id_hash": canonical_json(i).hex().rjust(64, "0")}
               for i in range(10_000)]
    summary = summarise("Shanghai", records)
    others = [probes(f"{i:064x}") for i in range(1_000_000, 1_010_000)]
    false_positives = sum(may_hold_any(summary, [p]) for p in others)
    assert false_positives < 100  # < 1% (about 0.2% expected)
    assert len(summary["groups"]) == 1  # equal records: one group
