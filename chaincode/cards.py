"""Cross-city card transactions (互联互通): batches reported by the acquirer city,
confirmed or disputed record by record by the issuer, cleared daily (清分结算)."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import Field, field_validator

from chaincode.blacklist import blacklist_of
from chaincode.domain import (
    PAYABLE,
    Clearing,
    ClearingRun,
    FeeRule,
    RecordsOf,
    TransactionBatch,
    clear,
    combined,
    flagged_in,
    rules_in_effect,
    settlement_statement,
)
from chaincode.encoding import canonical_json, sm3, sm3_hex
from chaincode.errors import Conflict, InvalidArgument, Unauthorized
from chaincode.identity import Role
from chaincode.merkle import merkle_root_of
from chaincode.registry import (
    QUERIES,
    Args,
    Context,
    Day,
    Hash,
    IdArgs,
    Name,
    Text,
    command,
    getter,
    query,
    state_of,
)
from chaincode.stub import Stub, prefix_range
from chaincode.summary import (
    clear_summaries,
    group_of,
    may_hold_any,
    probes,
    summarise,
)
from network.consortium import load_consortium

MAX_BATCH_RECORDS = 10_000

# chaincode.domain.SCENES, RECORD_TYPES and PARTIES, as argument types.
Scene = Literal["metro", "bus", "taxi", "ferry", "parking", "park_and_ride",
                "retail", "other"]
RecordType = Literal["purchase", "top_up", "refund"]
Party = Literal["acquirer", "issuer"]

class CardRecord(Args):
    record_id: Name
    issuer_city: Name
    card_id_hash: Hash
    amount_fen: Annotated[int, Field(gt=0, le=100_000_000)]
    # UTC, to the microsecond at most; documented as a JSON Schema date-time
    # too, so that a schema-driven client makes real times (not 13:61 on 02-30).
    time: Annotated[str, Field(pattern=r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}"
                                       r"(\.\d{1,6})?Z$",
                               json_schema_extra={"format": "date-time"})]
    terminal_id: Name
    # Added with fees: a record without them is an "other" "purchase"
    # (chaincode.domain.clear), and its Merkle leaf is as before.
    scene: Scene | None = None
    type: RecordType | None = None

    @field_validator("time")
    @classmethod
    def _valid_time(cls, v: str) -> str:
        datetime.fromisoformat(v)
        return v


def card_leaf(r: dict[str, Any]) -> bytes:
    """``canonical_json(r)`` of a validated CardRecord dumped without its absent
    optional fields, written out: its fields' patterns and literals admit no
    character JSON would escape, and a batch has thousands. Keys in sorted order;
    ``scene`` and ``type`` only when present (so older records' leaves stay
    byte-identical)."""
    scene = f',"scene":"{r["scene"]}"' if r.get("scene") is not None else ""
    kind = f',"type":"{r["type"]}"' if r.get("type") is not None else ""
    return (f'{{"amount_fen":{r["amount_fen"]},"card_id_hash":"{r["card_id_hash"]}",'
            f'"issuer_city":"{r["issuer_city"]}","record_id":"{r["record_id"]}"'
            f'{scene},"terminal_id":"{r["terminal_id"]}","time":"{r["time"]}"'
            f'{kind}}}').encode()


class ReportBatchArgs(Args):
    business_day: Day
    records: Annotated[list[CardRecord], Field(min_length=1,
                                               max_length=MAX_BATCH_RECORDS)]
    merkle_root: Hash


# Records of one batch: a batch holds at most MAX_BATCH_RECORDS, so a longer
# list can only repeat or invent ids (a repeated one counts once).
RecordIds = Annotated[list[Name], Field(max_length=MAX_BATCH_RECORDS)]


class ConfirmArgs(Args):
    batch_id: UUID
    record_ids: RecordIds = Field(default_factory=list)


class DisputeArgs(Args):
    batch_id: UUID
    record_ids: Annotated[RecordIds, Field(min_length=1)]
    reason: Text


class DisputeResponseArgs(Args):
    batch_id: UUID
    record_ids: Annotated[RecordIds, Field(min_length=1)]
    response: Literal["accept", "contest"]
    # contest: the SM3 of the evidence, which stays off chain
    evidence_sm3: Hash | None = None
    note: Text | None = None


class ArbitrateArgs(Args):
    batch_id: UUID
    record_ids: Annotated[RecordIds, Field(min_length=1)]
    decision: Party  # in whose favour: the acquirer (cleared) or the issuer
    reason: Text


class ClearingArgs(Args):
    business_day: Day


# A fee is charged per record, so neither bound exceeds a record's largest amount.
FeeFen = Annotated[int, Field(ge=0, le=100_000_000)]
RateBps = Annotated[int, Field(ge=0, le=10_000)]  # basis points of the amount


class FeeRuleArgs(Args):
    scene: Scene
    party: Party
    rate_bps: RateBps
    min_fee_fen: FeeFen
    max_fee_fen: FeeFen
    effective_day: Day


class NoArgs(Args):
    pass


# -------------------------------------------------- cross-city card transactions
def _ensure_day_open(ctx: Context, day: str, field: str = "business_day") -> None:
    if ctx.session.exists(ClearingRun.create_id(day)):
        raise Conflict(f"business day {day} is already cleared", field=field)


# Reported record ids, for duplicate detection.
#
# On Fabric 2.5 every GetState/PutState is one round trip to the peer (no
# GET_STATE_MULTIPLE or WRITE_BATCH_STATE before 3.1), so one key per record
# (``rec~<acquirer>~<record id>``, the first design) made a 10,000-record batch
# 20,000 calls, 7.7 s to endorse. The ids are kept in a few hundred keys instead:
#
#   recs~<acquirer>~<record day>~<bucket>~<chunk>  ->  b"id1,id2,..." (sorted)
#
# - Scope: an acquirer's record id must be new for its *record day*, the UTC date
#   of the record's own ``time`` (not the batch's business day, which the reporter
#   chooses). The same transaction reported again carries the same time, so it is
#   caught under any business day; an id already used that day is refused whatever
#   the rest of the record says. Scoping by day is what keeps the index bounded: a
#   past day's keys are never written again, and no value grows with the ledger.
# - Bucket: the first byte of SM3(record id), folded to RECORD_BUCKETS (128)
#   buckets. Writes cost one call per touched bucket, so a batch on one record day
#   makes at most 128 bucket writes however large it is, while a small batch reads
#   and rewrites only the buckets its ids fall in.
# - Chunk: a bucket is a chain of chunks of at most CHUNK_IDS (256) ids; a batch
#   rewrites only the last, open chunk of each touched bucket and opens new ones
#   when it is full. Nothing rewritten ever exceeds CHUNK_IDS ids, so the write set
#   stays bounded late on a peak day: at most the batch's own ids plus 128 open
#   chunks per record day (<= 2.1 MB with 64-character ids; ~0.5 MB typically),
#   where rewriting whole day-buckets would rewrite the whole day's index.
# - Reads: one range query per run of consecutive touched buckets (a large batch
#   touches all of them: one query, 100 keys per page on the peer), so a 10,000-
#   record batch costs 128 puts + up to 40 for new chunks + (128 + ids so far
#   that day / 256) / 100 pages + 6 other calls (aggregate, day key, the probe
#   below): 135 on a fresh day, 207 for the 100th batch of a peak day planned at
#   10x (1 M ids by one acquirer that day; bench/batch_keys.py). What grows
#   through the day is the bytes read (about 20 bytes per id already reported
#   that day in the touched buckets: ~20 MB at 1 M), not the write set.
# - MVCC: two batches of one acquirer with records on the same day that touch a
#   common bucket read each other's open chunks, so the later to commit fails with
#   MVCC_READ_CONFLICT / PHANTOM_READ_CONFLICT and must be resubmitted. Large
#   batches always share buckets: an acquirer submits its batches one at a time
#   (or resubmits on a conflict). One at a time, with ~0.25 s commits, still
#   carries thousands of records a second, against ~50/s nationally on average at
#   the planned 10x. Per-record keys conflicted only on true duplicates.
# - Determinism: days, buckets and ids are iterated sorted, chunks by number; the
#   write set does not depend on the records' order in the batch.
# - Older ledgers: ids written by the first design under ``rec~<acquirer>~`` are
#   still refused. One range read per batch sees whether any exist (none on a
#   ledger started with this design); only then are the batch's ids looked up
#   there one by one, at the old cost. Nothing is migrated (pre-production).
RECORD_BUCKETS = 128
CHUNK_IDS = 256
_LEGACY_RECORD_PREFIX = "rec~"


def record_day(time: str) -> str:
    """The day under which a card record's id must be unique for its acquirer:
    the UTC calendar date of the record's ``time`` (``YYYY-MM-DDT...Z``)."""
    return time[:10]


