"""Helpers of the API tests: identities, a client that speaks as one, builders
that create what a test needs through the API itself, and the real server
(``cityunion serve``) as a subprocess."""

from __future__ import annotations

import base64
import contextlib
import secrets
import signal
import socket
import subprocess
import sys
import time
from datetime import date, timedelta
from itertools import count
from pathlib import Path
from typing import Any

import httpx
from fastapi.testclient import TestClient
from helpers import Clients, card_record, unique_hash
from httpx import Response

from api.deps import Runtime
from chaincode.encoding import canonical_json
from ledger import crypto
from ledger.connect import ensure_identity
from ledger.protocol import LedgerError

Who = tuple[str, ...]  # (city, role) or (city, "department", code)
CENTER_ADMIN: Who = ("Center", "center_admin")
CENTER_AUDITOR: Who = ("Center", "auditor")
KS_ADMIN: Who = ("Kunshan", "city_admin")
KS_TRANSPORT: Who = ("Kunshan", "department", "transport")
KS_TERMINAL: Who = ("Kunshan", "terminal")
KS_AUDITOR: Who = ("Kunshan", "auditor")
SH_ADMIN: Who = ("Shanghai", "city_admin")
TC_ADMIN: Who = ("Taicang", "city_admin")
ROLES: dict[str, Who] = {"center_admin": CENTER_ADMIN, "city_admin": KS_ADMIN,
                         "department": KS_TRANSPORT, "terminal": KS_TERMINAL,
                         "auditor": KS_AUDITOR}
_days = count()
ROOT = Path(__file__).parents[2]


def new_day() -> str:
    """A business day no other test uses (so clearing one closes nothing else)."""
    return (date(2031, 1, 1) + timedelta(days=next(_days))).isoformat()


def name(prefix: str = "n") -> str:
    return f"{prefix}{secrets.token_hex(5)}"


