"""docker-compose.fabric.yml is a valid Compose file describing the consortium.

Validated with the ``docker-compose`` binary (Debian package ``docker-compose``),
which checks a file without a Docker engine. Missing binary: skipped, or failed
when ``CI`` is set.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from network.consortium import load_consortium

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.fabric.yml"


def compose(*args: str) -> str:
    binary = shutil.which("docker-compose")
    if binary is None:
        message = ("docker-compose is not installed "
                   "(apt-get update && apt-get install -y docker-compose)")
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    env = {k: v for k, v in os.environ.items() if k != "CHAINCODE_ID"}
    done = subprocess.run([binary, "-f", str(COMPOSE), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_compose_file_is_valid() -> None:
    assert compose("config", "-q") == ""


def test_compose_describes_the_consortium() -> None:
    consortium = load_consortium()
    peers = {f"peer0.{o.name.lower()}.cityunion.example": o.msp_id
             for o in consortium.organisations}
    orderers = {f"orderer{i}.{consortium.center.name.lower()}orderer.cityunion.example"
                for i in range(3)}
    cas = {f"ca.{o.name.lower()}.cityunion.example" for o in consortium.organisations}
    services = set(compose("config", "--services").split())
    assert services == {*peers, *orderers, *cas, "cityunion-chaincode"}

    config = compose("config")
    assert config.count("image: hyperledger/fabric-peer:2.5.9") == len(peers)
    assert config.count("image: hyperledger/fabric-orderer:2.5.9") == 3
    assert config.count("image: hyperledger/fabric-ca:1.5.15") == len(cas)
    assert config.count("ORDERER_GENERAL_LOCALMSPID: CenterOrdererMSP") == 3
    for msp in peers.values():
        assert f"CORE_PEER_LOCALMSPID: {msp}" in config
    for setting in ("CORE_VM_ENDPOINT: ''", "CORE_PEER_GATEWAY_ENABLED: 'true'",
                    "path: /opt/hyperledger/ccaas_builder"):
        found = len(re.findall(re.escape(setting).replace("'", "['\"]"), config))
        assert found == len(peers), setting
    assert "dockerfile: chaincode/Dockerfile" in config
