"""City QR code benchmark, one process (one core): static code texts signed
per second, codes per second with a PNG written, offline verifications per
second of static codes and of dynamic codes (each of another user: both
signatures checked, no cache helps), and each kind's size (QR version at error
correction M). Prints one JSON object.

    python -m bench.qr [--codes 2000] [--pngs 300] [--backend native]

The issue's targets per core: 2,000 signed texts/s and 500 codes with PNG/s
when issuing; 5,000 static and 3,000 dynamic codes/s verified; a dynamic code
within QR version 10 at M.
"""

from __future__ import annotations

import argparse
import json
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from ledger import crypto
from ledger.crypto import x509
from ledger.qrcode import image
from ledger.qrcode.codes import issue_user_cert, make_dynamic, sign_static
from ledger.qrcode.verify import Verifier

TARGETS = {"signed_per_s": 2000.0, "png_per_s": 500.0,
           "static_verified_per_s": 5000.0, "dynamic_verified_per_s": 3000.0}
NAME = {"common_name": "bench", "organization_name": "Kunshan", "country_name": "CN"}


def _key(level: str, private: bytes, public: bytes, issuer: Any,
         issuer_private: bytes, ca: bool) -> dict[str, Any]:
    now = datetime.now(UTC) - timedelta(days=1)
    cert = x509.issue(NAME, public, NAME, issuer_private,
                      issuer.public_key if issuer else public, 1 + len(level),
                      now, now + timedelta(days=365), ca=ca,
                      path_length=0 if ca else None)
    return {"fingerprint": cert.fingerprint, "level": level, "city": "Kunshan",
            "status": "active", "certificate": cert.pem, "cert": cert,
            "issuer_fingerprint": issuer.fingerprint if issuer else "",
            "private": private}


@dataclass
class World:
    """A root, Kunshan's institution and a department (user) key, an approved
    scheme with its guide URL, and the trust bundle holding them: what a
    terminal knows, built without a ledger."""

    backend: crypto.Backend
    root: dict[str, Any]
    institution: dict[str, Any]
    department: dict[str, Any]
    scheme: str = field(default_factory=lambda: str(uuid.uuid4()))
    url: str = field(default_factory=lambda: str(uuid.uuid4()))
    now: datetime = field(default_factory=lambda: datetime.now(UTC))

    @classmethod
    def build(cls, backend: crypto.Backend) -> World:
        (rk, rp), (ik, ip), (uk, up) = (backend.sm2_generate() for _ in range(3))
        root = _key("root", rk, rp, None, rk, True)
        inst = _key("institution", ik, ip, root["cert"], rk, True)
        return cls(backend, root, inst,
                   _key("user", uk, up, inst["cert"], ik, False))

    def bundle(self, **changes: Any) -> dict[str, Any]:
        keys = (self.root, self.institution, self.department)
        out = {"keys": [{k: v for k, v in key.items() if k not in ("cert", "private")}
                        for key in keys],
               "schemes": [{"id": self.scheme, "city": "Kunshan",
                            "department": "transport", "code_type": "transport",
                            "scope": "s", "status": "approved"}],
               "urls": [{"id": self.url, "scheme_id": self.scheme,
                         "url": "https://x", "status": "approved"}]}
        return out | changes

    def static(self, **overrides: Any) -> str:
        args: dict[str, Any] = {
            "signer_fingerprint": self.department["fingerprint"],
            "scheme_id": self.scheme, "guide_url_id": self.url,
            "code_type": "transport", "identifier_id": str(uuid.uuid4()),
            "not_before": self.now - timedelta(minutes=1),
            "not_after": self.now + timedelta(days=30),
            "private": self.department["private"]}
        return sign_static(**(args | overrides))

    def user(self, n: int = 0, days: int = 30) -> tuple[bytes, bytes]:
        """A user's private key and compact certificate."""
        private, public = self.backend.sm2_generate()
        return private, issue_user_cert(
            institution_private=self.institution["private"],
            institution_fingerprint=self.institution["fingerprint"],
            scheme_id=self.scheme, user_id=n.to_bytes(8, "big"),
            user_public=public, not_after=self.now + timedelta(days=days))

    def dynamic(self, n: int = 0, payload: bytes = b"\x01\x02\x03\x04",
                age: int = 1) -> str:
        """A dynamic code of user ``n`` made ``age`` seconds before ``now``."""
        private, cert = self.user(n)
        return make_dynamic(cert, private, payload,
                            at=int(self.now.timestamp()) - age)


def _rate(n: int, fn: Any) -> float:
    t0 = time.perf_counter()
    fn()
    return n / (time.perf_counter() - t0)


def main() -> None:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--codes", type=int, default=2000)
    p.add_argument("--pngs", type=int, default=300)
    p.add_argument("--backend", help="crypto backend for everything (default: "
                   "the default signs, the fastest built verifies)")
    a = p.parse_args()
    backend = crypto.get_backend(a.backend)
    w = World.build(backend)
    now = w.now
    codes: list[str] = []
    signed = _rate(a.codes, lambda: codes.extend(w.static()
                                                 for _ in range(a.codes)))
    png = _rate(a.pngs, lambda: [image.png(w.static()) for _ in range(a.pngs)])
    dynamic = [w.dynamic(n) for n in range(a.codes)]  # every one another user's
    bundle = w.bundle()
    checker = backend if a.backend else crypto.fastest_verifier()
    verifier = Verifier(bundle, backend=checker)
    assert verifier.verify(codes[0]).ok
    static_ok = dynamic_ok = True

    def verify_static() -> None:
        nonlocal static_ok
        static_ok = all(verifier.verify(text, now).ok for text in codes)

    def verify_dynamic() -> None:
        nonlocal dynamic_ok
        dynamic_ok = all(verifier.verify(text, now).ok for text in dynamic)

    static_rate = _rate(a.codes, verify_static)
    dynamic_rate = _rate(a.codes, verify_dynamic)
    assert static_ok and dynamic_ok, "a benchmark code did not verify"
    rates = {"signed_per_s": signed, "png_per_s": png,
             "static_verified_per_s": static_rate,
             "dynamic_verified_per_s": dynamic_rate}
    out = {"backend": backend.name, "verifier_backend": checker.name,
           "codes": a.codes,
           **{k: round(v, 1) for k, v in rates.items()},
           "static_chars": len(codes[0]),
           "static_qr_version_m": image.version(codes[0]),
           "dynamic_chars": len(dynamic[0]),
           "dynamic_qr_version_m": image.version(dynamic[0]),
           "targets": TARGETS,
           "within_targets": {k: rates[k] >= v for k, v in TARGETS.items()}}
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
