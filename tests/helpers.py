"""Builders shared by the tests: clients per identity of a ``Connection``, valid
card records and batches, worlds whose natural keys no other test uses (so that
tests can share one ledger), the check that a rejection changed nothing, and a
small scenario that touches every event family."""

from __future__ import annotations

import base64
import itertools
import os
import secrets
import time
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Generic, TypeVar, overload
from urllib.parse import urlsplit

import pytest

from chaincode import encoding
from chaincode.errors import ContractError, NotFound
from chaincode.merkle import merkle_root
from ledger import crypto
from ledger.connect import EmbeddedConnection
from ledger.crypto import x509
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


# ------------------------------------------------------------ issuer keys
ROOT_SUBJECT = {"common_name": "CityUnion Root", "organization_name": "Center",
                "country_name": "CN"}
KUNSHAN = {"common_name": "Kunshan code issuer", "organization_name": "Kunshan",
           "country_name": "CN"}
Signed = tuple[bytes, x509.Certificate]  # a private key and its certificate


def certificate(subject: dict[str, str], issuer: Signed | None, ca: bool = False,
                days: int = 365) -> Signed:
    """A new key and its certificate, valid from yesterday for ``days``, signed
    by ``issuer`` (None: self-signed)."""
    private, public = crypto.get_backend().sm2_generate()
    start = datetime.now(UTC) - timedelta(days=1)
    signer = issuer or (private, None)
    cert = x509.issue(subject, public, issuer[1].subject if issuer else subject,
                      signer[0], issuer[1].public_key if issuer else public,
                      secrets.randbelow(1 << 64) + 1, start,
                      start + timedelta(days=days), ca=ca,
                      path_length=(1 if issuer is None else 0) if ca else None)
    return private, cert


@dataclass
class IssuerKeys:
    root_private: bytes
    root: x509.Certificate
    institution: Signed = (b"", None)  # type: ignore[assignment]

    @property
    def signed_root(self) -> Signed:
        return self.root_private, self.root


_ISSUER_KEYS: dict[int, IssuerKeys] = {}


def code_batch_args(w: World, days: int = 30) -> dict[str, Any]:
    """IssueCodeBatch of 10 codes of the world's approved scheme, to an approved
    guide URL, signed by Kunshan's institution key, valid ``days`` from now,
    under a random serial prefix."""
    start = datetime.now(UTC).replace(microsecond=0)
    moment = "%Y-%m-%dT%H:%M:%SZ"
    return {"scheme_id": w.approved_scheme(), "guide_url_id": w.approved_url(),
            "signer_fingerprint": (w.issuer_keys().institution[1].fingerprint
                                   if w.ids is not None else "ab" * 32),
            "count": 10, "not_before": start.strftime(moment),
            "not_after": (start + timedelta(days=days)).strftime(moment),
            "merkle_root": unique_hash(), "serial_prefix": secrets.token_hex(4)}


def code_scan(scheme_id: str, serial: str | None = None, kind: str = "static",
              at: str = TIME, result: str = "valid", reason: str | None = None,
              code: str | None = None) -> dict[str, Any]:
    """A scan as a terminal reports it: a random serial unless given, the code
    only as the SM3 of its text (``code``, default one made of the serial)."""
    serial = serial or secrets.token_hex(12)
    scan = {"serial": serial, "scheme_id": scheme_id, "kind": kind, "at": at,
            "result": result, "code_sm3": sm3_hex(code or f"code-{serial}")}
    if reason is not None:
        scan["reason"] = reason
    return scan


def usage_args(scans: list[dict[str, Any]], terminal_id: str = "T1"
               ) -> dict[str, Any]:
    """ReportCodeUsage arguments with the scans' Merkle root (chaincode.usage)."""
    return {"terminal_id": terminal_id, "scans": scans,
            "merkle_root": merkle_root(scans)}


