"""Offline verification of city QR codes at a terminal, against one opened
trust bundle, without a network. Each refusal names its reason.

A static code: its signer's certificate chain to the root (none revoked, each
valid now), the signature, the code's validity window, its scheme approved and
of the signer's city, its code system the scheme's, its guide URL approved for
the scheme. A dynamic code: the institution key that certified the user's
compact certificate (its chain as above), that certificate's signature,
expiry and revocation, the scheme, the user's signature, the time window
(default 60 s) and replay: a terminal accepts a dynamic code once.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from chaincode.encoding import sm3_hex
from ledger import crypto
from ledger.crypto import x509
from ledger.crypto.errors import CryptoError
from ledger.qrcode.codes import Code, DynamicCode, StaticCode, parse, ref, system_id

DEFAULT_WINDOW = 60  # seconds a dynamic code stays valid
CLOCK_SKEW = 5  # seconds a device's clock may run ahead of the terminal's


@dataclass(frozen=True)
class Verdict:
    ok: bool
    reason: str  # "valid", or why not
    code: Code | None = None
    scheme_id: str | None = None  # the full id, once the bundle resolved it

    @property
    def kind(self) -> str | None:
        return self.code.kind if self.code else None

    @property
    def serial(self) -> str | None:
        return self.code.serial.hex() if self.code else None

    def __str__(self) -> str:
        return "valid" if self.ok else f"refused: {self.reason}"


class Verifier:
    """Verifies codes against one opened trust bundle. Thread-safe; keeps the
    dynamic codes it accepted for their window, to refuse replays. Signatures
    are checked with the fastest backend built (gmsm: ~4x Tongsuo)."""

    def __init__(self, bundle: dict[str, Any], window: int = DEFAULT_WINDOW,
                 backend: crypto.Backend | None = None) -> None:
        self.keys = {k["fingerprint"]: k for k in bundle["keys"]}
        self._key_ids = {bytes.fromhex(fp)[:8]: fp for fp in self.keys}
        self.schemes = {ref(s["id"]): s for s in bundle["schemes"]}
        self.urls = {ref(u["id"]): u for u in bundle["urls"]}
        self.revoked_users = {(ref(r["scheme_id"]), bytes.fromhex(r["user_id"]))
                              for r in bundle.get("revoked_users", [])}
        self.window = window
        self.backend = backend or crypto.fastest_verifier()
        self._certs: dict[str, x509.Certificate] = {}
        self._chains: dict[str, tuple[str | None, datetime, datetime]] = {}
        self._seen: dict[str, int] = {}  # accepted dynamic code's SM3 -> expiry
        self._lock = threading.Lock()

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
            try:
                cached = self._check_chain(fingerprint)
            except CryptoError as e:
                cached = (f"a certificate in the chain is malformed: {e}",
                          now, now)
            self._chains[fingerprint] = cached
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
                ok = cert.signed_by(cert.public_key, self.backend)
                return (None if ok else "the root is not self-signed", start, end)
            parent = key["issuer_fingerprint"]
            if parent not in self.keys or not cert.signed_by(
                    self._cert(parent).public_key, self.backend):
                return (f"key {fingerprint[:16]}… is not signed by its issuer",
                        start, end)
            fingerprint = parent
        return "the key chain loops", start, end

    def _signer(self, key_id: bytes, now: datetime) -> tuple[str | None, str]:
        """(why the key cannot sign, or None; its fingerprint)."""
        fingerprint = self._key_ids.get(key_id)
        if fingerprint is None:
            return f"key {key_id.hex()}… is not in the trust bundle", ""
        return self._chain(fingerprint, now), fingerprint

    def remember(self, code_sm3s: Iterable[str], until: datetime) -> None:
        """Refuse these dynamic codes (the SM3 of their text, as a scan log
        keeps them) as replays until ``until``: a terminal's memory across a
        restart."""
        with self._lock:
            for digest in code_sm3s:
                self._seen[digest] = int(until.timestamp())

    def verify(self, text: str, now: datetime | None = None) -> Verdict:
        now = now or datetime.now(UTC)
        text = text.rstrip("\r\n")
        try:
            code = parse(text)
        except ValueError as e:
            return Verdict(False, str(e))
        if isinstance(code, StaticCode):
            verdict = self._static(code, now)
            scheme = self.schemes.get(code.scheme)
        else:
            verdict = self._dynamic(code, now, sm3_hex(text.encode()))
            scheme = self.schemes.get(code.cert.scheme)
        if verdict.scheme_id is None and scheme is not None:
            # a refused code of a known scheme is reported as that scheme's
            verdict = replace(verdict, scheme_id=scheme["id"])
        return verdict

    def _scheme(self, scheme: bytes, city: str
                ) -> tuple[str | None, dict[str, Any] | None]:
        found = self.schemes.get(scheme)
        if found is None or found["status"] != "approved":
            return "the code's scheme is not approved", None
        if found["city"] != city:
            return "the signer is not of the scheme's city", found
        return None, found

    def _static(self, code: StaticCode, now: datetime) -> Verdict:
        broken, fingerprint = self._signer(code.signer, now)
        if broken:
            return Verdict(False, broken, code)
        if not self.backend.sm2_verify(self._cert(fingerprint).public_key,
                                       code.body, code.signature):
            return Verdict(False, "the signature does not verify", code)
        if not code.not_before <= now.timestamp() <= code.not_after:
            return Verdict(False, "the code is outside its validity window", code)
        why, scheme = self._scheme(code.scheme, self.keys[fingerprint]["city"])
        scheme_id = scheme["id"] if scheme else None
        if why:
            return Verdict(False, why, code, scheme_id)
        assert scheme is not None
        if system_id(scheme["code_type"]) != code.system:
            return Verdict(False, "the code's system is not its scheme's", code,
                           scheme_id)
        url = self.urls.get(code.url)
        if url is None or url["scheme_id"] != scheme_id:
            return Verdict(False, "the code's guide URL is not approved for its "
                           "scheme", code, scheme_id)
        return Verdict(True, "valid", code, scheme_id)

    def _dynamic(self, code: DynamicCode, now: datetime, digest: str) -> Verdict:
        cert = code.cert
        broken, fingerprint = self._signer(cert.issuer, now)
        if broken:
            return Verdict(False, broken, code)
        institution = self.keys[fingerprint]
        if institution["level"] != "institution":
            return Verdict(False, "the user certificate is not certified by a "
                           "city institution key", code)
        if not self.backend.sm2_verify(self._cert(fingerprint).public_key,
                                       cert.signed, cert.signature):
            return Verdict(False, "the user certificate's signature does not "
                           "verify", code)
        t = int(now.timestamp())
        if cert.not_after < t:
            return Verdict(False, "the user certificate has expired", code)
        if (cert.scheme, cert.user) in self.revoked_users:
            return Verdict(False, "the user certificate is revoked", code)
        why, scheme = self._scheme(cert.scheme, institution["city"])
        scheme_id = scheme["id"] if scheme else None
        if why:
            return Verdict(False, why, code, scheme_id)
        if not self.backend.sm2_verify(cert.public_key, code.body, code.signature):
            return Verdict(False, "the signature does not verify", code, scheme_id)
        if not t - self.window <= code.at <= t + CLOCK_SKEW:
            return Verdict(False, f"the code is outside its {self.window} s window",
                           code, scheme_id)
        with self._lock:
            if self._seen.get(digest, 0) >= t:
                return Verdict(False, "replayed: this dynamic code was already "
                               "accepted here", code, scheme_id)
            if len(self._seen) > 10_000:
                self._seen = {k: v for k, v in self._seen.items() if v >= t}
            self._seen[digest] = code.at + self.window
        return Verdict(True, "valid", code, scheme_id)
