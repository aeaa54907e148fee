"""Where everything of one native Fabric network lives, and which ports it uses.

A network directory holds the crypto material (``crypto/``, cryptogen's layout),
one Fabric CA home per organisation (``ca/<org>``), the generated configuration
(``config/``), each node's ledger (``nodes/<node>``), one log per process
(``logs/<node>.log``), the client wallet (``wallet/<org>/<user>``) and two JSON
files: ``network.json`` (what clients need: endpoints, TLS roots, wallet) and
``state.json`` (what the launcher started: pids, package id).

Ports are ``base + offset``, so that two networks (a developer's and the tests')
can run side by side with different bases.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from network.consortium import Consortium, Organisation, load_consortium

DOMAIN = "cityunion.example"
DEFAULT_BASE_PORT = 7000
SANS = ("127.0.0.1", "localhost")


@dataclass(frozen=True)
class Node:
    """One process of the network: an orderer, a peer, a CA or the chaincode."""

    name: str  # e.g. orderer0, peer0.kunshan, ca.kunshan, chaincode
    kind: str  # orderer | peer | ca | chaincode
    org: Organisation
    port: int  # the main listen port
    admin_port: int = 0  # orderer: channel participation API
    ops_port: int = 0  # operations (/healthz, metrics)
    cc_port: int = 0  # peer: chaincode listen port

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


def org_domain(org: Organisation) -> str:
    return f"{org.name.lower()}.{DOMAIN}"


@dataclass(frozen=True)
class Layout:
    """Paths and nodes of the network in ``root`` with ports from ``base_port``."""

    root: Path
    base_port: int = DEFAULT_BASE_PORT
    orderers: int = 3
    consortium: Consortium | None = None

    @property
    def members(self) -> Consortium:
        return self.consortium or load_consortium()

    @property
    def orderer_org(self) -> Organisation:
        """The center's ordering service: an organisation of its own, so that
        only its orderers (NodeOU orderer) can sign blocks."""
        c = self.members.center
        return Organisation(f"{c.name}Orderer", f"{c.name}OrdererMSP")

    # ------------------------------------------------------------ paths
    @property
    def crypto(self) -> Path:
        return self.root / "crypto" / "peerOrganizations"

    def org_dir(self, org: Organisation) -> Path:
        if org == self.orderer_org:
            return self.root / "crypto" / "ordererOrganizations" / org_domain(org)
        return self.crypto / org_domain(org)

    def org_msp(self, org: Organisation) -> Path:
        return self.org_dir(org) / "msp"

    def tls_root(self, org: Organisation) -> Path:
        return self.org_dir(org) / "tlsca" / f"tlsca.{org_domain(org)}-cert.pem"

    def node_dir(self, node: Node) -> Path:
        """cryptogen's directory of a peer or orderer (its msp/ and tls/)."""
        kind = "orderers" if node.kind == "orderer" else "peers"
        return self.org_dir(node.org) / kind / f"{node.name.split('.')[0]}." \
            f"{org_domain(node.org)}"

    def admin_dir(self, org: Organisation) -> Path:
        return self.org_dir(org) / "users" / f"Admin@{org_domain(org)}"

    @property
    def config(self) -> Path:
        return self.root / "config"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def wallet(self) -> Path:
        return self.root / "wallet"

    def data(self, node: Node) -> Path:
        return self.root / "nodes" / node.name

    @property
    def genesis_block(self) -> Path:
        return self.config / f"{self.members.channel}.block"

    @property
    def network_file(self) -> Path:
        return self.root / "network.json"

    @property
    def state_file(self) -> Path:
        return self.root / "state.json"

    # ------------------------------------------------------------ nodes
    def orderer_nodes(self) -> list[Node]:
        c = self.orderer_org
        return [Node(f"orderer{i}", "orderer", c, self.base_port + 10 * i,
                     admin_port=self.base_port + 10 * i + 1,
                     ops_port=self.base_port + 10 * i + 2)
                for i in range(self.orderers)]

    def peer_nodes(self) -> list[Node]:
        base = self.base_port + 100
        return [Node(f"peer0.{org.name.lower()}", "peer", org, base + 10 * i,
                     cc_port=base + 1 + 10 * i, ops_port=base + 2 + 10 * i)
                for i, org in enumerate(self.members.organisations)]

    def ca_nodes(self) -> list[Node]:
        return [Node(f"ca.{org.name.lower()}", "ca", org, self.base_port + 200 + 10 * i,
                     ops_port=self.base_port + 201 + 10 * i)
                for i, org in enumerate(self.members.organisations)]

    def chaincode_node(self) -> Node:
        return Node("chaincode", "chaincode", self.members.center,
                    self.base_port + 300)

    def ca_of(self, org: Organisation) -> Node:
        return next(c for c in self.ca_nodes() if c.org == org)

    def peer_of(self, org: Organisation) -> Node:
        return next(p for p in self.peer_nodes() if p.org == org)

    def nodes(self) -> list[Node]:
        return [*self.ca_nodes(), *self.orderer_nodes(), *self.peer_nodes(),
                self.chaincode_node()]

    def node(self, name: str) -> Node:
        found = next((n for n in self.nodes() if n.name == name), None)
        if found is None:
            names = ", ".join(n.name for n in self.nodes())
            raise ValueError(f"no node {name!r} in this network (nodes: {names})")
        return found
