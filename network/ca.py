"""User identities through each organisation's Fabric CA, as production issues them.

Every organisation's ``fabric-ca-server`` signs with the organisation's CA key (the
one its MSP trusts), so a certificate it enrols is a member of that MSP. Users are
registered with their ``cityunion.role`` / ``cityunion.department`` attributes
(``:ecert``, so the attributes are in the enrolment certificate, where the chaincode
reads them) and enrolled into the wallet: ``wallet/<org>/<user>/{cert.pem,key.pem,
identity.json}``.
"""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from chaincode.identity import Role
from network.consortium import Organisation
from network.layout import Layout, Node
from network.processes import NetworkError


@dataclass(frozen=True)
class User:
    name: str
    role: Role
    department: str | None = None

    @property
    def attrs(self) -> str:
        attrs = [f"cityunion.role={self.role.value}:ecert"]
        if self.department:
            attrs.append(f"cityunion.department={self.department}:ecert")
        return ",".join(attrs)


CENTER_USERS = (User("admin", Role.CENTER_ADMIN), User("auditor", Role.AUDITOR))
CITY_USERS = (User("admin", Role.CITY_ADMIN),
              User("transport", Role.DEPARTMENT, "transport"),
              User("health", Role.DEPARTMENT, "health"),
              User("terminal", Role.TERMINAL),
              User("auditor", Role.AUDITOR))
BOOTSTRAP = ("registrar", "registrarpw")  # the CA's bootstrap admin (127.0.0.1 only)


def users_of(org: Organisation) -> tuple[User, ...]:
    return CENTER_USERS if org.is_center else CITY_USERS


def server_command(layout: Layout, ca: Node, bin_dir: Path) -> list[str]:
    """The ``fabric-ca-server start`` command line of one organisation."""
    org_ca = layout.org_dir(ca.org) / "ca"
    domain = layout.org_dir(ca.org).name
    return [str(bin_dir / "fabric-ca-server"), "start",
            "--home", str(layout.root / "ca" / ca.org.name),
            "--address", "127.0.0.1", "--port", str(ca.port),
            "--operations.listenaddress", f"127.0.0.1:{ca.ops_port}",
            "--ca.name", ca.name,
            "--ca.certfile", str(org_ca / f"ca.{domain}-cert.pem"),
            "--ca.keyfile", str(org_ca / "priv_sk"),
            "-b", ":".join(BOOTSTRAP)]


class Enroller:
    """Registers and enrols one organisation's users through its CA server."""

    def __init__(self, layout: Layout, ca: Node, bin_dir: Path) -> None:
        self.layout, self.ca, self.client = layout, ca, str(bin_dir /
                                                            "fabric-ca-client")
        self.home = layout.root / "ca" / ca.org.name / "client"
        self.secrets_file = self.home / "secrets.json"

    def _run(self, *args: str) -> str:
        proc = subprocess.run([self.client, *args, "--home", str(self.home)],
                              capture_output=True, text=True, timeout=60)
        if proc.returncode != 0:
            raise NetworkError(f"fabric-ca-client {args[0]} at {self.ca.name} failed: "
                               f"{proc.stderr.strip().splitlines()[-1:]}")
        return proc.stdout

    def _url(self, name: str, secret: str) -> str:
        return f"http://{name}:{secret}@{self.ca.address}"

    def _secrets(self) -> dict[str, str]:
        if self.secrets_file.exists():
            return dict(json.loads(self.secrets_file.read_text()))
        return {}

    def wallet_dir(self, user: User) -> Path:
        return self.layout.wallet / self.ca.org.name / user.name

    def enrol_all(self) -> list[str]:
        """Enrol every user of the organisation missing from the wallet."""
        return self.enrol(users_of(self.ca.org))

    def enrol(self, users: tuple[User, ...]) -> list[str]:
        """Register (once) and enrol each of ``users`` missing from the wallet."""
        missing = [u for u in users
                   if not (self.wallet_dir(u) / "identity.json").exists()]
        if not missing:
            return []
        self.home.mkdir(parents=True, exist_ok=True)
        if not (self.home / "msp" / "signcerts").exists():
            self._run("enroll", "-u", self._url(*BOOTSTRAP))
        known = self._secrets()
        for user in missing:
            enrollment_id = user.name  # unique within the organisation's CA
            if enrollment_id not in known:
                known[enrollment_id] = secrets.token_urlsafe(16)
                self.secrets_file.write_text(json.dumps(known))
                self._run("register", "-u", f"http://{self.ca.address}",
                          "--id.name", enrollment_id, "--id.secret",
                          known[enrollment_id], "--id.type", "client",
                          "--id.attrs", user.attrs)
            self._enrol(user, enrollment_id, known[enrollment_id])
        return [u.name for u in missing]

    def _enrol(self, user: User, enrollment_id: str, secret: str) -> None:
        msp = self.home / "enrol" / user.name
        shutil.rmtree(msp, ignore_errors=True)
        self._run("enroll", "-u", self._url(enrollment_id, secret), "--mspdir",
                  str(msp), "--csr.cn", enrollment_id)
        target = self.wallet_dir(user)
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy(msp / "signcerts" / "cert.pem", target / "cert.pem")
        key = next((msp / "keystore").glob("*_sk"))
        shutil.copy(key, target / "key.pem")
        (target / "key.pem").chmod(0o600)
        (target / "identity.json").write_text(json.dumps({
            "msp_id": self.ca.org.msp_id, "name": enrollment_id,
            "org": self.ca.org.name, "role": user.role.value,
            "department": user.department}, indent=2))


def enrol_users(layout: Layout, bin_dir: Path) -> list[str]:
    """Enrol every organisation's missing users, the CAs in parallel."""
    enrollers = [Enroller(layout, ca, bin_dir) for ca in layout.ca_nodes()]
    with ThreadPoolExecutor(len(enrollers)) as pool:
        done = list(pool.map(Enroller.enrol_all, enrollers))
    return [f"{e.ca.org.name}/{u}" for e, names in zip(enrollers, done, strict=True)
            for u in names]