def _record_bucket(record_id: bytes) -> int:
    return sm3(record_id)[0] * RECORD_BUCKETS // 256


def _bucket_runs(buckets: list[int]) -> list[tuple[int, int]]:
    """Maximal runs of consecutive numbers in the sorted ``buckets``."""
    runs: list[tuple[int, int]] = []
    for b in buckets:
        if runs and runs[-1][1] == b - 1:
            runs[-1] = (runs[-1][0], b)
        else:
            runs.append((b, b))
    return runs


def _append_ids(prefix: str, bucket: int, chunks: dict[int, bytes],
                ids: list[bytes]) -> list[tuple[str, bytes]]:
    """Writes that add the sorted ``ids`` to a bucket whose stored chunks are
    ``chunks`` (number -> value): fill the open chunk, then open new ones."""
    def key(n: int) -> str:
        return f"{prefix}{bucket:02x}~{n:04d}"

    out: list[tuple[str, bytes]] = []
    n = max(chunks, default=-1)
    if n >= 0:
        open_ids = chunks[n].split(b",")
        room = CHUNK_IDS - len(open_ids)
        if room > 0:
            out.append((key(n), b",".join(sorted(open_ids + ids[:room]))))
            ids = ids[room:]
    for start in range(0, len(ids), CHUNK_IDS):
        n += 1
        out.append((key(n), b",".join(ids[start:start + CHUNK_IDS])))
    return out


