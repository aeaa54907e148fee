"""City QR code benchmark, one process (one core): signed code texts per
second, codes per second with a PNG written, offline verifications per second
against a trust bundle, and the size of a code (characters, QR version at
error correction M). Prints one JSON object.

    python -m bench.qr [--codes 2000] [--pngs 200]

The issue's targets: 2,000 signed texts/s and 500 codes with PNG/s when issuing;
5,000 static codes/s verified.
"""

from __future__ import annotations

import argparse
import io
import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import segno

from ledger import crypto
from ledger.crypto import x509
from ledger.qrcode.codes import make_payload, sign
from ledger.qrcode.verify import Verifier

TARGETS = {"signed_per_s": 2000.0, "png_per_s": 500.0, "verified_per_s": 5000.0}
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
            "issuer_fingerprint": issuer.fingerprint if issuer else ""}


def main() -> None:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--codes", type=int, default=2000)
    p.add_argument("--pngs", type=int, default=200)
    a = p.parse_args()
    backend = crypto.get_backend()
    (rk, rp), (ik, ip), (uk, up) = (backend.sm2_generate() for _ in range(3))
    root = _key("root", rk, rp, None, rk, True)
    inst = _key("institution", ik, ip, root["cert"], rk, True)
    user = _key("user", uk, up, inst["cert"], ik, False)
    scheme, url = str(uuid.uuid4()), str(uuid.uuid4())
    bundle = {"keys": [{k: v for k, v in key.items() if k != "cert"}
                       for key in (root, inst, user)],
              "schemes": [{"id": scheme, "city": "Kunshan", "department": "transport",
                           "code_type": "transport", "scope": "s",
                           "status": "approved"}],
              "urls": [{"id": url, "scheme_id": scheme, "url": "https://x",
                        "status": "approved"}]}
    now = datetime.now(UTC)

    def payload() -> dict[str, Any]:
        return make_payload(guide_url_id=url, scheme_id=scheme,
                            code_type="transport", identifier_id=str(uuid.uuid4()),
                            city="Kunshan", department="transport",
                            content={"identifier": str(uuid.uuid4())},
                            not_before=now, not_after=now + timedelta(days=30),
                            signer=user["fingerprint"])

    payloads = [payload() for _ in range(a.codes)]
    t0 = time.perf_counter()
    codes = [sign(pl, uk) for pl in payloads]
    signed = a.codes / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    for text in codes[:a.pngs]:
        segno.make(text, error="m").save(io.BytesIO(), kind="png", scale=4)
    png = a.pngs / (time.perf_counter() - t0)
    verifier = Verifier(bundle)
    assert verifier.verify(codes[0]).ok
    t0 = time.perf_counter()
    assert all(verifier.verify(text, now).ok for text in codes)
    verified = a.codes / (time.perf_counter() - t0)
    out = {"backend": backend.name, "codes": a.codes,
           "signed_per_s": round(signed), "png_per_s": round(png, 1),
           "verified_per_s": round(verified),
           "code_chars": len(codes[0]),
           "qr_version_m": segno.make(codes[0], error="m").version,
           "targets": TARGETS,
           "within_targets": {k: v >= TARGETS[k] for k, v in (
               ("signed_per_s", signed), ("png_per_s", png),
               ("verified_per_s", verified))}}
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
