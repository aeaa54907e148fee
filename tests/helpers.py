"""Builders shared by the tests: clients per identity of a ``Connection``, valid
card records and batches, worlds whose natural keys no other test uses (so that
tests can share one ledger), the check that a rejection changed nothing, and a
small scenario that touches every event family."""

from __future__ import annotations

import itertools
import os
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Generic, TypeVar, overload
from urllib.parse import urlsplit

import pytest

from chaincode import encoding
from chaincode.errors import ContractError, NotFound
from chaincode.merkle import merkle_root
from ledger.connect import EmbeddedConnection
from ledger.embedded import EmbeddedLedger, EmbeddedNode
from ledger.protocol import (
    CommittedEvent,
    Connection,
    KeyVersion,
    Ledger,
    Position,
    Receipt,
    VerifyReport,
)

CITIES = ("Shanghai", "Kunshan", "Taicang")
CENTER = "Center"
CENTER_USERS = ("admin", "auditor", "node")
CITY_USERS = ("admin", "transport", "health", "terminal", "auditor")
ALL_IDENTITIES: tuple[tuple[str, str], ...] = (
    *((CENTER, u) for u in CENTER_USERS),
    *((c, u) for c in CITIES for u in CITY_USERS),
)
DAY = "2026-11-20"
TIME = "2026-11-20T08:00:00Z"
SCENARIO_DAY = "2026-11-19"  # run_scenario clears this day; DAY stays open

PG_ENV = "CITYUNION_TEST_PG_DSN"
PG_REQUIRED = f"PostgreSQL required in CI: set {PG_ENV}"

# This session's mark on the natural keys its tests make. A Fabric network may
# outlive a session, so a serial alone could meet an earlier session's keys.
RUN = secrets.token_hex(3)
_serial = itertools.count(1)
# Business days: consecutive from a random start, one range per session.
_days = itertools.count(secrets.randbelow(2_000_000))
PEER_WAIT_S = 60.0


def sm3_hex(text: str) -> str:
    return encoding.sm3_hex(text.encode())


def unique_hash() -> str:
    return sm3_hex(secrets.token_hex(16))


def unique_tag() -> str:
    """A suffix no other test of any session uses: this session's mark, a serial."""
    return f"{RUN}{next(_serial):04d}"


def unique_name(prefix: str) -> str:
    """A name (record id, department code, scheme scope ...) no other test uses."""
    return f"{prefix}-{unique_tag()}"


def fresh_day() -> str:
    """A business day no other test reports, confirms or clears."""
    return (date(2100, 1, 1) + timedelta(days=next(_days))).isoformat()


LedgerT = TypeVar("LedgerT", bound=Ledger, covariant=True)


class Clients(Generic[LedgerT]):
    """``ids(org, user)``: that identity's ``Ledger`` client of one Connection,
    made once and kept.

    On Fabric a submit returns when the caller's own peer has committed it; the
    test's next step often runs on another organisation's peer (a query, or the
    endorsement of the next command), so there each submit also waits until
    every organisation's peer has the block.
    """

    @overload
    def __init__(self: Clients[EmbeddedLedger], conn: EmbeddedConnection) -> None: ...
    @overload
    def __init__(self: Clients[Ledger], conn: Connection) -> None: ...

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self._cache: dict[tuple[str, str], Any] = {}

    def __call__(self, org: str, user: str = "admin") -> LedgerT:
        key = (org, user)
        if key not in self._cache:
            client = self.conn.client(org, user)
            self._cache[key] = (_PeersCaughtUp(client, self.conn)
                                if self.conn.kind == "fabric" else client)
        return self._cache[key]


class _PeersCaughtUp:
    """A Fabric client whose ``submit`` returns once every organisation's peer
    has the transaction's block (see ``Clients``); the rest is the client's."""

    def __init__(self, ledger: Ledger, conn: Connection) -> None:
        self.ledger, self.conn = ledger, conn

    def submit(self, function: str, args: dict[str, Any],
               transient: dict[str, bytes] | None = None) -> Receipt:
        receipt = self.ledger.submit(function, args, transient)
        peers = {org: self.conn.client(org, "auditor") for org in (CENTER, *CITIES)}
        deadline = time.monotonic() + PEER_WAIT_S
        while True:
            heights = {org: peer.height() for org, peer in peers.items()}
            if min(heights.values()) > receipt.block_number:
                return receipt
            if time.monotonic() > deadline:
                raise TimeoutError(f"block {receipt.block_number} ({function}) "
                                   f"reached not every peer in {PEER_WAIT_S:.0f} s: "
                                   f"heights {heights}")
            time.sleep(0.02)

    def evaluate(self, function: str, args: dict[str, Any]) -> dict[str, Any]:
        return self.ledger.evaluate(function, args)

    def events(self, after: Position | None = None,
               follow: bool = False) -> Iterator[CommittedEvent]:
        return self.ledger.events(after, follow)

    def history(self, key: str) -> list[KeyVersion]:
        return self.ledger.history(key)

    def block(self, number: int) -> dict[str, Any]:
        return self.ledger.block(number)

    def height(self) -> int:
        return self.ledger.height()

    def verify(self) -> VerifyReport:
        return self.ledger.verify()


