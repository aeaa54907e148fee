"""Bearer tokens bound to an identity (city, role, department).

A token is ``cu1.<payload>.<mac>``: base64url JSON claims (``jti``, ``city``,
``role``, ``department``, ``iat``, ``exp``) and their HMAC-SM3. HMAC rather than
an SM2 signature because the one party that verifies tokens is the party that
issues them (this node's API); a symmetric MAC costs microseconds per request
where SM2 verification costs a quarter of a millisecond, and it is a national
standard hash (GM/T 0004) like the rest of the ledger. The key is 32 random bytes
generated into the data directory on first use (mode 0600), never in the repo.
Revoked token ids are kept in the read-model database; a running server keeps
them in memory and re-reads new ones every ``REFRESH_S`` seconds, so ``cityunion
token revoke`` from another process takes effect within that time (a revocation
through the server's own service, at once) and no request waits on the database
to check its token.
"""

from __future__ import annotations

import base64
import hmac
import json
import os
import re
import secrets
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from chaincode.identity import Role, roles_of
from chaincode.identity import label as identity_label
from network.consortium import load_consortium
from projections.db import Database

PREFIX = "cu1"
REFRESH_S = 0.2
KEY_FILE = "api-token.key"
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
SCHEMA = """
CREATE TABLE IF NOT EXISTS revoked_tokens (
    jti TEXT PRIMARY KEY, revoked_at TEXT NOT NULL)
"""


