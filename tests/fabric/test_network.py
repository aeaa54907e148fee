"""The native Fabric network as a user meets it: ``network up`` is idempotent and
says what runs, users carry their role attributes from Fabric CA, commands are
endorsed by a majority of member cities, and auditors can verify the chain."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID
from helpers import unique_hash

from chaincode.errors import Conflict
from ledger.fabric.blocks import load_blocks, verify_chain
from ledger.protocol import Connection
from network.launcher import Network

pytestmark = pytest.mark.fabric


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cli.main", *args],
                          capture_output=True, text=True, timeout=120)


def test_up_is_idempotent(fabric_network: Network) -> None:
    before = {r["node"]: r["pid"] for r in fabric_network.status()}
    assert all(before.values()), before
    started = time.monotonic()
    info = Network(fabric_network.layout.root).up()
    assert time.monotonic() - started < 10
    assert {r["node"]: r["pid"] for r in fabric_network.status()} == before
    assert info["endorsement_policy"] == (
        "OutOf(2,'ShanghaiMSP.peer','KunshanMSP.peer','TaicangMSP.peer')")
    assert len(info["orderers"]) == 3 and len(info["peers"]) == 4


def test_status_cli(fabric_network: Network) -> None:
    out = cli("network", "status", "--dir", str(fabric_network.layout.root),
              "--json")
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    assert {r["kind"] for r in rows} == {"ca", "orderer", "peer", "chaincode"}
    assert all(r["running"] for r in rows)


def test_users_are_enrolled_by_their_ca_with_role_attributes(
        fabric_network: Network) -> None:
    wallet = fabric_network.layout.wallet
    cert = x509.load_pem_x509_certificate(
        (wallet / "Kunshan" / "transport" / "cert.pem").read_bytes())
    attrs = json.loads(cert.extensions.get_extension_for_oid(
        x509.ObjectIdentifier("1.2.3.4.5.6.7.8.1")).value.public_bytes())["attrs"]
    assert attrs["cityunion.role"] == "department"
    assert attrs["cityunion.department"] == "transport"
    assert "client" in [a.value for a in cert.subject.get_attributes_for_oid(
        NameOID.ORGANIZATIONAL_UNIT_NAME)]
    ca_dir = fabric_network.layout.org_dir(
        fabric_network.layout.members.by_name("Kunshan")) / "ca"  # type: ignore[arg-type]
    ca_cert = x509.load_pem_x509_certificate(next(ca_dir.glob("*-cert.pem"))
                                             .read_bytes())
    cert.verify_directly_issued_by(ca_cert)  # the org's MSP root signed it
    meta = json.loads((wallet / "Center" / "admin" / "identity.json").read_text())
    assert (meta["msp_id"], meta["role"]) == ("CenterMSP", "center_admin")


def test_majority_of_cities_endorse(fabric_connection: Connection) -> None:
    receipt = fabric_connection.client("Kunshan", "admin").submit(
        "RegisterDepartment", {"code": f"w{unique_hash()[:8]}", "name": "Water",
                               "duties": ["water"]})
    assert receipt.status == "VALID" and receipt.events[0]["type"].endswith(
        "DepartmentRegistered")
    block = fabric_connection.client("Center", "auditor").block(
        receipt.block_number)
    tx = next(t for t in block["raw"]["transactions"]
              if t["tx_id"] == receipt.tx_id)
    cities = {e["msp_id"] for e in tx["endorsers"]}
    assert len(cities) >= 2 and "CenterMSP" not in cities


def test_contract_rejection_is_typed(fabric_connection: Connection) -> None:
    admin = fabric_connection.client("Shanghai", "admin")
    code = f"d{unique_hash()[:8]}"
    admin.submit("RegisterDepartment", {"code": code, "name": "D", "duties": ["x"]})
    height = admin.height()
    with pytest.raises(Conflict) as e:
        admin.submit("RegisterDepartment", {"code": code, "name": "D",
                                            "duties": ["x"]})
    assert e.value.field == "code"
    assert admin.height() == height


def test_ledger_verify_cli_saves_and_rechecks_blocks(fabric_network: Network,
                                                     tmp_path: Path) -> None:
    saved = tmp_path / "blocks"
    out = cli("ledger", "verify", "--ledger", "fabric", "--network",
              str(fabric_network.layout.root), "--save", str(saved), "--json")
    assert out.returncode == 0, out.stdout + out.stderr
    report = json.loads(out.stdout)
    assert report["ok"] and report["blocks"] >= 2
    again = verify_chain(load_blocks(saved))
    assert again.ok and again.blocks == report["blocks"]
    # a single flipped byte in a saved block is found, and named
    victim = saved / "1.block"
    raw = bytearray(victim.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    victim.write_bytes(bytes(raw))
    bad = verify_chain(load_blocks(saved))
    assert not bad.ok and bad.block_number == 1, bad
