"""Aggregates of the three event families. Each command method checks an
invariant, then records a past-tense event; ids are derived from natural keys.

Authority checks (who may call) live in ``contract.py``; the rules about the
aggregates' own state live here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, Protocol
from uuid import UUID

from eventsourcing.domain import event

from chaincode.errors import ChecksFailed, Conflict, InvalidArgument, Unauthorized
from chaincode.recorder import LedgerAggregate, derive_id

PHYSICAL_RELATIONS = ("attached", "belongs", "contains")
BUSINESS_RELATIONS = ("organisation", "person")


# ---------------------------------------------------------------- identifiers
class Identifier(LedgerAggregate):
    """A unified base identifier (统一基础标识) of a person, organisation,
    object or place. Objects are active only once linked both physically and to
    a business owner."""

    @staticmethod
    def create_id(scheme: str, natural_key_hash: str, **_: Any) -> UUID:
        return derive_id("identifier", scheme, natural_key_hash)

    @event("Registered")
    def __init__(self, kind: str, category: str, scheme: str,
                 natural_key_hash: str, attributes: str | None, city: str,
                 registered_by: str) -> None:
        self.kind = kind
        self.category = category
        self.scheme = scheme
        self.natural_key_hash = natural_key_hash
        self.attributes = attributes
        self.city = city
        self.registered_by = registered_by
        self.links: list[dict[str, str]] = []
        self.status = "pending" if kind == "object" else "active"

    def link_to(self, target: Identifier, relation: str, by: str) -> None:
        if self.status == "revoked" or target.status == "revoked":
            raise Conflict("a revoked identifier cannot be linked", field="target_id")
        if target.id == self.id:
            raise InvalidArgument("an identifier cannot link to itself", "target_id")
        if relation in BUSINESS_RELATIONS and target.kind != relation:
            raise InvalidArgument(
                f"a {relation} link needs a {relation} target, not a {target.kind}",
                "target_id")
        if any(ln["target_id"] == str(target.id) and ln["relation"] == relation
               for ln in self.links):
            raise Conflict("this link is already recorded", field="target_id")
        self._linked(target_id=str(target.id), relation=relation, linked_by=by)
        relations = {ln["relation"] for ln in self.links}
        if (self.status == "pending" and relations & set(PHYSICAL_RELATIONS)
                and relations & set(BUSINESS_RELATIONS)):
            self._activated()

    @event("Linked")
    def _linked(self, target_id: str, relation: str, linked_by: str) -> None:
        self.links.append({"target_id": target_id, "relation": relation})

    @event("Activated")
    def _activated(self) -> None:
        self.status = "active"

    def revoke(self, reason: str, by: str) -> None:
        if self.status == "revoked":
            raise Conflict(f"identifier {self.id} is already revoked",
                           field="identifier_id")
        self._revoked(reason=reason, revoked_by=by)

    @event("Revoked")
    def _revoked(self, reason: str, revoked_by: str) -> None:
        self.status = "revoked"


# ---------------------------------------------------------------- code schemes
class Department(LedgerAggregate):
    """A city department (委办局) and the code types it is responsible for."""

    @staticmethod
    def create_id(city: str, code: str, **_: Any) -> UUID:
        return derive_id("department", city, code)

    @event("Registered")
    def __init__(self, city: str, code: str, name: str, duties: list[str]) -> None:
        self.city = city
        self.code = code
        self.name = name
        self.duties = duties


class CodeScheme(LedgerAggregate):
    """A department's application to issue one type of city QR code in a scope."""

    @staticmethod
    def create_id(city: str, department: str, application_name: str,
                  **_: Any) -> UUID:
        return derive_id("codescheme", city, department, application_name)

    @event("Applied")
    def __init__(self, city: str, department: str, application_name: str,
                 code_type: str, scope: str, data_sharing_commitment: bool,
                 applied_by: str) -> None:
        self.city = city
        self.department = department
        self.application_name = application_name
        self.code_type = code_type
        self.scope = scope
        self.data_sharing_commitment = data_sharing_commitment
        self.applied_by = applied_by
        self.status = "applied"
        self.checks: dict[str, bool] = {}

    def _ensure_open(self) -> None:
        if self.status != "applied":
            raise Conflict(f"code scheme {self.id} is already {self.status}",
                           field="scheme_id")

    def approve(self, checks: dict[str, bool], by: str) -> None:
        self._ensure_open()
        failed = [name for name, ok in checks.items() if not ok]
        if failed:
            raise ChecksFailed(
                "cannot approve: failed checks " + ", ".join(failed)
                + " (reject the application instead)", field="scheme_id")
        self._approved(checks=checks, approved_by=by)

    @event("Approved")
    def _approved(self, checks: dict[str, bool], approved_by: str) -> None:
        self.status = "approved"
        self.checks = checks

    def reject(self, checks: dict[str, bool], reason: str, by: str) -> None:
        self._ensure_open()
        self._rejected(checks=checks, reason=reason, rejected_by=by)

    @event("Rejected")
    def _rejected(self, checks: dict[str, bool], reason: str,
                  rejected_by: str) -> None:
        self.status = "rejected"
        self.checks = checks


