"""A native Fabric 2.5 network of the consortium on 127.0.0.1, no Docker.

``Network(dir).up()`` brings up, idempotently: node identities from cryptogen, a
Fabric CA per organisation enrolling the users with their role attributes, the
center's Raft orderers joined to channel ``cityunion`` through the channel
participation API, one peer per organisation joined to it, and the contract
deployed as a chaincode service (our external builder; endorsement by a majority
of the member cities) with ``python -m chaincode.server`` running. A step whose
result is already there is skipped, and processes that run are left running, so
``up`` after a crash or ``stop_node`` restarts only what is missing.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from network import binaries, ca, fabric_config, processes
from network.consortium import Organisation
from network.layout import DEFAULT_BASE_PORT, Layout, Node
from network.processes import NetworkError

CHAINCODE_LABEL = "cityunion_1"
Progress = Callable[[str], None]


class Network:
    """One native network in a directory (see ``network/layout.py``)."""

    def __init__(self, root: Path, base_port: int | None = None,
                 orderers: int | None = None, bin_dir: Path | None = None) -> None:
        root = root.resolve()
        saved = processes.read_state(root / "state.json")
        self.layout = Layout(root, base_port or saved.get("base_port",
                                                          DEFAULT_BASE_PORT),
                             orderers or saved.get("orderers", 3))
        if saved and (saved.get("base_port"), saved.get("orderers")) != (
                self.layout.base_port, self.layout.orderers):
            raise NetworkError(
                f"{root} holds a network with base port {saved.get('base_port')} "
                f"and {saved.get('orderers')} orderers; `network down --purge` it "
                "first to change them")
        self._bin = bin_dir
        self.say: Progress = lambda _m: None

    @property
    def bin(self) -> Path:
        if self._bin is None:
            self._bin = binaries.require()
        return self._bin

    @property
    def state_file(self) -> Path:
        return self.layout.state_file

    # ---------------------------------------------------------------- helpers
    def _run(self, what: str, command: list[str], env: dict[str, str] | None = None,
             ok: tuple[str, ...] = (), timeout: float = 120) -> str:
        """Run a Fabric CLI; an error whose text contains one of ``ok`` is fine."""
        proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                              env={"PATH": "/usr/bin:/bin", "HOME": str(Path.home()),
                                   **(env or {})})
        if proc.returncode != 0:
            text = proc.stderr + proc.stdout
            if any(o in text for o in ok):
                return text
            raise NetworkError(f"{what} failed:\n{text.strip()[-1500:]}")
        return proc.stdout + proc.stderr

    def _admin_env(self, org: Organisation) -> dict[str, str]:
        """The peer CLI as the organisation's admin, talking to its own peer."""
        peer = self.layout.peer_of(org)
        return {"FABRIC_CFG_PATH": str(self.layout.config),
                "CORE_PEER_LOCALMSPID": org.msp_id,
                "CORE_PEER_MSPCONFIGPATH": str(self.layout.admin_dir(org) / "msp"),
                "CORE_PEER_ADDRESS": peer.address,
                "CORE_PEER_TLS_ENABLED": "true",
                "CORE_PEER_TLS_ROOTCERT_FILE": str(self.layout.tls_root(org)),
                "FABRIC_LOGGING_SPEC": "WARNING"}

    def _orderer_flags(self) -> list[str]:
        live = [o for o in self.layout.orderer_nodes()
                if processes.running(self.state_file, o.name)]
        target = (live or self.layout.orderer_nodes())[0]
        return ["-o", target.address, "--tls", "--cafile",
                str(self.layout.tls_root(self.layout.orderer_org))]

    def _start(self, node: Node, command: list[str], env: dict[str, str],
               ready_port: int) -> None:
        log = self.layout.logs / f"{node.name}.log"
        if processes.running(self.state_file, node.name) is None:
            ports = [p for p in (node.port, node.admin_port, node.ops_port,
                                 node.cc_port) if p]
            deadline = time.monotonic() + 5  # a process just stopped may still
            while (busy := [p for p in ports if processes.port_in_use(p)]) and (
                    time.monotonic() < deadline):  # be closing its sockets
                time.sleep(0.05)
            if busy:
                raise NetworkError(
                    f"cannot start {node.name}: port(s) {busy} on 127.0.0.1 are in use"
                    " by another program (choose another --base-port)")
            processes.start(self.state_file, node.name, command, env, log)
        processes.wait_port(self.state_file, node.name, ready_port, log)

    # --------------------------------------------------------------- the steps
    def up(self, progress: Progress | None = None) -> dict[str, Any]:
        """Bring the network up (idempotent); returns the client view
        (``network.json``)."""
        self.say = progress or self.say
        self.layout.root.mkdir(parents=True, exist_ok=True)
        with self._exclusive():
            return self._up()

    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[None]:
        """One launcher at a time per network directory (a second waits)."""
        with open(self.layout.root / "launcher.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def _up(self) -> dict[str, Any]:
        started = time.monotonic()
        lay = self.layout
        processes.update_state(self.state_file, base_port=lay.base_port,
                               orderers=lay.orderers)
        self._generate()
        self._start_cas()
        enrolled = ca.enrol_users(lay, self.bin)
        self.say(f"users enrolled: {', '.join(enrolled) or 'all were present'}")
        self._start_orderers()
        self._start_peers()
        self._deploy_chaincode()
        info = self._write_network_file()
        self._wait_until_endorsing()
        self.say(f"network ready in {time.monotonic() - started:.1f} s")
        return info

    def _generate(self) -> None:
        lay = self.layout
        if not (lay.config / "configtx.yaml").exists():
            fabric_config.write(lay, binaries.config_dir(self.bin.parent))
        if not lay.crypto.exists():
            self.say("generating node identities (cryptogen)")
            self._run("cryptogen", [str(self.bin / "cryptogen"), "generate",
                                    f"--config={lay.config / 'crypto-config.yaml'}",
                                    f"--output={lay.root / 'crypto'}"])
        if not lay.genesis_block.exists():
            self.say(f"creating the genesis block of channel {lay.members.channel}")
            self._run("configtxgen", [
                str(self.bin / "configtxgen"), "-profile", "CityUnion",
                "-outputBlock", str(lay.genesis_block), "-channelID",
                lay.members.channel, "-configPath", str(lay.config)])

    def _start_cas(self) -> None:
        for node in self.layout.ca_nodes():
            home = self.layout.root / "ca" / node.org.name
            home.mkdir(parents=True, exist_ok=True)
            if processes.running(self.state_file, node.name) is None:
                processes.start(self.state_file, node.name,
                                ca.server_command(self.layout, node, self.bin), {},
                                self.layout.logs / f"{node.name}.log", cwd=home)
        for node in self.layout.ca_nodes():
            processes.wait_port(self.state_file, node.name, node.port,
                                self.layout.logs / f"{node.name}.log")
        self.say("CAs up: " + ", ".join(f"{n.name} {n.address}"
                                        for n in self.layout.ca_nodes()))

    def orderer_env(self, node: Node) -> dict[str, str]:
        tls = self.layout.node_dir(node) / "tls"
        data = self.layout.data(node)
        ca_file = str(self.layout.tls_root(node.org))
        return {
            "FABRIC_CFG_PATH": str(self.layout.config),
            "FABRIC_LOGGING_SPEC": "INFO",
            "ORDERER_GENERAL_LISTENADDRESS": "127.0.0.1",
            "ORDERER_GENERAL_LISTENPORT": str(node.port),
            "ORDERER_GENERAL_LOCALMSPID": node.org.msp_id,
            "ORDERER_GENERAL_LOCALMSPDIR": str(self.layout.node_dir(node) / "msp"),
            "ORDERER_GENERAL_BOOTSTRAPMETHOD": "none",
            "ORDERER_GENERAL_TLS_ENABLED": "true",
            "ORDERER_GENERAL_TLS_PRIVATEKEY": str(tls / "server.key"),
            "ORDERER_GENERAL_TLS_CERTIFICATE": str(tls / "server.crt"),
            "ORDERER_GENERAL_TLS_ROOTCAS": f"[{tls / 'ca.crt'}]",
            "ORDERER_GENERAL_CLUSTER_CLIENTCERTIFICATE": str(tls / "server.crt"),
            "ORDERER_GENERAL_CLUSTER_CLIENTPRIVATEKEY": str(tls / "server.key"),
            "ORDERER_GENERAL_CLUSTER_ROOTCAS": f"[{tls / 'ca.crt'}]",
            "ORDERER_CHANNELPARTICIPATION_ENABLED": "true",
            "ORDERER_FILELEDGER_LOCATION": str(data / "ledger"),
            "ORDERER_CONSENSUS_WALDIR": str(data / "etcdraft" / "wal"),
            "ORDERER_CONSENSUS_SNAPDIR": str(data / "etcdraft" / "snapshot"),
            "ORDERER_ADMIN_LISTENADDRESS": f"127.0.0.1:{node.admin_port}",
            "ORDERER_ADMIN_TLS_ENABLED": "true",
            "ORDERER_ADMIN_TLS_CERTIFICATE": str(tls / "server.crt"),
            "ORDERER_ADMIN_TLS_PRIVATEKEY": str(tls / "server.key"),
            "ORDERER_ADMIN_TLS_ROOTCAS": f"[{ca_file}]",
            "ORDERER_ADMIN_TLS_CLIENTAUTHREQUIRED": "true",
            "ORDERER_ADMIN_TLS_CLIENTROOTCAS": f"[{ca_file}]",
            "ORDERER_OPERATIONS_LISTENADDRESS": f"127.0.0.1:{node.ops_port}",
        }

    def start_orderer(self, node: Node) -> None:
        self._start(node, [str(self.bin / "orderer")], self.orderer_env(node),
                    node.port)

    def _start_orderers(self) -> None:
        nodes = self.layout.orderer_nodes()
        for node in nodes:
            self.start_orderer(node)
        orderer_org = self.layout.orderer_org
        admin_tls = self.layout.admin_dir(orderer_org) / "tls"
        for node in nodes:
            self._run(f"osnadmin channel join at {node.name}", [
                str(self.bin / "osnadmin"), "channel", "join",
                "--channelID", self.layout.members.channel,
                "--config-block", str(self.layout.genesis_block),
                "-o", f"127.0.0.1:{node.admin_port}",
                "--ca-file", str(self.layout.tls_root(orderer_org)),
                "--client-cert", str(admin_tls / "client.crt"),
                "--client-key", str(admin_tls / "client.key")],
                ok=("channel already exists",))
        self.say("orderers up (Raft): " + ", ".join(f"{n.name} {n.address}"
                                                    for n in nodes))

    def peer_env(self, node: Node) -> dict[str, str]:
        tls = self.layout.node_dir(node) / "tls"
        data = self.layout.data(node)
        return {
            "FABRIC_CFG_PATH": str(self.layout.config),
            "FABRIC_LOGGING_SPEC": "INFO",
            "CORE_PEER_ID": node.name,
            "CORE_PEER_ADDRESS": node.address,
            "CORE_PEER_LISTENADDRESS": node.address,
            "CORE_PEER_CHAINCODEADDRESS": f"127.0.0.1:{node.cc_port}",
            "CORE_PEER_CHAINCODELISTENADDRESS": f"127.0.0.1:{node.cc_port}",
            "CORE_PEER_GOSSIP_BOOTSTRAP": node.address,
            "CORE_PEER_GOSSIP_EXTERNALENDPOINT": node.address,
            "CORE_PEER_LOCALMSPID": node.org.msp_id,
            "CORE_PEER_MSPCONFIGPATH": str(self.layout.node_dir(node) / "msp"),
            "CORE_PEER_FILESYSTEMPATH": str(data),
            "CORE_LEDGER_SNAPSHOTS_ROOTDIR": str(data / "snapshots"),
            "CORE_PEER_TLS_ENABLED": "true",
            "CORE_PEER_TLS_CERT_FILE": str(tls / "server.crt"),
            "CORE_PEER_TLS_KEY_FILE": str(tls / "server.key"),
            "CORE_PEER_TLS_ROOTCERT_FILE": str(tls / "ca.crt"),
            "CORE_PEER_GATEWAY_ENABLED": "true",
            "CORE_OPERATIONS_LISTENADDRESS": f"127.0.0.1:{node.ops_port}",
        }

    def start_peer(self, node: Node) -> None:
        self._start(node, [str(self.bin / "peer"), "node", "start"],
                    self.peer_env(node), node.port)

    def _start_peers(self) -> None:
        nodes = self.layout.peer_nodes()
        for node in nodes:
            self.start_peer(node)

        def join(node: Node) -> None:
            chains = self.layout.data(node) / "ledgersData" / "chains" / "chains"
            if (chains / self.layout.members.channel).exists():
                return
            self._run(f"peer channel join at {node.name}",
                      [str(self.bin / "peer"), "channel", "join", "-b",
                       str(self.layout.genesis_block)], self._admin_env(node.org),
                      ok=("already exists",))

        with ThreadPoolExecutor(len(nodes)) as pool:
            list(pool.map(join, nodes))
        self.say("peers up and joined: " + ", ".join(f"{n.name} {n.address}"
                                                     for n in nodes))

    # -------------------------------------------------------------- chaincode
    def _package(self) -> tuple[Path, str]:
        """The ccaas package (deterministic bytes) and its package id."""
        cc = self.layout.chaincode_node()
        connection = json.dumps({"address": cc.address, "dial_timeout": "10s",
                                 "tls_required": False}).encode()
        code = _targz({"connection.json": connection})
        metadata = json.dumps({"type": "ccaas", "label": CHAINCODE_LABEL}).encode()
        package = _targz({"metadata.json": metadata, "code.tar.gz": code})
        path = self.layout.config / f"{CHAINCODE_LABEL}.tar.gz"
        path.write_bytes(package)
        return path, f"{CHAINCODE_LABEL}:{hashlib.sha256(package).hexdigest()}"

    def chaincode_command(self, package_id: str) -> list[str]:
        return [sys.executable, "-m", "chaincode.server", "--address",
                self.layout.chaincode_node().address, "--id", package_id]

    def start_chaincode(self) -> None:
        state = processes.read_state(self.state_file)
        node = self.layout.chaincode_node()
        repo = Path(__file__).resolve().parent.parent
        self._start(node, self.chaincode_command(state["package_id"]),
                    {"PYTHONPATH": str(repo), "CHAINCODE_LOG_LEVEL": "WARNING"},
                    node.port)

    def _deploy_chaincode(self) -> None:
        lay = self.layout
        cons = lay.members
        package, package_id = self._package()
        processes.update_state(self.state_file, package_id=package_id)
        self.start_chaincode()
        center_env = self._admin_env(cons.center)
        committed = self._run("querycommitted", [
            str(self.bin / "peer"), "lifecycle", "chaincode", "querycommitted",
            "-C", cons.channel, "-n", cons.chaincode], center_env,
            ok=(f"namespace {cons.chaincode} is not defined",))
        if "Sequence: 1" in committed:
            self.say(f"chaincode {package_id} already committed")
            return
        policy = fabric_config.endorsement_policy(lay)

        def install_and_approve(org: Organisation) -> None:
            env = self._admin_env(org)
            self._run(f"install at {org.name}", [
                str(self.bin / "peer"), "lifecycle", "chaincode", "install",
                str(package)], env, ok=("chaincode already successfully installed",))
            self._run(f"approve for {org.name}", [
                str(self.bin / "peer"), "lifecycle", "chaincode", "approveformyorg",
                "-C", cons.channel, "-n", cons.chaincode, "--version", "1",
                "--sequence", "1", "--package-id", package_id,
                "--signature-policy", policy, *self._orderer_flags()], env,
                ok=("attempted to redefine uncommitted sequence (1) for namespace "
                    f"{cons.chaincode} with unchanged content",))

        self.say(f"installing and approving {package_id} (policy {policy})")
        with ThreadPoolExecutor(len(cons.organisations)) as pool:
            list(pool.map(install_and_approve, cons.organisations))
        peers: list[str] = []
        for org in cons.organisations:
            peers += ["--peerAddresses", lay.peer_of(org).address,
                      "--tlsRootCertFiles", str(lay.tls_root(org))]
        self._run("commit the chaincode definition", [
            str(self.bin / "peer"), "lifecycle", "chaincode", "commit",
            "-C", cons.channel, "-n", cons.chaincode, "--version", "1",
            "--sequence", "1", "--signature-policy", policy,
            *self._orderer_flags(), *peers], center_env)
        self.say(f"chaincode {cons.chaincode} committed on {cons.channel}")

    def _wait_until_endorsing(self, orgs: list[Organisation] | None = None,
                              timeout: float = 60.0) -> None:
        """Wait until the Gateway of each of ``orgs`` (default: all) knows every
        member city's peer for the chaincode (gossip spreads membership a few
        seconds after a start): through each Gateway, a read-only proposal is
        endorsed, never submitted, by every majority of cities in turn."""
        import itertools

        import grpc
        from fabric_protos.gateway import gateway_pb2, gateway_pb2_grpc

        from ledger.fabric.gateway import FabricNetwork, build_proposal, chaincode_args

        network = FabricNetwork.load(self.layout.root)
        cities = [c.msp_id for c in self.layout.members.cities]
        majorities = list(itertools.combinations(cities, len(cities) // 2 + 1))
        deadline = time.monotonic() + timeout
        try:
            for org in orgs or self.layout.members.organisations:
                identity = network.identity(org.name, "admin")
                stub = gateway_pb2_grpc.GatewayStub(network.connect(org.name))
                for endorsers in majorities:
                    while True:
                        tx_id, signed = build_proposal(
                            identity, network.channel, network.chaincode,
                            chaincode_args("KeyHistory", {"key": "probe"}))
                        try:
                            stub.Endorse(gateway_pb2.EndorseRequest(
                                transaction_id=tx_id, channel_id=network.channel,
                                proposed_transaction=signed,
                                endorsing_organizations=endorsers), timeout=10)
                            break
                        except grpc.RpcError as e:
                            if time.monotonic() > deadline:
                                raise NetworkError(
                                    f"{org.name}'s Gateway cannot reach "
                                    f"{' + '.join(endorsers)} after {timeout:.0f} s:"
                                    f" {e.details()}") from None
                            time.sleep(0.2)
        finally:
            network.close()
        self.say("every Gateway endorses with every majority of member cities")

    # ------------------------------------------------------------- the views
    def client_view(self) -> dict[str, Any]:
        """What clients need: channel, peer and orderer endpoints, the wallet."""
        lay = self.layout
        return {
            "channel": lay.members.channel, "chaincode": lay.members.chaincode,
            "peers": {p.org.name: {"msp_id": p.org.msp_id, "address": p.address,
                                   "tls_root": str(lay.tls_root(p.org)),
                                   "host": f"peer0.{lay.org_dir(p.org).name}",
                                   "operations": f"127.0.0.1:{p.ops_port}"}
                      for p in lay.peer_nodes()},
            "orderers": [{"name": o.name, "address": o.address,
                          "admin": f"127.0.0.1:{o.admin_port}",
                          "tls_root": str(lay.tls_root(o.org))}
                         for o in lay.orderer_nodes()],
            "cas": {c.org.name: f"http://{c.address}" for c in lay.ca_nodes()},
            "chaincode_address": lay.chaincode_node().address,
            "package_id": processes.read_state(self.state_file).get("package_id"),
            "endorsement_policy": fabric_config.endorsement_policy(lay),
            "wallet": str(lay.wallet),
            "logs": str(lay.logs),
        }

    def _write_network_file(self) -> dict[str, Any]:
        info = self.client_view()
        self.layout.network_file.write_text(json.dumps(info, indent=2))
        return info

    def ports(self) -> list[int]:
        """Every port the network's processes listen on."""
        return [p for n in self.layout.nodes()
                for p in (n.port, n.admin_port, n.ops_port, n.cc_port) if p]

    def status(self) -> list[dict[str, Any]]:
        """Every node: running or not, pid, address, log."""
        out = []
        for node in self.layout.nodes():
            pid = processes.running(self.state_file, node.name)
            out.append({"node": node.name, "kind": node.kind, "org": node.org.name,
                        "address": node.address, "running": pid is not None,
                        "pid": pid, "log": str(self.layout.logs /
                                               f"{node.name}.log")})
        return out

    def stop_node(self, name: str, kill: bool = False) -> bool:
        """Stop one node by name (fault tests, maintenance)."""
        self.layout.node(name)
        return processes.stop(self.state_file, name, kill=kill)

    def start_node(self, name: str) -> None:
        """Start one stopped node again (its data is kept); a peer is back when
        its Gateway can endorse again."""
        node = self.layout.node(name)
        {"orderer": self.start_orderer, "peer": self.start_peer,
         "chaincode": lambda _n: self.start_chaincode(),
         "ca": lambda _n: self._start_cas()}[node.kind](node)
        if node.kind == "peer":
            self._wait_until_endorsing([node.org])

    def down(self, purge: bool = False) -> list[str]:
        """Stop every process the launcher started (by pid); ``purge`` also
        deletes the network directory."""
        if not self.layout.root.exists():
            return []
        with self._exclusive():
            return self._down(purge)

    def _down(self, purge: bool) -> list[str]:
        order = [self.layout.chaincode_node(), *self.layout.peer_nodes(),
                 *self.layout.orderer_nodes(), *self.layout.ca_nodes()]
        with ThreadPoolExecutor(4) as pool:
            results = list(pool.map(lambda n: (n.name, processes.stop(
                self.state_file, n.name)), order))
        stopped = [name for name, was in results if was]
        if purge:
            import shutil

            shutil.rmtree(self.layout.root, ignore_errors=True)
        return stopped


def _targz(files: dict[str, bytes]) -> bytes:
    """A gzipped tar of ``files`` with fixed metadata: same input, same bytes."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))
    import gzip

    return gzip.compress(raw.getvalue(), mtime=0)
