"""Event storage for the contract's aggregates, on the transaction's ``Stub``.

``StubRecorder`` is an ``eventsourcing`` AggregateRecorder whose table is the world
state: each stored event is a key ``e~<aggregate id>~<version>`` and each aggregate
has a head key ``a~<aggregate id>`` holding its type and version. Loading reads the
head first, so two transactions that change the same aggregate conflict on that key
under MVCC, exactly as on Fabric.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime
from functools import lru_cache
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.application import Repository
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import (
    AggregateRecorder,
    DatetimeAsISO,
    EventStore,
    IntegrityError,
    JSONTranscoder,
    Mapper,
    StoredEvent,
    UUIDAsHex,
)

from chaincode.errors import NotFound
from chaincode.stub import Stub, prefix_range

_NAMESPACE = uuid5(NAMESPACE_URL, "https://cityunion.example/ids")
_tx_time: ContextVar[datetime] = ContextVar("cityunion_tx_time")


@lru_cache(maxsize=65536)
def derive_id(kind: str, *parts: str) -> UUID:
    """Deterministic aggregate id from a natural key (never uuid4 on chain)."""
    return uuid5(_NAMESPACE, "|".join((kind, *parts)))


class LedgerAggregate(Aggregate):
    """Aggregate whose event timestamps are the transaction's, not the wall clock."""

    class Event(Aggregate.Event):
        @staticmethod
        def create_timestamp() -> datetime:
            return _tx_time.get()


def _head_key(originator_id: UUID | str) -> str:
    return f"a~{originator_id}"


def _event_key(originator_id: UUID | str, version: int) -> str:
    return f"e~{originator_id}~{version:010d}"


class StubRecorder(AggregateRecorder):
    """Stores aggregate events as world-state keys of the current transaction."""

    def __init__(self, stub: Stub) -> None:
        self.stub = stub
        self.inserted: list[StoredEvent] = []
        self._heads: dict[str, tuple[str, int] | None] = {}  # reads of this tx

    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        heads: dict[str, tuple[str, int]] = {}
        for ev in stored_events:
            oid = str(ev.originator_id)
            head = heads.get(oid) or self._head(oid)
            if head is not None and ev.originator_version <= head[1]:
                raise IntegrityError(f"version {ev.originator_version} of {oid} exists")
            kind = ev.topic.rsplit(":", 1)[-1].split(".")[0]
            heads[oid] = (head[0] if head else kind, ev.originator_version)
            # {"state": <the transcoder's JSON, spliced in>, "topic": "..."}:
            # readable for auditors, and no second encoding on the hot path.
            self.stub.put_state(_event_key(oid, ev.originator_version),
                                b'{"state":' + ev.state + b',"topic":'
                                + json.dumps(ev.topic).encode() + b"}")
            self.inserted.append(ev)
        for oid, (kind, version) in heads.items():
            head_value = f'{{"type":"{kind}","version":{version}}}'.encode()
            self.stub.put_state(_head_key(oid), head_value)
        return None

    def _head(self, oid: str) -> tuple[str, int] | None:
        # Reads see committed state only, so one read per key per tx suffices.
        if oid not in self._heads:
            raw = self.stub.get_state(_head_key(oid))
            head = json.loads(raw) if raw is not None else None
            self._heads[oid] = (head["type"], int(head["version"])) if head else None
        return self._heads[oid]

    def select_events(
        self,
        originator_id: UUID | str,
        *,
        gt: int | None = None,
        lte: int | None = None,
        desc: bool = False,
        limit: int | None = None,
    ) -> Sequence[StoredEvent]:
        if self._head(str(originator_id)) is None:
            return []
        start, end = prefix_range(f"e~{originator_id}~")
        found = []
        for key, value in self.stub.get_state_by_range(start, end):
            version = int(key.rsplit("~", 1)[1])
            if gt is not None and version <= gt:
                continue
            if lte is not None and version > lte:
                continue
            cut = value.rindex(b',"topic":')
            found.append(StoredEvent(originator_id, version,
                                     json.loads(value[cut + 9:-1]),
                                     value[9:cut]))
        if desc:
            found.reverse()
        return found[:limit] if limit is not None else found


def _transcoder() -> JSONTranscoder:
    t = JSONTranscoder()
    t.register(UUIDAsHex())
    t.register(DatetimeAsISO())
    return t


_MAPPER: Mapper[UUID] = Mapper(transcoder=_transcoder())  # stateless, shared


class Session:
    """Loads and saves aggregates for one transaction through a StubRecorder."""

    def __init__(self, stub: Stub) -> None:
        self.recorder = StubRecorder(stub)
        self.mapper = _MAPPER
        self.repository = Repository(EventStore(self.mapper, self.recorder))
        self.pending: list[Any] = []

    def exists(self, aggregate_id: UUID) -> bool:
        return self.recorder._head(str(aggregate_id)) is not None

    def get(self, aggregate_id: UUID, cls: type[Any], what: str,
            field: str = "id") -> Any:
        """The aggregate, or NotFound naming the argument ``field`` that held the id."""
        if not self.exists(aggregate_id):
            raise NotFound(f"{what} {aggregate_id} does not exist", field=field)
        agg: Any = self.repository.get(aggregate_id)
        if not isinstance(agg, cls):
            article = "an" if what[0] in "aeiou" else "a"
            raise NotFound(f"{aggregate_id} is not {article} {what}", field=field)
        return agg

    def save(self, *aggregates: Aggregate) -> None:
        for agg in aggregates:
            events = agg.collect_events()
            self.pending.extend(events)
            self.repository.event_store.put(events)


@contextmanager
def transaction_time(ts: datetime) -> Iterator[None]:
    token = _tx_time.set(ts)
    try:
        yield
    finally:
        _tx_time.reset(token)
