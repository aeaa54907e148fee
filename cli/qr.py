"""``cityunion qr``: issue static city QR codes for identifiers (one, or a CSV
batch recorded on the ledger as one CodeBatchIssued), export the trust bundle,
and verify a code offline (text or image) against a bundle."""

from __future__ import annotations

import argparse
import csv
import json
import secrets
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chaincode.merkle import merkle_root_of
from cli.common import UserError, add_data_dir, add_ledger, connect_args, print_json
from ledger import crypto
from ledger.connect import ensure_identity
from ledger.crypto import x509
from ledger.crypto.errors import CryptoError

if TYPE_CHECKING:
    from ledger.qrcode.verify import Verdict

IMAGE_SUFFIXES = (".png", ".svg")


def register(sub: Any) -> None:
    qr = sub.add_parser("qr", help="city QR codes: issue, trust bundle, verify",
                        description=__doc__)
    verbs = qr.add_subparsers(dest="qr_command", required=True, metavar="VERB")

    issue = verbs.add_parser("issue", help="issue static codes for identifiers; "
                             "the batch is recorded on the ledger")
    add_data_dir(issue)
    add_ledger(issue)
    issue.add_argument("--city", required=True, help="the scheme's city")
    issue.add_argument("--department", required=True,
                       help="the scheme's department (its identity submits)")
    issue.add_argument("--scheme", required=True, help="the approved scheme's id")
    issue.add_argument("--url-id", required=True,
                       help="the scheme's approved guide URL id")
    issue.add_argument("--key", type=Path, required=True,
                       help="the signer's SM2 private key (PEM)")
    issue.add_argument("--cert", type=Path, required=True,
                       help="the signer's certified X.509 certificate (PEM)")
    which = issue.add_mutually_exclusive_group(required=True)
    which.add_argument("--identifier", help="one identifier's id")
    which.add_argument("--csv", type=Path,
                       help="a CSV with a column identifier_id: one code each")
    issue.add_argument("--out", type=Path, required=True,
                       help="with --identifier: code.png, code.svg or code.txt; "
                       "with --csv: a directory")
    issue.add_argument("--days", type=int, default=365,
                       help="validity in days (default 365, within the key's)")
    issue.add_argument("--content", default="",
                       help="content carried in the code (UTF-8, at most 64 "
                       "bytes; long content goes by reference)")
    issue.add_argument("--content-key", type=Path,
                       help="a file with the scheme's 16-byte SM4 content key "
                       "(32 hex digits): the content is encrypted with it")
    issue.set_defaults(run=run_issue)

    cert = verbs.add_parser("user-cert", help="certify a user's key for dynamic "
                            "codes (compact form, signed by the institution key)")
    cert.add_argument("--key", type=Path, required=True,
                      help="the city institution's SM2 private key (PEM)")
    cert.add_argument("--cert", type=Path, required=True,
                      help="the institution's certified X.509 certificate (PEM)")
    cert.add_argument("--scheme", required=True, help="the approved scheme's id")
    cert.add_argument("--user-key", type=Path, required=True,
                      help="the user's SM2 public key (PEM)")
    cert.add_argument("--user-id", required=True,
                      help="the user's pseudonymous id: 16 hex digits")
    cert.add_argument("--days", type=int, default=30,
                      help="validity in days (default 30)")
    cert.add_argument("--out", type=Path, required=True,
                      help="the compact certificate, as hex")
    cert.set_defaults(run=run_user_cert)

    dynamic = verbs.add_parser("dynamic", help="make a dynamic code offline, on "
                               "the user's device")
    dynamic.add_argument("--user-key", type=Path, required=True,
                         help="the user's SM2 private key (PEM)")
    dynamic.add_argument("--user-cert", type=Path, required=True,
                         help="the user's compact certificate (from user-cert)")
    dynamic.add_argument("--payload", default="", help="a short payload (UTF-8)")
    dynamic.add_argument("--out", type=Path, required=True,
                         help="code.png, code.svg or code.txt")
    dynamic.set_defaults(run=run_dynamic)

    bundle = verbs.add_parser("trust-bundle", help="export the signed trust bundle")
    add_data_dir(bundle)
    add_ledger(bundle)
    bundle.add_argument("--out", type=Path, required=True)
    bundle.set_defaults(run=run_bundle)

    verify = verbs.add_parser("verify", help="verify a code offline")
    verify.add_argument("code", help="the code's text, or an image file of it")
    verify.add_argument("--bundle", type=Path, required=True)
    verify.add_argument("--bundle-key", type=Path, required=True,
                        help="the exporting node's public key (PEM), pinned")
    verify.add_argument("--content-key", type=Path,
                        help="the scheme's SM4 content key, to read encrypted "
                        "content")
    verify.add_argument("--window", type=int, default=60,
                        help="seconds a dynamic code stays valid (default 60)")
    verify.add_argument("--log", type=Path,
                        help="the terminal's scan log directory: the scan is "
                        "logged for `cityunion qr report`")
    verify.add_argument("--json", action="store_true")
    verify.set_defaults(run=run_verify)


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise UserError(f"cannot read {what} {path}: {e.strerror}") from None


