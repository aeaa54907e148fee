"""API settings, from ``CITYUNION_*`` environment variables or the CLI."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic_settings import BaseSettings, SettingsConfigDict

from ledger.connect import DEFAULT_DATA_DIR


class Settings(BaseSettings):
    """Where the ledger and the read models are, and where the API listens."""

    model_config = SettingsConfigDict(env_prefix="CITYUNION_", extra="ignore")

    data_dir: Path = Path(DEFAULT_DATA_DIR)
    ledger: Literal["embedded", "fabric"] = "embedded"
    ledger_dsn: str | None = None  # embedded ledger in PostgreSQL
    network: Path | None = None  # Fabric: the directory `network up` wrote
    # the embedded committer as a thread, or a process (more throughput, 2 cores)
    committer: Literal["thread", "process"] = "thread"
    database: str | None = None  # read models; default: SQLite in data_dir
    host: str = "127.0.0.1"
    port: int = 8000
    follow: bool = True  # run the projection follower inside the API process

    @property
    def read_model_target(self) -> str:
        return self.database or str(self.data_dir / "readmodel.sqlite")