# ------------------------------------------------ cross-city card transactions
class TransactionBatch(LedgerAggregate):
    """Cross-city card transactions reported by the acquirer city for one
    business day, confirmed or disputed record by record by the issuer cities."""

    @staticmethod
    def create_id(acquirer_city: str, merkle_root: str, **_: Any) -> UUID:
        return derive_id("batch", acquirer_city, merkle_root)

    @event("Reported")
    def __init__(self, acquirer_city: str, business_day: str, merkle_root: str,
                 count: int, amount_fen: int, records: list[dict[str, Any]],
                 reported_by: str) -> None:
        self.acquirer_city = acquirer_city
        self.business_day = business_day
        self.merkle_root = merkle_root
        self.count = count
        self.amount_fen = amount_fen
        self.records = {r["record_id"]: r for r in records}
        self.status = {r["record_id"]: "reported" for r in records}

    def _select(self, issuer_city: str, record_ids: list[str]) -> list[str]:
        mine = [rid for rid, r in self.records.items()
                if r["issuer_city"] == issuer_city]
        if not record_ids:
            return [rid for rid in mine if self.status[rid] == "reported"]
        for rid in record_ids:
            if rid not in self.records:
                raise InvalidArgument(f"record {rid!r} is not in batch {self.id}",
                                      "record_ids")
            if self.records[rid]["issuer_city"] != issuer_city:
                raise Unauthorized(
                    f"record {rid!r} was issued by "
                    f"{self.records[rid]['issuer_city']}, not {issuer_city}",
                    "record_ids")
            if self.status[rid] != "reported":
                raise Conflict(f"record {rid!r} is already {self.status[rid]}",
                               field="record_ids")
        return sorted(set(record_ids))

    def confirm(self, issuer_city: str, record_ids: list[str], by: str) -> list[str]:
        chosen = self._select(issuer_city, record_ids)
        if not chosen:
            raise Conflict(f"no reported records of {issuer_city} left to confirm",
                           field="record_ids")
        self._confirmed(issuer_city=issuer_city, record_ids=chosen, confirmed_by=by)
        return chosen

    @event("Confirmed")
    def _confirmed(self, issuer_city: str, record_ids: list[str],
                   confirmed_by: str) -> None:
        for rid in record_ids:
            self.status[rid] = "confirmed"

    def dispute(self, issuer_city: str, record_ids: list[str], reason: str,
                by: str) -> list[str]:
        if not record_ids:
            raise InvalidArgument("name the disputed records", "record_ids")
        chosen = self._select(issuer_city, record_ids)
        self._disputed(issuer_city=issuer_city, record_ids=chosen, reason=reason,
                       disputed_by=by)
        return chosen

    @event("Disputed")
    def _disputed(self, issuer_city: str, record_ids: list[str], reason: str,
                  disputed_by: str) -> None:
        for rid in record_ids:
            self.status[rid] = "disputed"

    # A dispute resolves (see DISPUTE_STATES): the acquirer accepts it (the
    # records are withdrawn) or contests it with evidence; the center arbitrates a
    # contested record for the acquirer (upheld: cleared after all, as an
    # adjustment once its day is cleared) or for the issuer (withdrawn).
    def _in_state(self, record_ids: list[str], state: str,
                  field: str = "record_ids") -> list[str]:
        if not record_ids:
            raise InvalidArgument("name the records", field)
        for rid in record_ids:
            if rid not in self.records:
                raise InvalidArgument(f"record {rid!r} is not in batch {self.id}",
                                      field)
            if self.status[rid] != state:
                raise Conflict(f"record {rid!r} is {self.status[rid]}, not {state}",
                               field=field)
        return sorted(set(record_ids))

    def _own_acquirer(self, city: str) -> None:
        if city != self.acquirer_city:
            raise Unauthorized(f"batch {self.id} was reported by "
                               f"{self.acquirer_city}, not {city}", "batch_id")

    def accept_dispute(self, acquirer_city: str, record_ids: list[str],
                       by: str) -> list[str]:
        self._own_acquirer(acquirer_city)
        chosen = self._in_state(record_ids, "disputed")
        self._dispute_accepted(record_ids=chosen, accepted_by=by)
        return chosen

    @event("DisputeAccepted")
    def _dispute_accepted(self, record_ids: list[str], accepted_by: str) -> None:
        for rid in record_ids:
            self.status[rid] = "withdrawn"

    def contest_dispute(self, acquirer_city: str, record_ids: list[str],
                        evidence_sm3: str, note: str, by: str) -> list[str]:
        self._own_acquirer(acquirer_city)
        chosen = self._in_state(record_ids, "disputed")
        self._dispute_contested(record_ids=chosen, evidence_sm3=evidence_sm3,
                                note=note, contested_by=by)
        return chosen

    @event("DisputeContested")
    def _dispute_contested(self, record_ids: list[str], evidence_sm3: str,
                           note: str, contested_by: str) -> None:
        for rid in record_ids:
            self.status[rid] = "contested"

    def resolve_dispute(self, record_ids: list[str], decision: str, reason: str,
                        by: str) -> list[str]:
        chosen = self._in_state(record_ids, "contested")
        self._dispute_resolved(record_ids=chosen, decision=decision, reason=reason,
                               resolved_by=by)
        return chosen

    @event("DisputeResolved")
    def _dispute_resolved(self, record_ids: list[str], decision: str, reason: str,
                          resolved_by: str) -> None:
        state = "upheld" if decision == "acquirer" else "withdrawn"
        for rid in record_ids:
            self.status[rid] = state