def issuer_keys(ids: Clients[Any]) -> IssuerKeys:
    """The ledger's root key and Kunshan's institution key (certified the first
    time a test asks, then shared by every test on the ledger)."""
    keys = _ISSUER_KEYS.get(id(ids.conn))
    if keys is None:
        keys = IssuerKeys(*certificate(ROOT_SUBJECT, None, ca=True))
        ids(CENTER, "admin").submit("CertifyIssuerKey", {
            "level": "root", "certificate_pem": keys.root.pem})
        keys.institution = certify_institution(ids, keys, "Kunshan")
        _ISSUER_KEYS[id(ids.conn)] = keys
    return keys


def certify_institution(ids: Clients[Any], keys: IssuerKeys, city: str) -> Signed:
    """Certify a new institution key of ``city`` under the root."""
    signed = certificate({**KUNSHAN, "common_name": f"{city} code issuer",
                          "organization_name": city}, keys.signed_root, ca=True)
    ids(CENTER, "admin").submit("CertifyIssuerKey", {
        "level": "institution", "certificate_pem": signed[1].pem})
    return signed


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
    approved: str = ""
    settled_day: str = ""
    settlement_keys: dict[str, bytes] = field(default_factory=dict)
    disputed_batch: str = ""
    video: dict[str, str] = field(default_factory=dict)  # build_video_world
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

    # Made when first asked for (most tests need neither), so building a world
    # stays cheap; DUMMY (no ledger) gets placeholders.
    def register_settlement_key(self, city: str) -> dict[str, Any]:
        """Register a fresh SM2 settlement key of ``city`` (this world's)."""
        private, public = crypto.get_backend().sm2_generate()
        self.settlement_keys[city] = private
        return self.ids(city, "admin").submit("RegisterSettlementKey", {
            "public_key_pem": crypto.public_key_to_pem(public).decode()}).result

    def confirmation(self, city: str, day: str) -> dict[str, Any]:
        """ConfirmSettlement arguments: ``city``'s statement of ``day`` signed
        with this world's key of the city."""
        got = self.ids(city, "auditor").evaluate("GetSettlementStatement", {
            "business_day": day, "city": city})
        signature = crypto.get_backend().sm2_sign(
            self.settlement_keys[city], encoding.canonical_json(got["statement"]))
        return {"business_day": day, "statement_sm3": got["statement_sm3"],
                "signature": base64.b64encode(
                    crypto.signature_to_der(signature)).decode()}

    def settlement(self) -> str:
        """A cleared day of this world's own, with Kunshan's and Shanghai's
        settlement keys registered and Shanghai's statement confirmed."""
        if self.ids is None:
            return "2026-11-21"
        if not self.settled_day:
            for city in ("Kunshan", "Shanghai"):
                self.register_settlement_key(city)
            day = fresh_day()
            self.ids(CENTER, "admin").submit("RunClearing", {"business_day": day})
            self.ids("Shanghai", "admin").submit(
                "ConfirmSettlement", self.confirmation("Shanghai", day))
            self.settled_day = day
        return self.settled_day

    def issuer_keys(self) -> IssuerKeys:
        return issuer_keys(self.ids)

    def user_key(self, holder: str = "transport") -> str:
        """Certify a new user key of Kunshan's; its fingerprint."""
        if self.ids is None:
            return "ab" * 32
        keys = self.issuer_keys()
        _, cert = certificate({**KUNSHAN, "organizational_unit_name": holder},
                              keys.institution)
        self.ids("Kunshan", "admin").submit("CertifyUserKey", {
            "certificate_pem": cert.pem})
        return cert.fingerprint

    def approved_scheme(self) -> str:
        """A code scheme of Kunshan transport's, approved (made when first
        asked)."""
        if self.ids is None:
            return "7" * 32
        if not self.approved:
            scheme = self.ids("Kunshan", "transport").submit("ApplyCodeScheme", {
                "application_name": self.unique("bus-pass"), "code_type": "transport",
                "scope": self.unique("bus"), "data_sharing_commitment": True}
                ).result["id"]
            self.ids("Kunshan", "admin").submit("ApproveCodeScheme",
                                                {"scheme_id": scheme})
            self.approved = scheme
        return self.approved

    def approved_url(self) -> str:
        """A guide URL of the approved scheme, approved."""
        if self.ids is None:
            return "9" * 32
        url = self.filed_url()
        self.ids("Kunshan", "admin").submit("ApproveGuideUrl", {"url_id": url})
        return url

    def filed_url(self) -> str:
        """A guide URL filed for the approved scheme, not yet decided."""
        if self.ids is None:
            return "8" * 32
        return str(self.ids("Kunshan", "transport").submit("FileGuideUrl", {
            "scheme_id": self.approved_scheme(),
            "url": f"https://code.kunshan.example/{unique_tag()}"}).result["id"])

    def disputes(self) -> str:
        """A batch of Kunshan's, on a day of its own, whose records d1 and d2
        (issued by Shanghai) Shanghai disputed and d2 Kunshan contested."""
        if self.ids is None:
            return "6" * 32
        if not self.disputed_batch:
            day = fresh_day()
            ids = [self.unique("d1"), self.unique("d2")]
            batch = self.ids("Kunshan", "admin").submit("ReportTransactionBatch",
                batch_args([card_record(i, "Shanghai") for i in ids], day)
                ).result["id"]
            self.ids("Shanghai", "admin").submit("DisputeTransactions", {
                "batch_id": batch, "record_ids": ids, "reason": "not my card"})
            self.ids("Kunshan", "admin").submit("RespondToDispute", {
                "batch_id": batch, "record_ids": ids[1:], "response": "contest",
                "evidence_sm3": sm3_hex("terminal log"), "note": "card tapped"})
            self.disputed_batch = batch
        return self.disputed_batch


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
    build_video_world(w)
    w.campaign = w.unique("survey")
    ks_transport.submit("StartCallCampaign", call_campaign_args(w.campaign))
    return w


