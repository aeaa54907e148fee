"""The configuration files of a native network, generated from the consortium.

- ``crypto-config.yaml`` for cryptogen: one CA per organisation, node identities
  (peers, and the center's Raft orderers) with 127.0.0.1/localhost in their SANs;
- ``configtx.yaml`` for configtxgen: the channel with the center's Raft orderers,
  every organisation with its anchor peer, capabilities V2_0 / V2_5;
- ``core.yaml`` / ``orderer.yaml``: Fabric's sample files with our overrides (the
  per-node settings are environment variables, see ``network/launcher.py``).

The batch settings were measured with ``python -m bench.ledger --ledgers fabric``
(full consortium on 2 shared cores, fresh network per setting, 3 runs each). The
network saturates at 100-150 committed tx/s, CPU-bound, so blocks of commands
(~6 kB a transaction) are cut by BatchTimeout, never by MaxMessageCount or
PreferredMaxBytes: 12-20 transactions a block at 100 ms even at 400 in flight.
A 250 ms timeout doubled the block size but did not lower the CPU spent per
committed transaction (13.2-13.8 ms against 13.0-14.1 ms at 200 in flight, all
processes) nor raise throughput, while a lone command's commit went from ~130 ms
to ~290 ms and the p50 at 50 in flight from 0.20-0.30 s to 0.31-0.39 s; 500 ms
was no better. So BatchTimeout stays 100 ms. A 10,000-record card batch is one
~6.9 MB transaction (its records travel as arguments, in the event stored and in
the chaincode event): above PreferredMaxBytes, it is cut into a block of its own
at once, and ABSOLUTE_MAX_BYTES leaves room for it.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import yaml

from network.layout import SANS, Layout, org_domain

BATCH_TIMEOUT = "100ms"
MAX_MESSAGE_COUNT = 500
PREFERRED_MAX_BYTES = "4 MB"
ABSOLUTE_MAX_BYTES = "32 MB"  # a 10,000-record card batch is ~6.9 MB


def endorsement_policy(layout: Layout) -> str:
    """MAJORITY of the member cities' peers (the center endorses nothing alone)."""
    cities = layout.members.cities
    principals = ",".join(f"'{c.msp_id}.peer'" for c in cities)
    return f"OutOf({len(cities) // 2 + 1},{principals})"


def crypto_config(layout: Layout) -> dict[str, Any]:
    orgs = [{"Name": org.name, "Domain": org_domain(org), "EnableNodeOUs": True,
             "Specs": [{"Hostname": "peer0", "SANS": list(SANS)}],
             "Users": {"Count": 0}} for org in layout.members.organisations]
    orderers = {"Name": layout.orderer_org.name,
                "Domain": org_domain(layout.orderer_org), "EnableNodeOUs": True,
                "Specs": [{"Hostname": o.name, "SANS": list(SANS)}
                          for o in layout.orderer_nodes()]}
    return {"OrdererOrgs": [orderers], "PeerOrgs": orgs}


def _sig(rule: str) -> dict[str, str]:
    return {"Type": "Signature", "Rule": rule}


def _meta(rule: str) -> dict[str, str]:
    return {"Type": "ImplicitMeta", "Rule": rule}


def configtx(layout: Layout) -> dict[str, Any]:
    orderers = layout.orderer_nodes()
    om = layout.orderer_org.msp_id
    orderer_org = {
        "Name": om, "ID": om, "MSPDir": str(layout.org_msp(layout.orderer_org)),
        "Policies": {"Readers": _sig(f"OR('{om}.member')"),
                     # only orderer nodes sign blocks (BlockValidation)
                     "Writers": _sig(f"OR('{om}.orderer')"),
                     "Admins": _sig(f"OR('{om}.admin')")},
        "OrdererEndpoints": [o.address for o in orderers]}
    organisations = []
    for org in layout.members.organisations:
        m = org.msp_id
        entry: dict[str, Any] = {
            "Name": m, "ID": m, "MSPDir": str(layout.org_msp(org)),
            "Policies": {
                "Readers": _sig(f"OR('{m}.admin','{m}.peer','{m}.client')"),
                "Writers": _sig(f"OR('{m}.admin','{m}.client')"),
                "Admins": _sig(f"OR('{m}.admin')"),
                "Endorsement": _sig(f"OR('{m}.peer')"),
            },
            "AnchorPeers": [{"Host": "127.0.0.1", "Port": layout.peer_of(org).port}],
        }
        organisations.append(entry)
    standard = {"Readers": _meta("ANY Readers"), "Writers": _meta("ANY Writers"),
                "Admins": _meta("MAJORITY Admins")}
    consenters = [{
        "Host": "127.0.0.1", "Port": o.port,
        "ClientTLSCert": str(layout.node_dir(o) / "tls" / "server.crt"),
        "ServerTLSCert": str(layout.node_dir(o) / "tls" / "server.crt"),
    } for o in orderers]
    profile = {
        "Policies": standard,
        "Capabilities": {"V2_0": True},
        "Orderer": {
            "OrdererType": "etcdraft",
            "Addresses": [o.address for o in orderers],
            "BatchTimeout": BATCH_TIMEOUT,
            "BatchSize": {"MaxMessageCount": MAX_MESSAGE_COUNT,
                          "AbsoluteMaxBytes": ABSOLUTE_MAX_BYTES,
                          "PreferredMaxBytes": PREFERRED_MAX_BYTES},
            "EtcdRaft": {"Consenters": consenters,
                         "Options": {"TickInterval": "250ms", "ElectionTick": 10,
                                     "HeartbeatTick": 1, "MaxInflightBlocks": 5,
                                     "SnapshotIntervalSize": "16 MB"}},
            "Organizations": [orderer_org],
            "Policies": {**standard,
                         "BlockValidation": _meta("ANY Writers")},
            "Capabilities": {"V2_0": True},
        },
        "Application": {
            "Organizations": organisations,
            "Policies": {**standard,
                         "LifecycleEndorsement": _meta("MAJORITY Endorsement"),
                         "Endorsement": _meta("MAJORITY Endorsement")},
            "Capabilities": {"V2_5": True},
        },
    }
    return {"Organizations": [orderer_org, *organisations],
            "Profiles": {"CityUnion": profile}}