# Record states. A record is cleared while PAYABLE; a disputed or contested one
# waits, a withdrawn one is never cleared.
PAYABLE = frozenset({"reported", "confirmed", "upheld"})
DISPUTE_STATES = ("disputed", "contested", "withdrawn", "upheld")


class ClearingRun(LedgerAggregate):
    """The daily clearing (清分) of one business day: net position per city after
    fees, the center's fee income, and the figures per pair of cities and per city.
    The fields after ``positions`` were added with fees; a run recorded before
    them reads as one without fees."""

    @staticmethod
    def create_id(business_day: str, **_: Any) -> UUID:
        return derive_id("clearing", business_day)

    @event("Completed")
    def __init__(self, business_day: str, batches: list[str], records: int,
                 excluded_disputed: int, gross_fen: int, positions: dict[str, int],
                 run_by: str, center_fee_fen: int = 0, fees_fen: int = 0,
                 pairs: list[dict[str, Any]] | None = None,
                 cities: dict[str, dict[str, int]] | None = None,
                 fee_rules: list[str] | None = None,
                 adjustments: list[dict[str, Any]] | None = None,
                 flagged: list[dict[str, Any]] | None = None,
                 statements: dict[str, str] | None = None) -> None:
        # an invariant, not user input
        if sum(positions.values()) + center_fee_fen != 0:
            raise AssertionError("positions with the center's fees must sum to zero")
        self.business_day = business_day
        self.batches = batches
        self.records = records
        self.excluded_disputed = excluded_disputed
        self.gross_fen = gross_fen
        self.positions = positions
        self.center_fee_fen = center_fee_fen
        self.fees_fen = fees_fen
        self.pairs = pairs or []
        self.cities = cities or {}
        self.fee_rules = fee_rules or []
        # Added with settlement: records of earlier days cleared in this run
        # (disputes resolved for the acquirer), records of blacklisted cards,
        # and the SM3 of each city's statement (``settlement_statement``).
        self.adjustments = adjustments or []
        self.flagged = flagged or []
        self.statements = statements or {}