class Api:
    """Calls the app as an identity; builds fixtures through the API."""

    def __init__(self, client: TestClient) -> None:
        self.client = client
        self.runtime: Runtime = client.app.state.runtime  # type: ignore[attr-defined]
        self._tokens: dict[Who, str] = {}
        self._committed = 0  # the highest block a command of ours committed in

    def token(self, who: Who) -> str:
        """A token of ``who``, issued as `cityunion token issue` does: with the
        wallet identity enrolled first (a department's may be new)."""
        if who not in self._tokens:
            dept = who[2] if len(who) > 2 else None
            self._tokens[who] = self.runtime.tokens.issue(who[0], who[1], dept)[1]
            with contextlib.suppress(LedgerError):  # a role no wallet can hold
                ensure_identity(self.runtime.gateway.connection, who[0], who[1],
                                dept)
        return self._tokens[who]

    def ledger_args(self) -> list[str]:
        """The CLI options naming this app's ledger (for `cityunion ...`)."""
        settings = self.runtime.settings
        if settings.ledger == "fabric":
            return ["--ledger", "fabric", "--network", str(settings.network)]
        return []

    def headers(self, who: Who) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(who)}"}

    def post(self, path: str, body: dict[str, Any] | None, who: Who) -> Response:
        r = self.client.post(path, json=body or {}, headers=self.headers(who))
        if r.status_code in (200, 201) and "block_number" in r.text:
            self._committed = max(self._committed, int(r.json()["block_number"]))
        return r

    def get(self, path: str, who: Who, **params: Any) -> Response:
        return self.client.get(path, params=params, headers=self.headers(who))

    def ok(self, path: str, body: dict[str, Any] | None, who: Who,
           status: int = 201) -> dict[str, Any]:
        r = self.post(path, body, who)
        assert r.status_code == status, r.text
        out: dict[str, Any] = r.json()
        return out

    def sync(self) -> None:
        """Wait until the read models hold everything committed so far."""
        self.runtime.follower.wait_caught_up(timeout=10)

    def height(self) -> int:
        """The reader's height once it holds every block our commands committed
        in (on Fabric the reader's peer may commit a block a little later than
        the peer that reported the commit)."""
        reader = self.runtime.gateway.reader
        deadline = time.monotonic() + 10
        while (h := reader.height()) <= self._committed and (
                time.monotonic() < deadline):
            time.sleep(0.02)
        return h

    # --------------------------------------------------------------- builders
    def department(self, who: Who = KS_ADMIN, code: str | None = None,
                   duties: tuple[str, ...] = ("transport",),
                   exist_ok: bool = False) -> str:
        """Register a department (``exist_ok``: one the shared ledger may hold
        already, as a Fabric network used by earlier tests of the session)."""
        code = code or name("d")
        r = self.post("/api/departments", {"code": code, "name": f"Dept {code}",
                                           "duties": list(duties)}, who)
        assert r.status_code == 201 or (exist_ok and r.status_code == 409), r.text
        return code

    def identifier(self, kind: str = "person", who: Who = KS_TRANSPORT,
                   scheme: str = "cn-id") -> str:
        body = {"kind": kind, "category": "identity", "scheme": scheme,
                "natural_key_hash": unique_hash()}
        return str(self.ok("/api/identifiers", body, who)["result"]["id"])

    def scheme(self, who: Who = KS_TRANSPORT, code_type: str = "transport",
               commitment: bool = True) -> str:
        body = {"application_name": name("app"), "code_type": code_type,
                "scope": name("scope"), "data_sharing_commitment": commitment}
        return str(self.ok("/api/code-schemes", body, who)["result"]["id"])

    def batch(self, who: Who = KS_ADMIN, issuers: tuple[str, ...] = ("Shanghai",),
              day: str | None = None, amount: int = 200
              ) -> tuple[str, list[dict[str, Any]], str]:
        """(batch id, records, business day); one record per issuer entry."""
        day = day or new_day()
        records = [card_record(name("r"), issuer, amount + i)
                   for i, issuer in enumerate(issuers)]
        out = self.ok("/api/card-batches", {"business_day": day,
                                            "records": records}, who)
        return str(out["result"]["id"]), records, day


    @property
    def clients(self) -> Clients[Any]:
        """Clients of this API's ledger, for what the API cannot make (keys)."""
        return Clients(self.runtime.gateway.connection)

    def approved_scheme(self) -> str:
        scheme = self.scheme()
        self.ok(f"/api/code-schemes/{scheme}/approve", {}, KS_ADMIN, 200)
        return scheme

    def guide_url(self, scheme: str | None = None) -> str:
        """A guide URL filed by Kunshan transport (for ``scheme``, else a new
        approved scheme), not decided."""
        return str(self.ok(
            f"/api/code-schemes/{scheme or self.approved_scheme()}/guide-urls",
            {"url": f"https://code.kunshan.example/{name('u')}"},
            KS_TRANSPORT)["result"]["id"])

    def disputed(self, contested: bool = False) -> tuple[str, str]:
        """A Kunshan batch with one Shanghai record that Shanghai disputed (and
        Kunshan contested): (batch id, record id)."""
        batch, records, _ = self.batch(KS_ADMIN, ("Shanghai",))
        rid = records[0]["record_id"]
        self.ok(f"/api/card-batches/{batch}/dispute",
                {"record_ids": [rid], "reason": "not my card"}, SH_ADMIN, 200)
        if contested:
            self.ok(f"/api/card-batches/{batch}/dispute-response", {
                "record_ids": [rid], "response": "contest",
                "evidence_sm3": unique_hash()}, KS_ADMIN, 200)
        return batch, rid

    def settlement_key(self, who: Who = KS_ADMIN) -> bytes:
        """Register a fresh SM2 settlement key for ``who``'s city; its private key."""
        private, public = crypto.get_backend().sm2_generate()
        self.ok("/api/settlement-keys", {
            "public_key_pem": crypto.public_key_to_pem(public).decode()}, who)
        return private

    def cleared_day(self) -> str:
        day = new_day()
        self.ok("/api/clearing-runs", {"business_day": day}, CENTER_ADMIN)
        return day

    def confirmation(self, day: str, private: bytes, who: Who = KS_ADMIN
                     ) -> dict[str, Any]:
        """The body confirming ``who``'s statement of ``day``, signed."""
        got = self.get(f"/api/settlements/{day}/{who[0]}", who).json()
        signature = crypto.get_backend().sm2_sign(
            private, canonical_json(got["statement"]))
        return {"statement_sm3": got["statement_sm3"], "signature": base64.b64encode(
            crypto.signature_to_der(signature)).decode()}


def problem(r: Response, status: int, field: str | None = None) -> dict[str, Any]:
    """Assert an application/problem+json answer; returns its body."""
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = r.json()
    assert body["status"] == status and body["detail"]
    if field is not None:
        assert body.get("field") == field, body
    return body


# ------------------------------------------------------------- the server
def cli(*args: str) -> subprocess.CompletedProcess[str]:
    """``cityunion ARGS`` in a process of its own."""
    return subprocess.run([sys.executable, "-m", "cli.main", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve(data_dir: Path, *extra: str) -> tuple[subprocess.Popen[str], str]:
    """``cityunion serve`` on a free port; (the process, its base URL) once
    ``/healthz`` answers."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "cli.main", "serve",
                             "--data-dir", str(data_dir), "--port", str(port),
                             *extra], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        assert proc.poll() is None, proc.communicate()
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "serve did not come up"
        time.sleep(0.1)


def stop(proc: subprocess.Popen[str]) -> str:
    """Stop a ``serve`` process, asserting a clean exit; its output."""
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    # uvicorn shuts down cleanly, then re-raises the signal it caught
    assert proc.returncode in (0, -signal.SIGTERM), err
    assert "Traceback" not in err, err
    return out + err