def _set(tree: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    for name in parents:
        tree = tree.setdefault(name, {})
    tree[last] = value


def core_yaml(layout: Layout, sample: Path) -> dict[str, Any]:
    """Fabric's sample core.yaml, with the external builder and no Docker."""
    core: dict[str, Any] = yaml.safe_load(sample.read_text())
    overrides = {
        "vm.endpoint": "",
        "chaincode.externalBuilders": [{"name": "cityunion-ccaas",
                                        "path": str(layout.config / "builder")}],
        "chaincode.executetimeout": "60s",
        "peer.gateway.enabled": True,
        "peer.gateway.endorsementTimeout": "30s",
        "peer.limits.concurrency.gatewayService": 2500,
        "peer.keepalive.minInterval": "30s",
        "ledger.history.enableHistoryDatabase": True,
        "metrics.provider": "prometheus",
        "peer.deliveryclient.blockGossipEnabled": False,
        "peer.gossip.useLeaderElection": False,
        "peer.gossip.orgLeader": True,
        # One host, a handful of peers: membership and state info in about a
        # second rather than the WAN-minded defaults of 4-5 s.
        "peer.gossip.aliveTimeInterval": "1s",
        "peer.gossip.aliveExpirationTimeout": "5s",
        "peer.gossip.reconnectInterval": "5s",
        "peer.gossip.publishStateInfoInterval": "1s",
        "peer.gossip.requestStateInfoInterval": "1s",
        "peer.gossip.pullInterval": "1s",
    }
    for key, value in overrides.items():
        _set(core, key, value)
    return core


def orderer_yaml(sample: Path) -> dict[str, Any]:
    orderer: dict[str, Any] = yaml.safe_load(sample.read_text())
    for key, value in {"General.BootstrapMethod": "none",
                       "ChannelParticipation.Enabled": True,
                       "Metrics.Provider": "prometheus"}.items():
        _set(orderer, key, value)
    return orderer


BUILDER = {
    # The external builder's contract (Fabric docs, "External Builders and
    # Launchers"): detect accepts ccaas packages, build keeps connection.json,
    # release hands it to the peer, which then dials the chaincode service.
    "detect": ('#!/bin/sh\n# detect SOURCE METADATA: accept {"type":"ccaas"}\n'
               'grep -q \'"type" *: *"ccaas"\' "$2/metadata.json"\n'),
    "build": ('#!/bin/sh\n# build SOURCE METADATA OUTPUT\nset -e\n'
              'if [ -f "$1/connection.json" ]; then src="$1"; else\n'
              '  src=$(mktemp -d); tar -xzf "$1/code.tar.gz" -C "$src"; fi\n'
              'cp "$src/connection.json" "$3/connection.json"\n'),
    "release": ('#!/bin/sh\n# release BUILD_OUTPUT RELEASE\nset -e\n'
                'mkdir -p "$2/chaincode/server"\n'
                'cp "$1/connection.json" "$2/chaincode/server/connection.json"\n'),
}


def write(layout: Layout, sample_dir: Path) -> None:
    """Write every generated file into ``layout.config``."""
    cfg = layout.config
    cfg.mkdir(parents=True, exist_ok=True)
    dump = {"crypto-config.yaml": crypto_config(layout),
            "configtx.yaml": configtx(layout),
            "core.yaml": core_yaml(layout, sample_dir / "core.yaml"),
            "orderer.yaml": orderer_yaml(sample_dir / "orderer.yaml")}
    for name, tree in dump.items():
        (cfg / name).write_text(yaml.safe_dump(tree, sort_keys=False))
    builder = cfg / "builder" / "bin"
    builder.mkdir(parents=True, exist_ok=True)
    for name, text in BUILDER.items():
        (builder / name).write_text(text)
        (builder / name).chmod(0o755)
    msp = sample_dir / "msp"  # the CLI wants an msp dir beside core.yaml
    if msp.exists() and not (cfg / "msp").exists():
        shutil.copytree(msp, cfg / "msp")
