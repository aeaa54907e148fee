"""City QR codes end to end on the embedded ledger, through the CLI: a code
issued for an identifier (a PNG, read back with OpenCV) verifies offline against
the sealed trust bundle; once its signer's key is revoked, or when a byte of it
changes, or past its window, it is refused with the reason; a CSV batch is one
CodeBatchIssued with the Merkle root of its serials."""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import base45
import pytest
from helpers import (
    CENTER,
    KUNSHAN,
    Clients,
    certificate,
    identifier_args,
    issuer_keys,
    register_departments,
)

from api.signing import NodeSigner
from chaincode.merkle import merkle_root_of
from cli.main import main
from cli.qr import _code_text
from ledger import crypto
from ledger.connect import connect
from ledger.qrcode.bundle import open_bundle
from ledger.qrcode.codes import PREFIX, StaticCode, key_id, parse
from ledger.qrcode.verify import Verifier


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A ledger with Kunshan transport's approved scheme and guide URL, two
    active places, and a department key certified under Kunshan (its key and
    certificate in files)."""
    root = tmp_path_factory.mktemp("qr")
    data = root / "node"
    conn = connect("embedded", data_dir=data)
    try:
        ids = Clients(conn)
        register_departments(ids)
        transport = ids("Kunshan", "transport")
        places = [transport.submit("RegisterIdentifier", identifier_args(
            "place", "poi")).result["id"] for _ in range(2)]
        scheme = transport.submit("ApplyCodeScheme", {
            "application_name": "bus-stop-codes", "code_type": "transport",
            "scope": "Kunshan-bus-stops", "data_sharing_commitment": True}
            ).result["id"]
        ids("Kunshan", "admin").submit("ApproveCodeScheme", {"scheme_id": scheme})
        url = transport.submit("FileGuideUrl", {
            "scheme_id": scheme, "url": "https://code.kunshan.example/stop"}
            ).result["id"]
        ids("Kunshan", "admin").submit("ApproveGuideUrl", {"url_id": url})
        private, cert = certificate({**KUNSHAN, "organizational_unit_name":
                                     "transport"}, issuer_keys(ids).institution)
        ids("Kunshan", "admin").submit("CertifyUserKey",
                                       {"certificate_pem": cert.pem})
    finally:
        conn.close()
    (root / "key.pem").write_bytes(crypto.private_key_to_pem(private))
    (root / "cert.pem").write_text(cert.pem)
    (root / "node.pem").write_text(NodeSigner(data).public_pem)
    return {"root": root, "data": data, "places": places, "scheme": scheme,
            "url": url, "fingerprint": cert.fingerprint}


def _cli(*args: str) -> int:
    return main(list(args))


def _issue(s: dict[str, Any], *which: str) -> int:
    return _cli("qr", "issue", "--data-dir", str(s["data"]), "--city", "Kunshan",
                "--department", "transport", "--scheme", s["scheme"], "--url-id",
                s["url"], "--key", str(s["root"] / "key.pem"), "--cert",
                str(s["root"] / "cert.pem"), *which)


def _fresh_signer(s: dict[str, Any]) -> int:
    """Certify a new department key into key.pem and cert.pem (another test
    may have revoked the one before); the ledger's height after it."""
    conn = connect("embedded", data_dir=s["data"])
    try:
        ids = Clients(conn)
        private, cert = certificate({**KUNSHAN, "organizational_unit_name":
                                     "transport"}, issuer_keys(ids).institution)
        ids("Kunshan", "admin").submit("CertifyUserKey", {"certificate_pem":
                                                          cert.pem})
        height = ids(CENTER, "auditor").height()
    finally:
        conn.close()
    (s["root"] / "key.pem").write_bytes(crypto.private_key_to_pem(private))
    (s["root"] / "cert.pem").write_text(cert.pem)
    return height


def _bundle(s: dict[str, Any], name: str) -> Path:
    out = s["root"] / name
    assert _cli("qr", "trust-bundle", "--data-dir", str(s["data"]), "--out",
                str(out)) == 0
    return out


def _verify(s: dict[str, Any], code: str, bundle: Path,
            capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, Any]]:
    capsys.readouterr()
    rc = _cli("qr", "verify", code, "--bundle", str(bundle), "--bundle-key",
              str(s["root"] / "node.pem"), "--json")
    return rc, json.loads(capsys.readouterr().out)


