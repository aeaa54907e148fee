"""Bearer tokens: issued by the CLI (last line), bound to an identity, signed
with a secret kept in the data dir (0600); forged, expired, malformed and
revoked tokens are refused with 401; department identities are enrolled on
first use."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from apikit import KS_ADMIN, Api, name, problem

from api.tokens import (
    KEY_FILE,
    PREFIX,
    REFRESH_S,
    TokenError,
    TokenService,
    _b64,
    _unb64,
)


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cli.main", *args],
                          capture_output=True, text=True, timeout=60)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_cli_issue_prints_token_last(api: Api, data_dir: Path) -> None:
    out = cli("token", "issue", "--data-dir", str(data_dir), "--city", "Kunshan",
              "--role", "department", "--department", "transport",
              *api.ledger_args())
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert "Kunshan:department/transport" in out.stdout and len(lines) > 1
    me = api.client.get("/api/me", headers=bearer(lines[-1]))
    assert me.status_code == 200 and me.json()["department"] == "transport"
    key = data_dir / KEY_FILE
    assert stat.S_IMODE(key.stat().st_mode) == 0o600 and len(key.read_bytes()) == 32


@pytest.mark.parametrize("args, message", [
    (("--city", "Paris", "--role", "city_admin"), "city: unknown city"),
    (("--city", "Kunshan", "--role", "mayor"), "role: unknown role"),
    (("--city", "Kunshan", "--role", "center_admin"), "role:"),
    (("--city", "Center", "--role", "terminal"), "role:"),
    (("--city", "Kunshan", "--role", "department"), "department:"),
    (("--city", "Kunshan", "--role", "terminal", "--department", "x"),
     "department:"),
])
def test_cli_issue_refuses_bad_identities(data_dir: Path, api: Api,
                                          args: tuple[str, ...],
                                          message: str) -> None:
    out = cli("token", "issue", "--data-dir", str(data_dir), *args,
              *api.ledger_args())
    assert out.returncode == 2 and out.stdout == ""
    assert message in out.stderr and "accepted:" in out.stderr
    assert "Traceback" not in out.stderr


def test_cli_issue_needs_a_consortium(tmp_path: Path) -> None:
    out = cli("token", "issue", "--data-dir", str(tmp_path), "--city", "Kunshan",
              "--role", "terminal")
    assert out.returncode == 2 and "no API node" in out.stderr


def test_cli_revoke_stops_the_token(api: Api, data_dir: Path) -> None:
    principal, token = api.runtime.tokens.issue("Kunshan", "terminal")
    assert api.client.get("/api/me", headers=bearer(token)).status_code == 200
    out = cli("token", "revoke", "--data-dir", str(data_dir), principal.jti)
    assert out.returncode == 0 and "revoked" in out.stdout, out.stderr
    deadline = time.monotonic() + 10 * REFRESH_S
    while (r := api.client.get("/api/me", headers=bearer(token))).status_code == 200:
        assert time.monotonic() < deadline, "the revoked token still works"
        time.sleep(0.02)
    assert "revoked" in problem(r, 401, "Authorization")["detail"]
    again = cli("token", "revoke", "--data-dir", str(data_dir), principal.jti)
    assert "already revoked" in again.stdout
    bad = cli("token", "revoke", "--data-dir", str(data_dir), "not-an-id")
    assert bad.returncode == 2 and "jti:" in bad.stderr


def test_revoke_in_the_server_is_immediate(api: Api) -> None:
    principal, token = api.runtime.tokens.issue("Shanghai", "auditor")
    assert api.runtime.tokens.revoke(principal.jti)
    problem(api.client.get("/api/me", headers=bearer(token)), 401)


def test_refused_tokens(api: Api) -> None:
    tokens = api.runtime.tokens
    _, good = tokens.issue("Kunshan", "terminal")
    prefix, claims, mac = good.split(".")
    forged_claims = json.loads(_unb64(claims)) | {"role": "city_admin"}
    forged = f"{prefix}.{_b64(json.dumps(forged_claims).encode())}.{mac}"
    past = forged_claims | {"exp": int((datetime.now(UTC) - timedelta(1))
                                       .timestamp())}
    signed = f"{PREFIX}.{_b64(json.dumps(past).encode())}"
    expired = f"{signed}.{tokens._mac(signed)}"
    other_key = TokenService(Path("/nonexistent-should-not-be-used"))
    other_key._key = b"k" * 32
    foreign = other_key.issue("Kunshan", "terminal")[1]
    for token, detail in ((forged, "signature"), (expired, "expired"),
                          ("abc", "malformed"), (foreign, "signature")):
        body = problem(api.client.get("/api/me", headers=bearer(token)), 401,
                       "Authorization")
        assert detail in body["detail"]
    r = api.client.get("/api/me")
    assert problem(r, 401)["accepted"].startswith("Authorization: Bearer")
    assert r.headers["www-authenticate"] == "Bearer"
    r = api.client.get("/api/me", headers={"Authorization": "Basic abc"})
    problem(r, 401)


def test_refused_token_changes_nothing(api: Api) -> None:
    before = api.height()
    r = api.client.post("/api/departments", json={
        "code": "x", "name": "x", "duties": ["x"]}, headers=bearer("cu1.a.b"))
    problem(r, 401)
    assert api.height() == before


def test_issue_validates_identity_and_lifetime(api: Api) -> None:
    with pytest.raises(TokenError) as e:
        api.runtime.tokens.issue("Kunshan", "terminal", ttl=timedelta(0))
    assert e.value.field == "ttl"


def test_new_department_is_enrolled_when_its_token_is_issued(api: Api) -> None:
    code = api.department(code=name("water"), duties=("water",))
    who = ("Kunshan", "department", code)
    # A token made without the CLI (no enrolment): refused, nothing submitted.
    bare = api.runtime.tokens.issue("Kunshan", "department", code)[1]
    before = api.height()
    refused = api.client.post("/api/code-schemes", json={
        "application_name": "tap-qr0", "code_type": "water", "scope": name("s"),
        "data_sharing_commitment": True}, headers={"Authorization": f"Bearer {bare}"})
    assert refused.status_code == 403 and "token issue" in refused.json()["detail"]
    assert api.height() == before
    out = api.ok("/api/code-schemes", {
        "application_name": "tap-qr", "code_type": "water", "scope": name("s"),
        "data_sharing_commitment": True}, who)
    assert out["events"][0]["data"]["applied_by"] == f"Kunshan:department/{code}"
    assert api.runtime.gateway.connection.find_user(
        "Kunshan", "department", code) == f"department-{code}"
    # the same token keeps using the enrolled identity
    api.ok("/api/code-schemes", {
        "application_name": "tap-qr2", "code_type": "water", "scope": name("s"),
        "data_sharing_commitment": True}, who)
    assert KS_ADMIN  # the admin who registered the department