def _legacy_reported(stub: Stub, acquirer: str,
                     records: list[dict[str, Any]]) -> list[int]:
    """Positions of records whose id the first design recorded for ``acquirer``."""
    start, end = prefix_range(f"{_LEGACY_RECORD_PREFIX}{acquirer}~")
    for _ in stub.get_state_by_range(start, end):
        break
    else:
        return []
    keys = [f"{_LEGACY_RECORD_PREFIX}{acquirer}~{r['record_id']}" for r in records]
    return [i for i, v in enumerate(stub.get_multiple_states(keys)) if v is not None]


def _index_record_ids(stub: Stub, acquirer: str,
                      records: list[dict[str, Any]]) -> list[tuple[str, bytes]]:
    """Refuse a record id that ``acquirer`` already reported for the record's day
    (a Conflict naming the first such record); otherwise return the writes that
    add the batch's ids to the index (see the comment above RECORD_BUCKETS).
    The ids are distinct within ``records`` (checked before)."""
    position: dict[bytes, int] = {}
    days: dict[str, dict[int, list[bytes]]] = {}
    for i, r in enumerate(records):
        rid = r["record_id"].encode()
        position[rid] = i
        days.setdefault(record_day(r["time"]), {}).setdefault(
            _record_bucket(rid), []).append(rid)
    found = _legacy_reported(stub, acquirer, records)
    writes: list[tuple[str, bytes]] = []
    for day in sorted(days):
        buckets = days[day]
        prefix = f"recs~{acquirer}~{day}~"
        stored: dict[int, dict[int, bytes]] = {}
        for first, last in _bucket_runs(sorted(buckets)):
            for key, value in stub.get_state_by_range(f"{prefix}{first:02x}~",
                                                      f"{prefix}{last:02x}~\x7f"):
                bucket_hex, chunk = key[len(prefix):].split("~")
                stored.setdefault(int(bucket_hex, 16), {})[int(chunk)] = value
        for bucket in sorted(buckets):
            ids = sorted(buckets[bucket])
            chunks = stored.get(bucket, {})
            if chunks:
                reported = set(b",".join(chunks.values()).split(b","))
                again = [position[rid] for rid in ids if rid in reported]
                if again:
                    found.extend(again)
                    continue
            writes.extend(_append_ids(prefix, bucket, chunks, ids))
    if found:
        i = min(found)
        raise Conflict(f"record {records[i]['record_id']!r} was already reported",
                       field=f"records.{i}.record_id")
    return writes