def test_issue_verify_revoke(setup: dict[str, Any],
                             capsys: pytest.CaptureFixture[str]) -> None:
    s = setup
    png, txt = s["root"] / "code.png", s["root"] / "code.txt"
    assert _issue(s, "--identifier", s["places"][0], "--out", str(png)) == 0
    assert _issue(s, "--identifier", s["places"][0], "--out", str(txt)) == 0
    bundle = _bundle(s, "bundle.json")
    rc, verdict = _verify(s, str(png), bundle, capsys)
    assert (rc, verdict["ok"], verdict["reason"]) == (0, True, "valid")
    text = txt.read_text().strip()
    code = parse(text)
    assert isinstance(code, StaticCode)
    assert str(code.identifier) == s["places"][0]
    assert code.signer == key_id(s["fingerprint"])

    # offline, as a terminal: a changed byte, and a time past the window
    node_key = crypto.public_key_from_pem((s["root"] / "node.pem").read_bytes())
    verifier = Verifier(open_bundle(json.loads(bundle.read_text()), node_key))
    assert verifier.verify(text).ok
    # another identifier under the same signature
    data = bytes(base45.b45decode(text[len(PREFIX):]))
    at = data.index(code.identifier.bytes)
    forged = data[:at] + UUID(s["places"][1]).bytes + data[at + 16:]
    changed = PREFIX + base45.b45encode(forged).decode()
    assert verifier.verify(changed).reason == "the signature does not verify"
    later = datetime.now(UTC) + timedelta(days=400)
    assert not verifier.verify(text, later).ok

    # revoke the signer: a fresh bundle refuses the code, naming why
    conn = connect("embedded", data_dir=s["data"])
    try:
        Clients(conn)("Kunshan", "admin").submit("RevokeIssuerKey", {
            "fingerprint": s["fingerprint"], "reason": "key leaked"})
    finally:
        conn.close()
    rc, verdict = _verify(s, text, _bundle(s, "after.json"), capsys)
    assert rc == 1 and "revoked" in verdict["reason"]
    # the old bundle still says valid: terminals must refresh theirs
    assert _verify(s, text, bundle, capsys)[1]["ok"] is True


def test_csv_batch_is_one_event(setup: dict[str, Any],
                                capsys: pytest.CaptureFixture[str]) -> None:
    s = setup
    rows = s["root"] / "ids.csv"
    with rows.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["identifier_id"])
        w.writerows([[p] for p in s["places"]])
    out = s["root"] / "batch"
    height = _fresh_signer(s)
    assert _issue(s, "--csv", str(rows), "--out", str(out)) == 0
    with (out / "codes.csv").open() as f:
        codes = list(csv.DictReader(f))
    assert [c["identifier_id"] for c in codes] == s["places"]
    pngs = sorted(out.glob("*.png"))
    assert len(pngs) == 2  # and each image reads back as its code
    assert sorted(_code_text(str(p)) for p in pngs) == sorted(c["code"] for c in codes)
    conn = connect("embedded", data_dir=s["data"], read_only=True)
    try:
        auditor = Clients(conn)(CENTER, "auditor")
        events = [e for e in auditor.events() if e.position.block >= height
                  and e.type == "CodeBatchIssued"]
    finally:
        conn.close()
    assert len(events) == 1 and events[0].data["count"] == 2
    assert events[0].data["merkle_root"] == merkle_root_of(
        c["serial"].encode() for c in codes)
    bundle = _bundle(s, "batch-bundle.json")
    for c in codes:
        assert _verify(s, c["code"], bundle, capsys)[1]["ok"] is True


def test_bad_inputs_are_named(setup: dict[str, Any],
                              capsys: pytest.CaptureFixture[str]) -> None:
    s = setup
    rows = s["root"] / "bad.csv"
    rows.write_text("identifier\nx\n", encoding="utf-8")
    assert _issue(s, "--csv", str(rows), "--out", str(s["root"] / "x")) == 2
    assert "needs a column identifier_id" in capsys.readouterr().err
    assert _issue(s, "--identifier", s["places"][0], "--out",
                  str(s["root"] / "code.gif")) == 2
    assert "code.png, code.svg or code.txt" in capsys.readouterr().err
    rc, verdict = _verify(s, "HC1:nonsense", _bundle(s, "b2.json"), capsys)
    assert rc == 1 and verdict["reason"].startswith("not a city QR code")