# ------------------------------------------------------------ cameras (video)
def camera_args(place_id: str, code: str, department: str = "transport"
                ) -> dict[str, Any]:
    """RegisterCamera arguments: zones plaza (crowd) and stall (fire, garbage)."""
    return {"camera_code": code, "place_id": place_id, "department": department,
            "zones": [
                {"zone": "plaza", "polygon": [[0, 150], [330, 150], [330, 350],
                                              [0, 350]],
                 "detectors": ["crowd"], "min_people": 8, "hold_seconds": 3},
                {"zone": "stall", "polygon": [[370, 30], [620, 30], [620, 200]],
                 "detectors": ["fire", "garbage"], "garbage_seconds": 60}]}


def alert_args(camera_id: str, incident: str, kind: str = "fire",
               zone: str = "stall") -> dict[str, Any]:
    return {"camera_id": camera_id, "incident": incident, "kind": kind,
            "confidence_permille": 870, "observed_at": "2026-11-20T08:15:30Z",
            "zone": zone, "evidence_sm3": unique_hash()}


# per Clients (so per ledger): place, camera, camera code
_CAMERAS: weakref.WeakKeyDictionary[Clients[Any], tuple[str, str, str]] = (
    weakref.WeakKeyDictionary())


def build_video_world(w: World) -> None:
    """Kunshan transport's camera at a place (one per ledger client set: no
    test changes either), and three alerts of the world's own: ``raised``,
    ``confirmed`` and ``dispatched`` (to Kunshan health)."""
    ks_transport = w.ids("Kunshan", "transport")
    terminal = w.ids("Kunshan", "terminal")
    v = w.video
    if w.ids not in _CAMERAS:
        place = ks_transport.submit("RegisterIdentifier", identifier_args(
            "place", "poi")).result["id"]
        code = unique_name("cam")
        camera = ks_transport.submit("RegisterCamera", camera_args(
            place, code)).result["id"]
        _CAMERAS[w.ids] = (place, camera, code)
    v["place"], v["camera"], v["camera_code"] = _CAMERAS[w.ids]
    for name in ("raised", "confirmed", "dispatched"):
        v[name] = terminal.submit("RaiseVideoAlert", alert_args(
            v["camera"], w.unique(name))).result["id"]
    for name in ("confirmed", "dispatched"):
        ks_transport.submit("ReviewAlert", {"alert_id": v[name],
                                            "verdict": "confirmed"})
    ks_transport.submit("DispatchAlert", {"alert_id": v["dispatched"],
                                          "department": "health"})


