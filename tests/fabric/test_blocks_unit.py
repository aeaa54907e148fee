"""Offline verification of Fabric blocks, on small chains built here.

The chains are shaped as Fabric 2.5 writes them: one throwaway root CA per
organisation issuing ECDSA P-256 certificates with NodeOUs (OU=peer, client,
orderer), a genesis config block carrying those MSPs, endorser transactions with
proposal hashes, endorsements, rwsets and chaincode events, orderer-signed
blocks with a TRANSACTIONS_FILTER, and a channel update. The header encoding is
written here independently of ``ledger.fabric.blocks`` and pinned to bytes
produced by Go's ``encoding/asn1`` (what ``protoutil.BlockHeaderBytes`` uses).
Each tampering test changes one thing and checks the block and tx named.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

if not os.environ.get("CI"):  # in CI a missing extra is a failure, not a skip
    pytest.importorskip("grpc")
    pytest.importorskip("fabric_protos")
    pytest.importorskip("asn1crypto")

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from fabric_protos.common import common_pb2, configtx_pb2
from fabric_protos.ledger.rwset import rwset_pb2
from fabric_protos.ledger.rwset.kvrwset import kv_rwset_pb2
from fabric_protos.msp import identities_pb2, msp_config_pb2
from fabric_protos.orderer import ab_pb2
from fabric_protos.peer import (
    chaincode_event_pb2,
    chaincode_pb2,
    events_pb2,
    events_pb2_grpc,
    proposal_pb2,
    proposal_response_pb2,
    transaction_pb2,
)
from google.protobuf.timestamp_pb2 import Timestamp

from ledger.fabric.blocks import (
    deliver_blocks,
    describe_block,
    load_blocks,
    save_blocks,
    verify_chain,
)
from ledger.fabric.identity import FabricIdentity
from ledger.protocol import LedgerError, VerifyReport

CHANNEL = "cityunion"
CHAINCODE = "cityunion"
VALID = transaction_pb2.TxValidationCode.Value("VALID")
MVCC_READ_CONFLICT = transaction_pb2.TxValidationCode.Value("MVCC_READ_CONFLICT")
POLICY_FAILURE = transaction_pb2.TxValidationCode.Value("ENDORSEMENT_POLICY_FAILURE")
BAD_CREATOR_SIGNATURE = transaction_pb2.TxValidationCode.Value("BAD_CREATOR_SIGNATURE")


# --- the chain builder --------------------------------------------------------


def _tlv(tag: int, body: bytes) -> bytes:
    if len(body) < 0x80:
        return bytes([tag, len(body)]) + body
    size = len(body).to_bytes((len(body).bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(size)]) + size + body


def header_der(number: int, previous_hash: bytes, data_hash: bytes) -> bytes:
    """DER SEQUENCE {INTEGER, OCTET STRING, OCTET STRING}, as Go marshals it."""
    integer = number.to_bytes((number.bit_length() + 8) // 8, "big")
    return _tlv(0x30, _tlv(0x02, integer) + _tlv(0x04, previous_hash) +
                _tlv(0x04, data_hash))


def header_hash(header: common_pb2.BlockHeader) -> bytes:
    return hashlib.sha256(header_der(header.number, header.previous_hash,
                                     header.data_hash)).digest()


def _name(cn: str, ou: str | None = None) -> x509.Name:
    parts = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if ou:
        parts.append(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, ou))
    return x509.Name(parts)


class Org:
    """A throwaway root CA and the identities it issues."""

    def __init__(self, name: str, msp_id: str) -> None:
        self.name, self.msp_id = name, msp_id
        self.key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.now(UTC)
        subject = _name(f"ca.{name.lower()}.example")
        self.cert = (
            x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(self.key, hashes.SHA256()))

    def issue(self, cn: str, ou: str, msp_id: str | None = None) -> FabricIdentity:
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.now(UTC)
        cert = (
            x509.CertificateBuilder().subject_name(_name(cn, ou))
            .issuer_name(self.cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=365))
            .sign(self.key, hashes.SHA256()))
        return FabricIdentity(
            msp_id or self.msp_id, cert.public_bytes(serialization.Encoding.PEM),
            key.private_bytes(serialization.Encoding.PEM,
                              serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()), cn)

    def msp_group(self) -> configtx_pb2.ConfigGroup:
        def ou(name: str) -> msp_config_pb2.FabricOUIdentifier:
            return msp_config_pb2.FabricOUIdentifier(
                organizational_unit_identifier=name)

        fabric = msp_config_pb2.FabricMSPConfig(
            name=self.msp_id,
            root_certs=[self.cert.public_bytes(serialization.Encoding.PEM)],
            fabric_node_ous=msp_config_pb2.FabricNodeOUs(
                enable=True, client_ou_identifier=ou("client"),
                peer_ou_identifier=ou("peer"), admin_ou_identifier=ou("admin"),
                orderer_ou_identifier=ou("orderer")))
        group = configtx_pb2.ConfigGroup()
        group.values["MSP"].value = msp_config_pb2.MSPConfig(
            type=0, config=fabric.SerializeToString()).SerializeToString()
        return group


def channel_config(sequence: int, orderer_orgs: list[Org],
                   application_orgs: list[Org]) -> configtx_pb2.Config:
    config = configtx_pb2.Config(sequence=sequence)
    for section, orgs in (("Orderer", orderer_orgs), ("Application", application_orgs)):
        group = config.channel_group.groups[section]
        for org in orgs:
            group.groups[org.name].CopyFrom(org.msp_group())
    return config


def _now() -> Timestamp:
    ts = Timestamp()
    ts.GetCurrentTime()
    return ts


def _signed(payload: common_pb2.Payload, signer: FabricIdentity | None) -> bytes:
    raw = payload.SerializeToString()
    return common_pb2.Envelope(
        payload=raw, signature=signer.sign(raw) if signer else b"").SerializeToString()


def genesis_tx(config: configtx_pb2.Config) -> bytes:
    header = common_pb2.ChannelHeader(type=common_pb2.HeaderType.Value("CONFIG"),
                                      channel_id=CHANNEL, timestamp=_now())
    return _signed(common_pb2.Payload(
        header=common_pb2.Header(
            channel_header=header.SerializeToString(),
            signature_header=common_pb2.SignatureHeader().SerializeToString()),
        data=configtx_pb2.ConfigEnvelope(config=config).SerializeToString()), None)


def config_update_tx(config: configtx_pb2.Config, orderer: FabricIdentity,
                     admin: FabricIdentity) -> bytes:
    """A channel update as the orderer wraps it: the admin-signed CONFIG_UPDATE
    inside a CONFIG envelope signed by the orderer."""
    update = configtx_pb2.ConfigUpdate(channel_id=CHANNEL).SerializeToString()
    sig_header = common_pb2.SignatureHeader(creator=admin.serialized,
                                            nonce=os.urandom(24)).SerializeToString()
    update_envelope = configtx_pb2.ConfigUpdateEnvelope(
        config_update=update, signatures=[configtx_pb2.ConfigSignature(
            signature_header=sig_header, signature=admin.sign(sig_header + update))])

    def payload(kind: str, signer: FabricIdentity, data: bytes) -> common_pb2.Payload:
        header = common_pb2.ChannelHeader(type=common_pb2.HeaderType.Value(kind),
                                          channel_id=CHANNEL, timestamp=_now())
        return common_pb2.Payload(header=common_pb2.Header(
            channel_header=header.SerializeToString(),
            signature_header=common_pb2.SignatureHeader(
                creator=signer.serialized, nonce=os.urandom(24)).SerializeToString()),
            data=data)

    last_update = common_pb2.Envelope.FromString(_signed(payload(
        "CONFIG_UPDATE", admin, update_envelope.SerializeToString()), admin))
    return _signed(payload("CONFIG", orderer, configtx_pb2.ConfigEnvelope(
        config=config, last_update=last_update).SerializeToString()), orderer)


@dataclass
class Tx:
    raw: bytes
    tx_id: str


def endorser_tx(creator: FabricIdentity, endorsers: list[FabricIdentity], *,
                chaincode: str = CHAINCODE, function: str = "RecordFare",
                argument: str = "{}", keys: tuple[str, ...] = ("a~1",),
                events: list[dict[str, Any]] | None = None,
                event_tx_id: str | None = None, bad_endorsement: bool = False,
                bad_creator_signature: bool = False) -> Tx:
    """An endorser transaction as the Gateway assembles it."""
    nonce = os.urandom(24)
    tx_id = hashlib.sha256(nonce + creator.serialized).hexdigest()
    cc_id = chaincode_pb2.ChaincodeID(name=chaincode)
    channel_header = common_pb2.ChannelHeader(
        type=common_pb2.HeaderType.Value("ENDORSER_TRANSACTION"), channel_id=CHANNEL,
        tx_id=tx_id, timestamp=_now(), extension=proposal_pb2.ChaincodeHeaderExtension(
            chaincode_id=cc_id).SerializeToString()).SerializeToString()
    signature_header = common_pb2.SignatureHeader(
        creator=creator.serialized, nonce=nonce).SerializeToString()
    proposal_payload = proposal_pb2.ChaincodeProposalPayload(
        input=chaincode_pb2.ChaincodeInvocationSpec(
            chaincode_spec=chaincode_pb2.ChaincodeSpec(
                chaincode_id=cc_id, input=chaincode_pb2.ChaincodeInput(
                    args=[function.encode(), argument.encode()]))
        ).SerializeToString()).SerializeToString()
    writes = kv_rwset_pb2.KVRWSet(
        writes=[kv_rwset_pb2.KVWrite(key=k, value=b"{}") for k in keys])
    results = rwset_pb2.TxReadWriteSet(
        data_model=rwset_pb2.TxReadWriteSet.DataModel.Value("KV"),
        ns_rwset=[rwset_pb2.NsReadWriteSet(namespace=chaincode,
                                           rwset=writes.SerializeToString())])
    action = proposal_pb2.ChaincodeAction(
        results=results.SerializeToString(),
        response=proposal_response_pb2.Response(status=200),
        chaincode_id=chaincode_pb2.ChaincodeID(name=chaincode, version="1"))
    if events is not None:
        action.events = chaincode_event_pb2.ChaincodeEvent(
            chaincode_id=chaincode, tx_id=event_tx_id or tx_id, event_name="cityunion",
            payload=json.dumps(events).encode()).SerializeToString()
    response_payload = proposal_response_pb2.ProposalResponsePayload(
        proposal_hash=hashlib.sha256(channel_header + signature_header +
                                     proposal_payload).digest(),
        extension=action.SerializeToString()).SerializeToString()
    endorsements = [proposal_response_pb2.Endorsement(
        endorser=peer.serialized,
        signature=peer.sign(response_payload + peer.serialized +
                            (b"!" if bad_endorsement and i == 0 else b"")))
        for i, peer in enumerate(endorsers)]
    action_payload = transaction_pb2.ChaincodeActionPayload(
        chaincode_proposal_payload=proposal_payload,
        action=transaction_pb2.ChaincodeEndorsedAction(
            proposal_response_payload=response_payload, endorsements=endorsements))
    transaction = transaction_pb2.Transaction(actions=[
        transaction_pb2.TransactionAction(
            header=signature_header, payload=action_payload.SerializeToString())])
    payload = common_pb2.Payload(
        header=common_pb2.Header(channel_header=channel_header,
                                 signature_header=signature_header),
        data=transaction.SerializeToString()).SerializeToString()
    signature = creator.sign(payload + (b"!" if bad_creator_signature else b""))
    return Tx(common_pb2.Envelope(payload=payload, signature=signature)
              .SerializeToString(), tx_id)


@dataclass
class Chain:
    """Blocks as an orderer cuts and signs them and a peer commits them."""

    orderer: FabricIdentity
    blocks: list[common_pb2.Block] = field(default_factory=list)
    last_config: int = 0

    def genesis(self, config: configtx_pb2.Config) -> Chain:
        data = [genesis_tx(config)]
        block = common_pb2.Block(
            header=common_pb2.BlockHeader(
                number=0, data_hash=hashlib.sha256(b"".join(data)).digest()),
            data=common_pb2.BlockData(data=data))
        block.metadata.metadata.extend([b"", b"", bytes([VALID]), b"", b""])
        self.blocks.append(block)
        return self

    def add(self, envelopes: list[bytes | Tx], codes: list[int] | None = None,
            signer: FabricIdentity | None = None, config: bool = False) -> Chain:
        number = len(self.blocks)
        data = [e.raw if isinstance(e, Tx) else e for e in envelopes]
        header = common_pb2.BlockHeader(
            number=number, previous_hash=header_hash(self.blocks[-1].header),
            data_hash=hashlib.sha256(b"".join(data)).digest())
        if config:
            self.last_config = number
        signer = signer or self.orderer
        value = common_pb2.OrdererBlockMetadata(
            last_config=common_pb2.LastConfig(index=self.last_config)
        ).SerializeToString()
        sig_header = common_pb2.SignatureHeader(
            creator=signer.serialized, nonce=os.urandom(24)).SerializeToString()
        signatures = common_pb2.Metadata(value=value, signatures=[
            common_pb2.MetadataSignature(
                signature_header=sig_header,
                signature=signer.sign(value + sig_header + header_der(
                    number, header.previous_hash, header.data_hash)))])
        block = common_pb2.Block(header=header, data=common_pb2.BlockData(data=data))
        block.metadata.metadata.extend([
            signatures.SerializeToString(), b"",
            bytes(codes if codes is not None else [VALID] * len(data)), b"", b""])
        self.blocks.append(block)
        return self

    def raw(self) -> list[bytes]:
        return [b.SerializeToString() for b in self.blocks]


@dataclass
class Network:
    center: Org
    shanghai: Org
    kunshan: Org
    taicang: Org
    orderer: FabricIdentity
    peers: dict[str, FabricIdentity]
    clients: dict[str, FabricIdentity]
    admins: dict[str, FabricIdentity]

    def chain(self, *application: Org) -> Chain:
        orgs = list(application) or [self.center, self.shanghai, self.kunshan,
                                     self.taicang]
        return Chain(self.orderer).genesis(channel_config(0, [self.center], orgs))


@pytest.fixture(scope="module")
def net() -> Network:
    center, shanghai = Org("Center", "CenterMSP"), Org("Shanghai", "ShanghaiMSP")
    kunshan, taicang = Org("Kunshan", "KunshanMSP"), Org("Taicang", "TaicangMSP")
    orgs = [center, shanghai, kunshan, taicang]
    return Network(
        center, shanghai, kunshan, taicang,
        center.issue("orderer0.center", "orderer"),
        {o.name: o.issue(f"peer0.{o.name.lower()}", "peer") for o in orgs},
        {o.name: o.issue(f"clerk@{o.name.lower()}", "client") for o in orgs},
        {o.name: o.issue(f"admin@{o.name.lower()}", "admin") for o in orgs})


def fare_events(n: int = 1) -> list[dict[str, Any]]:
    return [{"type": "FareRecorded", "aggregate_id": f"fare-{i}", "version": 1,
             "timestamp": "2026-01-01T00:00:00+00:00", "data": {}} for i in range(n)]


@dataclass
class Honest:
    chain: Chain
    txs: dict[str, Tx]


@pytest.fixture
def honest(net: Network) -> Honest:
    """Five blocks: genesis; a lifecycle approval; three contract transactions
    (one an MVCC conflict, one refused for its policy); a channel update; two
    more contract transactions."""
    p, c = net.peers, net.clients
    txs = {
        "approve": endorser_tx(net.admins["Center"], [p["Center"]],
                               chaincode="_lifecycle",
                               function="ApproveChaincodeDefinitionForMyOrg"),
        "fare1": endorser_tx(c["Shanghai"], [p["Shanghai"], p["Kunshan"]],
                             argument='{"fare": "marker-1"}', events=fare_events(2)),
        "fare2": endorser_tx(c["Kunshan"], [p["Kunshan"], p["Taicang"]],
                             argument='{"fare": "marker-2"}', events=fare_events()),
        "conflict": endorser_tx(c["Kunshan"], [p["Kunshan"], p["Taicang"]],
                                events=fare_events()),
        "refused": endorser_tx(c["Taicang"], [p["Taicang"]], events=fare_events()),
        "fare3": endorser_tx(c["Taicang"], [p["Taicang"], p["Shanghai"],
                                            p["Center"]], events=fare_events(3)),
        "fare4": endorser_tx(c["Shanghai"], [p["Shanghai"], p["Taicang"]],
                             keys=("a~9",), events=fare_events()),
    }
    chain = net.chain()
    chain.add([txs["approve"]])
    chain.add([txs["fare1"], txs["fare2"], txs["conflict"], txs["refused"]],
              codes=[VALID, VALID, MVCC_READ_CONFLICT, POLICY_FAILURE])
    chain.add([config_update_tx(channel_config(
        1, [net.center], [net.center, net.shanghai, net.kunshan, net.taicang]),
        net.orderer, net.admins["Center"])], config=True)
    chain.add([txs["fare3"], txs["fare4"]])
    return Honest(chain, txs)


def assert_bad(report: VerifyReport, block: int, tx_id: str | None,
               words: str) -> None:
    assert not report.ok, report
    assert (report.block_number, report.tx_id) == (block, tx_id), report
    assert report.error is not None and words in report.error, report.error


def edit(raw: list[bytes], number: int, change: Any) -> list[bytes]:
    """The chain with block ``number`` parsed, changed by ``change(block)`` and
    serialised again."""
    block = common_pb2.Block.FromString(raw[number])
    change(block)
    return [*raw[:number], block.SerializeToString(), *raw[number + 1:]]


# --- the honest chain ---------------------------------------------------------


def test_honest_chain_verifies(honest: Honest, tmp_path: Path) -> None:
    seen: list[int] = []
    report = verify_chain(honest.chain.raw(), save_dir=tmp_path / "saved",
                          progress=seen.append)
    assert report == VerifyReport(True, 5, 1 + 1 + 4 + 1 + 2, 2 + 1 + 3 + 1)
    assert seen == [0, 1, 2, 3, 4]
    assert sorted(p.name for p in (tmp_path / "saved").iterdir()) == [
        f"{n}.block" for n in range(5)]
    assert verify_chain(load_blocks(tmp_path / "saved")) == report


def test_no_blocks_is_not_a_chain() -> None:
    report = verify_chain([])
    assert not report.ok and report.block_number == 0


def test_header_encoding_matches_go_asn1() -> None:
    """Bytes from Go's encoding/asn1 marshalling Fabric's asn1Header."""
    data_hash = hashlib.sha256(b"x").digest()
    go = {
        0: "3027020100040004202d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717"
           "921a4881",
        128: "302b02020080040301020304202d711642b726b04401627ca9fbac32f5c8530fb1903cc4"
             "db02258717921a4881",
        1 << 63: "30320209008000000000000000040301020304202d711642b726b04401627ca9fbac3"
                 "2f5c8530fb1903cc4db02258717921a4881",
    }
    for number, der in go.items():
        previous = b"" if number == 0 else b"\x01\x02\x03"
        assert header_der(number, previous, data_hash).hex() == der
        block = common_pb2.Block(header=common_pb2.BlockHeader(
            number=number, previous_hash=previous, data_hash=data_hash))
        assert describe_block(block.SerializeToString())["hash"] == \
            hashlib.sha256(bytes.fromhex(der)).hexdigest()


def test_rejected_transactions_need_not_verify(net: Network) -> None:
    """A peer marks a transaction with a bad creator signature invalid; that is
    honest, but the same transaction marked VALID is not."""
    forged = endorser_tx(net.clients["Shanghai"], [net.peers["Shanghai"]],
                         bad_creator_signature=True)
    assert verify_chain(net.chain().add([forged], [BAD_CREATOR_SIGNATURE]).raw()).ok
    assert_bad(verify_chain(net.chain().add([forged]).raw()), 1, forged.tx_id,
               "creator signature")


# --- single tamperings --------------------------------------------------------


def test_a_byte_of_a_transaction_payload(honest: Honest) -> None:
    raw = honest.chain.raw()
    assert raw[2].count(b"marker-2") == 1
    raw[2] = raw[2].replace(b"marker-2", b"marker-3")
    assert_bad(verify_chain(raw), 2, honest.txs["fare2"].tx_id,
               "creator signature of KunshanMSP 'clerk@kunshan' does not verify")


def test_a_previous_hash(honest: Honest) -> None:
    def change(block: common_pb2.Block) -> None:
        block.header.previous_hash = hashlib.sha256(b"another past").digest()

    assert_bad(verify_chain(edit(honest.chain.raw(), 3, change)), 3, None,
               "previous_hash")


def test_a_data_entry_signature(honest: Honest) -> None:
    def change(block: common_pb2.Block) -> None:
        envelope = common_pb2.Envelope.FromString(block.data.data[1])
        other = common_pb2.Envelope.FromString(block.data.data[0])
        envelope.signature = other.signature
        block.data.data[1] = envelope.SerializeToString()

    assert_bad(verify_chain(edit(honest.chain.raw(), 2, change)), 2,
               honest.txs["fare2"].tx_id, "creator signature")


def test_a_removed_data_entry(honest: Honest) -> None:
    def change(block: common_pb2.Block) -> None:
        del block.data.data[3]

    assert_bad(verify_chain(edit(honest.chain.raw(), 2, change)), 2, None,
               "data_hash")


def test_trailing_bytes_in_a_data_entry(honest: Honest) -> None:
    def change(block: common_pb2.Block) -> None:
        block.data.data[0] += common_pb2.Envelope(signature=b"x").SerializeToString()

    assert_bad(verify_chain(edit(honest.chain.raw(), 4, change)), 4,
               honest.txs["fare3"].tx_id, "canonical form")


def test_the_orderer_signature(honest: Honest) -> None:
    def change(block: common_pb2.Block) -> None:
        metadata = common_pb2.Metadata.FromString(block.metadata.metadata[0])
        signature = bytearray(metadata.signatures[0].signature)
        signature[-1] ^= 1
        metadata.signatures[0].signature = bytes(signature)
        block.metadata.metadata[0] = metadata.SerializeToString()

    assert_bad(verify_chain(edit(honest.chain.raw(), 1, change)), 1, None,
               "orderer signature of CenterMSP 'orderer0.center' does not verify")


def test_the_orderer_signature_removed(honest: Honest) -> None:
    def change(block: common_pb2.Block) -> None:
        block.metadata.metadata[0] = b""

    assert_bad(verify_chain(edit(honest.chain.raw(), 4, change)), 4, None,
               "no orderer signature")


def test_a_block_signed_by_a_peer(net: Network) -> None:
    tx = endorser_tx(net.clients["Shanghai"], [net.peers["Shanghai"]],
                     chaincode="other")
    chain = net.chain().add([tx], signer=net.peers["Shanghai"])
    assert_bad(verify_chain(chain.raw()), 1, None, "not by an orderer organisation")


def test_one_endorsement_signature(net: Network) -> None:
    tx = endorser_tx(net.clients["Kunshan"],
                     [net.peers["Taicang"], net.peers["Kunshan"]],
                     bad_endorsement=True, events=fare_events())
    assert_bad(verify_chain(net.chain().add([tx]).raw()), 1, tx.tx_id,
               "endorsement signature of TaicangMSP 'peer0.taicang' does not verify")


@pytest.mark.parametrize("endorsers", [
    ["Shanghai"], ["Shanghai", "Center"], ["Shanghai", "Shanghai2"],
    ["Shanghai", "KunshanClient"]])
def test_an_endorsement_from_only_one_city(net: Network, endorsers: list[str]) -> None:
    """The center is no city, a second peer of one city is the same city, and a
    client certificate of another city is no peer."""
    extra = {"Shanghai2": net.shanghai.issue("peer1.shanghai", "peer"),
             "KunshanClient": net.clients["Kunshan"]}
    tx = endorser_tx(net.clients["Shanghai"],
                     [net.peers.get(name) or extra[name] for name in endorsers],
                     events=fare_events())
    chain = net.chain().add([endorser_tx(net.clients["Kunshan"], [
        net.peers["Kunshan"], net.peers["Shanghai"]], events=fare_events())]).add([tx])
    assert_bad(verify_chain(chain.raw()), 2, tx.tx_id, "endorsement policy not met")
    # A peer refused it for its policy: then the chain is honest.
    honest = net.chain().add([tx], codes=[POLICY_FAILURE])
    assert verify_chain(honest.raw()).ok


def test_a_creator_from_an_unknown_ca(net: Network) -> None:
    rogue = Org("Shanghai", "ShanghaiMSP").issue("clerk@shanghai", "client")
    good = endorser_tx(net.clients["Taicang"], [net.peers["Taicang"],
                                                net.peers["Kunshan"]])
    tx = endorser_tx(rogue, [net.peers["Shanghai"], net.peers["Kunshan"]])
    assert_bad(verify_chain(net.chain().add([good, tx]).raw()), 1, tx.tx_id,
               "creator not trusted")


def test_an_endorser_from_an_unknown_ca(net: Network) -> None:
    rogue = Org("Kunshan", "KunshanMSP").issue("peer0.kunshan", "peer")
    tx = endorser_tx(net.clients["Shanghai"], [net.peers["Shanghai"], rogue])
    assert_bad(verify_chain(net.chain().add([tx]).raw()), 1, tx.tx_id,
               "endorser 1 not trusted")


def test_an_event_with_another_tx_id(net: Network) -> None:
    tx = endorser_tx(net.clients["Shanghai"], [net.peers["Shanghai"],
                                               net.peers["Taicang"]],
                     events=fare_events(), event_tx_id="0" * 64)
    assert_bad(verify_chain(net.chain().add([tx]).raw()), 1, tx.tx_id,
               "chaincode event carries tx id")


def test_an_event_payload_that_is_not_domain_events(net: Network) -> None:
    tx = endorser_tx(net.clients["Shanghai"], [net.peers["Shanghai"],
                                               net.peers["Taicang"]],
                     events={"type": "x"})  # type: ignore[arg-type]
    assert_bad(verify_chain(net.chain().add([tx]).raw()), 1, tx.tx_id,
               "JSON array of domain events")


def test_a_replayed_transaction(honest: Honest) -> None:
    chain = honest.chain.add([honest.txs["fare1"]])
    assert_bad(verify_chain(chain.raw()), 5, honest.txs["fare1"].tx_id,
               "already used")


def test_a_missing_block(honest: Honest) -> None:
    raw = honest.chain.raw()
    assert_bad(verify_chain([*raw[:2], *raw[3:]]), 2, None,
               "block number 3 where block 2 was expected")


def test_a_wrong_last_config_index(honest: Honest) -> None:
    honest.chain.last_config = 0  # the orderer forgets the update of block 3
    chain = honest.chain.add([endorser_tx(
        honest.chain.orderer, [honest.chain.orderer], chaincode="other")])
    assert_bad(verify_chain(chain.raw()), 5, None, "last config block")


# --- channel updates ----------------------------------------------------------


def test_a_config_update_brings_in_a_new_city(net: Network) -> None:
    """Taicang joins by a channel update: its peers count only after it."""
    def joined() -> Tx:
        return endorser_tx(net.clients["Shanghai"], [net.peers["Shanghai"],
                                                     net.peers["Taicang"]],
                           events=fare_events())

    founders = [net.center, net.shanghai, net.kunshan]
    update = config_update_tx(channel_config(1, [net.center], [*founders, net.taicang]),
                              net.orderer, net.admins["Shanghai"])
    after = net.chain(*founders).add([update], config=True).add([joined()])
    assert verify_chain(after.raw()).ok

    early = joined()
    before = net.chain(*founders).add([early])
    assert_bad(verify_chain(before.raw()), 1, early.tx_id,
               "MSP 'TaicangMSP' is not in the channel config")


def test_a_config_update_signed_by_an_outsider(net: Network) -> None:
    outsider = Org("Center", "CenterMSP").issue("admin@center", "admin")
    update = config_update_tx(channel_config(1, [net.center], [net.center]),
                              net.orderer, outsider)
    assert_bad(verify_chain(net.chain().add([update], config=True).raw()), 1, None,
               "not issued by a CA of CenterMSP")


def test_a_config_update_that_skips_a_sequence(net: Network) -> None:
    update = config_update_tx(channel_config(2, [net.center], [net.center]),
                              net.orderer, net.admins["Center"])
    assert_bad(verify_chain(net.chain().add([update], config=True).raw()), 1, None,
               "sequence 2 does not follow 0")


# --- describing and storing ---------------------------------------------------


def test_describe_block(honest: Honest) -> None:
    raw = honest.chain.raw()
    described = describe_block(raw[2])
    json.dumps(described)
    assert described["number"] == 2
    assert described["previous_hash"] == describe_block(raw[1])["hash"]
    assert described["hash"] == header_hash(honest.chain.blocks[2].header).hex()
    assert described["orderer_signers"] == [
        {"msp_id": "CenterMSP", "subject": "OU=orderer,CN=orderer0.center"}]
    first, _, conflict, refused = described["transactions"]
    assert first == {
        "index": 0, "tx_id": honest.txs["fare1"].tx_id,
        "type": "ENDORSER_TRANSACTION", "channel": CHANNEL,
        "creator": {"msp_id": "ShanghaiMSP", "cn": "clerk@shanghai"},
        "timestamp": first["timestamp"], "validation": "VALID",
        "chaincode": "cityunion", "function": "RecordFare",
        "endorsers": [{"msp_id": "ShanghaiMSP", "cn": "peer0.shanghai"},
                      {"msp_id": "KunshanMSP", "cn": "peer0.kunshan"}],
        "event": "cityunion",
        "writes": [{"namespace": "cityunion", "key": "a~1", "is_delete": False}]}
    assert datetime.fromisoformat(first["timestamp"]).tzinfo is not None
    assert (conflict["validation"], refused["validation"]) == (
        "MVCC_READ_CONFLICT", "ENDORSEMENT_POLICY_FAILURE")
    config = describe_block(raw[3])["transactions"][0]
    assert (config["type"], config["config"]["sequence"]) == ("CONFIG", 1)
    assert config["config"]["msps"]["orderer"] == ["CenterMSP"]
    genesis = describe_block(raw[0])
    assert genesis["orderer_signers"] == [] and genesis["previous_hash"] == ""


def test_save_and_load_in_number_order(net: Network, tmp_path: Path) -> None:
    chain = net.chain()
    for i in range(11):
        chain.add([endorser_tx(net.clients["Kunshan"], [net.peers["Kunshan"]],
                               chaincode="other", keys=(f"k{i}",))])
    raw = chain.raw()
    assert save_blocks(reversed(raw), tmp_path) == 12
    (tmp_path / "notes.txt").write_text("not a block")
    assert list(load_blocks(tmp_path)) == raw
    assert verify_chain(load_blocks(tmp_path)).ok


# --- deliver ------------------------------------------------------------------


class FakeDeliver(events_pb2_grpc.DeliverServicer):
    """The peer's Deliver service over a list of blocks; it checks the seek
    envelope as a peer does and records the SeekInfo it got."""

    def __init__(self, blocks: list[bytes], status: str = "SUCCESS") -> None:
        self.blocks, self.status = blocks, status
        self.seeks: list[ab_pb2.SeekInfo] = []

    def Deliver(self, request_iterator: Iterator[common_pb2.Envelope],
                context: grpc.ServicerContext) -> Iterator[events_pb2.DeliverResponse]:
        for envelope in request_iterator:
            payload = common_pb2.Payload.FromString(envelope.payload)
            header = common_pb2.ChannelHeader.FromString(payload.header.channel_header)
            signature_header = common_pb2.SignatureHeader.FromString(
                payload.header.signature_header)
            creator = identities_pb2.SerializedIdentity.FromString(
                signature_header.creator)
            key = x509.load_pem_x509_certificate(creator.id_bytes).public_key()
            assert isinstance(key, ec.EllipticCurvePublicKey)
            key.verify(envelope.signature, envelope.payload, ec.ECDSA(hashes.SHA256()))
            assert header.type == common_pb2.HeaderType.Value("DELIVER_SEEK_INFO")
            assert header.tx_id == hashlib.sha256(
                signature_header.nonce + signature_header.creator).hexdigest()
            if header.channel_id != CHANNEL:
                yield events_pb2.DeliverResponse(
                    status=common_pb2.Status.Value("NOT_FOUND"))
                continue
            seek = ab_pb2.SeekInfo.FromString(payload.data)
            self.seeks.append(seek)
            start = seek.start.specified.number
            stop = (len(self.blocks) - 1 if seek.stop.HasField("newest")
                    else seek.stop.specified.number)
            for raw in self.blocks[start:stop + 1]:
                yield events_pb2.DeliverResponse(block=common_pb2.Block.FromString(raw))
            yield events_pb2.DeliverResponse(
                status=common_pb2.Status.Value(self.status))


@pytest.fixture
def deliver(honest: Honest) -> Iterator[tuple[grpc.Channel, FakeDeliver]]:
    service = FakeDeliver(honest.chain.raw())
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    events_pb2_grpc.add_DeliverServicer_to_server(service, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    yield channel, service
    channel.close()
    server.stop(None)


def test_deliver_blocks(net: Network, honest: Honest,
                        deliver: tuple[grpc.Channel, FakeDeliver]) -> None:
    channel, service = deliver
    auditor = net.center.issue("auditor@center", "client")
    blocks = list(deliver_blocks(channel, auditor, CHANNEL, 0, None))
    assert blocks == honest.chain.raw()
    assert verify_chain(blocks).ok
    assert list(deliver_blocks(channel, auditor, CHANNEL, 1, 2, wait=True)) == \
        honest.chain.raw()[1:3]
    behaviours = [ab_pb2.SeekInfo.SeekBehavior.Name(s.behavior) for s in service.seeks]
    assert behaviours == ["FAIL_IF_NOT_READY", "BLOCK_UNTIL_READY"]
    assert service.seeks[0].stop.HasField("newest")


def test_deliver_status_names_the_failure(net: Network,
                                          deliver: tuple[grpc.Channel, FakeDeliver]
                                          ) -> None:
    channel, service = deliver
    auditor = net.center.issue("auditor@center", "client")
    with pytest.raises(LedgerError, match="NOT_FOUND"):
        list(deliver_blocks(channel, auditor, "elsewhere", 0, None))
    service.status = "FORBIDDEN"
    with pytest.raises(LedgerError, match="FORBIDDEN"):
        list(deliver_blocks(channel, auditor, CHANNEL, 0, 1))
    stopped = grpc.insecure_channel("127.0.0.1:1")
    with pytest.raises(LedgerError, match="UNAVAILABLE"):
        list(deliver_blocks(stopped, auditor, CHANNEL, 0, None, timeout=5))
    stopped.close()
    with pytest.raises(ValueError, match="block range"):
        deliver_blocks(channel, auditor, CHANNEL, 3, 1)