def card_record(record_id: str, issuer_city: str, amount_fen: int = 200,
                time: str = TIME, terminal_id: str = "T1") -> dict[str, Any]:
    """A valid cross-city card record (the card id only as a hash)."""
    return {"record_id": record_id, "issuer_city": issuer_city,
            "card_id_hash": sm3_hex(f"card-{record_id}"), "amount_fen": amount_fen,
            "time": time, "terminal_id": terminal_id}


def batch_args(records: list[dict[str, Any]], business_day: str = DAY
               ) -> dict[str, Any]:
    """ReportTransactionBatch arguments with the records' Merkle root."""
    return {"business_day": business_day, "records": records,
            "merkle_root": merkle_root(records)}


def identifier_args(kind: str = "person", scheme: str = "cn-id",
                    natural_key_hash: str | None = None) -> dict[str, Any]:
    return {"kind": kind, "category": "identity", "scheme": scheme,
            "natural_key_hash": natural_key_hash or unique_hash()}


State = list[tuple[str, str, int, int]]


def snapshot(conn: Connection) -> tuple[int, State | None]:
    """What a rejected command must not change: the height and, on the embedded
    ledger, the whole world state. On Fabric the height is the one the Center
    auditor's peer has (a rejected proposal is never ordered) and the world state
    is not readable whole (None)."""
    if isinstance(conn, EmbeddedConnection):
        return conn.node.height(), list(conn.node.store.all_state())
    return conn.client(CENTER, "auditor").height(), None


def rejected(ids: Clients[Any], caller: tuple[str, str], function: str, args: Any,
             error: type[ContractError], field: str | None = None,
             fragment: str | None = None) -> ContractError:
    """Submit as ``caller``, expect exactly ``error`` (naming ``field``, its
    message containing ``fragment``), and no change to the ledger at all."""
    before = snapshot(ids.conn)
    with pytest.raises(ContractError) as info:
        ids(*caller).submit(function, args)
    err = info.value
    assert type(err) is error, f"{function}: expected {error.__name__}, got {err!r}"
    assert err.message.strip(), "a rejection needs a message"
    if field is not None:
        assert err.field == field, f"{function}: field {err.field!r}, {err.message}"
    if fragment is not None:
        assert fragment in err.message, f"{function}: {err.message!r}"
    assert snapshot(ids.conn) == before, f"rejected {function} changed the ledger"
    return err


def event_types(receipt: Receipt) -> list[str]:
    return [e["type"] for e in receipt.events]


# The departments of the wallet's department users (transport and health of
# every city), which act only once registered on chain: (city, code, duties).
DEPARTMENTS = (("Kunshan", "transport", ("payment", "transport")),
               ("Kunshan", "health", ("health",)),
               ("Shanghai", "transport", ("transport",)),
               ("Shanghai", "health", ("health",)),
               ("Taicang", "transport", ("transport",)),
               ("Taicang", "health", ("health",)))


def register_departments(ids: Clients[Any]) -> None:
    """Register the ``DEPARTMENTS`` that the ledger does not have yet: once per
    ledger, whichever test comes first. One registered otherwise (other duties)
    would make the code-scheme checks fail for reasons no test states, so it
    stops the test here."""
    for city, code, duties in DEPARTMENTS:
        try:
            found = ids(city, "auditor").evaluate("GetDepartment",
                                                  {"city": city, "code": code})
        except NotFound:
            ids(city).submit("RegisterDepartment", {
                "code": code, "name": code.title(), "duties": list(duties)})
            continue
        assert found["duties"] == list(duties), (
            f"department {code} of {city} has duties {found['duties']}; the "
            f"tests need {list(duties)}")