def call_campaign_args(campaign: str, contact_count: int = 3) -> dict[str, Any]:
    """StartCallCampaign arguments: a template version and a count, no numbers."""
    return {"campaign": campaign, "template_name": "bus-survey",
            "template_version": 1, "template_sm3": sm3_hex("bus-survey v1"),
            "contact_count": contact_count}


def call_records_args(campaign: str, batch: int = 0,
                      outcomes: tuple[str, ...] = ("satisfied", "satisfied",
                                                   "no_answer"),
                      day: str = "2026-12-01") -> dict[str, Any]:
    """RecordCallOutcomes arguments: each contact a keyed hash, never a number."""
    return {"campaign": campaign, "batch": batch, "calls": [
        {"contact": unique_hash(), "outcome": o, "attempts": 1, "day": day,
         "talk_s": 12} for o in outcomes]}


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
    "RespondToDispute": (("Kunshan", "admin"), lambda w: {
        "batch_id": w.disputes(), "record_ids": [w.unique("d1")],
        "response": "accept"}),
    "ArbitrateDispute": ((CENTER, "admin"), lambda w: {
        "batch_id": w.disputes(), "record_ids": [w.unique("d2")],
        "decision": "acquirer", "reason": "the terminal log shows the tap"}),
    "RegisterSettlementKey": (("Taicang", "admin"), lambda w: {
        "public_key_pem": crypto.public_key_to_pem(
            crypto.get_backend().sm2_generate()[1]).decode()}),
    "ConfirmSettlement": (("Kunshan", "admin"), lambda w: (
        w.confirmation("Kunshan", w.settlement()) if w.ids is not None else {
            "business_day": w.settlement(), "statement_sm3": "ab" * 32,
            "signature": "MEUCIQ=="})),
    "CompleteSettlement": ((CENTER, "admin"), lambda w: {
        "business_day": w.settlement(), "city": "Shanghai",
        "payment_reference": "CNAPS 2026112000001"}),
    "BlacklistCards": (("Kunshan", "admin"), lambda w: {"cards": [{
        "card_id_hash": unique_hash(), "reason": "lost",
        "since": "2026-11-20T09:30:00Z"}]}),
    "CertifyIssuerKey": ((CENTER, "admin"), lambda w: {
        "level": "institution", "certificate_pem": (certificate(
            {**KUNSHAN, "organization_name": "Taicang"},
            w.issuer_keys().signed_root, ca=True)[1].pem
            if w.ids is not None else "x")}),
    "CertifyUserKey": (("Kunshan", "admin"), lambda w: {
        "certificate_pem": certificate(
            {**KUNSHAN, "organizational_unit_name": w.unique("app")},
            w.issuer_keys().institution)[1].pem if w.ids is not None else "x"}),
    "RevokeIssuerKey": ((CENTER, "admin"), lambda w: {
        "fingerprint": w.user_key("revoked-app"), "reason": "device lost"}),
    "FileGuideUrl": (("Kunshan", "transport"), lambda w: {
        "scheme_id": w.approved_scheme(),
        "url": f"https://code.kunshan.example/{w.unique('u')}"}),
    "ApproveGuideUrl": (("Kunshan", "admin"), lambda w: {"url_id": w.filed_url()}),
    "RejectGuideUrl": ((CENTER, "admin"), lambda w: {
        "url_id": w.filed_url(), "reason": "not a government domain"}),
    # ferry/acquirer: no other test publishes it, and no test's records are ferry
    "PublishFeeRule": ((CENTER, "admin"), lambda w: {
        "scene": "ferry", "party": "acquirer", "rate_bps": 30, "min_fee_fen": 1,
        "max_fee_fen": 500, "effective_day": w.day}),
}
VALID.update({
    "RegisterCamera": (("Kunshan", "transport"), lambda w: camera_args(
        w.video["place"], unique_name("cam"))),
    "RaiseVideoAlert": (("Kunshan", "terminal"), lambda w: alert_args(
        w.video["camera"], unique_name("incident"))),
    "ReviewAlert": (("Kunshan", "transport"), lambda w: {
        "alert_id": w.video["raised"], "verdict": "confirmed",
        "note": "fire seen on the clip"}),
    "DispatchAlert": (("Kunshan", "transport"), lambda w: {
        "alert_id": w.video["confirmed"], "department": "health"}),
    "HandleAlert": (("Kunshan", "health"), lambda w: {
        "alert_id": w.video["dispatched"], "outcome": "extinguished"}),
    "IssueCodeBatch": (("Kunshan", "transport"), lambda w: code_batch_args(w)),
    "RevokeUserCertificate": (("Kunshan", "admin"), lambda w: {
        "scheme_id": w.approved_scheme(), "user_id": secrets.token_hex(8),
        "until": "2031-01-01T00:00:00Z", "reason": "phone lost"}),
    "ReportCodeUsage": (("Kunshan", "terminal"), lambda w: usage_args([
        code_scan(w.scheme), code_scan(w.scheme, kind="dynamic",
                                       result="refused", reason="expired")])),
    "StartCallCampaign": (("Kunshan", "transport"), lambda w: call_campaign_args(
        w.unique("survey2"))),
    "CompleteCallCampaign": (("Kunshan", "transport"), lambda w: {
        "campaign": w.campaign, "outcomes": {"satisfied": 2, "no_answer": 1}}),
    "RecordCallOutcomes": (("Kunshan", "transport"), lambda w: call_records_args(
        w.campaign)),
})
OPTIONAL = {("RegisterIdentifier", "attributes"), ("ConfirmTransactions", "record_ids"),
            ("RespondToDispute", "evidence_sm3"), ("RespondToDispute", "note"),
            ("ReviewAlert", "note")}


