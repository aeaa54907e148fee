"""Batch summaries: what clearing needs of a batch, in a size that grows with
the distinct (issuer, scene, type, amount) groups of its records rather than
with its records, so that a day's clearing reads a few kilobytes per batch.

A summary is written with its batch and never changes:
- ``groups``: ``[issuer, scene, type, amount_fen, count]`` rows, sorted; fares
  repeat, so a 10,000-record batch has tens to hundreds of groups. A fee depends
  only on the amount and the scene (``fee_of``), so a group's fee is its count
  times one record's fee: summing groups is exactly summing records.
- ``bloom``: a Bloom filter of the batch's card hashes, 2^17 bits with 7
  probes (a batch holds at most 10,000 cards: at most 0.2% false positives).
  Clearing asks it whether a blacklisted card may be in the batch and reads the
  batch's records only when it may. The size is fixed so that a card's probes
  are computed once per clearing, whatever the batch.
Records that are not payable (in dispute, withdrawn) are kept apart, under a
key the dispute commands rewrite (``excluded``: record id -> its group).
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping
from typing import Any

from chaincode.domain import DEFAULT_SCENE, DEFAULT_TYPE, Clearing, Tally
from chaincode.encoding import sm3

BLOOM_BITS, PROBES = 1 << 17, 7


def group_of(record: Mapping[str, Any]) -> list[Any]:
    """A record's group: issuer, scene, type, amount."""
    return [record["issuer_city"], record.get("scene", DEFAULT_SCENE),
            record.get("type", DEFAULT_TYPE), int(record["amount_fen"])]


def probes(card_id_hash: str) -> tuple[int, ...]:
    """The Bloom filter bits of a card."""
    digest = sm3(card_id_hash.encode())
    return tuple(int.from_bytes(digest[4 * i:4 * i + 4], "big") % BLOOM_BITS
                 for i in range(PROBES))


def summarise(acquirer: str, records: Iterable[Mapping[str, Any]]
              ) -> dict[str, Any]:
    """The summary of a batch's records."""
    counts: dict[tuple[Any, ...], int] = {}
    cards: set[str] = set()
    for r in records:
        key = tuple(group_of(r))
        counts[key] = counts.get(key, 0) + 1
        cards.add(r["card_id_hash"])
    bloom = bytearray(BLOOM_BITS // 8)
    for card in sorted(cards):
        for p in probes(card):
            bloom[p >> 3] |= 1 << (p & 7)
    return {"acquirer_city": acquirer,
            "groups": [[*k, n] for k, n in sorted(counts.items())],
            "bloom": base64.b64encode(bytes(bloom)).decode()}


def may_hold_any(summary: Mapping[str, Any],
                 cards: Iterable[tuple[int, ...]]) -> bool:
    """Whether the batch may hold a record of any card of ``cards`` (their
    ``probes``); False: surely none."""
    bloom = base64.b64decode(summary["bloom"])
    for bits in cards:
        for p in bits:
            if not bloom[p >> 3] >> (p & 7) & 1:
                break
        else:
            return True
    return False


def clear_summaries(batches: Iterable[tuple[Mapping[str, Any],
                                            Mapping[str, list[Any]]]],
                    cities: Iterable[str],
                    rules: Mapping[tuple[str, str], Mapping[str, Any]]) -> Clearing:
    """``chaincode.domain.clear`` over summaries: ``batches`` are (summary,
    excluded: record id -> group of each record not payable) and the result
    has the same figures, with no flagged records (clearing finds those apart,
    in the batches a blacklisted card may be in)."""
    tally = Tally(cities, rules)
    excluded = 0
    for summary, out in batches:
        less: dict[tuple[Any, ...], int] = {}
        for group in out.values():
            less[tuple(group)] = less.get(tuple(group), 0) + 1
            excluded += 1
        for issuer, scene, kind, amount, count in summary["groups"]:
            n = count - less.get((issuer, scene, kind, amount), 0)
            if n > 0:
                tally.add(summary["acquirer_city"], issuer, scene, kind, amount, n)
    return tally.result(excluded, [])
