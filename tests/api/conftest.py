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


@pytest.fixture(scope="session")
def api_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return Settings(data_dir=tmp_path_factory.mktemp("api") / "node")


@pytest.fixture(scope="session")
def client(api_settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(api_settings)) as c:
        yield c


@pytest.fixture(scope="session")
def api(client: TestClient) -> Api:
    """The helper, with the departments most tests use already registered:
    transport and health in Kunshan, transport in Shanghai and Taicang."""
    a = Api(client)
    a.department(code="transport", duties=("transport", "payment"))
    a.department(code="health", duties=("health",))
    a.department(SH_ADMIN, code="transport")
    a.department(("Taicang", "city_admin"), code="transport")
    return a


@pytest.fixture
def data_dir(api_settings: Settings) -> Path:
    return api_settings.data_dir