# ------------------------------------------------------------------ fees
SCENES = ("metro", "bus", "taxi", "ferry", "parking", "park_and_ride", "retail",
          "other")
RECORD_TYPES = ("purchase", "top_up", "refund")
PARTIES = ("acquirer", "issuer")
DEFAULT_SCENE, DEFAULT_TYPE = "other", "purchase"


class FeeRule(LedgerAggregate):
    """One version of the service price (服务价格) the center charges a party
    (the acquirer or the issuer city) per record of a scene, in effect from its
    effective business day until a version with a later effective day."""

    @staticmethod
    def create_id(scene: str, party: str, effective_day: str, **_: Any) -> UUID:
        return derive_id("feerule", scene, party, effective_day)

    @event("Published")
    def __init__(self, scene: str, party: str, rate_bps: int, min_fee_fen: int,
                 max_fee_fen: int, effective_day: str, rule_version: int,
                 published_by: str) -> None:
        self.scene = scene
        self.party = party
        self.rate_bps = rate_bps
        self.min_fee_fen = min_fee_fen
        self.max_fee_fen = max_fee_fen
        self.effective_day = effective_day
        self.rule_version = rule_version
        self.published_by = published_by


def fee_of(amount_fen: int, rule: Mapping[str, Any] | None) -> int:
    """The fee in fen on a record of ``amount_fen`` under ``rule`` (None: no fee):
    ``clamp(round_half_up(amount_fen * rate_bps / 10000), min_fee_fen,
    max_fee_fen)``, in integers only. Rounding is half up: a remainder of exactly
    half a fen rounds up (amount 50 fen at 100 bps is 0.5 fen: fee 1), anything
    less rounds down (49 fen: 0.49, fee 0). Amounts and rates are never negative,
    so half up is ``(amount_fen * rate_bps + 5000) // 10000``."""
    if rule is None:
        return 0
    fee = (amount_fen * int(rule["rate_bps"]) + 5000) // 10000
    return max(int(rule["min_fee_fen"]), min(int(rule["max_fee_fen"]), fee))


def rules_in_effect(rules: Iterable[Mapping[str, Any]], business_day: str
                    ) -> dict[tuple[str, str], Mapping[str, Any]]:
    """Per (scene, party), the version with the latest effective day on or
    before ``business_day``."""
    out: dict[tuple[str, str], Mapping[str, Any]] = {}
    for rule in rules:
        key = (str(rule["scene"]), str(rule["party"]))
        if rule["effective_day"] <= business_day and (
                key not in out or out[key]["effective_day"] < rule["effective_day"]):
            out[key] = rule
    return out


class ClearedBatch(Protocol):
    """What clearing reads of a batch (a ``TransactionBatch``)."""

    @property
    def id(self) -> UUID: ...
    @property
    def acquirer_city(self) -> str: ...
    @property
    def records(self) -> dict[str, dict[str, Any]]: ...
    @property
    def status(self) -> dict[str, str]: ...


@dataclass(frozen=True)
class Clearing:
    """The figures of one clearing: ``positions`` (city -> net fen after fees)
    and ``center_fee_fen`` sum to zero. ``flagged``: cleared records of a card
    blacklisted before the record's time."""

    positions: dict[str, int]
    center_fee_fen: int
    fees_fen: int
    records: int
    excluded: int
    gross_fen: int
    pairs: list[dict[str, Any]]
    cities: dict[str, dict[str, int]]
    flagged: list[dict[str, Any]]


def _utc(time: str) -> datetime:
    return datetime.fromisoformat(time)