class TokenError(ValueError):
    """A token or identity that cannot be accepted; the message says why."""

    def __init__(self, message: str, field: str = "Authorization",
                 accepted: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.accepted = accepted


@dataclass(frozen=True)
class Principal:
    """Who a token speaks for."""

    city: str
    role: Role
    department: str | None
    jti: str
    expires_at: datetime

    @property
    def label(self) -> str:
        return identity_label(self.city, self.role.value, self.department)

    @property
    def sees_every_city(self) -> bool:
        return self.role in (Role.CENTER_ADMIN, Role.AUDITOR)


def check_identity(city: str, role: str, department: str | None) -> Role:
    """Validate a (city, role, department) triple; raises TokenError naming the
    bad part and what is accepted."""
    consortium = load_consortium()
    org = consortium.by_name(city)
    if org is None:
        names = ", ".join(o.name for o in consortium.organisations)
        raise TokenError(f"unknown city {city!r}", "city", names)
    try:
        parsed = Role(role)
    except ValueError:
        raise TokenError(f"unknown role {role!r}", "role",
                         ", ".join(r.value for r in Role)) from None
    if parsed not in roles_of(org):
        raise TokenError(f"{city} has no {role} identities"
                         + ("" if org.is_center else
                            f" (only {consortium.center.name} has a center admin)"),
                         "role", ", ".join(r.value for r in roles_of(org)))
    if (parsed is Role.DEPARTMENT) != bool(department):
        raise TokenError("a department token names its department, and only it "
                         "does", "department", "a department code with role "
                         "department, none otherwise")
    if department and not NAME.match(department):
        raise TokenError(f"bad department code {department!r}", "department",
                         NAME.pattern)
    return parsed


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class TokenService:
    """Issues, verifies and revokes this node's API tokens."""

    def __init__(self, data_dir: Path, db: Database | None = None) -> None:
        self.key_path = Path(data_dir) / KEY_FILE
        self.db = db
        self._key: bytes | None = None
        self._revoked: set[str] = set()
        self._seen_until = ""
        self._watching: threading.Event | None = None
        if db is not None:
            db.script(SCHEMA)

    @property
    def key(self) -> bytes:
        if self._key is None:
            self._key = self._load_or_create_key()
        return self._key

    def _load_or_create_key(self) -> bytes:
        try:
            return self.key_path.read_bytes()
        except FileNotFoundError:
            pass
        self.key_path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(self.key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process made it first
            return self.key_path.read_bytes()
        with os.fdopen(fd, "wb") as f:
            f.write(secrets.token_bytes(32))
        return self.key_path.read_bytes()

    def _mac(self, signed: str) -> str:
        return _b64(hmac.new(self.key, signed.encode(), "sm3").digest())

    def issue(self, city: str, role: str, department: str | None = None,
              ttl: timedelta = timedelta(days=30)) -> tuple[Principal, str]:
        """A new token for the identity; raises TokenError for a bad identity."""
        parsed = check_identity(city, role, department)
        if ttl <= timedelta(0):
            raise TokenError("the lifetime must be positive", "ttl")
        now = datetime.now(UTC).replace(microsecond=0)
        principal = Principal(city, parsed, department, secrets.token_hex(16),
                              now + ttl)
        claims = {"jti": principal.jti, "city": city, "role": parsed.value,
                  "department": department, "iat": int(now.timestamp()),
                  "exp": int(principal.expires_at.timestamp())}
        signed = f"{PREFIX}.{_b64(json.dumps(claims, sort_keys=True).encode())}"
        return principal, f"{signed}.{self._mac(signed)}"

    def verify(self, token: str) -> Principal:
        """The token's principal; raises TokenError if it is malformed, forged,
        expired or revoked."""
        parts = token.split(".")
        if len(parts) != 3 or parts[0] != PREFIX:
            raise TokenError("malformed token", accepted="a token from "
                             "`cityunion token issue` (cu1.<claims>.<mac>)")
        signed = f"{parts[0]}.{parts[1]}"
        if not hmac.compare_digest(self._mac(signed), parts[2]):
            raise TokenError("token signature does not verify")
        try:
            claims = json.loads(_unb64(parts[1]))
            expires = datetime.fromtimestamp(int(claims["exp"]), UTC)
            role = check_identity(claims["city"], claims["role"],
                                  claims.get("department"))
            principal = Principal(claims["city"], role, claims.get("department"),
                                  str(claims["jti"]), expires)
        except (ValueError, KeyError, TypeError) as e:
            raise TokenError(f"token claims are invalid: {e}") from None
        if expires <= datetime.now(UTC):
            raise TokenError(f"token expired at {expires.isoformat()}")
        if self.is_revoked(principal.jti):
            raise TokenError(f"token {principal.jti} was revoked")
        return principal

    def is_revoked(self, jti: str) -> bool:
        if self._watching is not None:
            return jti in self._revoked
        return self.db is not None and self.db.query_one(
            "SELECT 1 AS x FROM revoked_tokens WHERE jti = ?", (jti,)) is not None

    def _load_revocations(self) -> None:
        assert self.db is not None
        # Re-read a minute back: another process's clock may lag a little.
        since = (datetime.fromisoformat(self._seen_until) - timedelta(minutes=1)
                 ).isoformat() if self._seen_until else ""
        rows = self.db.query("SELECT jti, revoked_at FROM revoked_tokens "
                             "WHERE revoked_at >= ?", (since,))
        self._revoked.update(r["jti"] for r in rows)
        self._seen_until = max([self._seen_until, *(r["revoked_at"] for r in rows)])

    def watch_revocations(self) -> None:
        """Keep the revocation list in memory, refreshed in a daemon thread."""
        if self.db is None or self._watching is not None:
            return
        self._load_revocations()
        stop = self._watching = threading.Event()

        def loop() -> None:
            while not stop.wait(REFRESH_S):
                try:
                    self._load_revocations()
                except Exception:  # the database is away; keep the last list
                    continue
        threading.Thread(target=loop, name="token-revocations", daemon=True).start()

    def stop_watching(self) -> None:
        if self._watching is not None:
            self._watching.set()

    def revoke(self, jti: str) -> bool:
        """Revoke a token id; returns False if it already was."""
        if self.db is None:
            raise TokenError("revocation needs the read-model database", "database")
        if not re.fullmatch(r"[0-9a-f]{32}", jti):
            raise TokenError(f"bad token id {jti!r}", "jti", "32 hex digits, as "
                             "printed by `cityunion token issue`")
        with self.db.transaction() as cur:
            fresh = cur.execute("INSERT INTO revoked_tokens VALUES (?, ?) "
                                "ON CONFLICT (jti) DO NOTHING",
                                (jti, datetime.now(UTC).isoformat())) == 1
        self._revoked.add(jti)
        return fresh