def run_scenario(ids: Clients[Any]) -> dict[str, Receipt]:
    """A short history touching every family: departments, identifiers, a code
    scheme applied and approved, a batch reported, disputed and cleared, the
    dispute contested and decided, a statement confirmed, a card blacklisted."""
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
    # settlement: the dispute contested and decided for Kunshan (an adjustment
    # for a later run), Kunshan's statement confirmed, a lost card
    batch = out["batch"].result["id"]
    out["contest"] = ks_admin.submit("RespondToDispute", {
        "batch_id": batch, "record_ids": ["r0"], "response": "contest",
        "evidence_sm3": sm3_hex("gate log"), "note": "gates logged the card"})
    out["arbitrate"] = ids(CENTER).submit("ArbitrateDispute", {
        "batch_id": batch, "record_ids": ["r0"], "decision": "acquirer",
        "reason": "the gate log shows the ride"})
    private = bytes.fromhex("01" * 32)  # a fixed key: the history is repeatable
    public = crypto.get_backend().sm2_public_from_private(private)
    out["key"] = ks_admin.submit("RegisterSettlementKey", {
        "public_key_pem": crypto.public_key_to_pem(public).decode()})
    statement = ks_admin.evaluate("GetSettlementStatement", {
        "business_day": SCENARIO_DAY, "city": "Kunshan"})
    signature = crypto.get_backend().sm2_sign(
        private, encoding.canonical_json(statement["statement"]))
    out["confirm_settlement"] = ks_admin.submit("ConfirmSettlement", {
        "business_day": SCENARIO_DAY, "statement_sm3": statement["statement_sm3"],
        "signature": base64.b64encode(crypto.signature_to_der(signature)).decode()})
    out["blacklist"] = ids("Shanghai").submit("BlacklistCards", {"cards": [{
        "card_id_hash": sm3_hex("card-r0"), "reason": "lost", "since": TIME}]})
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

