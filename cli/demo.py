"""``cityunion demo``: create a consortium and run a scenario across the event
families: identifiers, code schemes, cross-city card transactions with fees, a
dispute resolved, a lost card flagged, the daily clearing, each city's
settlement statement confirmed with its SM2 key and completed, and city QR codes
issued in one city and verified offline in another."""

from __future__ import annotations

import argparse
import base64
import secrets
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import base45

from api.signing import NodeSigner
from chaincode.encoding import canonical_json
from chaincode.errors import NotFound
from chaincode.merkle import merkle_root, merkle_root_of
from cli.common import UserError, add_data_dir, add_ledger, connect_args, print_json
from ledger import crypto
from ledger.crypto import x509
from ledger.protocol import Connection, Ledger
from ledger.qrcode.bundle import export, open_bundle
from ledger.qrcode.codes import (
    PREFIX,
    issue_user_cert,
    make_dynamic,
    new_serial,
    parse,
    sign_static,
)
from ledger.qrcode.usage import ScanLog
from ledger.qrcode.verify import Verifier

Signer = tuple[bytes, x509.Certificate]  # a private key and its certificate


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "demo", help="create the consortium (center, Shanghai, Kunshan, Taicang) "
        "and run a scenario over identifiers, code schemes and card clearing",
        description=__doc__)
    add_data_dir(p)
    add_ledger(p)
    p.add_argument("--records", type=int, default=300,
                   help="card-transaction records per city (default 300)")
    p.add_argument("--json", action="store_true",
                   help="print the summary as one JSON object")
    p.set_defaults(run=run)


def _hash(text: str) -> str:
    return crypto.sm3_hex(text.encode())


