"""Offline verification of city QR codes at a terminal: the signer's
certificate chain to the root (none revoked, each valid now), the signature,
the code's validity window, its scheme and guide URL approved. Each refusal
names its reason."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from chaincode.encoding import canonical_json
from ledger import crypto
from ledger.crypto import x509
from ledger.crypto.errors import CryptoError
from ledger.qrcode.codes import Code, parse


@dataclass(frozen=True)
class Verdict:
    ok: bool
    reason: str  # "valid", or why not
    code: Code | None = None

    def __str__(self) -> str:
        return "valid" if self.ok else f"refused: {self.reason}"


class Verifier:
    """Verifies codes against one opened trust bundle, without a network."""

    def __init__(self, bundle: dict[str, Any]) -> None:
        self.keys = {k["fingerprint"]: k for k in bundle["keys"]}
        self.schemes = {s["id"]: s for s in bundle["schemes"]}
        self.urls = {u["id"]: u for u in bundle["urls"]}
        self._certs: dict[str, x509.Certificate] = {}
        self._chains: dict[str, tuple[str | None, datetime, datetime]] = {}

    def _cert(self, fingerprint: str) -> x509.Certificate:
        if fingerprint not in self._certs:
            self._certs[fingerprint] = x509.load(
                self.keys[fingerprint]["certificate"].encode())
        return self._certs[fingerprint]

    def _chain(self, fingerprint: str, now: datetime) -> str | None:
        """Why the chain from the key up to the root fails, or None. The
        signatures of a chain are checked once; validity at every call."""
        cached = self._chains.get(fingerprint)
        if cached is None:
            cached = self._chains[fingerprint] = self._check_chain(fingerprint)
        broken, start, end = cached
        if broken is None and not start <= now <= end:
            return f"a key of the chain of {fingerprint[:16]}… is not valid now"
        return broken

    def _check_chain(self, fingerprint: str
                     ) -> tuple[str | None, datetime, datetime]:
        """(why the chain fails or None, when all its keys are valid)."""
        start, end = datetime.min.replace(tzinfo=UTC), datetime.max.replace(
            tzinfo=UTC)
        seen: set[str] = set()
        while fingerprint not in seen:
            seen.add(fingerprint)
            key = self.keys.get(fingerprint)
            if key is None:
                return (f"key {fingerprint[:16]}… is not in the trust bundle",
                        start, end)
            if key["status"] == "revoked":
                return (f"{key['level']} key {fingerprint[:16]}… is revoked",
                        start, end)
            cert = self._cert(fingerprint)
            start, end = max(start, cert.not_before), min(end, cert.not_after)
            if key["level"] == "root":
                ok = cert.signed_by(cert.public_key)
                return (None if ok else "the root is not self-signed", start, end)
            parent = key["issuer_fingerprint"]
            if parent not in self.keys or not cert.signed_by(
                    self._cert(parent).public_key):
                return (f"key {fingerprint[:16]}… is not signed by its issuer",
                        start, end)
            fingerprint = parent
        return "the key chain loops", start, end

    def verify(self, text: str, now: datetime | None = None) -> Verdict:
        now = now or datetime.now(UTC)
        try:
            code = parse(text)
        except ValueError as e:
            return Verdict(False, str(e))
        p = code.payload
        try:
            broken = self._chain(code.signer, now)
        except CryptoError as e:
            return Verdict(False, f"a certificate in the chain is malformed: {e}",
                           code)
        if broken:
            return Verdict(False, broken, code)
        public = self._cert(code.signer).public_key
        if not crypto.get_backend().sm2_verify(public, canonical_json(p),
                                               code.signature):
            return Verdict(False, "the signature does not verify", code)
        if not p["nb"] <= now.timestamp() <= p["na"]:
            return Verdict(False, "the code is outside its validity window", code)
        scheme = self.schemes.get(p["city"]["auth"])
        if scheme is None or scheme["status"] != "approved":
            return Verdict(False, "the code's scheme is not approved", code)
        if scheme["code_type"] != p["city"]["system"]:
            return Verdict(False, "the code's system is not its scheme's", code)
        url = self.urls.get(p["city"]["url"])
        if url is None or url["scheme_id"] != scheme["id"]:
            return Verdict(False, "the code's guide URL is not approved for its "
                           "scheme", code)
        if self.keys[code.signer]["city"] != scheme["city"]:
            return Verdict(False, "the signer is not of the scheme's city", code)
        return Verdict(True, "valid", code)