class Tally:
    """The sums of a clearing, ``n`` equal records at a time.

    Direction: a purchase or a refund (退卡) is paid out by the acquirer city from a
    balance the issuer holds, so the issuer owes the acquirer the amount; a top-up
    (充值) is cash the acquirer took for the issuer's card, so the acquirer owes
    the issuer. Fees: each party pays the center the fee of its own rule for the
    record's scene (``fee_of``), whichever way the amount flows. Per pair
    (acquirer, issuer): records, gross (amounts), each party's fees, and net (what
    the issuer owes the acquirer, negative when the acquirer owes). Per city:
    gross (amounts owed to it less amounts it owes), fees it pays, net = gross -
    fees, its position. Integers only; pairs sorted, cities sorted."""

    def __init__(self, cities: Iterable[str],
                 rules: Mapping[tuple[str, str], Mapping[str, Any]]) -> None:
        self.names = sorted(cities)
        self.rules = rules
        self.gross_by = dict.fromkeys(self.names, 0)
        self.fees_by = dict.fromkeys(self.names, 0)
        self.pairs: dict[tuple[str, str], list[int]] = {}
        self.records = self.gross = 0

    def add(self, acquirer: str, issuer: str, scene: str, kind: str, amount: int,
            n: int = 1) -> None:
        signed = (-amount if kind == "top_up" else amount) * n
        fee_a = fee_of(amount, self.rules.get((scene, "acquirer"))) * n
        fee_i = fee_of(amount, self.rules.get((scene, "issuer"))) * n
        self.gross_by[acquirer] += signed
        self.gross_by[issuer] -= signed
        self.fees_by[acquirer] += fee_a
        self.fees_by[issuer] += fee_i
        pair = self.pairs.setdefault((acquirer, issuer), [0, 0, 0, 0, 0])
        for k, v in enumerate((n, amount * n, fee_a, fee_i, signed)):
            pair[k] += v
        self.records += n
        self.gross += amount * n

    def result(self, excluded: int, flagged: list[dict[str, Any]]) -> Clearing:
        positions = {c: self.gross_by[c] - self.fees_by[c] for c in self.names}
        center = sum(self.fees_by.values())
        return Clearing(
            positions=positions, center_fee_fen=center, fees_fen=center,
            records=self.records, excluded=excluded, gross_fen=self.gross,
            pairs=[{"acquirer_city": a, "issuer_city": i,
                    **dict(zip(_PAIR_SUMS, p, strict=True))}
                   for (a, i), p in sorted(self.pairs.items())],
            cities={c: {"gross_fen": self.gross_by[c], "fees_fen": self.fees_by[c],
                        "net_fen": positions[c]} for c in self.names},
            flagged=sorted(flagged, key=lambda f: (f["batch_id"], f["record_id"])))


def clear(batches: Iterable[ClearedBatch], cities: Iterable[str],
          rules: Mapping[tuple[str, str], Mapping[str, Any]],
          blacklist: Mapping[str, str] | None = None) -> Clearing:
    """Clear the PAYABLE records of ``batches`` under the fee ``rules`` in effect
    (``rules_in_effect``; the sums as ``Tally`` says); other records count as
    excluded. ``blacklist`` maps a card's hash to the time it was blacklisted:
    a record of that card at or after that time is cleared and flagged."""
    tally = Tally(cities, rules)
    flagged: list[dict[str, Any]] = []
    excluded = 0
    for batch in batches:
        for rid, rec in batch.records.items():
            if batch.status[rid] not in PAYABLE:
                excluded += 1
                continue
            tally.add(batch.acquirer_city, rec["issuer_city"],
                      rec.get("scene", DEFAULT_SCENE), rec.get("type", DEFAULT_TYPE),
                      int(rec["amount_fen"]))
        if blacklist:
            flagged += flagged_in(batch, blacklist)
    return tally.result(excluded, flagged)


def flagged_in(batch: ClearedBatch, blacklist: Mapping[str, str]
               ) -> list[dict[str, Any]]:
    """The payable records of ``batch`` of a card in ``blacklist`` (card hash
    -> the time from which it is blocked) at or after that time."""
    out = []
    for rid, rec in batch.records.items():
        since = blacklist.get(rec["card_id_hash"])
        if (since is not None and batch.status[rid] in PAYABLE
                and _utc(rec["time"]) >= _utc(since)):
            out.append({"batch_id": str(batch.id), "record_id": rid,
                        "card_id_hash": rec["card_id_hash"],
                        "acquirer_city": batch.acquirer_city,
                        "issuer_city": rec["issuer_city"], "time": rec["time"],
                        "blacklisted_at": since})
    return out