@dataclass
class World:
    """A ledger prepared so that every command has a valid target, under natural
    keys of its own (``unique``: record ids, scheme name and scope) and a
    business day of its own, so that worlds of one ledger do not meet.

    Every city has departments transport and health (Kunshan's transport with
    duties transport and payment); Kunshan transport registered a person, an object and
    an organisation and applied for one code scheme (transport, ``scope``);
    Kunshan reported a batch for ``day`` with records issued by Shanghai (s1, s2)
    and Taicang (t1).
    """

    ids: Clients[Any]
    tag: str
    day: str
    person: str = ""
    person_hash: str = ""
    obj: str = ""
    org: str = ""
    scheme: str = ""
    scheme_name: str = ""
    scope: str = ""
    batch: str = ""
    records: list[dict[str, Any]] = field(default_factory=list)
    campaign: str = ""  # a call campaign Kunshan transport started

    @property
    def conn(self) -> Connection:
        return self.ids.conn

    @property
    def node(self) -> EmbeddedNode:
        """The embedded node, for tests of the embedded ledger itself."""
        assert isinstance(self.conn, EmbeddedConnection), "an embedded world only"
        return self.conn.node

    def unique(self, name: str) -> str:
        """``name`` as this world's own: a record id, scheme name or scope."""
        return f"{name}-{self.tag}"

    def record(self, name: str, issuer_city: str, amount_fen: int = 200
               ) -> dict[str, Any]:
        """A valid card record whose id is this world's ``name``."""
        return card_record(self.unique(name), issuer_city, amount_fen)


def build_world(ids: Clients[Any]) -> World:
    register_departments(ids)
    w = World(ids, unique_tag(), fresh_day())
    ks_admin, ks_transport = ids("Kunshan", "admin"), ids("Kunshan", "transport")
    w.person_hash = unique_hash()
    w.person = ks_transport.submit("RegisterIdentifier", identifier_args(
        "person", "cn-id", w.person_hash)).result["id"]
    w.obj = ks_transport.submit("RegisterIdentifier", identifier_args(
        "object", "asset")).result["id"]
    w.org = ks_transport.submit("RegisterIdentifier", identifier_args(
        "organisation", "uscc")).result["id"]
    w.scheme_name, w.scope = w.unique("metro-qr"), w.unique("Kunshan")
    w.scheme = ks_transport.submit("ApplyCodeScheme", {
        "application_name": w.scheme_name, "code_type": "transport",
        "scope": w.scope, "data_sharing_commitment": True}).result["id"]
    w.records = [w.record("s1", "Shanghai", 300), w.record("s2", "Shanghai", 450),
                 w.record("t1", "Taicang", 125)]
    w.batch = ks_admin.submit("ReportTransactionBatch",
                              batch_args(w.records, w.day)).result["id"]
    w.campaign = w.unique("survey")
    ks_transport.submit("StartCallCampaign", call_campaign_args(w.campaign))
    return w


def call_campaign_args(campaign: str, contact_count: int = 3) -> dict[str, Any]:
    """StartCallCampaign arguments: a template version and a count, no numbers."""
    return {"campaign": campaign, "template_name": "bus-survey",
            "template_version": 1, "template_sm3": sm3_hex("bus-survey v1"),
            "contact_count": contact_count}