@command("ReportTransactionBatch", ReportBatchArgs, Role.CITY_ADMIN, Role.TERMINAL)
def report_batch(ctx: Context, a: ReportBatchArgs) -> dict[str, Any]:
    acquirer, cities = ctx.caller.city, load_consortium().city_names
    if acquirer not in cities:
        raise Unauthorized("only a member city acquires card transactions")
    _ensure_day_open(ctx, a.business_day)
    records = [r.model_dump(exclude_none=True) for r in a.records]
    seen: set[str] = set()
    for i, r in enumerate(records):
        field = f"records.{i}"
        if r["issuer_city"] not in cities:
            raise InvalidArgument(f"issuer city {r['issuer_city']!r} is not a "
                                  f"member ({', '.join(cities)})",
                                  f"{field}.issuer_city")
        if r["issuer_city"] == acquirer:
            raise InvalidArgument("a cross-city record's issuer must differ from "
                                  "the acquirer", f"{field}.issuer_city")
        if r["record_id"] in seen:
            raise InvalidArgument(f"record {r['record_id']!r} appears twice",
                                  f"{field}.record_id")
        seen.add(r["record_id"])
    root = merkle_root_of(map(card_leaf, records))
    if root != a.merkle_root:
        raise InvalidArgument(f"Merkle root does not match the records (computed "
                              f"{root})", "merkle_root")
    batch_id = TransactionBatch.create_id(acquirer, root)
    index_writes = _index_record_ids(ctx.stub, acquirer, records)
    batch = TransactionBatch(acquirer_city=acquirer, business_day=a.business_day,
                             merkle_root=root, count=len(records),
                             amount_fen=sum(r["amount_fen"] for r in records),
                             records=records, reported_by=str(ctx.caller))
    for key, value in index_writes:
        ctx.stub.put_state(key, value)
    ctx.stub.put_state(f"day~{a.business_day}~{batch_id}", str(batch_id).encode())
    ctx.stub.put_state(f"{_SUMMARY}{batch_id}",
                       canonical_json(summarise(acquirer, records)))
    ctx.session.save(batch)
    return {"id": str(batch_id), "count": batch.count, "amount_fen": batch.amount_fen}


def _issuer_batch(ctx: Context, batch_id: UUID) -> TransactionBatch:
    batch: TransactionBatch = ctx.session.get(batch_id, TransactionBatch, "batch",
                                              "batch_id")
    _ensure_day_open(ctx, batch.business_day)
    if ctx.caller.city not in load_consortium().city_names:
        raise Unauthorized("only an issuer city confirms or disputes records")
    return batch