def test_dynamic_codes_and_sm4_content_through_the_cli(
        setup: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    """The institution certifies a user's key in compact form; the device
    makes a dynamic code offline; a terminal accepts it once. A static code's
    SM4 content reads only with the scheme's content key."""
    s, root = setup, setup["root"]
    conn = connect("embedded", data_dir=s["data"])
    try:
        institution_key, institution = issuer_keys(Clients(conn)).institution
    finally:
        conn.close()
    (root / "inst.pem").write_bytes(crypto.private_key_to_pem(institution_key))
    (root / "inst-cert.pem").write_text(institution.pem)
    user_private, user_public = crypto.get_backend().sm2_generate()
    (root / "user.pem").write_bytes(crypto.private_key_to_pem(user_private))
    (root / "user-pub.pem").write_bytes(crypto.public_key_to_pem(user_public))
    assert _cli("qr", "user-cert", "--key", str(root / "inst.pem"), "--cert",
                str(root / "inst-cert.pem"), "--scheme", s["scheme"],
                "--user-key", str(root / "user-pub.pem"), "--user-id",
                "00000000000000aa", "--out", str(root / "user.cert")) == 0
    assert _cli("qr", "user-cert", "--key", str(root / "inst.pem"), "--cert",
                str(root / "inst-cert.pem"), "--scheme", s["scheme"],
                "--user-key", str(root / "user-pub.pem"), "--user-id",
                "13800138000", "--out", str(root / "x.cert")) == 2
    assert "--user-id: 16 hex digits" in capsys.readouterr().err
    png = root / "dynamic.png"
    assert _cli("qr", "dynamic", "--user-key", str(root / "user.pem"),
                "--user-cert", str(root / "user.cert"), "--payload", "gate7",
                "--out", str(png)) == 0
    bundle = _bundle(s, "dyn-bundle.json")
    rc, verdict = _verify(s, str(png), bundle, capsys)
    assert (rc, verdict["ok"], verdict["kind"]) == (0, True, "dynamic")
    assert verdict["scheme_id"] == s["scheme"]
    # with its scan log the CLI is one terminal across runs: a second scan of
    # the dynamic code is a replay
    gate = root / "gate-log"
    for expected in (True, False):
        capsys.readouterr()
        _cli("qr", "verify", str(png), "--bundle", str(bundle), "--bundle-key",
             str(root / "node.pem"), "--log", str(gate), "--json")
        verdict = json.loads(capsys.readouterr().out)
        assert verdict["ok"] is expected
    assert verdict["reason"].startswith("replayed")
    # so does a terminal that keeps running
    node_key = crypto.public_key_from_pem((root / "node.pem").read_bytes())
    terminal = Verifier(open_bundle(json.loads(bundle.read_text()), node_key))
    text = _code_text(str(png))
    assert terminal.verify(text).ok
    assert terminal.verify(text).reason.startswith("replayed")

    (root / "content.key").write_text("00112233445566778899aabbccddeeff\n")
    out = root / "personal.txt"
    assert _issue(s, "--identifier", s["places"][0], "--out", str(out),
                  "--content", "张三 3201", "--content-key",
                  str(root / "content.key")) == 0
    assert "张三".encode() not in base45.b45decode(out.read_text().strip()[3:])
    bundle = _bundle(s, "content-bundle.json")
    capsys.readouterr()
    assert _cli("qr", "verify", out.read_text().strip(), "--bundle", str(bundle),
                "--bundle-key", str(root / "node.pem"), "--content-key",
                str(root / "content.key"), "--json") == 0
    assert json.loads(capsys.readouterr().out)["content"] == "张三 3201"
    rc, verdict = _verify(s, out.read_text().strip(), bundle, capsys)
    assert rc == 0 and "content" not in verdict  # no key, no content


def test_a_terminal_logs_its_scans_and_reports_them(
        setup: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    """verify --log, then `qr report`: one CodeUsageReported with the valid
    and the refused scan; nothing is left pending."""
    s, root = setup, setup["root"]
    height = _fresh_signer(s)
    out = root / "scanned.txt"
    assert _issue(s, "--identifier", s["places"][1], "--out", str(out)) == 0
    text = out.read_text().strip()
    bundle, log = _bundle(s, "scan-bundle.json"), root / "scans"
    for code in (text, "HC1:not-a-code"):
        _cli("qr", "verify", code, "--bundle", str(bundle), "--bundle-key",
             str(root / "node.pem"), "--log", str(log))
    assert "not logged: not a city QR code" in capsys.readouterr().err
    # the same code seen by a terminal whose clock is past its window
    node_key = crypto.public_key_from_pem((root / "node.pem").read_bytes())
    code = parse(text)
    assert isinstance(code, StaticCode)
    verdict = Verifier(open_bundle(json.loads(bundle.read_text()), node_key)
                       ).verify(text, datetime.fromtimestamp(code.not_after + 60,
                                                             UTC))
    assert not verdict.ok and verdict.scheme_id == s["scheme"]
    from cli.qr import _log
    _log(log, verdict, text)
    assert _cli("qr", "report", "--data-dir", str(s["data"]), "--log", str(log),
                "--terminal", "gate-7", "--city", "Kunshan") == 0
    assert "reported 2 scan(s)" in capsys.readouterr().out
    conn = connect("embedded", data_dir=s["data"], read_only=True)
    try:
        events = [e for e in Clients(conn)(CENTER, "auditor").events()
                  if e.position.block >= height and e.type == "CodeUsageReported"]
    finally:
        conn.close()
    assert len(events) == 1
    scans = events[0].data["scans"]
    assert [(x["serial"], x["result"]) for x in scans] == [
        (parse(text).serial.hex(), "valid"), (parse(text).serial.hex(), "refused")]
    assert scans[1]["reason"] == verdict.reason
    assert _cli("qr", "report", "--data-dir", str(s["data"]), "--log", str(log),
                "--terminal", "gate-7", "--city", "Kunshan") == 0
    assert "no scans to report" in capsys.readouterr().out
