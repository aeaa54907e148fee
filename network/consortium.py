"""Which organisations form the consortium, read from ``consortium.toml``.

One file names the center and the member cities; the chaincode checks membership
against it and the ledgers create identities from it.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

CONSORTIUM_FILE = Path(__file__).with_name("consortium.toml")
# Another consortium (a test network, the 80-city clearing benchmark): the path of
# its file. Every process of a ledger must see the same file.
CONSORTIUM_ENV = "CITYUNION_CONSORTIUM"


@dataclass(frozen=True)
class Organisation:
    name: str
    msp_id: str
    code: str = ""
    is_center: bool = False


@dataclass(frozen=True)
class Consortium:
    channel: str
    chaincode: str
    center: Organisation
    cities: tuple[Organisation, ...]

    @property
    def organisations(self) -> tuple[Organisation, ...]:
        return (self.center, *self.cities)

    def by_msp(self, msp_id: str) -> Organisation | None:
        return next((o for o in self.organisations if o.msp_id == msp_id), None)

    def by_name(self, name: str) -> Organisation | None:
        return next((o for o in self.organisations if o.name == name), None)

    @property
    def city_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.cities)


def load_consortium(path: Path | None = None) -> Consortium:
    """Read the consortium definition (``path``, else ``$CITYUNION_CONSORTIUM``,
    else the packaged ``consortium.toml``); raises ValueError naming a bad
    entry."""
    return _load(path or Path(os.environ.get(CONSORTIUM_ENV) or CONSORTIUM_FILE))


@lru_cache(maxsize=4)
def _load(path: Path) -> Consortium:
    raw = tomllib.loads(path.read_text(encoding="utf-8"))
    try:
        center = Organisation(
            raw["center"]["name"], raw["center"]["msp_id"], is_center=True
        )
        cities = tuple(
            Organisation(c["name"], c["msp_id"], str(c.get("code", "")))
            for c in raw["cities"]
        )
    except KeyError as e:
        raise ValueError(f"{path}: missing field {e} (need name and msp_id)") from e
    return Consortium(raw.get("channel", "cityunion"), raw.get("chaincode",
                      "cityunion"), center, cities)
