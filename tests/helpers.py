"""Builders shared by the foundation tests: clients per identity, valid card
records and batches, and a small scenario that touches every event family."""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from chaincode.merkle import merkle_root
from ledger.embedded import EmbeddedLedger, EmbeddedNode
from ledger.protocol import Receipt

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


def sm3_hex(text: str) -> str:
    return hashlib.new("sm3", text.encode()).hexdigest()


def unique_hash() -> str:
    return sm3_hex(secrets.token_hex(16))


class Clients:
    """EmbeddedLedger clients of one node, one per (organisation, user)."""

    def __init__(self, node: EmbeddedNode) -> None:
        self.node = node
        self._cache: dict[tuple[str, str], EmbeddedLedger] = {}

    def __call__(self, org: str, user: str = "admin") -> EmbeddedLedger:
        key = (org, user)
        if key not in self._cache:
            self._cache[key] = EmbeddedLedger(self.node,
                                              self.node.wallet.identity(org, user))
        return self._cache[key]


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


def snapshot(node: EmbeddedNode) -> tuple[int, list[tuple[str, str, int, int]]]:
    """Height and whole world state: what a rejected command must not change."""
    return node.height(), list(node.store.all_state())


def event_types(receipt: Receipt) -> list[str]:
    return [e["type"] for e in receipt.events]


@dataclass
class World:
    """A ledger prepared so that every command has a valid target.

    Kunshan has departments transport (duties transport, payment) and health,
    Shanghai has transport; Kunshan transport registered a person, an object and
    an organisation and applied for one code scheme; Kunshan reported a batch for
    ``DAY`` with records issued by Shanghai (s1, s2) and Taicang (t1).
    """

    node: EmbeddedNode
    ids: Clients
    person: str = ""
    person_hash: str = ""
    obj: str = ""
    org: str = ""
    scheme: str = ""
    batch: str = ""
    records: list[dict[str, Any]] = field(default_factory=list)


def build_world(ids: Clients) -> World:
    w = World(ids.node, ids)
    ks_admin, ks_transport = ids("Kunshan", "admin"), ids("Kunshan", "transport")
    ks_admin.submit("RegisterDepartment", {"code": "transport", "name": "Transport",
                                           "duties": ["transport", "payment"]})
    ks_admin.submit("RegisterDepartment", {"code": "health", "name": "Health",
                                           "duties": ["health"]})
    ids("Shanghai", "admin").submit("RegisterDepartment", {
        "code": "transport", "name": "Transport", "duties": ["transport"]})
    w.person_hash = unique_hash()
    w.person = ks_transport.submit("RegisterIdentifier", identifier_args(
        "person", "cn-id", w.person_hash)).result["id"]
    w.obj = ks_transport.submit("RegisterIdentifier", identifier_args(
        "object", "asset")).result["id"]
    w.org = ks_transport.submit("RegisterIdentifier", identifier_args(
        "organisation", "uscc")).result["id"]
    w.scheme = ks_transport.submit("ApplyCodeScheme", {
        "application_name": "metro-qr", "code_type": "transport",
        "scope": "Kunshan", "data_sharing_commitment": True}).result["id"]
    w.records = [card_record("s1", "Shanghai", 300), card_record("s2", "Shanghai", 450),
                 card_record("t1", "Taicang", 125)]
    w.batch = ks_admin.submit("ReportTransactionBatch",
                              batch_args(w.records)).result["id"]
    return w


# For every command: an authorised caller and arguments that succeed on a
# fresh ``build_world`` (test_contract.test_valid_call_succeeds proves it), so
# each rejection test is caused by the one thing it changes.
VALID: dict[str, tuple[tuple[str, str], Callable[[World], dict[str, Any]]]] = {
    "RegisterIdentifier": (("Kunshan", "transport"), lambda w: identifier_args(
        "place", "poi", "ab" * 32)),
    "LinkIdentifier": (("Kunshan", "transport"), lambda w: {
        "identifier_id": w.obj, "target_id": w.org, "relation": "organisation"}),
    "RevokeIdentifier": (("Kunshan", "transport"), lambda w: {
        "identifier_id": w.person, "reason": "registered twice"}),
    "RegisterDepartment": (("Kunshan", "admin"), lambda w: {
        "code": "water", "name": "Water affairs",
        "duties": ["water", "drainage", "flood", "water"]}),
    "ApplyCodeScheme": (("Kunshan", "transport"), lambda w: {
        "application_name": "bus-qr", "code_type": "transport",
        "scope": "Kunshan-bus", "data_sharing_commitment": True}),
    "ApproveCodeScheme": (("Kunshan", "admin"), lambda w: {"scheme_id": w.scheme}),
    "RejectCodeScheme": (("Kunshan", "admin"), lambda w: {
        "scheme_id": w.scheme, "reason": "incomplete application"}),
    "ReportTransactionBatch": (("Kunshan", "terminal"), lambda w: batch_args(
        [card_record("n1", "Shanghai"), card_record("n2", "Taicang", 99)])),
    "ConfirmTransactions": (("Shanghai", "admin"), lambda w: {
        "batch_id": w.batch, "record_ids": ["s1"]}),
    "DisputeTransactions": (("Shanghai", "admin"), lambda w: {
        "batch_id": w.batch, "record_ids": ["s2"], "reason": "double charge"}),
    "RunClearing": ((CENTER, "admin"), lambda w: {"business_day": DAY}),
}
OPTIONAL = {("RegisterIdentifier", "attributes"), ("ConfirmTransactions", "record_ids")}


def run_scenario(ids: Clients) -> dict[str, Receipt]:
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