# For every command: an authorised caller and arguments that succeed on any
# ``build_world``, however many others share its ledger
# (scenarios/test_contract.test_valid_call_succeeds proves it), so each
# rejection test is caused by the one thing it changes.
VALID: dict[str, tuple[tuple[str, str], Callable[[World], dict[str, Any]]]] = {
    "RegisterIdentifier": (("Kunshan", "transport"), lambda w: identifier_args(
        "place", "poi")),
    "LinkIdentifier": (("Kunshan", "transport"), lambda w: {
        "identifier_id": w.obj, "target_id": w.org, "relation": "organisation"}),
    "RevokeIdentifier": (("Kunshan", "transport"), lambda w: {
        "identifier_id": w.person, "reason": "registered twice"}),
    "RegisterDepartment": (("Kunshan", "admin"), lambda w: {
        "code": w.unique("water"), "name": "Water affairs",
        "duties": ["water", "drainage", "flood", "water"]}),
    "ApplyCodeScheme": (("Kunshan", "transport"), lambda w: {
        "application_name": w.unique("bus-qr"), "code_type": "transport",
        "scope": w.unique("Kunshan-bus"), "data_sharing_commitment": True}),
    "ApproveCodeScheme": (("Kunshan", "admin"), lambda w: {"scheme_id": w.scheme}),
    "RejectCodeScheme": (("Kunshan", "admin"), lambda w: {
        "scheme_id": w.scheme, "reason": "incomplete application"}),
    "ReportTransactionBatch": (("Kunshan", "terminal"), lambda w: batch_args(
        [w.record("n1", "Shanghai"), w.record("n2", "Taicang", 99)], w.day)),
    "ConfirmTransactions": (("Shanghai", "admin"), lambda w: {
        "batch_id": w.batch, "record_ids": [w.unique("s1")]}),
    "DisputeTransactions": (("Shanghai", "admin"), lambda w: {
        "batch_id": w.batch, "record_ids": [w.unique("s2")],
        "reason": "double charge"}),
    "RunClearing": ((CENTER, "admin"), lambda w: {"business_day": w.day}),
    # ferry/acquirer: no other test publishes it, and no test's records are ferry
    "PublishFeeRule": ((CENTER, "admin"), lambda w: {
        "scene": "ferry", "party": "acquirer", "rate_bps": 30, "min_fee_fen": 1,
        "max_fee_fen": 500, "effective_day": w.day}),
}
VALID.update({
    "StartCallCampaign": (("Kunshan", "transport"), lambda w: call_campaign_args(
        w.unique("survey2"))),
    "CompleteCallCampaign": (("Kunshan", "transport"), lambda w: {
        "campaign": w.campaign, "outcomes": {"satisfied": 2, "no_answer": 1}}),
})
OPTIONAL = {("RegisterIdentifier", "attributes"), ("ConfirmTransactions", "record_ids")}


def run_scenario(ids: Clients[Any]) -> dict[str, Receipt]:
    """A short history touching every family: departments, identifiers, a code
    scheme applied and approved, a batch reported, disputed and cleared."""
    ks_admin, ks_transport = ids("Kunshan", "admin"), ids("Kunshan", "transport")
    out: dict[str, Receipt] = {}
    out["department"] = ks_admin.submit("RegisterDepartment", {
        "code": "transport", "name": "Transport", "duties": ["transport"]})
    out["person"] = ks_transport.submit("RegisterIdentifier",
                                        identifier_args("person"))
    out["scheme"] = ks_transport.submit("ApplyCodeScheme", {
        "application_name": "metro-qr", "code_type": "transport",
        "scope": "Kunshan", "data_sharing_commitment": True})
    out["approve"] = ids(CENTER).submit("ApproveCodeScheme",
                                        {"scheme_id": out["scheme"].result["id"]})
    records = [card_record(f"r{i}", issuer, 100 + i)
               for i, issuer in enumerate(("Shanghai", "Taicang") * 2)]
    out["batch"] = ks_admin.submit("ReportTransactionBatch",
                                   batch_args(records, SCENARIO_DAY))
    out["dispute"] = ids("Shanghai").submit("DisputeTransactions", {
        "batch_id": out["batch"].result["id"], "record_ids": ["r0"],
        "reason": "double charge"})
    out["confirm"] = ids("Taicang").submit("ConfirmTransactions", {
        "batch_id": out["batch"].result["id"]})
    out["clearing"] = ids(CENTER).submit("RunClearing",
                                         {"business_day": SCENARIO_DAY})
    return out


# ------------------------------------------------------------- PostgreSQL
def pg_base_dsn() -> str:
    """The configured maintenance DSN; fails in CI and skips elsewhere without it."""
    dsn = os.environ.get(PG_ENV, "").strip()
    if not dsn:
        if os.environ.get("CI"):
            pytest.fail(PG_REQUIRED)
        pytest.skip(PG_REQUIRED)
    if not dsn.startswith(("postgresql://", "postgres://")):
        pytest.fail(f"{PG_ENV} must be a postgresql:// URL, got {dsn!r}")
    return dsn


def with_database(dsn: str, name: str) -> str:
    return urlsplit(dsn)._replace(path=f"/{name}").geturl()


@dataclass(frozen=True)
class StoreTarget:
    """Where a test's ledger lives: SQLite in the data dir, or a PostgreSQL DSN."""

    name: str
    dsn: str | None
    data_dir: Path

    def open(self, **options: Any) -> EmbeddedNode:
        return EmbeddedNode(self.data_dir, dsn=self.dsn, **options)

