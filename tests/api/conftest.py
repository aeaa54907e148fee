"""Fixtures of the API tests: one running app (embedded ledger, SQLite read
models, live projection follower) shared by the session, and an ``api`` helper
that calls it as any identity."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from apikit import SH_ADMIN, Api
from fastapi.testclient import TestClient

from api.app import create_app
from api.settings import Settings


@pytest.fixture(scope="session", params=["embedded", pytest.param(
    "fabric", marks=pytest.mark.fabric)])
def api_settings(request: pytest.FixtureRequest,
                 tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """The API on each ledger: the embedded node (no servers), or the session's
    Fabric network with the node's tokens and read models in a data dir."""
    data_dir = tmp_path_factory.mktemp("api") / "node"
    if request.param == "embedded":
        return Settings(data_dir=data_dir)
    network = request.getfixturevalue("fabric_network")
    return Settings(data_dir=data_dir, ledger="fabric", network=network.layout.root)


@pytest.fixture(scope="session")
def client(api_settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(api_settings)) as c:
        yield c


@pytest.fixture(scope="session")
def api(client: TestClient) -> Api:
    """The helper, with the departments most tests use already registered:
    transport and health in Kunshan, transport in Shanghai and Taicang."""
    a = Api(client)
    a.department(code="transport", duties=("transport", "payment"), exist_ok=True)
    a.department(code="health", duties=("health",), exist_ok=True)
    a.department(SH_ADMIN, code="transport", exist_ok=True)
    a.department(("Taicang", "city_admin"), code="transport", exist_ok=True)
    return a


@pytest.fixture
def data_dir(api_settings: Settings) -> Path:
    return api_settings.data_dir