# A batch's summary (chaincode.summary) under ``sum~<batch id>``, and its
# records that are not payable (in dispute or withdrawn) with their groups under
# ``sumx~<batch id>``, rewritten whenever a record's status changes.
_SUMMARY, _EXCLUDED = "sum~", "sumx~"


def _save(ctx: Context, batch: TransactionBatch) -> None:
    """Save the batch and the list of its records clearing must leave out."""
    ctx.session.save(batch)
    out = {rid: group_of(batch.records[rid])
           for rid, status in sorted(batch.status.items()) if status not in PAYABLE}
    if out:
        ctx.stub.put_state(f"{_EXCLUDED}{batch.id}", canonical_json(out))
    else:
        ctx.stub.del_state(f"{_EXCLUDED}{batch.id}")


@command("ConfirmTransactions", ConfirmArgs, Role.CITY_ADMIN)
def confirm_transactions(ctx: Context, a: ConfirmArgs) -> dict[str, Any]:
    batch = _issuer_batch(ctx, a.batch_id)
    chosen = batch.confirm(ctx.caller.city, list(a.record_ids), str(ctx.caller))
    ctx.session.save(batch)
    return {"id": str(batch.id), "confirmed": len(chosen)}


@command("DisputeTransactions", DisputeArgs, Role.CITY_ADMIN)
def dispute_transactions(ctx: Context, a: DisputeArgs) -> dict[str, Any]:
    batch = _issuer_batch(ctx, a.batch_id)
    chosen = batch.dispute(ctx.caller.city, list(a.record_ids), a.reason,
                           str(ctx.caller))
    _save(ctx, batch)
    return {"id": str(batch.id), "disputed": len(chosen)}


@command("RespondToDispute", DisputeResponseArgs, Role.CITY_ADMIN)
def respond_to_dispute(ctx: Context, a: DisputeResponseArgs) -> dict[str, Any]:
    """The acquirer answers its issuer's dispute: ``accept`` withdraws the
    records for good; ``contest`` puts them to the center with the evidence's
    SM3 (the evidence itself stays off chain)."""
    batch: TransactionBatch = ctx.session.get(a.batch_id, TransactionBatch,
                                              "batch", "batch_id")
    ids, by = list(a.record_ids), str(ctx.caller)
    if a.response == "accept":
        chosen = batch.accept_dispute(ctx.caller.city, ids, by)
    else:
        if a.evidence_sm3 is None:
            raise InvalidArgument("a contested dispute needs the SM3 of its "
                                  "evidence (64 hex digits)", "evidence_sm3")
        chosen = batch.contest_dispute(ctx.caller.city, ids, a.evidence_sm3,
                                       a.note or "", by)
    _save(ctx, batch)
    return {"id": str(batch.id), "response": a.response, "records": len(chosen)}


# Records upheld after their business day was cleared wait under
# ``adj~<batch id>~<resolving tx id>`` for the next clearing run, which clears
# them as an adjustment and deletes the key: each is cleared exactly once.
_ADJUSTMENT_PREFIX = "adj~"


@command("ArbitrateDispute", ArbitrateArgs, Role.CENTER_ADMIN)
def arbitrate_dispute(ctx: Context, a: ArbitrateArgs) -> dict[str, Any]:
    """The center decides contested records: for the ``acquirer`` they are
    cleared (in their own day's run if it is still open, else as an adjustment
    in the next run); for the ``issuer`` they are withdrawn."""
    batch: TransactionBatch = ctx.session.get(a.batch_id, TransactionBatch,
                                              "batch", "batch_id")
    chosen = batch.resolve_dispute(list(a.record_ids), a.decision, a.reason,
                                   str(ctx.caller))
    adjustment = (a.decision == "acquirer" and ctx.session.exists(
        ClearingRun.create_id(batch.business_day)))
    if adjustment:
        ctx.stub.put_state(f"{_ADJUSTMENT_PREFIX}{batch.id}~{ctx.stub.get_tx_id()}",
                           canonical_json({"batch_id": str(batch.id),
                                           "record_ids": chosen}))
    _save(ctx, batch)
    return {"id": str(batch.id), "decision": a.decision, "records": len(chosen),
            "adjustment": adjustment}