class Scenario:
    """The demo's steps, each a signed command from the identity that may make it."""

    def __init__(self, connection: Connection, records: int, keys_dir: Path) -> None:
        self.connection = connection
        self.records = records
        self.run_id = secrets.token_hex(4)  # demo data differs run to run
        self.receipts: list[Any] = []
        self.keys_dir = keys_dir
        self._clients: dict[tuple[str, str], Ledger] = {}
        self.schemes: dict[str, str] = {}  # city -> its approved metro scheme
        self.places: list[str] = []  # Kunshan's registered places and objects

    def client(self, org: str, user: str = "admin") -> Ledger:
        if (org, user) not in self._clients:
            self._clients[org, user] = self.connection.client(org, user)
        return self._clients[org, user]

    def submit(self, org: str, user: str, function: str,
               args: dict[str, Any]) -> dict[str, Any]:
        receipt = self.client(org, user).submit(function, args)
        self.receipts.append(receipt)
        return dict(receipt.result)

    def business_day(self) -> str:
        """Today (UTC), or the latest earlier day not yet cleared."""
        auditor = self.client("Center", "auditor")
        day = datetime.now(UTC).date()
        for back in range(3650):
            candidate = (day - timedelta(days=back)).isoformat()
            try:
                auditor.evaluate("GetClearingRun", {"business_day": candidate})
            except NotFound:
                return candidate
        raise UserError("every business day of the last ten years is cleared")

    def encrypted(self, subject: str, attributes: str) -> str:
        """SM4 ciphertext under a per-subject key kept off chain (PIPL: delete the
        key to forget the person)."""
        import base64

        key = secrets.token_bytes(16)
        self.keys_dir.mkdir(parents=True, exist_ok=True)
        (self.keys_dir / f"{subject}.key").write_bytes(key)
        blob = crypto.get_backend().sm4_encrypt(key, attributes.encode())
        return base64.b64encode(blob).decode()

    def identifiers(self) -> None:
        r = self.run_id
        reg = "RegisterIdentifier"
        person = self.submit("Kunshan", "transport", reg, {
            "kind": "person", "category": "identity", "scheme": "citizen",
            "natural_key_hash": _hash(f"person-{r}"),
            "attributes": self.encrypted(f"person-{r}", '{"name": "张三"}')})
        org = self.submit("Kunshan", "transport", reg, {
            "kind": "organisation", "category": "identity", "scheme": "uscc",
            "natural_key_hash": _hash(f"bus-company-{r}")})
        bus = self.submit("Kunshan", "transport", reg, {
            "kind": "object", "category": "identity", "scheme": "vehicle",
            "natural_key_hash": _hash(f"bus-{r}")})
        depot = self.submit("Kunshan", "transport", reg, {
            "kind": "place", "category": "spatiotemporal", "scheme": "station",
            "natural_key_hash": _hash(f"depot-{r}")})
        self.places = [bus["id"], depot["id"]]
        for target, relation in ((depot["id"], "belongs"), (org["id"], "organisation")):
            self.submit("Kunshan", "transport", "LinkIdentifier", {
                "identifier_id": bus["id"], "target_id": target,
                "relation": relation})
        self.submit("Kunshan", "transport", "LinkIdentifier", {
            "identifier_id": person["id"], "target_id": org["id"],
            "relation": "organisation"})
        stale = self.submit("Taicang", "health", reg, {
            "kind": "place", "category": "spatiotemporal", "scheme": "clinic",
            "natural_key_hash": _hash(f"clinic-{r}")})
        self.submit("Taicang", "health", "RevokeIdentifier", {
            "identifier_id": stale["id"], "reason": "clinic closed"})

    def departments(self) -> None:
        """Every city's transport and health departments: a department user
        acts only once its department is registered on chain."""
        for city in ("Shanghai", "Kunshan", "Taicang"):
            for dept, duties in (("transport", ["transport", "payment"]),
                                 ("health", ["health"])):
                try:
                    self.submit(city, "admin", "RegisterDepartment", {
                        "code": dept, "name": f"{city} {dept} bureau",
                        "duties": duties})
                except Exception as e:  # registered by an earlier demo run
                    if "already registered" not in str(e):
                        raise

    def code_schemes(self) -> None:
        r = self.run_id
        for city in ("Kunshan", "Taicang"):
            scheme = self.submit(city, "transport", "ApplyCodeScheme", {
                "application_name": f"metro-qr-{r}", "code_type": "transport",
                "scope": f"{city}-metro-{r}", "data_sharing_commitment": True})
            self.submit(city, "admin", "ApproveCodeScheme",
                        {"scheme_id": scheme["id"]})
            self.schemes[city] = scheme["id"]
        health = self.submit("Shanghai", "health", "ApplyCodeScheme", {
            "application_name": f"clinic-pass-{r}", "code_type": "payment",
            "scope": f"shanghai-{r}", "data_sharing_commitment": False})
        self.submit("Center", "admin", "RejectCodeScheme", {
            "scheme_id": health["id"],
            "reason": "payment is not a health duty; no data-sharing commitment"})

    def fee_rules(self, day: str) -> None:
        """Service prices (服务价格) from this business day: per record, a rate
        with a floor and a cap, paid by each party."""
        for scene, party, bps, low, high in (
                ("metro", "acquirer", 30, 1, 200), ("metro", "issuer", 20, 1, 100),
                ("bus", "acquirer", 25, 1, 100), ("bus", "issuer", 15, 0, 50),
                ("taxi", "acquirer", 50, 2, 300)):
            self.submit("Center", "admin", "PublishFeeRule", {
                "scene": scene, "party": party, "rate_bps": bps,
                "min_fee_fen": low, "max_fee_fen": high, "effective_day": day})

    def card(self, n: int) -> str:
        return _hash(f"card-{self.run_id}-{n}")

    def card_transactions(self, day: str) -> dict[str, Any]:
        cities = ("Shanghai", "Kunshan", "Taicang")
        scenes = ("metro", "bus", "metro", "taxi", "ferry", "metro", "bus")
        # A Shanghai card reported lost at 10:00: its later rides get flagged.
        self.submit("Shanghai", "admin", "BlacklistCards", {"cards": [{
            "card_id_hash": self.card(5), "reason": "lost",
            "since": f"{day}T10:00:00Z"}]})

        def batch(acquirer: str) -> tuple[str, dict[str, Any], list[dict[str, Any]]]:
            others = [c for c in cities if c != acquirer]
            records = [{
                "record_id": f"{acquirer[:2]}-{self.run_id}-{i}",
                "issuer_city": others[i % 2],
                "card_id_hash": self.card(i % 97),
                "amount_fen": 150 + (i * 37) % 900,
                "time": f"{day}T{8 + i % 12:02d}:{i % 60:02d}:00Z",
                "terminal_id": f"{acquirer[:2].upper()}-T{i % 20}",
                "scene": scenes[i % len(scenes)],
                "type": "top_up" if i % 25 == 24 else "purchase"}
                for i in range(self.records)]
            result = self.submit(acquirer, "admin", "ReportTransactionBatch", {
                "business_day": day, "records": records,
                "merkle_root": merkle_root(records)})
            return acquirer, result, records

        with ThreadPoolExecutor(3) as pool:  # three cities report at once
            batches = list(pool.map(batch, cities))
        for acquirer, result, records in batches:
            for issuer in cities:
                mine = [r["record_id"] for r in records if r["issuer_city"] == issuer]
                if not mine:
                    continue
                if issuer == "Shanghai" and acquirer == "Kunshan":
                    self.dispute(result["id"], mine[:2])
                self.submit(issuer, "admin", "ConfirmTransactions",
                            {"batch_id": result["id"]})
        return self.submit("Center", "admin", "RunClearing", {"business_day": day})

    def dispute(self, batch: str, records: list[str]) -> None:
        """Shanghai disputes two rides; Kunshan withdraws one and contests the
        other with the gate log's SM3 (the log stays off chain); the center
        decides for Kunshan, so that ride is cleared after all."""
        self.submit("Shanghai", "admin", "DisputeTransactions", {
            "batch_id": batch, "record_ids": records,
            "reason": "card reported lost before these rides"})
        self.submit("Kunshan", "admin", "RespondToDispute", {
            "batch_id": batch, "record_ids": records[:1], "response": "accept"})
        self.submit("Kunshan", "admin", "RespondToDispute", {
            "batch_id": batch, "record_ids": records[1:], "response": "contest",
            "evidence_sm3": _hash(f"gate-log-{self.run_id}"),
            "note": "entry and exit gates logged the card"})
        self.submit("Center", "admin", "ArbitrateDispute", {
            "batch_id": batch, "record_ids": records[1:], "decision": "acquirer",
            "reason": "the gate log shows the ride"})

    def settle(self, day: str) -> dict[str, str]:
        """Each city signs its statement with its settlement key (made once in
        the data directory, registered on chain) and the center records the
        payment. Returns city -> the statement's SM3."""
        out = {}
        for city in ("Shanghai", "Kunshan", "Taicang"):
            private = self.settlement_key(city)
            got = self.client(city, "auditor").evaluate("GetSettlementStatement", {
                "business_day": day, "city": city})
            signature = crypto.get_backend().sm2_sign(
                private, canonical_json(got["statement"]))
            self.submit(city, "admin", "ConfirmSettlement", {
                "business_day": day, "statement_sm3": got["statement_sm3"],
                "signature": base64.b64encode(
                    crypto.signature_to_der(signature)).decode()})
            self.submit("Center", "admin", "CompleteSettlement", {
                "business_day": day, "city": city,
                "payment_reference": f"CNAPS-{day}-{city}"})
            out[city] = got["statement_sm3"]
        return out

    def settlement_key(self, city: str) -> bytes:
        return self._key(f"settlement-keys/{city}.pem", lambda _, public: self.submit(
            city, "admin", "RegisterSettlementKey", {
                "public_key_pem": crypto.public_key_to_pem(public).decode()}))

    def _key(self, name: str, register: Callable[[bytes, bytes], Any]) -> bytes:
        """A private key kept in the data directory: made and registered on
        the ledger (``register(private, public)``) by the first run, reused
        after."""
        path = self.keys_dir.parent / name
        if path.exists():
            return crypto.private_key_from_pem(path.read_bytes())
        private, public = crypto.get_backend().sm2_generate()
        register(private, public)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(0o600)
        path.write_bytes(crypto.private_key_to_pem(private))
        return private

    def issuer_key(self, city: str, root: Signer | None = None) -> Signer:
        """The center's root key (no ``root``) or a city institution's key
        under it, certified on the ledger with an SM2 X.509 certificate kept
        beside the key."""
        level = "institution" if root else "root"
        cert_path = self.keys_dir.parent / "issuer-keys" / f"{city}.crt"

        def certify(private: bytes, public: bytes) -> None:
            start = datetime.now(UTC) - timedelta(minutes=5)
            name = {"common_name": f"{city} code {level}",
                    "organization_name": city, "country_name": "CN"}
            cert = x509.issue(name, public, root[1].subject if root else name,
                              root[0] if root else private,
                              root[1].public_key if root else public,
                              secrets.randbelow(1 << 64) + 1, start,
                              start + timedelta(days=3650), ca=True,
                              path_length=0 if root else 1)
            self.submit("Center", "admin", "CertifyIssuerKey", {
                "level": level, "certificate_pem": cert.pem})
            cert_path.parent.mkdir(parents=True, exist_ok=True)
            cert_path.write_text(cert.pem)

        private = self._key(f"issuer-keys/{city}.pem", certify)
        return private, x509.load(cert_path.read_bytes())

    def city_codes(self, signer: NodeSigner) -> dict[str, Any]:
        """Kunshan's transport department issues static codes for a bus and
        its depot under its approved scheme, to a filed and approved guide
        URL; Taicang certifies a rider's key, whose phone makes a dynamic code
        offline. A terminal in Shanghai verifies them all against the sealed
        trust bundle, without the network, and refuses a replay and a forgery."""
        root = self.issuer_key("Center")
        kunshan, taicang = (self.issuer_key(c, root) for c in ("Kunshan", "Taicang"))
        scheme = self.schemes["Kunshan"]
        url = self.submit("Kunshan", "transport", "FileGuideUrl", {
            "scheme_id": scheme,
            "url": f"https://code.kunshan.example/metro/{self.run_id}"})["id"]
        self.submit("Kunshan", "admin", "ApproveGuideUrl", {"url_id": url})
        start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
        end = start + timedelta(days=365)
        prefix = secrets.token_hex(4)
        codes = [sign_static(
            signer_fingerprint=kunshan[1].fingerprint, scheme_id=scheme,
            guide_url_id=url, code_type="transport", identifier_id=place,
            not_before=start, not_after=end, private=kunshan[0],
            serial=new_serial(prefix)) for place in self.places]
        moment = "%Y-%m-%dT%H:%M:%SZ"
        self.submit("Kunshan", "transport", "IssueCodeBatch", {
            "scheme_id": scheme, "guide_url_id": url,
            "signer_fingerprint": kunshan[1].fingerprint, "count": len(codes),
            "not_before": start.strftime(moment), "not_after": end.strftime(moment),
            "merkle_root": merkle_root_of(
                parse(c).serial.hex().encode() for c in codes),
            "serial_prefix": prefix})
        rider, rider_public = crypto.get_backend().sm2_generate()
        dynamic = make_dynamic(issue_user_cert(
            institution_private=taicang[0],
            institution_fingerprint=taicang[1].fingerprint,
            scheme_id=self.schemes["Taicang"], user_id=secrets.token_bytes(8),
            user_public=rider_public, not_after=end), rider, b"gate-3")
        bundle = open_bundle(export(self.client("Center", "auditor"), *signer.pair),
                             signer.pair[1])
        terminal = Verifier(bundle)
        verdicts = [terminal.verify(c) for c in (*codes, dynamic, dynamic)]
        data = bytearray(base45.b45decode(codes[0][len(PREFIX):]))
        data[40] ^= 1  # one bit of the identity changed
        forged = PREFIX + base45.b45encode(data).decode()
        verdicts.append(terminal.verify(forged))
        # the terminal logs its scans and reports them in one batch
        with ScanLog(self.keys_dir.parent / "scan-log") as log:
            for verdict, text in zip(verdicts, (*codes, dynamic, dynamic, forged),
                                     strict=True):
                log.add_verdict(verdict, text)
            reported = log.report(lambda a: self.submit(
                "Shanghai", "terminal", "ReportCodeUsage", a), "SH-gate-1")
        return {"static_issued": len(codes), "dynamic_made": 1,
                "bundle_height": bundle["height"], "scans_reported": reported,
                "verified_offline": sum(v.ok for v in verdicts),
                "refused": [v.reason for v in verdicts if not v.ok]}


