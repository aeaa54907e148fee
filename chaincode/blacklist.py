"""Card loss and blacklist (挂失、黑名单): an issuer city reports its cards lost
or blocked; clearing flags records of such a card from that time on, and
terminals check a signed delta of the list offline."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator

from chaincode.domain import Card
from chaincode.errors import Conflict, InvalidArgument, Unauthorized
from chaincode.identity import Role
from chaincode.registry import Args, Context, Hash, command
from chaincode.stub import Stub, prefix_range
from network.consortium import load_consortium

MAX_CARDS = 1_000

# One key per blacklisted card, ``bl~<card hash>`` -> its entry, so a clearing
# reads the whole list in one range query.
_PREFIX = "bl~"


class BlockedCard(Args):
    card_id_hash: Hash
    reason: Literal["lost", "stolen", "blocked", "fraud"]
    since: Annotated[str, Field(pattern=r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}"
                                        r"(\.\d{1,6})?Z$",
                                json_schema_extra={"format": "date-time"})]

    @field_validator("since")
    @classmethod
    def _valid_time(cls, v: str) -> str:
        datetime.fromisoformat(v)
        return v


class BlacklistArgs(Args):
    cards: Annotated[list[BlockedCard], Field(min_length=1, max_length=MAX_CARDS)]


def blacklist_of(stub: Stub) -> dict[str, str]:
    """Every blacklisted card's hash and the time from which it is blocked."""
    start, end = prefix_range(_PREFIX)
    return {key[len(_PREFIX):]: json.loads(value)["since"]
            for key, value in stub.get_state_by_range(start, end)}


@command("BlacklistCards", BlacklistArgs, Role.CITY_ADMIN)
def blacklist_cards(ctx: Context, a: BlacklistArgs) -> dict[str, Any]:
    """The issuer city reports cards (by the hash of their number) lost or
    blocked from a time on; a card is blacklisted once."""
    city = ctx.caller.city
    if city not in load_consortium().city_names:
        raise Unauthorized("only a member city issues cards")
    seen: set[str] = set()
    for i, card in enumerate(a.cards):
        field = f"cards.{i}.card_id_hash"
        if card.card_id_hash in seen:
            raise InvalidArgument(f"card {card.card_id_hash} appears twice", field)
        seen.add(card.card_id_hash)
        if ctx.stub.get_state(f"{_PREFIX}{card.card_id_hash}") is not None:
            raise Conflict(f"card {card.card_id_hash} is already blacklisted",
                           field=field)
    by = str(ctx.caller)
    for card in a.cards:
        entry = Card(card_id_hash=card.card_id_hash, issuer_city=city,
                     reason=card.reason, since=card.since, reported_by=by)
        ctx.session.save(entry)
        ctx.stub.put_state(f"{_PREFIX}{card.card_id_hash}", json.dumps(
            {"issuer_city": city, "reason": card.reason, "since": card.since},
            sort_keys=True, separators=(",", ":")).encode())
    return {"city": city, "blacklisted": len(a.cards)}