def _adjustments(ctx: Context, all_rules: list[dict[str, Any]]
                 ) -> tuple[list[Any], list[dict[str, Any]]]:
    """The pending adjustments, cleared under the fee rules of their own day,
    and their summaries; their keys are deleted (this run clears them)."""
    start, end = prefix_range(_ADJUSTMENT_PREFIX)
    pending = list(ctx.stub.get_state_by_range(start, end))
    parts, summaries = [], []
    cities = load_consortium().city_names
    for key, value in pending:
        entry = json.loads(value)
        batch: TransactionBatch = ctx.session.get(UUID(entry["batch_id"]),
                                                  TransactionBatch, "batch")
        part = RecordsOf.of(batch, entry["record_ids"])
        c = clear([part], cities, rules_in_effect(all_rules, batch.business_day))
        parts.append(c)
        summaries.append({
            "batch_id": entry["batch_id"], "business_day": batch.business_day,
            "acquirer_city": batch.acquirer_city,
            "issuer_cities": sorted({r["issuer_city"] for r in part.records.values()}),
            "record_ids": entry["record_ids"], "records": c.records,
            "gross_fen": c.gross_fen, "fees_fen": c.fees_fen})
        ctx.stub.del_state(key)
    return parts, summaries


# Fee rules (服务价格), one key per version under ``fee~<scene>~<party>~<day>``
# holding the version's canonical JSON, so that a clearing reads every version in
# one range query; the FeeRule aggregate is the record of its publication.
_FEE_PREFIX = "fee~"


def _fee_rules(stub: Stub, prefix: str = _FEE_PREFIX) -> list[dict[str, Any]]:
    start, end = prefix_range(prefix)
    return [json.loads(v) for _, v in stub.get_state_by_range(start, end)]


@command("PublishFeeRule", FeeRuleArgs, Role.CENTER_ADMIN)
def publish_fee_rule(ctx: Context, a: FeeRuleArgs) -> dict[str, Any]:
    if a.min_fee_fen > a.max_fee_fen:
        raise InvalidArgument(f"min_fee_fen: {a.min_fee_fen} exceeds max_fee_fen "
                              f"{a.max_fee_fen} (min must be at most max)",
                              "min_fee_fen")
    # A day already cleared keeps the fees it was cleared with.
    _ensure_day_open(ctx, a.effective_day, "effective_day")
    versions = _fee_rules(ctx.stub, f"{_FEE_PREFIX}{a.scene}~{a.party}~")
    if any(v["effective_day"] == a.effective_day for v in versions):
        raise Conflict(f"a {a.scene} fee rule for the {a.party} is already "
                       f"effective on {a.effective_day} (publish a later day)",
                       field="effective_day")
    rule = FeeRule(scene=a.scene, party=a.party, rate_bps=a.rate_bps,
                   min_fee_fen=a.min_fee_fen, max_fee_fen=a.max_fee_fen,
                   effective_day=a.effective_day, rule_version=len(versions) + 1,
                   published_by=str(ctx.caller))
    out = {"id": str(rule.id), "scene": a.scene, "party": a.party,
           "rate_bps": a.rate_bps, "min_fee_fen": a.min_fee_fen,
           "max_fee_fen": a.max_fee_fen, "effective_day": a.effective_day,
           "rule_version": rule.rule_version}
    ctx.stub.put_state(f"{_FEE_PREFIX}{a.scene}~{a.party}~{a.effective_day}",
                       canonical_json(out))
    ctx.session.save(rule)
    return out


@query("GetFeeRules", NoArgs)
def get_fee_rules(ctx: Context, a: NoArgs) -> dict[str, Any]:
    """Every version of every fee rule, by scene, party and effective day."""
    return {"rules": _fee_rules(ctx.stub)}