def _signer(args: argparse.Namespace) -> tuple[bytes, x509.Certificate]:
    try:
        private = crypto.private_key_from_pem(_read(args.key, "key"))
        cert = x509.load(_read(args.cert, "certificate"))
    except CryptoError as e:
        raise UserError(f"--key/--cert: {e}") from None
    if crypto.get_backend().sm2_public_from_private(private) != cert.public_key:
        raise UserError("--key is not the private key of --cert")
    return private, cert


def _identifiers(args: argparse.Namespace) -> list[str]:
    if args.identifier:
        return [args.identifier]
    with args.csv.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if "identifier_id" not in (reader.fieldnames or []):
            raise UserError(f"{args.csv}:1: needs a column identifier_id")
        ids = []
        for n, row in enumerate(reader, start=2):
            value = (row.get("identifier_id") or "").strip()
            if not value:
                raise UserError(f"{args.csv}:{n}: identifier_id is empty")
            ids.append(value)
    if not ids:
        raise UserError(f"{args.csv}: no identifiers")
    return ids


def _write(text: str, out: Path) -> None:
    from ledger.qrcode import image

    if out.suffix == ".txt":
        out.write_text(text + "\n", encoding="utf-8")
    elif out.suffix == ".svg":
        out.write_text(image.svg(text), encoding="utf-8")
    else:
        out.write_bytes(image.png(text))


def _content_key(path: Path | None, option: str) -> bytes | None:
    if path is None:
        return None
    try:
        key = bytes.fromhex(_read(path, option).decode().strip())
    except (UnicodeDecodeError, ValueError):
        key = b""
    if len(key) != 16:
        raise UserError(f"{option}: {path} must hold 32 hex digits (an SM4 key)")
    return key


def _output(out: Path) -> Path:
    if out.suffix not in (*IMAGE_SUFFIXES, ".txt"):
        raise UserError("--out: accepted are code.png, code.svg or code.txt")
    return out