_PAIR_SUMS = ("records", "gross_fen", "acquirer_fee_fen", "issuer_fee_fen",
              "net_fen")


def combined(parts: Iterable[Clearing], cities: Iterable[str]) -> Clearing:
    """One clearing of several (a day's records and the adjustments of earlier
    days entering its run): every figure summed, pair by pair and city by city."""
    names = sorted(cities)
    positions = dict.fromkeys(names, 0)
    by_city = {c: {"gross_fen": 0, "fees_fen": 0, "net_fen": 0} for c in names}
    pairs: dict[tuple[str, str], dict[str, int]] = {}
    center = records = excluded = gross = 0
    flagged: list[dict[str, Any]] = []
    for part in parts:
        center += part.center_fee_fen
        records += part.records
        excluded += part.excluded
        gross += part.gross_fen
        flagged += part.flagged
        for c in names:
            positions[c] += part.positions[c]
            for k in by_city[c]:
                by_city[c][k] += part.cities[c][k]
        for p in part.pairs:
            into = pairs.setdefault((p["acquirer_city"], p["issuer_city"]),
                                    dict.fromkeys(_PAIR_SUMS, 0))
            for k in _PAIR_SUMS:
                into[k] += p[k]
    return Clearing(
        positions=positions, center_fee_fen=center, fees_fen=center,
        records=records, excluded=excluded, gross_fen=gross,
        pairs=[{"acquirer_city": a, "issuer_city": i, **p}
               for (a, i), p in sorted(pairs.items())],
        cities=by_city, flagged=flagged)


@dataclass(frozen=True)
class RecordsOf:
    """Some records of a batch, all cleared as payable: the records of an
    adjustment (a dispute resolved for the acquirer after its day was cleared)."""

    id: UUID
    acquirer_city: str
    records: dict[str, dict[str, Any]]
    status: dict[str, str]

    @classmethod
    def of(cls, batch: ClearedBatch, record_ids: Iterable[str]) -> RecordsOf:
        ids = sorted(record_ids)
        return cls(batch.id, batch.acquirer_city,
                   {rid: batch.records[rid] for rid in ids},
                   dict.fromkeys(ids, "upheld"))


# ------------------------------------------------------------ settlement
# A city confirms its statement by the end (UTC) of this many days after the
# business day; later, the statement is overdue.
CONFIRM_WITHIN_DAYS = 2
STATEMENT_KIND = "cityunion/settlement-statement/1"


def settlement_statement(run: Mapping[str, Any], city: str) -> dict[str, Any]:
    """The settlement statement (结算单) of ``city`` for the day of ``run`` (a
    clearing run's fields, as ``RunClearing`` makes them and ``state_of``
    returns them): a canonical document derived from the run alone, whose SM3
    the run records and which the city signs to confirm it."""
    position = run["positions"][city]
    figures = run.get("cities") or {}
    confirm_by = date.fromisoformat(run["business_day"]) + timedelta(
        days=CONFIRM_WITHIN_DAYS)
    return {
        "kind": STATEMENT_KIND, "business_day": run["business_day"], "city": city,
        "clearing_run": str(run["id"]), "position_fen": position,
        **figures.get(city, {"gross_fen": position, "fees_fen": 0,
                             "net_fen": position}),
        "pairs": [p for p in run.get("pairs") or []
                  if city in (p["acquirer_city"], p["issuer_city"])],
        "adjustments": [a for a in run.get("adjustments") or []
                        if city in (a["acquirer_city"], *a["issuer_cities"])],
        "flagged_records": sum(1 for f in run.get("flagged") or []
                               if city in (f["acquirer_city"], f["issuer_city"])),
        "fee_rules": run.get("fee_rules") or [],
        "confirm_by": confirm_by.isoformat()}