@command("RunClearing", ClearingArgs, Role.CENTER_ADMIN)
def run_clearing(ctx: Context, a: ClearingArgs) -> dict[str, Any]:
    _ensure_day_open(ctx, a.business_day)
    start, end = prefix_range(f"day~{a.business_day}~")
    batch_ids = [UUID(v.decode()) for _, v in ctx.stub.get_state_by_range(start, end)]
    all_rules = _fee_rules(ctx.stub)
    rules = rules_in_effect(all_rules, a.business_day)
    cities = load_consortium().city_names
    day = _clear_day(ctx, batch_ids, cities, rules)
    adjusted, adjustments = _adjustments(ctx, all_rules)
    c = combined([day, *adjusted], cities)
    fields: dict[str, Any] = dict(
        business_day=a.business_day, batches=[str(b) for b in batch_ids],
        records=c.records, excluded_disputed=c.excluded, gross_fen=c.gross_fen,
        positions=c.positions, run_by=str(ctx.caller),
        center_fee_fen=c.center_fee_fen, fees_fen=c.fees_fen, pairs=c.pairs,
        cities=c.cities, fee_rules=[str(rules[k]["id"]) for k in sorted(rules)],
        adjustments=adjustments, flagged=c.flagged)
    named = {**fields, "id": ClearingRun.create_id(a.business_day)}
    statements = {city: sm3_hex(canonical_json(settlement_statement(named, city)))
                  for city in cities}
    run = ClearingRun(**fields, statements=statements)
    ctx.session.save(run)
    return {"id": str(run.id), "positions": c.positions, "records": c.records,
            "excluded_disputed": c.excluded, "gross_fen": c.gross_fen,
            "center_fee_fen": c.center_fee_fen, "fees_fen": c.fees_fen,
            "pairs": c.pairs, "cities": c.cities, "adjustments": adjustments,
            "flagged": c.flagged, "statements": statements}


def _clear_day(ctx: Context, batch_ids: list[UUID], cities: tuple[str, ...],
               rules: dict[tuple[str, str], Any]) -> Clearing:
    """Clear a day's batches from their summaries (a batch reported before
    summaries, from its records); the records of blacklisted cards are looked
    for only in the batches whose Bloom filter may hold one."""
    summarised: list[tuple[UUID, dict[str, Any], dict[str, list[Any]]]] = []
    legacy: list[TransactionBatch] = []
    for b in batch_ids:
        raw = ctx.stub.get_state(f"{_SUMMARY}{b}")
        if raw is None:
            legacy.append(ctx.session.get(b, TransactionBatch, "batch"))
            continue
        out = ctx.stub.get_state(f"{_EXCLUDED}{b}")
        summarised.append((b, json.loads(raw), json.loads(out) if out else {}))
    blacklist = blacklist_of(ctx.stub)
    flagged: list[dict[str, Any]] = []
    if blacklist:
        cards = [probes(card) for card in sorted(blacklist)]
        for b, summary, _ in summarised:
            if may_hold_any(summary, cards):
                flagged += flagged_in(ctx.session.get(b, TransactionBatch, "batch"),
                                      blacklist)
    day = combined([clear_summaries([(s, x) for _, s, x in summarised], cities,
                                    rules),
                    clear(legacy, cities, rules, blacklist)], cities)
    return replace(day, flagged=sorted(day.flagged + flagged, key=lambda f: (
        f["batch_id"], f["record_id"])))


QUERIES["GetBatch"] = (IdArgs, getter(TransactionBatch, "batch"))


@query("GetClearingRun", ClearingArgs)
def get_clearing_run(ctx: Context, a: ClearingArgs) -> dict[str, Any]:
    return state_of(ctx.session.get(ClearingRun.create_id(a.business_day),
                                  ClearingRun, "clearing run"))