def run_issue(args: argparse.Namespace) -> int:
    from ledger.qrcode.codes import MAX_SEGMENT, new_serial, sign_static

    single = args.identifier is not None
    if single:
        _output(args.out)
    content = args.content.encode()
    if len(content) > MAX_SEGMENT:
        raise UserError(f"--content: {len(content)} bytes; at most {MAX_SEGMENT} "
                        "fit in a code (carry long content by reference)")
    content_key = _content_key(args.content_key, "--content-key")
    private, cert = _signer(args)
    ids = _identifiers(args)
    conn = connect_args(args)
    try:
        user = ensure_identity(conn, args.city, "department", args.department)
        ledger = conn.client(args.city, user)
        scheme = ledger.evaluate("GetCodeScheme", {"id": args.scheme})
        for i, identifier in enumerate(ids):
            found = ledger.evaluate("GetIdentifier", {"id": identifier})
            where = f"{args.csv}:{i + 2}" if args.csv else "--identifier"
            if found["status"] != "active":
                raise UserError(f"{where}: identifier {identifier} is "
                                f"{found['status']}, not active")
            if found["city"] != scheme["city"]:
                raise UserError(f"{where}: identifier {identifier} is of "
                                f"{found['city']}, outside the scheme's city "
                                f"{scheme['city']}")
        start = datetime.now(UTC).replace(microsecond=0)
        end = min(start + timedelta(days=args.days), cert.not_after)
        codes = []
        prefix = secrets.token_hex(4)  # the batch's: its codes' serials start so
        for i, identifier in enumerate(ids):
            serial = new_serial(prefix)
            codes.append((identifier, serial.hex(), sign_static(
                signer_fingerprint=cert.fingerprint, scheme_id=args.scheme,
                guide_url_id=args.url_id, code_type=scheme["code_type"],
                identifier_id=identifier, not_before=start, not_after=end,
                private=private, content=content, content_key=content_key,
                serial=serial)))
            if not single:
                print(f"\rsigned {i + 1}/{len(ids)}", end="", file=sys.stderr,
                      flush=True)
        receipt = ledger.submit("IssueCodeBatch", {
            "scheme_id": args.scheme, "guide_url_id": args.url_id,
            "signer_fingerprint": cert.fingerprint, "count": len(codes),
            "not_before": start.isoformat().replace("+00:00", "Z"),
            "not_after": end.isoformat().replace("+00:00", "Z"),
            "merkle_root": merkle_root_of(s.encode() for _, s, _ in codes),
            "serial_prefix": prefix})
    finally:
        conn.close()
    if single:
        _write(codes[0][2], args.out)
    else:
        print(file=sys.stderr)
        args.out.mkdir(parents=True, exist_ok=True)
        with (args.out / "codes.csv").open("w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(("identifier_id", "serial", "code"))
            w.writerows(codes)
        for identifier, serial_hex, text in codes:
            _write(text, args.out / f"{identifier}-{serial_hex[8:]}.png")
    print(f"issued {len(codes)} code(s), batch {receipt.result['id']} in block "
          f"{receipt.block_number}")
    return 0


def run_bundle(args: argparse.Namespace) -> int:
    from api.signing import NodeSigner
    from ledger.qrcode.bundle import export

    signer = NodeSigner(args.data_dir)
    conn = connect_args(args, read_only=True)
    try:
        sealed = export(conn.client("Center", "auditor"), *signer.pair)
    finally:
        conn.close()
    args.out.write_text(json.dumps(sealed, ensure_ascii=False, indent=1),
                        encoding="utf-8")
    doc = sealed["document"]
    print(f"trust bundle at height {doc['height']}: {len(doc['keys'])} keys, "
          f"{len(doc['schemes'])} schemes, {len(doc['urls'])} guide URLs; "
          f"sealed by key {sealed['key_sm3'][:16]}… ({signer.path})")
    return 0


def _code_text(value: str) -> str:
    path = Path(value)
    if path.suffix.lower() not in (".png", ".jpg", ".jpeg") or not path.exists():
        return value
    from ledger.qrcode import image

    try:
        text = image.read(path)
    except ValueError as e:
        raise UserError(str(e)) from None
    if text is None:
        raise UserError(f"no QR code found in {path}")
    return text


def run_user_cert(args: argparse.Namespace) -> int:
    from ledger.qrcode.codes import issue_user_cert

    private, cert = _signer(args)
    try:
        user_public = crypto.public_key_from_pem(_read(args.user_key, "user key"))
    except CryptoError as e:
        raise UserError(f"--user-key: {e}") from None
    try:
        user_id = bytes.fromhex(args.user_id)
    except ValueError:
        user_id = b""
    if len(user_id) != 8:
        raise UserError("--user-id: 16 hex digits (a pseudonym, no personal data)")
    if args.days < 1:
        raise UserError("--days: at least 1")
    end = min(datetime.now(UTC) + timedelta(days=args.days), cert.not_after)
    compact = issue_user_cert(
        institution_private=private, institution_fingerprint=cert.fingerprint,
        scheme_id=args.scheme, user_id=user_id, user_public=user_public,
        not_after=end)
    args.out.write_text(compact.hex() + "\n", encoding="utf-8")
    print(f"user certificate of {args.user_id} until {end.isoformat()} "
          f"({len(compact)} bytes) in {args.out}")
    return 0


def run_dynamic(args: argparse.Namespace) -> int:
    from ledger.qrcode.codes import make_dynamic

    _output(args.out)
    try:
        private = crypto.private_key_from_pem(_read(args.user_key, "user key"))
        compact = bytes.fromhex(_read(args.user_cert, "user certificate").decode())
        text = make_dynamic(compact, private, args.payload.encode())
    except (CryptoError, ValueError) as e:
        raise UserError(f"--user-key/--user-cert/--payload: {e}") from None
    _write(text, args.out)
    print(f"dynamic code in {args.out}, valid for a minute")
    return 0


def _log(directory: Path, verdict: Verdict, text: str) -> None:
    from ledger.qrcode.usage import ScanLog

    with ScanLog(directory) as log:
        if log.add_verdict(verdict, text) is None:
            print(f"not logged: {verdict.reason}", file=sys.stderr)


def run_verify(args: argparse.Namespace) -> int:
    from ledger.qrcode.bundle import open_bundle
    from ledger.qrcode.codes import StaticCode, read_content
    from ledger.qrcode.usage import ScanLog
    from ledger.qrcode.verify import CLOCK_SKEW, Verifier

    try:
        public = crypto.public_key_from_pem(_read(args.bundle_key, "bundle key"))
        bundle = open_bundle(json.loads(_read(args.bundle, "bundle")), public)
    except (CryptoError, ValueError) as e:
        raise UserError(f"--bundle: {e}") from None
    key = _content_key(args.content_key, "--content-key")
    if not 1 <= args.window <= 3600:
        raise UserError("--window: from 1 to 3600 seconds")
    text = _code_text(args.code)
    verifier = Verifier(bundle, window=args.window)
    if args.log is not None:  # the terminal's memory: a dynamic code once
        now = datetime.now(UTC)
        with ScanLog(args.log) as log:
            verifier.remember(log.accepted_dynamic_since(
                now - timedelta(seconds=args.window + CLOCK_SKEW)),
                now + timedelta(seconds=args.window + CLOCK_SKEW))
    verdict = verifier.verify(text)
    if args.log is not None:
        _log(args.log, verdict, text)
    out: dict[str, Any] = {"ok": verdict.ok, "reason": verdict.reason,
                           "kind": verdict.kind, "serial": verdict.serial,
                           "scheme_id": verdict.scheme_id}
    code = verdict.code
    if verdict.ok and isinstance(code, StaticCode):
        out["identifier_id"] = str(code.identifier)
        if key is not None or not code.encrypted:
            try:
                out["content"] = read_content(code, key).decode("utf-8")
            except UnicodeDecodeError:
                out["content"] = None  # another scheme's key
    if args.json:
        print_json(out)
    else:
        print(verdict)
        if "content" in out:
            print(f"content: {out['content']}")
    return 0 if verdict.ok else 1