class Settlement(LedgerAggregate):
    """A city's settlement (结算) of one business day: confirmed by the city
    with its SM2 signature over the statement, completed by the center once
    funds have moved."""

    @staticmethod
    def create_id(business_day: str, city: str, **_: Any) -> UUID:
        return derive_id("settlement", business_day, city)

    @event("Confirmed")
    def __init__(self, business_day: str, city: str, statement_sm3: str,
                 position_fen: int, signature: str, key_sm3: str,
                 confirmed_by: str) -> None:
        self.business_day = business_day
        self.city = city
        self.statement_sm3 = statement_sm3
        self.position_fen = position_fen
        self.signature = signature
        self.key_sm3 = key_sm3
        self.confirmed_by = confirmed_by
        self.status = "confirmed"
        self.payment_reference: str | None = None

    def complete(self, payment_reference: str, by: str) -> None:
        if self.status == "completed":
            raise Conflict(f"the {self.city} settlement of {self.business_day} is "
                           f"already completed ({self.payment_reference})",
                           field="city")
        self._completed(payment_reference=payment_reference, completed_by=by)

    @event("Completed")
    def _completed(self, payment_reference: str, completed_by: str) -> None:
        self.status = "completed"
        self.payment_reference = payment_reference


class SettlementKey(LedgerAggregate):
    """A member city's SM2 public key for settlement: statements are confirmed
    with the key in effect; registering again rotates it."""

    @staticmethod
    def create_id(city: str, **_: Any) -> UUID:
        return derive_id("settlementkey", city)

    @event("Registered")
    def __init__(self, city: str, public_key: str, key_sm3: str,
                 registered_by: str) -> None:
        self.city = city
        self.public_key = public_key
        self.key_sm3 = key_sm3
        self.registered_by = registered_by

    @event("Rotated")
    def rotate(self, public_key: str, key_sm3: str, registered_by: str) -> None:
        self.public_key = public_key
        self.key_sm3 = key_sm3
        self.registered_by = registered_by


# --------------------------------------------------------- card blacklist
BLACKLIST_REASONS = ("lost", "stolen", "blocked", "fraud")


class Card(LedgerAggregate):
    """A card by the hash of its number, once its issuer city reports it lost
    or blocked (挂失): records of it from then on are flagged in clearing."""

    @staticmethod
    def create_id(card_id_hash: str, **_: Any) -> UUID:
        return derive_id("card", card_id_hash)

    @event("Blacklisted")
    def __init__(self, card_id_hash: str, issuer_city: str, reason: str,
                 since: str, reported_by: str) -> None:
        self.card_id_hash = card_id_hash
        self.issuer_city = issuer_city
        self.reason = reason
        self.since = since
        self.reported_by = reported_by


def scheme_checks(department: Department | None, code_type: str,
                  covering_scheme: str | None, commitment: bool) -> dict[str, bool]:
    """The three approval checks, computed on chain and recorded with the decision."""
    return {
        "duty": department is not None and code_type in department.duties,
        "duplicate": covering_scheme is None,
        "sharing": bool(commitment),
    }


# ------------------------------------------------------------- city QR codes
KEY_LEVELS = ("root", "institution", "user")


class IssuerKey(LedgerAggregate):
    """An SM2 key certified for the city QR code (center root → a city's
    institution key → its departments' and users' keys), by the SM3 fingerprint
    of its X.509 certificate. Revoked keys, and keys they certified, sign no
    valid code; a rotated key is replaced by a newer one of the same holder."""

    @staticmethod
    def create_id(fingerprint: str, **_: Any) -> UUID:
        return derive_id("issuerkey", fingerprint)

    @event("Certified")
    def __init__(self, fingerprint: str, level: str, city: str, holder: str,
                 issuer_fingerprint: str, certificate: str, not_before: str,
                 not_after: str, certified_by: str) -> None:
        self.fingerprint = fingerprint
        self.level = level
        self.city = city
        self.holder = holder
        self.issuer_fingerprint = issuer_fingerprint
        self.certificate = certificate
        self.not_before = not_before
        self.not_after = not_after
        self.certified_by = certified_by
        self.status = "active"

    def _ensure_active(self) -> None:
        if self.status != "active":
            raise Conflict(f"key {self.fingerprint} is already {self.status}",
                           field="fingerprint")

    def revoke(self, reason: str, by: str) -> None:
        self._ensure_active()
        self._revoked(reason=reason, revoked_by=by)

    @event("Revoked")
    def _revoked(self, reason: str, revoked_by: str) -> None:
        self.status = "revoked"

    def rotate(self, successor: str, by: str) -> None:
        self._ensure_active()
        self._rotated(successor=successor, rotated_by=by)

    @event("Rotated")
    def _rotated(self, successor: str, rotated_by: str) -> None:
        self.status = "rotated"