def run(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    connection = connect_args(args)
    where = args.network if args.ledger == "fabric" else args.data_dir
    try:
        scenario = Scenario(connection, args.records, args.data_dir / "subject-keys")
        scenario.departments()
        scenario.identifiers()
        scenario.code_schemes()
        day = scenario.business_day()
        scenario.fee_rules(day)
        clearing = scenario.card_transactions(day)
        statements = scenario.settle(day)
        codes = scenario.city_codes(NodeSigner(args.data_dir))
        report = connection.verify()
        events = sum(len(r.events) for r in scenario.receipts)
        summary = {
            "data_dir": str(where), "ledger": args.ledger,
            "crypto": crypto.get_backend().name if args.ledger == "embedded"
            else "ECDSA P-256 (Fabric MSP), SM2/SM3/SM4 in the application",
            "height": scenario.client("Center", "auditor").height(),
            "blocks_written": len({r.block_number for r in scenario.receipts}),
            "transactions": len(scenario.receipts), "events": events,
            "business_day": day, "cleared_records": clearing["records"],
            "excluded_disputed": clearing["excluded_disputed"],
            "gross_fen": clearing["gross_fen"],
            "net_positions_fen": clearing["positions"],
            "center_fee_fen": clearing["center_fee_fen"],
            "flagged_records": len(clearing["flagged"]),
            "statements_confirmed_and_completed": statements,
            "city_qr_codes": codes,
            "verified": report.ok, "seconds": round(time.perf_counter() - started, 2)}
    finally:
        connection.close()
    if args.json:
        print_json(summary)
        return 0
    print(f"cityunion demo — {args.ledger} ledger in {summary['data_dir']} "
          f"(crypto: {summary['crypto']})")
    print(f"  blocks: {summary['height']} on the chain, "
          f"{summary['blocks_written']} written by this run")
    print(f"  transactions: {summary['transactions']}, events: {events}")
    print(f"  clearing {day}: {clearing['records']} records, "
          f"{clearing['excluded_disputed']} excluded (withdrawn or in dispute), "
          f"gross {clearing['gross_fen'] / 100:.2f} yuan")
    print(f"    fees to the center {clearing['center_fee_fen'] / 100:.2f} yuan; "
          f"1 dispute withdrawn, 1 decided for the acquirer; "
          f"{len(clearing['flagged'])} ride(s) of a lost card flagged")
    for city, fen in clearing["positions"].items():
        print(f"    {city:<10} {fen / 100:>+12.2f} yuan  ({fen:+d} fen)  statement "
              f"{statements[city][:12]}… confirmed (SM2), paid")
    print(f"  city QR codes: {codes['static_issued']} static (Kunshan) and "
          f"{codes['dynamic_made']} dynamic (Taicang) verified offline in Shanghai "
          f"against the trust bundle at height {codes['bundle_height']}; refused: "
          + "; ".join(codes["refused"])
          + f"; {codes['scans_reported']} scans reported (CodeUsageReported)")
    print(f"  chain verified: {'ok' if report.ok else report.error}  "
          f"({summary['seconds']} s)")
    return 0 if report.ok else 1