class GuideUrl(LedgerAggregate):
    """The URL a code scheme's codes lead to (URL备案), filed by the scheme's
    department and approved or rejected by its city or the center."""

    @staticmethod
    def create_id(scheme_id: str, url: str, **_: Any) -> UUID:
        return derive_id("guideurl", scheme_id, url)

    @event("Filed")
    def __init__(self, scheme_id: str, city: str, department: str, url: str,
                 filed_by: str) -> None:
        self.scheme_id = scheme_id
        self.city = city
        self.department = department
        self.url = url
        self.filed_by = filed_by
        self.status = "filed"

    def _ensure_filed(self) -> None:
        if self.status != "filed":
            raise Conflict(f"guide URL {self.url} is already {self.status}",
                           field="url_id")

    def approve(self, by: str) -> None:
        self._ensure_filed()
        self._approved(approved_by=by)

    @event("Approved")
    def _approved(self, approved_by: str) -> None:
        self.status = "approved"

    def reject(self, reason: str, by: str) -> None:
        self._ensure_filed()
        self._rejected(reason=reason, rejected_by=by)

    @event("Rejected")
    def _rejected(self, reason: str, rejected_by: str) -> None:
        self.status = "rejected"


class UserCertificate(LedgerAggregate):
    """A user's compact certificate for dynamic codes (kept off chain, on the
    user's device), revoked by the scheme's city or the center, e.g. for a
    lost phone: terminals refuse its codes once their trust bundle holds the
    revocation, until the certificate expires anyway."""

    @staticmethod
    def create_id(scheme_id: str, user_id: str, **_: Any) -> UUID:
        return derive_id("usercert", scheme_id, user_id)

    @event("Revoked")
    def __init__(self, scheme_id: str, city: str, user_id: str, until: str,
                 reason: str, revoked_by: str) -> None:
        self.scheme_id = scheme_id
        self.city = city
        self.user_id = user_id
        self.until = until
        self.reason = reason
        self.revoked_by = revoked_by


class CodeBatch(LedgerAggregate):
    """Static codes issued together for one scheme (发码): how many, valid
    when, signed by which key, to which guide URL, the Merkle root of their
    serials and the prefix every serial starts with (unique in the scheme).
    The codes themselves never go on chain."""

    @staticmethod
    def create_id(scheme_id: str, merkle_root: str, **_: Any) -> UUID:
        return derive_id("codebatch", scheme_id, merkle_root)

    @event("Issued")
    def __init__(self, scheme_id: str, city: str, department: str,
                 guide_url_id: str, signer_fingerprint: str, count: int,
                 not_before: str, not_after: str, merkle_root: str,
                 serial_prefix: str, issued_by: str) -> None:
        self.scheme_id = scheme_id
        self.city = city
        self.department = department
        self.guide_url_id = guide_url_id
        self.signer_fingerprint = signer_fingerprint
        self.count = count
        self.not_before = not_before
        self.not_after = not_after
        self.merkle_root = merkle_root
        self.serial_prefix = serial_prefix
        self.issued_by = issued_by


class CodeUsage(LedgerAggregate):
    """Scans of city QR codes reported by a city's terminal (用码), one report
    per Merkle root of its scans. Serials are random and codes appear only as
    their SM3, so a report holds no personal data."""

    @staticmethod
    def create_id(merkle_root: str, **_: Any) -> UUID:
        return derive_id("codeusage", merkle_root)

    @event("Reported")
    def __init__(self, city: str, terminal_id: str, merkle_root: str, count: int,
                 valid: int, refused: int, scans: list[dict[str, Any]],
                 reported_by: str) -> None:
        # the scans travel in the event (the read side's); the state keeps counts
        self.city = city
        self.terminal_id = terminal_id
        self.merkle_root = merkle_root
        self.count = count
        self.valid = valid
        self.refused = refused
        self.reported_by = reported_by
